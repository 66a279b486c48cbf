import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { sqlCommand, type SqlAttributes } from '../../../src/commands/sql/sql.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';
import { freePort } from '../../helpers/processes.js';
import { testCertificates } from '../../helpers/tls.js';

/** The `sql` command against a real PostgreSQL (DATABASE_URL, or the test setup's own), and a few fake servers for what a real one will not do on demand. */

/** A name the resolver rejects on this machine without asking any server (a label may be at most 63 characters). */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
/** Put in URLs to show that it never reaches an outcome. */
const PASSWORD = 'Sup3r-Secret-pw';

const command = sqlCommand();
const logger = silentLogger();
let db: TestDatabase;
let checkCount = 0;

beforeAll(async () => {
  db = await testDatabase('sql');
});
afterAll(() => db?.drop());

const servers: Server[] = [];
const sockets = new Set<Socket>();
afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A check id of its own for each run, so that its connections can be told apart in pg_stat_activity (`vigil <id>`). */
function ctx(options: { signal?: AbortSignal; deadlineMs?: number } = {}): CommandContext {
  checkCount++;
  const deadlineMs = options.deadlineMs ?? 10_000;
  return { checkId: `sql-test-${checkCount}`, signal: options.signal ?? AbortSignal.timeout(deadlineMs), deadline: Date.now() + deadlineMs, logger, previous: null };
}

function parse(raw: Record<string, unknown>): SqlAttributes {
  const parsed = command.parse({ url: db.url, ...raw });
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, context: CommandContext = ctx()): Promise<CommandOutcome> {
  return command.run(parse(raw), context);
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
}

/** The test database's URL with another user, password, host or port. */
function urlWith(parts: { user?: string; password?: string; host?: string; port?: number; database?: string }): string {
  const url = new URL(db.url);
  if (parts.user !== undefined) url.username = parts.user;
  if (parts.password !== undefined) url.password = parts.password;
  if (parts.host !== undefined) url.hostname = parts.host;
  if (parts.port !== undefined) url.port = String(parts.port);
  if (parts.database !== undefined) url.pathname = `/${parts.database}`;
  return url.toString();
}

/** The server's name for messages: the URL without credentials. */
function display(): string {
  const url = new URL(db.url);
  return `postgres://${url.hostname}:${url.port || 5432}${url.pathname}`;
}

/** Backends of a run's connection, by the application name the command gives them. */
async function backendsOf(checkId: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [`vigil ${checkId}`]);
  return rows[0]?.n ?? -1;
}

async function listen(onConnection: (socket: Socket) => void): Promise<number> {
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Reads the client's first message (SSLRequest or StartupMessage: a length, then the rest) and hands it over. */
function onFirstMessage(socket: Socket, handle: (message: Buffer) => void): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    received = Buffer.concat([received, chunk]);
    if (received.length < 4 || received.length < received.readInt32BE(0)) return;
    socket.off('data', onData);
    handle(received);
  };
  socket.on('data', onData);
}

