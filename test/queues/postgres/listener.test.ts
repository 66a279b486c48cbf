import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DatabaseHealth } from '../../../src/queues/postgres/health.js';
import { Listener, notify, notifyChannel, type ListenerOptions } from '../../../src/queues/postgres/listener.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';
import { ManualClock } from '../../helpers/manual-clock.js';

let db: TestDatabase;
let channel: string;

beforeAll(async () => {
  db = await testDatabase('listener');
  channel = notifyChannel(db.schema);
});
afterAll(() => db.drop());

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A started listener on its own pool and a manual clock, recording what it asked for. */
async function startListener(options: Partial<ListenerOptions> = {}) {
  const clock = new ManualClock();
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on('error', () => undefined);
  const reloads: string[][] = [];
  let refreshes = 0;
  let reconnects = 0;
  const listener = new Listener({
    pool,
    channel,
    instanceId: 'me',
    clock,
    logger: silentLogger(),
    health: new DatabaseHealth({ clock, logger: silentLogger() }),
    report: (error) => {
      throw error;
    },
    refreshIntervalMs: 10_000,
    reload: (ids) => {
      reloads.push([...ids]);
      return Promise.resolve();
    },
    refresh: () => {
      refreshes++;
      return Promise.resolve();
    },
    onReconnected: () => reconnects++,
    ...options,
  });
  cleanups.push(() => pool.end());
  cleanups.push(() => listener.stop(false));
  await listener.start();
  return { clock, listener, reloads, refreshes: () => refreshes, reconnects: () => reconnects };
}

/** Sends these notices in one transaction, as `from`: delivered together at COMMIT. */
async function send(from: string, notices: readonly { id?: string; all?: boolean }[]): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    for (const notice of notices) await notify(client, channel, from, notice);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

describe('Listener', () => {
  it('reloads the checks other instances name, a burst in one reload, and ignores its own notices', async () => {
    const { clock, listener, reloads } = await startListener();
    expect(listener.connected).toBe(true);
    await send('me', [{ id: 'mine' }]);
    await send('other', [{ id: 'a' }, { id: 'mine-too' }, { id: 'b' }]);
    // The burst arms one short timer beside the periodic refresh.
    await vi.waitFor(() => expect(clock.delays()).toEqual([5, 10_000]));
    expect(reloads).toEqual([]);
    clock.advance(5);
    expect(reloads).toEqual([['a', 'mine-too', 'b']]);
  });

  it('compares everything for a notice of `all`', async () => {
    const { clock, reloads, refreshes } = await startListener();
    await send('other', [{ all: true }, { id: 'a' }]);
    await vi.waitFor(() => expect(clock.delays()).toContain(5));
    clock.advance(5);
    expect(refreshes()).toBe(1);
    expect(reloads).toEqual([]);
  });

  it('compares with the table every refreshIntervalMs of its clock until it stops', async () => {
    const { clock, listener, refreshes } = await startListener({ refreshIntervalMs: 1_000 });
    clock.advance(999);
    expect(refreshes()).toBe(0);
    clock.advance(1);
    expect(refreshes()).toBe(1);
    clock.advance(2_000);
    expect(refreshes()).toBe(3);
    listener.stop(false);
    expect(clock.pending).toBe(0);
    clock.advance(10_000);
    expect(refreshes()).toBe(3);
  });

  it('reopens a lost connection after its backoff, compares everything, and hears notices again', async () => {
    const { clock, listener, reloads, refreshes, reconnects } = await startListener();
    const killed = await db.pool.query(
      `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE datname = current_database() AND query = $1`,
      [`LISTEN ${pg.escapeIdentifier(channel)}`],
    );
    expect(killed.rows).toEqual([{ done: true }]);
    await vi.waitFor(() => expect(listener.connected).toBe(false));
    // The first backoff is 100 ms.
    expect(clock.delays()).toEqual([100, 10_000]);
    clock.advance(99);
    expect(listener.connected).toBe(false);
    clock.advance(1);
    await vi.waitFor(() => expect(reconnects()).toBe(1));
    expect(listener.connected).toBe(true);
    expect(refreshes()).toBe(1);

    await send('other', [{ id: 'after' }]);
    await vi.waitFor(() => expect(clock.delays()).toContain(5));
    clock.advance(5);
    expect(reloads).toEqual([['after']]);
  });
});
