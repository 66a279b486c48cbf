-- vigil's PostgreSQL schema, version 1.
-- Conventions for every migration in this folder: files are named NNNN_name.sql and applied in name
-- order, each once, in one transaction under an advisory lock (see postgres-migrations.ts); `{schema}`
-- stands for the configured schema, already quoted, so every name is schema-qualified.

-- One row per known check, shared by every instance. `spec` is the resolved CheckSpec (attributes in a
-- tagged JSON form that keeps RegExps and Buffers); `source_entry` the config or API entry it came from.
CREATE TABLE {schema}.checks (
  id            text PRIMARY KEY,
  spec          jsonb NOT NULL,
  source_entry  jsonb,
  source        text NOT NULL CHECK (source IN ('config', 'api', 'runtime')),
  -- Bumped whenever spec or source_entry changes, so instances re-read a spec only when it changed.
  spec_rev      bigint NOT NULL DEFAULT 1,
  -- The spec's timeout, for the lease length of a claim.
  timeout_ms    integer NOT NULL CHECK (timeout_ms > 0),
  -- NULL: a one-shot check that is done.
  next_due_at   timestamptz,
  slot_at       timestamptz NOT NULL,
  lease_owner   text,
  lease_until   timestamptz,
  state         jsonb NOT NULL,
  -- Bumped by every claim and completion: a completion compares it with the one its claim saw.
  version       bigint NOT NULL DEFAULT 1,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Claiming: due checks whose lease is free, earliest first; expired leases through the second index.
CREATE INDEX checks_claim ON {schema}.checks (next_due_at) WHERE lease_owner IS NULL;
CREATE INDEX checks_lease ON {schema}.checks (lease_until) WHERE lease_owner IS NOT NULL;
CREATE INDEX checks_updated ON {schema}.checks (updated_at);

-- One row per outage of a check; `id` is the Incident's own (`<checkId>:<openedAt>`).
CREATE TABLE {schema}.incidents (
  id               text PRIMARY KEY,
  check_id         text NOT NULL,
  opened_at        timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  resolved_at      timestamptz,
  state            text NOT NULL,
  worst_state      text NOT NULL,
  reason           text NOT NULL,
  acknowledged_at  timestamptz,
  external_id      text,
  -- The Incident as the engine holds it.
  data             jsonb NOT NULL
);
CREATE INDEX incidents_check ON {schema}.incidents (check_id, opened_at DESC);
CREATE INDEX incidents_open ON {schema}.incidents (opened_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX incidents_opened ON {schema}.incidents (opened_at DESC);

-- Every vigil instance sharing the schema: an epoch one more on every start, a heartbeat every few
-- seconds; a row whose heartbeat is stale is marked dead (its leases simply expire).
CREATE TABLE {schema}.instances (
  id            text PRIMARY KEY,
  epoch         bigint NOT NULL,
  started_at    timestamptz NOT NULL,
  heartbeat_at  timestamptz NOT NULL,
  dead          boolean NOT NULL DEFAULT false,
  -- Free-form facts an instance publishes about itself (version, host, …).
  info          jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- Results history, written by the postgres-results handler and trimmed by its retention.
CREATE TABLE {schema}.results (
  id           bigserial PRIMARY KEY,
  check_id     text NOT NULL,
  state        text NOT NULL,
  reason       text NOT NULL,
  message      text NOT NULL,
  metrics      jsonb NOT NULL DEFAULT '[]'::jsonb,
  started_at   timestamptz NOT NULL,
  duration_ms  double precision NOT NULL
);
CREATE INDEX results_check ON {schema}.results (check_id, started_at DESC);
CREATE INDEX results_started ON {schema}.results (started_at);
