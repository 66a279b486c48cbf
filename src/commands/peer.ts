import { request as httpRequest, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { z } from 'zod';
import { stableHash } from '../checks/schedule.js';
import { gauge, type Metric } from '../results/metric.js';
import type { CommandOutcome, Result } from '../results/result.js';
import type { Health } from '../core/health.js';
import { nonEmptyString } from '../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from './command.js';
import { errorMessage } from '../core/errors.js';

/** A `/healthz` answer longer than this (bytes) is not vigil's. */
const MAX_HEALTH_BYTES = 65_536;

const urlError = 'expected the base URL of another vigil, http:// or https:// (e.g. http://vigil-b:9470)';

function toBaseUrl(text: string, ctx: z.RefinementCtx<string>): string {
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
  if (url.username !== '' || url.password !== '') {
    ctx.addIssue({ code: 'custom', message: 'expected a URL without credentials (send them in `headers`, e.g. Authorization)', input: text });
    return z.NEVER;
  }
  if (url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'expected a base URL without ?query or #fragment; /healthz is appended to it', input: text });
    return z.NEVER;
  }
  // A vigil behind a proxy may live under a path prefix; `/healthz` goes after it.
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

const attributes = z.strictObject({
  /** The other vigil's base URL; its `/healthz` is polled. The check's timeout bounds each poll. */
  url: nonEmptyString(urlError).transform(toBaseUrl),
  /** Extra request headers (e.g. `Authorization`); values are never logged or reported. */
  headers: z.record(nonEmptyString('a header name'), z.string({ error: 'expected a header value (a string)' }), { error: 'expected a mapping of header names to values' }).optional(),
});

/** The `peer` command's attributes after parsing: `url` without a trailing slash. */
export type PeerAttributes = z.output<typeof attributes>;

/** The metrics a peer Result carries; `epoch` and `instance_hash` carry the identity to the next run. */
export const PeerMetrics = {
  /** Seconds since the peer started. */
  uptime: 'uptime',
  /** Checks the peer knows. */
  checks: 'checks',
  /** The peer's epoch: its start count. Kept (last seen) while the peer is unreachable. */
  epoch: 'epoch',
  /**
   * 32-bit hash of the peer's instance id (`stableHash`), so the next run can tell a different instance
   * from the same one without keeping the id anywhere but the Result. Kept while unreachable.
   */
  instanceHash: 'instance_hash',
} as const;

/**
 * `peer`: polls another vigil's `GET <url>/healthz`. Reasons: `ok` (metrics `uptime` s, `checks`,
 * `epoch`, `instance_hash`); `peer-restarted` (warn, once: its instance id or epoch differs from the last
 * one seen, also when the change happened while it was unreachable); `unreachable` (crit: no connection,
 * no answer before the check's timeout); `unhealthy` (crit: an answer other than 200, or `stopping`);
 * `bad-response` (unknown: a 200 that is not a vigil health answer, e.g. the URL points elsewhere).
 */
export function peerCommand(): Command<PeerAttributes> {
  return defineCommand({ name: 'peer', attributes, run: runPeer });
}

interface Identity {
  readonly hash: number;
  readonly epoch: number;
}

