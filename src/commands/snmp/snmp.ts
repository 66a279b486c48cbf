import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Varbind } from 'net-snmp';
import { nowOf, type Clock } from '../../core/clock.js';
import { formatMs } from '../../core/format.js';
import { gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome, Result, State } from '../../results/result.js';
import { defineCommand, type Command, type CommandContext } from '../command.js';
import { hideSecrets, snmpAttributesSchema, type SnmpAttributes, type ThresholdDirection } from './attributes.js';
import { compareSamples, keptSampleMetrics, ratePerSecond, sampleFromResult, sampleMetrics, type CounterSample } from './counter.js';
import { MAX_WALK_VALUES, NOTHING_SENT, query, type SnmpAnswer, type SnmpRequest } from './session.js';
import { readValue, showValue, varbindException, type SnmpValue, type VarbindException } from './values.js';

export type { SnmpAttributes } from './attributes.js';

/** What `snmpCommand` can be given. */
export interface SnmpCommandOptions {
  /** Where counter readings take their time from (`sampled_at`); default the system clock. */
  readonly clock?: Clock;
}

/** sysUpTime.0, read with every counter to tell an agent's restart from a wrap. */
const SYS_UP_TIME = '1.3.6.1.2.1.1.3.0';
/** A wrap is implausible when it would mean more than this share of the interface's speed (slack for timing). */
const SPEED_SLACK = 1.1;
/** How many values a walk's message names. */
const LIST_VALUES = 5;

/**
 * `snmp`: reads one object (GET, `oid`) or a subtree (WALK, `walk`) over SNMP v2c or v3 and judges it:
 * - `gauge`: the number (after `scale`) against `warn`/`crit`, above or below (`direction`); a walk
 *   judges every value, and its worst is the `value` metric;
 * - `counter`: the per-second rate since the previous run's reading (kept in its metrics `counter`,
 *   `counter_high`/`counter_low` beyond 2^53, `sampled_at`, `agent_uptime`), across one Counter32 or
 *   Counter64 wrap, against `warn`/`crit` and, with `speedOid` or `speedBps`, `warnPercent`/`critPercent`
 *   of the interface's speed (the counter counts octets: ifInOctets, ifHCInOctets). The first reading,
 *   and one after a reset (the agent restarted, or the counter went back further than a wrap explains),
 *   is `ok` with no rate yet; a failed run keeps the previous reading for the next one;
 * - `status`: the value must be one of `expect` (for a walk, every value).
 *
 * Metrics: `value` (gauge, status) or `rate` and `utilization` (%) (counter), `count` (walk), `response_time`
 * (ms, name resolution and v3 discovery included). Reasons: `ok`; `threshold` (warn or crit);
 * `unexpected-status` (crit); `first-sample` and `reset` (ok, no rate yet); `no-such-object` (crit: the
 * agent has nothing at the OID, or a walk found nothing); `no-such-instance` (crit: the object has no such
 * index); `timeout` (crit: no answer, which is also what a wrong v2c community or v3 privKey gets, agents
 * dropping both silently); `unreachable` (crit: ICMP unreachable, e.g. nothing on the UDP port); `dns`
 * (crit); `auth-failed` (unknown: v3 unknown user, wrong key or protocol); `unexpected-type`
 * (unknown: not a number for gauge, not a counter for counter); `no-speed` (unknown: percent thresholds
 * with no speed to compare with); `too-many-values` (unknown: a walk of more than 10,000 values);
 * `snmp-error` (unknown: the agent answered with an error status, or an answer net-snmp refused).
 *
 * Secrets (community, keys) never appear in a message or an issue.
 */
export function snmpCommand(options: SnmpCommandOptions = {}): Command<SnmpAttributes> {
  const now = nowOf(options.clock);
  const command = defineCommand({ name: 'snmp', attributes: snmpAttributesSchema, run: (attrs, ctx) => runSnmp(attrs, ctx, now) });
  return { ...command, parse: (raw) => hideSecrets(command.parse(raw), raw) };
}

