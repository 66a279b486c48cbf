import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { z } from 'zod';
import { gauge, type Metric } from '../results/metric.js';
import type { CommandOutcome, State } from '../results/result.js';
import { compileRegex, compileRegexLiteral } from '../core/regex-literal.js';
import { nonEmptyString, validRegex } from '../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from './command.js';

/** A queue's answer longer than this (bytes) is not read further: the queue is reported `bad-response`. */
const MAX_ANSWER_BYTES = 4 * 1_048_576;
/** How much of an unexpected answer a message quotes. */
const QUOTE_CHARS = 120;
/** Only what the check judges: the management API leaves out the rest (message rates, …). */
const COLUMNS = 'columns=consumer_details.consumer_tag,consumer_details.activity_status,consumer_details.active';
/**
 * Activity statuses of a consumer that receives messages: `up`, and `single_active` (the active consumer
 * of a single-active-consumer queue). `waiting` (a standby of such a queue) is not.
 */
const ACTIVE_STATUSES: ReadonlySet<string> = new Set(['up', 'single_active']);

const urlError = 'expected the management API base URL, http:// or https:// (e.g. http://127.0.0.1:15672)';

/** Where the management API is: protocol, host, port and any path prefix (a proxy's), without a trailing slash. */
export interface ManagementTarget {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number;
  /** `''` or a prefix such as `/rabbitmq`. */
  readonly basePath: string;
  /** For messages: `http://127.0.0.1:15672`. */
  readonly display: string;
}

function toTarget(text: string, ctx: z.RefinementCtx<string>): ManagementTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: urlError, input: text });
    return z.NEVER;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: urlError, input: text });
    return z.NEVER;
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'expected a base URL without credentials (use username/password), ?query or #fragment', input: text });
    return z.NEVER;
  }
  const basePath = url.pathname.replace(/\/+$/, '');
  return {
    protocol: url.protocol,
    hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
    basePath,
    display: `${url.origin}${basePath}`,
  };
}

const listenerError = 'expected a regular expression for consumer tags: a pattern, or /pattern/flags';

/** A listener: a consumer-tag pattern as written, and compiled. Plain data. */
export interface Listener {
  readonly pattern: string;
  readonly regex: RegExp;
}

function toListener(text: string, ctx: z.RefinementCtx<string>): Listener {
  return { pattern: text, regex: validRegex(compileRegexLiteral(text) ?? compileRegex(text), text, ctx) };
}

const queueSchema = z.strictObject(
  {
    /** The queue's name. */
    name: nonEmptyString('a queue name'),
    /**
     * Who must consume it: one regular expression per listener, matched against consumer tags (unanchored:
     * write `^worker-\d+$` to match whole tags); `/pattern/flags` for flags. Default none (the queue need
     * only exist).
     */
    listeners: z.array(nonEmptyString(listenerError).transform(toListener), { error: 'expected a list of consumer-tag regular expressions' }).default([]),
  },
  { error: 'expected a queue { name, listeners }' },
);

const attributes = z
  .strictObject({
    /** The management API's base URL; default `http://127.0.0.1:15672`. */
    managementUrl: nonEmptyString(urlError).default('http://127.0.0.1:15672').transform(toTarget),
    /** Management API user (needs the `monitoring` tag or better); default `guest`. */
    username: nonEmptyString('a user name').default('guest'),
    /** Its password; default `guest`. Write `${RABBITMQ_PASSWORD}` to keep it out of the file. */
    password: z.string({ error: 'expected a password (a string)' }).default('guest'),
    /** The virtual host of the queues; default `/`. */
    vhost: nonEmptyString('a virtual host name').default('/'),
    /** The queues to look at, each with its listeners. */
    queues: z.array(queueSchema, { error: 'expected a list of queues { name, listeners }' }).min(1, { error: 'expected at least one queue' }),
  })
  .superRefine((value, ctx) => {
    const byMetric = new Map<string, string>();
    value.queues.forEach((queue, i) => {
      const metric = consumersMetric(queue.name);
      const first = byMetric.get(metric);
      if (first === undefined) byMetric.set(metric, queue.name);
      else if (first === queue.name) ctx.addIssue({ code: 'custom', path: ['queues', i, 'name'], message: 'expected each queue once (this one is listed before)' });
      else ctx.addIssue({ code: 'custom', path: ['queues', i, 'name'], message: `expected a queue name that gives its own metric name (${JSON.stringify(first)} gives ${metric} too)` });
    });
  })
  .transform(({ managementUrl, username, password, vhost, queues }) => ({
    target: managementUrl,
    username,
    vhost,
    /** The `Authorization` header, built once. */
    authorization: `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`,
    queues: queues.map((queue) => ({
      name: queue.name,
      path: `${managementUrl.basePath}/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue.name)}?${COLUMNS}`,
      metric: consumersMetric(queue.name),
      listeners: queue.listeners,
    })),
  }));

/** The `rabbitmq-consumers` command's attributes after parsing: URL split, paths, metric names and header built. */
export type RabbitmqConsumersAttributes = z.output<typeof attributes>;
type QueueAttributes = RabbitmqConsumersAttributes['queues'][number];

