/** A run in flight, as the server sees it when it stops. */
export interface InterruptibleRun {
  /** Aborts the command and settles the run as `shutdown` at once: no Result counts. */
  interrupt(): void;
  /** Where the run sits in its `InFlightRuns`, kept by it; −1 while in none. */
  inFlightSlot: number;
}

/**
 * The runs whose command is under way, for a stopping server to interrupt. An array with each run's
 * slot kept on the run, rather than a Set. Measured (`node --trace-gc-nvp`): with a long-lived Set that
 * took and dropped a run per check, V8's young-generation collections moved each run's objects (about
 * 1 KB) to the old generation, as if the deleted entries still held them until the table was rebuilt,
 * to be found dead there by the next full collection; at 10,000 runs/s that was most of what filled
 * the old generation. An array slot is overwritten or cleared at once.
 */
export class InFlightRuns implements Iterable<InterruptibleRun> {
  readonly #runs: InterruptibleRun[] = [];

  get size(): number {
    return this.#runs.length;
  }

  add(run: InterruptibleRun): void {
    if (run.inFlightSlot >= 0) return;
    run.inFlightSlot = this.#runs.length;
    this.#runs.push(run);
  }

  /** Takes the run out, moving the last run into its slot. */
  delete(run: InterruptibleRun): void {
    const slot = run.inFlightSlot;
    if (slot < 0 || this.#runs[slot] !== run) return;
    const last = this.#runs.pop() as InterruptibleRun;
    if (last !== run) {
      this.#runs[slot] = last;
      last.inFlightSlot = slot;
    }
    run.inFlightSlot = -1;
  }

  /** A copy: interrupting a run takes it out while the caller iterates. */
  [Symbol.iterator](): Iterator<InterruptibleRun> {
    return [...this.#runs][Symbol.iterator]();
  }
}
