import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { CheckSpec } from '../../../src/checks/check.js';
import { defineCommand } from '../../../src/commands/command.js';
import type { Handler } from '../../../src/handlers/handler.js';
import { PostgresInstances } from '../../../src/queues/postgres/instances.js';
import { migrate } from '../../../src/postgres/migrations.js';
import { PostgresQueue, type PostgresQueueOptions } from '../../../src/queues/postgres/postgres-queue.js';
import type { State } from '../../../src/results/result.js';
import { Server } from '../../../src/server/server.js';
import { checkSpec, outcome, sleep } from '../../helpers/checks.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';

/**
 * Several vigil instances in one process, each a real Server over its own PostgresQueue and pool, all on
 * one schema: what running vigil on many machines against one database looks like.
 */

let db: TestDatabase;
let q: (name: string) => string;

beforeAll(async () => {
  db = await testDatabase('cluster');
  await migrate(db.pool, { schema: db.schema });
  q = (name) => `${pg.escapeIdentifier(db.schema)}.${name}`;
});
afterAll(() => db.drop());

interface Run {
  readonly id: string;
  readonly instance: string;
  readonly dueAt: number;
  readonly startedAt: number;
}

/** What every instance's `record` command and servers saw, shared by all instances of a test. */
class Ledger {
  readonly runs: Run[] = [];
  readonly running = new Map<string, number>();
  maxOverlap = 0;
  readonly calls = new Map<string, number>();
  /** Per check: the states of its runs in order, whichever instance runs them (the last repeats). */
  readonly scripts = new Map<string, readonly State[]>();

  runsOf(id: string): Run[] {
    return this.runs.filter((run) => run.id === id);
  }
}

interface Instance {
  readonly id: string;
  readonly pool: pg.Pool;
  readonly queue: PostgresQueue;
  readonly server: Server;
  readonly errors: unknown[];
}

let ledger: Ledger;
let instances: Instance[];

beforeEach(async () => {
  await db.pool.query(`TRUNCATE ${q('checks')}, ${q('incidents')}, ${q('instances')}`);
  ledger = new Ledger();
  instances = [];
});
afterEach(async () => {
  await Promise.all(instances.map((instance) => instance.server.stop({ timeoutMs: 2_000 })));
  await Promise.all(instances.map((instance) => instance.queue.close()));
  await Promise.all(instances.map((instance) => instance.pool.end()));
});

/** Takes `delayMs`, never runs one check twice at once (counted), answers with the check's script. */
function recordCommand(delayMs: number) {
  return defineCommand({
    name: 'record',
    attributes: z.object({ target: z.string() }),
    async run(_attributes, ctx) {
      const id = ctx.checkId;
      const overlap = (ledger.running.get(id) ?? 0) + 1;
      ledger.running.set(id, overlap);
      ledger.maxOverlap = Math.max(ledger.maxOverlap, overlap);
      const call = ledger.calls.get(id) ?? 0;
      ledger.calls.set(id, call + 1);
      try {
        await sleep(delayMs, ctx.signal).catch(() => undefined);
        const script = ledger.scripts.get(id) ?? ['ok'];
        return outcome(script[Math.min(call, script.length - 1)] as State);
      } finally {
        ledger.running.set(id, (ledger.running.get(id) ?? 1) - 1);
      }
    },
  });
}

function specs(count: number, overrides: Partial<CheckSpec> = {}): CheckSpec[] {
  return Array.from({ length: count }, (_, i) => {
    const id = `check-${String(i).padStart(3, '0')}`;
    return checkSpec({ id, command: 'record', attributes: { target: id }, intervalMs: 1_000, timeoutMs: 500, retryIntervalMs: 200, maxAttempts: 2, ...overrides });
  });
}

/** A handler with a process hook, like a webhook: counts the incident events it is given, per instance. */
function alertCounter(instance: string, seen: { instance: string; type: string; incident: string }[]): Handler {
  return {
    name: 'alert',
    process: (o) => {
      if (o.incident) seen.push({ instance, type: o.incident.type, incident: o.incident.incident.id });
    },
  };
}

async function startInstances(
  count: number,
  checks: readonly CheckSpec[],
  options: { delayMs?: number; queue?: Partial<PostgresQueueOptions>; handlers?: (instance: string) => Handler[] } = {},
): Promise<Instance[]> {
  const command = recordCommand(options.delayMs ?? 20);
  for (let n = 1; n <= count; n++) {
    const id = `vigil-${n}`;
    const pool = new pg.Pool({ connectionString: db.url, max: 6, application_name: `${db.schema}:${id}`, connectionTimeoutMillis: 3_000 });
    const errors: unknown[] = [];
    const queue = new PostgresQueue({ pool, schema: db.schema, instanceId: id, logger: silentLogger(), pollIntervalMs: 500, onError: (error) => errors.push(error), ...options.queue });
    const server = new Server({ queue, commands: [command], handlers: options.handlers?.(id) ?? [], logger: silentLogger(), concurrency: 64 });
    server.on('error', (event) => errors.push(event.error));
    server.on('check:start', (event) => ledger.runs.push({ id: event.check.spec.id, instance: id, dueAt: event.check.dueAt, startedAt: Date.now() }));
    const instance = { id, pool, queue, server, errors };
    instances.push(instance);
    await queue.start();
    // Every instance syncs the same config file at start, as the daemon does: the first adds, the others find nothing to do.
    await queue.syncConfigChecks(checks.map((spec) => ({ spec })));
  }
  for (const instance of instances) instance.server.start();
  return instances;
}