async function runSnmp(attrs: SnmpAttributes, ctx: CommandContext, now: () => number): Promise<CommandOutcome> {
  const startedAt = performance.now();
  const answer = await query(attrs, requestOf(attrs), ctx);
  const ms = Math.round((performance.now() - startedAt) * 1000) / 1000;
  if (answer.kind === 'failed') return failed(attrs, answer, ms, ctx.previous);
  if (attrs.walk) return judgeWalk(attrs, answer, ms);
  const [found, ...extra] = answer.varbinds;
  if (found === undefined) return { state: 'unknown', reason: 'snmp-error', message: `${where(attrs)} answered with no value for ${attrs.oid}`, metrics: [responseTime(ms)] };
  const exception = varbindException(found);
  if (exception !== undefined) return missing(attrs, exception, ms, ctx.previous);
  const value = readValue(found);
  switch (attrs.mode) {
    case 'gauge':
      return judgeGauge(attrs, value, ms);
    case 'status':
      return judgeStatus(attrs, value, ms);
    case 'counter':
      return judgeCounter(attrs, value, extra, ctx.previous, now(), ms);
  }
}

function requestOf(attrs: SnmpAttributes): SnmpRequest {
  if (attrs.walk) return { kind: 'walk', oid: attrs.oid };
  if (attrs.mode !== 'counter') return { kind: 'get', oids: [attrs.oid] };
  return { kind: 'get', oids: attrs.speed !== undefined && 'oid' in attrs.speed ? [attrs.oid, SYS_UP_TIME, attrs.speed.oid] : [attrs.oid, SYS_UP_TIME] };
}

function judgeGauge(attrs: SnmpAttributes, value: SnmpValue, ms: number): CommandOutcome {
  if (value.number === undefined) return unexpectedType(attrs, attrs.oid, value, 'a number', ms);
  const scaled = value.number * attrs.scale;
  const metrics = [gauge('value', round(scaled), attrs.unit, metricThresholds(attrs, attrs.warn, attrs.crit)), responseTime(ms)];
  const raw = attrs.scale === 1 ? '' : ` (raw ${value.text})`;
  const base = `${attrs.oid} = ${showNumber(scaled, attrs.unit)}${raw} from ${where(attrs)} in ${formatMs(ms)} ms`;
  const breach = breached(scaled, attrs.warn, attrs.crit, attrs.direction, attrs.unit);
  if (breach !== undefined) return { state: breach.state, reason: 'threshold', message: `${base}, ${breach.text}`, metrics };
  return { state: 'ok', reason: 'ok', message: base, metrics };
}

function judgeStatus(attrs: SnmpAttributes, value: SnmpValue, ms: number): CommandOutcome {
  const expect = attrs.expect ?? [];
  const metrics = value.number === undefined ? [responseTime(ms)] : [gauge('value', value.number, attrs.unit), responseTime(ms)];
  if (expect.includes(value.text)) return { state: 'ok', reason: 'ok', message: `${attrs.oid} = ${showValue(value)} from ${where(attrs)} in ${formatMs(ms)} ms, as expected`, metrics };
  return { state: 'crit', reason: 'unexpected-status', message: `expected ${attrs.oid} to be ${expected(expect)}, got ${showValue(value)} from ${where(attrs)}`, metrics };
}

