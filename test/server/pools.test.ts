import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Check } from '../../src/checks/check.js';
import { initialCheckState } from '../../src/checks/check.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import { Pools, stableStringify, type PoolSpec, type PoolTask } from '../../src/server/pools.js';
import { Registry } from 'prom-client';
import { registerServerMetrics } from '../../src/daemon/server-metrics.js';
import { Server } from '../../src/server/server.js';
import { checkSpec, noopCommand, scriptedCommand } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';

const SPECS: PoolSpec[] = [
  { name: 'short', ratio: 0.3, shared: false },
  { name: 'long', ratio: 0.3, shared: false },
  { name: 'shared', ratio: 0.4, shared: true },
];

/** Tasks that run until the test releases them; records which pool each check ran in. */
function harness(safeMode = false) {
  const release: (() => void)[] = [];
  const started: string[] = [];
  const pools = new Pools(10, SPECS, { routing: { byCommand: {}, fallback: 'shared' }, safeMode, onSlotFree: () => undefined });
  const task = (id: string, pool: string, attributes: unknown = { id }): PoolTask => {
    const check: Check = { spec: checkSpec({ id, pool, attributes }), state: initialCheckState, dueAt: 0, slotAt: 0 };
    return {
      check,
      run: () =>
        new Promise<void>((resolve) => {
          started.push(id);
          release.push(resolve);
        }),
    };
  };
  const tasks = (prefix: string, pool: string, count: number) => Array.from({ length: count }, (_, i) => task(`${prefix}${i}`, pool));
  /** Running checks per pool slot owner: `short: 3 short`, … */
  const distribution = () => Object.fromEntries(pools.stats().map((pool) => [pool.name, { running: pool.running, waiting: pool.waiting, borrowed: pool.borrowed }]));
  return { pools, task, tasks, started, release, distribution };
}

describe('Pools: the four distributions with N = 10 (short 30 %, long 30 %, shared 40 % shared)', () => {
  it('10 short and 10 long: 3 short in short, 3 long in long, 4 short in shared', () => {
    const { pools, tasks, started, distribution } = harness();
    pools.submit([...tasks('s', 'short', 10), ...tasks('l', 'long', 10)]);
    expect(distribution()).toEqual({
      short: { running: 3, waiting: 3, borrowed: 4 },
      long: { running: 3, waiting: 7, borrowed: 0 },
      shared: { running: 4, waiting: 0, borrowed: 0 },
    });
    expect(started.filter((id) => id.startsWith('s'))).toHaveLength(7);
  });

  it('2 short and 10 long: 2 short, 3 long, 4 long in shared', () => {
    const { pools, tasks, distribution } = harness();
    pools.submit([...tasks('s', 'short', 2), ...tasks('l', 'long', 10)]);
    expect(distribution()).toEqual({
      short: { running: 2, waiting: 0, borrowed: 0 },
      long: { running: 3, waiting: 3, borrowed: 4 },
      shared: { running: 4, waiting: 0, borrowed: 0 },
    });
  });

  it('0 short and 10 long: 0, 3 long, 4 long in shared', () => {
    const { pools, tasks, distribution } = harness();
    pools.submit(tasks('l', 'long', 10));
    expect(distribution()).toEqual({
      short: { running: 0, waiting: 0, borrowed: 0 },
      long: { running: 3, waiting: 3, borrowed: 4 },
      shared: { running: 4, waiting: 0, borrowed: 0 },
    });
  });

  it('6 short and 10 long: 3 short, 3 long, and shared runs the 3 excess short first, then 1 long', () => {
    const { pools, tasks, started, distribution } = harness();
    // Interleaved arrival must not matter: overflow is taken in pool definition order.
    const short = tasks('s', 'short', 6);
    const long = tasks('l', 'long', 10);
    pools.submit(long.flatMap((task, i) => (short[i] ? [short[i], task] : [task])));
    expect(distribution()).toEqual({
      short: { running: 3, waiting: 0, borrowed: 3 },
      long: { running: 3, waiting: 6, borrowed: 1 },
      shared: { running: 4, waiting: 0, borrowed: 0 },
    });
    expect(started.filter((id) => id.startsWith('s')).sort()).toEqual(['s0', 's1', 's2', 's3', 's4', 's5']);
  });

  it('gives a freed slot to the waiting overflow, and reports free capacity for claims', async () => {
    const { pools, tasks, release, distribution } = harness();
    pools.submit(tasks('l', 'long', 9));
    // short's 3 slots are free; long's waiting 2 leave it none to claim for; shared is full.
    expect(pools.free).toBe(3);
    release[0]!();
    await vi.waitFor(() => expect(distribution().long).toEqual({ running: 3, waiting: 1, borrowed: 4 }));
  });
});