/**
 * Every check still there and no lease left once the servers stopped. Waited for: a claim that was in
 * flight when stop() began gives its checks back a moment after stop() resolved.
 */
async function expectAllReleased(count: number): Promise<void> {
  await vi.waitFor(async () => {
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n, count(lease_owner)::int AS leased FROM ${q('checks')}`);
    expect(rows[0]).toEqual({ n: count, leased: 0 });
  }, { timeout: 3_000, interval: 50 });
}

describe('three instances on one schema', () => {
  it('share 300 checks: each runs exactly once per interval, never twice at once', async () => {
    const checks = specs(300);
    await startInstances(3, checks);
    await vi.waitFor(() => {
      for (const spec of checks) expect(ledger.runsOf(spec.id).length).toBeGreaterThanOrEqual(5);
    }, { timeout: 15_000, interval: 100 });
    await Promise.all(instances.map((instance) => instance.server.stop()));

    expect(ledger.maxOverlap).toBe(1);
    for (const spec of checks) {
      const dueTimes = ledger.runsOf(spec.id).map((run) => run.dueAt);
      // One run per slot of its grid: no slot twice, none skipped.
      const steps = dueTimes.slice(1).map((due, i) => due - (dueTimes[i] as number));
      expect({ id: spec.id, steps: [...new Set(steps)] }).toEqual({ id: spec.id, steps: [1_000] });
    }
    const perInstance = new Map<string, number>();
    for (const run of ledger.runs) perInstance.set(run.instance, (perInstance.get(run.instance) ?? 0) + 1);
    expect([...perInstance.keys()].sort()).toEqual(['vigil-1', 'vigil-2', 'vigil-3']);
    await expectAllReleased(300);
    for (const instance of instances) expect(instance.errors).toEqual([]);
  });

  it('run the checks of an instance killed mid-run once its leases expire', async () => {
    const checks = specs(60, { timeoutMs: 300 });
    // Lease: 2 × 300 ms + 200 ms.
    const leaseMs = 800;
    await startInstances(3, checks, { delayMs: 150, queue: { leaseFactor: 2, leaseMarginMs: 200 } });
    await vi.waitFor(() => {
      for (const spec of checks) expect(ledger.runsOf(spec.id).length).toBeGreaterThanOrEqual(2);
    }, { timeout: 10_000, interval: 50 });

    const [victim] = instances as [Instance];
    const running = new Set<string>();
    victim.server.on('check:start', (event) => running.add(event.check.spec.id));
    victim.server.on('check:finish', (event) => running.delete(event.check.id));
    // Killed the moment it starts a run: that run, and any other in flight, is never completed.
    const { killedAt, orphans } = await new Promise<{ killedAt: number; orphans: string[] }>((resolve) => {
      victim.server.once('check:start', () => {
        void victim.queue.close({ abandon: true });
        resolve({ killedAt: Date.now(), orphans: [...running] });
      });
    });
    expect(orphans.length).toBeGreaterThan(0);
    const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM ${q('checks')} WHERE lease_owner = $1`, [victim.id]);
    expect(rows.map((row) => row.id)).toEqual(expect.arrayContaining(orphans));

    await vi.waitFor(() => {
      for (const id of orphans) expect(ledger.runs.some((run) => run.id === id && run.startedAt > killedAt)).toBe(true);
    }, { timeout: 5_000, interval: 20 });
    for (const id of orphans) {
      const next = ledger.runs.find((run) => run.id === id && run.startedAt > killedAt) as Run;
      expect(next.instance).not.toBe(victim.id);
      // Within the lease, plus a little for the others to notice and start it.
      expect(next.startedAt - killedAt).toBeLessThanOrEqual(leaseMs + 500);
    }
    // Every check goes on running on the survivors.
    await vi.waitFor(() => {
      for (const spec of checks) expect(ledger.runs.some((run) => run.id === spec.id && run.startedAt > killedAt + leaseMs && run.instance !== victim.id)).toBe(true);
    }, { timeout: 5_000, interval: 50 });
    expect(ledger.maxOverlap).toBe(1);
  });

  it('raise exactly one incident and one alert for an outage all of them see', async () => {
    const checks = specs(30, { handlers: ['alert'] });
    // The outage: two OK runs, six CRIT (two attempts confirm it), then OK again.
    ledger.scripts.set('check-007', ['ok', 'ok', 'crit', 'crit', 'crit', 'crit', 'crit', 'crit', 'ok']);
    const alerts: { instance: string; type: string; incident: string }[] = [];
    await startInstances(3, checks, { handlers: (instance) => [alertCounter(instance, alerts)], queue: { pollIntervalMs: 200 } });

    await vi.waitFor(() => expect(alerts.filter((alert) => alert.type === 'resolve')).toHaveLength(1), { timeout: 20_000, interval: 50 });
    // A few more runs after the recovery: nothing more may come.
    const after = ledger.runsOf('check-007').length;
    await vi.waitFor(() => expect(ledger.runsOf('check-007').length).toBeGreaterThanOrEqual(after + 2), { timeout: 5_000, interval: 50 });
    await Promise.all(instances.map((instance) => instance.server.stop()));

    const incidentId = alerts[0]?.incident;
    expect(incidentId).toMatch(/^check-007:\d+$/);
    expect(alerts.map(({ type, incident }) => ({ type, incident }))).toEqual([
      { type: 'open', incident: incidentId },
      { type: 'resolve', incident: incidentId },
    ]);
    const { rows } = await db.pool.query(`SELECT id, check_id, state, worst_state, resolved_at IS NOT NULL AS resolved FROM ${q('incidents')}`);
    expect(rows).toEqual([{ id: incidentId, check_id: 'check-007', state: 'crit', worst_state: 'crit', resolved: true }]);
    // The outage's runs were shared out, so more than one instance saw it.
    expect(new Set(ledger.runsOf('check-007').map((run) => run.instance)).size).toBeGreaterThan(1);
  });

  it('survive their backends being terminated mid-run, and lose no check', async () => {
    const checks = specs(100);
    await startInstances(3, checks);
    await vi.waitFor(() => {
      for (const spec of checks) expect(ledger.runsOf(spec.id).length).toBeGreaterThanOrEqual(2);
    }, { timeout: 10_000, interval: 50 });

    const terminatedAt = Date.now();
    const { rows: killed } = await db.pool.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
      [`${db.schema}:vigil-%`],
    );
    // Each instance's LISTEN connection at least.
    expect(killed[0]?.n).toBeGreaterThanOrEqual(3);

    await vi.waitFor(() => {
      for (const spec of checks) expect(ledger.runs.filter((run) => run.id === spec.id && run.startedAt > terminatedAt).length).toBeGreaterThanOrEqual(3);
    }, { timeout: 15_000, interval: 50 });
    await Promise.all(instances.map((instance) => instance.server.stop()));

    expect(ledger.maxOverlap).toBe(1);
    for (const instance of instances) expect(instance.queue.stats.healthy).toBe(true);
    await expectAllReleased(100);
    // The LISTEN connections came back: a change made now still reaches every instance.
    (instances[0] as Instance).queue.update({ ...(checks[0] as CheckSpec), timeoutMs: 400 });
    await vi.waitFor(() => {
      for (const instance of instances) expect(instance.queue.get('check-000')?.spec.timeoutMs).toBe(400);
    }, { timeout: 5_000, interval: 20 });
  });
});

