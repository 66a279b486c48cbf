import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import { Server } from '../../src/server/server.js';
import { checkSpec, noopCommand, scriptedCommand } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';

const T0 = Date.UTC(2026, 0, 1);

describe('scheduler under an injected clock', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs 1,000 checks exactly once per interval for 100 intervals, spread evenly, without drift', async () => {
    const intervalMs = 10_000;
    const pool = new TrackedMemoryQueue();
    for (let i = 0; i < 1000; i++) pool.add(checkSpec({ id: `check-${i}`, intervalMs }));
    const server = new Server({ queue: pool, commands: [noopCommand], logger: silentLogger(), concurrency: 64 });
    const starts = new Map<string, number[]>();
    let maxLag = 0;
    server.on('check:start', ({ check, lagMs }) => {
      const times = starts.get(check.spec.id) ?? [];
      times.push(Date.now());
      starts.set(check.spec.id, times);
      maxLag = Math.max(maxLag, lagMs);
    });
    server.start();
    // Run through 100 intervals; a check whose first slot is at the very end of the first interval
    // still completes its 100th run inside the window.
    await vi.advanceTimersByTimeAsync(100 * intervalMs - 1);
    await server.stop();

    expect(starts.size).toBe(1000);
    const firstOffsets: number[] = [];
    for (const [id, times] of starts) {
      expect(times, id).toHaveLength(100);
      const first = times[0] as number;
      firstOffsets.push(first - T0);
      // Fixed rate: the k-th run is exactly k intervals after the first.
      times.forEach((time, k) => expect(time - first, `${id} run ${k}`).toBe(k * intervalMs));
    }
    expect(maxLag).toBe(0);
    // Spread: every tenth of the interval holds roughly a tenth of the first runs.
    const buckets = new Array<number>(10).fill(0);
    for (const offset of firstOffsets) {
      expect(offset).toBeGreaterThanOrEqual(0);
      expect(offset).toBeLessThan(intervalMs);
      buckets[Math.floor((offset / intervalMs) * 10)]! += 1;
    }
    for (const count of buckets) expect(count).toBeGreaterThan(60);
    for (const count of buckets) expect(count).toBeLessThan(140);
  });

  it('keeps one timer armed, not one per check', async () => {
    const pool = new TrackedMemoryQueue();
    for (let i = 0; i < 500; i++) pool.add(checkSpec({ id: `c${i}` }));
    const server = new Server({ queue: pool, commands: [noopCommand], logger: silentLogger() });
    server.start();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(vi.getTimerCount()).toBe(1);
    await server.stop();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never overlaps a slow check with itself and skips the slots it missed', async () => {
    // 25 s runs on a 10 s interval (the timeout allows it): slots are skipped, never run in a burst.
    const slow = scriptedCommand('slow', {}, 25_000);
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'slow', command: 'slow', intervalMs: 10_000, timeoutMs: 30_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [slow], logger: silentLogger() });
    let running = 0;
    let maxRunning = 0;
    const starts: number[] = [];
    const missed: number[] = [];
    server.on('check:start', () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      starts.push(Date.now() - T0);
    });
    server.on('check:finish', ({ missedSlots }) => {
      running--;
      missed.push(missedSlots);
    });
    server.start();
    await vi.advanceTimersByTimeAsync(100_000);
    const stopped = server.stop();
    await vi.advanceTimersByTimeAsync(30_000);
    await stopped;

    expect(maxRunning).toBe(1);
    // Runs at 0, 30, 60, 90 s: each ends at +25 s, the 10 and 20 s slots after it are skipped.
    expect(starts).toEqual([0, 30_000, 60_000, 90_000]);
    expect(missed).toEqual([2, 2, 2]);
    expect(server.stats.overruns).toBe(3);
  });

  it('retries at the retry interval while confirming, then returns to its own grid', async () => {
    const flappy = scriptedCommand('flappy', { f: ['ok', 'crit', 'crit', 'crit', 'ok', 'ok'] });
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'f', command: 'flappy', intervalMs: 60_000, retryIntervalMs: 5_000, maxAttempts: 3 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [flappy], logger: silentLogger() });
    const starts: number[] = [];
    const opened: number[] = [];
    server.on('check:start', () => starts.push(Date.now() - T0));
    server.on('incident:open', () => opened.push(Date.now() - T0));
    server.start();
    await vi.advanceTimersByTimeAsync(200_000);
    await server.stop();
    // ok at 0; crit at 60 s (soft), retries at 65 and 70 s (hard at 70); back on the grid at 120, 180 s.
    expect(starts).toEqual([0, 60_000, 65_000, 70_000, 120_000, 180_000]);
    expect(opened).toEqual([70_000]);
  });

  it('runs a one-shot check until it reaches a HARD state, then retires it', async () => {
    const once = scriptedCommand('once', { o: ['crit', 'crit'] });
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'o', command: 'once', intervalMs: null, maxAttempts: 2, retryIntervalMs: 1_000 }));
    const server = new Server({ queue: pool, commands: [once], logger: silentLogger() });
    const finished: (number | null)[] = [];
    server.on('check:finish', ({ nextDueAt }) => finished.push(nextDueAt === null ? null : nextDueAt - T0));
    server.start();
    await vi.advanceTimersByTimeAsync(10_000);
    await server.stop();
    expect(finished).toEqual([1_000, null]);
    expect(pool.status('o')).toBe('done');
    expect(pool.get('o')?.state.hardState).toBe('crit');
  });

  it('reports a start later than the threshold', async () => {
    const pool = new TrackedMemoryQueue();
    // Two checks due at once with one slot and 3 s runs: the second starts 3 s late.
    const slow = scriptedCommand('slow', {}, 3_000);
    pool.add(checkSpec({ id: 'a', command: 'slow' }), { dueAt: T0 });
    pool.add(checkSpec({ id: 'b', command: 'slow' }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [slow], logger: silentLogger(), concurrency: 1, lateThresholdMs: 1_000 });
    const lags: number[] = [];
    server.on('check:start', ({ lagMs }) => lags.push(lagMs));
    server.start();
    await vi.advanceTimersByTimeAsync(7_000);
    await server.stop();
    expect(lags).toEqual([0, 3_000]);
    expect(server.stats.lateStarts).toBe(1);
  });
});
