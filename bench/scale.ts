import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { z } from 'zod';
import type { CheckSpec } from '../src/checks/check.js';
import { defineCommand } from '../src/commands/command.js';
import { loadMigrations, migrate } from '../src/postgres/migrations.js';
import { PostgresQueue } from '../src/queues/postgres/postgres-queue.js';
import type { CommandOutcome } from '../src/results/result.js';
import { Server } from '../src/server/server.js';
import { slotReport } from './slots.js';
import type { Benchmark, BenchReport, Ratio, Table } from './benchmark.js';
import { cpuMicros, fmt, NA, processCpuMicros, progress } from './measure.js';
import { benchSpec, parseAttributes } from './pipeline.js';
import { caseInput, reportToParent, runCase } from './processes.js';

/**
 * Scale-out: 1, 2 and 4 vigil instances, each a process of its own on this machine (a Server over a
 * PostgresQueue, as `vigil run` composes them, minus HTTP and handlers), sharing N no-op checks through
 * one PostgreSQL. Per instance count: checks run and claim statements per second, the CPU per run of
 * the instances and of PostgreSQL, and runs per slot of each check's grid, judged from every run's start
 * time as the cluster tests judge them (bench/slots.ts): it must be exactly 1.0, and adding
 * instances must not add runs. Absolute rates are bounded by this machine's cores (PostgreSQL and every
 * instance share them); the per-run costs are the figures to compare. Everything happens in a database
 * of its own (`vigil_scale_<pid>`), dropped at the end.
 */

/** The machine's PostgreSQL when DATABASE_URL names none (trust auth). */
const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
/** Marks the instances' connections, whose backends are measured. */
const APPLICATION = 'vigil-scale';
const CONCURRENCY = 256;

interface Sizes {
  readonly checks: number;
  readonly intervalMs: number;
  /** Instance counts, one scenario each. */
  readonly instances: readonly number[];
  /** Time the instances get to start, sync the config and load the mirror before the warm-up, ms. */
  readonly startupMs: number;
  /** Whole intervals run before measuring (every check runs once, spread over its interval). */
  readonly warmupIntervals: number;
  /** Whole intervals measured. */
  readonly measureIntervals: number;
}

const FULL: Sizes = { checks: 20_000, intervalMs: 5_000, instances: [1, 2, 4], startupMs: 8_000, warmupIntervals: 1, measureIntervals: 4 };
const QUICK: Sizes = { checks: 2_000, intervalMs: 1_000, instances: [1, 2, 4], startupMs: 4_000, warmupIntervals: 1, measureIntervals: 3 };

/** What one instance process is told: where, which checks, and the window (epoch ms) it measures. */
interface InstanceInput {
  readonly url: string;
  readonly schema: string;
  readonly instanceId: string;
  readonly checks: number;
  readonly intervalMs: number;
  readonly from: number;
  readonly until: number;
}

/** What one instance process measured over the window. */
interface InstanceResult {
  /** Epoch ms at which its server started (after start-up and the config sync). */
  readonly startedAt: number;
  /** Pairs of (check number, epoch ms of the run's start), for runs started within an interval of the window. */
  readonly starts: readonly number[];
  readonly cpuMicros: number;
  readonly claimQueries: number;
  readonly completionBatches: number;
  readonly lateClaims: number;
  readonly leasesLost: number;
  readonly staleClaims: number;
}

const DONE: CommandOutcome = Object.freeze({ state: 'ok', reason: 'ok', message: 'no-op done' });

/** Answers `ok` at once. `target` gives each check attributes of its own (safe mode never runs two equal checks at once). */
const noopCommand = defineCommand({
  name: 'noop',
  attributes: z.strictObject({ target: z.string() }),
  run: () => Promise.resolve(DONE),
});

function specs(count: number, intervalMs: number): CheckSpec[] {
  const timing = { intervalMs, timeoutMs: Math.min(1_000, intervalMs) };
  return Array.from({ length: count }, (_, i) => ({ ...benchSpec(`noop-${i}`, 'noop', parseAttributes(noopCommand, { target: `t${i}` }), timing), handlers: [] }));
}

