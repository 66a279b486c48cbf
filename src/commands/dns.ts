import { getServers, Resolver } from 'node:dns/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { gauge, type Metric } from '../results/metric.js';
import type { CommandOutcome } from '../results/result.js';
import { duration, integer, nonEmptyString } from '../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from './command.js';
import { formatMs } from '../core/format.js';
import { hostPort } from '../core/host-port.js';

/** The record types the `dns` command queries. */
export const DnsRecordTypes = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'NS'] as const;
export type DnsRecordType = (typeof DnsRecordTypes)[number];

/** How `expect` is compared with the answers. */
export const DnsMatchModes = ['contains', 'equals'] as const;
export type DnsMatchMode = (typeof DnsMatchModes)[number];

/**
 * One expected answer, normalized at load time the way answers are normalized at run time: IPv6
 * addresses in canonical form, names in lower case without the trailing dot, MX as `priority exchange`,
 * TXT as the record's character-strings joined.
 */
export interface ExpectedAnswer {
  /** The comparable text; also how the expected answer is shown in messages. */
  readonly value: string;
  /** MX given without a priority: `value` is the exchange and matches it at any priority. */
  readonly anyPriority?: true;
}

/** The `dns` command's attributes after parsing. */
export interface DnsAttributes {
  /** The name to query. */
  readonly name: string;
  /** Default `A`. */
  readonly type: DnsRecordType;
  /** Name servers as `setServers` takes them; absent: the system resolvers. */
  readonly servers?: readonly string[];
  /** Absent: any answer is fine. */
  readonly expect?: readonly ExpectedAnswer[];
  /** Default `contains`. */
  readonly match: DnsMatchMode;
  /** Response time (ms) at or above which the result is `warn`. */
  readonly responseWarnMs?: number;
  /** Response time (ms) at or above which the result is `crit`. */
  readonly responseCritMs?: number;
  /** Queries per server before giving up; default 1. */
  readonly tries: number;
}

/** The most tries: each round doubles the wait (c-ares), so more would not fit in any sensible timeout. */
const MAX_TRIES = 5;
/** The longest timer Node takes, for a deadline that is not a number of milliseconds away. */
const MAX_TIMER_MS = 2_147_483_647;
/** How many answers and expected values a message lists before summing up the rest. */
const LIST_ITEMS = 10;
/** How much of a TXT record a message quotes. */
const QUOTE_CHARS = 80;
const MAX_NAME_CHARS = 253;
const DOMAIN_NAME = /^(?:[^\s.]{1,63}\.)*[^\s.]{1,63}\.?$/;
const MX_EXPECT = /^(?:(\d{1,5})\s+)?(\S+)$/;
const DIGITS = /^\d+$/;
const BRACKETED_SERVER = /^\[([^\]]+)\](?::(\d{1,5}))?$/;
const IPV4_SERVER = /^([\d.]+):(\d{1,5})$/;

/** What c-ares error codes mean, for messages; the rest are shown as the code alone. */
const ERROR_HINTS: ReadonlyMap<string, string> = new Map([
  ['EREFUSED', 'the server refused the query'],
  ['ECONNREFUSED', 'nothing answers on that address and port'],
  ['EFORMERR', 'the server could not parse the query'],
  ['ENOTIMP', 'the server does not implement this query'],
  ['EBADRESP', 'the response was malformed'],
  ['EBADNAME', 'the name is not a valid query name'],
]);

const nameWhat = `a domain name (labels of 1–63 characters, at most ${MAX_NAME_CHARS} in all)`;
const nameError = `expected ${nameWhat}`;
const serverError = 'expected a name server address: an IP address, host:port or [v6]:port (not a host name)';
const EXPECTED_SHAPE: Readonly<Record<DnsRecordType, string>> = {
  A: 'expected an IPv4 address for type A',
  AAAA: 'expected an IPv6 address for type AAAA',
  CNAME: 'expected a domain name for type CNAME',
  NS: 'expected a domain name for type NS',
  MX: 'expected `priority exchange` (10 mail.example.org) or an exchange name for type MX',
  TXT: 'expected a string for type TXT',
};