function judgeCounter(attrs: SnmpAttributes, value: SnmpValue, extra: readonly Varbind[], previous: Result | null, atMs: number, ms: number): CommandOutcome {
  const { counter } = value;
  if (counter === undefined) return unexpectedType(attrs, attrs.oid, value, 'a Counter32 or Counter64', ms);
  const [uptime, speedVarbind] = extra;
  const uptimeTicks = uptime !== undefined && varbindException(uptime) === undefined && typeof uptime.value === 'number' ? uptime.value : undefined;
  const sample: CounterSample = uptimeTicks === undefined ? { value: counter.value, width: counter.width, atMs } : { value: counter.value, width: counter.width, atMs, uptimeTicks };
  const speed = speedOf(attrs, speedVarbind);
  const maxPerSecond = typeof speed === 'number' ? (speed / 8) * SPEED_SLACK : undefined;
  const change = compareSamples(sampleFromResult(previous, counter.width), sample, maxPerSecond);
  const kept = sampleMetrics(sample, attrs.unit);
  const reading = `${value.type} ${value.text}`;

  if (change.kind === 'first') {
    return { state: 'ok', reason: 'first-sample', message: `first reading of ${attrs.oid} from ${where(attrs)}: ${reading}; the rate comes with the next run`, metrics: [responseTime(ms), ...kept] };
  }
  if (change.kind === 'reset') {
    return { state: 'ok', reason: 'reset', message: `${attrs.oid} at ${where(attrs)} was reset: ${change.why}; the rate comes with the next run`, metrics: [responseTime(ms), ...kept] };
  }

  const perSecond = ratePerSecond(change.delta, change.elapsedMs);
  const rate = perSecond * attrs.scale;
  const rateUnit = attrs.unit === '' ? '/s' : `${attrs.unit}/s`;
  const utilization = typeof speed === 'number' ? ((perSecond * 8) / speed) * 100 : undefined;
  const metrics: Metric[] = [gauge('rate', round(rate), rateUnit, metricThresholds(attrs, attrs.warn, attrs.crit))];
  if (utilization !== undefined) metrics.push(gauge('utilization', round(utilization), '%', metricThresholds(attrs, attrs.warnPercent, attrs.critPercent)));
  metrics.push(responseTime(ms), ...kept);

  const share = utilization === undefined ? '' : ` (${formatNumber(utilization)}% of ${formatBps(speed as number)})`;
  const wrapped = change.wrapped ? `; the counter wrapped at 2^${counter.width}` : '';
  const base = `${attrs.oid} at ${where(attrs)}: ${showNumber(rate, rateUnit)}${share} over ${formatNumber(change.elapsedMs / 1000)} s${wrapped}`;
  const wantsSpeed = attrs.warnPercent !== undefined || attrs.critPercent !== undefined;
  const rateBreach = breached(rate, attrs.warn, attrs.crit, attrs.direction, rateUnit);
  const shareBreach = utilization === undefined ? undefined : breached(utilization, attrs.warnPercent, attrs.critPercent, attrs.direction, '%', 'of the speed');
  const worst = rateBreach === undefined || (shareBreach?.state === 'crit' && rateBreach.state !== 'crit') ? shareBreach : rateBreach;
  if (worst?.state === 'crit') return { state: 'crit', reason: 'threshold', message: `${base}, ${worst.text}`, metrics };
  if (wantsSpeed && typeof speed !== 'number') return { state: 'unknown', reason: 'no-speed', message: `${base}; no interface speed to take a percentage of: ${speed ?? 'none'}`, metrics };
  if (worst !== undefined) return { state: 'warn', reason: 'threshold', message: `${base}, ${worst.text}`, metrics };
  return { state: 'ok', reason: 'ok', message: base, metrics };
}

/** The interface's speed in bits per second, or why there is none to use. */
function speedOf(attrs: SnmpAttributes, varbind: Varbind | undefined): number | string | undefined {
  const { speed } = attrs;
  if (speed === undefined) return undefined;
  if ('bps' in speed) return speed.bps;
  if (varbind === undefined) return `no value for ${speed.oid}`;
  const exception = varbindException(varbind);
  if (exception !== undefined) return `${speed.oid} is ${exception.replace(/-/g, ' ')}`;
  const value = readValue(varbind);
  if (value.number === undefined) return `${speed.oid} is not a number (${value.type} ${showValue(value)})`;
  // Agents give 0 for an interface whose speed they do not know (virtual ones, most often).
  if (value.number <= 0) return `${speed.oid} is ${value.number} (speed unknown)`;
  return value.number * speed.bitsPerUnit;
}

