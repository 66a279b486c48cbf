import type { CheckSpec } from '../../checks/check.js';

/**
 * A row of the `checks` table as the queue reads it outside its hot path (the mirror's loads, the
 * registry's writes), and the column values the queue derives from a spec.
 */

/** Where a check came from: the config file (its source of truth), the HTTP API, or a command at runtime. */
export const CheckSources = ['config', 'api', 'runtime'] as const;
export type CheckSource = (typeof CheckSources)[number];

/** A row of `checks` as `ROW_COLUMNS` selects it; times in epoch ms. */
export interface CheckRow {
  id: string;
  spec: unknown;
  source_entry: unknown;
  source: CheckSource;
  spec_rev: number;
  version: number;
  state: unknown;
  /** `null`: a one-shot check that is done. */
  due: number | null;
  slot: number;
  lease_owner: string | null;
  lease_until: number | null;
  updated: number;
}

/** The select list that reads a `CheckRow`. */
export const ROW_COLUMNS = `id, spec, source_entry, source, spec_rev::float8 AS spec_rev, version::float8 AS version, state,
  (extract(epoch FROM next_due_at) * 1000)::float8 AS due, (extract(epoch FROM slot_at) * 1000)::float8 AS slot,
  lease_owner, (extract(epoch FROM lease_until) * 1000)::float8 AS lease_until, (extract(epoch FROM updated_at) * 1000)::float8 AS updated`;

/** Is the lease free (never taken, or expired)? */
export const LEASE_FREE = '(lease_owner IS NULL OR lease_until < now())';

/** The `timeout_ms` column of a spec: whole milliseconds, at least 1 (a lease is a multiple of it). */
export function timeoutOf(spec: CheckSpec): number {
  return Math.max(1, Math.ceil(spec.timeoutMs));
}

/** Ids in code-unit order: writers that lock several rows lock them in this one order, so they never deadlock. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
