import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import type { Logger } from 'pino';
import { initialCheckState, type Check, type CheckSpec, type CheckState } from '../../checks/check.js';
import { firstDueAt } from '../../checks/schedule.js';
import type { ParseResult } from '../../commands/command.js';
import type { CheckRegistry, CheckStatus } from '../../checks/check-registry.js';
import { decodeSpec, decodeState, encodeSpec, plain, toJson } from './codec.js';
import { CompletionDroppedError, isTransient, LeaseLostError } from './errors.js';
import { DEFAULT_SCHEMA } from '../../postgres/migrations.js';
import { findHolders, incidentChanges, writeCompletions } from './completions.js';
import { incidentResolve, incidentUpsert, queueStatements, type ClaimedRow, type CompletionRow, type HolderRow, type QueueStatements, type WrittenRow } from './statements.js';
import type { Queue, QueueEvent } from '../queue.js';

/**
 * The queue many vigil instances share through one PostgreSQL schema (tables from
 * postgres-migrations.ts). A check is leased, not owned: `claim` takes due rows with
 * `FOR UPDATE SKIP LOCKED` and leases them for about twice their timeout; `complete` writes the run's
 * state and next due time only while the lease is still this instance's (compare-and-set on the row's
 * version), and opens, updates and resolves incident rows in the same transaction, so N instances
 * raise one incident per outage. A crashed instance's leases simply expire.
 *
 * The CheckRegistry side is synchronous: a mirror of every check, loaded at `start()`, kept current by
 * LISTEN/NOTIFY and a periodic refresh; registry writes change the mirror at once and reach the
 * database in the background (one after the other per check), then notify the other instances.
 */

/** Where a check came from: the config file (its source of truth), the HTTP API, or a command at runtime. */
export const CheckSources = ['config', 'api', 'runtime'] as const;
export type CheckSource = (typeof CheckSources)[number];

export { decodeSpec, encodeSpec } from './codec.js';
export { CompletionDroppedError, isTransient, LeaseLostError } from './errors.js';

export interface PostgresQueueOptions {
  /** The pool the queue queries through; the caller owns it (the queue never ends it). One connection is held for LISTEN. */
  readonly pool: pg.Pool;
  /** The schema migrate() prepared; default `vigil`. */
  readonly schema?: string;
  /** This instance's id: the lease owner of the checks it claims. Unique among the instances sharing the schema. */
  readonly instanceId: string;
  /**
   * Parses a stored source entry (a config or API check entry) into a spec. Used when a stored spec holds
   * attributes JSON cannot keep exactly (see `encodeSpec`); the daemon passes its `parseCheckSpec`.
   */
  readonly parseCheck?: (raw: unknown) => ParseResult<CheckSpec>;
  readonly logger: Logger;
  /** Told about every failure the queue handles itself (database away, a write that failed), besides the log. */
  readonly onError?: (error: unknown, context: { readonly operation: string; readonly checkId?: string }) => void;
  /** The longest the server sleeps without looking at the database (the fallback to LISTEN/NOTIFY), in ms; default 2 000. */
  readonly pollIntervalMs?: number;
  /** How often the mirror is compared with the table (changes other instances made without notifying), in ms; default 10 000. */
  readonly refreshIntervalMs?: number;
  /** A claim leases a check for `leaseFactor × timeout + leaseMarginMs`; default 2. */
  readonly leaseFactor?: number;
  /** Added to every lease, for handlers and the completion's own write, in ms; default 1 000. */
  readonly leaseMarginMs?: number;
  /** Completions wait this long to be written together, in ms; default 5. */
  readonly flushDelayMs?: number;
  /** Completions written in one statement at most; default 200. */
  readonly flushBatchSize?: number;
  /** Completions kept while the database is away; beyond it the oldest are dropped (and counted). Default 10 000. */
  readonly maxBufferedCompletions?: number;
  /** Epoch milliseconds now; default `Date.now`. */
  readonly now?: () => number;
}

/** How `add`/`update`/`upsert` store a check besides its spec. */
export interface RegistryWriteOptions {
  /** The entry the spec was parsed from (config or API entry), stored as `source_entry`. */
  readonly raw?: unknown;
  /** Default `api` when `raw` is given, else `runtime` (a check a command attached). */
  readonly source?: CheckSource;
}

/** A check of the config file, for `syncConfigChecks`. */
export interface ConfigCheck {
  readonly spec: CheckSpec;
  /** The file's entry for it (after `${ENV}` substitution). */
  readonly raw?: unknown;
}

/** Counters since start, for metrics and `/healthz`. */
export interface PostgresQueueStats {
  /** Checks known (the mirror). */
  readonly checks: number;
  /** Checks this instance runs now (claimed, not yet completed). */
  readonly claimed: number;
  /** Completions waiting to be written. */
  readonly bufferedCompletions: number;
  /** Completions dropped because the buffer was full or the queue closed. */
  readonly droppedCompletions: number;
  /** Completions refused because the lease had been lost. */
  readonly leasesLost: number;
  /** Registry writes that failed for good. */
  readonly writeErrors: number;
  /** Stored checks this instance cannot run (their spec could not be read). */
  readonly unrunnable: number;
  /** False while the database is unreachable. */
  readonly healthy: boolean;
  /** Claim statements sent (each claims a batch). */
  readonly claimQueries: number;
  /** Completion batches written (each one transaction). */
  readonly completionBatches: number;
}

/** The NOTIFY channel of a schema: short and free of quoting trouble whatever the schema is called. */
export function notifyChannel(schema: string): string {
  return `vigil_${createHash('sha256').update(schema).digest('hex').slice(0, 24)}`;
}

interface Entry {
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
  leaseUntil: number | null;
  /** Claimed by this instance and not yet settled. */
  claimed: boolean;
  /** Its completion is buffered or being written. */
  completing: boolean;
  /** The version the claim saw: the completion's compare-and-set value. */
  claimedVersion: number;
  /** Removed while claimed here: dropped when its run completes. */
  removed: boolean;
  /** Updated while claimed here: the spec its next run uses. */
  nextSpec: CheckSpec | null;
}