describe('PostgresInstances', () => {
  it('registers with an epoch one more per start, lists peers, and marks one that stopped heartbeating dead', async () => {
    const make = (id: string, heartbeatIntervalMs = 100) =>
      new PostgresInstances({ pool: db.pool, schema: db.schema, instanceId: id, logger: silentLogger(), heartbeatIntervalMs, info: { version: 'test' } });
    const crashed = make('crashed');
    expect(await crashed.register()).toBe(1);
    expect(await make('crashed').register()).toBe(2);

    const live = make('live');
    await live.start();
    try {
      expect(live.epoch).toBe(1);
      // `crashed` never beats again: after 3 × 100 ms the live one's heartbeats mark it dead.
      await vi.waitFor(() => {
        expect(live.lastPeers.map(({ id, alive }) => ({ id, alive }))).toEqual([
          { id: 'live', alive: true },
          { id: 'crashed', alive: false },
        ]);
      }, { timeout: 5_000, interval: 50 });
      const { rows } = await db.pool.query(`SELECT id, epoch::int, dead FROM ${q('instances')} ORDER BY id`);
      expect(rows).toEqual([
        { id: 'crashed', epoch: 2, dead: true },
        { id: 'live', epoch: 1, dead: false },
      ]);
      expect(live.lastPeers[0]?.info).toEqual({ version: 'test' });
    } finally {
      await live.stop();
    }
    const { rows } = await db.pool.query(`SELECT dead FROM ${q('instances')} WHERE id = 'live'`);
    expect(rows).toEqual([{ dead: true }]);
  });
});
