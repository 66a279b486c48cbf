import pg from 'pg';
import { recentResults } from '../../postgres/results-table.js';
import type { Incident } from '../../results/incident.js';
import type { Result } from '../../results/result.js';
import type { HistorySource, ResultHistory } from '../../results/result-history.js';

export interface PostgresHistoryOptions {
  readonly pool: pg.Pool;
  readonly schema: string;
  /** This instance's own memory: results when the database holds none for the check. */
  readonly fallback: ResultHistory;
  /** Resolved incidents read; default 1 000. */
  readonly resolvedLimit?: number;
}

/**
 * The recent past as every instance sharing the database sees it: results from the `results` table (a
 * `postgres-results` handler writes it; without one, this instance's memory answers) and resolved
 * incidents from the `incidents` table the queue writes.
 */
export class PostgresHistory implements HistorySource {
  readonly #pool: pg.Pool;
  readonly #table: string;
  readonly #schema: string;
  readonly #fallback: ResultHistory;
  readonly #resolvedLimit: number;

  constructor(options: PostgresHistoryOptions) {
    this.#pool = options.pool;
    this.#schema = options.schema;
    this.#table = `${pg.escapeIdentifier(options.schema)}.incidents`;
    this.#fallback = options.fallback;
    this.#resolvedLimit = options.resolvedLimit ?? 1_000;
  }

  async results(checkId: string, limit = 10): Promise<readonly Result[]> {
    const stored = await recentResults(this.#pool, this.#schema, checkId, limit);
    if (stored.length === 0) return this.#fallback.results(checkId, limit);
    return stored.map(({ state, reason, message, metrics, startedAt, durationMs }) => ({ state, reason, message, metrics, startedAt, durationMs }));
  }

  async resolvedIncidents(): Promise<readonly Incident[]> {
    const { rows } = await this.#pool.query<{ data: Incident; resolved_ms: number }>(
      `SELECT data, (extract(epoch FROM resolved_at) * 1000)::float8 AS resolved_ms FROM ${this.#table} WHERE resolved_at IS NOT NULL ORDER BY resolved_at DESC LIMIT $1`,
      [this.#resolvedLimit],
    );
    return rows.map((row) => ({ ...row.data, resolvedAt: row.data.resolvedAt ?? Math.round(row.resolved_ms) }));
  }

  forget(checkId: string): void {
    this.#fallback.forget(checkId);
  }
}
