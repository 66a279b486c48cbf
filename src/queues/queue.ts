import type { Check, CheckSpec } from '../checks/check.js';

/**
 * Where checks wait for their next run. The server claims due checks, owns them while they run, and
 * completes each with its next due time. Every method may be asynchronous (a database queue is).
 */
export interface Queue {
  /** Removes and returns up to `limit` checks due at or before `now` (epoch ms), earliest first. */
  claim(now: number, limit: number): Promise<Check[]>;
  /**
   * Gives back a claimed check after its run, with its new state; `nextDueAt` (epoch ms) puts it back in
   * line, `null` retires it (a one-shot check that is done).
   */
  complete(check: Check, nextDueAt: number | null): Promise<void>;
  /** Due time (epoch ms) of the earliest waiting check; `null` when none waits. */
  nextDueAt(): Promise<number | null>;
  /** Checks known to the queue, waiting or claimed. */
  count(): Promise<number>;
  /** Calls `listener` on every QueueEvent. Returns the function that unsubscribes. */
  watch(listener: (event: QueueEvent) => void): () => void;
  /** Releases the queue's resources. */
  close?(): Promise<void>;
  /**
   * Optional: keep one line per partition (the server's pools: `partition(spec)` names a check's pool),
   * so that each pool claims only its own checks with `claimFrom` and a saturated pool never fills
   * the others' capacity with checks they cannot run. Called by the server before it starts claiming.
   */
  partitionBy?(partition: (spec: CheckSpec) => string): void;
  /** Like `claim`, from one partition's line only. */
  claimFrom?(now: number, limit: number, partition: string): Promise<Check[]>;
}

/**
 * `due-earlier`: a check may now be due earlier than `nextDueAt` said before (one added, updated or put
 * back), so a sleeping server should look again. `removed`: a check left the queue for good.
 */
export type QueueEvent = { readonly type: 'due-earlier' } | { readonly type: 'removed'; readonly checkId: string };

/**
 * A queue's refusal to complete a claimed check: the check is no longer this instance's (its lease
 * moved on) or the completion could not be kept. Not a failure of the run: the server drops the
 * outcome without publishing it, since another instance's run is the one that counts.
 */
export class CompletionRefusedError extends Error {
  constructor(
    /** The check whose completion was refused. */
    readonly checkId: string,
    message: string,
  ) {
    super(message);
  }
}
