import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { errorMessage } from '../core/errors.js';

/**
 * vigil's schema in PostgreSQL: versioned SQL files (`migrations/NNNN_name.sql`) applied in name order,
 * each once, recorded in `<schema>.schema_migrations`. In the files `{schema}` stands for the quoted
 * schema name, so one database can hold several vigil schemas (one per test file, one per tenant).
 */

/** A schema name vigil uses when the config names none. */
export const DEFAULT_SCHEMA = 'vigil';

/** One migration file. */
export interface Migration {
  /** The file name without `.sql`, e.g. `0001_initial`; migrations apply in this order. */
  readonly version: string;
  /** The SQL, `{schema}` not yet replaced. */
  readonly sql: string;
}

export interface MigrateOptions {
  /** The schema to create or bring up to date; default `vigil`. */
  readonly schema?: string;
  /** The migrations to apply; default the files in `migrations/` beside this module. */
  readonly migrations?: readonly Migration[];
}

const FILE_NAME = /^(\d{4}_[a-z0-9_]+)\.sql$/;

/**
 * The folder of migration files: beside this module (`dist/postgres/migrations` once the build copies
 * it there), else the source tree's, for a build that did not copy it.
 */
export function migrationsDir(): string {
  const beside = fileURLToPath(new URL('./migrations/', import.meta.url));
  if (existsSync(beside)) return beside;
  const source = fileURLToPath(new URL('../../src/postgres/migrations/', import.meta.url));
  if (existsSync(source)) return source;
  throw new Error(`Expected vigil's SQL migrations in ${beside}, found no such folder (was the build's copy step skipped?)`);
}

/** Reads the migration files of `dir` (default `migrationsDir()`), in the order they apply. */
export async function loadMigrations(dir: string = migrationsDir()): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const name of names) {
    const match = FILE_NAME.exec(name);
    if (!match) throw new Error(`Expected migration files named like 0001_initial.sql in ${dir}, got ${JSON.stringify(name)}`);
    migrations.push({ version: match[1] as string, sql: await readFile(`${dir}/${name}`, 'utf8') });
  }
  return migrations;
}

/**
 * Creates `schema` if needed and applies the migrations it has not had yet, in one transaction under an
 * advisory lock (instances starting together take turns; the second finds nothing to do). Idempotent.
 * Returns the versions it applied, in order (empty when the schema was up to date).
 */
export async function migrate(pool: pg.Pool, options: MigrateOptions = {}): Promise<{ applied: string[] }> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  if (schema === '') throw new TypeError('Expected a non-empty schema name, got ""');
  const migrations = options.migrations ?? (await loadMigrations());
  const quoted = pg.escapeIdentifier(schema);
  const client = await pool.connect();
  const applied: string[] = [];
  let broken = false;
  try {
    await client.query('BEGIN');
    // Held until COMMIT/ROLLBACK; keyed by the schema so different schemas migrate independently.
    await client.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [MIGRATION_LOCK, schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoted}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${quoted}.schema_migrations (
         version text PRIMARY KEY,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const done = new Set((await client.query<{ version: string }>(`SELECT version FROM ${quoted}.schema_migrations`)).rows.map((row) => row.version));
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      try {
        await client.query(migration.sql.replaceAll('{schema}', quoted));
      } catch (error) {
        throw new Error(`migration ${migration.version} failed in schema ${schema}: ${errorMessage(error)}`, { cause: error });
      }
      await client.query(`INSERT INTO ${quoted}.schema_migrations (version, checksum) VALUES ($1, $2)`, [migration.version, checksum(migration.sql)]);
      applied.push(migration.version);
    }
    await client.query('COMMIT');
    return { applied };
  } catch (error) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw error;
  } finally {
    client.release(broken);
  }
}

/** First key of the advisory lock migrations take (the second is the schema's hash): "vigl". */
const MIGRATION_LOCK = 0x7669676c;

function checksum(sql: string): string {
  return createHash('sha256').update(sql).digest('hex');
}