/** The metric that carries a queue's consumer count: `consumers_<queue>`, other characters than [A-Za-z0-9_] as `_`. */
export function consumersMetric(queue: string): string {
  return `consumers_${queue.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/**
 * `rabbitmq-consumers`: asks the RabbitMQ management API (`GET /api/queues/{vhost}/{queue}`) who consumes
 * each queue. A listener is up when some consumer's tag matches its regular expression and that consumer
 * is active (activity status `up`, or `single_active`); a queue is ok only when all its listeners are up.
 * One request per queue, at once, through a keep-alive agent of this command object.
 *
 * Metrics: `consumers_<queue>` (the queue's consumers, per answered queue). Reasons, the first that applies
 * over all queues: `unreachable` (crit: no connection to the API), `timeout` (crit: no answer in the
 * check's time), `unauthorized` (unknown: 401/403, the credentials or their permissions), `bad-response`
 * (unknown: another status, or not the API's JSON), `queue-missing` (crit: 404, the queue or the vhost
 * does not exist), `listener-missing` (crit: the message names each listener that is missing or
 * inactive, by queue), `ok`.
 *
 * The management API refreshes its consumer list from the broker's statistics (every 5 s by default), so
 * a consumer that just came or went may show a few seconds late.
 */
export function rabbitmqConsumersCommand(): Command<RabbitmqConsumersAttributes> {
  const agents: { http?: HttpAgent; https?: HttpsAgent } = {};
  const agentFor = (protocol: ManagementTarget['protocol']): HttpAgent =>
    protocol === 'https:' ? (agents.https ??= new HttpsAgent({ keepAlive: true })) : (agents.http ??= new HttpAgent({ keepAlive: true }));
  return defineCommand({ name: 'rabbitmq-consumers', attributes, run: (attrs, ctx) => runConsumers(attrs, ctx, agentFor(attrs.target.protocol)) });
}

/** What one queue's request came to. */
type Answer =
  | { readonly kind: 'answer'; readonly status: number; readonly body: string }
  | { readonly kind: 'too-large'; readonly status: number }
  | { readonly kind: 'failed'; readonly error: Error }
  | { readonly kind: 'aborted' };

/** One queue's verdict; `rank` orders the reasons (the lowest speaks for the check). */
interface Verdict {
  readonly queue: string;
  readonly rank: number;
  readonly state: State;
  readonly reason: string;
  /** What is wrong, for the message; empty when ok. */
  readonly problem: string;
  /** The number of consumers; undefined when the queue's answer gave none. */
  readonly consumers: number | undefined;
}

const RANK = { unreachable: 0, timeout: 1, unauthorized: 2, 'bad-response': 3, 'queue-missing': 4, 'listener-missing': 5, ok: 6 } as const;
type Reason = keyof typeof RANK;

async function runConsumers(attrs: RabbitmqConsumersAttributes, { signal }: CommandContext, agent: HttpAgent): Promise<CommandOutcome> {
  if (signal.aborted) return { state: 'crit', reason: 'timeout', message: `timed out before asking the RabbitMQ management API at ${attrs.target.display}` };
  const answers = await Promise.all(attrs.queues.map((queue) => get(attrs, queue.path, agent, signal)));
  const verdicts = attrs.queues.map((queue, i) => judge(attrs, queue, answers[i] as Answer));
  return summarize(attrs, verdicts);
}

function judge(attrs: RabbitmqConsumersAttributes, queue: QueueAttributes, answer: Answer): Verdict {
  const verdict = (reason: Reason, state: State, problem: string, consumers?: number): Verdict => ({ queue: queue.name, rank: RANK[reason], state, reason, problem, consumers });
  const api = attrs.target.display;
  switch (answer.kind) {
    case 'aborted':
      return verdict('timeout', 'crit', `no answer from the RabbitMQ management API at ${api} within the check's timeout`);
    case 'failed':
      return verdict('unreachable', 'crit', `cannot reach the RabbitMQ management API at ${api}: ${describeError(answer.error)}`);
    case 'too-large':
      return verdict('bad-response', 'unknown', `the answer for queue ${queue.name} is longer than ${MAX_ANSWER_BYTES} bytes (HTTP ${answer.status})`);
    case 'answer':
      break;
  }
  const { status, body } = answer;
  if (status === 401 || status === 403) {
    const what = status === 401 ? 'refused the credentials of user' : 'does not let user';
    const tail = status === 401 ? '' : ` see vhost ${attrs.vhost} (it needs the monitoring tag and permissions there)`;
    return verdict('unauthorized', 'unknown', `the RabbitMQ management API at ${api} ${what} ${attrs.username}${tail} (HTTP ${status})`);
  }
  if (status === 404) return verdict('queue-missing', 'crit', `queue ${queue.name} not found in vhost ${attrs.vhost}`);
  if (status !== 200) return verdict('bad-response', 'unknown', `expected HTTP 200 for queue ${queue.name} from ${api}, got ${status}${body.trim() === '' ? '' : `: ${quote(body)}`}`);

  const consumers = consumerDetails(body);
  if (consumers === null) {
    return verdict('bad-response', 'unknown', `expected the management API's JSON with consumer_details for queue ${queue.name}, got ${quote(body)}`);
  }
  const missing: string[] = [];
  for (const listener of queue.listeners) {
    let matched: Consumer | undefined;
    for (const consumer of consumers) {
      if (!listener.regex.test(consumer.tag)) continue;
      matched = consumer;
      if (consumer.active) break;
    }
    if (matched === undefined) missing.push(`${listener.pattern} (no consumer)`);
    else if (!matched.active) missing.push(`${listener.pattern} (${matched.tag} is ${matched.status})`);
  }
  if (missing.length > 0) return verdict('listener-missing', 'crit', `queue ${queue.name} misses listener${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`, consumers.length);
  return verdict('ok', 'ok', '', consumers.length);
}

