import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { heartbeatTableCommand, type HeartbeatTableAttributes } from '../../../src/commands/heartbeat/heartbeat-table.js';
import { startDatabaseHeartbeat, type DatabaseHeartbeat } from '../../../src/heartbeats/database-heartbeat.js';
import { migrate } from '../../../src/postgres/migrations.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';
import { clockWith } from '../../../src/core/clock.js';

const logger = silentLogger();
const command = heartbeatTableCommand();

let db: TestDatabase;

beforeAll(async () => {
  db = await testDatabase('heartbeat_table');
  await migrate(db.pool, { schema: db.schema });
});
afterAll(() => db?.drop());

const heartbeats: DatabaseHeartbeat[] = [];
const servers: Server[] = [];
const sockets = new Set<Socket>();
afterEach(async () => {
  await Promise.all(heartbeats.splice(0).map((heartbeat) => heartbeat.stop()));
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await db.pool.query(`TRUNCATE ${pg.escapeIdentifier(db.schema)}.heartbeats`);
});

function ctx(signal: AbortSignal = AbortSignal.timeout(10_000)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 10_000, logger, previous: null };
}

function parse(raw: Record<string, unknown>): HeartbeatTableAttributes {
  const parsed = command.parse({ url: db.url, schema: db.schema, critAfter: '30s', ...raw });
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return command.run(parse(raw), ctx(signal));
}

/** One beat of `id`, `ageMs` old by the test's clock (the database's, on this machine). */
async function beatAged(id: string, ageMs: number): Promise<void> {
  const heartbeat = startDatabaseHeartbeat({
    databaseUrl: db.url,
    schema: db.schema,
    id,
    intervalMs: 3_600_000,
    clock: clockWith(() => Date.now() - ageMs),
    sample: () => ({ pid: 4242, uptime: 3600.5, memoryUsage: 73_400_320 }),
  });
  heartbeats.push(heartbeat);
  // The first beat goes out at once.
  await vi.waitFor(() => expect(heartbeat.beats).toBe(1), { timeout: 10_000, interval: 5 });
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
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

function urlWithPort(port: number): string {
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

describe('heartbeat-table command: judging a row', () => {
  it('is ok for a fresh beat, with the row’s age, uptime, memory and beat count', async () => {
    await beatAged('fresh', 2000);
    const outcome = await run({ id: 'fresh', warnAfter: '10s' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/^heartbeat fresh is 2(\.\d+)? s old \(pid 4242, beat 1\)$/);
    expect(metric(outcome, 'age')?.value).toBeGreaterThanOrEqual(2);
    expect(metric(outcome, 'age')?.value).toBeLessThan(7);
    expect(metric(outcome, 'age')).toMatchObject({ unit: 's', kind: 'gauge', warn: 10, crit: 30 });
    expect(metric(outcome, 'uptime')).toEqual({ name: 'uptime', value: 3600.5, unit: 's', kind: 'gauge' });
    expect(metric(outcome, 'memory_usage')).toEqual({ name: 'memory_usage', value: 73_400_320, unit: 'B', kind: 'gauge' });
    expect(metric(outcome, 'beat')).toEqual({ name: 'beat', value: 1, unit: 'c', kind: 'counter' });
  });

  it('is warn heartbeat-late at warnAfter and crit heart-attack at critAfter', async () => {
    await beatAged('late', 12_000);
    await beatAged('dead', 45_000);
    const late = await run({ id: 'late', warnAfter: '10s' });
    expect(late).toMatchObject({ state: 'warn', reason: 'heartbeat-late' });
    expect(late.message).toMatch(/^heartbeat late is 1\d(\.\d+)? s old \(pid 4242, beat 1\), at or above the warning threshold of 10 s$/);
    const dead = await run({ id: 'dead', warnAfter: '10s' });
    expect(dead).toMatchObject({ state: 'crit', reason: 'heart-attack' });
    expect(dead.message).toMatch(/, at or above the critical threshold of 30 s$/);
  });

  it('judges with the `now` it is given when one is', async () => {
    await beatAged('frozen', 0);
    const at = Date.now();
    const judged = heartbeatTableCommand({ clock: clockWith(() => at + 31_000) });
    const parsed = judged.parse({ url: db.url, schema: db.schema, id: 'frozen', critAfter: '30s' });
    if (!parsed.ok) throw new Error('unexpected issues');
    expect(await judged.run(parsed.value, ctx())).toMatchObject({ state: 'crit', reason: 'heart-attack' });
  });

  it('is bad-heartbeat for a beat dated more than 5 s in the future', async () => {
    await beatAged('ahead', -60_000);
    const outcome = await run({ id: 'ahead' });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'bad-heartbeat' });
    expect(outcome.message).toMatch(/^bad heartbeat row ahead: dated (59|60)(\.\d+)? s in the future, more than the 5 s allowed for clock skew$/);
  });

  it('reports a missing row in the state `missing` says', async () => {
    expect(await run({ id: 'ghost' })).toEqual({ state: 'crit', reason: 'heart-attack', message: 'heartbeat row ghost is missing' });
    expect(await run({ id: 'ghost', missing: 'warn' })).toEqual({ state: 'warn', reason: 'heart-attack', message: 'heartbeat row ghost is missing (treated as warn)' });
    expect(await run({ id: 'ghost', missing: 'ok' })).toEqual({ state: 'ok', reason: 'no-heartbeat', message: 'heartbeat row ghost is missing (treated as ok)' });
  });

  it('sees a heartbeat go from ok to missing when its writer exits cleanly', async () => {
    const heartbeat = startDatabaseHeartbeat({ databaseUrl: db.url, schema: db.schema, id: 'svc', intervalMs: 3_600_000 });
    await heartbeat.beat();
    expect(await run({ id: 'svc' })).toMatchObject({ state: 'ok', reason: 'ok' });
    await heartbeat.stop({ remove: true });
    expect(await run({ id: 'svc' })).toMatchObject({ state: 'crit', reason: 'heart-attack' });
  });
});

describe('heartbeat-table command: the database', () => {
  it('is unknown unreadable when the database refuses connections', async () => {
    const port = await listen((socket) => socket.destroy());
    const outcome = await run({ id: 'x', url: urlWithPort(port) });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'unreadable' });
    expect(outcome.message).toMatch(/^cannot read heartbeat row x from .*heartbeats: /);
    expect(outcome.message).not.toContain('\n');
  });

  it('says to run the migrations when the table is not there', async () => {
    const outcome = await run({ id: 'x', schema: `${db.schema}_none` });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'unreadable' });
    expect(outcome.message).toContain('run `vigil migrate` to create it');
  });

  it('shares one small pool per url between checks', async () => {
    await beatAged('shared', 0);
    // A url of its own, with a name of its own for its connections, and a command instance of its own.
    const url = new URL(db.url);
    url.searchParams.set('application_name', 'vigil-pool-test');
    const shared = heartbeatTableCommand();
    const parsed = shared.parse({ url: url.toString(), schema: db.schema, id: 'shared', critAfter: '30s' });
    if (!parsed.ok) throw new Error('unexpected issues');
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => shared.run(parsed.value, ctx())));
    expect(outcomes.every((outcome) => outcome.state === 'ok')).toBe(true);
    const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'vigil-pool-test'");
    expect(rows[0]?.n).toBeGreaterThan(0);
    expect(rows[0]?.n).toBeLessThanOrEqual(4);
  });
});