interface Scenario {
  readonly instances: number;
  readonly windowMs: number;
  readonly results: readonly InstanceResult[];
  readonly pg: PgUsage;
  /** Over the checks' slots in the window. */
  readonly runs: number;
  readonly slots: number;
  readonly doubled: number;
  readonly missed: number;
}

export const scaleBenchmark: Benchmark = {
  name: 'scale',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const adminUrl = process.env['DATABASE_URL'] || DEFAULT_URL;
    const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
    try {
      await admin.connect();
    } catch (error) {
      await admin.end().catch(() => undefined);
      return { tables: [], ratios: [], notes: [`scale: not run: no PostgreSQL reachable (${error instanceof Error ? error.message : String(error)}); set DATABASE_URL`] };
    }
    const name = `vigil_scale_${process.pid}`;
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      const cpu = await PgCpu.probe(admin, name);
      // The source tree's files: the bench runs from dist-tools/, where the build copies none.
      const migrations = await loadMigrations(fileURLToPath(new URL('../../src/postgres/migrations/', import.meta.url)));
      const scenarios: Scenario[] = [];
      for (const count of sizes.instances) {
        progress(`scale: ${count} instance${count === 1 ? '' : 's'}, ${fmt(sizes.checks)} checks every ${fmt(sizes.intervalMs)} ms`);
        scenarios.push(await runScenario(url.toString(), `scale_${count}`, count, sizes, cpu, migrations));
      }
      return report(sizes, scenarios, cpu);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`).catch((error: unknown) => progress(`scale: dropping ${name} failed: ${String(error)}`));
      await admin.end();
    }
  },
};

async function runScenario(url: string, schema: string, count: number, sizes: Sizes, cpu: PgCpu, migrations: Awaited<ReturnType<typeof loadMigrations>>): Promise<Scenario> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  try {
    await migrate(pool, { schema, migrations });
    const from = Date.now() + sizes.startupMs + sizes.warmupIntervals * sizes.intervalMs;
    const until = from + sizes.measureIntervals * sizes.intervalMs;
    const limitMs = until - Date.now() + 3 * sizes.intervalMs + 60_000;
    const running = Array.from({ length: count }, (_, i) =>
      runCase<InstanceResult>(new URL(import.meta.url), { url, schema, instanceId: `scale-${i + 1}`, checks: sizes.checks, intervalMs: sizes.intervalMs, from, until } satisfies InstanceInput, limitMs));
    await sleep(Math.max(0, from - Date.now()));
    const pgMark = await cpu.mark();
    await sleep(Math.max(0, until - Date.now()));
    const pgUsage = await cpu.since(pgMark);
    const results = await Promise.all(running);
    const late = results.filter((result) => result.startedAt > from - sizes.intervalMs);
    if (late.length > 0) throw new Error(`${late.length} of ${count} instances started after the warm-up began (start-up allowance ${sizes.startupMs} ms): the window would see their first runs`);
    return { instances: count, windowMs: until - from, results, pg: pgUsage, ...await judge(pool, schema, results, from, until) };
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`).catch(() => undefined);
    await pool.end();
  }
}

/** Every check's runs against its grid: the slots whose time is in [from, until), their runs, doubles and misses. */
async function judge(pool: pg.Pool, schema: string, results: readonly InstanceResult[], from: number, until: number): Promise<{ runs: number; slots: number; doubled: number; missed: number }> {
  const { rows } = await pool.query<{ id: string; anchor: number; interval_ms: number }>(
    `SELECT id, (extract(epoch FROM slot_at) * 1000)::float8 AS anchor, (spec->>'intervalMs')::float8 AS interval_ms FROM ${pg.escapeIdentifier(schema)}.checks`,
  );
  const starts = new Map<number, number[]>();
  for (const result of results) {
    for (let i = 0; i < result.starts.length; i += 2) {
      const check = result.starts[i] as number;
      const list = starts.get(check);
      if (list) list.push(result.starts[i + 1] as number);
      else starts.set(check, [result.starts[i + 1] as number]);
    }
  }
  let runs = 0;
  let slots = 0;
  let doubled = 0;
  let missed = 0;
  for (const row of rows) {
    const { counts } = slotReport(starts.get(Number(row.id.slice('noop-'.length))) ?? [], row.anchor, row.interval_ms);
    // The window's slots: grid times in [from, until).
    const first = Math.ceil((from - row.anchor) / row.interval_ms);
    const last = Math.ceil((until - row.anchor) / row.interval_ms) - 1;
    for (let k = first; k <= last; k++) {
      const count = counts.get(k) ?? 0;
      slots++;
      runs += count;
      if (count === 0) missed++;
      else if (count > 1) doubled++;
    }
  }
  return { runs, slots, doubled, missed };
}

