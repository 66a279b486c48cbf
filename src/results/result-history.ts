import type { Incident } from './incident.js';
import type { Result } from './result.js';

export interface ResultHistoryOptions {
  /** Results kept per check, newest first; default 10. */
  readonly perCheck?: number;
  /** Resolved incidents kept, newest first; default 1 000. */
  readonly resolvedIncidents?: number;
}

/** Where the API reads the recent past: memory, or the database a PostgreSQL queue shares. */
export interface HistorySource {
  /** The check's recent results, newest first, at most `limit` (default the source's own). */
  results(checkId: string, limit?: number): readonly Result[] | Promise<readonly Result[]>;
  /** Resolved incidents, newest first. */
  resolvedIncidents(): readonly Incident[] | Promise<readonly Incident[]>;
  /** Drops a removed check's results, where they are kept per check in memory. */
  forget(checkId: string): void;
}

/**
 * The recent past in memory, for the API: the last results of each check and the last resolved
 * incidents (open ones live in the check state). Bounded: a ring per check, allocated on its first result.
 */
export class ResultHistory implements HistorySource {
  readonly #perCheck: number;
  readonly #maxResolved: number;
  readonly #results = new Map<string, { items: Result[]; next: number }>();
  readonly #resolved: Incident[] = [];

  constructor(options: ResultHistoryOptions = {}) {
    this.#perCheck = options.perCheck ?? 10;
    this.#maxResolved = options.resolvedIncidents ?? 1_000;
  }

  record(checkId: string, result: Result): void {
    if (this.#perCheck === 0) return;
    let ring = this.#results.get(checkId);
    if (!ring) {
      ring = { items: [], next: 0 };
      this.#results.set(checkId, ring);
    }
    if (ring.items.length < this.#perCheck) ring.items.push(result);
    else ring.items[ring.next] = result;
    ring.next = (ring.next + 1) % this.#perCheck;
  }

  /** The check's recent results, newest first, at most `limit`. */
  results(checkId: string, limit = this.#perCheck): Result[] {
    const ring = this.#results.get(checkId);
    if (!ring) return [];
    const { items, next } = ring;
    const ordered: Result[] = [];
    for (let i = 1; i <= items.length && ordered.length < limit; i++) {
      ordered.push(items[(next - i + items.length) % items.length] as Result);
    }
    return ordered;
  }

  recordResolved(incident: Incident): void {
    this.#resolved.unshift(incident);
    if (this.#resolved.length > this.#maxResolved) this.#resolved.pop();
  }

  /** Resolved incidents, newest first. */
  resolvedIncidents(): readonly Incident[] {
    return this.#resolved;
  }

  /** Drops a removed check's results. */
  forget(checkId: string): void {
    this.#results.delete(checkId);
  }
}
