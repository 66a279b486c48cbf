import type { Logger } from 'pino';
import type { Handler, HandlerContext, Outcome } from '../handlers/handler.js';
import type { Clock } from '../core/clock.js';

export interface HandlerChainOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Milliseconds one hook may take before it is abandoned and counted as failed. */
  readonly timeoutMs: number;
  /** Told of every hook that threw or timed out. */
  readonly onError: (error: unknown, source: string, checkId: string | undefined) => void;
}

type Hook = 'mutate' | 'process';

/**
 * Runs the handlers a check names, each hook isolated: a hook that throws or hangs is logged, counted
 * and abandoned at its timeout, and the others go on.
 */
export class HandlerChain {
  readonly #byName: ReadonlyMap<string, Handler>;
  readonly #options: HandlerChainOptions;
  // Specs share their frozen `handlers` arrays, so resolving names once per array is enough.
  readonly #resolved = new WeakMap<readonly string[], readonly Handler[]>();
  readonly #errors = new Map<string, number>();

  constructor(handlers: Iterable<Handler>, options: HandlerChainOptions) {
    const byName = new Map<string, Handler>();
    for (const handler of handlers) {
      if (byName.has(handler.name)) throw new Error(`two handlers are named "${handler.name}"`);
      byName.set(handler.name, handler);
    }
    this.#byName = byName;
    this.#options = options;
  }

  get handlers(): readonly Handler[] {
    return [...this.#byName.values()];
  }

  /** Failed hooks per handler name since start. */
  get errors(): ReadonlyMap<string, number> {
    return this.#errors;
  }

  /** The handler objects for a check's `handlers` names; unknown names are logged once and left out. */
  resolve(names: readonly string[]): readonly Handler[] {
    let handlers = this.#resolved.get(names);
    if (handlers) return handlers;
    handlers = names.flatMap((name) => {
      const handler = this.#byName.get(name);
      if (!handler) this.#options.logger.warn({ handler: name }, 'a check names a handler the server does not have');
      return handler ? [handler] : [];
    });
    this.#resolved.set(names, handlers);
    return handlers;
  }

  /** Runs the `mutate` hooks one after the other; each sees what the previous one returned. */
  async mutate(outcome: Outcome, handlers: readonly Handler[]): Promise<Outcome> {
    let current = outcome;
    for (const handler of handlers) {
      if (!handler.mutate) continue;
      const mutate = handler.mutate.bind(handler);
      const next = await this.#guard(handler, 'mutate', current, (ctx) => mutate(current, ctx));
      if (next) current = next;
    }
    return current;
  }

  /**
   * Runs the `process` hooks concurrently. Returns `undefined` when every hook was synchronous (all are
   * done), otherwise a promise that resolves when the asynchronous ones are done or abandoned; never rejects.
   */
  process(outcome: Outcome, handlers: readonly Handler[]): Promise<void> | undefined {
    let pending: Promise<unknown>[] | undefined;
    for (const handler of handlers) {
      if (!handler.process) continue;
      const process = handler.process.bind(handler);
      const done = this.#guard(handler, 'process', outcome, (ctx) => process(outcome, ctx));
      if (done instanceof Promise) (pending ??= []).push(done);
    }
    return pending === undefined ? undefined : Promise.all(pending).then(() => undefined);
  }

  /** Tells every handler a check is gone. */
  checkRemoved(checkId: string): void {
    for (const handler of this.#byName.values()) {
      try {
        handler.checkRemoved?.(checkId);
      } catch (error) {
        this.#fail(handler, 'checkRemoved', error, checkId);
      }
    }
  }

  /** Closes every handler, last created first, each bounded by the timeout. */
  async close(): Promise<void> {
    for (const handler of [...this.#byName.values()].reverse()) {
      if (!handler.close) continue;
      const close = handler.close.bind(handler);
      await this.#withTimeout(handler, 'close', undefined, () => close());
    }
  }

  /**
   * Calls a hook; a synchronous return costs no timer. Returns the hook's value, or a promise of it when
   * the hook is asynchronous (`undefined` when it failed).
   */
  #guard<T>(handler: Handler, hook: Hook, outcome: Outcome, call: (ctx: HandlerContext) => T | Promise<T>): T | undefined | Promise<T | undefined> {
    // Most hooks are synchronous and never look at the signal: make the controller only when asked.
    let controller: AbortController | undefined;
    const ctx: HandlerContext = {
      get signal() {
        controller ??= new AbortController();
        return controller.signal;
      },
    };
    let value: T | Promise<T>;
    try {
      value = call(ctx);
    } catch (error) {
      this.#fail(handler, hook, error, outcome.check.id);
      return undefined;
    }
    if (!(value instanceof Promise)) return value;
    return this.#settle(handler, hook, outcome.check.id, value, () => controller);
  }

  #withTimeout(handler: Handler, hook: string, checkId: string | undefined, call: () => Promise<void>): Promise<void | undefined> {
    let promise: Promise<void>;
    try {
      promise = call();
    } catch (error) {
      this.#fail(handler, hook, error, checkId);
      return Promise.resolve();
    }
    return this.#settle(handler, hook, checkId, promise, () => undefined);
  }

  #settle<T>(handler: Handler, hook: string, checkId: string | undefined, promise: Promise<T>, controllerOf: () => AbortController | undefined): Promise<T | undefined> {
    const { clock, timeoutMs } = this.#options;
    let timedOut = false;
    return new Promise<T | undefined>((resolve) => {
      const timer = clock.setTimeout(() => {
        const error = new Error(`handler "${handler.name}" ${hook} timed out after ${timeoutMs} ms`);
        timedOut = true;
        controllerOf()?.abort(error);
        this.#fail(handler, hook, error, checkId);
        resolve(undefined);
      }, timeoutMs);
      promise.then(
        (value) => {
          clock.clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clock.clearTimeout(timer);
          if (!timedOut) this.#fail(handler, hook, error, checkId);
          resolve(undefined);
        },
      );
    });
  }

  #fail(handler: Handler, hook: string, error: unknown, checkId: string | undefined): void {
    this.#errors.set(handler.name, (this.#errors.get(handler.name) ?? 0) + 1);
    this.#options.logger.error({ err: error, handler: handler.name, hook, checkId }, 'handler failed');
    this.#options.onError(error, `handler:${handler.name}:${hook}`, checkId);
  }
}