function isDomainName(text: string): boolean {
  if (text === '.') return true;
  return DOMAIN_NAME.test(text) && text.length - (text.endsWith('.') ? 1 : 0) <= MAX_NAME_CHARS;
}

/** Names compare case-insensitively and without the root's trailing dot; the root itself is ``. */
function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * RFC 5952 text of an IPv6 address (lower case, no leading zeros, the longest run of two or more zero
 * groups shortened to `::`), so that `2001:DB8:0:0::1` compares equal to `2001:db8::1`. The input must be
 * a valid IPv6 address without a zone index.
 */
function canonicalIpv6(address: string): string {
  const groups = ipv6Groups(address);
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  if (bestStart < 0) return groups.map(hex).join(':');
  return `${groups.slice(0, bestStart).map(hex).join(':')}::${groups.slice(bestStart + bestLength).map(hex).join(':')}`;
}

function hex(group: number): string {
  return group.toString(16);
}

function ipv6Groups(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
        groups.push((a << 8) | b, (c << 8) | d);
      } else {
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const front = parse(head);
  if (tail === undefined) return front;
  const back = parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/** `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]`, `[::1]:5353` → the form `Resolver.setServers` takes. */
function toServer(text: string, ctx: z.RefinementCtx<string>): string {
  const bracketed = BRACKETED_SERVER.exec(text);
  let address: string;
  let port: string | undefined;
  if (bracketed !== null) {
    address = bracketed[1] as string;
    port = bracketed[2];
    if (!isIPv6(address)) address = '';
  } else if (isIPv4(text) || isIPv6(text)) {
    address = text;
  } else {
    const withPort = IPV4_SERVER.exec(text);
    address = withPort !== null && isIPv4(withPort[1] as string) ? (withPort[1] as string) : '';
    port = withPort?.[2];
  }
  // Node drops an IPv6 zone index without a word, which would query another interface than the one asked.
  if (address === '' || address.includes('%')) {
    ctx.addIssue({ code: 'custom', message: serverError, input: text });
    return z.NEVER;
  }
  if (port === undefined) return address;
  const portNumber = Number(port);
  // Port 0 is not merely useless: Node's setServers fails an internal assertion on it and aborts the process.
  if (portNumber < 1 || portNumber > 65535) {
    ctx.addIssue({ code: 'custom', message: 'expected a name server port 1–65535', input: text });
    return z.NEVER;
  }
  return hostPort(address, portNumber);
}

/** One `expect` entry for the record type, or `undefined` when it has the wrong shape for it. */
function toExpected(type: DnsRecordType, text: string): ExpectedAnswer | undefined {
  switch (type) {
    case 'A':
      return isIPv4(text) ? { value: text } : undefined;
    case 'AAAA':
      return isIPv6(text) && !text.includes('%') ? { value: canonicalIpv6(text) } : undefined;
    case 'CNAME':
    case 'NS':
      return isDomainName(text) ? { value: canonicalName(text) } : undefined;
    case 'MX': {
      const mx = MX_EXPECT.exec(text.trim());
      if (mx === null) return undefined;
      const [, priority, exchange = ''] = mx;
      // A bare number is far more likely a priority without its exchange than an exchange named `10`.
      if (!isDomainName(exchange) || DIGITS.test(exchange)) return undefined;
      if (priority === undefined) return { value: canonicalName(exchange), anyPriority: true };
      const preference = Number(priority);
      return preference <= 65535 ? { value: `${preference} ${canonicalName(exchange)}` } : undefined;
    }
    case 'TXT':
      return { value: text };
  }
}

const attributes = z
  .strictObject({
    /** The name to query. */
    name: nonEmptyString(nameWhat).refine(isDomainName, { error: nameError }),
    /** Record type; default A. */
    type: z.enum(DnsRecordTypes, { error: `expected one of ${DnsRecordTypes.join(', ')}` }).default('A'),
    /** Name servers to ask, as `host`, `host:port` or `[v6]:port`; default the system resolvers. */
    servers: z
      .array(z.string({ error: serverError }).transform(toServer), { error: 'expected a list of name server addresses' })
      .min(1, { error: 'expected at least one name server address' })
      .optional(),
    /** Expected answers: addresses (A, AAAA), names (CNAME, NS), `priority exchange` or exchange (MX), text (TXT). */
    expect: z
      .array(z.string({ error: 'expected a string' }), { error: 'expected a list of expected answers' })
      .min(1, { error: 'expected at least one expected answer' })
      .optional(),
    /** `contains` (default): every expected value is among the answers; `equals`: the answers are exactly `expect`. */
    match: z.enum(DnsMatchModes, { error: `expected one of ${DnsMatchModes.join(', ')}` }).optional(),
    /** Response time at or above which the result is `warn`. */
    responseWarnMs: duration().optional(),
    /** Response time at or above which the result is `crit`. */
    responseCritMs: duration().optional(),
    /**
     * Queries per server before giving up; default 1: one query, and the check's timeout is its wait (up
     * to about 5 s, the longest c-ares waits for one try).
     */
    tries: integer(1, MAX_TRIES).default(1),
  })
  .transform((value, ctx): DnsAttributes => {
    const { name, type, servers, match, responseWarnMs, responseCritMs, tries } = value;
    if (responseWarnMs !== undefined && responseCritMs !== undefined && responseWarnMs > responseCritMs) {
      ctx.addIssue({ code: 'custom', path: ['responseWarnMs'], message: `expected a duration no longer than responseCritMs (${responseCritMs}ms)` });
    }
    if (match !== undefined && value.expect === undefined) {
      ctx.addIssue({ code: 'custom', path: ['match'], message: 'expected `expect` alongside `match`' });
    }
    let expect: ExpectedAnswer[] | undefined;
    if (value.expect !== undefined) {
      expect = [];
      for (const [index, text] of value.expect.entries()) {
        const expected = toExpected(type, text);
        if (expected === undefined) ctx.addIssue({ code: 'custom', path: ['expect', index], message: EXPECTED_SHAPE[type] });
        else expect.push(expected);
      }
    }
    return {
      name,
      type,
      ...(servers === undefined ? {} : { servers }),
      ...(expect === undefined ? {} : { expect }),
      match: match ?? 'contains',
      ...(responseWarnMs === undefined ? {} : { responseWarnMs }),
      ...(responseCritMs === undefined ? {} : { responseCritMs }),
      tries,
    };
  });

/**
 * `dns`: asks name servers for the records of one name and type and, with `expect`, compares the
 * answers. Reasons: `nxdomain`, `servfail`, `no-answer` (the name exists but has no records of the type),
 * `timeout`, `unexpected-answer`, `dns-error` (any other failure, with its code), `slow-response`.
 * Metrics: `response_time` (ms), `answers` (count).
 */
export function dnsCommand(): Command<DnsAttributes> {
  return defineCommand({ name: 'dns', attributes, run: runDns });
}

/**
 * A resolver that is its own abort listener, so that a run allocates no listener closure.
 *
 * Each run gets a new one rather than one per parsed attribute set: a c-ares channel learns its servers'
 * round-trip times and, after three answers, waits only five times their average (at least 250 ms; about
 * 1 s in practice, on Node's timer tick) whatever `timeout` says, so a reused resolver reports `timeout`
 * for a slow answer well inside the check's timeout; and `cancel()` cancels every query of a resolver,
 * so a shared one would cancel its other runs' queries too. The cost, measured against a loopback
 * server: about 20 µs more per run on an idle machine (57 µs instead of 40 µs for query and answer).
 */
class RunResolver extends Resolver {
  handleEvent(): void {
    this.cancel();
  }
}

async function runDns(attrs: DnsAttributes, { signal, deadline }: CommandContext): Promise<CommandOutcome> {
  if (signal.aborted) {
    return { state: 'crit', reason: 'timeout', message: `timed out before querying ${where(attrs)} for ${question(attrs)}` };
  }
  const { servers, tries } = attrs;
  const resolver = new RunResolver({ timeout: tryTimeoutMs(deadline - Date.now(), tries, servers?.length ?? getServers().length), tries });
  if (servers !== undefined) resolver.setServers(servers);
  signal.addEventListener('abort', resolver);
  const startedAt = performance.now();
  try {
    const answers = await query(resolver, attrs);
    return answered(attrs, answers, elapsedMs(startedAt));
  } catch (error) {
    return failed(attrs, error as NodeJS.ErrnoException, elapsedMs(startedAt), signal.aborted);
  } finally {
    signal.removeEventListener('abort', resolver);
  }
}

/**
 * The first wait for an answer, in ms, so that every try fits before the deadline: c-ares asks each
 * server in turn and doubles the wait on each round. With one try and one server it is the whole time
 * left, so that the check's timeout decides; but c-ares keeps a first wait within 250 ms–5 s whatever it
 * is given (and notices it on a timer that ticks at most once a second), so past about 5 s it is c-ares
 * that gives up, and more tries are what keeps asking.
 */
function tryTimeoutMs(remainingMs: number, tries: number, servers: number): number {
  const ms = Math.floor(remainingMs / ((2 ** tries - 1) * Math.max(servers, 1)));
  return ms >= 1 ? Math.min(ms, MAX_TIMER_MS) : 1;
}

/** The answers as comparable text, normalized like `ExpectedAnswer.value`. */
async function query(resolver: Resolver, { name, type }: DnsAttributes): Promise<string[]> {
  switch (type) {
    case 'A':
      return resolver.resolve4(name);
    case 'AAAA':
      return (await resolver.resolve6(name)).map(canonicalIpv6);
    case 'CNAME':
      return (await resolver.resolveCname(name)).map(canonicalName);
    case 'NS':
      return (await resolver.resolveNs(name)).map(canonicalName);
    case 'MX':
      return (await resolver.resolveMx(name)).map((mx) => `${mx.priority} ${canonicalName(mx.exchange)}`);
    case 'TXT':
      return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
  }
}

function answered(attrs: DnsAttributes, answers: readonly string[], ms: number): CommandOutcome {
  const { expect, match, responseWarnMs, responseCritMs, type } = attrs;
  const metrics = measured(attrs, ms, answers.length);
  if (expect !== undefined && !answersMatch(expect, answers, match)) {
    const wanted = match === 'equals' ? 'to be exactly' : 'to include';
    return {
      state: 'crit',
      reason: 'unexpected-answer',
      message: `expected ${question(attrs)} ${wanted} ${bracketed(expect.map(toValue), type)}, got ${bracketed(answers, type)} from ${where(attrs)}`,
      metrics,
    };
  }
  const base = `resolved ${question(attrs)} at ${where(attrs)} in ${formatMs(ms)} ms: ${list(answers, type)}`;
  if (responseCritMs !== undefined && ms >= responseCritMs) {
    return { state: 'crit', reason: 'slow-response', message: `${base}; at or above the critical threshold of ${responseCritMs} ms`, metrics };
  }
  if (responseWarnMs !== undefined && ms >= responseWarnMs) {
    return { state: 'warn', reason: 'slow-response', message: `${base}; at or above the warning threshold of ${responseWarnMs} ms`, metrics };
  }
  return { state: 'ok', reason: 'ok', message: base, metrics };
}

function failed(attrs: DnsAttributes, error: NodeJS.ErrnoException, ms: number, aborted: boolean): CommandOutcome {
  const code = error.code ?? 'unknown error';
  // Cancelled by the abort, or c-ares gave up first: either way the check's time ran out.
  if (aborted || code === 'ETIMEOUT') {
    const tries = attrs.tries > 1 ? ` (${attrs.tries} tries)` : '';
    return { state: 'crit', reason: 'timeout', message: `no answer from ${where(attrs)} for ${question(attrs)} within ${Math.round(ms)} ms${tries}` };
  }
  const metrics = measured(attrs, ms, 0);
  switch (code) {
    case 'ENOTFOUND':
      return { state: 'crit', reason: 'nxdomain', message: `${attrs.name} does not exist (NXDOMAIN from ${where(attrs)})`, metrics };
    case 'ESERVFAIL':
      return { state: 'crit', reason: 'servfail', message: `${where(attrs)} answered SERVFAIL for ${question(attrs)}`, metrics };
    case 'ENODATA': {
      const expected = attrs.expect === undefined ? '' : `; expected ${bracketed(attrs.expect.map(toValue), attrs.type)}`;
      return { state: 'crit', reason: 'no-answer', message: `${attrs.name} has no ${attrs.type} records at ${where(attrs)}${expected}`, metrics };
    }
    default: {
      const hint = ERROR_HINTS.get(code);
      const why = hint === undefined ? code : `${code}: ${hint}`;
      return { state: 'crit', reason: 'dns-error', message: `querying ${where(attrs)} for ${question(attrs)} failed (${why})`, metrics };
    }
  }
}

function answersMatch(expect: readonly ExpectedAnswer[], answers: readonly string[], match: DnsMatchMode): boolean {
  for (const expected of expect) {
    if (!answers.some((answer) => matches(expected, answer))) return false;
  }
  if (match === 'contains') return true;
  return answers.every((answer) => expect.some((expected) => matches(expected, answer)));
}

function matches(expected: ExpectedAnswer, answer: string): boolean {
  if (expected.anyPriority === undefined) return answer === expected.value;
  // `10 mail.example.org` against `mail.example.org`: the exchange after the priority and its space.
  const { value } = expected;
  return answer.length > value.length && answer.endsWith(value) && answer.charCodeAt(answer.length - value.length - 1) === 32;
}

function toValue(expected: ExpectedAnswer): string {
  return expected.value;
}

function measured({ responseWarnMs, responseCritMs }: DnsAttributes, ms: number, answers: number): readonly Metric[] {
  return [gauge('response_time', ms, 'ms', { warn: responseWarnMs, crit: responseCritMs }), gauge('answers', answers)];
}

/** `example.org A` */
function question({ name, type }: DnsAttributes): string {
  return `${name} ${type}`;
}

/** Which server answered is not known: with several, any of them may have. */
function where({ servers }: DnsAttributes): string {
  if (servers === undefined) return 'the system resolvers';
  return servers.length === 1 ? (servers[0] as string) : `one of ${servers.join(', ')}`;
}

/** Up to LIST_ITEMS values, TXT quoted; `nothing` for none. */
function list(values: readonly string[], type: DnsRecordType): string {
  if (values.length === 0) return 'nothing';
  const shown = values.length > LIST_ITEMS ? values.slice(0, LIST_ITEMS) : values;
  const text = type === 'TXT' ? shown.map(quote).join(', ') : shown.join(', ');
  return values.length > LIST_ITEMS ? `${text} and ${values.length - LIST_ITEMS} more` : text;
}

/** `[a, b]`, or `nothing`: for a list inside a sentence that has commas of its own. */
function bracketed(values: readonly string[], type: DnsRecordType): string {
  return values.length === 0 ? 'nothing' : `[${list(values, type)}]`;
}

function quote(text: string): string {
  return text.length > QUOTE_CHARS ? `${JSON.stringify(text.slice(0, QUOTE_CHARS))}…` : JSON.stringify(text);
}

function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 1000) / 1000;
}

