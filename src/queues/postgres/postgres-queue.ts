import pg from 'pg';
import type { Logger } from 'pino';
import type { Check, CheckSpec, CheckState } from '../../checks/check.js';
import type { CheckRegistry, CheckStatus } from '../../checks/check-registry.js';
import { firstDueAt } from '../../checks/schedule.js';
import type { ParseResult } from '../../commands/command.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { DEFAULT_SCHEMA } from '../../postgres/migrations.js';
import type { Queue, QueueEvent } from '../queue.js';
import { CompletionBuffer } from './completion-buffer.js';
import { CompletionWriter, type PendingCompletion } from './completions.js';
import { writeConfigChecks, type ConfigCheck, type ConfigSyncCounts, type ConfigSyncOptions } from './config-sync.js';
import { DatabaseClock } from './database-clock.js';
import { CompletionDroppedError, type QueueErrorListener } from './errors.js';
import { DatabaseHealth } from './health.js';
import { Listener, notify, notifyChannel } from './listener.js';
import { Mirror } from './mirror.js';
import { NextDue } from './next-due.js';
import { MirrorRefresh } from './refresh.js';
import { RegistryWrites, type RegistryWriteOptions } from './registry-writes.js';
import { queueStatements, type ClaimedRow, type QueueStatements } from './statements.js';
import { WriteChains } from './write-chains.js';

/**
 * The queue many vigil instances share through one PostgreSQL schema (tables from
 * postgres/migrations.ts). A check is leased, not owned: `claim` takes due rows with
 * `FOR UPDATE SKIP LOCKED` and leases them for about twice their timeout; `complete` writes the run's
 * state and next due time only while the lease is still this instance's (compare-and-set on the row's
 * version), and opens, updates and resolves incident rows in the same transaction, so N instances
 * raise one incident per outage. A crashed instance's leases simply expire.
 *
 * The CheckRegistry side is synchronous: a mirror of every check, loaded at `start()`, kept current by
 * LISTEN/NOTIFY and a periodic refresh; registry writes change the mirror at once and reach the
 * database in the background (one after the other per check), then notify the other instances.
 *
 * This class composes parts with one job each: the Mirror (mirror.ts) and its MirrorRefresh
 * (refresh.ts), the RegistryWrites (registry-writes.ts) over WriteChains (write-chains.ts), the config
 * sync (config-sync.ts), the CompletionBuffer (completion-buffer.ts) and its CompletionWriter
 * (completions.ts), the Listener (listener.ts), the DatabaseHealth (health.ts), the NextDue cache
 * (next-due.ts) and the DatabaseClock (database-clock.ts). All tell time through the one Clock; the
 * table's due times, slots and leases are on the database's clock, and the DatabaseClock moves every
 * time that crosses the table's edge, so instances whose clocks disagree still agree on what is due.
 */

export { CheckSources, type CheckSource } from './check-rows.js';
export { decodeSpec, encodeSpec } from './codec.js';
export type { ConfigCheck } from './config-sync.js';
export { CompletionDroppedError, isTransient, LeaseLostError } from './errors.js';
export { notifyChannel } from './listener.js';
export type { RegistryWriteOptions } from './registry-writes.js';

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
  readonly onError?: QueueErrorListener;
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
  /**
   * Where every part of the queue reads the time (epoch ms: due times, backoffs, the close deadline)
   * and sets its timers; default `systemClock`; the server's clock should be the same. The table's
   * times are the database's: its offset from this clock is measured at start and every
   * `refreshIntervalMs`, and due times are moved by it on their way in and out, so an instance whose
   * clock is off neither claims early nor late. Leases and `updated_at` are the database's `now()`.
   */
  readonly clock?: Clock;
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
  /** This instance's clock minus the database's, in ms, as last measured (0 when they agree within the measurement's precision). */
  readonly clockOffsetMs: number;
  /** Regular runs claimed more than half an interval after their slot, and run for the nearest slot instead. */
  readonly lateClaims: number;
  /** Claimed checks given back unrun: the claim's answer came so late that the run could have outlived its lease. */
  readonly staleClaims: number;
}

type Phase = 'new' | 'started' | 'closing' | 'closed';

export class PostgresQueue implements Queue, CheckRegistry {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #checks: string;
  readonly #me: string;
  readonly #logger: Logger;
  readonly #onError: QueueErrorListener | undefined;
  readonly #clock: Clock;
  readonly #pollIntervalMs: number;
  readonly #leaseFactor: number;
  readonly #leaseMarginMs: number;
  readonly #statements: QueueStatements;

  readonly #health: DatabaseHealth;
  readonly #time: DatabaseClock;
  readonly #next = new NextDue();
  readonly #mirror: Mirror;
  readonly #refresh: MirrorRefresh;
  readonly #writes: WriteChains;
  readonly #registry: RegistryWrites;
  readonly #writer: CompletionWriter;
  readonly #buffer: CompletionBuffer<PendingCompletion>;
  readonly #listener: Listener;
  readonly #syncOptions: ConfigSyncOptions;
  readonly #listeners = new Set<(event: QueueEvent) => void>();

