import type pg from 'pg';
import type { CheckState } from '../../checks/check.js';
import type { Incident } from '../../results/incident.js';
import { toJson } from './codec.js';
import type { CompletionRow, HolderRow, QueueStatements, WrittenRow } from './statements.js';

/**
 * Writing a batch of completions: one statement (one transaction, one round trip) that writes every
 * row whose lease is still the instance's at the claimed version and, for those rows only, their
 * incident rows; then, only when some were refused, a look at who holds those.
 */

/** Incident rows to write for state changes: opened or updated ones, and resolved ones. */
export interface IncidentChanges {
  /** Sorted by id, so that concurrent writers lock the rows in one order. */
  readonly upserts: Incident[];
  readonly resolves: { id: string; checkId: string; at: number }[];
}

/**
 * The incident rows that state changes (previous → state) call for: the new or changed incident, and
 * the one that ended (at the recovery's time, else `now`).
 */
export function incidentChanges(changes: readonly { readonly previous: CheckState; readonly state: CheckState }[], now: number): IncidentChanges {
  const upserts: Incident[] = [];
  const resolves: { id: string; checkId: string; at: number }[] = [];
  for (const { previous, state } of changes) {
    const before = previous.incident;
    const after = state.incident;
    if (after && after !== before) upserts.push(after);
    if (before && before.id !== after?.id) {
      resolves.push({ id: before.id, checkId: before.checkId, at: state.hardState === 'ok' && state.lastHardChangeAt !== null ? state.lastHardChangeAt : now });
    }
  }
  upserts.sort((a, b) => compare(a.id, b.id));
  resolves.sort((a, b) => compare(a.id, b.id));
  return { upserts, resolves };
}

/**
 * Writes `rows` (sorted by id) as `owner`, with `incidents` for the rows that are written, and returns
 * the rows written by id. Rejects with the database's error (then nothing was written, or — when the
 * connection died after COMMIT — everything was: `findHolders` tells them apart on the next try).
 */
export async function writeCompletions(
  pool: pg.Pool,
  statements: QueueStatements,
  owner: string,
  rows: readonly CompletionRow[],
  incidents: IncidentChanges,
): Promise<Map<string, WrittenRow>> {
  const withIncidents = incidents.upserts.length > 0 || incidents.resolves.length > 0;
  const { rows: done } = await pool.query<WrittenRow>(
    withIncidents
      ? { ...statements.completeWithIncidents, values: [owner, toJson(rows), toJson(incidents.upserts), toJson(incidents.resolves)] }
      : { ...statements.complete, values: [owner, toJson(rows)] },
  );
  return new Map(done.map((row) => [row.id, row]));
}

/**
 * Who holds the rows of completions that were refused, by id; a row that is gone is absent. `same`:
 * the row holds exactly that state one version on, unleased (an earlier try was written after all).
 */
export async function findHolders(pool: pg.Pool, statements: QueueStatements, refused: readonly CompletionRow[]): Promise<Map<string, HolderRow>> {
  const { rows } = await pool.query<HolderRow>({ ...statements.holders, values: [toJson(refused.map(({ id, version, state }) => ({ id, version, state })))] });
  return new Map(rows.map((row) => [row.id, row]));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