async function runPeer(attrs: PeerAttributes, { signal, previous }: CommandContext): Promise<CommandOutcome> {
  const healthz = `${attrs.url}/healthz`;
  const known = lastIdentity(previous);
  if (signal.aborted) return { state: 'crit', reason: 'unreachable', message: `timed out before polling ${healthz}`, metrics: identityMetrics(known) };
  let answer: Answer;
  try {
    answer = await get(healthz, attrs.headers, signal);
  } catch (error) {
    const why = signal.aborted ? 'no answer before the timeout' : describeError(error);
    return { state: 'crit', reason: 'unreachable', message: `cannot reach peer ${healthz}: ${why}`, metrics: identityMetrics(known) };
  }

  const health = answer.body === null ? null : parseHealth(answer.body);
  if (answer.status !== 200 || health?.status === 'stopping') {
    const what = health?.status === 'stopping' ? `is stopping (HTTP ${answer.status})` : `answered HTTP ${answer.status}`;
    const seen = health ? { hash: stableHash(health.instanceId), epoch: health.epoch } : known;
    return { state: 'crit', reason: 'unhealthy', message: `peer ${healthz} ${what}`, metrics: identityMetrics(seen) };
  }
  if (health === null) {
    const why = answer.body === null ? `longer than ${MAX_HEALTH_BYTES} bytes` : 'not a vigil health answer (expected JSON with status, instanceId, epoch, uptimeSeconds, checks)';
    return { state: 'unknown', reason: 'bad-response', message: `peer ${healthz} answered 200, but ${why}`, metrics: identityMetrics(known) };
  }

  const current: Identity = { hash: stableHash(health.instanceId), epoch: health.epoch };
  const metrics = [
    gauge(PeerMetrics.uptime, health.uptimeSeconds, 's'),
    gauge(PeerMetrics.checks, health.checks),
    ...identityMetrics(current),
  ];
  const up = `up ${health.uptimeSeconds} s, ${health.checks} checks${health.version === undefined ? '' : `, version ${health.version}`}`;
  if (known !== null && known.hash !== current.hash) {
    return { state: 'warn', reason: 'peer-restarted', message: `peer ${healthz} is another instance now: ${health.instanceId} epoch ${health.epoch}, ${up}`, metrics };
  }
  if (known !== null && known.epoch !== current.epoch) {
    return { state: 'warn', reason: 'peer-restarted', message: `peer ${healthz} restarted: epoch ${known.epoch} → ${health.epoch}, ${up}`, metrics };
  }
  return { state: 'ok', reason: 'ok', message: `peer ${healthz} is up: instance ${health.instanceId} epoch ${health.epoch}, ${up}`, metrics };
}

/** The peer identity the previous Result carries; `null` on the first run or after a Result without it. */
function lastIdentity(previous: Result | null): Identity | null {
  if (previous === null) return null;
  let hash: number | undefined;
  let epoch: number | undefined;
  for (const metric of previous.metrics) {
    if (metric.name === PeerMetrics.instanceHash) hash = metric.value;
    else if (metric.name === PeerMetrics.epoch) epoch = metric.value;
  }
  return hash === undefined || epoch === undefined ? null : { hash, epoch };
}

function identityMetrics(identity: Identity | null): Metric[] {
  return identity === null ? [] : [gauge(PeerMetrics.epoch, identity.epoch), gauge(PeerMetrics.instanceHash, identity.hash)];
}

type PeerHealth = Pick<Health, 'status' | 'instanceId' | 'epoch' | 'uptimeSeconds' | 'checks'> & { readonly version?: string };

function parseHealth(text: string): PeerHealth | null {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof data !== 'object' || data === null) return null;
  const { status, instanceId, epoch, uptimeSeconds, checks, version } = data as Record<string, unknown>;
  if (status !== 'ok' && status !== 'stopping') return null;
  if (typeof instanceId !== 'string' || instanceId === '') return null;
  if (!isCount(epoch) || !isCount(uptimeSeconds) || !isCount(checks)) return null;
  return { status, instanceId, epoch, uptimeSeconds, checks, ...(typeof version === 'string' ? { version } : {}) };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** A response's status and body; `body` is null when it was longer than MAX_HEALTH_BYTES. */
interface Answer {
  readonly status: number;
  readonly body: string | null;
}

/**
 * One GET on a fresh connection (no keep-alive: a restarted peer must not meet a socket of its previous
 * life). Rejects on connection errors and when `signal` aborts; the request is destroyed either way.
 */
function get(url: string, headers: Readonly<Record<string, string>> | undefined, signal: AbortSignal): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    let settled = false;
    const settle = (error: Error | null, answer?: Answer): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      request.destroy();
      if (error) reject(error);
      else resolve(answer as Answer);
    };
    const onAbort = (): void => settle(new Error('aborted'));
    const request: ClientRequest = send(url, { method: 'GET', headers: { accept: 'application/json', ...headers }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      let length = 0;
      response.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > MAX_HEALTH_BYTES) settle(null, { status: response.statusCode ?? 0, body: null });
        else chunks.push(chunk);
      });
      response.on('end', () => settle(null, { status: response.statusCode ?? 0, body: Buffer.concat(chunks, length).toString('utf8') }));
      response.on('error', (error) => settle(error));
    });
    request.on('error', (error) => settle(error));
    signal.addEventListener('abort', onAbort, { once: true });
    request.end();
  });
}

function describeError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const message = errorMessage(error);
  return code === undefined || message.includes(code) ? message : `${code} (${message})`;
}
