import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { CheckSpec } from '../../../src/checks/check.js';
import { defineCommand } from '../../../src/commands/command.js';
import { clockWith, type Clock } from '../../../src/core/clock.js';
import type { Handler } from '../../../src/handlers/handler.js';
import { migrate } from '../../../src/postgres/migrations.js';
import { PostgresQueue } from '../../../src/queues/postgres/postgres-queue.js';
import { Server } from '../../../src/server/server.js';
import { checkSpec, outcome, sleep } from '../../helpers/checks.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';
import { TcpProxy } from '../../helpers/tcp-proxy.js';
import { grids, slotProblems, slotReport, type SlotReport } from '../../../bench/slots.js';

/**
 * Instances that lose the database, or whose clocks are wrong, sharing one schema with healthy ones:
 * what each may do (stop claiming, finish what it holds, never complete a lease it lost; never claim
 * early or late) and what the others see (every check once per slot, a gap of at most one lease).
 */

let db: TestDatabase;

beforeAll(async () => {
  db = await testDatabase('partition');
  await migrate(db.pool, { schema: db.schema });
});
afterAll(() => db.drop());

const INTERVAL_MS = 1_000;
const TIMEOUT_MS = 400;
const LEASE_MARGIN_MS = 200;
/** 2 × timeout + margin. */
const LEASE_MS = 2 * TIMEOUT_MS + LEASE_MARGIN_MS;
const RUN_MS = 150;

/** One run of the command: real start and end times (ms), and whether its outcome was published (its completion written). */
interface Run {
  readonly id: string;
  readonly instance: string;
  readonly startedAt: number;
  endedAt: number | null;
  published: boolean;
}

interface Instance {
  readonly id: string;
  readonly pool: pg.Pool;
  readonly queue: PostgresQueue;
  readonly server: Server;
}

let runs: Run[];
let instances: Instance[];
let proxy: TcpProxy | null;
let running: Map<string, number>;
let maxOverlap: number;
/** Called as each run begins, with the instance that runs it. */
let onRun: ((instance: string) => void) | null;

beforeEach(async () => {
  await db.pool.query(`TRUNCATE ${pg.escapeIdentifier(db.schema)}.checks, ${pg.escapeIdentifier(db.schema)}.incidents`);
  runs = [];
  instances = [];
  proxy = null;
  running = new Map();
  maxOverlap = 0;
  onRun = null;
});
afterEach(async () => {
  proxy?.heal();
  await Promise.all(instances.map((instance) => instance.server.stop({ timeoutMs: 2_000 })));
  await Promise.all(instances.map((instance) => instance.queue.close({ timeoutMs: 2_000 })));
  await Promise.all(instances.map((instance) => instance.pool.end()));
  await proxy?.close();
});

/** Takes `RUN_MS` of real time; records every run, and how many of one check run at once anywhere. */
function recordCommand(instance: string) {
  return defineCommand({
    name: 'record',
    // Each check its own target: runs of one target take turns (safe mode), which is not what this is about.
    attributes: z.object({ target: z.string() }),
    async run(_attributes, ctx) {
      const run: Run = { id: ctx.checkId, instance, startedAt: Date.now(), endedAt: null, published: false };
      runs.push(run);
      const overlap = (running.get(ctx.checkId) ?? 0) + 1;
      running.set(ctx.checkId, overlap);
      maxOverlap = Math.max(maxOverlap, overlap);
      onRun?.(instance);
      try {
        await sleep(RUN_MS, ctx.signal).catch(() => undefined);
        return outcome('ok');
      } finally {
        running.set(ctx.checkId, (running.get(ctx.checkId) ?? 1) - 1);
        run.endedAt = Date.now();
      }
    },
  });
}

/** Marks the run whose outcome is published: the server publishes only what its queue wrote. */
function publishedMarker(instance: string): Handler {
  return {
    name: 'published',
    process: (o) => {
      const run = runs.findLast((candidate) => candidate.instance === instance && candidate.id === o.check.id);
      if (run) run.published = true;
    },
  };
}