interface Consumer {
  readonly tag: string;
  readonly active: boolean;
  /** The activity status as the API gave it, for messages. */
  readonly status: string;
}

/** The consumers in a queue's answer; `null` when it is not the API's JSON. */
function consumerDetails(body: string): Consumer[] | null {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    return null;
  }
  const details = typeof data === 'object' && data !== null ? (data as { consumer_details?: unknown }).consumer_details : undefined;
  if (!Array.isArray(details)) return null;
  const consumers: Consumer[] = [];
  for (const item of details as unknown[]) {
    if (typeof item !== 'object' || item === null) return null;
    const { consumer_tag: tag, activity_status: status, active } = item as Record<string, unknown>;
    if (typeof tag !== 'string') return null;
    // RabbitMQ before 3.8 gives no activity status, only `active`.
    if (typeof status === 'string') consumers.push({ tag, active: ACTIVE_STATUSES.has(status), status });
    else consumers.push({ tag, active: active !== false, status: active === false ? 'inactive' : 'up' });
  }
  return consumers;
}

function summarize(attrs: RabbitmqConsumersAttributes, verdicts: readonly Verdict[]): CommandOutcome {
  const metrics: Metric[] = [];
  verdicts.forEach((verdict, i) => {
    if (verdict.consumers !== undefined) metrics.push(gauge((attrs.queues[i] as QueueAttributes).metric, verdict.consumers));
  });
  let worst = verdicts[0] as Verdict;
  for (const verdict of verdicts) if (verdict.rank < worst.rank) worst = verdict;
  if (worst.reason === 'ok') {
    const counts = verdicts.map((verdict) => `${verdict.queue} (${verdict.consumers} consumer${verdict.consumers === 1 ? '' : 's'})`).join(', ');
    const listeners = attrs.queues.reduce((sum, queue) => sum + queue.listeners.length, 0);
    return { state: 'ok', reason: 'ok', message: `${listeners === 0 ? 'all queues exist' : 'all listeners up'}: ${counts}`, metrics };
  }
  // The API as a whole failed: every queue says the same, once is enough.
  if (worst.rank < RANK['queue-missing']) return { state: worst.state, reason: worst.reason, message: worst.problem, metrics };
  const problems = verdicts.filter((verdict) => verdict.reason !== 'ok').sort((a, b) => a.rank - b.rank);
  const healthy = verdicts.length - problems.length;
  const tail = healthy > 0 ? `; ${healthy} of ${verdicts.length} queues ok` : '';
  return { state: worst.state, reason: worst.reason, message: `${problems.map((verdict) => verdict.problem).join('; ')}${tail}`, metrics };
}

/** One GET; never rejects. The request is destroyed when the signal aborts. */
function get(attrs: RabbitmqConsumersAttributes, path: string, agent: HttpAgent, signal: AbortSignal): Promise<Answer> {
  const { target } = attrs;
  return new Promise<Answer>((resolve) => {
    let settled = false;
    const settle = (answer: Answer): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      // A response read to its end leaves the connection to the agent; anything else is cut off.
      if (answer.kind !== 'answer') request.destroy();
      resolve(answer);
    };
    const onAbort = (): void => settle({ kind: 'aborted' });
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const request = send(
      { hostname: target.hostname, port: target.port, path, method: 'GET', agent, headers: { accept: 'application/json', authorization: attrs.authorization } },
      (response: IncomingMessage) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let length = 0;
        response.on('data', (chunk: Buffer) => {
          length += chunk.length;
          if (length > MAX_ANSWER_BYTES) settle({ kind: 'too-large', status });
          else chunks.push(chunk);
        });
        response.on('end', () => settle({ kind: 'answer', status, body: Buffer.concat(chunks, length).toString('utf8') }));
        response.on('error', (error) => settle(signal.aborted ? { kind: 'aborted' } : { kind: 'failed', error }));
      },
    );
    request.on('error', (error) => settle(signal.aborted ? { kind: 'aborted' } : { kind: 'failed', error }));
    signal.addEventListener('abort', onAbort, { once: true });
    request.end();
  });
}

function describeError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code === undefined || error.message.includes(code) ? error.message : `${code} (${error.message})`;
}

function quote(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > QUOTE_CHARS ? `${JSON.stringify(line.slice(0, QUOTE_CHARS))}…` : JSON.stringify(line);
}
