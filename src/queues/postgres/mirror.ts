import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { Check, CheckSpec, CheckState } from '../../checks/check.js';
import type { CheckStatus } from '../../checks/check-registry.js';
import type { ParseResult } from '../../commands/command.js';
import type { Clock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import type { QueueEvent } from '../queue.js';
import type { CheckRow, CheckSource } from './check-rows.js';
import { decodeSpec, decodeState, encodeSpec, plain } from './codec.js';
import type { ReportError } from './errors.js';
import type { ClaimedRow } from './statements.js';

/** One check as this instance knows it: the Check the server runs, and what the table last said of it. */
export interface Entry {
  check: Check;
  source: CheckSource;
  raw: unknown;
  /** `spec_rev` of the row the spec came from; 0 before the first write. */
  specRev: number;
  /** `version` of the row as last seen. */
  version: number;
  /** `updated_at` of the row as last seen, epoch ms. */
  updatedAt: number;
  /** The state the row holds, as far as this instance knows; `check.state !== persisted` means a local change to write. */
  persisted: CheckState;
  /** `next_due_at` is NULL: a one-shot check that is done. */
  done: boolean;
  leaseOwner: string | null;
  /** Epoch ms. */
  leaseUntil: number | null;
  /** Claimed by this instance and not yet settled. */
  claimed: boolean;
  /** Its completion is buffered or being written. */
  completing: boolean;
  /** The version the claim saw: the completion's compare-and-set value. */
  claimedVersion: number;
  /** The database clock's offset the claim's times were moved by: the completion's are moved back by the same, so the grid stays exact. */
  claimOffsetMs: number;
  /** Removed while claimed here: dropped when its run completes. */
  removed: boolean;
  /** Updated while claimed here: the spec its next run uses. */
  nextSpec: CheckSpec | null;
}

export interface MirrorOptions {
  /** This instance's id: the lease owner of what it claims. */
  readonly instanceId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Parses a stored source entry again, for a spec JSON could not keep. */
  readonly parseCheck: ((raw: unknown) => ParseResult<CheckSpec>) | undefined;
  readonly report: ReportError;
  /** Something may be due at `at` (epoch ms); `tell`: the server should look again. */
  readonly dueAt: (at: number, tell: boolean) => void;
  readonly emit: (event: QueueEvent) => void;
  /** Whether writes of this instance to the check are queued: they are ahead of any row read meanwhile. */
  readonly writing: (id: string) => boolean;
}

/**
 * The in-memory mirror of every check of the schema, which the CheckRegistry side answers from
 * synchronously, and its index of what runs here: the checks claimed (whose ids every claim leaves
 * alone), those removed while they ran, and stored checks this instance cannot read. Its times are
 * the instance's clock: the rows it takes were moved onto it where they were read (database-clock.ts).
 */
export class Mirror {
  readonly #me: string;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #parseCheck: ((raw: unknown) => ParseResult<CheckSpec>) | undefined;
  readonly #report: ReportError;
  readonly #dueAt: (at: number, tell: boolean) => void;
  readonly #emit: (event: QueueEvent) => void;
  readonly #writing: (id: string) => boolean;

  readonly #entries = new Map<string, Entry>();
  /** Ids of stored checks this instance cannot run, with the spec_rev that failed, so it is not read again. */
  readonly #unrunnable = new Map<string, number>();
  readonly #claimedIds = new Set<string>();
  /** Checks removed while running here, by their object: their completion only lets them go. */
  readonly #removedWhileClaimed = new Map<Check, Entry>();
  #lateClaims = 0;

  constructor(options: MirrorOptions) {
    this.#me = options.instanceId;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#parseCheck = options.parseCheck;
    this.#report = options.report;
    this.#dueAt = options.dueAt;
    this.#emit = options.emit;
    this.#writing = options.writing;
  }

  /** Known checks. */
  get size(): number {
    let size = 0;
    for (const entry of this.#entries.values()) if (!entry.removed) size++;
    return size;
  }

  /** Checks claimed here and not yet settled. */
  get claimedCount(): number {
    return this.#claimedIds.size;
  }

  /** Stored checks this instance cannot read. */
  get unrunnableCount(): number {
    return this.#unrunnable.size;
  }

  /** Regular runs claimed more than half an interval after their slot, counted for the nearest slot instead. */
  get lateClaims(): number {
    return this.#lateClaims;
  }

  /** The entry of a known check (not one removed while it runs here). */
  live(id: string): Entry | undefined {
    const entry = this.#entries.get(id);
    return entry && !entry.removed ? entry : undefined;
  }

  /** Is `entry` still the one the mirror holds for `id` (not removed, nor replaced by a new check of that id)? */
  holds(id: string, entry: Entry): boolean {
    return this.#entries.get(id) === entry;
  }

  /** Every entry, removed ones running here included. */
  entries(): IterableIterator<Entry> {
    return this.#entries.values();
  }

  /** Every known check, in no particular order. */
  list(): Check[] {
    const checks: Check[] = [];
    for (const entry of this.#entries.values()) if (!entry.removed) checks.push(entry.check);
    return checks;
  }

  /** `running` also for a check another instance holds a live lease on, as far as the mirror knows. */
  status(id: string): CheckStatus | undefined {
    const entry = this.live(id);
    if (!entry) return undefined;
    if (entry.claimed || this.leasedElsewhere(entry)) return 'running';
    return entry.done ? 'done' : 'waiting';
  }

  /** Holds a new check under its id (replacing one removed while it runs here). */
  add(check: Check, source: CheckSource, raw: unknown): Entry {
    const entry = newEntry(check, source, raw);
    this.#entries.set(check.spec.id, entry);
    return entry;
  }

  /** Does the mirror know the check at this spec revision? (A claimed row it does not must be read whole first.) */
  knows(id: string, specRev: number): boolean {
    return this.#entries.get(id)?.specRev === specRev;
  }

  /** The entry a claimed row may run as: known, not removed, not running here already. */
  claimable(id: string): Entry | undefined {
    const entry = this.#entries.get(id);
    return entry && !entry.removed && !entry.claimed ? entry : undefined;
  }

  /**
   * Takes a claimed row (its times on the instance's clock, moved by `offsetMs`) into its entry: the
   * row's state and schedule, the lease this instance holds now.
   *
   * A regular run (due at its slot) claimed more than half an interval after that slot runs for the
   * slot nearest to now instead, which may be a little ahead: its next run is an interval after that
   * one. Otherwise a late run (the first claims of a cluster starting up, the claim after a lease
   * expired, a loaded machine) would be followed a moment later by the next slot's, two runs within
   * one interval. Every run is then more than half an interval after the previous one.
   */
  markClaimed(entry: Entry, row: ClaimedRow, offsetMs: number): Check {
    const state = decodeState(row.state);
    if (entry.check.state === entry.persisted) entry.check.state = state;
    entry.persisted = state;
    let due = row.due ?? entry.check.dueAt;
    let slot = row.slot;
    const intervalMs = entry.check.spec.intervalMs;
    if (row.due === row.slot && intervalMs !== null && intervalMs > 0) {
      const lateMs = this.#clock.now() - slot;
      if (lateMs > intervalMs / 2) {
        slot = due = slot + Math.round(lateMs / intervalMs) * intervalMs;
        this.#lateClaims++;
      }
    }
    entry.check.dueAt = due;
    entry.check.slotAt = slot;
    entry.claimOffsetMs = offsetMs;
    entry.done = false;
    entry.version = entry.claimedVersion = row.version;
    entry.leaseOwner = this.#me;
    entry.leaseUntil = row.lease_until;
    entry.claimed = true;
    // The entry's own id, not the row's: a string from each claim's rows, kept in a Set that takes
    // and drops one per run, would be promoted to the old generation (see server/in-flight-runs.ts).
    this.#claimedIds.add(entry.check.spec.id);
    return entry.check;
  }

  /** The entry whose completion `check` is: claimed here, as this very object, and not completing yet. */
  completable(check: Check): Entry | undefined {
    const entry = this.#entries.get(check.spec.id);
    return entry && entry.check === check && entry.claimed && !entry.completing ? entry : undefined;
  }

  /**
   * Lets a check go that was removed while it ran here (its id may be taken by a new check meanwhile):
   * it is not put back. False when `check` is not one of those.
   */
  releaseRemoved(check: Check): boolean {
    const orphan = this.#removedWhileClaimed.get(check);
    if (!orphan) return false;
    this.settleClaim(orphan);
    if (this.#entries.get(check.spec.id) === orphan) this.#entries.delete(check.spec.id);
    return true;
  }

  /** The claim of `entry` ended: it no longer runs here. */
  settleClaim(entry: Entry): void {
    entry.claimed = false;
    entry.completing = false;
    const id = entry.check.spec.id;
    this.#removedWhileClaimed.delete(entry.check);
    // The id may already belong to a new check (removed and added again) that is running here too.
    if (this.#entries.get(id)?.claimed !== true) this.#claimedIds.delete(id);
  }

  /** A claim that ended without its completion written: the run's state is not the table's. */
  abandonClaim(entry: Entry): void {
    this.settleClaim(entry);
    entry.check.state = entry.persisted;
    entry.nextSpec = null;
  }

  /** Its completion was written: a check removed meanwhile leaves the mirror now. */
  completed(entry: Entry): void {
    this.settleClaim(entry);
    if (entry.removed && this.#entries.get(entry.check.spec.id) === entry) this.#entries.delete(entry.check.spec.id);
  }

  /** Its completion found the row gone (removed here or elsewhere while it ran): nothing to put back. */
  completedGone(entry: Entry): void {
    this.settleClaim(entry);
    const id = entry.check.spec.id;
    if (this.#entries.get(id) !== entry) return;
    this.#entries.delete(id);
    if (!entry.removed) this.#emit({ type: 'removed', checkId: id });
  }

  /** Out of the mirror; one running here stays (marked removed) until its run completes, even if its id is taken again. */
  drop(entry: Entry): void {
    if (entry.claimed) {
      entry.removed = true;
      this.#removedWhileClaimed.set(entry.check, entry);
    } else this.#entries.delete(entry.check.spec.id);
  }

  /** A check gone from the table: out of the mirror (one running here is dropped when its run completes). */
  forget(id: string): void {
    const entry = this.live(id);
    if (!entry) return;
    this.drop(entry);
    this.#emit({ type: 'removed', checkId: id });
  }

  /** Another instance holds a lease on it that has not expired, as far as the mirror knows. */
  leasedElsewhere(entry: Entry): boolean {
    return entry.leaseOwner !== null && entry.leaseOwner !== this.#me && (entry.leaseUntil ?? 0) > this.#clock.now();
  }

  /** Ids a claim leaves alone: those running here, and those this instance cannot read. */
  excluded(): string[] {
    return this.#unrunnable.size === 0 ? [...this.#claimedIds] : [...this.#claimedIds, ...this.#unrunnable.keys()];
  }

  /**
   * Does a row of the narrow scan (id, spec revision, version, update time) differ from the mirror, so
   * that it must be read in full? A row this instance could not read at that revision does not.
   */
  differs(row: { readonly id: string; readonly spec_rev: number; readonly version: number; readonly updated: number }): boolean {
    const entry = this.#entries.get(row.id);
    if (!entry) return this.#unrunnable.get(row.id) !== row.spec_rev;
    return entry.specRev !== row.spec_rev || entry.updatedAt !== row.updated || (!entry.claimed && entry.version !== row.version);
  }

  /** After a full scan: forgets the checks the table no longer has (unless a write of this instance is on its way). */
  forgetAllBut(seen: ReadonlySet<string>): void {
    for (const id of [...this.#entries.keys()]) if (!seen.has(id) && !this.#writing(id)) this.forget(id);
    for (const id of [...this.#unrunnable.keys()]) if (!seen.has(id)) this.#unrunnable.delete(id);
  }

  /** A row asked for by id was not in the table: forgotten, unless a write of this instance is on its way. */
  missing(id: string): void {
    if (!this.#writing(id)) this.forget(id);
  }

  /** The spec as stored, checked to be storable (or readable again from `raw`). Throws when it is not. */
  encodeForWrite(spec: CheckSpec, raw: unknown): Record<string, unknown> {
    const { json, lossless, problem } = encodeSpec(spec);
    if (!lossless && (raw === undefined || !this.#parseCheck)) {
      throw new TypeError(
        `check "${spec.id}" cannot be stored in PostgreSQL: its spec holds ${problem ?? 'a value'} that JSON cannot keep, ` +
          'and no source entry (with a parseCheck to read it again) was given',
      );
    }
    return json;
  }

  /** Takes what a write of this instance returned: the row's revision, version and schedule. */
  adoptWritten(entry: Entry, row: CheckRow): void {
    entry.specRev = row.spec_rev;
    entry.updatedAt = row.updated;
    if (!entry.claimed) {
      entry.version = row.version;
      entry.leaseOwner = row.lease_owner;
      entry.leaseUntil = row.lease_until;
    }
  }

  /** Takes the row's state and schedule into a check that is not running here. */
  adoptRowState(entry: Entry, row: CheckRow): void {
    const state = decodeState(row.state);
    if (entry.check.state === entry.persisted) entry.check.state = state;
    entry.persisted = state;
    entry.version = row.version;
    entry.leaseOwner = row.lease_owner;
    entry.leaseUntil = row.lease_until;
    entry.done = row.due === null;
    const before = entry.check.dueAt;
    if (row.due !== null) entry.check.dueAt = row.due;
    entry.check.slotAt = row.slot;
    // (Compared with the cached earliest time, not the mirror's: another instance may have run the check since.)
    if (row.due !== null && row.due !== before && row.lease_owner === null) this.#dueAt(row.due, true);
  }

  /** Brings the mirror in line with a row another instance (or an earlier start) wrote. */
  apply(row: CheckRow): void {
    // This instance's own writes to the check are ahead of the row: they settle it.
    if (this.#writing(row.id)) return;
    let entry = this.#entries.get(row.id);
    let spec: CheckSpec | undefined;
    if (!entry || entry.specRev !== row.spec_rev) {
      if (this.#unrunnable.get(row.id) === row.spec_rev) return;
      spec = this.#decode(row);
      if (!spec) {
        if (entry) this.forget(row.id);
        return;
      }
      this.#unrunnable.delete(row.id);
    }
    if (!entry) {
      const state = decodeState(row.state);
      entry = newEntry({ spec: spec as CheckSpec, state, dueAt: row.due ?? row.slot, slotAt: row.slot }, row.source, row.source_entry ?? undefined);
      entry.specRev = row.spec_rev;
      entry.version = row.version;
      entry.updatedAt = row.updated;
      entry.done = row.due === null;
      entry.leaseOwner = row.lease_owner;
      entry.leaseUntil = row.lease_until;
      this.#entries.set(row.id, entry);
      if (row.due !== null) this.#dueAt(row.due, true);
      return;
    }
    if (spec) {
      entry.specRev = row.spec_rev;
      entry.raw = row.source_entry ?? undefined;
      entry.source = row.source;
      if (entry.claimed) entry.nextSpec = spec;
      else {
        const intervalChanged = entry.check.spec.intervalMs !== spec.intervalMs;
        entry.check.spec = spec;
        if (intervalChanged) this.#emit({ type: 'due-earlier' });
      }
    }
    entry.updatedAt = row.updated;
    if (entry.claimed) {
      // Running here. Only a state written meanwhile by another instance (an acknowledgement there) is
      // taken, so that this run builds on it.
      if (row.lease_owner === this.#me && row.version === entry.claimedVersion && !isDeepStrictEqual(row.state, plain(entry.persisted))) {
        const state = decodeState(row.state);
        entry.check.state = state;
        entry.persisted = state;
      }
      return;
    }
    this.adoptRowState(entry, row);
  }

  /** The spec of a stored row: its stored spec, or its source entry parsed again; undefined (and noted) when neither works. */
  #decode(row: CheckRow): CheckSpec | undefined {
    let problem: string;
    try {
      return decodeSpec(row.spec);
    } catch (error) {
      problem = errorMessage(error);
    }
    if (row.source_entry !== null && row.source_entry !== undefined && this.#parseCheck) {
      try {
        const parsed = this.#parseCheck(row.source_entry);
        if (parsed.ok && parsed.value.id === row.id) return parsed.value;
        problem = parsed.ok ? `its source entry has id "${parsed.value.id}"` : parsed.issues.map((issue) => `${issue.path.join('.') || '(entry)'}: ${issue.message}`).join('; ');
      } catch (error) {
        problem = errorMessage(error);
      }
    }
    if (this.#unrunnable.get(row.id) !== row.spec_rev) {
      this.#logger.error({ checkId: row.id, problem }, `check "${row.id}" in PostgreSQL cannot be run by this instance: ${problem}`);
      this.#report(new Error(`check "${row.id}" cannot be read: ${problem}`), 'decode', row.id);
    }
    this.#unrunnable.set(row.id, row.spec_rev);
    return undefined;
  }
}

function newEntry(check: Check, source: CheckSource, raw: unknown): Entry {
  return {
    check,
    source,
    raw,
    specRev: 0,
    version: 0,
    updatedAt: 0,
    persisted: check.state,
    done: false,
    leaseOwner: null,
    leaseUntil: null,
    claimed: false,
    completing: false,
    claimedVersion: 0,
    claimOffsetMs: 0,
    removed: false,
    nextSpec: null,
  };
}