function specs(count: number): CheckSpec[] {
  return Array.from({ length: count }, (_, i) =>
    checkSpec({ id: `check-${String(i).padStart(2, '0')}`, command: 'record', attributes: { target: `t${i}` }, intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS, handlers: ['published'] }));
}

/** An instance on `url` (the database, or a proxy in front of it), telling time by `clock`. */
async function startInstance(id: string, checks: readonly CheckSpec[], options: { url?: string; clock?: Clock } = {}): Promise<Instance> {
  const pool = new pg.Pool({ connectionString: options.url ?? db.url, max: 6, connectionTimeoutMillis: 1_000 });
  pool.on('error', () => undefined);
  const clock = options.clock;
  const queue = new PostgresQueue({
    pool,
    schema: db.schema,
    instanceId: id,
    logger: silentLogger(),
    pollIntervalMs: 200,
    leaseFactor: 2,
    leaseMarginMs: LEASE_MARGIN_MS,
    ...(clock ? { clock } : {}),
  });
  const server = new Server({ queue, commands: [recordCommand(id)], handlers: [publishedMarker(id)], logger: silentLogger(), concurrency: 64, ...(clock ? { clock } : {}) });
  const instance = { id, pool, queue, server };
  instances.push(instance);
  await queue.start();
  await queue.syncConfigChecks(checks.map((spec) => ({ spec })));
  return instance;
}

/** The published runs of every check against its grid in the table. */
async function reports(): Promise<Map<string, SlotReport>> {
  const byId = await grids(db.pool, db.schema);
  const result = new Map<string, SlotReport>();
  for (const [id, grid] of byId) {
    const starts = runs.filter((run) => run.id === id && run.published).map((run) => run.startedAt);
    result.set(id, slotReport(starts, grid.anchor, grid.intervalMs));
  }
  return result;
}

function publishedRuns(id: string, after = 0): Run[] {
  return runs.filter((run) => run.id === id && run.published && run.startedAt > after);
}