function report(sizes: Sizes, scenarios: readonly Scenario[], cpu: PgCpu): BenchReport {
  const table: Table = {
    columns: ['scale', 'runs/s', 'claims/s', 'rows/claim', 'vigil µs/run', 'pg µs/run', 'pg bg µs/run', 'runs/slot', 'doubled', 'missed', 'late claims'],
    rows: scenarios.map((s) => {
      const seconds = s.windowMs / 1000;
      const claims = sum(s.results, (r) => r.claimQueries);
      return [
        `${s.instances} instance${s.instances === 1 ? '' : 's'}`,
        fmt(s.runs / seconds),
        fmt(claims / seconds),
        fmt(s.runs / claims, 1),
        fmt(sum(s.results, (r) => r.cpuMicros) / s.runs, 1),
        cpu.available ? fmt(s.pg.backends / s.runs, 1) : NA,
        cpu.available ? fmt(s.pg.background / s.runs, 1) : NA,
        fmt(s.runs / s.slots, 3),
        fmt(s.doubled),
        fmt(s.missed),
        fmt(sum(s.results, (r) => r.lateClaims)),
      ];
    }),
  };
  const ratios: Ratio[] = [];
  const worst = scenarios.reduce((max, s) => Math.max(max, Math.abs(s.runs / s.slots - 1)), 0);
  ratios.push({ name: 'scale runs/slot worst |1−x|', value: worst, digits: 3 });
  const one = scenarios.find((s) => s.instances === 1);
  const most = scenarios.at(-1);
  if (cpu.available && one && most && most !== one) ratios.push({ name: `scale pg cpu/run ${most.instances}÷1`, value: most.pg.backends / most.runs / (one.pg.backends / one.runs) });
  return {
    tables: [table],
    ratios,
    notes: [
      `scale: ${fmt(sizes.checks)} no-op checks every ${fmt(sizes.intervalMs)} ms shared by 1, 2 and 4 instance processes (Server, concurrency ${CONCURRENCY}, over PostgresQueue, default lease and poll settings, no handlers); ${sizes.warmupIntervals} interval of warm-up after ${fmt(sizes.startupMs)} ms of start-up, ${sizes.measureIntervals} intervals measured.`,
      'scale: runs/slot = runs of the slots in the window ÷ those slots, each run counted for the slot nearest its start (bench/slots.ts); doubled = slots with two runs, missed = slots with none. claims = claim statements (each leases a batch).',
      cpu.available
        ? 'scale: vigil µs/run = CPU of every instance process; pg = the backends of this benchmark\'s database, pg bg = walwriter, checkpointer, background writer and autovacuum (/proc, 10 ms ticks).'
        : `scale: PostgreSQL's CPU not measured: ${cpu.reason}.`,
      'scale: not measured: 3 locations of 2 instances (issue 18, part 2: locations are not implemented yet).',
    ],
  };
}

