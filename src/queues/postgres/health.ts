import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { isTransient, type QueueErrorListener } from './errors.js';

/** The longest wait before the database is asked again after failures, in ms. */
export const MAX_BACKOFF_MS = 10_000;

export interface DatabaseHealthOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told once when the database becomes unreachable. */
  readonly onError?: QueueErrorListener | undefined;
  /** Called once when the database answers again after it failed. */
  readonly onRecovered?: () => void;
}

/**
 * Whether PostgreSQL is reachable, as the last statement of any part of the queue found, and when to
 * ask it again: every failure doubles the backoff (250 ms up to `MAX_BACKOFF_MS`), the first success
 * ends it. Only the change of state is logged, so an outage is one warning and one recovery.
 */
export class DatabaseHealth {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onError: QueueErrorListener | undefined;
  readonly #onRecovered: (() => void) | undefined;
  #healthy = true;
  #backoffMs = 0;
  #retryAt = 0;

  constructor(options: DatabaseHealthOptions) {
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#onError = options.onError;
    this.#onRecovered = options.onRecovered;
  }

  /** False from a failure until the next success. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** The current backoff in ms; 0 while healthy. */
  get backoffMs(): number {
    return this.#backoffMs;
  }

  /** Epoch ms before which the database is not asked again (while unhealthy). */
  get retryAt(): number {
    return this.#retryAt;
  }

  /** Unhealthy and still in its backoff at `now` (epoch ms): do not ask the database yet. */
  waiting(now: number): boolean {
    return !this.#healthy && now < this.#retryAt;
  }

  /** Notes a failure. True when it is the database being away (handled: backoff); false for anything else. */
  failed(error: unknown, operation: string): boolean {
    if (!isTransient(error)) return false;
    this.#backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(250, this.#backoffMs * 2));
    this.#retryAt = this.#clock.now() + this.#backoffMs;
    if (this.#healthy) {
      this.#healthy = false;
      this.#logger.warn({ err: error, operation }, 'PostgreSQL is unreachable; completions are buffered and claims wait until it is back');
      this.#onError?.(error, { operation });
    }
    return true;
  }

  /** Notes a success: ends the backoff, and tells `onRecovered` when the database was away. */
  recovered(): void {
    if (this.#healthy) return;
    this.#healthy = true;
    this.#backoffMs = 0;
    this.#retryAt = 0;
    this.#logger.info('PostgreSQL is reachable again');
    this.#onRecovered?.();
  }
}
