import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { initialCheckState } from '../../src/checks/check.js';
import type { Outcome } from '../../src/handlers/handler.js';
import {
  postgresResultsHandler,
  postgresResultsHandlerType,
  recentResults,
  type PostgresResultsHandler,
  type PostgresResultsHandlerOptions,
} from '../../src/handlers/postgres-results-handler.js';
import { migrate } from '../../src/postgres/migrations.js';
import { counter, gauge } from '../../src/results/metric.js';
import type { Result, State } from '../../src/results/result.js';
import { checkSpec } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../helpers/postgres.js';
import { freePort as closedPort } from '../helpers/processes.js';

const logger = silentLogger();
const DAY = 86_400_000;

let db: TestDatabase;
let table: string;

beforeAll(async () => {
  db = await testDatabase('postgres_results');
  await migrate(db.pool, { schema: db.schema });
  table = `${pg.escapeIdentifier(db.schema)}.results`;
});
afterAll(() => db?.drop());

const handlers: PostgresResultsHandler[] = [];
const servers: Server[] = [];
const sockets = new Set<Socket>();

afterEach(async () => {
  await Promise.all(handlers.splice(0).map((handler) => handler.close()));
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await db.pool.query(`TRUNCATE ${table}`);
});

function options(raw: Record<string, unknown> = {}): PostgresResultsHandlerOptions {
  const parsed = postgresResultsHandlerType.parseOptions({ url: db.url, schema: db.schema, ...raw });
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function handler(raw: Record<string, unknown> = {}, extra: { registry?: Registry; closeTimeoutMs?: number } = {}): PostgresResultsHandler {
  const created = postgresResultsHandler('results', options(raw), { logger, registry: extra.registry ?? new Registry(), ...(extra.closeTimeoutMs === undefined ? {} : { closeTimeoutMs: extra.closeTimeoutMs }) });
  handlers.push(created);
  return created;
}

function result(n: number, overrides: Partial<Result> = {}): Result {
  const state: State = n % 3 === 0 ? 'crit' : 'ok';
  return {
    state,
    reason: state === 'ok' ? 'ok' : 'refused',
    message: `run ${n}`,
    metrics: [gauge('connect_time', n / 10, 'ms', { warn: 100 }), counter('bytes', n)],
    startedAt: Date.now() - 1000 + n,
    durationMs: 12.5,
    ...overrides,
  };
}

function outcome(checkId: string, res: Result): Outcome {
  return { check: checkSpec({ id: checkId }), result: res, state: initialCheckState, previous: initialCheckState, incident: null, logger };
}

async function count(where = 'true'): Promise<number> {
  return (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`)).rows[0]?.n ?? -1;
}

/** Statements that inserted the rows: each batch is one autocommitted INSERT, so its rows share one xmin. */
async function insertStatements(): Promise<number> {
  return (await db.pool.query<{ n: number }>(`SELECT count(DISTINCT xmin::text)::int AS n FROM ${table}`)).rows[0]?.n ?? -1;
}

/** Listens on 127.0.0.1:`port` (0: any) with `onConnection`; closed by `afterEach`. */
async function listen(port: number, onConnection: (socket: Socket) => void): Promise<number> {
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  servers.push(server);
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Forwards every connection on `port` to the test database: the database "comes back" there. */
function proxyToDatabase(port: number): Promise<number> {
  const target = new URL(db.url);
  return listen(port, (socket) => {
    const upstream = createConnection(Number(target.port || 5432), target.hostname);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.pipe(upstream).pipe(socket);
  });
}

function urlWithPort(port: number): string {
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

async function metricValue(registry: Registry, name: string): Promise<number | undefined> {
  const metric = await registry.getSingleMetric(name)?.get();
  return metric?.values.find((value) => value.labels['handler'] === 'results')?.value;
}

describe('postgres-results handler: options', () => {
  it('has the documented defaults', () => {
    expect(postgresResultsHandlerType.parseOptions({ url: 'postgres://vigil@db.example:5432/vigil' })).toEqual({
      ok: true,
      value: { url: 'postgres://vigil@db.example:5432/vigil', schema: 'vigil', batchSize: 500, flushInterval: 1000, retention: 7 * DAY, maxBuffered: 50_000 },
    });
  });

  it('takes durations as text and refuses what is not a connection URL, and unknown keys', () => {
    expect(postgresResultsHandlerType.parseOptions({ url: 'postgresql://h/db', flushInterval: '250ms', retention: '30d', batchSize: 100 })).toMatchObject({
      ok: true,
      value: { flushInterval: 250, retention: 30 * DAY, batchSize: 100 },
    });
    expect(postgresResultsHandlerType.parseOptions({ url: 'http://h/db' })).toEqual({
      ok: false,
      issues: [{ path: ['url'], message: 'expected a postgres:// or postgresql:// connection URL, got "http://h/db"' }],
    });
    expect(postgresResultsHandlerType.parseOptions({ url: 'postgres://h/db', batch: 5 })).toEqual({ ok: false, issues: [{ path: ['batch'], message: 'unknown key' }] });
    expect(postgresResultsHandlerType.parseOptions({ url: 'postgres://h/db', batchSize: 0 })).toMatchObject({ ok: false, issues: [{ path: ['batchSize'] }] });
  });
});

describe('postgres-results handler: storing', () => {
  it('buffers without waiting and writes N results in ceil(N / batchSize) INSERTs', async () => {
    const registry = new Registry();
    const results = handler({ batchSize: 100, flushInterval: '1h' }, { registry });
    for (let n = 1; n <= 250; n++) expect(results.process(outcome(`check-${n % 5}`, result(n)))).toBeUndefined();
    await results.flush();
    expect(await count()).toBe(250);
    expect(await insertStatements()).toBe(3);
    expect(results.buffered).toBe(0);
    expect(await metricValue(registry, 'vigil_results_stored_total')).toBe(250);
  });

  it('flushes on its timer, full batches first', async () => {
    const results = handler({ batchSize: 500, flushInterval: '20ms' });
    for (let n = 1; n <= 1234; n++) results.process(outcome('busy', result(n)));
    await vi.waitFor(async () => expect(await count()).toBe(1234), { timeout: 10_000, interval: 20 });
    expect(await insertStatements()).toBe(Math.ceil(1234 / 500));
  });

  it('stores every field, and recentResults reads a check back newest first', async () => {
    const results = handler({ flushInterval: '1h' });
    const started = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
    results.process(outcome('web', result(1, { startedAt: started - 60_000, message: 'older' })));
    results.process(outcome('web', result(3, { startedAt: started, metrics: [gauge('rtt', 1.25, 'ms', { warn: 5, crit: 10 })], durationMs: 3.75 })));
    results.process(outcome('db', result(2, { startedAt: started + 1 })));
    await results.flush();

    const recent = await recentResults(db.pool, db.schema, 'web', 10);
    expect(recent.map((row) => row.message)).toEqual(['run 3', 'older']);
    expect(recent[0]).toEqual({
      id: expect.stringMatching(/^\d+$/) as unknown,
      checkId: 'web',
      state: 'crit',
      reason: 'refused',
      message: 'run 3',
      metrics: [{ name: 'rtt', value: 1.25, unit: 'ms', kind: 'gauge', warn: 5, crit: 10 }],
      startedAt: started,
      durationMs: 3.75,
    });
    expect(await recentResults(db.pool, db.schema, 'web', 1)).toHaveLength(1);
    expect(await recentResults(db.pool, db.schema, 'nothing', 5)).toEqual([]);
  });

  it('close() writes what is still buffered, then takes no more', async () => {
    const registry = new Registry();
    const results = handler({ flushInterval: '1h' }, { registry });
    for (let n = 1; n <= 42; n++) results.process(outcome('late', result(n)));
    expect(await count()).toBe(0);
    await results.close();
    expect(await count()).toBe(42);
    results.process(outcome('late', result(43)));
    expect(results.dropped).toBe(1);
    expect(await metricValue(registry, 'vigil_results_dropped_total')).toBe(1);
    await expect(results.close()).resolves.toBeUndefined();
  });
});

describe('postgres-results handler: retention', () => {
  it('deletes rows older than the retention, batch after batch, and keeps the others', async () => {
    const registry = new Registry();
    const results = handler({ retention: '1d', batchSize: 5000, flushInterval: '1h' }, { registry });
    const now = Date.now();
    for (let n = 0; n < 10_500; n++) results.process(outcome('old', result(n, { startedAt: now - 2 * DAY - n })));
    for (let n = 0; n < 20; n++) results.process(outcome('new', result(n, { startedAt: now - DAY + 60_000 })));
    await results.flush();
    expect(await count()).toBe(10_520);

    // More than one DELETE's worth (10 000): the sweep goes on until none is left.
    expect(await results.sweep()).toBe(10_500);
    expect(await count("check_id = 'old'")).toBe(0);
    expect(await count("check_id = 'new'")).toBe(20);
    expect(await metricValue(registry, 'vigil_results_deleted_total')).toBe(10_500);
    expect(await results.sweep()).toBe(0);
  });
});

describe('postgres-results handler: database away', () => {
  it('keeps at most maxBuffered results, dropping the oldest, and writes the rest once the database is back', async () => {
    const port = await closedPort();
    const registry = new Registry();
    const results = handler({ url: urlWithPort(port), batchSize: 10, maxBuffered: 100, flushInterval: '1h' }, { registry });
    for (let n = 1; n <= 250; n++) expect(results.process(outcome('away', result(n)))).toBeUndefined();
    await results.flush();
    expect(results.buffered).toBe(100);
    expect(results.dropped).toBe(150);
    expect(await metricValue(registry, 'vigil_results_dropped_total')).toBe(150);

    await proxyToDatabase(port);
    await results.flush();
    expect(results.buffered).toBe(0);
    const stored = await db.pool.query<{ message: string }>(`SELECT message FROM ${table} ORDER BY id`);
    expect(stored.rows.map((row) => row.message)).toEqual(Array.from({ length: 100 }, (_, i) => `run ${151 + i}`));
    expect(results.dropped).toBe(150);
  });

  it('counts as dropped only results never stored when the buffer overflows during a slow write', async () => {
    const results = handler({ batchSize: 10, maxBuffered: 20, flushInterval: '1h' });
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      // A full batch goes out at once, and waits for the lock.
      for (let n = 1; n <= 10; n++) results.process(outcome('slow', result(n)));
      await vi.waitFor(async () => {
        const waiting = await db.pool.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = 'vigil results' AND wait_event_type = 'Lock' AND position($1 in query) > 0",
          [db.schema],
        );
        expect(waiting.rowCount).toBe(1);
      }, { timeout: 10_000, interval: 20 });
      for (let n = 11; n <= 50; n++) results.process(outcome('slow', result(n)));
      await locker.query('COMMIT');
    } finally {
      locker.release();
    }
    await results.flush();
    const stored = await db.pool.query<{ message: string }>(`SELECT message FROM ${table} ORDER BY id`);
    // Runs 1–10 were being written when they left the buffer: stored, not dropped. 11–30 were pushed out.
    const expected = [...Array.from({ length: 10 }, (_, i) => `run ${1 + i}`), ...Array.from({ length: 20 }, (_, i) => `run ${31 + i}`)];
    expect(stored.rows.map((row) => row.message)).toEqual(expected);
    expect(results.dropped).toBe(20);
  });

  it('close() gives up after its timeout when the database does not answer, counting what it drops', async () => {
    // Accepts connections and never answers: a connection attempt hangs.
    const port = await listen(0, () => undefined);
    const results = handler({ url: urlWithPort(port), flushInterval: '1h' }, { closeTimeoutMs: 200 });
    for (let n = 1; n <= 7; n++) results.process(outcome('hung', result(n)));
    const started = performance.now();
    await results.close();
    expect(performance.now() - started).toBeLessThan(3000);
    expect(results.dropped).toBe(7);
    expect(results.buffered).toBe(0);
  });
});
