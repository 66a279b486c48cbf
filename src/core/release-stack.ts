/** A release that failed: the step's name and what it threw. */
export interface ReleaseFailure {
  readonly step: string;
  readonly error: unknown;
}

/** Where a failed release is reported; a pino `Logger` fits. */
export interface ReleaseLogger {
  error(bindings: { readonly err: unknown; readonly step: string }, message: string): void;
}

export interface ReleaseStackOptions {
  /** Gets `({ err, step }, 'release failed')` for each release that throws or rejects. */
  readonly logger: ReleaseLogger;
}

interface Step {
  readonly name: string;
  readonly release: () => unknown;
}

/**
 * What a start has opened, to close in reverse: each start step pushes its release once it has
 * succeeded; `releaseAll()` (on a failed start, or on stop) runs them last-in first-out, one after the
 * other, and one that fails is logged and does not keep the others from running.
 *
 * With `await using`, a start releases what it opened whenever it throws, and hands the releases on
 * with `move()` once it has succeeded:
 *
 * ```ts
 * await using stack = new ReleaseStack({ logger });
 * const queue = await openQueue();
 * stack.push('queue', () => queue.close());
 * const releases = stack.move();
 * return { stop: () => releases.releaseAll() };
 * ```
 */
export class ReleaseStack {
  readonly #logger: ReleaseLogger;
  #steps: Step[] = [];
  #released: Promise<readonly ReleaseFailure[]> | null = null;

  constructor(options: ReleaseStackOptions) {
    this.#logger = options.logger;
  }

  /** Releases waiting to run. */
  get size(): number {
    return this.#steps.length;
  }

  /**
   * Adds the release of what a step just started; `release` may be synchronous or return a promise.
   * Throws once `releaseAll()` has been called: what is pushed then would never be released.
   */
  push(name: string, release: () => unknown): void {
    if (this.#released) throw new Error(`Cannot push release "${name}": the release stack has been released already`);
    this.#steps.push({ name, release });
  }

  /**
   * A new stack holding this one's releases, leaving this one empty (and so a no-op to release): for a
   * start that has succeeded and gives its releases to whoever stops it.
   */
  move(): ReleaseStack {
    if (this.#released) throw new Error('Cannot move a release stack that has been released already');
    const moved = new ReleaseStack({ logger: this.#logger });
    moved.#steps = this.#steps;
    this.#steps = [];
    return moved;
  }

  /**
   * Runs every release, last pushed first, each awaited before the next. Never rejects: a failing
   * release is logged with its step name, and the failures are what the promise resolves to.
   * Idempotent: every call returns the same promise.
   */
  releaseAll(): Promise<readonly ReleaseFailure[]> {
    this.#released ??= this.#run();
    return this.#released;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.releaseAll();
  }

  async #run(): Promise<readonly ReleaseFailure[]> {
    const failures: ReleaseFailure[] = [];
    for (let step = this.#steps.pop(); step !== undefined; step = this.#steps.pop()) {
      try {
        await step.release();
      } catch (error) {
        failures.push({ step: step.name, error });
        this.#logger.error({ err: error, step: step.name }, 'release failed');
      }
    }
    return failures;
  }
}
