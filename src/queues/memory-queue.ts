import type { Check } from '../checks/check.js';
import type { Queue, QueueEvent } from './queue.js';

const DUE_EARLIER: QueueEvent = Object.freeze({ type: 'due-earlier' });

/**
 * The embedded queue: a binary min-heap on due time, with each check's position indexed by id so a check
 * can be taken out or moved in O(log n). Claimed checks are not held here: whoever claims owns them.
 */
export class MemoryQueue implements Queue {
  readonly #heap: Check[] = [];
  readonly #position = new Map<string, number>();
  readonly #listeners = new Set<(event: QueueEvent) => void>();
  #claimed = 0;

  /** Puts a check in line at its `dueAt`. A check with the same id already waiting is replaced. */
  push(check: Check): void {
    this.remove(check.spec.id);
    this.#heap.push(check);
    this.#siftUp(this.#heap.length - 1);
    if (this.#heap[0] === check) this.#notify();
  }

  /** Takes a waiting check out of line; returns it, or `undefined` when none waits with that id. */
  remove(id: string): Check | undefined {
    const index = this.#position.get(id);
    if (index === undefined) return undefined;
    const check = this.#heap[index] as Check;
    this.#removeAt(index);
    return check;
  }

  /** The waiting check with this id. */
  get(id: string): Check | undefined {
    const index = this.#position.get(id);
    return index === undefined ? undefined : this.#heap[index];
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
      due.push(head);
    }
    this.#claimed += due.length;
    return due;
  }

  complete(check: Check, nextDueAt: number | null): Promise<void> {
    this.#claimed = Math.max(0, this.#claimed - 1);
    if (nextDueAt !== null) {
      check.dueAt = nextDueAt;
      this.push(check);
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
    const removed = heap[index] as Check;
    this.#position.delete(removed.spec.id);
    const last = heap.pop() as Check;
    if (index === heap.length) return;
    heap[index] = last;
    this.#position.set(last.spec.id, index);
    this.#siftDown(this.#siftUp(index));
  }

  /** Moves the entry at `index` up while it is due before its parent; returns where it stopped. */
  #siftUp(index: number): number {
    const heap = this.#heap;
    const item = heap[index] as Check;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as Check;
      if (parent.dueAt <= item.dueAt) break;
      heap[index] = parent;
      this.#position.set(parent.spec.id, index);
      index = parentIndex;
    }
    heap[index] = item;
    this.#position.set(item.spec.id, index);
    return index;
  }

  #siftDown(index: number): void {
    const heap = this.#heap;
    const length = heap.length;
    const item = heap[index] as Check;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && (heap[right] as Check).dueAt < (heap[left] as Check).dueAt ? right : left;
      const childItem = heap[child] as Check;
      if (childItem.dueAt >= item.dueAt) break;
      heap[index] = childItem;
      this.#position.set(childItem.spec.id, index);
      index = child;
    }
    heap[index] = item;
    this.#position.set(item.spec.id, index);
  }
}
