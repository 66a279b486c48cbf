import pg from 'pg';
import type { Metric } from '../results/metric.js';
import type { Result, State } from '../results/result.js';

/**
 * The reader of `<schema>.results`, the table the `postgres-results` handler writes: shared by the
 * handler and the queue's history (the results every instance sees).
 */

/** A stored Result and the check it belongs to. */
export interface StoredResult extends Result {
  readonly id: string;
  readonly checkId: string;
}

/**
 * The `limit` most recent Results of a check, newest first (by start time), from `<schema>.results`.
 * `id` is the row's id (a bigint, as a string).
 */
export async function recentResults(pool: pg.Pool | pg.ClientBase, schema: string, checkId: string, limit: number): Promise<StoredResult[]> {
  if (!Number.isInteger(limit) || limit < 1) throw new TypeError(`Expected \`limit\` to be a positive integer, got \`${String(limit)}\``);
  const { rows } = await pool.query<ResultRow>(
    'SELECT id::text AS id, check_id, state, reason, message, metrics, (extract(epoch FROM started_at) * 1000)::float8 AS started_at, duration_ms::float8 AS duration_ms ' +
      `FROM ${pg.escapeIdentifier(schema)}.results WHERE check_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2`,
    [checkId, limit],
  );
  return rows.map((row) => ({
    id: row.id,
    checkId: row.check_id,
    state: row.state,
    reason: row.reason,
    message: row.message,
    metrics: row.metrics ?? [],
    startedAt: Math.round(row.started_at),
    durationMs: row.duration_ms,
  }));
}

interface ResultRow {
  id: string;
  check_id: string;
  state: State;
  reason: string;
  message: string;
  metrics: Metric[] | null;
  started_at: number;
  duration_ms: number;
}
