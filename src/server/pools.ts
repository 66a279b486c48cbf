import type { Check, CheckSpec } from '../checks/check.js';

/** One pool of the server's concurrency, as configured under `server.pools`. */
export interface PoolSpec {
  readonly name: string;
  /** Share of `server.concurrency`: the pool gets ceil(concurrency × ratio) slots. */
  readonly ratio: number;
  /** A shared pool also runs the overflow of the non-shared pools, taken in the order they are defined. */
  readonly shared: boolean;
}

/** How each check finds its pool when it names none. */
export interface PoolRouting {
  /** Pool per command name (e.g. `exec: exec`). */
  readonly byCommand: Readonly<Record<string, string>>;
  /** Pool of every other check. */
  readonly fallback: string;
}

/** One claimed check waiting for, or holding, a slot. */
export interface PoolTask {
  readonly check: Check;
  /** Runs the check; never rejects. */
  readonly run: () => Promise<void>;
}

/** What `/metrics` shows per pool. */
export interface PoolStats {
  readonly name: string;
  readonly shared: boolean;
  readonly slots: number;
  /** Checks running in the pool's slots (its own and borrowed ones). */
  readonly running: number;
  /** Checks of this pool waiting for a slot. */
  readonly waiting: number;
  /** Checks of this pool running in a shared pool's slots right now. */
  readonly borrowed: number;
}

interface Pool {
  readonly spec: PoolSpec;
  readonly slots: number;
  running: number;
  borrowed: number;
  readonly waiting: PoolTask[];
}

/**
 * Reserved and shared concurrency. A non-shared pool reserves its slots for its own checks; when they
 * are full, a shared pool with a free slot runs the overflow, taking the non-shared pools' waiting
 * checks in definition order. With `safeMode`, two checks with the same command and attributes never
 * run at once: the second waits for the first (and does not block others behind it).
 */
export class Pools {
  readonly #pools: Pool[];
  readonly #byName: Map<string, Pool>;
  readonly #routing: PoolRouting;
  readonly #safeMode: boolean;
  readonly #busyTargets = new Set<string>();
  readonly #targetKeys = new WeakMap<CheckSpec, string>();
  readonly #onSlotFree: () => void;
  #waiting = 0;
  /** Callers of `onIdle` waiting for the last running task. */
  readonly #idleWaiters: (() => void)[] = [];

