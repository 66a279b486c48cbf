import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { sqlCommand, type SqlAttributes } from '../../../src/commands/sql/sql.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { startMariaDb, type TestMariaDb } from '../../helpers/mariadb.js';
import { freePort } from '../../helpers/processes.js';
import { testCertificates } from '../../helpers/tls.js';

/**
 * The `sql` command against a throwaway MariaDB of this file's own (test/helpers/mariadb.ts), serving TLS
 * with a certificate of the test CA. The checks log in as a user of their own, `checker`, so that their
 * connections can be counted apart from the helper's.
 */

const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
const CHECKER_PASSWORD = 'Ch3cker-Secret-pw';

const command = sqlCommand();
const logger = silentLogger();
let maria: TestMariaDb;
let url: string;
let where: string;

beforeAll(async () => {
  const { leaf } = await testCertificates();
  maria = await startMariaDb({ tls: leaf });
  await maria.query(`CREATE USER 'checker'@'%' IDENTIFIED BY '${CHECKER_PASSWORD}'`);
  await maria.query("GRANT ALL ON test.* TO 'checker'@'%'");
  await maria.query('CREATE TABLE test.jobs (id INT PRIMARY KEY, state VARCHAR(20), queued_at DATETIME, price DECIMAL(10,2))');
  await maria.query("INSERT INTO test.jobs VALUES (1, 'done', '2024-05-01 12:00:00', 9.50), (2, 'stuck', '2024-05-01 12:30:00', 120.25)");
  url = `mariadb://checker:${CHECKER_PASSWORD}@127.0.0.1:${maria.port}/test`;
  where = `mariadb://127.0.0.1:${maria.port}/test`;
});
afterAll(() => maria?.stop());

const servers: Server[] = [];
const sockets = new Set<Socket>();
afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

function ctx(options: { signal?: AbortSignal; deadlineMs?: number } = {}): CommandContext {
  const deadlineMs = options.deadlineMs ?? 10_000;
  return { checkId: 'sql-mariadb', signal: options.signal ?? AbortSignal.timeout(deadlineMs), deadline: Date.now() + deadlineMs, logger, previous: null };
}

function parse(raw: Record<string, unknown>): SqlAttributes {
  const parsed = command.parse({ url, ...raw });
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, context: CommandContext = ctx()): Promise<CommandOutcome> {
  return command.run(parse(raw), context);
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
}

/** Connections of the checks' user, as the server lists them. */
async function checkerConnections(): Promise<number> {
  const rows = (await maria.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = 'checker'")) as { n: number }[];
  return Number(rows[0]?.n);
}

describe('sql on MariaDB: judging the rows', () => {
  it('is ok with the timings, the row count and a numeric first value, and closes its connection', async () => {
    const outcome = await run({ query: "SELECT COUNT(*) FROM jobs WHERE state = 'stuck'", warn: 5, crit: 10 });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: expect.stringMatching(new RegExp(`^${where.replace(/[.]/g, '\\.')}: 1 row in \\S+ ms, first value 1$`)) as unknown });
    expect(metric(outcome, 'connect_time')?.value).toBeGreaterThan(0);
    expect(metric(outcome, 'query_time')).toMatchObject({ unit: 'ms' });
    expect(metric(outcome, 'rows')?.value).toBe(1);
    expect(metric(outcome, 'value')).toEqual({ name: 'value', value: 1, unit: '', kind: 'gauge', warn: 5, crit: 10 });
    await vi.waitFor(async () => expect(await checkerConnections()).toBe(0), { timeout: 5000, interval: 20 });
  });

  it('judges decimals, dates and text in the server’s own words', async () => {
    const price = await run({ query: 'SELECT price FROM jobs WHERE id = 2', warn: 100, crit: 200 });
    expect(price).toMatchObject({ state: 'warn', reason: 'threshold' });
    expect(price.message).toContain('first value 120.25 is at or above the warning threshold of 100');
    expect(await run({ query: 'SELECT queued_at FROM jobs WHERE id = 1', expect: '2024-05-01 12:00:00' })).toMatchObject({ state: 'ok' });
    expect(await run({ query: 'SELECT state FROM jobs ORDER BY id', expect: '/^do/' })).toMatchObject({ state: 'ok' });
    expect(await run({ query: 'SELECT 1 = 1', expect: true })).toMatchObject({ state: 'ok' });
    const wrong = await run({ query: 'SELECT state FROM jobs WHERE id = 2', expect: 'done' });
    expect(wrong).toMatchObject({ state: 'crit', reason: 'unexpected-value' });
    expect(wrong.message).toContain('first value "stuck", expected it to be "done"');
  });

  it('counts rows, and binds params in a prepared statement', async () => {
    expect(await run({ query: 'SELECT id FROM jobs WHERE state = ?', params: ['stuck'], expectRows: 1 })).toMatchObject({ state: 'ok' });
    expect(await run({ query: 'SELECT ? + 1', params: [41], expect: 42 })).toMatchObject({ state: 'ok' });
    expect(await run({ query: 'SELECT id FROM jobs WHERE state = ?', params: ["x' OR '1'='1"], expectRows: 0 })).toMatchObject({ state: 'ok' });
    const stuck = await run({ query: 'SELECT id FROM jobs', expectRows: 0 });
    expect(stuck).toMatchObject({ state: 'crit', reason: 'unexpected-rows' });
    const none = await run({ query: "SELECT id FROM jobs WHERE state = 'lost'", crit: 1 });
    expect(none).toMatchObject({ state: 'crit', reason: 'no-rows' });
  });
});