describe('Pools: running and idle', () => {
  it('resolves onIdle once the last running task has finished, not before', async () => {
    const { pools, tasks, release } = harness();
    await expect(pools.onIdle()).resolves.toBeUndefined();
    pools.submit(tasks('s', 'short', 2));
    let idle = false;
    const waiting = pools.onIdle().then(() => (idle = true));
    release[0]!();
    await vi.waitFor(() => expect(pools.running).toBe(1));
    expect(idle).toBe(false);
    release[1]!();
    await waiting;
    expect(pools.running).toBe(0);
  });

  it('frees the slot of a task that rejects, against its contract, and starts the next one', async () => {
    const { pools, task, started } = harness();
    const failing: PoolTask = { check: task('bad', 'short').check, run: () => Promise.reject(new Error('broke its contract')) };
    // short has 3 slots and shared 4: 7 fill them, the 8th waits for a slot.
    pools.submit([failing, ...Array.from({ length: 7 }, (_, i) => task(`s${i}`, 'short'))]);
    await vi.waitFor(() => expect(started).toHaveLength(7));
    expect(pools.running).toBe(7);
    expect(pools.waiting).toBe(0);
  });
});

describe('safe mode', () => {
  it('never runs two checks with the same command and attributes at once; others pass the waiting one', async () => {
    const { pools, task, started, release } = harness(true);
    pools.submit([task('a', 'short', { host: 'db', port: 5432 }), task('b', 'short', { port: 5432, host: 'db' }), task('c', 'short', { host: 'web' })]);
    expect(started).toEqual(['a', 'c']);
    release[0]!();
    await vi.waitFor(() => expect(started).toEqual(['a', 'c', 'b']));
  });

  it('lets identical checks run together when safe mode is off', () => {
    const { pools, task, started } = harness(false);
    pools.submit([task('a', 'short', { host: 'db' }), task('b', 'short', { host: 'db' })]);
    expect(started).toEqual(['a', 'b']);
  });

  it('keys attributes stably, RegExps and Buffers included', () => {
    expect(stableStringify({ b: [1, /x/i], a: Buffer.from('hi') })).toBe(stableStringify({ a: Buffer.from('hi'), b: [1, /x/i] }));
    expect(stableStringify({ r: /x/i })).not.toBe(stableStringify({ r: /x/g }));
  });
});

