import pg from 'pg';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../../core/clock.js';
import { DEFAULT_SCHEMA } from '../../postgres/migrations.js';

/**
 * The vigil instances sharing one PostgreSQL schema (`instances` table). Each registers at start with
 * an epoch one more than its last, heartbeats every few seconds, and on each heartbeat marks peers
 * whose heartbeat is stale as dead. A dead instance needs no cleanup: its leases expire by themselves.
 */

/** One instance as the table has it. */
export interface InstanceRecord {
  readonly id: string;
  /** One more on every start of that instance. */
  readonly epoch: number;
  /** Epoch milliseconds. */
  readonly startedAt: number;
  /** Epoch milliseconds of its last heartbeat. */
  readonly heartbeatAt: number;
  /** Milliseconds since its last heartbeat, by the database's clock. */
  readonly heartbeatAgeMs: number;
  /** Not marked dead and heartbeating within `deadAfterMs`. */
  readonly alive: boolean;
  /** What it published about itself (version, host, …). */
  readonly info: Readonly<Record<string, unknown>>;
}

export interface PostgresInstancesOptions {
  readonly pool: pg.Pool;
  /** Default `vigil`. */
  readonly schema?: string;
  readonly instanceId: string;
  readonly logger: Logger;
  /** Milliseconds between heartbeats; default 5 000. */
  readonly heartbeatIntervalMs?: number;
  /** An instance whose last heartbeat is older than this (ms) is dead; default 3 × `heartbeatIntervalMs`. */
  readonly deadAfterMs?: number;
  /** Published in the row's `info` (version, host, …). */
  readonly info?: Readonly<Record<string, unknown>>;
  /** Told about a heartbeat that failed, besides the log. */
  readonly onError?: (error: unknown) => void;
  /** Where the heartbeat's timer is set; default `systemClock`. (Heartbeat times are the database's `now()`.) */
  readonly clock?: Clock;
}

interface InstanceRow {
  id: string;
  epoch: number;
  started_at: number;
  heartbeat_at: number;
  age: number;
  dead: boolean;
  info: Record<string, unknown> | null;
}

export class PostgresInstances implements AsyncDisposable {
  readonly #pool: pg.Pool;
  readonly #table: string;
  readonly #id: string;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #deadAfterMs: number;
  readonly #info: Readonly<Record<string, unknown>>;
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #clock: Clock;
  #epoch: number | null = null;
  #timer: unknown = null;
  #beating: Promise<void> | null = null;
  #peers: readonly InstanceRecord[] = [];
  #stopped: Promise<void> | null = null;

