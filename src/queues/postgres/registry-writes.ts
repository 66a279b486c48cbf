import type pg from 'pg';
import type { Logger } from 'pino';
import { initialCheckState, type Check, type CheckSpec, type CheckState } from '../../checks/check.js';
import { firstDueAt } from '../../checks/schedule.js';
import type { Clock } from '../../core/clock.js';
import type { QueueEvent } from '../queue.js';
import { LEASE_FREE, ROW_COLUMNS, timeoutOf, type CheckRow, type CheckSource } from './check-rows.js';
import { toJson } from './codec.js';
import type { DatabaseClock } from './database-clock.js';
import { incidentChanges } from './completions.js';
import type { Entry, Mirror } from './mirror.js';
import { incidentResolve, incidentUpsert } from './statements.js';
import type { WriteChains } from './write-chains.js';

/** How often the mirror is searched for states the server changed on a check object directly, in ms. */
const DIRTY_SCAN_MS = 200;

/** How `add`/`update`/`upsert` store a check besides its spec. */
export interface RegistryWriteOptions {
  /** The entry the spec was parsed from (config or API entry), stored as `source_entry`. */
  readonly raw?: unknown;
  /** Default `api` when `raw` is given, else `runtime` (a check a command attached). */
  readonly source?: CheckSource;
}

export interface RegistryWritesOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly mirror: Mirror;
  readonly writes: WriteChains;
  /** The table's times are the database's clock: what is written and read is moved by its offset. */
  readonly time: DatabaseClock;
  /** The quoted `checks` and `incidents` tables. */
  readonly checksTable: string;
  readonly incidentsTable: string;
  /** Something may be due at `at` (epoch ms); `tell`: the server should look again. */
  readonly dueAt: (at: number, tell: boolean) => void;
  readonly emit: (event: QueueEvent) => void;
}

/**
 * The CheckRegistry's writes: each changes the mirror at once (so the registry stays synchronous) and
 * queues the statement that makes the table agree, whose answer the mirror takes after COMMIT. A
 * periodic scan also writes states the server changed on a mirror object without a registry call.
 */
export class RegistryWrites {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #mirror: Mirror;
  readonly #writes: WriteChains;
  readonly #time: DatabaseClock;
  readonly #checks: string;
  readonly #incidents: string;
  readonly #dueAt: (at: number, tell: boolean) => void;
  readonly #emit: (event: QueueEvent) => void;
  #scanTimer: unknown = null;

  constructor(options: RegistryWritesOptions) {
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#mirror = options.mirror;
    this.#writes = options.writes;
    this.#time = options.time;
    this.#checks = options.checksTable;
    this.#incidents = options.incidentsTable;
    this.#dueAt = options.dueAt;
    this.#emit = options.emit;
  }

