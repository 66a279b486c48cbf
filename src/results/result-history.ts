import type { Incident } from './incident.js';
import type { Result } from './result.js';

export interface ResultHistoryOptions {
  /** Results kept per check, newest first; default 10. */
  readonly perCheck?: number;
  /**
   * Results kept across all checks; default 100 000. With more checks than `total / perCheck`, each
   * check keeps fewer (at least its last one): 100 000 checks keep one result each, not a million.
   */
  readonly total?: number;
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
 * incidents (open ones live in the check state). Bounded per check and in total: a short list per
 * check (oldest first), made on its first result, trimmed to the share of `total` each check gets.
 */
export class ResultHistory implements HistorySource {
  readonly #perCheck: number;
  readonly #total: number;
  readonly #maxResolved: number;
  /**
   * Per check, oldest first. A check that keeps one result holds it bare: at 100,000 checks each keeps
   * one, and an array that grew by `push` carries room for 17 (about 150 bytes a check, for nothing).
   */
  readonly #results = new Map<string, Result | Result[]>();
  readonly #resolved: Incident[] = [];

  constructor(options: ResultHistoryOptions = {}) {
    this.#perCheck = options.perCheck ?? 10;
    this.#total = options.total ?? 100_000;
    this.#maxResolved = options.resolvedIncidents ?? 1_000;
  }

  record(checkId: string, result: Result): void {
    if (this.#perCheck === 0) return;
    const kept = this.#results.get(checkId);
    const checks = this.#results.size + (kept === undefined ? 1 : 0);
    const keep = Math.max(1, Math.min(this.#perCheck, Math.floor(this.#total / checks)));
    if (keep === 1 || kept === undefined) {
      // The newest result is also the check's `lastResult`: keeping it costs one map value.
      this.#results.set(checkId, keep === 1 ? result : [result]);
      return;
    }
    const items = Array.isArray(kept) ? kept : [kept];
    items.push(result);
    if (items.length > keep) items.splice(0, items.length - keep);
    if (items !== kept) this.#results.set(checkId, items);
  }

  /** The check's recent results, newest first, at most `limit`. */
  results(checkId: string, limit = this.#perCheck): Result[] {
    const kept = this.#results.get(checkId);
    if (kept === undefined || limit <= 0) return [];
    if (!Array.isArray(kept)) return [kept];
    const ordered: Result[] = [];
    for (let i = kept.length - 1; i >= 0 && ordered.length < limit; i--) ordered.push(kept[i] as Result);
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