/** In an instance process: start, sync the config, run, record each run's start; measure over the window. */
async function runInstance(input: InstanceInput): Promise<InstanceResult> {
  const logger = pino({ level: 'silent' });
  const pool = new pg.Pool({ connectionString: input.url, max: 10, application_name: APPLICATION });
  pool.on('error', () => undefined);
  const queue = new PostgresQueue({ pool, schema: input.schema, instanceId: input.instanceId, logger });
  const server = new Server({ queue, commands: [noopCommand], logger, concurrency: CONCURRENCY });
  const starts: number[] = [];
  const recordFrom = input.from - input.intervalMs;
  const recordUntil = input.until + input.intervalMs;
  server.on('check:start', (event) => {
    const at = Date.now();
    if (at >= recordFrom && at < recordUntil) starts.push(Number(event.check.spec.id.slice('noop-'.length)), at);
  });
  try {
    await queue.start();
    await queue.syncConfigChecks(specs(input.checks, input.intervalMs).map((spec) => ({ spec })));
    server.start();
    const startedAt = Date.now();
    await sleep(Math.max(0, input.from - Date.now()));
    const cpuFrom = cpuMicros();
    const statsFrom = queue.stats;
    await sleep(Math.max(0, input.until - Date.now()));
    const cpuUsed = cpuMicros() - cpuFrom;
    const stats = queue.stats;
    // Runs of the window's last slots may start a little after it.
    await sleep(Math.max(0, recordUntil - Date.now()));
    return {
      startedAt,
      starts,
      cpuMicros: cpuUsed,
      claimQueries: stats.claimQueries - statsFrom.claimQueries,
      completionBatches: stats.completionBatches - statsFrom.completionBatches,
      lateClaims: stats.lateClaims - statsFrom.lateClaims,
      leasesLost: stats.leasesLost - statsFrom.leasesLost,
      staleClaims: stats.staleClaims - statsFrom.staleClaims,
    };
  } finally {
    await server.stop({ timeoutMs: 10_000 });
    await queue.close();
    await pool.end();
  }
}

/** PostgreSQL's CPU over a window, µs. */
interface PgUsage {
  /** The backends of the benchmark's database. */
  readonly backends: number;
  /** walwriter, checkpointer, background writer, autovacuum. */
  readonly background: number;
}

type PgMark = { readonly backends: ReadonlyMap<number, number>; readonly background: ReadonlyMap<number, number> };

/** PostgreSQL's CPU from /proc, for a server on this machine: the backends of one database, and the server's background processes. */
class PgCpu {
  readonly available: boolean;
  readonly reason: string;
  readonly #admin: pg.Client;
  readonly #database: string;

  private constructor(admin: pg.Client, database: string, reason: string) {
    this.#admin = admin;
    this.#database = database;
    this.reason = reason;
    this.available = reason === '';
  }

  static async probe(admin: pg.Client, database: string): Promise<PgCpu> {
    const { rows } = await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const pid = rows[0]?.pid ?? 0;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!comm.startsWith('postgres')) return new PgCpu(admin, database, `/proc/${pid} is ${JSON.stringify(comm)}, not the server's backend (the server is not on this machine)`);
    } catch {
      return new PgCpu(admin, database, `its backend ${pid} is not in this machine's /proc (the server runs elsewhere)`);
    }
    return new PgCpu(admin, database, '');
  }

  async mark(): Promise<PgMark> {
    if (!this.available) return { backends: new Map(), background: new Map() };
    const { rows } = await this.#admin.query<{ pid: number; ours: boolean }>(
      `SELECT pid, datname IS NOT DISTINCT FROM $1 AS ours FROM pg_stat_activity
       WHERE (datname = $1 AND pid <> pg_backend_pid()) OR backend_type IN ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher', 'autovacuum worker')`,
      [this.#database],
    );
    const backends = new Map<number, number>();
    const background = new Map<number, number>();
    for (const row of rows) {
      try {
        (row.ours ? backends : background).set(row.pid, processCpuMicros(row.pid));
      } catch {
        // Ended meanwhile.
      }
    }
    return { backends, background };
  }

  /** CPU since `mark`; a process that started meanwhile counts from its start, one that ended is lost. */
  async since(mark: PgMark): Promise<PgUsage> {
    if (!this.available) return { backends: Number.NaN, background: Number.NaN };
    const now = await this.mark();
    const delta = (before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number => {
      let total = 0;
      for (const [pid, micros] of after) total += micros - (before.get(pid) ?? 0);
      return total;
    };
    return { backends: delta(mark.backends, now.backends), background: delta(mark.background, now.background) };
  }
}

function sum<T>(list: readonly T[], value: (item: T) => number): number {
  return list.reduce((total, item) => total + value(item), 0);
}

// Started by `runCase` as an instance process: this file is then the main module.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await reportToParent(await runInstance(caseInput<InstanceInput>()));
}