  constructor(concurrency: number, specs: readonly PoolSpec[], options: { routing: PoolRouting; safeMode: boolean; onSlotFree: () => void }) {
    if (specs.length === 0) throw new Error('Expected at least one pool');
    this.#pools = specs.map((spec) => {
      const slots = Math.max(1, Math.ceil(concurrency * spec.ratio));
      return { spec, slots, running: 0, borrowed: 0, waiting: [] };
    });
    this.#byName = new Map(this.#pools.map((pool) => [pool.spec.name, pool]));
    for (const name of [options.routing.fallback, ...Object.values(options.routing.byCommand)]) {
      if (!this.#byName.has(name)) throw new Error(`Expected pool \`${name}\` to be one of ${specs.map((spec) => spec.name).join(', ')}`);
    }
    this.#routing = options.routing;
    this.#safeMode = options.safeMode;
    this.#onSlotFree = options.onSlotFree;
  }

  /**
   * How many more checks to claim: each pool's free slots less the checks already waiting for them.
   * Per pool, so a pool full of slow checks does not stop the others from claiming. (Shared pools take
   * overflow at once, so a free shared slot means nothing is waiting that it could run.)
   */
  get free(): number {
    let free = 0;
    let slots = 0;
    for (const pool of this.#pools) {
      free += Math.max(0, pool.slots - pool.running - pool.waiting.length);
      slots += pool.slots;
    }
    // Claims cannot choose their pool here: checks claimed for one pool's free slots may belong to a
    // full one and wait. Never let more wait than there are slots, so the lists stay short.
    return Math.max(0, Math.min(free, slots - this.#waiting));
  }

  /**
   * Slots of one pool free for checks of its own (for a shared pool: to lend to the others'
   * overflow once its own are claimed), less those already waiting for them.
   */
  freeFor(name: string): number {
    const pool = this.#byName.get(name);
    return pool ? Math.max(0, pool.slots - pool.running - pool.waiting.length) : 0;
  }

  /** The pools in definition order. */
  get specs(): readonly PoolSpec[] {
    return this.#pools.map((pool) => pool.spec);
  }

  get running(): number {
    let running = 0;
    for (const pool of this.#pools) running += pool.running;
    return running;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /** The pool a check runs in: its own `pool`, else its command's default, else the fallback. */
  poolOf(spec: CheckSpec): string {
    const named = spec.pool ?? this.#routing.byCommand[spec.command] ?? this.#routing.fallback;
    return this.#byName.has(named) ? named : this.#routing.fallback;
  }

  /** Queues claimed checks, then starts what fits. Submit a whole batch at once: overflow is taken in pool order. */
  submit(tasks: readonly PoolTask[]): void {
    for (const task of tasks) {
      (this.#byName.get(this.poolOf(task.check.spec)) as Pool).waiting.push(task);
      this.#waiting++;
    }
    this.#dispatch();
  }

  /** Takes every check still waiting for a slot out (the server is stopping). */
  drainWaiting(): Check[] {
    const drained: Check[] = [];
    for (const pool of this.#pools) for (const task of pool.waiting.splice(0)) drained.push(task.check);
    this.#waiting = 0;
    return drained;
  }

  /** Resolves when no check runs. */
  onIdle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  stats(): PoolStats[] {
    return this.#pools.map((pool) => ({
      name: pool.spec.name,
      shared: pool.spec.shared,
      slots: pool.slots,
      running: pool.running,
      waiting: pool.waiting.length,
      borrowed: pool.borrowed,
    }));
  }

  #dispatch(): void {
    if (this.#waiting === 0) return;
    for (const pool of this.#pools) {
      while (pool.running < pool.slots) {
        const task = this.#takeRunnable(pool);
        if (!task) break;
        this.#start(task, pool, pool);
      }
    }
    for (const shared of this.#pools) {
      if (!shared.spec.shared) continue;
      for (const owner of this.#pools) {
        if (owner.spec.shared) continue;
        while (shared.running < shared.slots) {
          const task = this.#takeRunnable(owner);
          if (!task) break;
          this.#start(task, shared, owner);
        }
      }
    }
  }

  /** The first waiting task of the pool whose target is not busy (all of them without safe mode). */
  #takeRunnable(pool: Pool): PoolTask | undefined {
    const index = this.#safeMode ? pool.waiting.findIndex((task) => !this.#busyTargets.has(this.#targetKey(task.check.spec))) : 0;
    if (index < 0 || index >= pool.waiting.length) return undefined;
    this.#waiting--;
    return index === 0 ? pool.waiting.shift() : pool.waiting.splice(index, 1)[0];
  }

  /**
   * Runs a task in a slot of `slotPool`. The admission above is the whole of the scheduling: a task
   * starts only in a free slot, so it is simply called (a queue library here would queue nothing and
   * cost a few microseconds and a dozen objects a run, at up to ten thousand runs a second).
   */
  #start(task: PoolTask, slotPool: Pool, owner: Pool): void {
    slotPool.running++;
    if (slotPool !== owner) owner.borrowed++;
    const target = this.#safeMode ? this.#targetKey(task.check.spec) : null;
    if (target !== null) this.#busyTargets.add(target);
    const finished = (): void => {
      slotPool.running--;
      if (slotPool !== owner) owner.borrowed--;
      if (target !== null) this.#busyTargets.delete(target);
      this.#dispatch();
      if (this.#idleWaiters.length > 0 && this.running === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
      this.#onSlotFree();
    };
    // `run` never rejects by contract; a task that breaks it still frees its slot.
    void task.run().then(finished, finished);
  }

  /** Command and attributes as a stable string, computed once per spec. */
  #targetKey(spec: CheckSpec): string {
    let key = this.#targetKeys.get(spec);
    if (key === undefined) {
      // join() makes one flat string: a template literal would keep a tree of pieces, per check, for good.
      key = [spec.command, stableStringify(spec.attributes)].join('\0');
      this.#targetKeys.set(spec, key);
    }
    return key;
  }
}

/** JSON with sorted keys, RegExps and Buffers included, so equal attributes give equal strings. */
export function stableStringify(value: unknown): string {
  if (value instanceof RegExp) return `/${value.source}/${value.flags}`;
  if (Buffer.isBuffer(value)) return `b64:${value.toString('base64')}`;
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${stableStringify((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}

/**
 * The pools vigil uses when the config names none: exec plugins get a tenth of the slots of their own,
 * and browser checks (a page in Chromium costs tens of MB and a core for a moment) a twentieth.
 */
export function defaultPools(): { pools: PoolSpec[]; routing: PoolRouting } {
  return {
    pools: [
      { name: 'default', ratio: 0.85, shared: false },
      { name: 'exec', ratio: 0.1, shared: false },
      { name: 'browser', ratio: 0.05, shared: false },
    ],
    routing: { byCommand: { exec: 'exec', browser: 'browser' }, fallback: 'default' },
  };
}
