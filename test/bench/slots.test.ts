import { describe, expect, it } from 'vitest';
import { slotReport } from '../../bench/slots.js';

/** The judge of the cluster tests and the scale benchmark: it must see the faults it is there to see. */
describe('slotReport', () => {
  const anchor = 1_000_000;

  it('counts one run per slot for runs on time, late, and a little early', () => {
    const report = slotReport([anchor + 3, anchor + 1_010, anchor + 2_400, anchor + 2_700 + 600, anchor + 4_001], anchor, 1_000);
    expect(report).toMatchObject({ runs: 5, slots: 5, doubled: [], missed: [] });
  });

  it('sees two runs less than half an interval apart as a double run, and a slot without a run as missed', () => {
    const report = slotReport([anchor, anchor + 1_000, anchor + 1_300, anchor + 4_000], anchor, 1_000);
    expect(report.doubled).toEqual([{ slot: anchor + 1_000, starts: [anchor + 1_000, anchor + 1_300] }]);
    expect(report.missed).toEqual([anchor + 2_000, anchor + 3_000]);
    expect(report.slots).toBe(5);
  });

  it('lets a run that starts at the middle between two slots count for the earlier one when the later has a run', () => {
    // Claimed 495 ms late (its own slot), started at 502 ms: the next slot's run follows 499 ms later.
    expect(slotReport([anchor, anchor + 1_502, anchor + 2_001], anchor, 1_000)).toMatchObject({ runs: 3, slots: 3, doubled: [], missed: [] });
    // Claimed 531 ms late, so run for the next slot, 469 ms ahead of it: that slot's run, not a missed one.
    expect(slotReport([anchor + 531, anchor + 2_002, anchor + 3_003], anchor, 1_000)).toMatchObject({ runs: 3, slots: 3, doubled: [], missed: [] });
    // Beyond the tolerance it is a double run.
    expect(slotReport([anchor, anchor + 1_560, anchor + 2_001], anchor, 1_000).doubled).toHaveLength(1);
  });
});
