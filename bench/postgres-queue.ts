import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { z } from 'zod';
import type { CheckSpec } from '../src/checks/check.js';
import { initialCheckState } from '../src/checks/check.js';
import { defineCommand } from '../src/commands/command.js';
import { loadMigrations, migrate } from '../src/postgres/migrations.js';
import { encodeSpec, PostgresQueue } from '../src/queues/postgres/postgres-queue.js';
import { queueStatements, type ClaimedRow, type CompletionRow } from '../src/queues/postgres/statements.js';
import type { CommandOutcome } from '../src/results/result.js';
import { Server } from '../src/server/server.js';
import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { fmt, markUsage, NA, processCpuMicros, progress, usageSince, within, type Usage } from './measure.js';
import { benchSpec, parseAttributes } from './pipeline.js';

/**
 * The PostgreSQL queue: claim + complete of no-op checks through PostgresQueue and the Server, against
 * the same claim and complete statements run by a bare loop with `pg`, at the same batch size and the
 * same number of statements in flight; bare and vigil rounds alternate. Everything happens in a database
 * of its own (`vigil_bench_<pid>`), dropped at the end, so test data is never touched.
 */

/** The machine's PostgreSQL when DATABASE_URL names none (trust auth). */
const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
/** `server.concurrency` (the default), and the checks the bare loop holds at once. */
const CONCURRENCY = 256;
/** Bare loops (each claims a batch, then completes it): vigil has one claim and one completion batch in flight at most. */
const BARE_WORKERS = 2;
/** Checks per bare claim: the two loops hold `CONCURRENCY` checks between them, as the server does. */
const BARE_BATCH = CONCURRENCY / BARE_WORKERS;
/** Far below the time a round takes to go through every check, so every check is always due. */
const INTERVAL_MS = 100;
const TIMEOUT_MS = 100;
/** Marks the connections whose backends are measured. */
const APPLICATION = 'vigil-bench';
const SCHEMA = 'vigil';
const INSTANCE = 'bench';
/** No round may take longer, whatever the machine: a slow one reports what it did by then. */
const ROUND_LIMIT_MS = 60_000;

interface Sizes {
  /** Checks in the table, all due. */
  readonly checks: number;
  /** Completions before measuring, in every round (the first runs load the checks into vigil's mirror). */
  readonly warmup: number;
  /** Completions measured per round. */
  readonly runs: number;
  /** Bare/vigil pairs, alternating. */
  readonly pairs: number;
}

const FULL: Sizes = { checks: 20_000, warmup: 10_000, runs: 100_000, pairs: 3 };
const QUICK: Sizes = { checks: 5_000, warmup: 3_000, runs: 15_000, pairs: 1 };

interface Round {
  readonly label: string;
  readonly runs: number;
  readonly usage: Usage;
  /** PostgreSQL CPU over the window, µs; NaN when it could not be read. */
  readonly pgBackendMicros: number;
  readonly pgBackgroundMicros: number;
  /** Claim statements and completion batches in the window (vigil: from the queue's stats). */
  readonly claims: number;
  readonly batches: number;
}

const DONE: CommandOutcome = Object.freeze({ state: 'ok', reason: 'ok', message: 'no-op done' });

/** Answers `ok` at once. `target` makes each check's attributes its own (safe mode never runs two equal checks at once). */
const noopCommand = defineCommand({
  name: 'noop',
  attributes: z.strictObject({ target: z.string() }),
  run: () => Promise.resolve(DONE),
});

