import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../src/postgres/migrations.js';
import { testDatabase, type TestDatabase } from '../helpers/postgres.js';

describe('migrate', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await testDatabase('migrations');
  });
  afterAll(() => db.drop());

  async function tables(schema: string): Promise<string[]> {
    const { rows } = await db.pool.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
      [schema],
    );
    return rows.map((row) => row.table_name);
  }

  it('creates every table from an empty schema, and a re-run is a no-op', async () => {
    const versions = (await loadMigrations()).map((m) => m.version);
    expect(versions[0]).toBe('0001_initial');
    expect(await tables(db.schema)).toEqual([]);

    const first = await migrate(db.pool, { schema: db.schema });
    expect(first.applied).toEqual(versions);
    expect(await tables(db.schema)).toEqual(expect.arrayContaining(['checks', 'incidents', 'instances', 'results', 'schema_migrations']));
    const recorded = await db.pool.query<{ version: string }>(`SELECT version FROM ${pg.escapeIdentifier(db.schema)}.schema_migrations ORDER BY version`);
    expect(recorded.rows.map((row) => row.version)).toEqual(versions);

    const again = await migrate(db.pool, { schema: db.schema });
    expect(again.applied).toEqual([]);
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${pg.escapeIdentifier(db.schema)}.schema_migrations`)).rows[0]).toEqual({ n: versions.length });
  });

  it('creates a schema of any name, quoted, and leaves other schemas alone', async () => {
    const odd = `${db.schema}-Odd "name"`;
    try {
      expect((await migrate(db.pool, { schema: odd })).applied.length).toBeGreaterThan(0);
      expect(await tables(odd)).toContain('checks');
    } finally {
      await db.pool.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(odd)} CASCADE`);
    }
  });

  it('lets instances that start together take turns: one applies, the others find nothing to do', async () => {
    const schema = `${db.schema}_race`;
    try {
      const runs = await Promise.all([1, 2, 3, 4].map(() => migrate(db.pool, { schema })));
      const appliedBy = runs.filter((run) => run.applied.length > 0);
      expect(appliedBy).toHaveLength(1);
    } finally {
      await db.pool.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
    }
  });

  it('applies only the migrations a schema has not had, and rolls a failing one back entirely', async () => {
    const schema = `${db.schema}_steps`;
    try {
      const base = [{ version: '0001_a', sql: 'CREATE TABLE {schema}.a (x int)' }];
      expect((await migrate(db.pool, { schema, migrations: base })).applied).toEqual(['0001_a']);
      const broken = [...base, { version: '0002_b', sql: 'CREATE TABLE {schema}.b (x int)' }, { version: '0003_c', sql: 'CREATE TABLE {schema}.c (x nosuchtype)' }];
      await expect(migrate(db.pool, { schema, migrations: broken })).rejects.toThrow(/migration 0003_c failed/);
      expect(await tables(schema)).toEqual(['a', 'schema_migrations']);
      const fixed = [...base, { version: '0002_b', sql: 'CREATE TABLE {schema}.b (x int)' }];
      expect((await migrate(db.pool, { schema, migrations: fixed })).applied).toEqual(['0002_b']);
    } finally {
      await db.pool.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
    }
  });
});