interface PendingCompletion {
  /** Resolved or rejected: never written again. */
  settled: boolean;
  readonly entry: Entry;
  readonly id: string;
  readonly version: number;
  readonly state: CheckState;
  readonly previous: CheckState;
  readonly due: number | null;
  readonly slot: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** A row of `checks` as the queue reads it; times in epoch ms. */
interface CheckRow {
  id: string;
  spec: unknown;
  source_entry: unknown;
  source: CheckSource;
  spec_rev: number;
  version: number;
  state: unknown;
  due: number | null;
  slot: number;
  lease_owner: string | null;
  lease_until: number | null;
  updated: number;
}

const ROW_COLUMNS = `id, spec, source_entry, source, spec_rev::float8 AS spec_rev, version::float8 AS version, state,
  (extract(epoch FROM next_due_at) * 1000)::float8 AS due, (extract(epoch FROM slot_at) * 1000)::float8 AS slot,
  lease_owner, (extract(epoch FROM lease_until) * 1000)::float8 AS lease_until, (extract(epoch FROM updated_at) * 1000)::float8 AS updated`;

/** A claim or nextDueAt that finds due work it cannot take looks again this much later, in ms (never a busy loop). */
const RETRY_SOON_MS = 25;
const MAX_BACKOFF_MS = 10_000;
const DIRTY_SCAN_MS = 200;
const FETCH_CHUNK = 1_000;
/** First key of the advisory lock config syncs take: "vigc". */
const SYNC_LOCK = 0x76696763;

type Phase = 'new' | 'started' | 'closing' | 'closed';

export class PostgresQueue implements Queue, CheckRegistry {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #checks: string;
  readonly #incidents: string;
  readonly #me: string;
  readonly #parseCheck: ((raw: unknown) => ParseResult<CheckSpec>) | undefined;
  readonly #logger: Logger;
  readonly #onError: PostgresQueueOptions['onError'];
  readonly #pollIntervalMs: number;
  readonly #refreshIntervalMs: number;
  readonly #leaseFactor: number;
  readonly #leaseMarginMs: number;
  readonly #flushDelayMs: number;
  readonly #flushBatchSize: number;
  readonly #maxBuffered: number;
  readonly #now: () => number;
  readonly #channel: string;
  readonly #statements: QueueStatements;

  readonly #entries = new Map<string, Entry>();
  /** Ids of stored checks this instance cannot run, with the spec_rev that failed, so it is not read again. */
  readonly #unrunnable = new Map<string, number>();
  readonly #claimedIds = new Set<string>();
  /** Checks removed while running here, by their object: their completion only lets them go. */
  readonly #removedWhileClaimed = new Map<Check, Entry>();
  readonly #listeners = new Set<(event: QueueEvent) => void>();
  /** Registry writes per check, one after the other; the count says a write is queued or running. */
  readonly #chains = new Map<string, Promise<void>>();
  readonly #pendingWrites = new Map<string, number>();
  readonly #buffer: PendingCompletion[] = [];

  #phase: Phase = 'new';
  #closed: Promise<void> | null = null;
  #flushTimer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> | null = null;
  #refreshTimer: NodeJS.Timeout | null = null;
  #scanTimer: NodeJS.Timeout | null = null;
  #refreshing: Promise<void> | null = null;
  #reloadTimer: NodeJS.Timeout | null = null;
  readonly #reloadIds = new Set<string>();
  #reloadAll = false;
  #listenClient: pg.PoolClient | null = null;
  #listenTimer: NodeJS.Timeout | null = null;
  #listenBackoffMs = 0;

  /** The earliest due time the database gave (`null`: none), valid until `#nextUntil` or the next claim. */
  #nextKnown = false;
  #nextAt: number | null = null;
  #nextUntil = 0;

  #healthy = true;
  #backoffMs = 0;
  #retryAt = 0;

  #dropped = 0;
  #claimQueries = 0;
  #completionBatches = 0;
  #leasesLost = 0;
  #writeErrors = 0;