export const postgresQueueBenchmark: Benchmark = {
  name: 'postgres-queue',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const adminUrl = process.env['DATABASE_URL'] || DEFAULT_URL;
    const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
    try {
      await admin.connect();
    } catch (error) {
      await admin.end().catch(() => undefined);
      return {
        tables: [],
        ratios: [],
        notes: [`postgres-queue: not run: no PostgreSQL reachable at ${redact(adminUrl)} (${error instanceof Error ? error.message : String(error)}); set DATABASE_URL`],
      };
    }
    let bench: BenchDatabase | undefined;
    try {
      bench = await createBenchDatabase(admin, adminUrl);
      const cpu = await PgCpu.probe(admin);
      progress(`postgres-queue: ${fmt(sizes.checks)} checks in ${bench.label}`);
      await seed(bench.pool, sizes.checks);

      const bare: Round[] = [];
      const vigil: Round[] = [];
      for (let pair = 1; pair <= sizes.pairs; pair++) {
        progress(`postgres-queue: pair ${pair}/${sizes.pairs}, ${fmt(sizes.runs)} completions each`);
        bare.push(await bareRound(bench, cpu, sizes, `bare #${pair}`));
        vigil.push(await vigilRound(bench, cpu, sizes, `vigil #${pair}`));
      }
      const total = (list: readonly Round[]): Round => ({
        label: '',
        runs: sum(list, (r) => r.runs),
        usage: { wallMs: sum(list, (r) => r.usage.wallMs), cpuMicros: sum(list, (r) => r.usage.cpuMicros), otherCpuMicros: 0 },
        pgBackendMicros: sum(list, (r) => r.pgBackendMicros),
        pgBackgroundMicros: sum(list, (r) => r.pgBackgroundMicros),
        claims: sum(list, (r) => r.claims),
        batches: sum(list, (r) => r.batches),
      });
      const b = total(bare);
      const v = total(vigil);
      const vigilRate = v.runs / (v.usage.wallMs / 1000);
      const bareRate = b.runs / (b.usage.wallMs / 1000);
      const ratios: Ratio[] = [
        { name: 'pg-queue checks/s', value: vigilRate, digits: 0 },
        { name: 'pg-queue rate vigil÷bare', value: vigilRate / bareRate },
      ];
      if (cpu.available) ratios.push({ name: 'pg-queue pg cpu/check', value: v.pgBackendMicros / v.runs, unit: 'µs', digits: 1 });
      const rounds = [...interleave(bare, vigil)];
      return {
        tables: [
          {
            columns: ['postgres-queue', 'runs', 'checks/s', 'cpu µs/check', 'pg µs/check', 'pg bg µs/check', 'claims', 'rows/claim', 'rows/complete'],
            rows: rounds.map((round) => [
              round.label,
              fmt(round.runs),
              fmt(round.runs / (round.usage.wallMs / 1000)),
              fmt(round.usage.cpuMicros / round.runs, 1),
              cpu.available ? fmt(round.pgBackendMicros / round.runs, 1) : NA,
              cpu.available ? fmt(round.pgBackgroundMicros / round.runs, 1) : NA,
              fmt(round.claims),
              fmt(round.runs / round.claims, 0),
              fmt(round.runs / round.batches, 0),
            ]),
          },
        ],
        ratios,
        notes: [
          `postgres-queue: ${fmt(sizes.checks)} no-op checks (every ${INTERVAL_MS} ms, so always due) in ${bench.label}; vigil = Server (concurrency ${CONCURRENCY}, no handlers, silent logger) over PostgresQueue, one instance; bare = the queue's claim and complete statements with pg, ${BARE_WORKERS} loops of claim ${BARE_BATCH} → complete them; ${fmt(sizes.warmup)} completions warm up each round; ratios over the ${sizes.pairs} pairs.`,
          cpu.available
            ? 'postgres-queue: cpu = this process; pg = the backends of the round\'s connections (/proc, 10 ms ticks); pg bg = the server\'s walwriter, checkpointer, background writer and autovacuum, which other users of the same server add to.'
            : `postgres-queue: PostgreSQL's CPU not measured: ${cpu.reason}.`,
        ],
      };
    } finally {
      await bench?.drop().catch((error: unknown) => progress(`postgres-queue: dropping ${bench?.label ?? 'the bench database'} failed: ${String(error)}`));
      await admin.end();
    }
  },
};

interface BenchDatabase {
  /** Where the checks are: `database vigil_bench_<pid>`. */
  readonly label: string;
  readonly url: string;
  /** For seeding and the bare loop's statements. */
  readonly pool: pg.Pool;
  drop(): Promise<void>;
}

/** A database of its own for this run, so that nothing the tests keep is touched. */
async function createBenchDatabase(admin: pg.Client, adminUrl: string): Promise<BenchDatabase> {
  const name = `vigil_bench_${process.pid}`;
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: BARE_WORKERS + 1, application_name: APPLICATION });
  pool.on('error', () => undefined);
  return {
    label: `database ${name}`,
    url: url.toString(),
    pool,
    async drop() {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    },
  };
}

