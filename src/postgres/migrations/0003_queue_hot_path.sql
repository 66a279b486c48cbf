-- vigil's PostgreSQL schema, version 3: a cheaper claim and completion, the queue's hot path.

-- No query reads checks by update time (a refresh compares every row), yet every claim and every
-- completion wrote an entry into this index.
DROP INDEX {schema}.checks_updated;

-- Room on each page for the next versions of its rows: a claim or completion writes the new version
-- beside the old one, whose space pruning reclaims, rather than at the end of an ever-growing table.
-- (Applies to pages filled from now on.)
ALTER TABLE {schema}.checks SET (fillfactor = 70);
