/** The server's source of time, injectable so tests control it. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * Real time. It looks the timer functions up on every call rather than binding them once, so
 * `vi.useFakeTimers()` in a test takes effect on a server that already exists.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, delayMs) => {
    const handle = setTimeout(callback, delayMs);
    // A pending check is no reason to keep a process alive that has otherwise finished.
    if (typeof handle === 'object' && 'unref' in handle) handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A clock whose time is what `now` says and whose timers are real: for a test that sets the time but waits for real events. */
export function clockWith(now: () => number): Clock {
  return { now, setTimeout: (callback, delayMs) => systemClock.setTimeout(callback, delayMs), clearTimeout: (handle) => systemClock.clearTimeout(handle) };
}

/** The time function of an optional clock (`systemClock` when none is given), for code that only tells the time. */
export function nowOf(clock: Clock = systemClock): () => number {
  return () => clock.now();
}
