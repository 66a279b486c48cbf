import { describe, expect, it } from 'vitest';
import { limitHeapGrowth } from '../../src/daemon/heap-growth.js';

describe('limitHeapGrowth', () => {
  it('refuses a value that is not a non-negative integer, naming it', () => {
    expect(() => limitHeapGrowth(-1)).toThrow('Expected `heapGrowthPercent` to be a non-negative integer, got `-1`');
    expect(() => limitHeapGrowth(12.5)).toThrow('got `12.5`');
  });
});