/** The schema, and `count` no-op checks all due a second ago. */
async function seed(pool: pg.Pool, count: number): Promise<void> {
  // The source tree's files: the bench runs from dist-tools/, where the build copies none.
  const migrations = await loadMigrations(fileURLToPath(new URL('../../src/postgres/migrations/', import.meta.url)));
  await migrate(pool, { schema: SCHEMA, migrations });
  const timing = { intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS };
  const specs: unknown[] = [];
  for (let i = 0; i < count; i++) {
    const spec: CheckSpec = { ...benchSpec(`noop-${i}`, 'noop', parseAttributes(noopCommand, { target: `t${i}` }), timing), handlers: [] };
    specs.push(encodeSpec(spec).json);
  }
  await pool.query(
    `INSERT INTO ${SCHEMA}.checks (id, spec, source, timeout_ms, next_due_at, slot_at, state)
     SELECT s->>'id', s, 'api', $2, now() - interval '1 second', now() - interval '1 second', $3 FROM jsonb_array_elements($1::jsonb) AS s`,
    [JSON.stringify(specs), TIMEOUT_MS, JSON.stringify(initialCheckState)],
  );
  await pool.query(`VACUUM ANALYZE ${SCHEMA}.checks`);
}

/** PostgresQueue under the Server, one instance, until `warmup + runs` checks finished. */
async function vigilRound(bench: BenchDatabase, cpu: PgCpu, sizes: Sizes, label: string): Promise<Round> {
  const logger = pino({ level: 'silent' });
  const pool = new pg.Pool({ connectionString: bench.url, max: 10, application_name: APPLICATION });
  pool.on('error', () => undefined);
  const queue = new PostgresQueue({ pool, schema: SCHEMA, instanceId: INSTANCE, logger });
  await queue.start();
  const server = new Server({ queue, commands: [noopCommand], logger, concurrency: CONCURRENCY });
  try {
    let finished = 0;
    let mark = markUsage();
    let pgMark = await cpu.mark();
    let statsMark = queue.stats;
    const outcome: { round?: Omit<Round, 'pgBackendMicros' | 'pgBackgroundMicros'>; pg?: Promise<PgUsage> } = {};
    let end!: () => void;
    const over = new Promise<void>((resolve) => (end = resolve));
    const stopMeasuring = (): void => {
      if (outcome.round !== undefined) return;
      const stats = queue.stats;
      outcome.pg = cpu.since(pgMark);
      outcome.round = {
        label,
        runs: Math.max(0, finished - sizes.warmup),
        usage: usageSince(mark),
        claims: stats.claimQueries - statsMark.claimQueries,
        batches: stats.completionBatches - statsMark.completionBatches,
      };
      end();
    };
    server.on('check:finish', () => {
      finished++;
      if (finished === sizes.warmup) {
        mark = markUsage();
        statsMark = queue.stats;
        // Read before the next claim is answered: a few ms of backend CPU may land on either side.
        void cpu.mark().then((m) => (pgMark = m));
      } else if (finished >= sizes.warmup + sizes.runs) stopMeasuring();
    });
    const timer = setTimeout(stopMeasuring, ROUND_LIMIT_MS);
    server.start();
    await over;
    clearTimeout(timer);
    const round = outcome.round as Omit<Round, 'pgBackendMicros' | 'pgBackgroundMicros'>;
    if (round.runs === 0) throw new Error(`the round "${label}" did not finish its ${fmt(sizes.warmup)} warm-up runs within ${ROUND_LIMIT_MS} ms (${fmt(finished)} finished)`);
    const pgUsage = await (outcome.pg as Promise<PgUsage>);
    return { ...round, pgBackendMicros: pgUsage.backends, pgBackgroundMicros: pgUsage.background };
  } finally {
    await within(server.stop({ timeoutMs: 10_000 }), 30_000, `stopping the server of ${label}`);
    await within(queue.close(), 30_000, `closing the queue of ${label}`);
    await pool.end();
  }
}

/**
 * The queue's statements with `pg` alone: `BARE_WORKERS` loops, each claiming `BARE_BATCH` checks and
 * completing them (the state a no-op run leaves, the next due time), until `warmup + runs` completed.
 */