  constructor(options: PostgresInstancesOptions) {
    this.#pool = options.pool;
    this.#table = `${pg.escapeIdentifier(options.schema ?? DEFAULT_SCHEMA)}.instances`;
    if (typeof options.instanceId !== 'string' || options.instanceId === '') {
      throw new TypeError(`Expected \`instanceId\` to be a non-empty string, got \`${String(options.instanceId)}\``);
    }
    this.#id = options.instanceId;
    this.#logger = options.logger;
    this.#intervalMs = options.heartbeatIntervalMs ?? 5_000;
    if (!Number.isFinite(this.#intervalMs) || this.#intervalMs <= 0) {
      throw new TypeError(`Expected \`heartbeatIntervalMs\` to be a positive number, got \`${String(options.heartbeatIntervalMs)}\``);
    }
    this.#deadAfterMs = options.deadAfterMs ?? 3 * this.#intervalMs;
    if (!Number.isFinite(this.#deadAfterMs) || this.#deadAfterMs <= this.#intervalMs) {
      throw new TypeError(`Expected \`deadAfterMs\` to be a number above heartbeatIntervalMs (${this.#intervalMs}), got \`${String(options.deadAfterMs)}\``);
    }
    this.#info = options.info ?? {};
    this.#onError = options.onError;
    this.#clock = options.clock ?? systemClock;
  }

  get id(): string {
    return this.#id;
  }

  /** This start's epoch; `null` before `register()`. */
  get epoch(): number | null {
    return this.#epoch;
  }

  /** Every instance as of the last heartbeat (or `peers()` call), this one included; for `/healthz`. */
  get lastPeers(): readonly InstanceRecord[] {
    return this.#peers;
  }

  /** Registers this instance (epoch 1 the first time, one more on every later start) and returns its epoch. */
  async register(): Promise<number> {
    const { rows } = await this.#pool.query<{ epoch: number }>(
      `INSERT INTO ${this.#table} AS i (id, epoch, started_at, heartbeat_at, dead, info) VALUES ($1, 1, now(), now(), false, $2)
       ON CONFLICT (id) DO UPDATE SET epoch = i.epoch + 1, started_at = now(), heartbeat_at = now(), dead = false, info = EXCLUDED.info
       RETURNING epoch::float8 AS epoch`,
      [this.#id, JSON.stringify(this.#info)],
    );
    this.#epoch = (rows[0] as { epoch: number }).epoch;
    this.#logger.info({ instanceId: this.#id, epoch: this.#epoch }, 'registered in PostgreSQL');
    return this.#epoch;
  }

  /** Registers (when not yet) and heartbeats every `heartbeatIntervalMs` until `stop()`. */
  async start(): Promise<void> {
    if (this.#epoch === null) await this.register();
    if (this.#timer !== null || this.#stopped) return;
    this.#arm();
    await this.beat();
  }

  /** A re-armed timeout rather than an interval: the Clock has none. */
  #arm(): void {
    this.#timer = this.#clock.setTimeout(() => {
      if (this.#stopped) return;
      this.#arm();
      void this.beat();
    }, this.#intervalMs);
  }

  /**
   * One heartbeat: refreshes this row, marks peers with a stale heartbeat dead, and reads them all.
   * A failure (database away) is logged and reported, never thrown: the next beat tries again.
   */
  beat(): Promise<void> {
    this.#beating ??= (async () => {
      try {
        await this.#pool.query(`UPDATE ${this.#table} SET heartbeat_at = now(), dead = false WHERE id = $1`, [this.#id]);
        const dead = await this.markStaleDead();
        if (dead.length > 0) this.#logger.warn({ instances: dead }, 'peer instances stopped heartbeating; marked dead (their leases expire)');
        await this.peers();
      } catch (error) {
        this.#logger.warn({ err: error }, 'heartbeat to PostgreSQL failed');
        this.#onError?.(error);
      } finally {
        this.#beating = null;
      }
    })();
    return this.#beating;
  }

  /** Marks instances whose heartbeat is older than `deadAfterMs` dead; returns their ids. */
  async markStaleDead(): Promise<string[]> {
    const { rows } = await this.#pool.query<{ id: string }>(
      `UPDATE ${this.#table} SET dead = true WHERE NOT dead AND heartbeat_at < now() - $1::float8 * interval '1 millisecond' RETURNING id`,
      [this.#deadAfterMs],
    );
    return rows.map((row) => row.id).sort();
  }

  /** Every registered instance, this one included, alive ones first, then by id. */
  async peers(): Promise<InstanceRecord[]> {
    const { rows } = await this.#pool.query<InstanceRow>(
      `SELECT id, epoch::float8 AS epoch, (extract(epoch FROM started_at) * 1000)::float8 AS started_at,
              (extract(epoch FROM heartbeat_at) * 1000)::float8 AS heartbeat_at,
              (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS age, dead, info
       FROM ${this.#table}`,
    );
    const peers = rows
      .map((row): InstanceRecord => ({
        id: row.id,
        epoch: row.epoch,
        startedAt: row.started_at,
        heartbeatAt: row.heartbeat_at,
        heartbeatAgeMs: Math.max(0, row.age),
        alive: !row.dead && row.age <= this.#deadAfterMs,
        info: row.info ?? {},
      }))
      .sort((a, b) => Number(b.alive) - Number(a.alive) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.#peers = peers;
    return peers;
  }

  /** Stops heartbeating and marks this instance dead (a clean stop). Idempotent; never throws. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
      this.#timer = null;
      await this.#beating;
      if (this.#epoch === null) return;
      try {
        await this.#pool.query(`UPDATE ${this.#table} SET dead = true WHERE id = $1 AND epoch = $2`, [this.#id, this.#epoch]);
      } catch (error) {
        this.#logger.warn({ err: error }, 'could not mark this instance stopped in PostgreSQL');
      }
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
