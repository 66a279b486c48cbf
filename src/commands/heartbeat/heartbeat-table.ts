import pg from 'pg';
import { z } from 'zod';
import type { HeartbeatRecord } from '../../heartbeats/heartbeat-file-format.js';
import { DEFAULT_SCHEMA } from '../../postgres/migrations.js';
import type { CommandOutcome } from '../../results/result.js';
import { duration, nonEmptyString } from '../../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from '../command.js';
import { judgeHeartbeat, missingHeartbeat, MissingFileStates } from './heartbeat-file.js';
import { type Clock } from '../../core/clock.js';

const URL_ERROR = 'expected a postgres:// or postgresql:// connection URL';

const attributes = z
  .strictObject({
    /** Connection URL of the database holding the heartbeats table. */
    url: z.string({ error: URL_ERROR }).refine(isPostgresUrl, { error: URL_ERROR }),
    /** Schema of the `heartbeats` table (created by the migrations); default `vigil`. */
    schema: nonEmptyString('a schema name').default(DEFAULT_SCHEMA),
    /** The row's `id`: the name its writer beats under (`vigil beat --database URL --id NAME`). */
    id: nonEmptyString('a heartbeat id (a non-empty string)'),
    /** Age (ms) at or above which the heartbeat is late: `warn`, reason `heartbeat-late`. Default: no warning. */
    warnAfter: duration(1).optional(),
    /** Age (ms) at or above which the heart stopped: `crit`, reason `heart-attack`. */
    critAfter: duration(1),
    /** The state of a missing row; default `crit` (reason `heart-attack`; with `ok`, reason `no-heartbeat`). */
    missing: z.enum(MissingFileStates, { error: 'expected crit, warn, ok or unknown' }).default('crit'),
  })
  .superRefine((value, ctx) => {
    if (value.warnAfter !== undefined && value.warnAfter > value.critAfter) {
      ctx.addIssue({ code: 'custom', path: ['warnAfter'], message: `expected a duration no longer than critAfter (${value.critAfter}ms)` });
    }
  });

/** The `heartbeat-table` command's attributes after parsing: durations in milliseconds. */
export type HeartbeatTableAttributes = z.output<typeof attributes>;

export interface HeartbeatTableCommandOptions {
  /** Tells the time; default the database's clock, read in the same query as the row. */
  readonly clock?: Clock;
}

/**
 * `heartbeat-table`: reads one row of `<schema>.heartbeats` (written by `startDatabaseHeartbeat` of
 * `heartbeats/database-heartbeat.ts`, or `vigil beat --database`) and judges its age exactly as
 * `heartbeat-file` judges a file's. Reasons: `ok`; `heartbeat-late` (warn); `heart-attack` (crit; or the
 * row is missing, in the state `missing` says); `no-heartbeat` (missing row with `missing: ok`);
 * `bad-heartbeat` (unknown: dated more than 5 s ahead); `unreadable` (unknown: the
 * database cannot be reached or the table is not there); `timeout` (unknown). Metrics: `age` (s, with
 * the thresholds), `uptime` (s), `memory_usage` (B), `beat` (counter).
 *
 * Age is measured against the database's clock (as the writer's default timestamp), so clocks of the
 * hosts involved do not matter. Each command instance keeps one small pool per distinct `url`, shared by
 * every check naming it; these pools are never closed (they hold no connection once idle, and do not keep
 * the process alive). A run that is aborted returns at once: its connection is destroyed and its query
 * cancelled (`pg_cancel_backend`), so a query stuck behind a lock does not keep a backend busy.
 */
export function heartbeatTableCommand(options: HeartbeatTableCommandOptions = {}): Command<HeartbeatTableAttributes> {
  const { clock } = options;
  const pools = new Map<string, CancellablePool>();
  const statements = new Map<string, string>();

  function poolFor(url: string): CancellablePool {
    let pool = pools.get(url);
    if (pool === undefined) {
      pool = new CancellablePool(url);
      pools.set(url, pool);
    }
    return pool;
  }

  function statementFor(schema: string): string {
    let sql = statements.get(schema);
    if (sql === undefined) {
      sql =
        'SELECT (extract(epoch FROM timestamp) * 1000)::float8 AS timestamp_ms, uptime, memory_usage::float8 AS memory_usage, pid, beat::float8 AS beat, ' +
        `(extract(epoch FROM now()) * 1000)::float8 AS now_ms FROM ${pg.escapeIdentifier(schema)}.heartbeats WHERE id = $1`;
      statements.set(schema, sql);
    }
    return sql;
  }

  return defineCommand({
    name: 'heartbeat-table',
    attributes,
    async run(attrs: HeartbeatTableAttributes, { signal }: CommandContext): Promise<CommandOutcome> {
      const { id } = attrs;
      if (signal.aborted) return timedOut(id);
      let row: HeartbeatRow | undefined;
      try {
        row = (await poolFor(attrs.url).query<HeartbeatRow>(statementFor(attrs.schema), [id], signal)).rows[0];
      } catch (error) {
        if (signal.aborted) return timedOut(id);
        return { state: 'unknown', reason: 'unreadable', message: `cannot read heartbeat row ${id} from ${attrs.schema}.heartbeats: ${describeError(error)}` };
      }
      if (row === undefined) return missingHeartbeat(`heartbeat row ${id}`, attrs.missing);
      return judgeHeartbeat('row', id, attrs, toRecord(row), clock === undefined ? row.now_ms : clock.now());
    },
  });
}

