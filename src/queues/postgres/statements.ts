import { createHash } from 'node:crypto';
import pg from 'pg';

/**
 * The statements of the PostgreSQL queue's hot path: claiming due checks, writing completions (with
 * their incident rows) and asking for the next due time. Each is sent by name, so a connection parses
 * and plans it once rather than on every call, and each is one round trip. `bench/postgres-queue.ts`
 * runs the very same statements in its bare baseline.
 */

/** A statement prepared once per connection under `name` (unique to its text). */
export interface NamedStatement {
  readonly name: string;
  readonly text: string;
}

export interface QueueStatements {
  /**
   * Leases up to `$3` due checks, earliest first: free ones through `checks_claim`, expired leases
   * through `checks_lease`, both `FOR UPDATE SKIP LOCKED` so concurrent claims never share a check.
   * `$1` owner, `$2` now (epoch ms on the database's clock: the table's times are), `$3` limit, `$4` lease factor, `$5` lease margin (ms), `$6` ids to
   * leave alone (text[]: those running here, those this instance cannot read). Returns `ClaimedRow`s.
   */
  readonly claim: NamedStatement;
  /**
   * Writes completions with compare-and-set: a row is written only while `$1` holds its lease at the
   * claimed version. `$2` is a jsonb array of `CompletionRow`s. An acknowledgement the row holds for
   * the very incident the completion's state has unacknowledged is kept. Returns `WrittenRow`s.
   */
  readonly complete: NamedStatement;
  /**
   * `complete`, and in the same statement (one transaction) the incident rows of the completions that
   * were written: `$3` a jsonb array of incidents to open or update, `$4` one of `{ id, checkId, at }`
   * to resolve. Returns `WrittenRow`s.
   */
  readonly completeWithIncidents: NamedStatement;
  /**
   * Who holds the rows of completions that were not written: `$1` a jsonb array of `{ id, version,
   * state }`. `same` recognises a completion whose COMMIT went through although the answer was lost.
   */
  readonly holders: NamedStatement;
  /** Epoch ms (the database's clock) at which the next check may be claimed (due, or its lease expiring); `$1` ids to leave alone. */
  readonly nextDue: NamedStatement;
}

/** A row `claim` returns; times in epoch ms, on the database's clock as read (see database-clock.ts). */
export interface ClaimedRow {
  id: string;
  spec_rev: number;
  version: number;
  state: unknown;
  due: number | null;
  slot: number;
  lease_until: number;
}

/** One element of `complete`'s `$2`; times in epoch ms on the database's clock, `due` null for a one-shot check that is done. */
export interface CompletionRow {
  readonly id: string;
  readonly version: number;
  readonly state: unknown;
  readonly due: number | null;
  readonly slot: number;
}

/** A row `complete` wrote; `merged`: an acknowledgement the row held was kept in the state written. */
export interface WrittenRow {
  id: string;
  version: number;
  updated: number;
  merged: boolean;
}

/** A row `holders` found. */
export interface HolderRow {
  id: string;
  lease_owner: string | null;
  version: number;
  same: boolean;
}

/** The row (c) holds an acknowledgement of the very incident the completion's state (v) has unacknowledged. */
export const KEEPS_ACK = `(c.state->'incident'->>'id') = (v.state->'incident'->>'id')
  AND jsonb_typeof(v.state->'incident'->'acknowledgedAt') = 'null' AND jsonb_typeof(c.state->'incident'->'acknowledgedAt') = 'number'`;

/**
 * Opens or updates incident rows from `{source}`, a set of Incident objects `d`; `{filter}` narrows it.
 * Once acknowledged or given an external id, always: a state computed before that does not undo it.
 */
const UPSERT_INCIDENTS = `INSERT INTO {incidents} AS i (id, check_id, opened_at, updated_at, resolved_at, state, worst_state, reason, acknowledged_at, external_id, data)
  SELECT d->>'id', d->>'checkId', to_timestamp((d->>'openedAt')::float8 / 1000), to_timestamp((d->>'updatedAt')::float8 / 1000),
         to_timestamp((d->>'resolvedAt')::float8 / 1000), d->>'state', d->>'worstState', d->>'reason',
         to_timestamp((d->>'acknowledgedAt')::float8 / 1000), d->>'externalId', d
  FROM {source} {filter}
  ON CONFLICT (id) DO UPDATE SET updated_at = EXCLUDED.updated_at, state = EXCLUDED.state, worst_state = EXCLUDED.worst_state,
    reason = EXCLUDED.reason,
    acknowledged_at = coalesce(EXCLUDED.acknowledged_at, i.acknowledged_at), external_id = coalesce(EXCLUDED.external_id, i.external_id),
    data = EXCLUDED.data
      || CASE WHEN EXCLUDED.acknowledged_at IS NULL AND i.acknowledged_at IS NOT NULL THEN jsonb_build_object('acknowledgedAt', i.data->'acknowledgedAt') ELSE '{}'::jsonb END
      || CASE WHEN EXCLUDED.external_id IS NULL AND i.external_id IS NOT NULL THEN jsonb_build_object('externalId', i.data->'externalId') ELSE '{}'::jsonb END
  WHERE i.resolved_at IS NULL`;

