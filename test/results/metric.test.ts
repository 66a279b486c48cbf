import { describe, expect, it } from 'vitest';
import { counter, gauge } from '../../src/results/metric.js';

describe('gauge and counter', () => {
  it('keeps exactly the thresholds that are set, and no key for the others', () => {
    expect(gauge('rtt', 1.5, 'ms')).toStrictEqual({ name: 'rtt', value: 1.5, unit: 'ms', kind: 'gauge' });
    expect(gauge('rtt', 1.5, 'ms', { warn: 10 })).toStrictEqual({ name: 'rtt', value: 1.5, unit: 'ms', kind: 'gauge', warn: 10 });
    expect(gauge('rtt', 1.5, 'ms', { crit: 20 })).toStrictEqual({ name: 'rtt', value: 1.5, unit: 'ms', kind: 'gauge', crit: 20 });
    expect(gauge('rtt', 1.5, 'ms', { warn: 10, crit: 20 })).toStrictEqual({ name: 'rtt', value: 1.5, unit: 'ms', kind: 'gauge', warn: 10, crit: 20 });
    expect(Object.keys(gauge('loss', 0, '%', { warn: undefined, crit: undefined }))).toEqual(['name', 'value', 'unit', 'kind']);
    expect(gauge('count', 3)).toStrictEqual({ name: 'count', value: 3, unit: '', kind: 'gauge' });
  });

  it('makes counters with the `c` unit by default', () => {
    expect(counter('bytes', 10)).toStrictEqual({ name: 'bytes', value: 10, unit: 'c', kind: 'counter' });
  });
});
