import { initialCheckState, type Check, type CheckSpec, type CheckState } from '../checks/check.js';
import { firstDueAt } from '../checks/schedule.js';
import { MemoryQueue } from './memory-queue.js';
import type { CheckRegistry, CheckStatus } from './check-registry.js';
import { restoredSchedule, type SavedCheck } from './state-file.js';
import type { Queue, QueueEvent } from './queue.js';


interface Tracked {
  check: Check;
  status: CheckStatus;
  /** Removed while running: not put back when its run completes. */
  removed: boolean;
  /** Updated while running: the spec its next run uses. */
  nextSpec: CheckSpec | null;
}

export interface TrackedMemoryPoolOptions {
  /** Epoch milliseconds now; default `Date.now`. */
  readonly now?: () => number;
}

/**
 * The registry of known checks over a MemoryQueue: checks can be added, updated and removed at runtime,
 * also while one runs. A check removed while running is not put back; one updated while running
 * completes its run with the old spec and runs with the new one from its next run.
 */
export class TrackedMemoryPool implements Queue, CheckRegistry {
  readonly #queue = new MemoryQueue();
  readonly #tracked = new Map<string, Tracked>();
  readonly #listeners = new Set<(event: QueueEvent) => void>();
  readonly #now: () => number;
  /** Saved states of checks not added yet, taken by the first `add` of their id (see `adopt`). */
  readonly #adoptable = new Map<string, SavedCheck>();

  constructor(options: TrackedMemoryPoolOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#queue.watch((event) => this.#emit(event));
  }