function judgeWalk(attrs: SnmpAttributes, answer: Extract<SnmpAnswer, { kind: 'answer' }>, ms: number): CommandOutcome {
  const root = attrs.oid;
  const count = answer.varbinds.length;
  if (count === 0) return { state: 'crit', reason: 'no-such-object', message: `nothing under ${root} at ${where(attrs)}`, metrics: [gauge('count', 0), responseTime(ms)] };
  if (answer.truncated) {
    return { state: 'unknown', reason: 'too-many-values', message: `more than ${MAX_WALK_VALUES} values under ${root} at ${where(attrs)}: walk a smaller subtree`, metrics: [responseTime(ms)] };
  }
  const entries = answer.varbinds.map((varbind) => ({ index: varbind.oid.startsWith(`${root}.`) ? varbind.oid.slice(root.length) : varbind.oid, value: readValue(varbind) }));
  const counted = gauge('count', count);
  const values = `${count} value${count === 1 ? '' : 's'} under ${root} at ${where(attrs)}`;

  if (attrs.mode === 'status') {
    const expect = attrs.expect ?? [];
    const bad = entries.filter((entry) => !expect.includes(entry.value.text));
    const metrics = [counted, responseTime(ms)];
    if (bad.length === 0) return { state: 'ok', reason: 'ok', message: `${values} in ${formatMs(ms)} ms, all ${expected(expect)}`, metrics };
    return {
      state: 'crit',
      reason: 'unexpected-status',
      message: `expected every value under ${root} to be ${expected(expect)}, ${bad.length} of ${count} are not: ${listed(bad.map((entry) => `${entry.index} = ${showValue(entry.value)}`))} (${where(attrs)})`,
      metrics,
    };
  }

  const scaled: { index: string; value: number }[] = [];
  for (const entry of entries) {
    if (entry.value.number === undefined) return unexpectedType(attrs, `${root}${entry.index}`, entry.value, 'a number', ms);
    scaled.push({ index: entry.index, value: entry.value.number * attrs.scale });
  }
  const { direction, warn, crit, unit } = attrs;
  const worst = scaled.reduce((a, b) => (direction === 'above' ? (b.value > a.value ? b : a) : b.value < a.value ? b : a));
  const metrics = [gauge('value', round(worst.value), unit, metricThresholds(attrs, warn, crit)), counted, responseTime(ms)];
  const extreme = direction === 'above' ? 'highest' : 'lowest';
  const breach = breached(worst.value, warn, crit, direction, unit);
  if (breach === undefined) return { state: 'ok', reason: 'ok', message: `${values} in ${formatMs(ms)} ms, ${extreme} ${worst.index} = ${showNumber(worst.value, unit)}`, metrics };
  const limit = (breach.state === 'crit' ? crit : warn) as number;
  const beyond = scaled.filter((entry) => (direction === 'above' ? entry.value >= limit : entry.value <= limit));
  return {
    state: breach.state,
    reason: 'threshold',
    message: `${beyond.length} of ${values} ${breach.text}: ${listed(beyond.map((entry) => `${entry.index} = ${showNumber(entry.value, unit)}`))}`,
    metrics,
  };
}

function missing(attrs: SnmpAttributes, exception: VarbindException, ms: number, previous: Result | null): CommandOutcome {
  const metrics = [responseTime(ms), ...kept(attrs, previous)];
  if (exception === 'no-such-instance') {
    return { state: 'crit', reason: 'no-such-instance', message: `no such instance ${attrs.oid} at ${where(attrs)}: the object exists, this index does not`, metrics };
  }
  return { state: 'crit', reason: 'no-such-object', message: `no such object ${attrs.oid} at ${where(attrs)}`, metrics };
}

function unexpectedType(attrs: SnmpAttributes, oid: string, value: SnmpValue, wanted: string, ms: number): CommandOutcome {
  return {
    state: 'unknown',
    reason: 'unexpected-type',
    message: `expected ${wanted} at ${oid} for mode ${attrs.mode}, got ${value.type} ${showValue(value)} from ${where(attrs)}`,
    metrics: [responseTime(ms)],
  };
}

function failed(attrs: SnmpAttributes, answer: Extract<SnmpAnswer, { kind: 'failed' }>, ms: number, previous: Result | null): CommandOutcome {
  const carried = kept(attrs, previous);
  switch (answer.reason) {
    case 'timeout': {
      const message = answer.detail === NOTHING_SENT ? `timed out before querying ${where(attrs)}` : `no answer from ${where(attrs)} within ${formatMs(ms)} ms${silenceHint(attrs)}`;
      return { state: 'crit', reason: 'timeout', message, metrics: carried };
    }
    case 'unreachable':
      return { state: 'crit', reason: 'unreachable', message: `${where(attrs)} is unreachable: ${answer.detail}`, metrics: carried };
    case 'dns':
      return { state: 'crit', reason: 'dns', message: `cannot resolve host ${attrs.host}: ${answer.detail}`, metrics: carried };
    case 'auth-failed':
      return { state: 'unknown', reason: 'auth-failed', message: `SNMPv3 authentication with ${where(attrs)} failed: ${answer.detail}`, metrics: [responseTime(ms), ...carried] };
    case 'snmp-error':
      return { state: 'unknown', reason: 'snmp-error', message: `reading ${attrs.oid} at ${where(attrs)} failed: ${answer.detail}`, metrics: [responseTime(ms), ...carried] };
  }
}