/** Resolves the open incident rows `r` (id, check_id, at) of `{source}`; `{filter}` narrows them. */
const RESOLVE_INCIDENTS = `UPDATE {incidents} AS i
  SET resolved_at = to_timestamp(r.at / 1000), updated_at = to_timestamp(r.at / 1000),
      data = i.data || jsonb_build_object('resolvedAt', r.at, 'updatedAt', r.at)
  FROM {source}
  WHERE i.id = r.id AND i.resolved_at IS NULL {filter}`;

/** The statements for one schema. */
export function queueStatements(schema: string): QueueStatements {
  const quoted = pg.escapeIdentifier(schema);
  const checks = `${quoted}.checks`;
  const incidents = `${quoted}.incidents`;
  const complete = `UPDATE ${checks} AS c
    SET state = CASE WHEN ${KEEPS_ACK} THEN jsonb_set(v.state, '{incident,acknowledgedAt}', c.state->'incident'->'acknowledgedAt') ELSE v.state END,
        next_due_at = to_timestamp(v.due / 1000), slot_at = to_timestamp(v.slot / 1000),
        version = c.version + 1, lease_owner = NULL, lease_until = NULL, updated_at = now()
    FROM jsonb_to_recordset($2::jsonb) AS v(id text, version bigint, state jsonb, due float8, slot float8)
    WHERE c.id = v.id AND c.lease_owner = $1 AND c.version = v.version
    RETURNING c.id, c.version::float8 AS version, (extract(epoch FROM c.updated_at) * 1000)::float8 AS updated,
      (c.state->'incident'->'acknowledgedAt') IS DISTINCT FROM (v.state->'incident'->'acknowledgedAt') AS merged`;
  return {
    claim: named(
      'claim',
      `WITH free AS (
         SELECT id, next_due_at FROM ${checks}
         WHERE lease_owner IS NULL AND next_due_at <= to_timestamp($2::float8 / 1000) AND id <> ALL ($6::text[])
         ORDER BY next_due_at LIMIT $3
         FOR UPDATE SKIP LOCKED),
       expired AS (
         SELECT id, next_due_at FROM ${checks}
         WHERE lease_owner IS NOT NULL AND lease_until < now() AND next_due_at <= to_timestamp($2::float8 / 1000) AND id <> ALL ($6::text[])
         ORDER BY lease_until LIMIT $3
         FOR UPDATE SKIP LOCKED),
       picked AS (SELECT id FROM (SELECT * FROM free UNION ALL SELECT * FROM expired) AS due ORDER BY next_due_at LIMIT $3)
       UPDATE ${checks} AS c
       SET lease_owner = $1, lease_until = now() + (c.timeout_ms * $4::float8 + $5::float8) * interval '1 millisecond', version = c.version + 1
       FROM picked
       WHERE c.id = picked.id
       RETURNING c.id, c.spec_rev::float8 AS spec_rev, c.version::float8 AS version, c.state,
         (extract(epoch FROM c.next_due_at) * 1000)::float8 AS due, (extract(epoch FROM c.slot_at) * 1000)::float8 AS slot,
         (extract(epoch FROM c.lease_until) * 1000)::float8 AS lease_until`,
    ),
    complete: named('complete', complete),
    completeWithIncidents: named(
      'complete_incidents',
      `WITH done AS (${complete}),
       opened AS (${incidentUpsert(incidents, 'jsonb_array_elements($3::jsonb) AS d', "WHERE d->>'checkId' IN (SELECT id FROM done)")}),
       resolved AS (${incidentResolve(incidents, 'jsonb_to_recordset($4::jsonb) AS r(id text, "checkId" text, at float8)', 'AND r."checkId" IN (SELECT id FROM done)')})
       SELECT * FROM done`,
    ),
    holders: named(
      'holders',
      `SELECT c.id, c.lease_owner, c.version::float8 AS version, (c.state = v.state AND c.version = v.version + 1 AND c.lease_owner IS NULL) AS same
       FROM ${checks} AS c JOIN jsonb_to_recordset($1::jsonb) AS v(id text, version bigint, state jsonb) ON c.id = v.id`,
    ),
    nextDue: named(
      'next_due',
      `SELECT (extract(epoch FROM least(
         (SELECT min(next_due_at) FROM ${checks} WHERE lease_owner IS NULL AND id <> ALL ($1::text[])),
         (SELECT min(greatest(next_due_at, lease_until)) FROM ${checks}
           WHERE lease_owner IS NOT NULL AND next_due_at IS NOT NULL AND id <> ALL ($1::text[]))
       )) * 1000)::float8 AS next`,
    ),
  };
}

/** Opens or updates the incidents of `source` (a set of Incident objects named `d`), narrowed by `filter`. */
export function incidentUpsert(incidents: string, source: string, filter = ''): string {
  return UPSERT_INCIDENTS.replace('{incidents}', incidents).replace('{source}', source).replace('{filter}', filter);
}

/** Resolves the incidents of `source` (rows `r` with id and at), narrowed by `filter` (`AND …`). */
export function incidentResolve(incidents: string, source: string, filter = ''): string {
  return RESOLVE_INCIDENTS.replace('{incidents}', incidents).replace('{source}', source).replace('{filter}', filter);
}

function named(kind: string, text: string): NamedStatement {
  return { name: `vigil_${kind}_${createHash('sha256').update(text).digest('hex').slice(0, 16)}`, text };
}
