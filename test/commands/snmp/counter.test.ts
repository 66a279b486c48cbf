import { describe, expect, it } from 'vitest';
import { compareSamples, keptSampleMetrics, ratePerSecond, sampleFromResult, sampleMetrics, type CounterSample } from '../../../src/commands/snmp/counter.js';
import { gauge } from '../../../src/results/metric.js';
import { toResult } from '../../../src/results/result.js';

const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

function sample(value: bigint, atMs: number, width: 32 | 64 = 32, uptimeTicks?: number): CounterSample {
  return uptimeTicks === undefined ? { value, width, atMs } : { value, width, atMs, uptimeTicks };
}

describe('compareSamples: deltas and wraps', () => {
  it('has nothing to compare on the first reading', () => {
    expect(compareSamples(undefined, sample(5n, T0))).toEqual({ kind: 'first' });
  });

  it('gives the increase and the time it took', () => {
    expect(compareSamples(sample(1000n, T0), sample(61_000n, T0 + MINUTE))).toEqual({ kind: 'delta', delta: 60_000n, elapsedMs: MINUTE, wrapped: false });
  });

  it('counts an unchanged counter as no increase', () => {
    expect(compareSamples(sample(7n, T0), sample(7n, T0 + MINUTE))).toMatchObject({ kind: 'delta', delta: 0n });
  });

  it('takes a Counter32 that went from near 2^32 to a small value as one wrap', () => {
    const change = compareSamples(sample(4_294_967_000n, T0), sample(704n, T0 + MINUTE));
    expect(change).toEqual({ kind: 'delta', delta: 1000n, elapsedMs: MINUTE, wrapped: true });
  });

  it('wraps a Counter32 at exactly 2^32: from the maximum to 0 is one step', () => {
    expect(compareSamples(sample(4_294_967_295n, T0), sample(0n, T0 + MINUTE))).toMatchObject({ kind: 'delta', delta: 1n, wrapped: true });
  });

  it('wraps a Counter64 at 2^64, exactly, in BigInt', () => {
    const max = 2n ** 64n - 1n;
    const change = compareSamples(sample(max - 499n, T0, 64), sample(500n, T0 + MINUTE, 64));
    expect(change).toEqual({ kind: 'delta', delta: 1000n, elapsedMs: MINUTE, wrapped: true });
  });

  it('keeps a Counter64 delta exact beyond 2^53', () => {
    const before = 2n ** 60n + 1n;
    expect(compareSamples(sample(before, T0, 64), sample(before + 3n, T0 + 1000, 64))).toMatchObject({ kind: 'delta', delta: 3n });
  });
});

describe('compareSamples: resets', () => {
  it('takes a counter that went back by less than half its range as a reset, not a wrap', () => {
    const change = compareSamples(sample(5_000_000n, T0), sample(100n, T0 + MINUTE));
    expect(change).toEqual({ kind: 'reset', why: 'the counter went back from 5000000 to 100, more than a wrap at 2^32 explains' });
  });

  it('takes a small Counter64 that went back as a reset: a wrap at 2^64 would be an increase of nearly 2^64', () => {
    expect(compareSamples(sample(10_000_000_000n, T0, 64), sample(5n, T0 + MINUTE, 64))).toMatchObject({ kind: 'reset' });
  });

  it('takes a previous reading wider than the counter (another OID now) as a reset', () => {
    expect(compareSamples(sample(2n ** 40n, T0, 64), sample(5n, T0 + MINUTE, 32))).toMatchObject({ kind: 'reset' });
  });

  it('refuses a wrap that would mean more than the interface can carry', () => {
    // A wrap from 3,000,000,000 to 1000 is 1,294,968,296 octets in 60 s, about 21.6 MB/s; the interface carries 1 MB/s.
    const change = compareSamples(sample(3_000_000_000n, T0), sample(1_000n, T0 + MINUTE), 1_000_000);
    expect(change).toEqual({ kind: 'reset', why: 'the counter went back from 3000000000 to 1000, and a wrap would mean more than the interface can carry' });
  });

  it('accepts a wrap the interface could carry', () => {
    const change = compareSamples(sample(4_294_967_000n, T0), sample(704n, T0 + MINUTE), 1_000_000);
    expect(change).toMatchObject({ kind: 'delta', delta: 1000n, wrapped: true });
  });

  it('takes sysUpTime going back as a restart, even when the counter went up', () => {
    const change = compareSamples(sample(100n, T0, 32, 500_000), sample(200n, T0 + MINUTE, 32, 300));
    expect(change).toEqual({ kind: 'reset', why: 'the agent restarted (sysUpTime went back from 1h 23m 20s to 3s)' });
  });

  it('does not take sysUpTime wrapping at 2^32 hundredths as a restart', () => {
    const change = compareSamples(sample(100n, T0, 32, 4_294_967_000), sample(200n, T0 + MINUTE, 32, 5_704));
    expect(change).toMatchObject({ kind: 'delta', delta: 100n });
  });

  it('has no rate when the clock did not advance', () => {
    expect(compareSamples(sample(1n, T0), sample(2n, T0))).toMatchObject({ kind: 'reset', why: 'the clock did not advance since the previous reading (0 ms)' });
  });
});