/** What else an agent's silence can mean: it drops what it cannot authenticate or decrypt, without a word. */
function silenceHint({ security }: SnmpAttributes): string {
  if (security.version === '2c') return ' (an agent ignores a wrong community too)';
  return security.level === 'authPriv' ? ' (an agent ignores a request it cannot decrypt too: check privKey and privProtocol)' : '';
}

/** In counter mode, a run that read no counter passes the previous reading on, so the next rate spans the gap. */
function kept(attrs: SnmpAttributes, previous: Result | null): readonly Metric[] {
  return attrs.mode === 'counter' ? keptSampleMetrics(previous) : [];
}

/** Whether `value` reached `crit` or `warn` on the bad side, and the words for it. */
function breached(
  value: number,
  warn: number | undefined,
  crit: number | undefined,
  direction: ThresholdDirection,
  unit: string,
  of = '',
): { state: State; text: string } | undefined {
  const reached = (limit: number | undefined): limit is number => limit !== undefined && (direction === 'above' ? value >= limit : value <= limit);
  const side = direction === 'above' ? 'at or above' : 'at or below';
  const suffix = of === '' ? '' : ` ${of}`;
  if (reached(crit)) return { state: 'crit', text: `${side} the critical threshold of ${showNumber(crit, unit)}${suffix}` };
  if (reached(warn)) return { state: 'warn', text: `${side} the warning threshold of ${showNumber(warn, unit)}${suffix}` };
  return undefined;
}

/** A metric's thresholds mean "at or above" (see Metric): they are left off when low is bad. */
function metricThresholds(attrs: SnmpAttributes, warn: number | undefined, crit: number | undefined): { warn?: number; crit?: number } | undefined {
  if (attrs.direction !== 'above') return undefined;
  return { ...(warn === undefined ? {} : { warn }), ...(crit === undefined ? {} : { crit }) };
}

function responseTime(ms: number): Metric {
  return gauge('response_time', ms, 'ms');
}

/** `127.0.0.1:161`, `[::1]:161`. */
function where({ host, port }: SnmpAttributes): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `1`, `one of 1, 5`, `"up"`. */
function expected(values: readonly string[]): string {
  const shown = values.map((value) => (/^[+-]?\d+(?:\.\d+)?$/.test(value) ? value : JSON.stringify(value)));
  return shown.length === 1 ? (shown[0] as string) : `one of ${shown.join(', ')}`;
}

function listed(items: readonly string[]): string {
  if (items.length <= LIST_VALUES) return items.join(', ');
  return `${items.slice(0, LIST_VALUES).join(', ')} and ${items.length - LIST_VALUES} more`;
}

/** `93%`, `1234.5 B/s`, `100/s`, `0.15`. */
function showNumber(value: number, unit: string): string {
  if (unit === '') return formatNumber(value);
  return unit === '%' || unit === '/s' ? `${formatNumber(value)}${unit}` : `${formatNumber(value)} ${unit}`;
}

/** Whole numbers as they are; others to two decimals, or three significant digits under 1. */
function formatNumber(value: number): string {
  if (Number.isInteger(value)) return String(value);
  return String(Math.abs(value) < 1 ? Number(value.toPrecision(3)) : Number(value.toFixed(2)));
}

/** `100 Mb/s`, `2.5 Gb/s`. */
function formatBps(bps: number): string {
  for (const [unit, size] of [
    ['Tb/s', 1e12],
    ['Gb/s', 1e9],
    ['Mb/s', 1e6],
    ['kb/s', 1e3],
  ] as const) {
    if (bps >= size) return `${formatNumber(bps / size)} ${unit}`;
  }
  return `${formatNumber(bps)} b/s`;
}

/** Metric values to three decimals: a rate's further digits are noise. Whole numbers stay exact, however large. */
function round(value: number): number {
  return Number.isInteger(value) ? value : Math.round(value * 1000) / 1000;
}
