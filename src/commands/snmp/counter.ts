import { counter, gauge, type Metric } from '../../results/metric.js';
import type { Result } from '../../results/result.js';

/**
 * Counter samples: the per-second rate between two readings of an SNMP counter, across a wrap, and
 * how a reading is kept in a Result's metrics so that the next run (`ctx.previous`) can take it up.
 */

/** Counter32 wraps at 2^32, Counter64 at 2^64. */
export type CounterWidth = 32 | 64;

/** One reading of a counter. */
export interface CounterSample {
  readonly value: bigint;
  readonly width: CounterWidth;
  /** Epoch milliseconds when the answer arrived. */
  readonly atMs: number;
  /** The agent's sysUpTime then, in hundredths of a second, when it answered for it. */
  readonly uptimeTicks?: number;
}

/** What two readings say about the counter. */
export type CounterChange =
  /** No earlier reading to compare with. */
  | { readonly kind: 'first' }
  /** The counter started again (the agent restarted, or the count was cleared): no rate this time. */
  | { readonly kind: 'reset'; readonly why: string }
  /** `delta` counted in `elapsedMs`; `wrapped` when it passed the counter's maximum on the way. */
  | { readonly kind: 'delta'; readonly delta: bigint; readonly elapsedMs: number; readonly wrapped: boolean };

/** Metric names a sample is kept under. */
export const CounterMetrics = {
  /** The raw counter (kind `counter`), exact up to 2^53. */
  counter: 'counter',
  /** Beyond 2^53, where a number is no longer exact: the high and low 32 bits of the counter. */
  high: 'counter_high',
  low: 'counter_low',
  /** Epoch milliseconds of the reading. */
  sampledAt: 'sampled_at',
  /** The agent's sysUpTime in seconds (two decimals). */
  uptime: 'agent_uptime',
} as const;

const TWO_32 = 2n ** 32n;
/** sysUpTime is a TimeTicks: 32 bits of hundredths of a second, wrapping after 497 days. */
const UPTIME_MODULUS = 2 ** 32;

/**
 * Compares two readings. A counter lower than before is taken as having wrapped once when that is
 * plausible: the increase it implies is under half the counter's range, and (given `maxPerSecond`, what
 * the interface could carry) no faster than that. Otherwise, or when the agent's uptime went back, the
 * counter was reset. Several wraps between readings cannot be seen: poll a Counter32 often enough (a
 * 1 Gb/s interface wraps ifInOctets in 34 s), or use its Counter64 (ifHCInOctets).
 */
export function compareSamples(previous: CounterSample | undefined, current: CounterSample, maxPerSecond?: number): CounterChange {
  if (previous === undefined) return { kind: 'first' };
  const elapsedMs = current.atMs - previous.atMs;
  if (elapsedMs <= 0) return { kind: 'reset', why: `the clock did not advance since the previous reading (${elapsedMs} ms)` };
  if (agentRestarted(previous, current, elapsedMs)) {
    return { kind: 'reset', why: `the agent restarted (sysUpTime went back from ${formatTicks(previous.uptimeTicks ?? 0)} to ${formatTicks(current.uptimeTicks ?? 0)})` };
  }
  if (current.value >= previous.value) return { kind: 'delta', delta: current.value - previous.value, elapsedMs, wrapped: false };
  const modulus = 2n ** BigInt(current.width);
  const wrappedDelta = current.value + modulus - previous.value;
  const went = `the counter went back from ${previous.value} to ${current.value}`;
  // Negative when the previous reading does not fit this width: the OID now names another counter.
  if (wrappedDelta <= 0n || wrappedDelta >= modulus / 2n) return { kind: 'reset', why: `${went}, more than a wrap at 2^${current.width} explains` };
  if (maxPerSecond !== undefined && ratePerSecond(wrappedDelta, elapsedMs) > maxPerSecond) {
    return { kind: 'reset', why: `${went}, and a wrap would mean more than the interface can carry` };
  }
  return { kind: 'delta', delta: wrappedDelta, elapsedMs, wrapped: true };
}

/** `delta` per second over `elapsedMs`. */
export function ratePerSecond(delta: bigint, elapsedMs: number): number {
  return (Number(delta) * 1000) / elapsedMs;
}

/**
 * An agent restarted when its sysUpTime went back, unless sysUpTime itself could have wrapped in the
 * time between (twice the elapsed time, for slack between the two clocks).
 */
function agentRestarted(previous: CounterSample, current: CounterSample, elapsedMs: number): boolean {
  const before = previous.uptimeTicks;
  const now = current.uptimeTicks;
  if (before === undefined || now === undefined || now >= before) return false;
  return before + (2 * elapsedMs) / 10 < UPTIME_MODULUS;
}

/** The metrics that keep `sample` for the next run; `unit` is what the counter counts (`c` when none). */
export function sampleMetrics(sample: CounterSample, unit: string): Metric[] {
  const metrics = [counter(CounterMetrics.counter, Number(sample.value), unit === '' ? 'c' : unit)];
  if (sample.value > BigInt(Number.MAX_SAFE_INTEGER)) {
    metrics.push(gauge(CounterMetrics.high, Number(sample.value / TWO_32)), gauge(CounterMetrics.low, Number(sample.value % TWO_32)));
  }
  metrics.push(gauge(CounterMetrics.sampledAt, sample.atMs, 'ms'));
  if (sample.uptimeTicks !== undefined) metrics.push(gauge(CounterMetrics.uptime, sample.uptimeTicks / 100, 's'));
  return metrics;
}

/**
 * The sample a previous Result kept, or `undefined` when it has none (the first run, a failed run, or
 * metrics that do not make one). Its width is the current reading's: a counter that changed type reads as
 * a reset through `compareSamples`.
 */
export function sampleFromResult(previous: Result | null, width: CounterWidth): CounterSample | undefined {
  if (previous === null) return undefined;
  const values = new Map<string, number>();
  for (const metric of previous.metrics) values.set(metric.name, metric.value);
  const raw = values.get(CounterMetrics.counter);
  const atMs = values.get(CounterMetrics.sampledAt);
  if (raw === undefined || atMs === undefined || !Number.isFinite(atMs)) return undefined;
  const high = values.get(CounterMetrics.high);
  const low = values.get(CounterMetrics.low);
  let value: bigint;
  if (high !== undefined && low !== undefined && Number.isSafeInteger(high) && Number.isSafeInteger(low)) value = BigInt(high) * TWO_32 + BigInt(low);
  else if (Number.isSafeInteger(raw) && raw >= 0) value = BigInt(raw);
  else return undefined;
  const uptime = values.get(CounterMetrics.uptime);
  return uptime === undefined ? { value, width, atMs } : { value, width, atMs, uptimeTicks: Math.round(uptime * 100) };
}

/** The metrics of `previous` that keep its reading: for a run that read nothing to pass on. */
export function keptSampleMetrics(previous: Result | null): readonly Metric[] {
  if (previous === null) return [];
  const names: ReadonlySet<string> = new Set(Object.values(CounterMetrics));
  return previous.metrics.filter((metric) => names.has(metric.name));
}

/** Hundredths of a second as `3d 4h 5m 6.07s`-like text, shortest first units dropped: `2m 3.45s`. */
function formatTicks(ticks: number): string {
  let seconds = ticks / 100;
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
  }
  parts.push(`${Number(seconds.toFixed(2))}s`);
  return parts.join(' ');
}