describe('Server with pools', () => {
  const T0 = Date.UTC(2026, 0, 1);
  beforeEach(() => vi.useFakeTimers({ now: T0 }));
  afterEach(() => vi.useRealTimers());

  it('claims through the server as the pools distribute: 6 short and 10 long due', async () => {
    const pool = new TrackedMemoryQueue();
    for (let i = 0; i < 10; i++) pool.add(checkSpec({ id: `l${i}`, command: 'slow', pool: 'long', attributes: { target: `l${i}` } }), { dueAt: T0 });
    for (let i = 0; i < 6; i++) pool.add(checkSpec({ id: `s${i}`, command: 'slow', pool: 'short', attributes: { target: `s${i}` } }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [scriptedCommand('slow', {}, 5_000)], logger: silentLogger(), concurrency: 10, pools: SPECS, poolRouting: { byCommand: {}, fallback: 'shared' } });
    const started: string[] = [];
    server.on('check:start', ({ check }) => started.push(check.spec.id));
    server.start();
    await vi.advanceTimersByTimeAsync(10);
    expect(server.poolStats().map(({ name, running, borrowed }) => ({ name, running, borrowed }))).toEqual([
      { name: 'short', running: 3, borrowed: 3 },
      { name: 'long', running: 3, borrowed: 1 },
      { name: 'shared', running: 4, borrowed: 0 },
    ]);
    expect(started.filter((id) => id.startsWith('s'))).toHaveLength(6);
    expect(started.filter((id) => id.startsWith('l'))).toHaveLength(4);
    const stopped = server.stop({ timeoutMs: 0 });
    await vi.advanceTimersByTimeAsync(100);
    await stopped;
  });

  it('claims for a pool only checks it can run: a full pool does not fill up with checks claimed for another', async () => {
    const pool = new TrackedMemoryQueue();
    // The default layout (default 85 %, exec 10 %, browser 5 %), no exec or browser checks, and far more due than slots.
    for (let i = 0; i < 100; i++) pool.add(checkSpec({ id: `c${i}`, command: 'slow', attributes: { target: i }, intervalMs: 60_000, timeoutMs: 30_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [scriptedCommand('slow', {}, 20_000)], logger: silentLogger(), concurrency: 10 });
    server.start();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(server.poolStats().map(({ name, running, waiting }) => ({ name, running, waiting }))).toEqual([
      { name: 'default', running: 9, waiting: 0 },
      { name: 'exec', running: 0, waiting: 0 },
      { name: 'browser', running: 0, waiting: 0 },
    ]);
    expect(server.stats).toMatchObject({ running: 9, waiting: 0 });
    const stopped = server.stop({ timeoutMs: 0 });
    await vi.advanceTimersByTimeAsync(100);
    await stopped;
  });

  it('keeps fast checks on schedule while slow ones saturate their own pool', async () => {
    const pool = new TrackedMemoryQueue();
    // 40 slow checks of 9 s every 10 s need 36 slots; their pool has 3 (ceil(10 × 0.3)).
    for (let i = 0; i < 40; i++) pool.add(checkSpec({ id: `slow-${i}`, command: 'slow', attributes: { target: i }, pool: 'slow', intervalMs: 10_000, timeoutMs: 10_000 }));
    for (let i = 0; i < 20; i++) pool.add(checkSpec({ id: `fast-${i}`, command: 'noop', attributes: { target: i }, pool: 'fast', intervalMs: 1_000, timeoutMs: 1_000 }));
    const server = new Server({
      queue: pool,
      commands: [noopCommand, scriptedCommand('slow', {}, 9_000)],
      logger: silentLogger(),
      concurrency: 10,
      pools: [
        { name: 'fast', ratio: 0.7, shared: false },
        { name: 'slow', ratio: 0.3, shared: false },
      ],
      poolRouting: { byCommand: {}, fallback: 'fast' },
    });
    const registry = new Registry();
    registerServerMetrics({ registry, server, checks: pool });
    server.start();
    await vi.advanceTimersByTimeAsync(60_000);
    const metrics = await registry.metrics();
    const stopped = server.stop({ timeoutMs: 0 });
    await vi.advanceTimersByTimeAsync(100);
    await stopped;

    // The slow pool is saturated; nothing of it runs elsewhere (no shared pool). Its late checks wait in
    // the queue's line for that pool, unclaimed, rather than in the pool.
    expect(metrics).toContain('vigil_pool_slots{pool="slow"} 3');
    expect(metrics).toContain('vigil_pool_running{pool="slow"} 3');
    expect(metrics).toContain('vigil_pool_waiting{pool="slow"} 0');
    expect(metrics).toContain('vigil_pool_borrowed{pool="slow"} 0');
    // Schedule lag from the histogram: every fast run started within 1 ms of its due time, while
    // most slow runs started more than 5 s late.
    const fastRuns = sample(metrics, 'vigil_schedule_lag_seconds_count{pool="fast"}');
    expect(fastRuns).toBeGreaterThanOrEqual(20 * 59);
    expect(sample(metrics, 'vigil_schedule_lag_seconds_bucket{le="0.001",pool="fast"}')).toBe(fastRuns);
    const slowRuns = sample(metrics, 'vigil_schedule_lag_seconds_count{pool="slow"}');
    expect(slowRuns).toBeGreaterThan(10);
    expect(sample(metrics, 'vigil_schedule_lag_seconds_bucket{le="5",pool="slow"}')).toBeLessThan(slowRuns / 2);
  });
});

/** The value of one sample line of a Prometheus exposition. */
function sample(exposition: string, series: string): number {
  const line = exposition.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no sample ${series} in the exposition`);
  return Number(line.slice(series.length + 1));
}
