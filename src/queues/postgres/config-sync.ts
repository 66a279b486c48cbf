import type pg from 'pg';
import type { Logger } from 'pino';
import { initialCheckState, type CheckSpec } from '../../checks/check.js';
import { firstDueAt } from '../../checks/schedule.js';
import type { Clock } from '../../core/clock.js';
import { compareIds, timeoutOf } from './check-rows.js';
import { toJson } from './codec.js';
import { inTransaction } from './transaction.js';

/** A check of the config file, for `syncConfigChecks`. */
export interface ConfigCheck {
  readonly spec: CheckSpec;
  /** The file's entry for it (after `${ENV}` substitution). */
  readonly raw?: unknown;
}

/** What a config sync changed in the table. */
export interface ConfigSyncCounts {
  readonly added: number;
  readonly updated: number;
  readonly removed: number;
}

export interface ConfigSyncOptions {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly clock: Clock;
  /** The database's time at an instance's time: the table's due times are on the database's clock. */
  readonly toDatabase: (local: number) => number;
  /** The schema (unquoted): the advisory lock is taken per schema. */
  readonly schema: string;
  /** The quoted `checks` table. */
  readonly checksTable: string;
  /** The spec as stored; throws for one that cannot be stored. */
  readonly encode: (spec: CheckSpec, raw: unknown) => Record<string, unknown>;
  /** Tells the other instances that any number of checks changed, in the sync's transaction. */
  readonly notifyAll: (client: pg.PoolClient) => Promise<void>;
}

/** First key of the advisory lock config syncs take: "vigc". */
const SYNC_LOCK = 0x76696763;

/** A config sync moves a check to a new grid when its interval changed or it was a finished one-shot check and its lease is free. */
const REGRID = `((c.spec->'intervalMs') IS DISTINCT FROM (EXCLUDED.spec->'intervalMs') OR c.next_due_at IS NULL) AND (c.lease_owner IS NULL OR c.lease_until < now())`;

/**
 * Makes the config file's checks the `config` checks of the schema, in one transaction: adds the new
 * ones (first due at their spread slot), replaces changed specs (keeping state; a new interval moves
 * the check to its new grid), removes `config` checks the file no longer has. Checks from the API or
 * commands are left alone, unless the file now names their id (the file wins). Instances syncing at
 * once take turns (an advisory lock per schema). Notifies the others when anything changed.
 */
export async function writeConfigChecks(options: ConfigSyncOptions, checks: readonly ConfigCheck[]): Promise<ConfigSyncCounts> {
  const now = options.toDatabase(options.clock.now());
  const items = checks
    .map(({ spec, raw }) => ({
      id: spec.id,
      spec: options.encode(spec, raw),
      source_entry: raw === undefined ? null : raw,
      timeout_ms: timeoutOf(spec),
      due: firstDueAt(spec.id, spec.intervalMs, now),
    }))
    .sort((a, b) => compareIds(a.id, b.id));
  return inTransaction(options.pool, options.logger, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [SYNC_LOCK, options.schema]);
    const upserted = await client.query<{ inserted: boolean }>(
      `INSERT INTO ${options.checksTable} AS c (id, spec, source_entry, source, timeout_ms, next_due_at, slot_at, state)
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
    const removed = await client.query(`DELETE FROM ${options.checksTable} WHERE source = 'config' AND NOT (id = ANY($1::text[]))`, [items.map((item) => item.id)]);
    const added = upserted.rows.filter((row) => row.inserted).length;
    const counts = { added, updated: upserted.rows.length - added, removed: removed.rowCount ?? 0 };
    if (counts.added + counts.updated + counts.removed > 0) await options.notifyAll(client);
    return counts;
  });
}
