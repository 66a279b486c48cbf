import { createServer, Socket, type Server as NetServer } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type CheckSpec, type CheckState } from '../../../src/checks/check.js';
import { firstDueAt, nextSlot } from '../../../src/checks/schedule.js';
import type { ParseResult } from '../../../src/commands/command.js';
import { migrate } from '../../../src/postgres/migrations.js';
import {
  CompletionDroppedError,
  decodeSpec,
  encodeSpec,
  isTransient,
  LeaseLostError,
  PostgresQueue,
  type PostgresQueueOptions,
} from '../../../src/queues/postgres/postgres-queue.js';
import type { QueueEvent } from '../../../src/queues/queue.js';
import type { Incident } from '../../../src/results/incident.js';
import type { Result } from '../../../src/results/result.js';
import { Server } from '../../../src/server/server.js';
import { checkSpec, noopCommand } from '../../helpers/checks.js';
import { silentLogger } from '../../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../../helpers/postgres.js';
import { ManualClock } from '../../helpers/manual-clock.js';

let db: TestDatabase;
let q: (name: string) => string;

beforeAll(async () => {
  db = await testDatabase('queue');
  await migrate(db.pool, { schema: db.schema });
  q = (name) => `${pg.escapeIdentifier(db.schema)}.${name}`;
});
afterAll(() => db.drop());

const opened: { close(): Promise<void> }[] = [];
const pools: pg.Pool[] = [];

beforeEach(async () => {
  await db.pool.query(`TRUNCATE ${q('checks')}, ${q('incidents')}, ${q('instances')}`);
});
afterEach(async () => {
  for (const item of opened.splice(0).reverse()) await item.close();
  for (const pool of pools.splice(0)) await pool.end();
});

/** Parses the test's raw entries: a checkSpec() with the entry's fields. */
function parseCheck(raw: unknown): ParseResult<CheckSpec> {
  const entry = raw as Partial<CheckSpec> & { id: string; pattern?: string };
  const { pattern, ...rest } = entry;
  return { ok: true, value: checkSpec({ ...rest, attributes: pattern === undefined ? (rest.attributes ?? {}) : { match: new Matcher(pattern) } }) };
}

/** A class instance in attributes: JSON cannot keep it, so its check must be stored with its source entry. */
class Matcher {
  constructor(readonly pattern: string) {}
}

function newPool(url = db.url): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 2_000 });
  pool.on('error', () => undefined);
  pools.push(pool);
  return pool;
}

async function startQueue(instanceId: string, options: Partial<PostgresQueueOptions> = {}): Promise<PostgresQueue> {
  const queue = new PostgresQueue({ pool: newPool(), schema: db.schema, instanceId, parseCheck, logger: silentLogger(), ...options });
  opened.push(queue);
  await queue.start();
  return queue;
}

/** Waits until the background writes of a registry call reached the table. */
async function row(id: string): Promise<Record<string, unknown> | undefined> {
  const { rows } = await db.pool.query<Record<string, unknown>>(
    `SELECT *, (extract(epoch FROM next_due_at) * 1000)::float8 AS due, (extract(epoch FROM lease_until - now()) * 1000)::float8 AS lease_left
     FROM ${q('checks')} WHERE id = $1`,
    [id],
  );
  return rows[0];
}

function result(state: Result['state'], startedAt = Date.now()): Result {
  return { state, reason: state === 'ok' ? 'ok' : 'test', message: state, metrics: [], startedAt, durationMs: 1 };
}

function incident(checkId: string, openedAt: number, overrides: Partial<Incident> = {}): Incident {
  return { id: `${checkId}:${openedAt}`, checkId, openedAt, updatedAt: openedAt, resolvedAt: null, state: 'crit', worstState: 'crit', reason: 'test', acknowledgedAt: null, externalId: null, ...overrides };
}

/** Rows due now: inserted straight into the table, as another instance (or an earlier start) would have. */
async function seedDue(ids: readonly string[], timeoutMs = 10_000): Promise<void> {
  const specs = ids.map((id) => encodeSpec(checkSpec({ id, timeoutMs })).json);
  await db.pool.query(
    `INSERT INTO ${q('checks')} (id, spec, source, timeout_ms, next_due_at, slot_at, state)
     SELECT s->>'id', s, 'api', $2, now() - interval '1 second', now() - interval '1 second', $3 FROM jsonb_array_elements($1::jsonb) AS s`,
    [JSON.stringify(specs), timeoutMs, JSON.stringify(initialCheckState)],
  );
}

