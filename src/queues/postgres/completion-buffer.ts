import type { Clock } from '../../core/clock.js';
import { CompletionDroppedError, isTransient, type ReportError } from './errors.js';
import type { DatabaseHealth } from './health.js';
import { cancellableTimer, sleep } from './wait.js';

/** A completion waiting to be written; the buffer settles it only by rejecting it. */
export interface BufferedCompletion {
  /** Resolved or rejected: never written again. The writer sets it for what it settles. */
  settled: boolean;
  /** The check's id, for the error that says it was dropped. */
  readonly id: string;
  readonly reject: (error: Error) => void;
}

export interface CompletionBufferOptions<T extends BufferedCompletion> {
  readonly clock: Clock;
  /** Told when a batch fails because the database is away (its backoff paces the retries), and when one goes through. */
  readonly health: DatabaseHealth;
  readonly report: ReportError;
  /** A completion waits this long for others to be written with it, in ms. */
  readonly flushDelayMs: number;
  /** Completions written in one batch at most; a full batch is written at once. */
  readonly flushBatchSize: number;
  /** Completions kept while they cannot be written; beyond it the oldest are dropped. */
  readonly maxBuffered: number;
  /**
   * Writes a batch and settles each completion it wrote or that was refused. Rejects when the
   * database failed; what it settled before stays settled, the rest is written again.
   */
  readonly write: (batch: T[]) => Promise<void>;
  /** A completion given up (dropped, or failed for good), just before it is rejected: its claim ends. */
  readonly abandon: (completion: T) => void;
}

/**
 * Completions on their way to the database: gathered for `flushDelayMs` and written in batches of
 * `flushBatchSize`; kept while the database is away and written again after its backoff, the oldest
 * dropped beyond `maxBuffered`; a batch the database refuses for another reason is written one by one,
 * so that one bad row does not sink the others. `drain` writes what is left before a close, `close`
 * drops whatever is still waiting.
 */
export class CompletionBuffer<T extends BufferedCompletion> {
  readonly #clock: Clock;
  readonly #health: DatabaseHealth;
  readonly #report: ReportError;
  readonly #flushDelayMs: number;
  readonly #batchSize: number;
  readonly #max: number;
  readonly #write: (batch: T[]) => Promise<void>;
  readonly #abandon: (completion: T) => void;

  readonly #buffer: T[] = [];
  #timer: unknown = null;
  #flushing: Promise<void> | null = null;
  #closed = false;
  #dropped = 0;

  constructor(options: CompletionBufferOptions<T>) {
    this.#clock = options.clock;
    this.#health = options.health;
    this.#report = options.report;
    this.#flushDelayMs = options.flushDelayMs;
    this.#batchSize = options.flushBatchSize;
    this.#max = options.maxBuffered;
    this.#write = options.write;
    this.#abandon = options.abandon;
  }

  /** Completions waiting (not counting a batch being written). */
  get length(): number {
    return this.#buffer.length;
  }

  /** Completions dropped since start: the buffer was full, or it closed before they were written. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Adds a completion, dropping (rejecting) the oldest beyond `maxBuffered`, and writes soon. */
  push(completion: T): void {
    this.#buffer.push(completion);
    while (this.#buffer.length > this.#max) {
      const oldest = this.#buffer.shift() as T;
      this.#dropped++;
      this.#giveUp(oldest, new CompletionDroppedError(oldest.id, `more than ${this.#max} completions were waiting for the database`));
    }
    this.flushSoon();
  }

  /** Writes what waits after the flush delay (at once for a full batch), unless a write or its timer is under way. */
  flushSoon(): void {
    if (this.#timer !== null || this.#flushing || this.#closed || this.#buffer.length === 0) return;
    this.#arm(this.#buffer.length >= this.#batchSize ? 0 : this.#flushDelayMs);
  }

  /**
   * Writes what waits until nothing does or `deadline` (epoch ms on the clock) passes, without waiting
   * for the flush delay or a backoff (a failing database is tried again every 50 ms meanwhile).
   */
  async drain(deadline: number): Promise<void> {
    while ((this.#buffer.length > 0 || this.#flushing) && !this.#closed && this.#clock.now() < deadline) {
      if (!this.#flushing) {
        this.#cancelTimer();
        this.#flush();
      }
      const timeout = cancellableTimer(this.#clock, Math.max(0, deadline - this.#clock.now()));
      await Promise.race([this.#flushing, timeout.promise]);
      timeout.cancel();
      // A flush that failed waits out its backoff: look again shortly rather than wait for its timer.
      if (this.#buffer.length > 0 && !this.#flushing) await sleep(this.#clock, Math.min(50, Math.max(0, deadline - this.#clock.now())));
    }
  }

  /** Writes nothing more: what still waits is dropped (rejected with CompletionDroppedError). Idempotent. */
  close(): void {
    this.#closed = true;
    this.#cancelTimer();
    this.#dropWaiting();
  }

  #dropWaiting(): void {
    for (const completion of this.#buffer.splice(0)) {
      this.#dropped++;
      this.#giveUp(completion, new CompletionDroppedError(completion.id, 'the queue closed before it could be written'));
    }
  }

  #giveUp(completion: T, error: Error): void {
    this.#abandon(completion);
    completion.settled = true;
    completion.reject(error);
  }

  #arm(delayMs: number): void {
    this.#timer = this.#clock.setTimeout(this.#onTimer, delayMs);
  }

  #cancelTimer(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.#flush();
  };

  /** Writes batches until none are left (one flush at a time); after a connection failure, again after the backoff. */
  #flush(): void {
    if (this.#flushing || this.#buffer.length === 0 || this.#closed) return;
    this.#flushing = this.#writeAll();
  }

  async #writeAll(): Promise<void> {
    let retryInMs: number | null = null;
    // What a failed write leaves to write again: the completions not settled yet.
    const retry = (batch: readonly T[], error: unknown): void => {
      this.#buffer.unshift(...batch.filter((completion) => !completion.settled));
      this.#health.failed(error, 'complete');
      retryInMs = Math.max(this.#health.backoffMs, 100);
    };
    try {
      while (this.#buffer.length > 0 && !this.#closed) {
        const batch = this.#buffer.splice(0, this.#batchSize);
        try {
          await this.#write(batch);
          this.#health.recovered();
        } catch (error) {
          if (isTransient(error)) return retry(batch, error);
          // One bad row must not sink the others: write them one by one.
          this.#report(error, 'complete');
          for (const completion of batch) {
            if (completion.settled) continue;
            try {
              await this.#write([completion]);
            } catch (soloError) {
              if (isTransient(soloError)) return retry(batch, soloError);
              this.#giveUp(completion, soloError instanceof Error ? soloError : new Error(String(soloError)));
            }
          }
        }
      }
    } finally {
      this.#flushing = null;
      // A batch that was being written when the buffer closed, and failed: nothing writes it now.
      if (this.#closed) this.#dropWaiting();
      else if (this.#buffer.length > 0) {
        if (retryInMs === null) this.flushSoon();
        else if (this.#timer === null) this.#arm(retryInMs);
      }
    }
  }
}