describe('sql on MariaDB: a Unix socket', () => {
  it('connects through the socket a percent-encoded host names, and is refused where there is none', async () => {
    const outcome = await run({ url: `mysql://checker:${CHECKER_PASSWORD}@${encodeURIComponent(maria.socket)}/test`, query: 'SELECT 1' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: expect.stringMatching(new RegExp(`^mysql://\\[socket ${maria.socket.replace(/[.]/g, '\\.')}\\]/test: 1 row in `)) as unknown });
    const missing = await run({ url: `mysql://checker:${CHECKER_PASSWORD}@${encodeURIComponent(`${maria.socket}.none`)}/test`, query: 'SELECT 1' });
    expect(missing).toEqual({ state: 'crit', reason: 'refused', message: `connection refused by mysql://[socket ${maria.socket}.none]/test (ENOENT)` });
  });
});

describe('sql on MariaDB: failures', () => {
  it('is crit query-error with the code and SQLSTATE, and closes its connection', async () => {
    const outcome = await run({ query: 'SELECT * FROM no_such_table' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'query-error' });
    expect(outcome.message).toBe(`query on ${where} failed: Table 'test.no_such_table' doesn't exist (ER_NO_SUCH_TABLE, SQLSTATE 42S02)`);
    await vi.waitFor(async () => expect(await checkerConnections()).toBe(0), { timeout: 5000, interval: 20 });
  });

  it('is crit auth-failed for a wrong password, naming neither the user nor a password', async () => {
    const outcome = await run({ url: `mariadb://checker:wrong-${CHECKER_PASSWORD}@127.0.0.1:${maria.port}/test`, query: 'SELECT 1' });
    expect(outcome).toEqual({
      state: 'crit',
      reason: 'auth-failed',
      message: `authentication failed at ${where}: Access denied for user '***'@'127.0.0.1' (using password: YES) (ER_ACCESS_DENIED_ERROR, SQLSTATE 28000)`,
    });
  });

  it('is crit auth-failed for a locked account, by its number (mysql2 gives MariaDB’s a MySQL name)', async () => {
    await maria.query("CREATE USER 'locked'@'%' IDENTIFIED BY 'pw' ACCOUNT LOCK");
    const outcome = await run({ url: `mariadb://locked:pw@127.0.0.1:${maria.port}/test`, query: 'SELECT 1' });
    expect(outcome).toEqual({ state: 'crit', reason: 'auth-failed', message: `authentication failed at ${where}: Access denied, this account is locked (errno 4151, SQLSTATE HY000)` });
  });

  it('is crit connection-error for a database that does not exist, auth-failed for one the user may not use', async () => {
    const missing = await run({ url: `mariadb://${maria.user}:${maria.password}@127.0.0.1:${maria.port}/nowhere`, query: 'SELECT 1' });
    expect(missing).toEqual({ state: 'crit', reason: 'connection-error', message: `cannot connect to mariadb://127.0.0.1:${maria.port}/nowhere: Unknown database 'nowhere' (ER_BAD_DB_ERROR, SQLSTATE 42000)` });
    // The server does not tell a user without rights whether the database exists.
    const denied = await run({ url: `mariadb://checker:${CHECKER_PASSWORD}@127.0.0.1:${maria.port}/nowhere`, query: 'SELECT 1' });
    expect(denied).toEqual({
      state: 'crit',
      reason: 'auth-failed',
      message: `authentication failed at mariadb://127.0.0.1:${maria.port}/nowhere: Access denied for user '***'@'%' to database 'nowhere' (ER_DBACCESS_DENIED_ERROR, SQLSTATE 42000)`,
    });
  });

  it('is crit refused when nothing listens, and dns when the name does not resolve', async () => {
    const port = await freePort();
    const refused = await run({ url: `mysql://checker:${CHECKER_PASSWORD}@127.0.0.1:${port}/test`, query: 'SELECT 1' });
    expect(refused).toEqual({ state: 'crit', reason: 'refused', message: `connection refused by mysql://127.0.0.1:${port}/test (ECONNREFUSED)` });
    const dns = await run({ url: `mysql://checker:${CHECKER_PASSWORD}@${UNRESOLVABLE}/test`, query: 'SELECT 1' });
    expect(dns).toMatchObject({ state: 'crit', reason: 'dns', message: expect.stringMatching(/^cannot resolve host a+\.invalid \((ENOTFOUND|EAI_\w+)\)$/) as unknown });
  });

  it('speaks TLS when asked, and is crit tls-error when the certificate is not trusted', async () => {
    const outcome = await run({ query: "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version'", tls: 'require', expect: '/^TLSv1\\.[23]$/' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: expect.stringMatching(/, first value "TLSv1\.[23]"$/) as unknown });
    // The certificate is the test CA's, which Node does not trust; mysql2 puts its own code on the error.
    const untrusted = await run({ query: 'SELECT 1', tls: 'verify-full' });
    expect(untrusted).toEqual({ state: 'crit', reason: 'tls-error', message: `TLS (verify-full) with ${where} failed: HANDSHAKE_SSL_ERROR unable to verify the first certificate` });
  });
});

