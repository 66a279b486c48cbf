import pg from 'pg';
import { z } from 'zod';
import type { Result } from '../results/result.js';
import { systemClock, type Clock } from '../core/clock.js';
import { DEFAULT_SCHEMA } from '../postgres/migrations.js';
export { recentResults, type StoredResult } from '../postgres/results-table.js';
import { duration, integer, nonEmptyString } from '../validation/schema-types.js';
import { defineHandler, type Handler, type HandlerDeps, type Outcome } from './handler.js';
import { registeredCounter as counter, registeredGauge as gauge } from '../metrics/registered-metrics.js';

/** Rows one retention statement deletes at most, so that a sweep never holds long locks or a huge transaction. */
export const RETENTION_BATCH = 10_000;
/** Milliseconds between two retention sweeps. */
export const RETENTION_SWEEP_MS = 5 * 60_000;
/** Milliseconds after start before the first retention sweep (a restart sweeps soon, not at once). */
export const FIRST_SWEEP_DELAY_MS = 30_000;
/** Statements one sweep runs at most (1 million rows); the next sweep goes on where it stopped. */
export const MAX_SWEEP_ROUNDS = 100;
/** Upper bound of the delay between two attempts to reach a database that is away, milliseconds. */
export const MAX_RETRY_DELAY_MS = 30_000;
/** Time `close()` gives the last flush and the pool's shutdown by default, milliseconds. */
export const CLOSE_TIMEOUT_MS = 5_000;

const URL_ERROR = 'expected a postgres:// or postgresql:// connection URL';

const options = z.strictObject({
  /** Connection URL of the database (`postgres://user:password@host:5432/db`). */
  url: z.string({ error: URL_ERROR }).refine(isPostgresUrl, { error: URL_ERROR }),
  /** Schema holding the `results` table (created by the migrations); default `vigil`. */
  schema: nonEmptyString('a schema name').default(DEFAULT_SCHEMA),
  /** Rows per INSERT statement; default 500. */
  batchSize: integer(1, 10_000).default(500),
  /** Time between two flushes of the buffer; a full batch goes out at once. Default 1 s. */
  flushInterval: duration(1).prefault('1s'),
  /** How long rows are kept (by their run's start time; at least 1 m); older ones are deleted in batches. Default 7 d. */
  retention: duration(60_000).prefault('7d'),
  /** Results held in memory while the database is slow or away; beyond that the oldest are dropped (counted). Default 50 000. */
  maxBuffered: integer(1, 10_000_000).default(50_000),
});

export type PostgresResultsHandlerOptions = z.output<typeof options>;

/**
 * `postgres-results`: stores every Result in the `<schema>.results` table of a PostgreSQL database, for
 * the history the API serves in PostgreSQL mode.
 *
 * `process` only appends to an in-memory buffer and never waits for the database, so a slow or absent
 * database never holds a check up. The buffer goes out in batches of `batchSize` rows, one INSERT each
 * (arrays of columns through `unnest`, so one statement shape whatever the batch), every
 * `flushInterval` and at once when a full batch is waiting. While the database is away, attempts back
 * off (up to 30 s) and the buffer holds at most `maxBuffered` results: the oldest are dropped and
 * counted in `vigil_results_dropped_total`. A batch whose INSERT reached the database but whose answer
 * was lost is sent again: rows are stored at least once.
 *
 * Retention: every 5 minutes rows whose run started more than `retention` ago are deleted,
 * 10 000 per statement. `close()` flushes what is buffered, for at most 5 s, and ends the pool.
 */
export const postgresResultsHandlerType = defineHandler({
  type: 'postgres-results',
  options,
  create: (name, parsed, deps) => postgresResultsHandler(name, parsed, deps),
});

/** A results handler, with ways to flush and sweep on demand. */
export interface PostgresResultsHandler extends Handler {
  /** Buffers the outcome's Result and returns at once. */
  process(outcome: Outcome): void;
  /** Writes everything buffered now (after a flush in flight); resolves once done or after a failed batch. After `close()`, waits for the close. */
  flush(): Promise<void>;
  /** Deletes rows older than `retention` now; resolves the number of rows deleted (0 when the database is away). */
  sweep(): Promise<number>;
  /** Flushes what is buffered (bounded by the close timeout), stops the timers and ends the pool. Idempotent. */
  close(): Promise<void>;
  /** Results buffered, not yet stored. */
  readonly buffered: number;
  /** Results dropped so far: the buffer was full, or they were still buffered when `close()` gave up. */
  readonly dropped: number;
}