async function bareRound(bench: BenchDatabase, cpu: PgCpu, sizes: Sizes, label: string): Promise<Round> {
  const { claim, complete } = queueStatements(SCHEMA);
  const held = new Set<string>();
  const deadline = Date.now() + ROUND_LIMIT_MS;
  const target = sizes.warmup + sizes.runs;
  let completed = 0;
  let claims = 0;
  let batches = 0;
  let mark = markUsage();
  let pgMark = await cpu.mark();
  let measured: { mark: typeof mark; completed: number; claims: number; batches: number } | null = null;
  const worker = async (): Promise<void> => {
    while (completed < target && Date.now() < deadline) {
      const now = Date.now();
      // As PostgresQueue sends them: by name, its default lease factor and margin, the ids it holds left alone.
      const { rows } = await bench.pool.query<ClaimedRow>({ ...claim, values: [INSTANCE, now, BARE_BATCH, 2, 1_000, [...held]] });
      claims++;
      for (const row of rows) held.add(row.id);
      if (rows.length === 0) continue;
      const finishedAt = Date.now();
      const due = finishedAt + INTERVAL_MS;
      const completions = rows
        .map((row): CompletionRow => ({ id: row.id, version: row.version, state: bareState(finishedAt), due, slot: due }))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      await bench.pool.query({ ...complete, values: [INSTANCE, JSON.stringify(completions)] });
      batches++;
      for (const row of rows) held.delete(row.id);
      completed += rows.length;
      if (measured === null && completed >= sizes.warmup) {
        measured = { mark: markUsage(), completed, claims, batches };
        mark = measured.mark;
        pgMark = await cpu.mark();
      }
    }
  };
  await Promise.all(Array.from({ length: BARE_WORKERS }, worker));
  const usage = usageSince(mark);
  const pgUsage = await cpu.since(pgMark);
  const base = measured ?? { completed: 0, claims: 0, batches: 0 };
  const runs = completed - base.completed;
  if (runs <= 0) throw new Error(`the round "${label}" did not finish its ${fmt(sizes.warmup)} warm-up completions within ${ROUND_LIMIT_MS} ms`);
  return { label, runs, usage, pgBackendMicros: pgUsage.backends, pgBackgroundMicros: pgUsage.background, claims: claims - base.claims, batches: batches - base.batches };
}

/** The state a no-op run leaves: HARD OK, the run's result. */
function bareState(at: number): unknown {
  return { ...initialCheckState, lastResult: { state: 'ok', reason: 'ok', message: 'no-op done', metrics: [], startedAt: at, durationMs: 0.02 } };
}

/** PostgreSQL's CPU over a window, µs. */
interface PgUsage {
  /** The backends serving this benchmark's connections. */
  readonly backends: number;
  /** walwriter, checkpointer, background writer, autovacuum. */
  readonly background: number;
}

interface PgMark {
  readonly backends: ReadonlyMap<number, number>;
  readonly background: ReadonlyMap<number, number>;
}

/**
 * Reads PostgreSQL's CPU from /proc, for a server on this machine: the pids come from
 * pg_stat_activity (through the admin connection, whose own backend is not counted).
 */
class PgCpu {
  readonly available: boolean;
  readonly reason: string;
  readonly #admin: pg.Client;

  private constructor(admin: pg.Client, reason: string) {
    this.#admin = admin;
    this.reason = reason;
    this.available = reason === '';
  }

  static async probe(admin: pg.Client): Promise<PgCpu> {
    const { rows } = await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const pid = rows[0]?.pid ?? 0;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!comm.startsWith('postgres')) return new PgCpu(admin, `/proc/${pid} is ${JSON.stringify(comm)}, not the server's backend (the server is not on this machine)`);
      processCpuMicros(pid);
    } catch {
      return new PgCpu(admin, `its backend ${pid} is not in this machine's /proc (the server runs elsewhere)`);
    }
    return new PgCpu(admin, '');
  }

  async mark(): Promise<PgMark> {
    if (!this.available) return { backends: new Map(), background: new Map() };
    const { rows } = await this.#admin.query<{ pid: number; ours: boolean }>(
      `SELECT pid, application_name = $1 AS ours FROM pg_stat_activity
       WHERE application_name = $1 OR backend_type IN ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher', 'autovacuum worker')`,
      [APPLICATION],
    );
    const backends = new Map<number, number>();
    const background = new Map<number, number>();
    for (const row of rows) {
      const micros = readCpu(row.pid);
      if (micros !== null) (row.ours ? backends : background).set(row.pid, micros);
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

function readCpu(pid: number): number | null {
  try {
    return processCpuMicros(pid);
  } catch {
    return null;
  }
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'DATABASE_URL';
  }
}

function sum<T>(list: readonly T[], value: (item: T) => number): number {
  return list.reduce((total, item) => total + value(item), 0);
}

function* interleave<T>(a: readonly T[], b: readonly T[]): Generator<T> {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) yield a[i] as T;
    if (i < b.length) yield b[i] as T;
  }
}
