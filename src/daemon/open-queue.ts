import { hostname } from 'node:os';
import pg from 'pg';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CheckSpec } from '../checks/check.js';
import type { ParseResult } from '../commands/command.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import { migrate } from '../postgres/migrations.js';
import { PostgresHistory } from '../queues/postgres/history.js';
import { PostgresInstances, type InstanceRecord } from '../queues/postgres/instances.js';
import { PostgresQueue } from '../queues/postgres/postgres-queue.js';
import type { Queue } from '../queues/queue.js';
import type { HistorySource, ResultHistory } from '../results/result-history.js';
import { loadState, restoredSchedule, StateFileWriter } from '../queues/state-file.js';
import { TrackedMemoryQueue } from '../queues/tracked-memory-queue.js';
import type { QueueConfig } from '../config/config.js';
import { diffChecks } from '../config/diff.js';
import type { InstanceIdentity } from './instance.js';
import { version } from '../core/version.js';

/** The daemon's queue, whichever kind the config chose, with what the daemon does with it. */
export interface DaemonQueue {
  readonly queue: Queue & CheckRegistry;
  /** Config checks that came back with a saved state. */
  readonly restored: number;
  /** The instance's epoch: the state file's, or the instances table's in PostgreSQL. */
  readonly epoch: number;
  /** The other instances sharing the database; none for the memory queue. */
  peers(): readonly InstanceRecord[];
  /** Makes the queue's config checks those of a reloaded config. */
  applyConfigChecks(current: readonly CheckSpec[], next: readonly CheckSpec[]): Promise<{ added: number; removed: number; changed: number; unchanged: number }>;
  /** Where the API reads the recent past: this instance's memory, or the shared database. */
  history(memory: ResultHistory): HistorySource;
  /** After the server stopped: saves the state (memory) or releases the database. */
  close(): Promise<void>;
}

export interface OpenQueueOptions {
  readonly config: QueueConfig;
  readonly checks: readonly CheckSpec[];
  readonly dataDir: string;
  readonly stateFile: string;
  readonly stateSaveIntervalMs: number;
  readonly identity: InstanceIdentity;
  readonly parseCheck: (raw: unknown) => ParseResult<CheckSpec>;
  readonly logger: Logger;
  /** Where the PostgreSQL queue's own metrics go. */
  readonly registry: Registry;
}

/** Opens the queue the config names, with the config's checks in it. */
export function openQueue(options: OpenQueueOptions): Promise<DaemonQueue> {
  return options.config.type === 'postgres' ? openPostgresQueue(options, options.config) : openMemoryQueue(options);
}

/** The embedded queue: state restored from, and saved to, the state file in the data dir. */
async function openMemoryQueue(options: OpenQueueOptions): Promise<DaemonQueue> {
  const { checks, stateFile, logger } = options;
  const tracked = new TrackedMemoryQueue();
  const saved = await loadState(stateFile, logger);
  const now = Date.now();
  let restored = 0;
  for (const spec of checks) {
    const previous = saved.get(spec.id);
    if (previous) restored++;
    tracked.add(spec, previous ? { state: previous.state, ...restoredSchedule(previous, spec, now) } : {});
    saved.delete(spec.id);
  }
  // The rest belong to checks added at runtime (a heartbeat-dir's children): theirs when they come back.
  for (const [id, previous] of saved) tracked.adopt(id, previous);
  const writer = new StateFileWriter({ file: stateFile, source: () => tracked.list(), intervalMs: options.stateSaveIntervalMs, logger });
  writer.start();
  return {
    queue: tracked,
    restored,
    epoch: options.identity.epoch,
    peers: () => [],
    history: (memory) => memory,
    applyConfigChecks(current, next) {
      const diff = diffChecks(current, next);
      // Checks may have been changed through the API meanwhile: the file wins for the ids it names.
      for (const id of diff.removed) tracked.remove(id);
      for (const spec of [...diff.changed, ...diff.added]) tracked.upsert(spec);
      return Promise.resolve({ added: diff.added.length, removed: diff.removed.length, changed: diff.changed.length, unchanged: diff.unchanged.length });
    },
    close: () => writer.stop(),
  };
}

