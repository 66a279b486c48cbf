-- Heartbeats through the database: a supervised process that already holds a PostgreSQL connection
-- (or `vigil beat --database URL --id NAME` on its behalf) upserts its row every few seconds, and a
-- `heartbeat-table` check judges the row's age as `heartbeat-file` judges a file's.
-- `timestamp` is the beat's time (the database's clock unless the writer gives one); `uptime` is in
-- seconds, `memory_usage` in bytes (resident set size), `beat` counts the writer's beats from 1.
CREATE TABLE {schema}.heartbeats (
  id            text PRIMARY KEY,
  timestamp     timestamptz NOT NULL,
  uptime        double precision,
  memory_usage  bigint,
  pid           integer,
  beat          bigint,
  host          text
);
