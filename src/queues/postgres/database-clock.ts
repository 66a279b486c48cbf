import type pg from 'pg';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';

/**
 * The database's clock as this instance sees it. Due times, slots and leases in the `checks` table are
 * on the database's clock, so instances whose own clocks disagree (by seconds, or after a step) still
 * agree on what is due and whose lease has expired: none claims early, none runs a slot twice. The
 * queue's parts and the server work on the instance's clock; every time that crosses into or out of
 * the table is moved by the offset measured here. Epoch ms throughout.
 */

/** An offset the measurement cannot tell from zero by more than this (ms) is zero: one machine, one clock. */
export const OFFSET_TOLERANCE_MS = 20;

/** Offsets beyond this (ms) are logged: the instance's clock is off, and the queue follows the database's. */
const OFFSET_WARNING_MS = 1_000;

/** Samples the first measurement takes; the one with the shortest round trip is kept. */
const FIRST_SAMPLES = 3;

const NOW = 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now';

/** The times of a row as the table gives them (epoch ms), which `onInstanceClock` moves. */
export interface TimedRow {
  due: number | null;
  slot: number;
  lease_until: number | null;
}

export interface DatabaseClockOptions {
  readonly pool: pg.Pool;
  /** The instance's clock (the one the server runs on). */
  readonly clock: Clock;
  readonly logger: Logger;
}

/** One reading of the database's clock: the offset (instance − database) and how far it may be off. */
interface Sample {
  readonly offsetMs: number;
  readonly uncertaintyMs: number;
}

export class DatabaseClock {
  readonly #pool: pg.Pool;
  readonly #clock: Clock;
  readonly #logger: Logger;
  /** The instance's clock minus the database's, whole ms. */
  #offsetMs = 0;

  constructor(options: DatabaseClockOptions) {
    this.#pool = options.pool;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  /** The instance's clock minus the database's, in whole ms; 0 until measured, or when they agree. */
  get offsetMs(): number {
    return this.#offsetMs;
  }

  /** The database's time (epoch ms) at the instance's time `local`. */
  toDatabase(local: number): number {
    return local - this.#offsetMs;
  }

  /** The instance's time at the database's time `database`. */
  fromDatabase(database: number): number {
    return database + this.#offsetMs;
  }

  /**
   * Moves the due time, slot and lease of a row just read from the table onto the instance's clock,
   * in place, and returns it: rows are converted where they are read, so no part sees the table's times.
   * `offsetMs`: the offset to move by, when it must be the one a statement was sent with; default the current one.
   */
  onInstanceClock<T extends TimedRow>(row: T, offsetMs = this.#offsetMs): T {
    const times: TimedRow = row;
    if (times.due !== null) times.due += offsetMs;
    times.slot += offsetMs;
    if (times.lease_until !== null) times.lease_until += offsetMs;
    return row;
  }

  /** The database's time now, as far as this instance can tell. */
  now(): number {
    return this.toDatabase(this.#clock.now());
  }

  /** Measures the offset (the best of a few round trips). Rejects when the database cannot be reached. */
  async measure(): Promise<void> {
    let best: Sample | null = null;
    for (let i = 0; i < FIRST_SAMPLES; i++) {
      const sample = await this.#sample();
      if (!best || sample.uncertaintyMs < best.uncertaintyMs) best = sample;
    }
    this.#adopt(best as Sample);
  }

  /**
   * Measures again and follows a clock that moved (stepped, or drifting) by more than the reading's
   * own uncertainty plus `OFFSET_TOLERANCE_MS`; a reading within that is noise and changes nothing.
   */
  async resample(): Promise<void> {
    const sample = await this.#sample();
    if (Math.abs(sample.offsetMs - this.#offsetMs) > sample.uncertaintyMs + OFFSET_TOLERANCE_MS) this.#adopt(sample);
  }

  async #sample(): Promise<Sample> {
    const sent = this.#clock.now();
    const { rows } = await this.#pool.query<{ now: number }>(NOW);
    const received = this.#clock.now();
    const database = (rows[0] as { now: number }).now;
    const uncertaintyMs = Math.max(0, received - sent) / 2;
    return { offsetMs: (sent + received) / 2 - database, uncertaintyMs };
  }

  #adopt(sample: Sample): void {
    const offset = Math.abs(sample.offsetMs) <= sample.uncertaintyMs + OFFSET_TOLERANCE_MS ? 0 : Math.round(sample.offsetMs);
    if (offset === this.#offsetMs) return;
    const previous = this.#offsetMs;
    this.#offsetMs = offset;
    const log = { offsetMs: offset, previousOffsetMs: previous, uncertaintyMs: Math.round(sample.uncertaintyMs) };
    if (Math.abs(offset) >= OFFSET_WARNING_MS || Math.abs(previous) >= OFFSET_WARNING_MS) {
      this.#logger.warn(log, `this instance's clock is ${offset} ms off the database's: due times and leases follow the database's clock`);
    } else this.#logger.info(log, "this instance's clock and the database's differ; due times and leases follow the database's clock");
  }
}