/** PostgreSQL: migrations, this instance registered and heartbeating, the config's checks upserted. */
async function openPostgresQueue(options: OpenQueueOptions, config: Extract<QueueConfig, { type: 'postgres' }>): Promise<DaemonQueue> {
  const { identity, logger } = options;
  const database = new pg.Pool({ connectionString: config.url, max: config.poolSize, application_name: `vigil:${identity.id}` });
  // An idle connection the server dropped: the pool replaces it; the queue reports what failed.
  database.on('error', (error) => logger.warn({ err: error }, 'a PostgreSQL connection failed'));
  const releases: (() => Promise<void>)[] = [() => database.end()];
  const release = async (): Promise<void> => {
    for (const step of releases.reverse()) await step().catch((error: unknown) => logger.warn({ err: error }, 'releasing PostgreSQL failed'));
  };
  try {
    if (config.migrate) {
      const { applied } = await migrate(database, { schema: config.schema });
      if (applied.length > 0) logger.info({ schema: config.schema, applied }, 'migrations applied');
    }
    const instances = new PostgresInstances({
      pool: database,
      schema: config.schema,
      instanceId: identity.id,
      logger,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      info: { version, host: hostname() },
    });
    await instances.start();
    releases.push(() => instances.stop());
    const queue = new PostgresQueue({
      pool: database,
      schema: config.schema,
      instanceId: identity.id,
      parseCheck: options.parseCheck,
      logger,
      pollIntervalMs: config.pollIntervalMs,
      leaseFactor: config.leaseFactor,
      leaseMarginMs: config.leaseMarginMs,
    });
    await queue.start();
    releases.push(() => queue.close());
    registerQueueMetrics(options.registry, queue);
    // The file is the source of truth for its checks; checks created through the API stay.
    await queue.syncConfigChecks(options.checks.map((spec) => ({ spec })));
    return {
      queue,
      restored: 0,
      epoch: instances.epoch ?? identity.epoch,
      peers: () => instances.lastPeers,
      history: (memory) => new PostgresHistory({ pool: database, schema: config.schema, fallback: memory }),
      async applyConfigChecks(_current, next) {
        const result = await queue.syncConfigChecks(next.map((spec) => ({ spec })));
        return { added: result.added, removed: result.removed, changed: result.updated, unchanged: next.length - result.added - result.updated };
      },
      close: release,
    };
  } catch (error) {
    await release();
    throw error;
  }
}

/**
 * The PostgreSQL queue's health on `/metrics`, read at scrape time: `vigil_queue_database_up`,
 * `vigil_queue_buffered_completions`, `vigil_queue_clock_offset_seconds`, and the totals of dropped
 * completions, lost leases, late claims and stale claims.
 */
function registerQueueMetrics(registry: Registry, queue: PostgresQueue): void {
  new Gauge({
    name: 'vigil_queue_database_up',
    help: 'Whether the PostgreSQL queue reaches its database (1) or not (0).',
    registers: [registry],
    collect() {
      this.set(queue.stats.healthy ? 1 : 0);
    },
  });
  new Gauge({
    name: 'vigil_queue_buffered_completions',
    help: 'Completed runs waiting to be written to the database.',
    registers: [registry],
    collect() {
      this.set(queue.stats.bufferedCompletions);
    },
  });
  new Gauge({
    name: 'vigil_queue_clock_offset_seconds',
    help: "This instance's clock minus the database's, as last measured; due times and leases follow the database's clock.",
    registers: [registry],
    collect() {
      this.set(queue.stats.clockOffsetMs / 1000);
    },
  });
  const totals = [
    ['vigil_queue_dropped_completions_total', 'Completed runs dropped: the buffer was full while the database was away.', 'droppedCompletions'],
    ['vigil_queue_leases_lost_total', 'Completed runs refused because their lease had moved to another instance.', 'leasesLost'],
    ['vigil_queue_late_claims_total', 'Runs claimed more than half an interval after their slot, and run for the nearest slot instead.', 'lateClaims'],
    ['vigil_queue_stale_claims_total', 'Claimed checks given back unrun: the claim was answered too close to the end of its lease.', 'staleClaims'],
  ] as const;
  for (const [name, help, field] of totals) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        // The queue keeps the running total; the counter shows it.
        this.reset();
        this.inc(queue.stats[field]);
      },
    });
  }
}