  /** Adds a check, first due at its spread slot. Throws when the id is known or the spec cannot be stored. */
  add(spec: CheckSpec, options: RegistryWriteOptions = {}): Check {
    if (this.#mirror.live(spec.id)) throw new Error(`check "${spec.id}" already exists`);
    const encoded = this.#mirror.encodeForWrite(spec, options.raw);
    const source = options.source ?? (options.raw === undefined ? 'runtime' : 'api');
    const dueAt = firstDueAt(spec.id, spec.intervalMs, this.#clock.now());
    const check: Check = { spec, state: initialCheckState, dueAt, slotAt: dueAt };
    const entry = this.#mirror.add(check, source, options.raw);
    this.#dueAt(dueAt, true);
    const params = [spec.id, toJson(encoded), options.raw === undefined ? null : toJson(options.raw), source, timeoutOf(spec), this.#time.toDatabase(dueAt), toJson(initialCheckState)];
    this.#writes.enqueue(spec.id, 'add', async (client) => {
      const { rows } = await client.query<CheckRow & { inserted: boolean }>(
        `INSERT INTO ${this.#checks} AS c (id, spec, source_entry, source, timeout_ms, next_due_at, slot_at, state)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000), to_timestamp($6::float8 / 1000), $7)
         ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, source_entry = EXCLUDED.source_entry, source = EXCLUDED.source,
           timeout_ms = EXCLUDED.timeout_ms, spec_rev = c.spec_rev + 1, updated_at = now()
         RETURNING ${ROW_COLUMNS}, (xmax = 0) AS inserted`,
        params,
      );
      return () => {
        const row = this.#local(rows[0]);
        if (!row || !this.#mirror.holds(spec.id, entry)) return;
        this.#mirror.adoptWritten(entry, row);
        // The id was in the table already (another instance added it): its state and schedule stand.
        if (!row.inserted && !entry.claimed) this.#mirror.adoptRowState(entry, row);
        // Claimable only now that it is committed: look again (a look before COMMIT found nothing).
        if (row.due !== null) this.#dueAt(row.due, true);
      };
    });
    return check;
  }

  /**
   * Replaces a check's spec, keeping its state. A waiting check whose interval changed moves to its new
   * grid; one running here takes the new spec when its run completes. Throws for an unknown id.
   */
  update(spec: CheckSpec, options: RegistryWriteOptions = {}): void {
    const entry = this.#mirror.live(spec.id);
    if (!entry) throw new Error(`check "${spec.id}" does not exist`);
    const encoded = this.#mirror.encodeForWrite(spec, options.raw);
    entry.raw = options.raw;
    if (options.source) entry.source = options.source;
    let regrid: number | null = null;
    if (entry.claimed) entry.nextSpec = spec;
    else {
      const previous = entry.check.spec;
      entry.check.spec = spec;
      if (previous.intervalMs !== spec.intervalMs || entry.done) {
        regrid = entry.check.dueAt = entry.check.slotAt = firstDueAt(spec.id, spec.intervalMs, this.#clock.now());
        entry.done = false;
        this.#dueAt(regrid, true);
      }
    }
    const params = [spec.id, toJson(encoded), options.raw === undefined ? null : toJson(options.raw), timeoutOf(spec), regrid === null ? null : this.#time.toDatabase(regrid), options.source ?? null];
    this.#writes.enqueue(spec.id, 'update', async (client) => {
      const { rows } = await client.query<CheckRow>(
        `UPDATE ${this.#checks} SET spec = $2, source_entry = $3, timeout_ms = $4, spec_rev = spec_rev + 1, updated_at = now(),
           source = coalesce($6, source),
           next_due_at = CASE WHEN $5::float8 IS NOT NULL AND ${LEASE_FREE} THEN to_timestamp($5::float8 / 1000) ELSE next_due_at END,
           slot_at = CASE WHEN $5::float8 IS NOT NULL AND ${LEASE_FREE} THEN to_timestamp($5::float8 / 1000) ELSE slot_at END
         WHERE id = $1
         RETURNING ${ROW_COLUMNS}`,
        params,
      );
      return () => {
        const row = this.#local(rows[0]);
        if (row && this.#mirror.holds(spec.id, entry)) this.#mirror.adoptWritten(entry, row);
        if (!row) this.#logger.warn({ checkId: spec.id }, 'check updated here was already gone from PostgreSQL');
        else if (regrid !== null && row.due !== null) this.#dueAt(row.due, true);
      };
    });
  }

  /** Removes a check everywhere; one running here finishes its run and is not put back. False for an unknown id. */
  remove(id: string): boolean {
    const entry = this.#mirror.live(id);
    if (!entry) return false;
    this.#mirror.drop(entry);
    this.#emit({ type: 'removed', checkId: id });
    this.#writes.enqueue(id, 'remove', async (client) => {
      await client.query(`DELETE FROM ${this.#checks} WHERE id = $1`, [id]);
      return undefined;
    });
    return true;
  }

  /** Makes a check due at `dueAt` (epoch ms). False when it is unknown or running, here or (as far as known) elsewhere. */
  reschedule(id: string, dueAt: number): boolean {
    const entry = this.#mirror.live(id);
    if (!entry || entry.claimed || this.#mirror.leasedElsewhere(entry)) return false;
    entry.check.dueAt = dueAt;
    entry.done = false;
    this.#dueAt(dueAt, true);
    this.#writes.enqueue(id, 'reschedule', async (client) => {
      const { rows } = await client.query<CheckRow>(
        `UPDATE ${this.#checks} SET next_due_at = to_timestamp($2::float8 / 1000), updated_at = now() WHERE id = $1 AND ${LEASE_FREE} RETURNING ${ROW_COLUMNS}`,
        [id, this.#time.toDatabase(dueAt)],
      );
      return () => {
        const row = this.#local(rows[0]);
        if (!row || !this.#mirror.holds(id, entry)) return;
        this.#mirror.adoptWritten(entry, row);
        // "Run now" is due only once committed: look again (a look before COMMIT found the old time).
        if (row.due !== null) this.#dueAt(row.due, true);
      };
    });
    return true;
  }

  /** Replaces a check's runtime state (an acknowledgement, a restored state). False for an unknown id. */
  setState(id: string, state: CheckState): boolean {
    const entry = this.#mirror.live(id);
    if (!entry) return false;
    entry.check.state = state;
    // A check running here writes its state with its completion.
    if (!entry.claimed) this.#writeState(entry);
    return true;
  }

  /** Scans for changed states every `DIRTY_SCAN_MS` until `stopScanning`. */
  startScanning(): void {
    this.#scanTimer = this.#clock.setTimeout(this.#onScanTimer, DIRTY_SCAN_MS);
  }

  stopScanning(): void {
    if (this.#scanTimer !== null) this.#clock.clearTimeout(this.#scanTimer);
    this.#scanTimer = null;
  }

  /** Writes states changed in the mirror without a registry call (the server's acknowledge and submit do that). */
  scanDirty(): void {
    for (const entry of this.#mirror.entries()) {
      if (entry.claimed || entry.removed || entry.check.state === entry.persisted || this.#writes.has(entry.check.spec.id)) continue;
      this.#writeState(entry);
    }
  }

  /** A re-armed timeout rather than an interval: the Clock has none. */
  readonly #onScanTimer = (): void => {
    this.#scanTimer = this.#clock.setTimeout(this.#onScanTimer, DIRTY_SCAN_MS);
    this.scanDirty();
  };

  #writeState(entry: Entry): void {
    const id = entry.check.spec.id;
    const state = entry.check.state;
    this.#writes.enqueue(id, 'state', async (client) => {
      const previous = entry.persisted;
      const { rows } = await client.query<CheckRow>(`UPDATE ${this.#checks} SET state = $2, updated_at = now() WHERE id = $1 RETURNING ${ROW_COLUMNS}`, [id, toJson(state)]);
      if (rows.length > 0) await this.#writeIncidents(client, [{ previous, state }]);
      return () => {
        const row = this.#local(rows[0]);
        if (!row || !this.#mirror.holds(id, entry)) return;
        entry.persisted = state;
        this.#mirror.adoptWritten(entry, row);
      };
    });
  }

  /** A row a write returned, on the instance's clock. */
  #local<T extends CheckRow>(row: T | undefined): T | undefined {
    return row && this.#time.onInstanceClock(row);
  }

  /** Opens, updates and resolves incident rows for state changes (previous → state), in `client`'s transaction. */
  async #writeIncidents(client: pg.PoolClient, changes: readonly { previous: CheckState; state: CheckState }[]): Promise<void> {
    const { upserts, resolves } = incidentChanges(changes, this.#clock.now());
    if (upserts.length > 0) await client.query(incidentUpsert(this.#incidents, 'jsonb_array_elements($1::jsonb) AS d'), [toJson(upserts)]);
    if (resolves.length > 0) await client.query(incidentResolve(this.#incidents, 'jsonb_to_recordset($1::jsonb) AS r(id text, at float8)'), [toJson(resolves)]);
  }
}
