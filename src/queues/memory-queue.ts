import type { Check } from '../checks/check.js';
import type { Queue, QueueEvent } from './queue.js';

const DUE_EARLIER: QueueEvent = Object.freeze({ type: 'due-earlier' });

/** A check in the heap, with its position kept on the entry so a sift step costs no map write. */
interface Entry {
  check: Check;
  /** The due time the entry is ordered by (the check's `dueAt` when it was pushed). */
  dueAt: number;
  /** Position in the heap; −1 while the check is claimed. */
  index: number;
}

/**
 * The embedded queue: a binary min-heap on due time, each check's entry findable by id so a check can
 * be taken out or moved in O(log n). Claimed checks are not held here: whoever claims owns them. Their
 * entries stay in the map (at index −1) and serve again when the check comes back, so a run costs the
 * map nothing: deleting and re-adding an entry per run made V8 keep the deleted entries reachable
 * until the table was rebuilt, and move them to the old generation (see server/in-flight-runs.ts).
 * `forget`, and a completion that does not put the check back, drop the entry.
 */
export class MemoryQueue implements Queue {
  readonly #heap: Entry[] = [];
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<(event: QueueEvent) => void>();
  #claimed = 0;

  /** Puts a check in line at its `dueAt`. A check with the same id already waiting is replaced. */
  push(check: Check): void {
    const id = check.spec.id;
    let entry = this.#entries.get(id);
    if (entry === undefined) {
      entry = { check, dueAt: check.dueAt, index: -1 };
      this.#entries.set(id, entry);
    } else {
      if (entry.index >= 0) this.#removeAt(entry.index);
      entry.check = check;
      entry.dueAt = check.dueAt;
    }
    entry.index = this.#heap.length;
    this.#heap.push(entry);
    this.#siftUp(entry);
    if (entry.index === 0) this.#notify();
  }

  /**
   * Takes a waiting check out of line; returns it, or `undefined` when none waits with that id. Its
   * entry stays for when it is pushed again (a check moved to another time); `forget` drops it.
   */
  remove(id: string): Check | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.index < 0) return undefined;
    this.#removeAt(entry.index);
    return entry.check;
  }

  /** Takes a check out of line for good, waiting or claimed; returns it if it was waiting. */
  forget(id: string): Check | undefined {
    const removed = this.remove(id);
    this.#entries.delete(id);
    return removed;
  }

  /** The waiting check with this id. */
  get(id: string): Check | undefined {
    const entry = this.#entries.get(id);
    return entry !== undefined && entry.index >= 0 ? entry.check : undefined;
  }

  /** Checks waiting in line (not claimed). */
  get waiting(): number {
    return this.#heap.length;
  }

  claim(now: number, limit: number): Promise<Check[]> {
    return Promise.resolve(this.claimSync(now, limit));
  }

  /** `claim` without the promise, for callers on the hot path that hold the queue itself. */
  claimSync(now: number, limit: number): Check[] {
    const due: Check[] = [];
    while (due.length < limit) {
      const head = this.#heap[0];
      if (head === undefined || head.dueAt > now) break;
      this.#removeAt(0);
      due.push(head.check);
    }
    this.#claimed += due.length;
    return due;
  }

  complete(check: Check, nextDueAt: number | null): Promise<void> {
    this.#claimed = Math.max(0, this.#claimed - 1);
    if (nextDueAt !== null) {
      check.dueAt = nextDueAt;
      this.push(check);
    } else {
      this.forget(check.spec.id);
    }
    return Promise.resolve();
  }

  nextDueAt(): Promise<number | null> {
    return Promise.resolve(this.peekDueAt());
  }

  /** `nextDueAt` without the promise. */
  peekDueAt(): number | null {
    return this.#heap[0]?.dueAt ?? null;
  }

  count(): Promise<number> {
    return Promise.resolve(this.#heap.length + this.#claimed);
  }

  watch(listener: (event: QueueEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    for (const listener of this.#listeners) listener(DUE_EARLIER);
  }

  #removeAt(index: number): void {
    const heap = this.#heap;
    const removed = heap[index] as Entry;
    removed.index = -1;
    const last = heap.pop() as Entry;
    if (index === heap.length) return;
    heap[index] = last;
    last.index = index;
    this.#siftUp(last);
    this.#siftDown(last);
  }

  /** Moves the entry up while it is due before its parent. */
  #siftUp(entry: Entry): void {
    const heap = this.#heap;
    let index = entry.index;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as Entry;
      if (parent.dueAt <= entry.dueAt) break;
      heap[index] = parent;
      parent.index = index;
      index = parentIndex;
    }
    heap[index] = entry;
    entry.index = index;
  }

  #siftDown(entry: Entry): void {
    const heap = this.#heap;
    const length = heap.length;
    let index = entry.index;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && (heap[right] as Entry).dueAt < (heap[left] as Entry).dueAt ? right : left;
      const childEntry = heap[child] as Entry;
      if (childEntry.dueAt >= entry.dueAt) break;
      heap[index] = childEntry;
      childEntry.index = index;
      index = child;
    }
    heap[index] = entry;
    entry.index = index;
  }
}