export interface PostgresResultsHandlerDeps extends HandlerDeps {
  /** `now` for retention cut-offs and the flush and sweep timers; default real time. */
  readonly clock?: Clock;
  /** Time `close()` gives the last flush and the pool's end, milliseconds; default 5 s. */
  readonly closeTimeoutMs?: number;
}

/** Builds a `postgres-results` handler; `postgresResultsHandlerType` is the way in from the config. */
export function postgresResultsHandler(name: string, settings: PostgresResultsHandlerOptions, deps: PostgresResultsHandlerDeps): PostgresResultsHandler {
  const { batchSize, flushInterval, retention } = settings;
  const clock = deps.clock ?? systemClock;
  const closeTimeoutMs = deps.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
  const logger = deps.logger.child({ handler: name });
  const table = `${pg.escapeIdentifier(settings.schema)}.results`;
  const insertSql =
    `INSERT INTO ${table} (check_id, state, reason, message, metrics, started_at, duration_ms) ` +
    'SELECT r.check_id, r.state, r.reason, r.message, r.metrics::jsonb, to_timestamp(r.started_at / 1000.0), r.duration_ms ' +
    'FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[]) ' +
    'AS r(check_id, state, reason, message, metrics, started_at, duration_ms)';
  const deleteSql = `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE started_at < $1 LIMIT ${RETENTION_BATCH})`;
  // The password never reaches a log line.
  const target = describeTarget(settings.url);

  const pool = new pg.Pool({
    connectionString: settings.url,
    // One flush and one retention sweep at a time.
    max: 2,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'vigil results',
  });
  // An idle connection that breaks (a restart, pg_terminate_backend) is only replaced; without a
  // listener its error would crash the process.
  pool.on('error', (err) => logger.debug({ err, target }, 'results database connection lost'));

  const stored = counter(deps.registry, 'vigil_results_stored_total', 'Results written to the database by postgres-results handlers.', ['handler']).labels(name);
  const droppedCounter = counter(deps.registry, 'vigil_results_dropped_total', 'Results postgres-results handlers dropped: buffer full while the database was away, or still buffered at shutdown.', ['handler']).labels(name);
  const deleted = counter(deps.registry, 'vigil_results_deleted_total', 'Rows postgres-results handlers deleted for retention.', ['handler']).labels(name);
  const bufferedGauge = gauge(deps.registry, 'vigil_results_buffered', 'Results postgres-results handlers hold, not yet written.', ['handler']).labels(name);
  stored.inc(0);
  droppedCounter.inc(0);
  deleted.inc(0);

  const buffer = new ResultBuffer(settings.maxBuffered);
  let dropped = 0;
  let flushing: Promise<void> | null = null;
  let sweeping: Promise<number> | null = null;
  /** Consecutive failed batches; while > 0, flushes wait for `retryAt`. */
  let failures = 0;
  let retryAt = 0;
  let closing = false;
  let closed: Promise<void> | null = null;
  // Aborted when `close` has waited long enough: the batch in flight is abandoned.
  const abandon = new AbortController();
  let inFlight: pg.PoolClient | null = null;

  let flushTimer = clock.setTimeout(onFlushTimer, flushInterval);
  let sweepTimer = clock.setTimeout(onSweepTimer, FIRST_SWEEP_DELAY_MS);

  function onFlushTimer(): void {
    if (closing) return;
    bufferedGauge.set(buffer.size);
    if (clock.now() >= retryAt) void startFlush(true);
    flushTimer = clock.setTimeout(onFlushTimer, flushInterval);
  }

  function onSweepTimer(): void {
    if (closing) return;
    void sweep();
    sweepTimer = clock.setTimeout(onSweepTimer, RETENTION_SWEEP_MS);
  }

  function drop(count: number): void {
    dropped += count;
    droppedCounter.inc(count);
  }

  /** Writes full batches (or, with `all`, everything) until the buffer is drained or a batch fails. */
  function startFlush(all: boolean): Promise<void> {
    flushing ??= drain(all).finally(() => {
      flushing = null;
      bufferedGauge.set(buffer.size);
    });
    return flushing;
  }

  async function drain(all: boolean): Promise<void> {
    while (buffer.size >= (all ? 1 : batchSize) && !abandon.signal.aborted) {
      const batch = buffer.peek(batchSize);
      try {
        await insert(batch);
      } catch (err) {
        // Results pushed out of the full buffer while they were being written are lost after all.
        drop(buffer.unlock());
        failed(err, batch.count);
        return;
      }
      buffer.commit(batch.end);
      stored.inc(batch.count);
      if (failures > 0) {
        logger.info({ target, dropped, buffered: buffer.size }, 'results database reachable again');
        failures = 0;
        retryAt = 0;
      }
    }
  }

  function failed(err: unknown, count: number): void {
    failures++;
    retryAt = clock.now() + Math.min(MAX_RETRY_DELAY_MS, flushInterval * 2 ** Math.min(failures - 1, 16));
    // One line per outage, not one per attempt; the rest at debug.
    const level = failures === 1 ? 'warn' : 'debug';
    logger[level]({ err, target, batch: count, buffered: buffer.size, dropped, failures }, `cannot store results in ${target}, keeping them buffered (at most ${settings.maxBuffered})`);
  }

  async function insert(batch: Batch): Promise<void> {
    const client = await pool.connect();
    if (abandon.signal.aborted) {
      client.release();
      throw new Error('abandoned: the handler closed');
    }
    inFlight = client;
    let failure: Error | undefined;
    try {
      await client.query(insertSql, batch.columns());
    } catch (error) {
      failure = error as Error;
      throw error;
    } finally {
      // `abandonInFlight` may have destroyed it already.
      if (inFlight === client) {
        inFlight = null;
        // A failed statement may have left the connection in any state: a new one is cheap.
        client.release(failure);
      }
    }
  }

  function abandonInFlight(): void {
    const client = inFlight;
    if (client === null) return;
    inFlight = null;
    client.release(new Error('abandoned: the handler closed'));
  }

  function sweep(): Promise<number> {
    sweeping ??= sweepNow().finally(() => {
      sweeping = null;
    });
    return sweeping;
  }

  async function sweepNow(): Promise<number> {
    const cutoff = new Date(clock.now() - retention);
    let total = 0;
    try {
      for (let round = 0; round < MAX_SWEEP_ROUNDS && !closing; round++) {
        const { rowCount } = await pool.query(deleteSql, [cutoff]);
        const count = rowCount ?? 0;
        total += count;
        deleted.inc(count);
        if (count < RETENTION_BATCH) break;
      }
    } catch (err) {
      logger.debug({ err, target }, 'results retention sweep failed; the next one tries again');
    }
    return total;
  }

  async function closeNow(): Promise<void> {
    closing = true;
    clock.clearTimeout(flushTimer);
    clock.clearTimeout(sweepTimer);
    const deadline = clock.setTimeout(() => {
      abandon.abort();
      abandonInFlight();
    }, closeTimeoutMs);
    const gaveUp = new Promise<void>((resolve) => abandon.signal.addEventListener('abort', () => resolve(), { once: true }));
    try {
      // One last pass, backoff or not: a batch that fails now is not tried again.
      await Promise.race([(async () => {
        await flushing;
        failures = 0;
        await startFlush(true);
        await sweeping;
      })(), gaveUp]);
      if (buffer.size > 0) {
        logger.warn({ target, left: buffer.size }, 'results still buffered at shutdown are dropped');
        drop(buffer.size);
        buffer.clear();
        bufferedGauge.set(0);
      }
      // A connection attempt still pending keeps `end` waiting; the deadline bounds that too.
      await Promise.race([pool.end().catch((err: unknown) => logger.debug({ err }, 'ending the results pool failed')), gaveUp]);
    } finally {
      clock.clearTimeout(deadline);
    }
  }

  return {
    name,
    process(outcome) {
      if (closing) return drop(1);
      if (buffer.push(outcome.check.id, outcome.result)) drop(1);
      if (buffer.size >= batchSize && flushing === null && clock.now() >= retryAt) void startFlush(false);
    },
    async flush() {
      if (closed !== null) return closed;
      await flushing;
      await startFlush(true);
    },
    sweep,
    close() {
      closed ??= closeNow();
      return closed;
    },
    get buffered() {
      return buffer.size;
    },
    get dropped() {
      return dropped;
    },
  };
}