interface HeartbeatRow {
  timestamp_ms: number;
  uptime: number | null;
  memory_usage: number | null;
  pid: number | null;
  beat: number | null;
  now_ms: number;
}

function toRecord(row: HeartbeatRow): HeartbeatRecord {
  return {
    timestampMs: row.timestamp_ms,
    uptime: row.uptime ?? undefined,
    memoryUsage: row.memory_usage ?? undefined,
    pid: row.pid ?? undefined,
    beat: row.beat ?? undefined,
  };
}

function timedOut(id: string): CommandOutcome {
  return { state: 'unknown', reason: 'timeout', message: `timed out reading heartbeat row ${id}` };
}

/** A pool of at most 4 connections whose queries an AbortSignal cancels. */
class CancellablePool {
  readonly #pool: pg.Pool;
  /** Backend process id of each connection, for `pg_cancel_backend`. */
  readonly #pids = new WeakMap<pg.PoolClient, number>();

  constructor(url: string) {
    this.#pool = new pg.Pool({ connectionString: url, max: 4, idleTimeoutMillis: 30_000, allowExitOnIdle: true, keepAlive: true, application_name: 'vigil heartbeat-table' });
    // An idle connection that breaks is only replaced; unheard, its error would crash the process.
    this.#pool.on('error', ignore);
    // Queued ahead of the first query on the connection: its pid is known before that query can hang.
    this.#pool.on('connect', (client) => {
      client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then((result) => {
        const pid = result.rows[0]?.pid;
        if (pid !== undefined) this.#pids.set(client, pid);
      }, ignore);
    });
  }

  /**
   * A query that `signal` cuts short, rejecting at once with the signal's reason: an abort while waiting
   * for a connection hands the connection back when it comes; an abort during the query destroys the
   * connection and asks the server to cancel the query, which a closed socket alone would not do while
   * it waits for a lock.
   */
  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[], signal: AbortSignal): Promise<pg.QueryResult<R>> {
    let client: pg.PoolClient | undefined;
    let destroyed = false;
    let onAbort!: () => void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        if (client !== undefined && !destroyed) {
          destroyed = true;
          this.#cancel(client);
          client.release(new Error('query aborted'));
        }
        reject(signal.reason as Error);
      };
    });
    // Rejected only on abort, perhaps after the race below is over.
    aborted.catch(ignore);
    signal.addEventListener('abort', onAbort, { once: true });
    const connecting = this.#pool.connect();
    try {
      client = await Promise.race([connecting, aborted]);
      const query = client.query<R>(sql, params);
      // After an abort the destroyed connection rejects it: nobody waits for it then.
      query.catch(ignore);
      return await Promise.race([query, aborted]);
    } catch (error) {
      // A query that failed leaves the connection in doubt: a new one is cheap.
      if (client !== undefined && !destroyed) {
        destroyed = true;
        client.release(error as Error);
      }
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (client === undefined) connecting.then((late) => late.release(), ignore);
      else if (!destroyed) client.release();
    }
  }

  /** Cancels what the connection's backend is running, in the background, on another connection. */
  #cancel(client: pg.PoolClient): void {
    const pid = this.#pids.get(client);
    if (pid !== undefined) this.#pool.query('SELECT pg_cancel_backend($1)', [pid]).then(ignore, ignore);
  }
}

/** One line for a pg or socket error; a refused connection to a name with several addresses is an AggregateError without a message. */
function describeError(error: unknown): string {
  const { code, message, errors } = error as { code?: unknown; message?: unknown; errors?: unknown };
  if (code === '42P01') return `${String(message)} (run \`vigil migrate\` to create it)`;
  const first: unknown = Array.isArray(errors) ? errors[0] : undefined;
  const text = typeof message === 'string' && message !== '' ? message : first instanceof Error ? first.message : '';
  if (typeof code === 'string' && !text.includes(code)) return text === '' ? code : `${code} ${text}`;
  return text === '' ? String(error) : text;
}

function isPostgresUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === 'postgres:' || protocol === 'postgresql:';
  } catch {
    return false;
  }
}

function ignore(): void {}
