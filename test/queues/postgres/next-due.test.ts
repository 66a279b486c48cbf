import { describe, expect, it } from 'vitest';
import { NextDue, RETRY_SOON_MS } from '../../../src/queues/postgres/next-due.js';

const T0 = 1_700_000_000_000;

describe('NextDue', () => {
  it('rules out claims before the known due time, until it expires', () => {
    const next = new NextDue();
    expect(next.stale(T0)).toBe(true);
    expect(next.rulesOut(T0, T0)).toBe(false);
    next.set(T0 + 1_000, T0 + 2_000);
    expect(next.stale(T0)).toBe(false);
    expect(next.rulesOut(T0 + 999, T0)).toBe(true);
    expect(next.rulesOut(T0 + 1_000, T0)).toBe(false);
    // Expired: ask the database again.
    expect(next.rulesOut(T0 + 999, T0 + 2_000)).toBe(false);
    expect(next.stale(T0 + 2_000)).toBe(true);
    next.forget();
    expect(next.rulesOut(T0, T0)).toBe(false);
  });

  it('wakes at the due time, by the expiry at the latest, and never at once for due work it could not take', () => {
    const next = new NextDue();
    next.set(T0 + 500, T0 + 2_000);
    expect(next.wakeAt(T0)).toBe(T0 + 500);
    next.set(null, T0 + 2_000);
    expect(next.wakeAt(T0)).toBe(T0 + 2_000);
    next.set(T0 - 10, T0 + 2_000);
    expect(next.wakeAt(T0)).toBe(T0 + RETRY_SOON_MS);
  });

  it('lowers the known time for something due earlier, and says when the server would wake by then anyway', () => {
    const next = new NextDue();
    // Nothing known: the server must look.
    expect(next.lower(T0 + 5_000)).toBe(true);
    next.set(T0 + 1_000, T0 + 2_000);
    expect(next.lower(T0 + 1_500)).toBe(false);
    expect(next.wakeAt(T0)).toBe(T0 + 1_000);
    expect(next.lower(T0 + 100)).toBe(true);
    expect(next.wakeAt(T0)).toBe(T0 + 100);
    next.set(null, T0 + 2_000);
    expect(next.lower(T0 + 1_500)).toBe(true);
    expect(next.rulesOut(T0 + 1_500, T0)).toBe(false);
  });
});