/** Results taken from the buffer for one INSERT. */
interface Batch {
  readonly count: number;
  /** The buffer position just past the batch, for `commit`. */
  readonly end: number;
  /** The statement's parameters: one array per column. */
  columns(): unknown[];
}

/**
 * A ring of at most `capacity` results, oldest first. Positions count every result ever pushed, so a
 * batch taken out for writing can be committed even when the oldest were dropped meanwhile. Two
 * parallel arrays rather than an object per result: `push` runs once per check run.
 */
class ResultBuffer {
  readonly #capacity: number;
  readonly #checkIds: (string | undefined)[] = [];
  readonly #results: (Result | undefined)[] = [];
  /** Position of the oldest result held. */
  #first = 0;
  /** Position the next result takes. */
  #next = 0;
  /** Position just past the batch being written; results before it are dropped uncounted. */
  #lockedEnd = 0;
  /** Results of the batch being written that were pushed out meanwhile: stored if it succeeds. */
  #lostLocked = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#next - this.#first;
  }

  /**
   * Appends a result; true when the oldest had to be dropped to make room (one of the batch being
   * written does not count: `unlock` tells whether it was lost).
   */
  push(checkId: string, result: Result): boolean {
    let droppedOldest = false;
    if (this.size === this.#capacity) {
      if (this.#first < this.#lockedEnd) this.#lostLocked++;
      else droppedOldest = true;
      this.#release(this.#first);
      this.#first++;
    }
    const slot = this.#next % this.#capacity;
    this.#checkIds[slot] = checkId;
    this.#results[slot] = result;
    this.#next++;
    return droppedOldest;
  }

  /** Up to `max` of the oldest results, left in place until `commit` (written) or `unlock` (not written). */
  peek(max: number): Batch {
    const start = this.#first;
    const count = Math.min(max, this.size);
    this.#lockedEnd = start + count;
    this.#lostLocked = 0;
    const checkIds: string[] = new Array<string>(count);
    const states: string[] = new Array<string>(count);
    const reasons: string[] = new Array<string>(count);
    const messages: string[] = new Array<string>(count);
    const metrics: string[] = new Array<string>(count);
    const startedAt: number[] = new Array<number>(count);
    const durations: number[] = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const slot = (start + i) % this.#capacity;
      const result = this.#results[slot] as Result;
      checkIds[i] = this.#checkIds[slot] as string;
      states[i] = result.state;
      reasons[i] = result.reason;
      messages[i] = result.message;
      metrics[i] = JSON.stringify(result.metrics);
      startedAt[i] = result.startedAt;
      durations[i] = result.durationMs;
    }
    return { count, end: start + count, columns: () => [checkIds, states, reasons, messages, metrics, startedAt, durations] };
  }

  /** Forgets every result before position `end` (those dropped meanwhile are gone already). */
  commit(end: number): void {
    this.#lockedEnd = 0;
    this.#lostLocked = 0;
    while (this.#first < end) {
      this.#release(this.#first);
      this.#first++;
    }
  }

  /** The batch was not written: its results stay; returns how many of it were pushed out meanwhile. */
  unlock(): number {
    const lost = this.#lostLocked;
    this.#lockedEnd = 0;
    this.#lostLocked = 0;
    return lost;
  }

  clear(): void {
    this.commit(this.#next);
  }

  #release(position: number): void {
    const slot = position % this.#capacity;
    this.#checkIds[slot] = undefined;
    this.#results[slot] = undefined;
  }
}

function isPostgresUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === 'postgres:' || protocol === 'postgresql:';
  } catch {
    return false;
  }
}

/** `host:port/database` of a connection URL, for logs. */
function describeTarget(url: string): string {
  const parsed = new URL(url);
  return `${parsed.host}${parsed.pathname}`;
}