  constructor(options: PostgresQueueOptions) {
    this.#pool = options.pool;
    this.#schema = options.schema ?? DEFAULT_SCHEMA;
    const schema = pg.escapeIdentifier(this.#schema);
    this.#checks = `${schema}.checks`;
    this.#incidents = `${schema}.incidents`;
    if (typeof options.instanceId !== 'string' || options.instanceId === '') {
      throw new TypeError(`Expected \`instanceId\` to be a non-empty string, got \`${String(options.instanceId)}\``);
    }
    this.#me = options.instanceId;
    this.#parseCheck = options.parseCheck;
    this.#logger = options.logger;
    this.#onError = options.onError;
    this.#pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs, 2_000);
    this.#refreshIntervalMs = positive('refreshIntervalMs', options.refreshIntervalMs, 10_000);
    this.#leaseFactor = positive('leaseFactor', options.leaseFactor, 2);
    this.#leaseMarginMs = nonNegative('leaseMarginMs', options.leaseMarginMs, 1_000);
    this.#flushDelayMs = nonNegative('flushDelayMs', options.flushDelayMs, 5);
    this.#flushBatchSize = positive('flushBatchSize', options.flushBatchSize, 200);
    this.#maxBuffered = positive('maxBufferedCompletions', options.maxBufferedCompletions, 10_000);
    this.#now = options.now ?? Date.now;
    this.#channel = notifyChannel(this.#schema);
    this.#statements = queueStatements(this.#schema);
  }

  /** This instance's id, the lease owner of what it claims. */
  get instanceId(): string {
    return this.#me;
  }

  get schema(): string {
    return this.#schema;
  }

  /** Known checks (the mirror). */
  get size(): number {
    let size = 0;
    for (const entry of this.#entries.values()) if (!entry.removed) size++;
    return size;
  }

  get stats(): PostgresQueueStats {
    return {
      checks: this.size,
      claimed: this.#claimedIds.size,
      bufferedCompletions: this.#buffer.length,
      droppedCompletions: this.#dropped,
      leasesLost: this.#leasesLost,
      writeErrors: this.#writeErrors,
      unrunnable: this.#unrunnable.size,
      healthy: this.#healthy,
      claimQueries: this.#claimQueries,
      completionBatches: this.#completionBatches,
    };
  }

  /**
   * Loads every check into the mirror, frees the leases an earlier run of this instance left behind,
   * starts listening for changes and the periodic refresh. Call once, before the server starts;
   * rejects when the database cannot be reached.
   */
  async start(): Promise<void> {
    if (this.#phase !== 'new') throw new Error('PostgresQueue.start() can be called once');
    this.#phase = 'started';
    this.#pool.on('error', this.#onPoolError);
    try {
      // This instance runs nothing yet: what it still holds is from a run that crashed.
      await this.#pool.query(`UPDATE ${this.#checks} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, [this.#me]);
      await this.#refresh();
      await this.#listen();
    } catch (error) {
      await this.close({ abandon: true });
      throw error;
    }
    this.#refreshTimer = setInterval(() => this.#refreshInBackground(), this.#refreshIntervalMs);
    this.#refreshTimer.unref();
    this.#scanTimer = setInterval(() => this.#scanDirty(), DIRTY_SCAN_MS);
    this.#scanTimer.unref();
  }

  /**
   * Makes the config file's checks the `config` checks of the schema: adds the new ones, replaces
   * changed specs (keeping state; a new interval moves the check to its new grid), removes `config`
   * checks the file no longer has. Checks from the API or commands are left alone, unless the file now
   * names their id (the file wins). Instances starting together take turns. Refreshes the mirror.
   */
  async syncConfigChecks(checks: readonly ConfigCheck[]): Promise<{ added: number; updated: number; removed: number }> {
    const now = this.#now();
    const items = checks
      .map(({ spec, raw }) => ({
        id: spec.id,
        spec: this.#encodeForWrite(spec, raw),
        source_entry: raw === undefined ? null : raw,
        timeout_ms: Math.max(1, Math.ceil(spec.timeoutMs)),
        due: firstDueAt(spec.id, spec.intervalMs, now),
      }))
      .sort((a, b) => compare(a.id, b.id));
    const result = await this.#transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [SYNC_LOCK, this.#schema]);
      const upserted = await client.query<{ inserted: boolean }>(
        `INSERT INTO ${this.#checks} AS c (id, spec, source_entry, source, timeout_ms, next_due_at, slot_at, state)
         SELECT v.id, v.spec, v.source_entry, 'config', v.timeout_ms, to_timestamp(v.due / 1000), to_timestamp(v.due / 1000), $2::jsonb
         FROM jsonb_to_recordset($1::jsonb) AS v(id text, spec jsonb, source_entry jsonb, timeout_ms integer, due float8)
         ORDER BY v.id
         ON CONFLICT (id) DO UPDATE SET
           spec = EXCLUDED.spec, source_entry = EXCLUDED.source_entry, source = 'config', timeout_ms = EXCLUDED.timeout_ms,
           spec_rev = c.spec_rev + 1, updated_at = now(),
           next_due_at = CASE WHEN ${REGRID} THEN EXCLUDED.next_due_at ELSE c.next_due_at END,
           slot_at = CASE WHEN ${REGRID} THEN EXCLUDED.slot_at ELSE c.slot_at END
         WHERE c.spec IS DISTINCT FROM EXCLUDED.spec OR c.source_entry IS DISTINCT FROM EXCLUDED.source_entry OR c.source <> 'config'
         RETURNING (xmax = 0) AS inserted`,
        [toJson(items), toJson(initialCheckState)],
      );
      const removed = await client.query(`DELETE FROM ${this.#checks} WHERE source = 'config' AND NOT (id = ANY($1::text[]))`, [items.map((item) => item.id)]);
      const added = upserted.rows.filter((row) => row.inserted).length;
      const counts = { added, updated: upserted.rows.length - added, removed: removed.rowCount ?? 0 };
      if (counts.added + counts.updated + counts.removed > 0) await this.#notify(client, { all: true });
      return counts;
    });
    await this.#refresh();
    this.#emit({ type: 'due-earlier' });
    return result;
  }

  // ---- CheckRegistry ----

  get(id: string): Check | undefined {
    const entry = this.#entries.get(id);
    return entry && !entry.removed ? entry.check : undefined;
  }

  /** Every known check, in no particular order. */
  list(): Check[] {
    const checks: Check[] = [];
    for (const entry of this.#entries.values()) if (!entry.removed) checks.push(entry.check);
    return checks;
  }

  /** `running` also for a check another instance holds a live lease on, as far as the mirror knows. */
  status(id: string): CheckStatus | undefined {
    const entry = this.#entries.get(id);
    if (!entry || entry.removed) return undefined;
    if (entry.claimed || this.#leasedElsewhere(entry)) return 'running';
    return entry.done ? 'done' : 'waiting';
  }

  /**
   * Adds a check (first run spread across its interval) to the mirror at once and to the table in the
   * background. Throws when the id is known, or when the spec cannot be stored (see `encodeSpec`).
   */
  add(spec: CheckSpec, options: RegistryWriteOptions = {}): Check {
    if (this.#entries.get(spec.id)?.removed === false) throw new Error(`check "${spec.id}" already exists`);
    const encoded = this.#encodeForWrite(spec, options.raw);
    const source = options.source ?? (options.raw === undefined ? 'runtime' : 'api');
    const dueAt = firstDueAt(spec.id, spec.intervalMs, this.#now());
    const check: Check = { spec, state: initialCheckState, dueAt, slotAt: dueAt };
    const entry = this.#newEntry(check, source, options.raw);
    this.#entries.set(spec.id, entry);
    this.#lowerNext(dueAt, true);
    const params = [spec.id, toJson(encoded), options.raw === undefined ? null : toJson(options.raw), source, timeoutOf(spec), dueAt, toJson(initialCheckState)];
    this.#enqueueWrite(spec.id, 'add', async (client) => {
      const { rows } = await client.query<CheckRow & { inserted: boolean }>(
        `INSERT INTO ${this.#checks} AS c (id, spec, source_entry, source, timeout_ms, next_due_at, slot_at, state)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000), to_timestamp($6::float8 / 1000), $7)
         ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, source_entry = EXCLUDED.source_entry, source = EXCLUDED.source,
           timeout_ms = EXCLUDED.timeout_ms, spec_rev = c.spec_rev + 1, updated_at = now()
         RETURNING ${ROW_COLUMNS}, (xmax = 0) AS inserted`,
        params,
      );
      return () => {
        const row = rows[0];
        if (!row || this.#entries.get(spec.id) !== entry) return;
        this.#adoptWritten(entry, row);
        // The id was in the table already (another instance added it): its state and schedule stand.
        if (!row.inserted && !entry.claimed) this.#adoptRowState(entry, row);
        // Claimable only now that it is committed: look again (a look before COMMIT found nothing).
        if (row.due !== null) this.#lowerNext(row.due, true);
      };
    });
    return check;
  }

  /**
   * Replaces a check's spec, keeping its state. A waiting check whose interval changed moves to its new
   * grid; one running here takes the new spec when its run completes. Throws for an unknown id.
   */
  update(spec: CheckSpec, options: RegistryWriteOptions = {}): void {
    const entry = this.#entries.get(spec.id);
    if (!entry || entry.removed) throw new Error(`check "${spec.id}" does not exist`);
    const encoded = this.#encodeForWrite(spec, options.raw);
    entry.raw = options.raw;
    if (options.source) entry.source = options.source;
    let regrid: number | null = null;
    if (entry.claimed) entry.nextSpec = spec;
    else {
      const previous = entry.check.spec;
      entry.check.spec = spec;
      if (previous.intervalMs !== spec.intervalMs || entry.done) {
        regrid = entry.check.dueAt = entry.check.slotAt = firstDueAt(spec.id, spec.intervalMs, this.#now());
        entry.done = false;
        this.#lowerNext(regrid, true);
      }
    }
    const params = [spec.id, toJson(encoded), options.raw === undefined ? null : toJson(options.raw), timeoutOf(spec), regrid, options.source ?? null];
    this.#enqueueWrite(spec.id, 'update', async (client) => {
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
        const row = rows[0];
        if (row && this.#entries.get(spec.id) === entry) this.#adoptWritten(entry, row);
        if (!row) this.#logger.warn({ checkId: spec.id }, 'check updated here was already gone from PostgreSQL');
        else if (regrid !== null && row.due !== null) this.#lowerNext(row.due, true);
      };
    });
  }

  /** Adds the check, or updates it when the id is known. */
  upsert(spec: CheckSpec, options: RegistryWriteOptions = {}): void {
    const entry = this.#entries.get(spec.id);
    if (entry && !entry.removed) this.update(spec, options);
    else this.add(spec, options);
  }

  /** Removes a check everywhere; one running here finishes its run and is not put back. False for an unknown id. */
  remove(id: string): boolean {
    const entry = this.#entries.get(id);
    if (!entry || entry.removed) return false;
    this.#dropEntry(entry);
    this.#emit({ type: 'removed', checkId: id });
    this.#enqueueWrite(id, 'remove', async (client) => {
      await client.query(`DELETE FROM ${this.#checks} WHERE id = $1`, [id]);
      return undefined;
    });
    return true;
  }

  /**
   * Makes a check due at `dueAt` (default now), e.g. to run it at once. False when it is unknown or
   * running (here, or on another instance as far as the mirror knows).
   */
  reschedule(id: string, dueAt: number = this.#now()): boolean {
    const entry = this.#entries.get(id);
    if (!entry || entry.removed || entry.claimed || this.#leasedElsewhere(entry)) return false;
    entry.check.dueAt = dueAt;
    entry.done = false;
    this.#lowerNext(dueAt, true);
    this.#enqueueWrite(id, 'reschedule', async (client) => {
      const { rows } = await client.query<CheckRow>(
        `UPDATE ${this.#checks} SET next_due_at = to_timestamp($2::float8 / 1000), updated_at = now() WHERE id = $1 AND ${LEASE_FREE} RETURNING ${ROW_COLUMNS}`,
        [id, dueAt],
      );
      return () => {
        const row = rows[0];
        if (!row || this.#entries.get(id) !== entry) return;
        this.#adoptWritten(entry, row);
        // "Run now" is due only once committed: look again (a look before COMMIT found the old time).
        if (row.due !== null) this.#lowerNext(row.due, true);
      };
    });
    return true;
  }

  /** Replaces a check's runtime state (an acknowledgement, a restored state); written in the background. */
  setState(id: string, state: CheckState): boolean {
    const entry = this.#entries.get(id);
    if (!entry || entry.removed) return false;
    entry.check.state = state;
    // A check running here writes its state with its completion.
    if (!entry.claimed) this.#enqueueStateWrite(entry);
    return true;
  }

  // ---- Queue ----

  async claim(now: number, limit: number): Promise<Check[]> {
    if (this.#phase !== 'started' || limit <= 0) return [];
    if (!this.#healthy && this.#now() < this.#retryAt) return [];
    // Nothing is due before the earliest time the database gave: no need to ask it again.
    if (this.#nextKnown && this.#now() < this.#nextUntil && (this.#nextAt === null || now < this.#nextAt)) return [];
    let rows: ClaimedRow[];
    this.#claimQueries++;
    try {
      ({ rows } = await this.#pool.query<ClaimedRow>({
        ...this.#statements.claim,
        values: [this.#me, now, limit, this.#leaseFactor, this.#leaseMarginMs, this.#excluded()],
      }));
    } catch (error) {
      if (this.#failed(error, 'claim')) return [];
      throw error;
    }
    this.#recovered();
    if (rows.length < limit) this.#nextKnown = false;
    else {
      // A full batch: more is likely due. Say so without asking the database again; the next claim finds out.
      this.#nextKnown = true;
      this.#nextAt = now;
      this.#nextUntil = this.#now() + this.#pollIntervalMs;
    }
    if (rows.length === 0) return [];
    // Checks this mirror does not know yet, or knows with an older spec: read them whole first.
    const unknown = rows.filter((row) => this.#entries.get(row.id)?.specRev !== row.spec_rev).map((row) => row.id);
    if (unknown.length > 0) {
      try {
        await this.#reloadRows(unknown, false);
      } catch (error) {
        this.#report(error, 'claim');
      }
    }
    rows.sort((a, b) => (a.due ?? 0) - (b.due ?? 0));
    const claimed: Check[] = [];
    const release: string[] = [];
    for (const row of rows) {
      const entry = this.#entries.get(row.id);
      if (!entry || entry.removed || entry.claimed || this.#phase !== 'started') {
        release.push(row.id);
        continue;
      }
      const state = decodeState(row.state);
      if (entry.check.state === entry.persisted) entry.check.state = state;
      entry.persisted = state;
      entry.check.dueAt = row.due ?? entry.check.dueAt;
      entry.check.slotAt = row.slot;
      entry.done = false;
      entry.version = entry.claimedVersion = row.version;
      entry.leaseOwner = this.#me;
      entry.leaseUntil = row.lease_until;
      entry.claimed = true;
      // The entry's own id, not the row's: a string from each claim's rows, kept in a Set that takes
      // and drops one per run, would be promoted to the old generation (see server/in-flight-runs.ts).
      this.#claimedIds.add(entry.check.spec.id);
      claimed.push(entry.check);
    }
    if (release.length > 0) this.#releaseLeases(release);
    return claimed;
  }

  /**
   * Gives a claimed check back with its new state; written with others in one statement a few ms later.
   * Rejects with LeaseLostError when the lease is no longer this instance's (nothing is written), with
   * CompletionDroppedError when it could not be kept. Resolves without writing for a check that was
   * removed meanwhile, or that this instance does not hold.
   */
  complete(check: Check, nextDueAt: number | null): Promise<void> {
    const id = check.spec.id;
    const orphan = this.#removedWhileClaimed.get(check);
    if (orphan) {
      // Removed while it ran (its id may be taken by a new check meanwhile): not put back.
      this.#settleClaim(orphan);
      if (this.#entries.get(id) === orphan) this.#entries.delete(id);
      return Promise.resolve();
    }
    const entry = this.#entries.get(id);
    // Not (or no longer) held here: e.g. a second completion after a lost lease, or a stale object.
    if (!entry || entry.check !== check || !entry.claimed || entry.completing) return Promise.resolve();
    if (this.#phase === 'closed' || this.#phase === 'new') {
      this.#abandonClaim(entry);
      return Promise.reject(new CompletionDroppedError(id, 'the queue is closed'));
    }
    let due = nextDueAt;
    if (entry.nextSpec) {
      const intervalChanged = entry.nextSpec.intervalMs !== check.spec.intervalMs;
      check.spec = entry.nextSpec;
      entry.nextSpec = null;
      // As in TrackedMemoryPool: a retry the run asked for stands; otherwise a new interval starts its own grid.
      if (intervalChanged && (due === null || due === check.slotAt)) {
        due = check.spec.intervalMs === null ? null : firstDueAt(id, check.spec.intervalMs, this.#now());
        if (due !== null) check.slotAt = due;
      }
    }
    if (due !== null) check.dueAt = due;
    entry.completing = true;
    return new Promise<void>((resolve, reject) => {
      this.#buffer.push({ settled: false, entry, id, version: entry.claimedVersion, state: check.state, previous: entry.persisted, due, slot: check.slotAt, resolve, reject });
      while (this.#buffer.length > this.#maxBuffered) {
        const oldest = this.#buffer.shift() as PendingCompletion;
        this.#dropped++;
        this.#abandonClaim(oldest.entry);
        oldest.settled = true;
        oldest.reject(new CompletionDroppedError(oldest.id, `more than ${this.#maxBuffered} completions were waiting for the database`));
      }
      this.#scheduleFlush();
    });
  }

  async nextDueAt(): Promise<number | null> {
    if (this.#phase !== 'started') return null;
    const now = this.#now();
    if (!this.#healthy && now < this.#retryAt) return this.#retryAt;
    if (!this.#nextKnown || now >= this.#nextUntil) {
      let next: number | null;
      try {
        const { rows } = await this.#pool.query<{ next: number | null }>({ ...this.#statements.nextDue, values: [this.#excluded()] });
        next = rows[0]?.next ?? null;
      } catch (error) {
        if (this.#failed(error, 'next-due')) return this.#retryAt;
        throw error;
      }
      this.#recovered();
      this.#nextKnown = true;
      this.#nextAt = next;
      this.#nextUntil = now + this.#pollIntervalMs;
    }
    // Look again by the poll interval at the latest (changes that came without a notification), and
    // never at once for due work that could not be taken (locked by another instance's claim right now).
    const at = this.#nextAt === null ? this.#nextUntil : Math.min(this.#nextAt, this.#nextUntil);
    return at > now ? at : now + RETRY_SOON_MS;
  }

  async count(): Promise<number> {
    return Promise.resolve(this.size);
  }

  watch(listener: (event: QueueEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Stops listening and refreshing. By default writes what is buffered (completions, registry writes)
   * within `timeoutMs` (default 5 000) and drops the rest. `abandon: true` writes nothing and keeps the
   * leases, as a crash would: other instances take those checks once the leases expire.
   * Idempotent. The pool is the caller's to end.
   */
  close(options: { abandon?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.#closed ??= this.#shutdown(options.abandon ?? false, options.timeoutMs ?? 5_000);
    return this.#closed;
  }

  // ---- internals ----

  async #shutdown(abandon: boolean, timeoutMs: number): Promise<void> {
    const started = this.#phase === 'started';
    this.#phase = abandon ? 'closed' : 'closing';
    for (const timer of [this.#refreshTimer, this.#scanTimer, this.#reloadTimer, this.#listenTimer]) if (timer) clearTimeout(timer);
    this.#refreshTimer = this.#scanTimer = this.#reloadTimer = this.#listenTimer = null;
    this.#stopListening(abandon);
    if (!abandon && started) {
      this.#scanDirty();
      const deadline = Date.now() + timeoutMs;
      while ((this.#buffer.length > 0 || this.#flushing || this.#chains.size > 0) && Date.now() < deadline) {
        if (this.#buffer.length > 0 && !this.#flushing) {
          if (this.#flushTimer) clearTimeout(this.#flushTimer);
          this.#flushTimer = null;
          void this.#flush();
        }
        const work: Promise<unknown>[] = [...this.#chains.values()];
        if (this.#flushing) work.push(this.#flushing);
        const timeout = timer(Math.max(0, deadline - Date.now()));
        await Promise.race([Promise.all(work), timeout.promise]);
        timeout.cancel();
        // A flush waiting out a backoff: look again shortly rather than wait for its timer.
        if (this.#buffer.length > 0 && !this.#flushing) await delay(Math.min(50, Math.max(0, deadline - Date.now())));
      }
    }
    this.#phase = 'closed';
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    for (const pending of this.#buffer.splice(0)) {
      this.#dropped++;
      this.#abandonClaim(pending.entry);
      pending.settled = true;
      pending.reject(new CompletionDroppedError(pending.id, 'the queue closed before it could be written'));
    }
    this.#pool.off('error', this.#onPoolError);
  }

  readonly #onPoolError = (error: Error): void => {
    // An idle connection died (database restarted, backend terminated): the pool opens a new one when needed.
    this.#logger.warn({ err: error }, 'an idle PostgreSQL connection failed');
  };

  #newEntry(check: Check, source: CheckSource, raw: unknown): Entry {
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
      removed: false,
      nextSpec: null,
    };
  }

  /** (A method, so that TypeScript does not narrow the phase across awaits.) */
  #isClosed(): boolean {
    return this.#phase === 'closed';
  }

  #leasedElsewhere(entry: Entry): boolean {
    return entry.leaseOwner !== null && entry.leaseOwner !== this.#me && (entry.leaseUntil ?? 0) > this.#now();
  }

  #excluded(): string[] {
    return this.#unrunnable.size === 0 ? [...this.#claimedIds] : [...this.#claimedIds, ...this.#unrunnable.keys()];
  }

  #emit(event: QueueEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#logger.error({ err: error }, 'a queue listener threw');
      }
    }
  }

  /** Something may now be due at `at`: lower the cached earliest due time; tell the server if asked. */
  #lowerNext(at: number, emit: boolean): void {
    if (this.#nextKnown) {
      // The server wakes by then anyway.
      if (this.#nextAt !== null && at >= this.#nextAt) return;
      this.#nextAt = at;
    }
    if (emit) this.#emit({ type: 'due-earlier' });
  }

  #settleClaim(entry: Entry): void {
    entry.claimed = false;
    entry.completing = false;
    const id = entry.check.spec.id;
    this.#removedWhileClaimed.delete(entry.check);
    // The id may already belong to a new check (removed and added again) that is running here too.
    if (this.#entries.get(id)?.claimed !== true) this.#claimedIds.delete(id);
  }

  /** A claim that ended without its completion written: the run's state is not the table's. */
  #abandonClaim(entry: Entry): void {
    this.#settleClaim(entry);
    entry.check.state = entry.persisted;
    entry.nextSpec = null;
  }

  #encodeForWrite(spec: CheckSpec, raw: unknown): Record<string, unknown> {
    const { json, lossless, problem } = encodeSpec(spec);
    if (!lossless && (raw === undefined || !this.#parseCheck)) {
      throw new TypeError(
        `check "${spec.id}" cannot be stored in PostgreSQL: its spec holds ${problem ?? 'a value'} that JSON cannot keep, ` +
          'and no source entry (with a parseCheck to read it again) was given',
      );
    }
    return json;
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

  /** Takes what a write of this instance returned: the row's revision, version and schedule. */
  #adoptWritten(entry: Entry, row: CheckRow): void {
    entry.specRev = row.spec_rev;
    entry.updatedAt = row.updated;
    if (!entry.claimed) {
      entry.version = row.version;
      entry.leaseOwner = row.lease_owner;
      entry.leaseUntil = row.lease_until;
    }
  }

  /** Takes the row's state and schedule into a check that is not running here. */
  #adoptRowState(entry: Entry, row: CheckRow): void {
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
    if (row.due !== null && row.due !== before && row.lease_owner === null) this.#lowerNext(row.due, true);
  }

  /** Brings the mirror in line with a row another instance (or an earlier start) wrote. */
  #applyRow(row: CheckRow): void {
    // This instance's own writes to the check are ahead of the row: they settle it.
    if (this.#pendingWrites.has(row.id)) return;
    let entry = this.#entries.get(row.id);
    let spec: CheckSpec | undefined;
    if (!entry || entry.specRev !== row.spec_rev) {
      if (this.#unrunnable.get(row.id) === row.spec_rev) return;
      spec = this.#decode(row);
      if (!spec) {
        if (entry) this.#forget(row.id);
        return;
      }
      this.#unrunnable.delete(row.id);
    }
    if (!entry) {
      const state = decodeState(row.state);
      entry = this.#newEntry({ spec: spec as CheckSpec, state, dueAt: row.due ?? row.slot, slotAt: row.slot }, row.source, row.source_entry ?? undefined);
      entry.specRev = row.spec_rev;
      entry.version = row.version;
      entry.updatedAt = row.updated;
      entry.done = row.due === null;
      entry.leaseOwner = row.lease_owner;
      entry.leaseUntil = row.lease_until;
      this.#entries.set(row.id, entry);
      if (row.due !== null) this.#lowerNext(row.due, true);
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
    this.#adoptRowState(entry, row);
  }

  /** Out of the mirror; one running here stays (marked removed) until its run completes, even if its id is taken again. */
  #dropEntry(entry: Entry): void {
    if (entry.claimed) {
      entry.removed = true;
      this.#removedWhileClaimed.set(entry.check, entry);
    } else this.#entries.delete(entry.check.spec.id);
  }

  /** A check gone from the table: out of the mirror (one running here is dropped when its run completes). */
  #forget(id: string): void {
    const entry = this.#entries.get(id);
    if (!entry || entry.removed) return;
    this.#dropEntry(entry);
    this.#emit({ type: 'removed', checkId: id });
  }

  /** Reads these rows and applies them; ids missing from the table are forgotten when `forgetMissing`. */
  async #reloadRows(ids: readonly string[], forgetMissing: boolean): Promise<void> {
    for (let i = 0; i < ids.length; i += FETCH_CHUNK) {
      const chunk = ids.slice(i, i + FETCH_CHUNK);
      const { rows } = await this.#pool.query<CheckRow>(`SELECT ${ROW_COLUMNS} FROM ${this.#checks} WHERE id = ANY($1::text[])`, [chunk]);
      const found = new Set<string>();
      for (const row of rows) {
        found.add(row.id);
        this.#applyRow(row);
      }
      if (forgetMissing) for (const id of chunk) if (!found.has(id) && !this.#pendingWrites.has(id)) this.#forget(id);
    }
  }

  /**
   * Compares the whole table with the mirror through a narrow scan (id, spec revision, version, update
   * time) and reads in full only the rows that changed; rows gone are forgotten. Single-flight.
   */
  #refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        const { rows } = await this.#pool.query<{ id: string; spec_rev: number; version: number; updated: number }>(
          `SELECT id, spec_rev::float8 AS spec_rev, version::float8 AS version, (extract(epoch FROM updated_at) * 1000)::float8 AS updated FROM ${this.#checks}`,
        );
        const seen = new Set<string>();
        const changed: string[] = [];
        for (const row of rows) {
          seen.add(row.id);
          const entry = this.#entries.get(row.id);
          if (!entry) {
            if (this.#unrunnable.get(row.id) !== row.spec_rev) changed.push(row.id);
          } else if (entry.specRev !== row.spec_rev || entry.updatedAt !== row.updated || (!entry.claimed && entry.version !== row.version)) {
            changed.push(row.id);
          }
        }
        for (const id of [...this.#entries.keys()]) if (!seen.has(id) && !this.#pendingWrites.has(id)) this.#forget(id);
        for (const id of [...this.#unrunnable.keys()]) if (!seen.has(id)) this.#unrunnable.delete(id);
        if (changed.length > 0) await this.#reloadRows(changed, true);
        this.#recovered();
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  #refreshInBackground(): void {
    if (this.#phase !== 'started') return;
    this.#refresh().catch((error: unknown) => {
      if (!this.#failed(error, 'refresh')) this.#report(error, 'refresh');
    });
  }

  /** Writes states changed in the mirror without a registry call (the server's acknowledge and submit do that). */
  #scanDirty(): void {
    for (const entry of this.#entries.values()) {
      if (entry.claimed || entry.removed || entry.check.state === entry.persisted || this.#pendingWrites.has(entry.check.spec.id)) continue;
      this.#enqueueStateWrite(entry);
    }
  }

  #enqueueStateWrite(entry: Entry): void {
    const id = entry.check.spec.id;
    const state = entry.check.state;
    this.#enqueueWrite(id, 'state', async (client) => {
      const previous = entry.persisted;
      const { rows } = await client.query<CheckRow>(`UPDATE ${this.#checks} SET state = $2, updated_at = now() WHERE id = $1 RETURNING ${ROW_COLUMNS}`, [id, toJson(state)]);
      if (rows.length > 0) await this.#writeIncidents(client, [{ previous, state }]);
      return () => {
        const row = rows[0];
        if (!row || this.#entries.get(id) !== entry) return;
        entry.persisted = state;
        this.#adoptWritten(entry, row);
      };
    });
  }

  /**
   * Queues a write of one check behind its earlier ones. `work` runs in a transaction that also
   * notifies the other instances; what it returns is applied to the mirror after COMMIT. A write that
   * fails because the database is away is tried again (with backoff) until the queue closes; any other
   * failure is logged and reported, and the mirror is corrected by the next refresh.
   */
  #enqueueWrite(id: string, operation: string, work: (client: pg.PoolClient) => Promise<(() => void) | undefined>): void {
    if (this.#phase === 'closed') {
      this.#logger.warn({ checkId: id, operation }, 'the PostgreSQL queue is closed: the change stays in this instance only');
      return;
    }
    this.#pendingWrites.set(id, (this.#pendingWrites.get(id) ?? 0) + 1);
    const previous = this.#chains.get(id) ?? Promise.resolve();
    const next = previous.then(() => this.#runWrite(id, operation, work));
    this.#chains.set(id, next);
    void next.finally(() => {
      const left = (this.#pendingWrites.get(id) ?? 1) - 1;
      if (left > 0) this.#pendingWrites.set(id, left);
      else this.#pendingWrites.delete(id);
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    });
  }

  async #runWrite(id: string, operation: string, work: (client: pg.PoolClient) => Promise<(() => void) | undefined>): Promise<void> {
    for (;;) {
      if (this.#phase === 'closed') return;
      try {
        const apply = await this.#transaction(async (client) => {
          const after = await work(client);
          await this.#notify(client, { id });
          return after;
        });
        this.#recovered();
        apply?.();
        return;
      } catch (error) {
        if (isTransient(error) && !this.#isClosed()) {
          this.#failed(error, operation);
          await delay(Math.max(this.#backoffMs, 100));
          continue;
        }
        this.#writeErrors++;
        this.#logger.error({ err: error, checkId: id, operation }, `writing a change of check "${id}" (${operation}) to PostgreSQL failed`);
        this.#onError?.(error, { operation, checkId: id });
        return;
      }
    }
  }

  async #notify(client: pg.PoolClient, message: { id?: string; all?: boolean }): Promise<void> {
    await client.query('SELECT pg_notify($1, $2)', [this.#channel, JSON.stringify({ from: this.#me, ...message })]);
  }

  /** Runs `work` in a transaction on one connection, keeping the connection's errors from crashing the process. */
  async #transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    const onError = (error: Error): void => this.#logger.debug({ err: error }, 'a PostgreSQL connection failed during a transaction');
    client.on('error', onError);
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  #releaseLeases(ids: readonly string[]): void {
    this.#pool
      .query(`UPDATE ${this.#checks} SET lease_owner = NULL, lease_until = NULL WHERE id = ANY($1::text[]) AND lease_owner = $2`, [ids, this.#me])
      .catch((error: unknown) => this.#report(error, 'release'));
  }

  #scheduleFlush(): void {
    if (this.#flushTimer || this.#flushing || this.#phase === 'closed') return;
    const wait = this.#buffer.length >= this.#flushBatchSize ? 0 : this.#flushDelayMs;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = null;
      void this.#flush();
    }, wait);
  }

  /** Writes buffered completions in batches until none are left; after a connection failure, again after a backoff. */
  #flush(): Promise<void> {
    this.#flushing ??= (async () => {
      let retryIn: number | null = null;
      // What a failed write leaves to write again: the completions not settled yet.
      const retry = (batch: readonly PendingCompletion[], error: unknown): void => {
        this.#buffer.unshift(...batch.filter((pending) => !pending.settled));
        this.#failed(error, 'complete');
        retryIn = Math.max(this.#backoffMs, 100);
      };
      try {
        while (this.#buffer.length > 0 && this.#phase !== 'closed') {
          const batch = this.#buffer.splice(0, this.#flushBatchSize);
          try {
            await this.#writeBatch(batch);
            this.#recovered();
          } catch (error) {
            if (isTransient(error)) return retry(batch, error);
            // One bad row must not sink the others: write them one by one.
            this.#report(error, 'complete');
            for (const pending of batch) {
              if (pending.settled) continue;
              try {
                await this.#writeBatch([pending]);
              } catch (soloError) {
                if (isTransient(soloError)) return retry(batch, soloError);
                this.#abandonClaim(pending.entry);
                pending.settled = true;
                pending.reject(soloError instanceof Error ? soloError : new Error(String(soloError)));
              }
            }
          }
        }
      } finally {
        this.#flushing = null;
        if (this.#buffer.length > 0 && this.#phase !== 'closed') {
          if (retryIn === null) this.#scheduleFlush();
          else if (!this.#flushTimer) {
            this.#flushTimer = setTimeout(() => {
              this.#flushTimer = null;
              void this.#flush();
            }, retryIn);
          }
        }
      }
    })();
    return this.#flushing;
  }

  /**
   * One statement writes every completion of the batch whose lease is still this instance's at the
   * claimed version, with their incident rows; those are settled at once. The refused ones are settled
   * by who holds their rows now. Rejects when the database fails; what was settled stays settled.
   */
  async #writeBatch(batch: PendingCompletion[]): Promise<void> {
    batch.sort((a, b) => compare(a.id, b.id));
    const rows = batch.map((p): CompletionRow => ({ id: p.id, version: p.version, state: p.state, due: p.due, slot: p.slot }));
    this.#completionBatches++;
    const written = await writeCompletions(this.#pool, this.#statements, this.#me, rows, incidentChanges(batch, this.#now()));
    const refused: PendingCompletion[] = [];
    for (const pending of batch) {
      const row = written.get(pending.id);
      if (row) this.#settleWritten(pending, row);
      else refused.push(pending);
    }
    if (refused.length === 0) return;
    const holders = await findHolders(this.#pool, this.#statements, refused.map((p): CompletionRow => ({ id: p.id, version: p.version, state: p.state, due: p.due, slot: p.slot })));
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
    this.#settleClaim(entry);
    if (entry.removed && this.#entries.get(id) === entry) this.#entries.delete(id);
    if (pending.due !== null) this.#lowerNext(pending.due, false);
    if (row?.merged) this.#scheduleReload(id);
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
      this.#settleClaim(entry);
      if (this.#entries.get(id) === entry) {
        this.#entries.delete(id);
        if (!entry.removed) this.#emit({ type: 'removed', checkId: id });
      }
      pending.resolve();
      return;
    }
    this.#leasesLost++;
    this.#abandonClaim(entry);
    this.#scheduleReload(id);
    const detail = holder.lease_owner === null
      ? `the check was completed by another instance meanwhile (version ${holder.version}, claimed at ${pending.version})`
      : `it is held by ${holder.lease_owner === this.#me ? 'a later claim of this instance' : `instance "${holder.lease_owner}"`} now (version ${holder.version}, claimed at ${pending.version})`;
    this.#logger.warn({ checkId: id, holder: holder.lease_owner }, `lease of check "${id}" lost: its result is discarded`);
    pending.reject(new LeaseLostError(id, detail));
  }

  /** Opens, updates and resolves incident rows for state changes (previous → state), in `client`'s transaction. */
  async #writeIncidents(client: pg.PoolClient, changes: readonly { previous: CheckState; state: CheckState }[]): Promise<void> {
    const { upserts, resolves } = incidentChanges(changes, this.#now());
    if (upserts.length > 0) await client.query(incidentUpsert(this.#incidents, 'jsonb_array_elements($1::jsonb) AS d'), [toJson(upserts)]);
    if (resolves.length > 0) await client.query(incidentResolve(this.#incidents, 'jsonb_to_recordset($1::jsonb) AS r(id text, at float8)'), [toJson(resolves)]);
  }

  async #listen(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      client.on('notification', this.#onNotification);
      client.on('error', this.#onListenLost);
      client.on('end', this.#onListenLost);
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#channel)}`);
    } catch (error) {
      this.#detach(client);
      client.release(true);
      throw error;
    }
    this.#listenClient = client;
    this.#listenBackoffMs = 0;
  }

  #detach(client: pg.PoolClient): void {
    client.off('notification', this.#onNotification);
    client.off('error', this.#onListenLost);
    client.off('end', this.#onListenLost);
    // A connection that dies after being let go must still not crash the process.
    client.on('error', () => undefined);
  }

  #stopListening(destroy: boolean): void {
    const client = this.#listenClient;
    this.#listenClient = null;
    if (!client) return;
    this.#detach(client);
    if (destroy) client.release(true);
    else {
      client
        .query(`UNLISTEN ${pg.escapeIdentifier(this.#channel)}`)
        .then(() => client.release(), () => client.release(true));
    }
  }

  readonly #onListenLost = (error?: Error): void => {
    const client = this.#listenClient;
    if (!client) return;
    this.#listenClient = null;
    this.#detach(client);
    client.release(true);
    if (this.#phase !== 'started') return;
    this.#logger.warn({ err: error }, 'the PostgreSQL LISTEN connection was lost; reconnecting');
    this.#scheduleListen();
  };

  #scheduleListen(): void {
    if (this.#listenTimer || this.#phase !== 'started') return;
    this.#listenBackoffMs = Math.min(MAX_BACKOFF_MS, Math.max(100, this.#listenBackoffMs * 2));
    this.#listenTimer = setTimeout(() => {
      this.#listenTimer = null;
      if (this.#phase !== 'started' || this.#listenClient) return;
      this.#listen()
        // Notifications sent while nobody listened are lost: compare everything once.
        .then(() => this.#refresh())
        .then(() => this.#emit({ type: 'due-earlier' }))
        .catch((error: unknown) => {
          this.#logger.debug({ err: error }, 'reconnecting the PostgreSQL LISTEN connection failed; trying again');
          this.#scheduleListen();
        });
    }, this.#listenBackoffMs);
    this.#listenTimer.unref();
  }

  readonly #onNotification = (message: pg.Notification): void => {
    if (message.channel !== this.#channel || message.payload === undefined) return;
    let payload: { from?: unknown; id?: unknown; all?: unknown };
    try {
      payload = JSON.parse(message.payload) as typeof payload;
    } catch {
      return;
    }
    if (payload.from === this.#me) return;
    if (payload.all === true) this.#reloadAll = true;
    else if (typeof payload.id === 'string') this.#reloadIds.add(payload.id);
    else return;
    this.#scheduleReload();
  };

  #scheduleReload(id?: string): void {
    if (id !== undefined) this.#reloadIds.add(id);
    if (this.#reloadTimer || this.#phase !== 'started') return;
    // A few ms gathers the notifications of one burst into one query.
    this.#reloadTimer = setTimeout(() => {
      this.#reloadTimer = null;
      const all = this.#reloadAll;
      const ids = [...this.#reloadIds];
      this.#reloadAll = false;
      this.#reloadIds.clear();
      const work = all ? this.#refresh() : this.#reloadRows(ids, true);
      work.catch((error: unknown) => {
        // The periodic refresh catches up.
        if (!this.#failed(error, 'reload')) this.#report(error, 'reload');
      });
    }, 5);
    this.#reloadTimer.unref();
  }

  /** Notes a failure. True when it is the database being away (handled: backoff); false for anything else. */
  #failed(error: unknown, operation: string): boolean {
    if (!isTransient(error)) return false;
    this.#backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(250, this.#backoffMs * 2));
    this.#retryAt = this.#now() + this.#backoffMs;
    if (this.#healthy) {
      this.#healthy = false;
      this.#logger.warn({ err: error, operation }, 'PostgreSQL is unreachable; completions are buffered and claims wait until it is back');
      this.#onError?.(error, { operation });
    }
    return true;
  }

  #recovered(): void {
    if (this.#healthy) return;
    this.#healthy = true;
    this.#backoffMs = 0;
    this.#retryAt = 0;
    this.#logger.info('PostgreSQL is reachable again');
    if (this.#buffer.length > 0) this.#scheduleFlush();
    if (!this.#listenClient) this.#scheduleListen();
    this.#emit({ type: 'due-earlier' });
  }

  #report(error: unknown, operation: string, checkId?: string): void {
    this.#logger.error({ err: error, operation, checkId }, `PostgreSQL queue: ${operation} failed`);
    this.#onError?.(error, checkId === undefined ? { operation } : { operation, checkId });
  }
}

/** Is the lease free (never taken, or expired)? */
const LEASE_FREE = '(lease_owner IS NULL OR lease_until < now())';
/** A config sync moves a check to a new grid when its interval changed or it was a finished one-shot check and its lease is free. */
const REGRID = `((c.spec->'intervalMs') IS DISTINCT FROM (EXCLUDED.spec->'intervalMs') OR c.next_due_at IS NULL) AND (c.lease_owner IS NULL OR c.lease_until < now())`;

function timeoutOf(spec: CheckSpec): number {
  return Math.max(1, Math.ceil(spec.timeoutMs));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A timer that can be cancelled, so a race against it leaves nothing behind. */
function timer(ms: number): { promise: Promise<void>; cancel(): void } {
  let handle: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => (handle = setTimeout(resolve, ms)));
  return { promise, cancel: () => clearTimeout(handle) };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TypeError(`Expected \`${name}\` to be a positive number, got \`${String(value)}\` (${typeof value})`);
  return value;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new TypeError(`Expected \`${name}\` to be a number ≥ 0, got \`${String(value)}\` (${typeof value})`);
  return value;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