  /**
   * Adds a check. Its first run is spread across its interval by its id, unless `restored` says
   * otherwise: a restored check keeps its state and its place (`dueAt` null: a one-shot check that
   * already finished). Throws when the id is taken.
   */
  add(spec: CheckSpec, restored: { state?: CheckState; dueAt?: number | null; slotAt?: number } = {}): Check {
    // A check removed while it runs stays tracked until its run completes; its id is free again.
    if (this.#tracked.get(spec.id)?.removed === false) throw new Error(`check "${spec.id}" already exists`);
    const adopted = this.#adoptable.get(spec.id);
    if (adopted) {
      this.#adoptable.delete(spec.id);
      if (restored.state === undefined) restored = { state: adopted.state, ...restoredSchedule(adopted, spec, this.#now()) };
    }
    const dueAt = restored.dueAt === undefined ? firstDueAt(spec.id, spec.intervalMs, this.#now()) : restored.dueAt;
    const slotAt = restored.slotAt ?? dueAt ?? this.#now();
    const check: Check = { spec, state: restored.state ?? initialCheckState, dueAt: dueAt ?? slotAt, slotAt };
    this.#tracked.set(spec.id, { check, status: dueAt === null ? 'done' : 'waiting', removed: false, nextSpec: null });
    if (dueAt !== null) this.#queue.push(check);
    return check;
  }

  /**
   * Keeps saved state for checks that are not known yet but may be added at runtime (a heartbeat-dir's
   * children, checks created through the API): the first `add` of such an id restores it, so a restart
   * neither forgets their open incidents nor alerts again.
   */
  adopt(id: string, saved: SavedCheck): void {
    if (!this.#tracked.has(id)) this.#adoptable.set(id, saved);
  }

  /**
   * Replaces a check's spec, keeping its state. A waiting check whose interval changed moves to the
   * new grid; a running one takes the new spec when its run completes. Throws for an unknown id.
   */
  update(spec: CheckSpec): void {
    const tracked = this.#tracked.get(spec.id);
    if (!tracked || tracked.removed) throw new Error(`check "${spec.id}" does not exist`);
    if (tracked.status === 'running') {
      tracked.nextSpec = spec;
      return;
    }
    const previous = tracked.check.spec;
    tracked.check.spec = spec;
    if (previous.intervalMs === spec.intervalMs && tracked.status === 'waiting') return;
    // A new interval (or a finished one-shot check given one) starts over on its own grid.
    this.#queue.remove(spec.id);
    tracked.check.dueAt = tracked.check.slotAt = firstDueAt(spec.id, spec.intervalMs, this.#now());
    tracked.status = 'waiting';
    this.#queue.push(tracked.check);
  }

  /** Adds the check, or updates it when the id is known. */
  upsert(spec: CheckSpec): void {
    const tracked = this.#tracked.get(spec.id);
    if (tracked && !tracked.removed) this.update(spec);
    else this.add(spec);
  }

  /** Removes a check; a running one finishes its run and is not put back. Returns false for an unknown id. */
  remove(id: string): boolean {
    const tracked = this.#tracked.get(id);
    if (!tracked || tracked.removed) return false;
    if (tracked.status === 'running') tracked.removed = true;
    else {
      this.#queue.remove(id);
      this.#tracked.delete(id);
    }
    this.#emit({ type: 'removed', checkId: id });
    return true;
  }

  /** Makes a waiting or finished check due at `dueAt` (default now), e.g. to run it at once. */
  reschedule(id: string, dueAt: number = this.#now()): boolean {
    const tracked = this.#tracked.get(id);
    if (!tracked || tracked.removed || tracked.status === 'running') return false;
    this.#queue.remove(id);
    tracked.check.dueAt = dueAt;
    tracked.status = 'waiting';
    this.#queue.push(tracked.check);
    return true;
  }

  /** Replaces a check's runtime state (acknowledging an incident, restoring a saved state). */
  setState(id: string, state: CheckState): boolean {
    const tracked = this.#tracked.get(id);
    if (!tracked || tracked.removed) return false;
    tracked.check.state = state;
    return true;
  }

  get(id: string): Check | undefined {
    const tracked = this.#tracked.get(id);
    return tracked && !tracked.removed ? tracked.check : undefined;
  }

  status(id: string): CheckStatus | undefined {
    const tracked = this.#tracked.get(id);
    return tracked && !tracked.removed ? tracked.status : undefined;
  }

  /** Every known check, in no particular order. */
  list(): Check[] {
    const checks: Check[] = [];
    for (const tracked of this.#tracked.values()) if (!tracked.removed) checks.push(tracked.check);
    return checks;
  }

  /** Known checks: waiting, running or done. */
  get size(): number {
    let size = 0;
    for (const tracked of this.#tracked.values()) if (!tracked.removed) size++;
    return size;
  }

  claim(now: number, limit: number): Promise<Check[]> {
    return Promise.resolve(this.claimSync(now, limit));
  }

  /** `claim` without the promise, for the hot path. */
  claimSync(now: number, limit: number): Check[] {
    const due = this.#queue.claimSync(now, limit);
    for (const check of due) (this.#tracked.get(check.spec.id) as Tracked).status = 'running';
    return due;
  }

  complete(check: Check, nextDueAt: number | null): Promise<void> {
    const tracked = this.#tracked.get(check.spec.id);
    // The check object may be stale: removed and added again under the same id while it ran.
    if (!tracked || tracked.check !== check) return this.#queue.complete(check, null);
    if (tracked.removed) {
      this.#tracked.delete(check.spec.id);
      return this.#queue.complete(check, null);
    }
    let due = nextDueAt;
    if (tracked.nextSpec) {
      const intervalChanged = tracked.nextSpec.intervalMs !== check.spec.intervalMs;
      check.spec = tracked.nextSpec;
      tracked.nextSpec = null;
      // A retry the run asked for (due off the grid) stands; otherwise a new interval starts over on
      // its own grid, as in `update`. (`slotAt` already holds the old grid's next slot here.)
      if (intervalChanged && (due === null || due === check.slotAt)) {
        due = check.spec.intervalMs === null ? null : firstDueAt(check.spec.id, check.spec.intervalMs, this.#now());
        if (due !== null) check.slotAt = due;
      }
    }
    tracked.status = due === null ? 'done' : 'waiting';
    return this.#queue.complete(check, due);
  }

  nextDueAt(): Promise<number | null> {
    return this.#queue.nextDueAt();
  }

  count(): Promise<number> {
    return Promise.resolve(this.size);
  }

  watch(listener: (event: QueueEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: QueueEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
