import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock, type Clock } from '../../../src/core/clock.js';
import { DatabaseHealth } from '../../../src/queues/postgres/health.js';
import { WriteChains } from '../../../src/queues/postgres/write-chains.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';
import { ManualClock } from '../../helpers/manual-clock.js';

let db: TestDatabase;
let table: string;

beforeAll(async () => {
  db = await testDatabase('write_chains');
  table = `${pg.escapeIdentifier(db.schema)}.written`;
  await db.pool.query(`CREATE TABLE ${table} (id text NOT NULL, step text NOT NULL)`);
});
afterAll(() => db.drop());
beforeEach(() => db.pool.query(`TRUNCATE ${table}`));

const pools: pg.Pool[] = [];
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.end();
});

function setup(clock: Clock = systemClock) {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => undefined);
  pools.push(pool);
  const health = new DatabaseHealth({ clock, logger: silentLogger() });
  const notified: string[] = [];
  const errors: string[] = [];
  const writes = new WriteChains({
    pool,
    clock,
    logger: silentLogger(),
    health,
    onError: (error, { operation, checkId }) => errors.push(`${operation} ${String(checkId)}: ${String(error)}`),
    notify: async (client, id) => {
      // In the write's transaction: it sees the write's own row.
      const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE id = $1`, [id]);
      notified.push(`${id}:${rows[0]?.n ?? 0}`);
    },
  });
  return { pool, health, writes, notified, errors };
}

function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

async function steps(): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string; step: string }>(`SELECT id, step FROM ${table}`);
  return rows.map((row) => `${row.id}:${row.step}`).sort();
}

describe('WriteChains', () => {
  it("writes one check's changes one after the other, other checks' beside them, each in a transaction that notifies", async () => {
    const { writes, notified } = setup();
    const order: string[] = [];
    const first = gate();
    writes.enqueue('a', 'first', async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ('a', 'first')`);
      order.push('a first');
      await first.promise;
      return () => order.push('a first applied');
    });
    writes.enqueue('a', 'second', async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ('a', 'second')`);
      order.push('a second');
      return undefined;
    });
    writes.enqueue('b', 'other', async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ('b', 'other')`);
      order.push('b other');
      return undefined;
    });
    expect(writes.has('a')).toBe(true);
    expect(writes.size).toBe(2);
    // b does not wait for a; a's second waits for its first.
    await vi.waitFor(() => expect(order).toContain('b other'));
    await vi.waitFor(() => expect(order).toContain('a first'));
    expect(order).not.toContain('a second');
    first.open();
    await writes.drain(Date.now() + 10_000);
    expect(order.filter((step) => step.startsWith('a'))).toEqual(['a first', 'a first applied', 'a second']);
    expect(await steps()).toEqual(['a:first', 'a:second', 'b:other']);
    expect(notified.sort()).toEqual(['a:1', 'a:2', 'b:1']);
    expect(writes.has('a')).toBe(false);
    expect(writes.size).toBe(0);
  });

  it('rolls back a write that fails for good, counts and reports it, and goes on with the next', async () => {
    const { writes, errors, health } = setup();
    writes.enqueue('a', 'bad', async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ('a', 'bad')`);
      await client.query('SELECT 1 / 0');
      return undefined;
    });
    writes.enqueue('a', 'good', async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ('a', 'good')`);
      return undefined;
    });
    await writes.drain(Date.now() + 10_000);
    expect(await steps()).toEqual(['a:good']);
    expect(writes.errors).toBe(1);
    expect(errors).toEqual(['bad a: error: division by zero']);
    expect(health.healthy).toBe(true);
  });

  it('tries a write again after the backoff (on its clock) when the database is away', async () => {
    const clock = new ManualClock();
    const { writes, health } = setup(clock);
    let tries = 0;
    writes.enqueue('a', 'flaky', async (client) => {
      tries++;
      if (tries === 1) throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
      await client.query(`INSERT INTO ${table} VALUES ('a', 'flaky')`);
      return undefined;
    });
    await vi.waitFor(() => expect(clock.delays()).toEqual([250]));
    expect(health.healthy).toBe(false);
    clock.advance(249);
    expect(tries).toBe(1);
    clock.advance(1);
    await vi.waitFor(() => expect(writes.size).toBe(0));
    expect(tries).toBe(2);
    expect(await steps()).toEqual(['a:flaky']);
    expect(health.healthy).toBe(true);
  });

  it('after close, lets the running write finish and writes nothing more', async () => {
    const { writes } = setup();
    const running = gate();
    const ran: string[] = [];
    writes.enqueue('a', 'running', async (client) => {
      ran.push('running');
      await running.promise;
      await client.query(`INSERT INTO ${table} VALUES ('a', 'running')`);
      return undefined;
    });
    writes.enqueue('a', 'queued', () => {
      ran.push('queued');
      return Promise.resolve(undefined);
    });
    await vi.waitFor(() => expect(ran).toEqual(['running']));
    writes.close();
    writes.enqueue('b', 'late', () => {
      ran.push('late');
      return Promise.resolve(undefined);
    });
    expect(writes.has('b')).toBe(false);
    running.open();
    await writes.drain(Date.now() + 10_000);
    expect(ran).toEqual(['running']);
    expect(await steps()).toEqual(['a:running']);
  });
});
