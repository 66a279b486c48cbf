import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckState } from '../../checks/check.js';
import type { Clock } from '../../core/clock.js';
import type { Incident } from '../../results/incident.js';
import { compareIds } from './check-rows.js';
import { toJson } from './codec.js';
import type { BufferedCompletion } from './completion-buffer.js';
import { LeaseLostError } from './errors.js';
import type { Entry, Mirror } from './mirror.js';
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
  upserts.sort((a, b) => compareIds(a.id, b.id));
  resolves.sort((a, b) => compareIds(a.id, b.id));
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

/** A claimed check's run, given back with its new state and waiting to be written. */
export interface PendingCompletion extends BufferedCompletion {
  readonly entry: Entry;
  /** The claim's version: the compare-and-set value. */
  readonly version: number;
  readonly state: CheckState;
  /** The state the row held when it was claimed: incidents are opened and resolved by the change. */
  readonly previous: CheckState;
  /** Epoch ms on the instance's clock; `null`: a one-shot check that is done. */
  readonly due: number | null;
  readonly slot: number;
  /** The database clock's offset the claim used: `due` and `slot` are written moved back by it. */
  readonly offsetMs: number;
  readonly resolve: () => void;
}

export interface CompletionWriterOptions {
  readonly pool: pg.Pool;
  readonly statements: QueueStatements;
  /** This instance's id: the lease owner a written row must still have. */
  readonly instanceId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly mirror: Mirror;
  /** Something may be due at `at` (epoch ms); `tell`: the server should look again. */
  readonly dueAt: (at: number, tell: boolean) => void;
  /** Reads a check again soon: its row changed in a way this instance must learn (a kept acknowledgement, a lost lease). */
  readonly reload: (id: string) => void;
}

/**
 * Writes a batch of completions and settles each by the answer: written (the mirror takes the row's
 * new version), refused because the row moved on (its lease lost: LeaseLostError), or gone (removed
 * meanwhile: resolved, nothing put back).
 */
export class CompletionWriter {
  readonly #pool: pg.Pool;
  readonly #statements: QueueStatements;
  readonly #me: string;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #mirror: Mirror;
  readonly #dueAt: (at: number, tell: boolean) => void;
  readonly #reload: (id: string) => void;
  #batches = 0;
  #leasesLost = 0;

  constructor(options: CompletionWriterOptions) {
    this.#pool = options.pool;
    this.#statements = options.statements;
    this.#me = options.instanceId;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#mirror = options.mirror;
    this.#dueAt = options.dueAt;
    this.#reload = options.reload;
  }

  /** Batches written (each one transaction). */
  get batches(): number {
    return this.#batches;
  }

  /** Completions refused because the lease had been lost. */
  get leasesLost(): number {
    return this.#leasesLost;
  }

  /**
   * One statement writes every completion of the batch whose lease is still this instance's at the
   * claimed version, with their incident rows; those are settled at once. The refused ones are settled
   * by who holds their rows now. Rejects when the database fails; what was settled stays settled.
   */
  async write(batch: PendingCompletion[]): Promise<void> {
    batch.sort((a, b) => compareIds(a.id, b.id));
    const rows = batch.map(completionRow);
    this.#batches++;
    const written = await writeCompletions(this.#pool, this.#statements, this.#me, rows, incidentChanges(batch, this.#clock.now()));
    const refused: PendingCompletion[] = [];
    for (const pending of batch) {
      const row = written.get(pending.id);
      if (row) this.#settleWritten(pending, row);
      else refused.push(pending);
    }
    if (refused.length === 0) return;
    const holders = await findHolders(this.#pool, this.#statements, refused.map(completionRow));
    for (const pending of refused) this.#settleRefused(pending, holders.get(pending.id));
  }

  /** The completion's row holds its state now (written by this try, or by an earlier one whose answer was lost). */
  #settleWritten(pending: PendingCompletion, row: WrittenRow | null): void {
    const { entry, id } = pending;
    entry.persisted = pending.state;
    if (row) {
      entry.version = row.version;
      entry.updatedAt = row.updated;
    }
    entry.leaseOwner = entry.leaseUntil = null;
    entry.done = pending.due === null;
    this.#mirror.completed(entry);
    if (pending.due !== null) this.#dueAt(pending.due, false);
    if (row?.merged) this.#reload(id);
    pending.settled = true;
    pending.resolve();
  }

  /** A completion the compare-and-set refused, by who holds its row now (`undefined`: the row is gone). */
  #settleRefused(pending: PendingCompletion, holder: HolderRow | undefined): void {
    const { entry, id } = pending;
    if (holder?.same) return this.#settleWritten(pending, null);
    pending.settled = true;
    if (!holder) {
      // Removed (here or elsewhere) while it ran: nothing to put back.
      this.#mirror.completedGone(entry);
      pending.resolve();
      return;
    }
    this.#leasesLost++;
    this.#mirror.abandonClaim(entry);
    this.#reload(id);
    const detail = holder.lease_owner === null
      ? `the check was completed by another instance meanwhile (version ${holder.version}, claimed at ${pending.version})`
      : `it is held by ${holder.lease_owner === this.#me ? 'a later claim of this instance' : `instance "${holder.lease_owner}"`} now (version ${holder.version}, claimed at ${pending.version})`;
    this.#logger.warn({ checkId: id, holder: holder.lease_owner }, `lease of check "${id}" lost: its result is discarded`);
    pending.reject(new LeaseLostError(id, detail));
  }
}

/** The row a completion writes: its times on the database's clock. */
function completionRow(pending: PendingCompletion): CompletionRow {
  const { id, version, state, due, slot, offsetMs } = pending;
  return { id, version, state, due: due === null ? null : due - offsetMs, slot: slot - offsetMs };
}
