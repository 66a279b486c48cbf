import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import type { KeyAndCert } from './tls.js';
import { freePort } from './processes.js';

/** Debian's MariaDB server binaries (package mariadb-server-core; mariadb-install-db also needs my_print_defaults, of mariadb-client-core). */
const MARIADBD = '/usr/sbin/mariadbd';
const INSTALL_DB = '/usr/bin/mariadb-install-db';
const PACKAGES = 'mariadb-server-core and mariadb-client-core';

/** A throwaway MariaDB server of one test file, on 127.0.0.1. */
export interface TestMariaDb {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** The server's Unix socket. */
  readonly socket: string;
  /** A user with every privilege, and its password (random). */
  readonly user: string;
  readonly password: string;
  /** An empty database, `test`. */
  readonly database: string;
  /** `mysql://user:password@127.0.0.1:port/test`. */
  readonly url: string;
  /** Runs one statement as `user` on a connection of the helper's own, and returns its rows. */
  query(sql: string, values?: unknown[]): Promise<unknown>;
  /** Stops the server and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

export interface TestMariaDbOptions {
  /** Serve TLS with this key and certificate (a MariaDB started without them has no TLS at all). */
  readonly tls?: KeyAndCert;
}

/**
 * Starts a MariaDB of its own for a test file: `mariadb-install-db` into a temp dir, then `mariadbd` on a
 * free 127.0.0.1 port with a user and database made by its init file, never the machine's own server.
 * Resolves once the server says it is ready for connections; throws, naming the Debian packages, when the
 * binaries are missing (tests fail, never skip). A watchdog stops the server should the test process die
 * without calling `stop`.
 */
export async function startMariaDb(options: TestMariaDbOptions = {}): Promise<TestMariaDb> {
  for (const binary of [MARIADBD, INSTALL_DB]) {
    if (!existsSync(binary)) throw new Error(`Expected the MariaDB server binary ${binary} for the tests, found none: install Debian's ${PACKAGES}`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'vigil-mariadb-'));
  const data = join(dir, 'data');
  // mariadbd refuses to run as root unless told to.
  const asRoot = userInfo().uid === 0 ? ['--user=root'] : [];
  try {
    execFileSync(INSTALL_DB, ['--no-defaults', `--datadir=${data}`, ...asRoot, '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve'], { stdio: 'pipe' });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    const output = `${(error as { stdout?: Buffer }).stdout?.toString() ?? ''}${(error as { stderr?: Buffer }).stderr?.toString() ?? ''}`;
    throw new Error(`mariadb-install-db failed for the throwaway test MariaDB (is Debian's ${PACKAGES} complete?): ${output || String(error)}`, { cause: error });
  }
  const user = 'vigil';
  const password = randomBytes(12).toString('hex');
  const init = join(dir, 'init.sql');
  await writeFile(init, `CREATE DATABASE test;\nCREATE USER '${user}'@'%' IDENTIFIED BY '${password}';\nGRANT ALL ON *.* TO '${user}'@'%' WITH GRANT OPTION;\n`);
  const tlsArgs: string[] = [];
  if (options.tls !== undefined) {
    await writeFile(join(dir, 'key.pem'), options.tls.key, { mode: 0o600 });
    await writeFile(join(dir, 'cert.pem'), options.tls.cert);
    tlsArgs.push(`--ssl-key=${join(dir, 'key.pem')}`, `--ssl-cert=${join(dir, 'cert.pem')}`);
  }
  const port = await freePort();
  const socket = join(dir, 'mysqld.sock');
  const server = spawn(
    MARIADBD,
    [
      '--no-defaults',
      `--datadir=${data}`,
      ...asRoot,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${socket}`,
      `--pid-file=${join(dir, 'mysqld.pid')}`,
      `--tmpdir=${dir}`,
      `--init-file=${init}`,
      '--skip-name-resolve',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=16M',
      ...tlsArgs,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const watchdog = startWatchdog(server, dir);
  try {
    await ready(server);
  } catch (error) {
    server.kill('SIGKILL');
    watchdog.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const url = `mysql://${user}:${password}@127.0.0.1:${port}/test`;
  const pool = mysql.createPool({ host: '127.0.0.1', port, user, password, database: 'test', connectionLimit: 2 });
  let stopped: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port,
    socket,
    user,
    password,
    database: 'test',
    url,
    async query(sql, values) {
      const [rows] = await pool.query(sql, values);
      return rows;
    },
    stop() {
      stopped ??= (async () => {
        await pool.end().catch(() => undefined);
        if (server.exitCode === null && server.signalCode === null) {
          const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
          // Its data is thrown away: no need for a clean shutdown.
          server.kill('SIGKILL');
          await exited;
        }
        watchdog.kill('SIGKILL');
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/** Waits for mariadbd's "ready for connections" on stderr; rejects with its log when it exits first or takes over 60 s. */
function ready(server: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => done(new Error(`Expected the throwaway MariaDB to accept connections within 60 s, it did not. Log:\n${log}`)), 60_000);
    const onData = (chunk: Buffer): void => {
      log += chunk.toString();
      if (log.includes('ready for connections')) done();
    };
    const onExit = (): void => done(new Error(`The throwaway MariaDB exited during start-up. Log:\n${log}`));
    const onError = (error: Error): void => done(new Error(`The throwaway MariaDB could not start (${error.message}); install Debian's ${PACKAGES}`));
    function done(error?: Error): void {
      clearTimeout(timer);
      server.stderr?.off('data', onData);
      server.off('exit', onExit);
      server.off('error', onError);
      // Keep draining the log so that a full pipe never blocks the server.
      server.stderr?.on('data', () => undefined);
      if (error === undefined) resolve();
      else reject(error);
    }
    server.stderr?.on('data', onData);
    server.once('exit', onExit);
    server.once('error', onError);
  });
}

/**
 * A shell that stops the server and removes its directory once this process is gone, even when the
 * test worker is killed without running `stop` or exit handlers; `stop` kills it first.
 */
function startWatchdog(server: ChildProcess, dir: string): ChildProcess {
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${server.pid ?? 0} 2>/dev/null; do sleep 1; done; kill -TERM ${server.pid ?? 0} 2>/dev/null; sleep 5; rm -rf '${dir.replace(/'/g, `'\\''`)}'`;
  const watchdog = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
  watchdog.unref();
  return watchdog;
}