describe('ratePerSecond', () => {
  it('divides the delta by the elapsed seconds', () => {
    expect(ratePerSecond(60_000n, MINUTE)).toBe(1000);
    expect(ratePerSecond(1n, 4000)).toBe(0.25);
  });
});

describe('keeping a sample in metrics', () => {
  it('keeps a counter, its time and the uptime, and reads them back', () => {
    const kept = sampleMetrics(sample(123_456n, T0, 32, 4242), 'B');
    expect(kept).toEqual([
      { name: 'counter', value: 123_456, unit: 'B', kind: 'counter' },
      { name: 'sampled_at', value: T0, unit: 'ms', kind: 'gauge' },
      { name: 'agent_uptime', value: 42.42, unit: 's', kind: 'gauge' },
    ]);
    expect(sampleFromResult(toResult({ state: 'ok', reason: 'ok', message: '', metrics: kept }, T0, 1), 32)).toEqual(sample(123_456n, T0, 32, 4242));
  });

  it('keeps a Counter64 beyond 2^53 exactly, in its high and low 32 bits', () => {
    const value = 2n ** 64n - 3n;
    const kept = sampleMetrics(sample(value, T0, 64), '');
    expect(kept.find((metric) => metric.name === 'counter')).toMatchObject({ unit: 'c', kind: 'counter' });
    expect(kept.find((metric) => metric.name === 'counter_high')?.value).toBe(4_294_967_295);
    expect(kept.find((metric) => metric.name === 'counter_low')?.value).toBe(4_294_967_293);
    expect(sampleFromResult(toResult({ state: 'ok', reason: 'ok', message: '', metrics: kept }, T0, 1), 64)?.value).toBe(value);
  });

  it('finds no sample in the first run, or in a result without one', () => {
    expect(sampleFromResult(null, 32)).toBeUndefined();
    expect(sampleFromResult(toResult({ state: 'crit', reason: 'timeout', message: '' }, T0, 1), 32)).toBeUndefined();
    const broken = toResult({ state: 'ok', reason: 'ok', message: '', metrics: [gauge('counter', 1.5), gauge('sampled_at', T0)] }, T0, 1);
    expect(sampleFromResult(broken, 32)).toBeUndefined();
  });

  it('passes on only the metrics that keep a sample', () => {
    const previous = toResult({ state: 'ok', reason: 'ok', message: '', metrics: [gauge('rate', 5), ...sampleMetrics(sample(9n, T0), '')] }, T0, 1);
    expect(keptSampleMetrics(previous).map((metric) => metric.name)).toEqual(['counter', 'sampled_at']);
    expect(keptSampleMetrics(null)).toEqual([]);
  });
});
