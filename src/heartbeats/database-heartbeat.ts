import { hostname } from 'node:os';
import pg from 'pg';
import { DEFAULT_SCHEMA } from '../postgres/migrations.js';
import { assertIntervalMs, processSample, type Heartbeat, type HeartbeatSample } from './heartbeat-writer.js';
import { type Clock } from '../core/clock.js';

export interface DatabaseHeartbeatOptions {
  /** Connection URL of the database holding `<schema>.heartbeats` (created by `vigil migrate`). */
  readonly databaseUrl: string;
  /** The row's id: the name the `heartbeat-table` check asks for. */
  readonly id: string;
  /** Milliseconds between beats (≥ 1). */
  readonly intervalMs: number;
  /** Schema of the `heartbeats` table; default `vigil`. */
  readonly schema?: string;
  /** Tells the time; default the database's clock (`now()`), which `heartbeat-table` also reads. */
  readonly clock?: Clock;
  /** What each beat reports; default this process (`process.pid`, `process.uptime()`, its rss). */
  readonly sample?: () => HeartbeatSample | Promise<HeartbeatSample>;
  /** Called with the error of a failed timed beat (the first one included), or of its idle connection breaking; default: ignored. */
  readonly onError?: (error: unknown) => void;
  /** The `host` column; default this machine's host name. */
  readonly host?: string;
}

/** A heartbeat being written to a database: `Heartbeat` of the file writer, with the row's id for its file. */
export interface DatabaseHeartbeat extends Omit<Heartbeat, 'file'> {
  /** The row written. */
  readonly id: string;
  /**
   * Stops beating, waits for a write in flight and closes the connection. `remove: true` (a clean exit)
   * deletes the row first, so that the monitor reports it missing rather than stale. Idempotent; a later
   * call with `remove: true` still removes.
   */
  stop(options?: { remove?: boolean }): Promise<void>;
}

/**
 * Starts upserting a heartbeat row into `<schema>.heartbeats`: a beat at once, then one every
 * `intervalMs` on an unref'd timer (the heartbeat never keeps a process alive by itself). A beat is one
 * `INSERT … ON CONFLICT (id) DO UPDATE` of the timestamp, uptime, memory usage, pid, beat count and
 * host, on one connection of its own that is re-opened after a failure. A timed beat that finds the
 * previous one still writing (a database that hangs) is skipped rather than queued; a failed one goes to
 * `onError` and never throws. Throws a TypeError, starting nothing, for an `intervalMs` that is not a
 * positive integer, or an empty `id` or `schema`.
 */
export function startDatabaseHeartbeat(options: DatabaseHeartbeatOptions): DatabaseHeartbeat {
  assertIntervalMs(options.intervalMs);
  const schema = options.schema ?? DEFAULT_SCHEMA;
  if (schema === '') throw new TypeError('Expected `schema` to be a non-empty schema name, got ""');
  if (options.id === '') throw new TypeError('Expected `id` to be a non-empty string, got ""');
  return new DatabaseHeartbeatWriter(options, schema);
}

class DatabaseHeartbeatWriter implements DatabaseHeartbeat {
  readonly id: string;
  readonly #url: string;
  readonly #table: string;
  readonly #upsertSql: string;
  readonly #host: string;
  readonly #clock: Clock | undefined;
  readonly #sample: () => HeartbeatSample | Promise<HeartbeatSample>;
  readonly #onError: (error: unknown) => void;
  readonly #timer: NodeJS.Timeout;
  readonly #pool: pg.Pool;
  #beats = 0;
  /** The last write, settled or not; the next one starts after it. Never rejects. */
  #tail: Promise<void> = Promise.resolve();
  #writing = false;
  #stopped: Promise<void> | null = null;
  #removeRequested = false;
  #removed: Promise<void> | null = null;

  constructor(options: DatabaseHeartbeatOptions, schema: string) {
    this.id = options.id;
    this.#url = options.databaseUrl;
    this.#table = `${pg.escapeIdentifier(schema)}.heartbeats`;
    this.#upsertSql =
      `INSERT INTO ${this.#table} (id, timestamp, uptime, memory_usage, pid, beat, host) ` +
      'VALUES ($1, COALESCE(to_timestamp($2::float8 / 1000), now()), $3, $4, $5, $6, $7) ' +
      'ON CONFLICT (id) DO UPDATE SET timestamp = EXCLUDED.timestamp, uptime = EXCLUDED.uptime, memory_usage = EXCLUDED.memory_usage, ' +
      'pid = EXCLUDED.pid, beat = EXCLUDED.beat, host = EXCLUDED.host';
    this.#host = options.host ?? hostname();
    this.#clock = options.clock;
    this.#sample = options.sample ?? processSample;
    this.#onError = options.onError ?? ignore;
    // One connection, kept between beats; a broken one is replaced on the next beat.
    this.#pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: 1,
      idleTimeoutMillis: 0,
      allowExitOnIdle: true,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      // A database that stops answering must not hold a beat (and `stop`) for ever.
      statement_timeout: 10_000,
      application_name: `vigil heartbeat ${options.id}`.slice(0, 63),
    });
    // Unheard, an idle connection's error (the database restarting) would crash the process.
    this.#pool.on('error', this.#onError);
    this.#timer = setInterval(() => this.#timedBeat(), options.intervalMs);
    this.#timer.unref();
    this.#timedBeat();
  }

  get beats(): number {
    return this.#beats;
  }

  beat(): Promise<void> {
    if (this.#stopped !== null) return Promise.reject(new Error(`the heartbeat ${this.id} is stopped`));
    return this.#enqueue();
  }

  stop(options: { remove?: boolean } = {}): Promise<void> {
    if (this.#stopped === null) {
      this.#removeRequested = options.remove === true;
      this.#stopped = this.#halt();
      return this.#stopped;
    }
    if (options.remove !== true || this.#removeRequested) return this.#stopped;
    // Stopped without removing before, and its pool is gone: one connection just for the delete.
    this.#removed ??= this.#stopped.then(() => this.#deleteOnce());
    return this.#removed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #timedBeat(): void {
    if (this.#writing || this.#stopped !== null) return;
    this.#enqueue().catch(this.#onError);
  }

  #enqueue(): Promise<void> {
    const write = this.#tail.then(() => this.#write());
    this.#tail = write.catch(ignore);
    return write;
  }

  async #write(): Promise<void> {
    this.#writing = true;
    try {
      const { pid, uptime, memoryUsage } = await this.#sample();
      const timestampMs = this.#clock === undefined ? null : this.#clock.now();
      const memory = memoryUsage === undefined ? null : Math.round(memoryUsage);
      await this.#pool.query(this.#upsertSql, [this.id, timestampMs, uptime, memory, pid, this.#beats + 1, this.#host]);
      this.#beats++;
    } finally {
      this.#writing = false;
    }
  }

  async #halt(): Promise<void> {
    clearInterval(this.#timer);
    await this.#tail;
    try {
      if (this.#removeRequested) await this.#pool.query(`DELETE FROM ${this.#table} WHERE id = $1`, [this.id]);
    } finally {
      await this.#pool.end();
    }
  }

  async #deleteOnce(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url, connectionTimeoutMillis: 10_000, statement_timeout: 10_000 });
    client.on('error', ignore);
    try {
      await client.connect();
      await client.query(`DELETE FROM ${this.#table} WHERE id = $1`, [this.id]);
    } finally {
      await client.end().catch(ignore);
    }
  }
}

function ignore(): void {}