/** The proxied URL of the test database. */
function throughProxy(port: number): string {
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

describe.each([
  { partition: 'silent (every byte held: queries hang)', cut: false },
  { partition: 'failing (connections reset and refused)', cut: true },
])('an instance whose network to PostgreSQL goes $partition', ({ cut }) => {
  it('stops claiming, finishes what it holds, completes no lease it lost; the other runs every check once per slot', { timeout: 60_000 }, async () => {
    const checks = specs(20);
    const target = new URL(db.url);
    proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    const near = await startInstance('near', checks);
    const far = await startInstance('far', checks, { url: throughProxy(proxy.port) });
    near.server.start();
    far.server.start();
    await vi.waitFor(() => {
      for (const spec of checks) expect(publishedRuns(spec.id).length).toBeGreaterThanOrEqual(2);
      expect(runs.some((run) => run.instance === 'far' && run.published)).toBe(true);
    }, { timeout: 15_000, interval: 20 });

    // The partition begins while `far` holds runs in flight.
    const held = await new Promise<string[]>((resolve) => {
      onRun = (instance) => {
        if (instance !== 'far') return;
        onRun = null;
        if (cut) proxy?.cut();
        else proxy?.pause();
        resolve(runs.filter((run) => run.instance === 'far' && run.endedAt === null).map((run) => run.id));
      };
    });
    const partitionedAt = Date.now();
    expect(held.length).toBeGreaterThan(0);

    // `near` takes over what `far` held once those leases expire, and `far`'s runs end meanwhile.
    await vi.waitFor(() => {
      for (const id of held) expect(runs.some((run) => run.id === id && run.instance === 'near' && run.startedAt > partitionedAt)).toBe(true);
      expect(runs.filter((run) => run.instance === 'far' && run.endedAt === null)).toEqual([]);
    }, { timeout: 10_000, interval: 20 });
    if (cut) await vi.waitFor(() => expect(far.queue.stats.healthy).toBe(false), { timeout: 5_000, interval: 20 });
    // From here on `far` cannot claim: while `near` runs every check twice more, `far` starts nothing.
    const farRuns = runs.filter((run) => run.instance === 'far').length;
    const settledAt = Date.now();
    await vi.waitFor(() => {
      for (const spec of checks) expect(publishedRuns(spec.id, settledAt).length).toBeGreaterThanOrEqual(2);
    }, { timeout: 10_000, interval: 20 });
    expect(runs.filter((run) => run.instance === 'far').length).toBe(farRuns);
    const healedAt = Date.now();
    proxy.heal();

    // Back: `far`'s completions are written or refused, and it runs checks again.
    await vi.waitFor(() => {
      expect(far.queue.stats.bufferedCompletions).toBe(0);
      expect(far.queue.stats.healthy).toBe(true);
      expect(runs.some((run) => run.instance === 'far' && run.published && run.startedAt > healedAt)).toBe(true);
    }, { timeout: 15_000, interval: 20 });
    await Promise.all(instances.map((instance) => instance.server.stop()));

    // What `far` ran for the leases it lost was never completed, so never published.
    const lost = runs.filter((run) => run.instance === 'far' && held.includes(run.id) && run.startedAt <= partitionedAt && run.endedAt !== null && run.endedAt > partitionedAt);
    expect(lost.length).toBeGreaterThan(0);
    expect(lost.filter((run) => run.published)).toEqual([]);
    expect(far.queue.stats.leasesLost).toBeGreaterThanOrEqual(lost.length);
    expect(far.queue.stats.droppedCompletions).toBe(0);
    expect(near.queue.stats.leasesLost).toBe(0);
    expect(maxOverlap).toBe(1);
    // Once per slot; a slot may go without a run only while an unreachable instance held its lease.
    const problems = slotProblems(await reports(), { allowMissed: (slot) => slot > partitionedAt - INTERVAL_MS && slot < partitionedAt + LEASE_MS + INTERVAL_MS });
    expect(problems).toEqual([]);
  });
});

describe('instances whose clocks are off by seconds', () => {
  it('neither steal nor run a slot twice: due times and leases are the database\'s', { timeout: 60_000 }, async () => {
    const checks = specs(30);
    // Not whole intervals: a clock off by exactly n seconds keeps the phase of a 1 s grid.
    const skews = { ahead: 2_300, right: 0, behind: -1_700 };
    const start = async (id: keyof typeof skews): Promise<void> => {
      const instance = await startInstance(id, checks, { clock: clockWith(() => Date.now() + skews[id]) });
      instance.server.start();
    };
    // Two at first; the one ahead joins a running cluster, whose next due times are all within its 2.3 s lead.
    await start('right');
    await start('behind');
    await vi.waitFor(() => {
      for (const spec of checks) expect(publishedRuns(spec.id).length).toBeGreaterThanOrEqual(2);
    }, { timeout: 20_000, interval: 50 });
    const joinedAt = Date.now();
    await start('ahead');
    await vi.waitFor(() => {
      for (const spec of checks) expect(publishedRuns(spec.id, joinedAt).length).toBeGreaterThanOrEqual(5);
      expect(runs.some((run) => run.instance === 'ahead' && run.published)).toBe(true);
    }, { timeout: 20_000, interval: 50 });
    await Promise.all(instances.map((instance) => instance.server.stop()));

    for (const instance of instances) {
      const skew = skews[instance.id as keyof typeof skews];
      // Measured to within the round trip's precision.
      expect(Math.abs(instance.queue.stats.clockOffsetMs - skew)).toBeLessThanOrEqual(50);
      expect(instance.queue.stats).toMatchObject({ leasesLost: 0, staleClaims: 0 });
      expect(runs.some((run) => run.instance === instance.id && run.published)).toBe(true);
    }
    expect(maxOverlap).toBe(1);
    expect(runs.filter((run) => !run.published)).toEqual([]);
    expect(slotProblems(await reports())).toEqual([]);
  });
});