describe('heartbeat-table command: cancellation', () => {
  it('does not query when the signal is already aborted', async () => {
    const port = await listen(() => undefined);
    let connections = 0;
    servers[0]?.on('connection', () => connections++);
    expect(await run({ id: 'x', url: urlWithPort(port) }, AbortSignal.abort())).toEqual({ state: 'unknown', reason: 'timeout', message: 'timed out reading heartbeat row x' });
    expect(connections).toBe(0);
  });

  it('returns at the abort while connecting to a database that does not answer', async () => {
    const port = await listen(() => undefined);
    const controller = new AbortController();
    const running = run({ id: 'x', url: urlWithPort(port) }, controller.signal);
    await vi.waitFor(() => expect(sockets.size).toBe(1), { timeout: 5000, interval: 10 });
    controller.abort(new Error('deadline'));
    expect(await running).toEqual({ state: 'unknown', reason: 'timeout', message: 'timed out reading heartbeat row x' });
  });

  it('cancels a query that waits for a lock, and returns at once', async () => {
    await beatAged('blocked', 0);
    const table = `${pg.escapeIdentifier(db.schema)}.heartbeats`;
    const locker = await db.pool.connect();
    const waiting = (): Promise<number> =>
      db.pool
        .query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'vigil heartbeat-table' AND wait_event_type = 'Lock' AND position($1 in query) > 0", [db.schema])
        .then((result) => result.rowCount ?? 0);
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const controller = new AbortController();
      const running = run({ id: 'blocked' }, controller.signal);
      await vi.waitFor(async () => expect(await waiting()).toBe(1), { timeout: 10_000, interval: 20 });
      controller.abort(new Error('deadline'));
      expect(await running).toEqual({ state: 'unknown', reason: 'timeout', message: 'timed out reading heartbeat row blocked' });
      // Cancelled on the server while the lock is still held: nothing waits on it any more.
      await vi.waitFor(async () => expect(await waiting()).toBe(0), { timeout: 10_000, interval: 20 });
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    expect(await run({ id: 'blocked' })).toMatchObject({ state: 'ok' });
  });
});

describe('heartbeat-table command: attributes', () => {
  it('has the defaults of heartbeat-file, and the schema vigil', () => {
    expect(command.parse({ url: 'postgres://db.example/vigil', id: 'w', critAfter: '1m' })).toEqual({
      ok: true,
      value: { url: 'postgres://db.example/vigil', schema: 'vigil', id: 'w', critAfter: 60_000, missing: 'crit' },
    });
  });

  it('says what is wrong', () => {
    expect(command.parse({ url: 'postgres://h/db', id: 'w', critAfter: '1m', file: 'x' })).toEqual({ ok: false, issues: [{ path: ['file'], message: 'unknown key' }] });
    expect(command.parse({ url: 'mysql://h/db', id: 'w', critAfter: '1m' })).toEqual({
      ok: false,
      issues: [{ path: ['url'], message: 'expected a postgres:// or postgresql:// connection URL, got "mysql://h/db"' }],
    });
    expect(command.parse({ url: 'postgres://h/db', critAfter: '1m' })).toEqual({ ok: false, issues: [{ path: ['id'], message: 'expected a heartbeat id (a non-empty string), got nothing' }] });
    expect(command.parse({ url: 'postgres://h/db', id: 'w', critAfter: '30s', warnAfter: '1m' })).toEqual({
      ok: false,
      issues: [{ path: ['warnAfter'], message: 'expected a duration no longer than critAfter (30000ms), got "1m"' }],
    });
    expect(command.parse({ url: 'postgres://h/db', id: 'w', critAfter: '30s', missing: 'ignore' })).toEqual({
      ok: false,
      issues: [{ path: ['missing'], message: 'expected crit, warn, ok or unknown, got "ignore"' }],
    });
  });
});
