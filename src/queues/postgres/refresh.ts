import type pg from 'pg';
import { ROW_COLUMNS, type CheckRow } from './check-rows.js';
import type { DatabaseClock } from './database-clock.js';
import type { DatabaseHealth } from './health.js';
import type { Mirror } from './mirror.js';

/** Ids read per statement. */
const FETCH_CHUNK = 1_000;

export interface MirrorRefreshOptions {
  readonly pool: pg.Pool;
  /** The quoted `checks` table. */
  readonly table: string;
  readonly mirror: Mirror;
  /** Told of a refresh that went through (the database is reachable). */
  readonly health: DatabaseHealth;
  /** Moves the rows' times onto the instance's clock. */
  readonly time: DatabaseClock;
}

/** Reading the `checks` table into the mirror: all of it (compared cheaply first), or some checks by id. */
export class MirrorRefresh {
  readonly #pool: pg.Pool;
  readonly #table: string;
  readonly #mirror: Mirror;
  readonly #health: DatabaseHealth;
  readonly #time: DatabaseClock;
  #refreshing: Promise<void> | null = null;

  constructor(options: MirrorRefreshOptions) {
    this.#pool = options.pool;
    this.#table = options.table;
    this.#mirror = options.mirror;
    this.#health = options.health;
    this.#time = options.time;
  }

  /**
   * Compares the whole table with the mirror through a narrow scan (id, spec revision, version, update
   * time) and reads in full only the rows that changed; rows gone are forgotten. Single-flight.
   */
  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        const { rows } = await this.#pool.query<{ id: string; spec_rev: number; version: number; updated: number }>(
          `SELECT id, spec_rev::float8 AS spec_rev, version::float8 AS version, (extract(epoch FROM updated_at) * 1000)::float8 AS updated FROM ${this.#table}`,
        );
        const seen = new Set<string>();
        const changed: string[] = [];
        for (const row of rows) {
          seen.add(row.id);
          if (this.#mirror.differs(row)) changed.push(row.id);
        }
        this.#mirror.forgetAllBut(seen);
        if (changed.length > 0) await this.reloadRows(changed, true);
        this.#health.recovered();
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  /** Reads these rows and applies them; ids missing from the table are forgotten when `forgetMissing`. */
  async reloadRows(ids: readonly string[], forgetMissing: boolean): Promise<void> {
    for (let i = 0; i < ids.length; i += FETCH_CHUNK) {
      const chunk = ids.slice(i, i + FETCH_CHUNK);
      const { rows } = await this.#pool.query<CheckRow>(`SELECT ${ROW_COLUMNS} FROM ${this.#table} WHERE id = ANY($1::text[])`, [chunk]);
      const found = new Set<string>();
      for (const row of rows) {
        found.add(row.id);
        this.#mirror.apply(this.#time.onInstanceClock(row));
      }
      if (forgetMissing) for (const id of chunk) if (!found.has(id)) this.#mirror.missing(id);
    }
  }
}