/** A PostgreSQL ErrorResponse message. */
function errorResponse(fields: Record<string, string>): Buffer {
  const body = Buffer.concat([...Object.entries(fields).map(([key, value]) => Buffer.from(`${key}${value}\0`)), Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

describe('sql on PostgreSQL: judging the rows', () => {
  it('is ok with the timings, the row count and the first value when the query only has to run', async () => {
    const outcome = await run({ query: 'SELECT 42 AS answer' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^${display().replace(/[.]/g, '\\.')}: 1 row in \\d+\\.\\d ms, first value 42$`));
    expect(metric(outcome, 'connect_time')).toMatchObject({ unit: 'ms', kind: 'gauge' });
    expect(metric(outcome, 'connect_time')?.value).toBeGreaterThan(0);
    expect(metric(outcome, 'query_time')).toMatchObject({ unit: 'ms', kind: 'gauge' });
    expect(metric(outcome, 'rows')).toEqual({ name: 'rows', value: 1, unit: '', kind: 'gauge' });
    expect(metric(outcome, 'value')).toEqual({ name: 'value', value: 42, unit: '', kind: 'gauge' });
  });

  it('is ok with no value metric for a value that is not a number, and for a statement without rows', async () => {
    const text = await run({ query: "SELECT 'hello'::text" });
    expect(text).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(text.message).toMatch(/: 1 row in \S+ ms, first value "hello"$/);
    expect(metric(text, 'value')).toBeUndefined();
    const none = await run({ query: 'SELECT 1 WHERE false' });
    expect(none).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(none.message).toMatch(/: 0 rows in \S+ ms$/);
    expect(metric(none, 'rows')?.value).toBe(0);
  });

  it('judges the first value against warn and crit, at or above, and reports them with the value metric', async () => {
    const thresholds = { warn: 10, crit: 20 };
    expect(await run({ query: 'SELECT 9', ...thresholds })).toMatchObject({ state: 'ok', reason: 'ok' });
    const warn = await run({ query: 'SELECT 10::bigint', ...thresholds });
    expect(warn).toMatchObject({ state: 'warn', reason: 'threshold' });
    expect(warn.message).toMatch(/: first value 10 is at or above the warning threshold of 10 \(1 row in \S+ ms\)$/);
    expect(metric(warn, 'value')).toEqual({ name: 'value', value: 10, unit: '', kind: 'gauge', warn: 10, crit: 20 });
    const crit = await run({ query: 'SELECT 20.5::numeric', ...thresholds });
    expect(crit).toMatchObject({ state: 'crit', reason: 'threshold' });
    expect(crit.message).toMatch(/: first value 20\.5 is at or above the critical threshold of 20 /);
  });

  it('judges the first value against warnBelow and critBelow, at or below', async () => {
    const thresholds = { warnBelow: 3, critBelow: 1 };
    expect(await run({ query: 'SELECT 4', ...thresholds })).toMatchObject({ state: 'ok', reason: 'ok' });
    const warn = await run({ query: 'SELECT 3', ...thresholds });
    expect(warn).toMatchObject({ state: 'warn', reason: 'threshold' });
    expect(warn.message).toContain('first value 3 is at or below the warning threshold of 3');
    const crit = await run({ query: 'SELECT 0', ...thresholds });
    expect(crit).toMatchObject({ state: 'crit', reason: 'threshold' });
    expect(crit.message).toContain('first value 0 is at or below the critical threshold of 1');
    // Thresholds below are not the metric's (which are "at or above").
    expect(metric(crit, 'value')).toEqual({ name: 'value', value: 0, unit: '', kind: 'gauge' });
  });

  it('is crit unexpected-value when the first value is not a number, and no-rows when there is none', async () => {
    const text = await run({ query: "SELECT 'lots'", crit: 5 });
    expect(text).toMatchObject({ state: 'crit', reason: 'unexpected-value' });
    expect(text.message).toMatch(/: first value "lots", expected a number \(1 row in \S+ ms\)$/);
    const nulled = await run({ query: 'SELECT NULL::int', crit: 5 });
    expect(nulled).toMatchObject({ state: 'crit', reason: 'unexpected-value' });
    expect(nulled.message).toContain('first value NULL, expected a number');
    const none = await run({ query: 'SELECT 1 WHERE false', crit: 5 });
    expect(none).toMatchObject({ state: 'crit', reason: 'no-rows' });
    expect(none.message).toMatch(/: 0 rows in \S+ ms, expected one whose first value is a number$/);
  });

  it('compares the first value with expect: text, a regular expression, a number, a truth value', async () => {
    expect(await run({ query: "SELECT 'primary'", expect: 'primary' })).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await run({ query: "SELECT 'PRIMARY (since 3 days)'", expect: '/^primary\\b/i' })).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await run({ query: 'SELECT 7::numeric(4,2)', expect: 7 })).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await run({ query: 'SELECT pg_is_in_recovery()', expect: false })).toMatchObject({ state: 'ok', reason: 'ok' });
    const wrong = await run({ query: "SELECT 'replica'", expect: 'primary' });
    expect(wrong).toMatchObject({ state: 'crit', reason: 'unexpected-value' });
    expect(wrong.message).toMatch(/: first value "replica", expected it to be "primary" \(1 row in \S+ ms\)$/);
    const unmatched = await run({ query: "SELECT 'replica'", expect: '/^primary/' });
    expect(unmatched.message).toContain('first value "replica", expected it to match /^primary/');
    expect(await run({ query: 'SELECT true', expect: false })).toMatchObject({ state: 'crit', reason: 'unexpected-value' });
    const none = await run({ query: 'SELECT 1 WHERE false', expect: 1 });
    expect(none).toMatchObject({ state: 'crit', reason: 'no-rows' });
    expect(none.message).toMatch(/: 0 rows in \S+ ms, expected one whose first value to be 1$/);
  });

  it('counts the rows against expectRows: no-rows when there are none, unexpected-rows otherwise', async () => {
    const series = (n: number) => `SELECT * FROM generate_series(1, ${n})`;
    expect(await run({ query: series(3), expectRows: 3 })).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await run({ query: series(2), expectRows: { min: 1, max: 5 } })).toMatchObject({ state: 'ok', reason: 'ok' });
    const none = await run({ query: 'SELECT 1 WHERE false', expectRows: { min: 1 } });
    expect(none).toMatchObject({ state: 'crit', reason: 'no-rows' });
    expect(none.message).toMatch(/: 0 rows in \S+ ms, expected at least 1 row$/);
    const many = await run({ query: series(4), expectRows: { max: 2 } });
    expect(many).toMatchObject({ state: 'crit', reason: 'unexpected-rows' });
    expect(many.message).toMatch(/: 4 rows in \S+ ms, expected at most 2 rows$/);
    const stuck = await run({ query: series(1), expectRows: 0 });
    expect(stuck).toMatchObject({ state: 'crit', reason: 'unexpected-rows' });
    expect(stuck.message).toMatch(/: 1 row in \S+ ms, expected exactly 0 rows$/);
    expect(metric(stuck, 'rows')?.value).toBe(1);
  });

  it('binds params as values, never as SQL', async () => {
    const outcome = await run({ query: 'SELECT $1::text || $2::int', params: ["'; DROP TABLE x; --", 5], expect: "'; DROP TABLE x; --5" });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('judges the first result set with columns of several statements', async () => {
    expect(await run({ query: "SET LOCAL work_mem = '1MB'; SELECT 5; SELECT 6", expect: 5 })).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('closes its connection before it returns, whatever the outcome', async () => {
    for (const query of ['SELECT 1', 'SELECT * FROM no_such_table']) {
      const context = ctx();
      await run({ query }, context);
      await vi.waitFor(async () => expect(await backendsOf(context.checkId)).toBe(0), { timeout: 5000, interval: 20 });
    }
  });
});

describe('sql on PostgreSQL: failures', () => {
  it('is crit query-error with the SQLSTATE when the server refuses the query', async () => {
    const outcome = await run({ query: 'SELECT * FROM no_such_table' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'query-error' });
    expect(outcome.message).toBe(`query on ${display()} failed: relation "no_such_table" does not exist (SQLSTATE 42P01)`);
    expect(metric(outcome, 'connect_time')).toBeDefined();
  });

  it('is crit auth-failed for a role the server does not know, without naming it', async () => {
    const outcome = await run({ url: urlWith({ user: 'no_such_role', password: PASSWORD }), query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'auth-failed' });
    // `role does not exist` where the server trusts 127.0.0.1 (as the test setup's own does), a failed password otherwise.
    expect(outcome.message).toMatch(
      new RegExp(`^authentication failed at ${display().replace(/[.]/g, '\\.')}: (role "\\*\\*\\*" does not exist \\(SQLSTATE 28000\\)|password authentication failed for user "\\*\\*\\*" \\(SQLSTATE 28P01\\))$`),
    );
    expect(outcome.message).not.toContain('no_such_role');
  });

  it('is crit auth-failed for a wrong password, and scrubs the user and password a server quotes', async () => {
    // A server that asks for a cleartext password and quotes back what it got.
    const port = await listen((socket) => {
      onFirstMessage(socket, () => {
        socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
        socket.once('data', (password: Buffer) => {
          const got = password.subarray(5, password.length - 1).toString();
          socket.end(errorResponse({ S: 'FATAL', V: 'FATAL', C: '28P01', M: `password authentication failed for user "app" (got "${got}")` }));
        });
      });
    });
    const url = `postgres://app:${PASSWORD}@127.0.0.1:${port}/test`;
    const outcome = await run({ url, query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'auth-failed' });
    expect(outcome.message).toBe(`authentication failed at postgres://127.0.0.1:${port}/test: password authentication failed for user "***" (got "***") (SQLSTATE 28P01)`);
  });

  it('is crit connection-error for a database that does not exist', async () => {
    const outcome = await run({ url: urlWith({ database: 'no_such_database' }), query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'connection-error' });
    expect(outcome.message).toMatch(/^cannot connect to postgres:\/\/\S+\/no_such_database: database "no_such_database" does not exist \(SQLSTATE 3D000\)$/);
  });

  it('is crit connection-error when the server ends the session during the query', async () => {
    const outcome = await run({ query: 'SELECT pg_terminate_backend(pg_backend_pid())' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'connection-error' });
    expect(outcome.message).toMatch(new RegExp(`^connection with ${display().replace(/[.]/g, '\\.')} failed during the query: terminating connection due to administrator command \\(SQLSTATE 57P01\\)$`));
  });

  it('is crit refused when nothing listens', async () => {
    const port = await freePort();
    const outcome = await run({ url: urlWith({ host: '127.0.0.1', port }), query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'refused' });
    expect(outcome.message).toMatch(new RegExp(`^connection refused by postgres://127\\.0\\.0\\.1:${port}/\\S+ \\(ECONNREFUSED\\)$`));
  });

  it('is crit dns when the host name does not resolve', async () => {
    const outcome = await run({ url: `postgres://app:${PASSWORD}@${UNRESOLVABLE}/test`, query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'dns' });
    expect(outcome.message).toMatch(new RegExp(`^cannot resolve host ${UNRESOLVABLE} \\((ENOTFOUND|EAI_\\w+)\\)$`));
  });

  it('is crit tls-error when the server does not speak TLS', async () => {
    const port = await listen((socket) => onFirstMessage(socket, () => socket.write('N')));
    const outcome = await run({ url: `postgres://app@127.0.0.1:${port}/test`, query: 'SELECT 1', tls: 'require' });
    expect(outcome).toEqual({ state: 'crit', reason: 'tls-error', message: `TLS (require) with postgres://127.0.0.1:${port}/test failed: The server does not support SSL connections` });
  });

  it('is crit tls-error when the server’s certificate is not trusted', async () => {
    const { selfSigned } = await testCertificates();
    const port = await listen((socket) =>
      onFirstMessage(socket, () => {
        socket.write('S');
        const secure = new TLSSocket(socket, { isServer: true, key: selfSigned.key, cert: selfSigned.cert });
        secure.on('error', () => undefined);
      }),
    );
    const outcome = await run({ url: `postgres://app@127.0.0.1:${port}/test?sslmode=verify-full`, query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(outcome.message).toBe(`TLS (verify-full) with postgres://127.0.0.1:${port}/test failed: DEPTH_ZERO_SELF_SIGNED_CERT self-signed certificate`);
  });
});

describe('sql on PostgreSQL: time', () => {
  it('does not connect when the run is aborted already', async () => {
    let connections = 0;
    const port = await listen(() => connections++);
    const outcome = await run({ url: `postgres://app@127.0.0.1:${port}/test`, query: 'SELECT 1' }, ctx({ signal: AbortSignal.abort() }));
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: `timed out before connecting to postgres://127.0.0.1:${port}/test` });
    expect(connections).toBe(0);
  });

  it('returns at the abort while connecting to a server that does not answer, and closes the socket', async () => {
    const port = await listen(() => undefined);
    const controller = new AbortController();
    const running = run({ url: `postgres://app@127.0.0.1:${port}/test`, query: 'SELECT 1' }, ctx({ signal: controller.signal }));
    await vi.waitFor(() => expect(sockets.size).toBe(1), { timeout: 5000, interval: 10 });
    const [socket] = sockets;
    const closedByClient = once(socket as Socket, 'close');
    controller.abort(new Error('deadline'));
    expect(await running).toEqual({ state: 'crit', reason: 'timeout', message: `timed out connecting to postgres://127.0.0.1:${port}/test` });
    await closedByClient;
  });

  it('returns at the abort during a slow query, and the server cancels the query at the deadline', async () => {
    // The abort comes a little before the deadline, so that it is the abort, not the server, that ends the run.
    const context = ctx({ signal: AbortSignal.timeout(1000), deadlineMs: 1500 });
    const outcome = await run({ query: 'SELECT pg_sleep(60)' }, context);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for the query on ${display()}` });
    expect(metric(outcome, 'connect_time')).toBeDefined();
    // Without the statement timeout the backend would sleep on for a minute with nobody listening.
    await vi.waitFor(async () => expect(await backendsOf(context.checkId)).toBe(0), { timeout: 10_000, interval: 50 });
  });

  it('is crit timeout when the server’s statement timeout, set from the deadline, stops the query first', async () => {
    // A runner whose abort comes late: the server's own timeout, from `deadline`, is what ends the query.
    const late = new AbortController();
    const outcome = await run({ query: 'SELECT pg_sleep(60)' }, { ...ctx({ deadlineMs: 500 }), signal: late.signal });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(outcome.message).toBe(`the query on ${display()} ran into the statement timeout vigil set from the check's timeout: canceling statement due to statement timeout (SQLSTATE 57014)`);
  });
});

describe('sql on PostgreSQL: secrets', () => {
  it('never puts the URL’s password in an outcome, whatever happens', async () => {
    const refusedPort = await freePort();
    const silentPort = await listen(() => undefined);
    const withPassword = urlWith({ password: PASSWORD });
    const controller = new AbortController();
    const outcomes = await Promise.all([
      run({ url: withPassword, query: 'SELECT 1' }),
      // The server quotes the bad input back: the password, here.
      run({ url: withPassword, query: `SELECT '${PASSWORD}'::int` }),
      run({ url: withPassword, query: `SELECT '${PASSWORD}'` }),
      run({ url: urlWith({ password: PASSWORD, database: 'no_such_database' }), query: 'SELECT 1' }),
      run({ url: urlWith({ password: PASSWORD, host: '127.0.0.1', port: refusedPort }), query: 'SELECT 1' }),
      run({ url: `postgres://app:${PASSWORD}@${UNRESOLVABLE}/test`, query: 'SELECT 1' }),
      run({ url: `postgres://app:${PASSWORD}@127.0.0.1:${silentPort}/test`, query: 'SELECT 1' }, ctx({ signal: controller.signal })),
      (async () => {
        await vi.waitFor(() => expect(sockets.size).toBeGreaterThan(0), { timeout: 5000, interval: 10 });
        controller.abort();
        return null;
      })(),
    ]);
    expect(outcomes.map((outcome) => outcome?.reason)).toEqual(['ok', 'query-error', 'ok', 'connection-error', 'refused', 'dns', 'timeout', undefined]);
    for (const outcome of outcomes) expect(JSON.stringify(outcome)).not.toContain(PASSWORD);
    expect(outcomes[1]?.message).toContain('invalid input syntax for type integer: "***"');
  });
});
