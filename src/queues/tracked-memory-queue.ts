import { initialCheckState, type Check, type CheckSpec, type CheckState } from '../checks/check.js';
import { firstDueAt } from '../checks/schedule.js';
import { MemoryQueue } from './memory-queue.js';
import type { CheckRegistry, CheckStatus } from '../checks/check-registry.js';
import { restoredSchedule, type SavedCheck } from './state-file.js';
import type { Queue, QueueEvent } from './queue.js';
import { nowOf, type Clock } from '../core/clock.js';


interface Tracked {
  check: Check;
  /** The partition whose line the check waits in. */
  line: string;
  status: CheckStatus;
  /** Removed while running: not put back when its run completes. */
  removed: boolean;
  /** Updated while running: the spec its next run uses. */
  nextSpec: CheckSpec | null;
}

export interface TrackedMemoryQueueOptions {
  /** Tells the time; default `systemClock`. */
  readonly clock?: Clock;
}

/**
 * The registry of known checks over a MemoryQueue: checks can be added, updated and removed at runtime,
 * also while one runs. A check removed while running is not put back; one updated while running
 * completes its run with the old spec and runs with the new one from its next run.
 */
export class TrackedMemoryQueue implements Queue, CheckRegistry {
  /** One line (min-heap on due time) per partition; a single one until `partitionBy` is called. */
  readonly #lines = new Map<string, MemoryQueue>();
  #partition: (spec: CheckSpec) => string = () => '';
  readonly #tracked = new Map<string, Tracked>();
  readonly #listeners = new Set<(event: QueueEvent) => void>();
  readonly #now: () => number;
  /** Saved states of checks not added yet, taken by the first `add` of their id (see `adopt`). */
  readonly #adoptable = new Map<string, SavedCheck>();

  constructor(options: TrackedMemoryQueueOptions = {}) {
    this.#now = nowOf(options.clock);
  }

  partitionBy(partition: (spec: CheckSpec) => string): void {
    this.#partition = partition;
    for (const tracked of this.#tracked.values()) {
      if (tracked.status !== 'waiting' || tracked.removed || partition(tracked.check.spec) === tracked.line) continue;
      this.#lines.get(tracked.line)?.remove(tracked.check.spec.id);
      this.#enqueue(tracked);
    }
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
    const tracked: Tracked = { check, line: '', status: dueAt === null ? 'done' : 'waiting', removed: false, nextSpec: null };
    this.#tracked.set(spec.id, tracked);
    if (dueAt !== null) this.#enqueue(tracked);
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
    this.#lines.get(tracked.line)?.remove(spec.id);
    // A new interval (or a finished one-shot check given one) starts over on its own grid.
    if (previous.intervalMs !== spec.intervalMs || tracked.status !== 'waiting') {
      tracked.check.dueAt = tracked.check.slotAt = firstDueAt(spec.id, spec.intervalMs, this.#now());
      tracked.status = 'waiting';
    }
    // Its pool may have changed too.
    this.#enqueue(tracked);
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
      this.#lines.get(tracked.line)?.forget(id);
      this.#tracked.delete(id);
    }
    this.#emit({ type: 'removed', checkId: id });
    return true;
  }

  /** Makes a waiting or finished check due at `dueAt` (default now), e.g. to run it at once. */
  reschedule(id: string, dueAt: number = this.#now()): boolean {
    const tracked = this.#tracked.get(id);
    if (!tracked || tracked.removed || tracked.status === 'running') return false;
    this.#lines.get(tracked.line)?.remove(id);
    tracked.check.dueAt = dueAt;
    tracked.status = 'waiting';
    this.#enqueue(tracked);
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

  /** `claim` without the promise, for the hot path: earliest first across every partition. */
  claimSync(now: number, limit: number): Check[] {
    if (this.#lines.size <= 1) {
      const [line] = this.#lines.values();
      return line ? this.#running(line.claimSync(now, limit)) : [];
    }
    const due: Check[] = [];
    while (due.length < limit) {
      let earliest: MemoryQueue | undefined;
      let earliestAt = now;
      for (const line of this.#lines.values()) {
        const at = line.peekDueAt();
        if (at !== null && at <= earliestAt) {
          earliest = line;
          earliestAt = at;
        }
      }
      if (!earliest) break;
      due.push(...earliest.claimSync(now, 1));
    }
    return this.#running(due);
  }

  claimFrom(now: number, limit: number, partition: string): Promise<Check[]> {
    const line = this.#lines.get(partition);
    return Promise.resolve(line ? this.#running(line.claimSync(now, limit)) : []);
  }

  #running(due: Check[]): Check[] {
    for (const check of due) (this.#tracked.get(check.spec.id) as Tracked).status = 'running';
    return due;
  }

  /** Puts a tracked check in its partition's line, at its `dueAt`. */
  #enqueue(tracked: Tracked): void {
    const key = this.#partition(tracked.check.spec);
    // A check whose pool changed leaves its old line for good.
    if (tracked.line !== key) this.#lines.get(tracked.line)?.forget(tracked.check.spec.id);
    let line = this.#lines.get(key);
    if (!line) {
      line = new MemoryQueue();
      line.watch((event) => this.#emit(event));
      this.#lines.set(key, line);
    }
    tracked.line = key;
    line.push(tracked.check);
  }

  complete(check: Check, nextDueAt: number | null): Promise<void> {
    const tracked = this.#tracked.get(check.spec.id);
    // The check object may be stale: removed and added again under the same id while it ran.
    if (!tracked || tracked.check !== check) return Promise.resolve();
    if (tracked.removed) {
      this.#lines.get(tracked.line)?.forget(check.spec.id);
      this.#tracked.delete(check.spec.id);
      return Promise.resolve();
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
    if (due !== null) {
      check.dueAt = due;
      this.#enqueue(tracked);
    }
    return Promise.resolve();
  }

  nextDueAt(): Promise<number | null> {
    let next: number | null = null;
    for (const line of this.#lines.values()) {
      const at = line.peekDueAt();
      if (at !== null && (next === null || at < next)) next = at;
    }
    return Promise.resolve(next);
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