describe('sql on MariaDB: time', () => {
  it('returns at the abort while connecting to a server that does not answer, and closes the socket', async () => {
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const controller = new AbortController();
    const running = run({ url: `mysql://checker@127.0.0.1:${port}/test`, query: 'SELECT 1' }, ctx({ signal: controller.signal }));
    await vi.waitFor(() => expect(sockets.size).toBe(1), { timeout: 5000, interval: 10 });
    const [socket] = sockets;
    const closedByClient = once(socket as Socket, 'close');
    controller.abort(new Error('deadline'));
    expect(await running).toEqual({ state: 'crit', reason: 'timeout', message: `timed out connecting to mysql://127.0.0.1:${port}/test` });
    await closedByClient;
  });

  it('returns at the abort during a slow query, and the server stops the query at the deadline', async () => {
    const outcome = await run({ query: 'SELECT SLEEP(60)' }, ctx({ signal: AbortSignal.timeout(1000), deadlineMs: 1500 }));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for the query on ${where}` });
    // Without max_statement_time the server would sleep on for a minute with nobody listening.
    await vi.waitFor(async () => expect(await checkerConnections()).toBe(0), { timeout: 10_000, interval: 50 });
  });

  it('is crit timeout when the server’s max_statement_time, set from the deadline, stops the query first', async () => {
    const late = new AbortController();
    const outcome = await run({ query: 'SELECT SLEEP(60) FROM jobs' }, { ...ctx({ deadlineMs: 500 }), signal: late.signal });
    expect(outcome).toEqual({
      state: 'crit',
      reason: 'timeout',
      message: `the query on ${where} ran into the statement timeout vigil set from the check's timeout: Query execution was interrupted (max_statement_time exceeded) (errno 1969, SQLSTATE 70100)`,
      metrics: expect.any(Array) as unknown,
    });
  });
});

describe('sql on MariaDB: secrets', () => {
  it('never puts the URL’s password in an outcome', async () => {
    const outcomes = await Promise.all([
      run({ query: 'SELECT 1' }),
      run({ query: `SELECT * FROM \`${CHECKER_PASSWORD}\`` }),
      run({ query: `SELECT '${CHECKER_PASSWORD}'` }),
      run({ url: `mariadb://checker:${CHECKER_PASSWORD}x@127.0.0.1:${maria.port}/test`, query: 'SELECT 1' }),
      run({ url: `mariadb://checker:${CHECKER_PASSWORD}@127.0.0.1:${maria.port}/nowhere`, query: 'SELECT 1' }),
    ]);
    expect(outcomes.map((outcome) => outcome.reason)).toEqual(['ok', 'query-error', 'ok', 'auth-failed', 'auth-failed']);
    for (const outcome of outcomes) expect(JSON.stringify(outcome)).not.toContain(CHECKER_PASSWORD);
    expect(outcomes[1]?.message).toContain("Table 'test.***' doesn't exist");
  });
});