describe('encodeSpec / decodeSpec', () => {
  it('keeps RegExps, Buffers, Dates, Maps, non-finite numbers and undefined exactly', () => {
    const spec = checkSpec({
      id: 'x',
      attributes: { expect: /ab+c/gi, send: Buffer.from([0, 1, 255]), at: new Date(0), tags: new Map([['a', new Set([1])]]), limit: Infinity, skip: undefined, nested: [{ $vigil: 'not a tag' }] },
    });
    const { json, lossless } = encodeSpec(spec);
    expect(lossless).toBe(true);
    const back = decodeSpec(JSON.parse(JSON.stringify(json)));
    expect(back).toStrictEqual(spec);
    expect((back.attributes as { expect: RegExp }).expect.test('xABBC')).toBe(true);
  });

  it('says what it cannot keep, and refuses to read it back', () => {
    const { json, lossless, problem } = encodeSpec(checkSpec({ id: 'x', attributes: { match: new Matcher('a') } }));
    expect(lossless).toBe(false);
    expect(problem).toBe('a Matcher at attributes.match');
    expect(() => decodeSpec(json)).toThrow(/source entry must be parsed again/);
  });

  it('tells connection failures from bad statements', () => {
    expect(isTransient(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true);
    expect(isTransient(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransient(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isTransient(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false);
    expect(isTransient(new TypeError('x is not a function'))).toBe(false);
  });
});

describe('PostgresQueue', () => {
  it('writes registry changes through to the table and notifies the other instances', async () => {
    const a = await startQueue('a');
    const b = await startQueue('b');
    const events: QueueEvent[] = [];
    b.watch((event) => events.push(event));

    const check = a.add(checkSpec({ id: 'web', intervalMs: 60_000, attributes: { expect: /ok/ } }), { raw: { id: 'web' } });
    expect(a.get('web')).toBe(check);
    expect(a.status('web')).toBe('waiting');
    await vi.waitFor(async () => expect(await row('web')).toMatchObject({ source: 'api', source_entry: { id: 'web' }, timeout_ms: 10_000 }));
    await vi.waitFor(() => expect(b.get('web')?.spec.attributes).toEqual({ expect: /ok/ }));
    expect(b.get('web')?.dueAt).toBe(check.dueAt);
    expect(events).toContainEqual({ type: 'due-earlier' });

    a.update(checkSpec({ id: 'web', intervalMs: 30_000 }));
    await vi.waitFor(() => expect(b.get('web')?.spec.intervalMs).toBe(30_000));
    expect(b.get('web')?.dueAt).toBe(a.get('web')?.dueAt);

    const acknowledged: CheckState = { ...initialCheckState, hardState: 'crit', incident: incident('web', 1_000) };
    expect(a.setState('web', acknowledged)).toBe(true);
    await vi.waitFor(() => expect(b.get('web')?.state.incident?.id).toBe('web:1000'));
    expect((await db.pool.query(`SELECT id, resolved_at FROM ${q('incidents')}`)).rows).toEqual([{ id: 'web:1000', resolved_at: null }]);

    expect(b.remove('web')).toBe(true);
    expect(b.get('web')).toBeUndefined();
    await vi.waitFor(() => expect(a.get('web')).toBeUndefined());
    expect(events).toContainEqual({ type: 'removed', checkId: 'web' });
    expect(await row('web')).toBeUndefined();
    expect(() => b.update(checkSpec({ id: 'web' }))).toThrow('check "web" does not exist');
  });

  it('refuses a taken id, and a spec it could not read back without its source entry', async () => {
    const a = await startQueue('a');
    a.add(checkSpec({ id: 'one' }));
    expect(() => a.add(checkSpec({ id: 'one' }))).toThrow('check "one" already exists');
    expect(() => a.add(checkSpec({ id: 'two', attributes: { match: new Matcher('x') } }))).toThrow(/a Matcher at attributes.match that JSON cannot keep/);
  });

  it('reads a spec JSON cannot keep back from its source entry, through parseCheck', async () => {
    const a = await startQueue('a');
    const raw = { id: 'm', pattern: 'abc' };
    a.add((parseCheck(raw) as { value: CheckSpec }).value, { raw });
    await vi.waitFor(async () => expect(await row('m')).toBeDefined());
    const b = await startQueue('b');
    expect(b.get('m')?.spec.attributes).toEqual({ match: new Matcher('abc') });
  });

  it('keeps a row it cannot read out of its claims, and says so', async () => {
    await seedDue(['good', 'bad']);
    await db.pool.query(`UPDATE ${q('checks')} SET spec = jsonb_set(spec, '{attributes}', '{"$vigil":"from-the-future"}') WHERE id = 'bad'`);
    const errors: string[] = [];
    const a = await startQueue('a', { onError: (error) => errors.push(String(error)) });
    expect(a.get('bad')).toBeUndefined();
    expect(a.stats.unrunnable).toBe(1);
    expect(errors.join()).toMatch(/check "bad" cannot be read: .*from-the-future/);
    const claimed = await a.claim(Date.now(), 10);
    expect(claimed.map((check) => check.spec.id)).toEqual(['good']);
    expect((await row('bad'))?.lease_owner).toBeNull();
  });

  it('claims due checks in batches with SKIP LOCKED: concurrent claims never share a check', async () => {
    const ids = Array.from({ length: 60 }, (_, i) => `c${String(i).padStart(2, '0')}`);
    await seedDue(ids);
    const a = await startQueue('a');
    const b = await startQueue('b');
    const now = Date.now();
    const [fromA, fromB] = await Promise.all([a.claim(now, 25), b.claim(now, 25)]);
    const idsA = fromA.map((check) => check.spec.id);
    const idsB = fromB.map((check) => check.spec.id);
    expect(idsA).toHaveLength(25);
    expect(idsB).toHaveLength(25);
    expect(idsA.filter((id) => idsB.includes(id))).toEqual([]);
    // Earliest first, each batch; claimed checks are the mirror's own objects, now running.
    expect(fromA.map((check) => check.dueAt)).toEqual([...fromA.map((check) => check.dueAt)].sort((x, y) => x - y));
    expect(a.get(idsA[0] as string)).toBe(fromA[0]);
    expect(a.status(idsA[0] as string)).toBe('running');
    const rest = await a.claim(now, 25);
    expect(rest).toHaveLength(10);
    expect(await b.claim(now, 25)).toEqual([]);
    const leased = await db.pool.query<{ lease_owner: string; n: number }>(`SELECT lease_owner, count(*)::int AS n FROM ${q('checks')} GROUP BY lease_owner ORDER BY lease_owner`);
    expect(leased.rows).toEqual([{ lease_owner: 'a', n: 35 }, { lease_owner: 'b', n: 25 }]);
  });

  it('leases a claim for leaseFactor × timeout + margin and clears the lease on completion', async () => {
    await seedDue(['x'], 4_000);
    const a = await startQueue('a', { leaseFactor: 2, leaseMarginMs: 1_000 });
    const [check] = await a.claim(Date.now(), 5);
    expect(check?.spec.id).toBe('x');
    const leased = await row('x');
    expect(leased?.lease_owner).toBe('a');
    expect(leased?.lease_left).toBeGreaterThan(8_000);
    expect(leased?.lease_left).toBeLessThanOrEqual(9_000);

    const next = Date.now() + 60_000;
    check!.state = { ...check!.state, lastResult: result('ok') };
    check!.slotAt = next;
    await a.complete(check!, next);
    const done = await row('x');
    expect(done).toMatchObject({ lease_owner: null, lease_until: null, due: next, version: String(Number(leased?.version) + 1) });
    expect((done?.state as CheckState).lastResult?.state).toBe('ok');
    expect(a.status('x')).toBe('waiting');
    expect(await a.nextDueAt()).toBeLessThanOrEqual(next);
  });

  it('runs a check claimed more than half an interval after its slot for the nearest slot, so that the next run is an interval later', async () => {
    const now = Date.now();
    // Slots 7 s and 3 s ago on a 10 s grid, and a retry (due off its grid) 7 s ago.
    const seeded = [
      { id: 'late', due: now - 7_000, slot: now - 7_000 },
      { id: 'behind', due: now - 3_000, slot: now - 3_000 },
      { id: 'retry', due: now - 7_000, slot: now - 17_000 },
    ];
    for (const { id, due, slot } of seeded) {
      await db.pool.query(
        `INSERT INTO ${q('checks')} (id, spec, source, timeout_ms, next_due_at, slot_at, state)
         VALUES ($1, $2, 'api', 1000, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000), $5)`,
        [id, JSON.stringify(encodeSpec(checkSpec({ id, intervalMs: 10_000, timeoutMs: 1_000 })).json), due, slot, JSON.stringify(initialCheckState)],
      );
    }
    const a = await startQueue('a');
    const claimed = new Map((await a.claim(Date.now(), 5)).map((check) => [check.spec.id, check]));
    expect([...claimed.keys()].sort()).toEqual(['behind', 'late', 'retry']);
    // 7 s late: the slot 3 s ahead is the nearest; the server's next slot after it is 13 s from now, not 3 s.
    expect(claimed.get('late')).toMatchObject({ dueAt: now + 3_000, slotAt: now + 3_000 });
    expect(claimed.get('behind')).toMatchObject({ dueAt: now - 3_000, slotAt: now - 3_000 });
    expect(claimed.get('retry')).toMatchObject({ dueAt: now - 7_000, slotAt: now - 17_000 });
    expect(a.stats.lateClaims).toBe(1);

    const late = claimed.get('late')!;
    const { dueAt: next } = nextSlot(late.slotAt, 10_000, Date.now());
    late.slotAt = next;
    await a.complete(late, next);
    expect(next).toBe(now + 13_000);
    expect(await row('late')).toMatchObject({ due: now + 13_000 });
  });

  it('rejects a completion whose lease expired and was claimed by another instance (compare-and-set)', async () => {
    await seedDue(['slow'], 50);
    const a = await startQueue('a', { leaseFactor: 2, leaseMarginMs: 0 });
    const b = await startQueue('b', { leaseFactor: 2, leaseMarginMs: 0 });
    const [stale] = await a.claim(Date.now(), 1);
    expect(stale).toBeDefined();
    // A's lease (100 ms) runs out while its run is "still going"; B takes the check over.
    const taken = await vi.waitFor(async () => {
      const claimed = await b.claim(Date.now(), 1);
      expect(claimed).toHaveLength(1);
      return claimed[0]!;
    }, { timeout: 5_000, interval: 20 });
    expect((await row('slow'))?.lease_owner).toBe('b');

    stale!.state = { ...stale!.state, lastResult: result('crit') };
    const error = await a.complete(stale!, Date.now() + 1_000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LeaseLostError);
    expect(String(error)).toMatch(/lease of check "slow" was lost .*held by instance "b"/);
    expect(a.stats.leasesLost).toBe(1);
    expect(a.status('slow')).not.toBe('running');

    taken.state = { ...taken.state, lastResult: result('ok') };
    await b.complete(taken, Date.now() + 60_000);
    const written = await row('slow');
    expect(written?.lease_owner).toBeNull();
    expect((written?.state as CheckState).lastResult?.state).toBe('ok');
  });

  it('opens, updates and resolves incident rows from the state a completion writes', async () => {
    await seedDue(['db']);
    const a = await startQueue('a');
    const run = async (state: CheckState): Promise<void> => {
      await db.pool.query(`UPDATE ${q('checks')} SET next_due_at = now() - interval '1 second' WHERE id = 'db'`);
      const [check] = await a.claim(Date.now(), 1);
      check!.state = state;
      await a.complete(check!, Date.now() + 60_000);
    };
    const opened = incident('db', 5_000);
    await run({ ...initialCheckState, hardState: 'crit', incident: opened, lastHardChangeAt: 5_000 });
    await run({ ...initialCheckState, hardState: 'warn', incident: { ...opened, state: 'warn', updatedAt: 6_000 }, lastHardChangeAt: 6_000 });
    let rows = (await db.pool.query(`SELECT id, state, worst_state, resolved_at FROM ${q('incidents')}`)).rows;
    expect(rows).toEqual([{ id: 'db:5000', state: 'warn', worst_state: 'crit', resolved_at: null }]);
    await run({ ...initialCheckState, hardState: 'ok', incident: null, lastHardChangeAt: 7_000 });
    rows = (await db.pool.query(`SELECT id, (extract(epoch FROM resolved_at) * 1000)::float8 AS resolved, data->>'resolvedAt' AS data_resolved FROM ${q('incidents')}`)).rows;
    expect(rows).toEqual([{ id: 'db:5000', resolved: 7_000, data_resolved: '7000' }]);
  });

  it('keeps an acknowledgement another instance wrote while the check ran here', async () => {
    await seedDue(['acked']);
    const open = incident('acked', 5_000);
    const down: CheckState = { ...initialCheckState, hardState: 'crit', incident: open, lastHardChangeAt: 5_000 };
    await db.pool.query(`UPDATE ${q('checks')} SET state = $1`, [JSON.stringify(down)]);
    const a = await startQueue('a');
    const b = await startQueue('b');
    const [check] = await a.claim(Date.now(), 1);
    expect(check?.state.incident?.id).toBe('acked:5000');
    b.setState('acked', { ...down, incident: { ...open, acknowledgedAt: 6_000 } });
    await vi.waitFor(async () => expect(((await row('acked'))?.state as CheckState).incident?.acknowledgedAt).toBe(6_000));

    // a's run computed its state from the unacknowledged incident (a severity change).
    check!.state = { ...down, incident: { ...open, state: 'warn', updatedAt: 7_000 } };
    await a.complete(check!, Date.now() + 60_000);
    const stored = (await row('acked'))?.state as CheckState;
    expect(stored.incident).toMatchObject({ state: 'warn', acknowledgedAt: 6_000 });
    const rows = (await db.pool.query(`SELECT state, (extract(epoch FROM acknowledged_at) * 1000)::float8 AS acked, data->'acknowledgedAt' AS data_acked FROM ${q('incidents')}`)).rows;
    expect(rows).toEqual([{ state: 'warn', acked: 6_000, data_acked: 6_000 }]);
    await vi.waitFor(() => expect(a.get('acked')?.state.incident?.acknowledgedAt).toBe(6_000));
  });

  it('writes a state the server changed on the mirror object directly (acknowledge, submit)', async () => {
    const a = await startQueue('a');
    const check = a.add(checkSpec({ id: 'push' }));
    await vi.waitFor(async () => expect(await row('push')).toBeDefined());
    check.state = { ...check.state, hardState: 'crit', incident: incident('push', 9_000) };
    await vi.waitFor(async () => expect(((await row('push'))?.state as CheckState).incident?.id).toBe('push:9000'));
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${q('incidents')}`)).rows[0]).toEqual({ n: 1 });
  });

  it('reschedules a waiting check for another instance to run, and not one running here', async () => {
    const a = await startQueue('a');
    const b = await startQueue('b');
    a.add(checkSpec({ id: 'now', intervalMs: 3_600_000 }));
    await vi.waitFor(() => expect(b.get('now')).toBeDefined());
    expect(await b.claim(Date.now(), 5)).toEqual([]);
    const at = Date.now();
    expect(a.reschedule('now', at)).toBe(true);
    const claimed = await vi.waitFor(async () => {
      const due = await b.claim(Date.now(), 5);
      expect(due).toHaveLength(1);
      return due;
    });
    expect(claimed[0]?.dueAt).toBe(at);
    expect(b.reschedule('now')).toBe(false);
  });

  it('wakes a sleeping server at once for "run now", here and on another instance (NOTIFY), long before its next poll', async () => {
    const a = await startQueue('a', { pollIntervalMs: 60_000 });
    const b = await startQueue('b', { pollIntervalMs: 60_000 });
    const servers = [new Server({ queue: a, commands: [noopCommand], logger: silentLogger() }), new Server({ queue: b, commands: [noopCommand], logger: silentLogger() })];
    opened.unshift(...servers.map((server) => ({ close: () => server.stop() })));
    const finished: string[] = [];
    servers.forEach((server, i) => server.on('check:finish', (event) => finished.push(`${i === 0 ? 'a' : 'b'}:${event.check.id}`)));
    a.add(checkSpec({ id: 'hourly', intervalMs: 3_600_000 }));
    await vi.waitFor(() => expect(b.get('hourly')).toBeDefined());
    for (const server of servers) server.start();

    const askedHere = Date.now();
    expect(servers[0]!.runNow('hourly')).toBe(true);
    await vi.waitFor(() => expect(finished).toHaveLength(1), { timeout: 5_000, interval: 10 });
    expect(Date.now() - askedHere).toBeLessThan(1_000);

    // Only b's server may run it now: a's is stopped. a reschedules; b hears of it through NOTIFY.
    await servers[0]!.stop();
    await vi.waitFor(() => expect(a.status('hourly')).toBe('waiting'));
    const askedThere = Date.now();
    expect(a.reschedule('hourly', askedThere)).toBe(true);
    await vi.waitFor(() => expect(finished).toHaveLength(2), { timeout: 5_000, interval: 10 });
    expect(finished[1]).toBe('b:hourly');
    expect(Date.now() - askedThere).toBeLessThan(1_000);
  });

  it('makes the config file the source of truth for config checks, leaving API checks alone', async () => {
    const a = await startQueue('a');
    const b = await startQueue('b');
    a.add(checkSpec({ id: 'from-api' }), { raw: { id: 'from-api' } });
    await vi.waitFor(async () => expect(await row('from-api')).toBeDefined());

    const first = await a.syncConfigChecks([{ spec: checkSpec({ id: 'one' }), raw: { id: 'one' } }, { spec: checkSpec({ id: 'two' }) }]);
    expect(first).toEqual({ added: 2, updated: 0, removed: 0 });
    expect(await b.syncConfigChecks([{ spec: checkSpec({ id: 'one' }), raw: { id: 'one' } }, { spec: checkSpec({ id: 'two' }) }])).toEqual({ added: 0, updated: 0, removed: 0 });

    const dueBefore = a.get('one')?.dueAt;
    const second = await b.syncConfigChecks([{ spec: checkSpec({ id: 'one', timeoutMs: 5_000 }), raw: { id: 'one', timeout: '5s' } }, { spec: checkSpec({ id: 'from-api' }) }]);
    expect(second).toEqual({ added: 0, updated: 2, removed: 1 });
    const rows = (await db.pool.query(`SELECT id, source, timeout_ms FROM ${q('checks')} ORDER BY id`)).rows;
    expect(rows).toEqual([
      { id: 'from-api', source: 'config', timeout_ms: 10_000 },
      { id: 'one', source: 'config', timeout_ms: 5_000 },
    ]);
    await vi.waitFor(() => {
      expect(a.get('two')).toBeUndefined();
      expect(a.get('one')?.spec.timeoutMs).toBe(5_000);
    });
    // Same interval: the check keeps its place.
    expect(a.get('one')?.dueAt).toBe(dueBefore);
  });

  it('buffers completions while the database is away and writes them when it is back', async () => {
    await seedDue(['p1', 'p2', 'p3']);
    const proxy = await tcpProxy(db.url);
    opened.push(proxy);
    const errors: string[] = [];
    const a = new PostgresQueue({ pool: newPool(proxy.url), schema: db.schema, instanceId: 'a', logger: silentLogger(), maxBufferedCompletions: 2, onError: (e, c) => errors.push(`${c.operation}: ${String(e)}`) });
    opened.push(a);
    await a.start();
    const claimed = await a.claim(Date.now(), 3);
    expect(claimed).toHaveLength(3);

    proxy.cut();
    const next = Date.now() + 60_000;
    const settled = claimed.map((check) => {
      check.slotAt = next;
      return a.complete(check, next).then(() => 'written', (e: unknown) => e);
    });
    // The oldest of three is dropped: only two fit.
    expect(await settled[0]).toBeInstanceOf(CompletionDroppedError);
    expect(a.stats.droppedCompletions).toBe(1);
    await vi.waitFor(() => expect(a.stats.healthy).toBe(false));
    expect(await a.claim(Date.now(), 10)).toEqual([]);
    expect(errors.some((line) => line.startsWith('complete:'))).toBe(true);

    proxy.restore();
    expect(await Promise.all(settled.slice(1))).toEqual(['written', 'written']);
    expect(a.stats.healthy).toBe(true);
    // The dropped one keeps its lease until it expires; the others were written.
    const dropped = claimed[0]!.spec.id;
    const rows = (await db.pool.query<{ id: string; lease_owner: string | null }>(`SELECT id, lease_owner FROM ${q('checks')}`)).rows;
    expect(rows.filter((r) => r.lease_owner !== null)).toEqual([{ id: dropped, lease_owner: 'a' }]);
  });

  it('drops a check removed while it runs here, even when its id is added again meanwhile', async () => {
    await seedDue(['again']);
    const a = await startQueue('a');
    const [old] = await a.claim(Date.now(), 1);
    expect(a.remove('again')).toBe(true);
    expect(a.get('again')).toBeUndefined();
    const renewed = a.add(checkSpec({ id: 'again', intervalMs: 1_000 }));
    await vi.waitFor(async () => expect((await row('again'))?.version).toBe('1'));
    await a.complete(old!, Date.now() + 60_000);
    expect(a.get('again')).toBe(renewed);
    expect(a.status('again')).toBe('waiting');
    const claimed = await vi.waitFor(async () => {
      const due = await a.claim(Date.now(), 5);
      expect(due).toHaveLength(1);
      return due;
    }, { timeout: 3_000, interval: 20 });
    expect(claimed[0]).toBe(renewed);
  });

  it('tells time through its clock and keeps the table on the database\'s: first and "run now" due times, the completion flush, the scan for changed states', async () => {
    // An hour ahead of the database: the queue measures the offset at start and moves every time it
    // writes or reads by it, so the table holds the database's times; leases are the database's anyway.
    const clock = new ManualClock(Date.now() + 3_600_000);
    const a = await startQueue('a', { clock });
    const offset = a.stats.clockOffsetMs;
    expect(Math.abs(offset - 3_600_000)).toBeLessThan(1_000);
    const check = a.add(checkSpec({ id: 'clocked', intervalMs: 86_400_000 }));
    expect(check.dueAt).toBe(firstDueAt('clocked', 86_400_000, clock.now()));
    await vi.waitFor(async () => expect((await row('clocked'))?.due).toBe(check.dueAt - offset));

    expect(a.reschedule('clocked')).toBe(true);
    expect(check.dueAt).toBe(clock.now());
    await vi.waitFor(async () => expect((await row('clocked'))?.due).toBe(clock.now() - offset));
    const [claimed] = await a.claim(clock.now(), 5);
    expect(claimed).toBe(check);
    // The lease as the instance sees it: on its own clock, about an hour ahead of the table's.
    expect(a.status('clocked')).toBe('running');

    const next = clock.now() + 86_400_000;
    check.state = { ...check.state, lastResult: result('ok', clock.now()) };
    const written = a.complete(check, next);
    expect(a.stats.bufferedCompletions).toBe(1);
    clock.advance(4);
    expect(a.stats.bufferedCompletions).toBe(1);
    clock.advance(1);
    await written;
    expect(await row('clocked')).toMatchObject({ lease_owner: null, due: next - offset });
    expect(check.dueAt).toBe(next);

    // The server's acknowledge changes the mirror's object; the next scan on the clock writes it.
    check.state = { ...check.state, hardState: 'crit', incident: incident('clocked', clock.now()) };
    clock.advance(200);
    await vi.waitFor(async () => expect(((await row('clocked'))?.state as CheckState).incident?.openedAt).toBe(clock.now() - 200));
  });

  it('reports a closed queue: claims nothing and refuses completions', async () => {
    await seedDue(['z']);
    const a = await startQueue('a');
    const [check] = await a.claim(Date.now(), 1);
    await a.close({ abandon: true });
    expect(await a.claim(Date.now(), 5)).toEqual([]);
    expect(await a.nextDueAt()).toBeNull();
    await expect(a.complete(check!, Date.now())).rejects.toBeInstanceOf(CompletionDroppedError);
    // Abandoned: the lease stays for its time, as after a crash.
    expect((await row('z'))?.lease_owner).toBe('a');
  });
});

/** A TCP proxy to the test database that can be cut (every connection dropped, new ones refused) and restored. */
async function tcpProxy(url: string): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const target = new URL(url);
  const sockets = new Set<Socket>();
  let up = true;
  const server: NetServer = createServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = new Socket();
    upstream.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(typeof address === 'object' && address ? address.port : 0);
  return {
    url: proxied.toString(),
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      up = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
