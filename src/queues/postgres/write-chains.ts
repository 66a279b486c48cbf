import type pg from 'pg';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { isTransient, type QueueErrorListener } from './errors.js';
import type { DatabaseHealth } from './health.js';
import { inTransaction } from './transaction.js';
import { cancellableTimer, sleep } from './wait.js';

/**
 * One background write of a check: runs in a transaction (which also notifies the other instances) and
 * returns what to apply to the mirror after COMMIT, if anything.
 */
export type CheckWrite = (client: pg.PoolClient) => Promise<(() => void) | undefined>;

export interface WriteChainsOptions {
  readonly pool: pg.Pool;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told when a write fails because the database is away, and when one goes through. */
  readonly health: DatabaseHealth;
  /** Told about a write that failed for good, besides the log. */
  readonly onError?: QueueErrorListener | undefined;
  /** Tells the other instances that check `id` changed, in the write's transaction. */
  readonly notify: (client: pg.PoolClient, id: string) => Promise<void>;
}

/**
 * The registry's writes to the table, in the background and one after the other per check, so that a
 * check's row goes through the same changes in the same order as the mirror did. A write that fails
 * because the database is away is tried again (after the health's backoff, 100 ms at least) until
 * `close`; any other failure is logged, reported and counted, and the next refresh corrects the mirror.
 */
export class WriteChains {
  readonly #pool: pg.Pool;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #health: DatabaseHealth;
  readonly #onError: QueueErrorListener | undefined;
  readonly #notify: (client: pg.PoolClient, id: string) => Promise<void>;
  /** The last write queued per check; the count says how many are queued or running. */
  readonly #chains = new Map<string, Promise<void>>();
  readonly #pending = new Map<string, number>();
  #closed = false;
  #errors = 0;

  constructor(options: WriteChainsOptions) {
    this.#pool = options.pool;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#health = options.health;
    this.#onError = options.onError;
    this.#notify = options.notify;
  }

  /** Checks with writes queued or running. */
  get size(): number {
    return this.#chains.size;
  }

  /** Writes that failed for good. */
  get errors(): number {
    return this.#errors;
  }

  /** Whether writes of this check are queued or running. */
  has(id: string): boolean {
    return this.#pending.has(id);
  }

  /** Queues `work` behind the earlier writes of check `id`. After `close`, nothing is written (and that is logged). */
  enqueue(id: string, operation: string, work: CheckWrite): void {
    if (this.#closed) {
      this.#logger.warn({ checkId: id, operation }, 'the PostgreSQL queue is closed: the change stays in this instance only');
      return;
    }
    this.#pending.set(id, (this.#pending.get(id) ?? 0) + 1);
    const previous = this.#chains.get(id) ?? Promise.resolve();
    const next = previous.then(() => this.#run(id, operation, work));
    this.#chains.set(id, next);
    void next.finally(() => {
      const left = (this.#pending.get(id) ?? 1) - 1;
      if (left > 0) this.#pending.set(id, left);
      else this.#pending.delete(id);
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    });
  }

  /** Waits until no write is queued or running, or until `deadline` (epoch ms on the clock), whichever is first. */
  async drain(deadline: number): Promise<void> {
    while (this.#chains.size > 0 && this.#clock.now() < deadline) {
      const timeout = cancellableTimer(this.#clock, Math.max(0, deadline - this.#clock.now()));
      await Promise.race([Promise.all(this.#chains.values()), timeout.promise]);
      timeout.cancel();
    }
  }

  /** Stops: queued writes give up at their next step, new ones are refused. */
  close(): void {
    this.#closed = true;
  }

  async #run(id: string, operation: string, work: CheckWrite): Promise<void> {
    for (;;) {
      if (this.#closed) return;
      try {
        const apply = await inTransaction(this.#pool, this.#logger, async (client) => {
          const after = await work(client);
          await this.#notify(client, id);
          return after;
        });
        this.#health.recovered();
        apply?.();
        return;
      } catch (error) {
        if (isTransient(error) && !this.#closed) {
          this.#health.failed(error, operation);
          await sleep(this.#clock, Math.max(this.#health.backoffMs, 100));
          continue;
        }
        this.#errors++;
        this.#logger.error({ err: error, checkId: id, operation }, `writing a change of check "${id}" (${operation}) to PostgreSQL failed`);
        this.#onError?.(error, { operation, checkId: id });
        return;
      }
    }
  }
}
