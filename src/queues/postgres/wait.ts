import type { Clock } from '../../core/clock.js';

/** Waiting on the queue's Clock, so that tests that drive the clock drive the waits too. */

/** Resolves after `delayMs` on `clock`. */
export function sleep(clock: Clock, delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    clock.setTimeout(resolve, delayMs);
  });
}

/** A timer on `clock` that can be cancelled, so that a race against it leaves nothing behind. */
export function cancellableTimer(clock: Clock, delayMs: number): { readonly promise: Promise<void>; cancel(): void } {
  let handle: unknown;
  const promise = new Promise<void>((resolve) => {
    handle = clock.setTimeout(resolve, delayMs);
  });
  return { promise, cancel: () => clock.clearTimeout(handle) };
}