  #phase: Phase = 'new';
  #closed: Promise<void> | null = null;
  #claimQueries = 0;
  #staleClaims = 0;

  constructor(options: PostgresQueueOptions) {
    if (typeof options.instanceId !== 'string' || options.instanceId === '') {
      throw new TypeError(`Expected \`instanceId\` to be a non-empty string, got \`${String(options.instanceId)}\``);
    }
    const pool = (this.#pool = options.pool);
    const schema = (this.#schema = options.schema ?? DEFAULT_SCHEMA);
    const quoted = pg.escapeIdentifier(schema);
    const checks = (this.#checks = `${quoted}.checks`);
    const me = (this.#me = options.instanceId);
    const logger = (this.#logger = options.logger);
    this.#onError = options.onError;
    const clock = (this.#clock = options.clock ?? systemClock);
    this.#pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs, 2_000);
    const refreshIntervalMs = positive('refreshIntervalMs', options.refreshIntervalMs, 10_000);
    this.#leaseFactor = positive('leaseFactor', options.leaseFactor, 2);
    this.#leaseMarginMs = nonNegative('leaseMarginMs', options.leaseMarginMs, 1_000);
    const flushDelayMs = nonNegative('flushDelayMs', options.flushDelayMs, 5);
    const flushBatchSize = positive('flushBatchSize', options.flushBatchSize, 200);
    const maxBuffered = positive('maxBufferedCompletions', options.maxBufferedCompletions, 10_000);
    const statements = (this.#statements = queueStatements(schema));
    const channel = notifyChannel(schema);

    // Callbacks the parts share, made once here (none per claim or completion).
    const report = (error: unknown, operation: string, checkId?: string): void => this.#report(error, operation, checkId);
    const emit = (event: QueueEvent): void => this.#emit(event);
    const dueAt = (at: number, tell: boolean): void => {
      if (this.#next.lower(at) && tell) this.#emit({ type: 'due-earlier' });
    };

    const health = (this.#health = new DatabaseHealth({ clock, logger, onError: options.onError, onRecovered: () => this.#onRecovered() }));
    const time = (this.#time = new DatabaseClock({ pool, clock, logger }));
    const writes = (this.#writes = new WriteChains({ pool, clock, logger, health, onError: options.onError, notify: (client, id) => notify(client, channel, me, { id }) }));
    const mirror = (this.#mirror = new Mirror({ instanceId: me, clock, logger, parseCheck: options.parseCheck, report, dueAt, emit, writing: (id) => writes.has(id) }));
    const refresh = (this.#refresh = new MirrorRefresh({ pool, table: checks, mirror, health, time }));
    this.#registry = new RegistryWrites({ clock, logger, mirror, writes, time, checksTable: checks, incidentsTable: `${quoted}.incidents`, dueAt, emit });
    const listener = (this.#listener = new Listener({
      pool,
      channel,
      instanceId: me,
      clock,
      logger,
      health,
      report,
      refreshIntervalMs,
      reload: (ids) => refresh.reloadRows(ids, true),
      // The periodic comparison also measures the clocks again: one that was stepped is followed.
      refresh: async () => {
        await time.resample();
        await refresh.refresh();
      },
      onReconnected: () => this.#emit({ type: 'due-earlier' }),
    }));
    const writer = (this.#writer = new CompletionWriter({ pool, statements, instanceId: me, clock, logger, mirror, dueAt, reload: (id) => listener.reloadSoon(id) }));
    this.#buffer = new CompletionBuffer<PendingCompletion>({
      clock,
      health,
      report,
      flushDelayMs,
      flushBatchSize,
      maxBuffered,
      write: (batch) => writer.write(batch),
      abandon: (pending) => mirror.abandonClaim(pending.entry),
    });
    this.#syncOptions = {
      pool,
      logger,
      clock,
      toDatabase: (local) => time.toDatabase(local),
      schema,
      checksTable: checks,
      encode: (spec, raw) => mirror.encodeForWrite(spec, raw),
      notifyAll: (client) => notify(client, channel, me, { all: true }),
    };
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
    return this.#mirror.size;
  }

  get stats(): PostgresQueueStats {
    return {
      checks: this.size,
      claimed: this.#mirror.claimedCount,
      bufferedCompletions: this.#buffer.length,
      droppedCompletions: this.#buffer.dropped,
      leasesLost: this.#writer.leasesLost,
      writeErrors: this.#writes.errors,
      unrunnable: this.#mirror.unrunnableCount,
      healthy: this.#health.healthy,
      claimQueries: this.#claimQueries,
      completionBatches: this.#writer.batches,
      clockOffsetMs: this.#time.offsetMs,
      lateClaims: this.#mirror.lateClaims,
      staleClaims: this.#staleClaims,
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
      await this.#time.measure();
      // This instance runs nothing yet: what it still holds is from a run that crashed.
      await this.#pool.query(`UPDATE ${this.#checks} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, [this.#me]);
      await this.#refresh.refresh();
      await this.#listener.start();
    } catch (error) {
      await this.close({ abandon: true });
      throw error;
    }
    this.#registry.startScanning();
  }

  /**
   * Makes the config file's checks the `config` checks of the schema: adds the new ones, replaces
   * changed specs (keeping state; a new interval moves the check to its new grid), removes `config`
   * checks the file no longer has. Checks from the API or commands are left alone, unless the file now
   * names their id (the file wins). Instances starting together take turns. Refreshes the mirror.
   */
  async syncConfigChecks(checks: readonly ConfigCheck[]): Promise<ConfigSyncCounts> {
    const result = await writeConfigChecks(this.#syncOptions, checks);
    await this.#refresh.refresh();
    this.#emit({ type: 'due-earlier' });
    return result;
  }

  // ---- CheckRegistry ----

  get(id: string): Check | undefined {
    return this.#mirror.live(id)?.check;
  }

  /** Every known check, in no particular order. */
  list(): Check[] {
    return this.#mirror.list();
  }

  /** `running` also for a check another instance holds a live lease on, as far as the mirror knows. */
  status(id: string): CheckStatus | undefined {
    return this.#mirror.status(id);
  }

  /**
   * Adds a check (first run spread across its interval) to the mirror at once and to the table in the
   * background. Throws when the id is known, or when the spec cannot be stored (see `encodeSpec`).
   */
  add(spec: CheckSpec, options: RegistryWriteOptions = {}): Check {
    return this.#registry.add(spec, options);
  }

  /**
   * Replaces a check's spec, keeping its state. A waiting check whose interval changed moves to its new
   * grid; one running here takes the new spec when its run completes. Throws for an unknown id.
   */
  update(spec: CheckSpec, options: RegistryWriteOptions = {}): void {
    this.#registry.update(spec, options);
  }

  /** Adds the check, or updates it when the id is known. */
  upsert(spec: CheckSpec, options: RegistryWriteOptions = {}): void {
    if (this.#mirror.live(spec.id)) this.#registry.update(spec, options);
    else this.#registry.add(spec, options);
  }

  /** Removes a check everywhere; one running here finishes its run and is not put back. False for an unknown id. */
  remove(id: string): boolean {
    return this.#registry.remove(id);
  }

  /**
   * Makes a check due at `dueAt` (default now), e.g. to run it at once. False when it is unknown or
   * running (here, or on another instance as far as the mirror knows).
   */
  reschedule(id: string, dueAt: number = this.#clock.now()): boolean {
    return this.#registry.reschedule(id, dueAt);
  }

  /** Replaces a check's runtime state (an acknowledgement, a restored state); written in the background. */
  setState(id: string, state: CheckState): boolean {
    return this.#registry.setState(id, state);
  }

  // ---- Queue ----

  async claim(now: number, limit: number): Promise<Check[]> {
    if (this.#phase !== 'started' || limit <= 0) return [];
    if (this.#health.waiting(this.#clock.now())) return [];
    // Nothing is due before the earliest time the database gave: no need to ask it again.
    if (this.#next.rulesOut(now, this.#clock.now())) return [];
    let rows: ClaimedRow[];
    this.#claimQueries++;
    const offsetMs = this.#time.offsetMs;
    try {
      ({ rows } = await this.#pool.query<ClaimedRow>({
        ...this.#statements.claim,
        values: [this.#me, now - offsetMs, limit, this.#leaseFactor, this.#leaseMarginMs, this.#mirror.excluded()],
      }));
    } catch (error) {
      if (this.#health.failed(error, 'claim')) return [];
      throw error;
    }
    this.#health.recovered();
    // Moved by the offset the claim was sent with (a measurement meanwhile must not shift its grid).
    for (const row of rows) this.#time.onInstanceClock(row, offsetMs);
    // A full batch: more is likely due. Say so without asking the database again; the next claim finds out.
    if (rows.length < limit) this.#next.forget();
    else this.#next.set(now, this.#clock.now() + this.#pollIntervalMs);
    if (rows.length === 0) return [];
    // Checks this mirror does not know yet, or knows with an older spec: read them whole first.
    const unknown = rows.filter((row) => !this.#mirror.knows(row.id, row.spec_rev)).map((row) => row.id);
    if (unknown.length > 0) {
      try {
        await this.#refresh.reloadRows(unknown, false);
      } catch (error) {
        this.#report(error, 'claim');
      }
    }
    rows.sort((a, b) => (a.due ?? 0) - (b.due ?? 0));
    const claimed: Check[] = [];
    const release: string[] = [];
    const arrivedAt = this.#clock.now();
    let stale = 0;
    for (const row of rows) {
      const entry = this.#mirror.claimable(row.id);
      if (!entry || this.#phase !== 'started') {
        release.push(row.id);
        continue;
      }
      // The answer took so long (the database, or the way to it, stalled) that a run could outlive
      // the lease, and another instance take the check meanwhile: give it back unrun.
      if (row.lease_until - arrivedAt < entry.check.spec.timeoutMs) {
        release.push(row.id);
        stale++;
        continue;
      }
      claimed.push(this.#mirror.markClaimed(entry, row, offsetMs));
    }
    if (stale > 0) {
      this.#staleClaims += stale;
      this.#logger.warn({ checks: stale }, 'claimed checks arrived too close to the end of their lease; given back unrun');
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
    if (this.#mirror.releaseRemoved(check)) return Promise.resolve();
    const entry = this.#mirror.completable(check);
    // Not (or no longer) held here: e.g. a second completion after a lost lease, or a stale object.
    if (!entry) return Promise.resolve();
    const id = check.spec.id;
    if (this.#phase === 'closed' || this.#phase === 'new') {
      this.#mirror.abandonClaim(entry);
      return Promise.reject(new CompletionDroppedError(id, 'the queue is closed'));
    }
    let due = nextDueAt;
    if (entry.nextSpec) {
      const intervalChanged = entry.nextSpec.intervalMs !== check.spec.intervalMs;
      check.spec = entry.nextSpec;
      entry.nextSpec = null;
      // As in TrackedMemoryQueue: a retry the run asked for stands; otherwise a new interval starts its own grid.
      if (intervalChanged && (due === null || due === check.slotAt)) {
        due = check.spec.intervalMs === null ? null : firstDueAt(id, check.spec.intervalMs, this.#clock.now());
        if (due !== null) check.slotAt = due;
      }
    }
    if (due !== null) check.dueAt = due;
    entry.completing = true;
    return new Promise<void>((resolve, reject) => {
      this.#buffer.push({
        settled: false,
        entry,
        id,
        version: entry.claimedVersion,
        state: check.state,
        previous: entry.persisted,
        due,
        slot: check.slotAt,
        offsetMs: entry.claimOffsetMs,
        resolve,
        reject,
      });
    });
  }

  async nextDueAt(): Promise<number | null> {
    if (this.#phase !== 'started') return null;
    const now = this.#clock.now();
    if (this.#health.waiting(now)) return this.#health.retryAt;
    if (this.#next.stale(now)) {
      let next: number | null;
      try {
        const { rows } = await this.#pool.query<{ next: number | null }>({ ...this.#statements.nextDue, values: [this.#mirror.excluded()] });
        const at = rows[0]?.next ?? null;
        next = at === null ? null : this.#time.fromDatabase(at);
      } catch (error) {
        if (this.#health.failed(error, 'next-due')) return this.#health.retryAt;
        throw error;
      }
      this.#health.recovered();
      this.#next.set(next, now + this.#pollIntervalMs);
    }
    return this.#next.wakeAt(now);
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
    this.#registry.stopScanning();
    this.#listener.stop(abandon);
    if (!abandon && started) {
      this.#registry.scanDirty();
      const deadline = this.#clock.now() + timeoutMs;
      await Promise.all([this.#buffer.drain(deadline), this.#writes.drain(deadline)]);
    }
    this.#phase = 'closed';
    this.#writes.close();
    this.#buffer.close();
    this.#pool.off('error', this.#onPoolError);
  }

  /** The database answers again: write what waited, listen again, and have the server look. */
  #onRecovered(): void {
    this.#buffer.flushSoon();
    this.#listener.reconnect();
    this.#emit({ type: 'due-earlier' });
  }

  readonly #onPoolError = (error: Error): void => {
    // An idle connection died (database restarted, backend terminated): the pool opens a new one when needed.
    this.#logger.warn({ err: error }, 'an idle PostgreSQL connection failed');
  };

  #emit(event: QueueEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#logger.error({ err: error }, 'a queue listener threw');
      }
    }
  }

  #releaseLeases(ids: readonly string[]): void {
    this.#pool
      .query(`UPDATE ${this.#checks} SET lease_owner = NULL, lease_until = NULL WHERE id = ANY($1::text[]) AND lease_owner = $2`, [ids, this.#me])
      .catch((error: unknown) => this.#report(error, 'release'));
  }

  #report(error: unknown, operation: string, checkId?: string): void {
    this.#logger.error({ err: error, operation, checkId }, `PostgreSQL queue: ${operation} failed`);
    this.#onError?.(error, checkId === undefined ? { operation } : { operation, checkId });
  }
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
