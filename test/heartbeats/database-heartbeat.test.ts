import { hostname } from 'node:os';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDatabaseHeartbeat, type DatabaseHeartbeat } from '../../src/heartbeats/database-heartbeat.js';
import { migrate } from '../../src/postgres/migrations.js';
import { testDatabase, type TestDatabase } from '../helpers/postgres.js';
import { freePort } from '../helpers/processes.js';
import { clockWith } from '../../src/core/clock.js';

let db: TestDatabase;
let table: string;

beforeAll(async () => {
  db = await testDatabase('database_heartbeat');
  await migrate(db.pool, { schema: db.schema });
  table = `${pg.escapeIdentifier(db.schema)}.heartbeats`;
});
afterAll(() => db?.drop());

const started: DatabaseHeartbeat[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((heartbeat) => heartbeat.stop().catch(() => undefined)));
});

function start(options: Partial<Parameters<typeof startDatabaseHeartbeat>[0]> & { id: string }): DatabaseHeartbeat {
  const heartbeat = startDatabaseHeartbeat({ databaseUrl: db.url, schema: db.schema, intervalMs: 60_000, ...options });
  started.push(heartbeat);
  return heartbeat;
}

interface Row {
  id: string;
  timestamp: Date;
  uptime: number;
  memory_usage: string;
  pid: number;
  beat: string;
  host: string;
}

async function row(id: string): Promise<Row | undefined> {
  return (await db.pool.query<Row>(`SELECT * FROM ${table} WHERE id = $1`, [id])).rows[0];
}

async function closedPortUrl(): Promise<string> {
  const port = await freePort();
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

describe('database heartbeat', () => {
  it('upserts its row at once, with this process’s facts and the database’s clock', async () => {
    const heartbeat = start({ id: 'worker-1' });
    await vi.waitFor(async () => expect(await row('worker-1')).toBeDefined(), { timeout: 10_000, interval: 20 });
    const first = (await row('worker-1')) as Row;
    expect(first).toMatchObject({ id: 'worker-1', pid: process.pid, beat: '1', host: hostname() });
    expect(first.uptime).toBeGreaterThan(0);
    expect(Number(first.memory_usage)).toBeGreaterThan(1_000_000);
    const { rows } = await db.pool.query<{ skew: number }>(`SELECT abs(extract(epoch FROM now() - timestamp))::float8 AS skew FROM ${table} WHERE id = 'worker-1'`);
    expect(rows[0]?.skew).toBeLessThan(5);
    expect(heartbeat.beats).toBe(1);

    await heartbeat.beat();
    expect(await row('worker-1')).toMatchObject({ beat: '2' });
    expect((await db.pool.query(`SELECT 1 FROM ${table} WHERE id = 'worker-1'`)).rowCount).toBe(1);
  });

  it('beats every interval on its timer, with what `now` and `sample` say', async () => {
    const heartbeat = start({
      id: 'timed',
      intervalMs: 15,
      clock: clockWith(() => Date.UTC(2030, 5, 1, 12, 0, 0, 250)),
      sample: () => ({ pid: 4242, uptime: 12.5, memoryUsage: 73_400_320 }),
      host: 'box-7',
    });
    await vi.waitFor(() => expect(heartbeat.beats).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 10 });
    await heartbeat.stop();
    const beats = heartbeat.beats;
    expect(await row('timed')).toEqual({
      id: 'timed',
      timestamp: new Date(Date.UTC(2030, 5, 1, 12, 0, 0, 250)),
      uptime: 12.5,
      memory_usage: '73400320',
      pid: 4242,
      beat: String(beats),
      host: 'box-7',
    });
  });

  it('stop({ remove: true }) deletes the row; a plain stop leaves it, and a later remove still deletes it', async () => {
    const clean = start({ id: 'clean-exit' });
    await clean.beat();
    await clean.stop({ remove: true });
    expect(await row('clean-exit')).toBeUndefined();
    await expect(clean.beat()).rejects.toThrow('the heartbeat clean-exit is stopped');

    const crashed = start({ id: 'left' });
    await crashed.beat();
    await crashed.stop();
    expect(await row('left')).toBeDefined();
    await crashed.stop({ remove: true });
    expect(await row('left')).toBeUndefined();
    await expect(crashed.stop({ remove: true })).resolves.toBeUndefined();
  });

  it('reports a database it cannot reach through onError, never by throwing, and beat() rejects', async () => {
    const errors: unknown[] = [];
    const heartbeat = start({ id: 'nowhere', databaseUrl: await closedPortUrl(), intervalMs: 20, onError: (error) => errors.push(error) });
    await vi.waitFor(() => expect(errors.length).toBeGreaterThanOrEqual(2), { timeout: 10_000, interval: 10 });
    expect(String((errors[0] as { code?: unknown }).code ?? errors[0])).toContain('ECONNREFUSED');
    await expect(heartbeat.beat()).rejects.toBeDefined();
    expect(heartbeat.beats).toBe(0);
    await heartbeat.stop();
  });

  it('refuses an interval that is not a positive integer, an empty id or schema, starting nothing', () => {
    expect(() => startDatabaseHeartbeat({ databaseUrl: db.url, id: 'x', intervalMs: 0 })).toThrow('Expected `intervalMs` to be a positive integer, got `0`');
    expect(() => startDatabaseHeartbeat({ databaseUrl: db.url, id: '', intervalMs: 1000 })).toThrow(TypeError);
    expect(() => startDatabaseHeartbeat({ databaseUrl: db.url, id: 'x', intervalMs: 1000, schema: '' })).toThrow(TypeError);
  });
});
