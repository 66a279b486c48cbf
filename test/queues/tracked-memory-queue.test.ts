import { describe, expect, it } from 'vitest';
import { initialCheckState, type Check, type CheckState } from '../../src/checks/check.js';
import { firstDueAt } from '../../src/checks/schedule.js';
import type { QueueEvent } from '../../src/queues/queue.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import { checkSpec } from '../helpers/checks.js';
import { clockWith } from '../../src/core/clock.js';

const T0 = Date.UTC(2024, 0, 1);

function setup(): { pool: TrackedMemoryQueue; events: QueueEvent[]; clock: { now: number } } {
  const clock = { now: T0 };
  const pool = new TrackedMemoryQueue({ clock: clockWith(() => clock.now) });
  const events: QueueEvent[] = [];
  pool.watch((event) => events.push(event));
  return { pool, events, clock };
}

/** Claims exactly the check with this id, as the server does when it is due. */
async function claimOne(pool: TrackedMemoryQueue, id: string): Promise<Check> {
  const dueAt = pool.get(id)?.dueAt;
  if (dueAt === undefined) throw new Error(`no check "${id}"`);
  const claimed = await pool.claim(dueAt, 1);
  expect(claimed.map((check) => check.spec.id)).toEqual([id]);
  return claimed[0] as Check;
}

/** Gives a claimed check back after a regular run, as the server does: its slot moves to the next due time. */
function completeRegular(pool: TrackedMemoryQueue, check: Check, nextDueAt: number): Promise<void> {
  check.slotAt = nextDueAt;
  return pool.complete(check, nextDueAt);
}

const removedEvents = (events: QueueEvent[]): QueueEvent[] => events.filter((event) => event.type === 'removed');

const downState: CheckState = {
  ...initialCheckState,
  hardState: 'crit',
  attempt: 1,
  incident: {
    id: `db:${T0}`,
    checkId: 'db',
    openedAt: T0,
    updatedAt: T0,
    resolvedAt: null,
    state: 'crit',
    worstState: 'crit',
    reason: 'refused',
    acknowledgedAt: null,
    externalId: null,
  },
  lastHardChangeAt: T0,
};

describe('TrackedMemoryQueue.add', () => {
  it('spreads the first run of each check across its interval by id', () => {
    const { pool } = setup();
    const dueTimes = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const id = `check-${i}`;
      const check = pool.add(checkSpec({ id, intervalMs: 60_000 }));
      expect(check.dueAt).toBe(firstDueAt(id, 60_000, T0));
      expect(check.dueAt).toBeGreaterThanOrEqual(T0);
      expect(check.dueAt).toBeLessThan(T0 + 60_000);
      expect(check.slotAt).toBe(check.dueAt);
      expect(check.state).toBe(initialCheckState);
      dueTimes.add(check.dueAt);
    }
    expect(dueTimes.size).toBeGreaterThan(15);
  });

  it('runs a one-shot check at once', () => {
    const { pool } = setup();
    expect(pool.add(checkSpec({ id: 'once', intervalMs: null })).dueAt).toBe(T0);
  });

  it('honours a restored due time and state', async () => {
    const { pool } = setup();
    const check = pool.add(checkSpec({ id: 'db' }), { state: downState, dueAt: T0 + 1_234 });
    expect(check).toMatchObject({ dueAt: T0 + 1_234, slotAt: T0 + 1_234, state: downState });
    expect(await pool.nextDueAt()).toBe(T0 + 1_234);
  });

  it('restores a grid anchor, and a finished one-shot check as done and out of line', async () => {
    const { pool } = setup();
    expect(pool.add(checkSpec({ id: 'retrying' }), { dueAt: T0 + 5_000, slotAt: T0 - 30_000 })).toMatchObject({ dueAt: T0 + 5_000, slotAt: T0 - 30_000 });
    pool.add(checkSpec({ id: 'finished', intervalMs: null }), { state: downState, dueAt: null, slotAt: T0 - 1 });
    expect(pool.status('finished')).toBe('done');
    expect(pool.claimSync(T0 + 60_000, 10).map((check) => check.spec.id)).toEqual(['retrying']);
    expect(await pool.count()).toBe(2);
  });

  it('restores an adopted saved state on the first add of its id, once', async () => {
    const { pool } = setup();
    pool.adopt('child', { state: downState, dueAt: T0 + 2_000, slotAt: T0 + 2_000 });
    expect(pool.add(checkSpec({ id: 'child' }))).toMatchObject({ state: downState, dueAt: T0 + 2_000 });
    pool.remove('child');
    expect(pool.add(checkSpec({ id: 'child' })).state).toBe(initialCheckState);
    // Adopting the id of a known check changes nothing.
    pool.adopt('child', { state: downState, dueAt: T0, slotAt: T0 });
    expect(pool.get('child')?.state).toBe(initialCheckState);
    expect(await pool.count()).toBe(1);
  });

  it('throws for an id that is taken', () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'a' }));
    expect(() => pool.add(checkSpec({ id: 'a', intervalMs: 5_000 }))).toThrow('check "a" already exists');
    expect(pool.size).toBe(1);
    expect(pool.get('a')?.spec.intervalMs).toBe(60_000);
  });

  it('tells watchers when an added check is due before all others', () => {
    const { pool, events } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 + 500 });
    pool.add(checkSpec({ id: 'b' }), { dueAt: T0 + 900 });
    expect(events).toEqual([{ type: 'due-earlier' }]);
    pool.add(checkSpec({ id: 'c' }), { dueAt: T0 + 100 });
    expect(events).toEqual([{ type: 'due-earlier' }, { type: 'due-earlier' }]);
  });
});

describe('TrackedMemoryQueue.update', () => {
  it('keeps the due time of a waiting check whose interval did not change', () => {
    const { pool, clock } = setup();
    pool.add(checkSpec({ id: 'a', attributes: { v: 1 } }), { dueAt: T0 + 30_000 });
    clock.now = T0 + 10_000;
    pool.update(checkSpec({ id: 'a', attributes: { v: 2 } }));
    expect(pool.get('a')).toMatchObject({ dueAt: T0 + 30_000, slotAt: T0 + 30_000, spec: { attributes: { v: 2 } } });
  });

  it('moves a waiting check whose interval changed to its new spread slot', async () => {
    const { pool, clock } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 + 50_000 });
    pool.add(checkSpec({ id: 'b' }), { dueAt: T0 + 60_000 });
    clock.now = T0 + 10_000;
    pool.update(checkSpec({ id: 'a', intervalMs: 5_000 }));
    const expected = firstDueAt('a', 5_000, T0 + 10_000);
    expect(pool.get('a')).toMatchObject({ dueAt: expected, slotAt: expected, spec: { intervalMs: 5_000 } });
    expect(await pool.nextDueAt()).toBe(expected);
    expect(pool.status('a')).toBe('waiting');
  });

  it('keeps the state of the check', () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'db' }), { state: downState });
    pool.update(checkSpec({ id: 'db', intervalMs: 10_000 }));
    expect(pool.get('db')?.state).toBe(downState);
  });

  it('lets a running check finish with its old spec and gives it the new one when it completes', async () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'a', attributes: { v: 1 } }), { dueAt: T0 });
    const check = await claimOne(pool, 'a');
    pool.update(checkSpec({ id: 'a', attributes: { v: 2 } }));
    expect(pool.get('a')?.spec.attributes).toEqual({ v: 1 });
    expect(check.spec.attributes).toEqual({ v: 1 });
    await completeRegular(pool, check, T0 + 60_000);
    expect(pool.get('a')).toMatchObject({ dueAt: T0 + 60_000, spec: { attributes: { v: 2 } } });
    expect(pool.status('a')).toBe('waiting');
  });

  it('moves a running check whose pool changed into the line of its new pool when it completes, and out of the old one', async () => {
    const { pool } = setup();
    pool.partitionBy((spec) => spec.pool ?? 'default');
    pool.add(checkSpec({ id: 'a', pool: 'fast' }), { dueAt: T0 });
    const [check] = await pool.claimFrom(T0, 1, 'fast');
    expect(check?.spec.id).toBe('a');
    pool.update(checkSpec({ id: 'a', pool: 'slow' }));
    await completeRegular(pool, check as Check, T0 + 60_000);
    expect(await pool.claimFrom(T0 + 60_000, 10, 'fast')).toEqual([]);
    expect((await pool.claimFrom(T0 + 60_000, 10, 'slow')).map((c) => c.spec.id)).toEqual(['a']);
  });

  it('puts a running check whose interval changed on its new grid when it completes', async () => {
    const { pool, clock } = setup();
    pool.add(checkSpec({ id: 'a', intervalMs: 60_000 }), { dueAt: T0 });
    const check = await claimOne(pool, 'a');
    pool.update(checkSpec({ id: 'a', intervalMs: 10_000 }));
    clock.now = T0 + 1_000;
    await completeRegular(pool, check, T0 + 60_000);
    const expected = firstDueAt('a', 10_000, T0 + 1_000);
    expect(expected).toBeLessThan(T0 + 11_000);
    expect(pool.get('a')).toMatchObject({ dueAt: expected, slotAt: expected, spec: { intervalMs: 10_000 } });
    expect(await pool.nextDueAt()).toBe(expected);
  });

  it('keeps a retry the run asked for when the interval changed while it ran', async () => {
    const { pool, clock } = setup();
    pool.add(checkSpec({ id: 'a', intervalMs: 60_000 }), { dueAt: T0 });
    const check = await claimOne(pool, 'a');
    pool.update(checkSpec({ id: 'a', intervalMs: 10_000 }));
    clock.now = T0 + 1_000;
    // A retry: the slot stays where it was, the next run is off the grid.
    await pool.complete(check, T0 + 16_000);
    expect(pool.get('a')).toMatchObject({ dueAt: T0 + 16_000, slotAt: T0, spec: { intervalMs: 10_000 } });
  });

  it('retires a running check made one-shot when its run completes', async () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 });
    const check = await claimOne(pool, 'a');
    pool.update(checkSpec({ id: 'a', intervalMs: null }));
    await completeRegular(pool, check, T0 + 60_000);
    expect(pool.status('a')).toBe('done');
    expect(await pool.nextDueAt()).toBeNull();
  });

  it('throws for an unknown or removed id', async () => {
    const { pool } = setup();
    expect(() => pool.update(checkSpec({ id: 'nope' }))).toThrow('check "nope" does not exist');
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 });
    await claimOne(pool, 'a');
    pool.remove('a');
    expect(() => pool.update(checkSpec({ id: 'a' }))).toThrow('check "a" does not exist');
  });

  it('upsert adds an unknown check and updates a known one', () => {
    const { pool } = setup();
    pool.upsert(checkSpec({ id: 'a', attributes: { v: 1 } }));
    pool.upsert(checkSpec({ id: 'a', attributes: { v: 2 } }));
    expect(pool.size).toBe(1);
    expect(pool.get('a')?.spec.attributes).toEqual({ v: 2 });
  });
});

describe('TrackedMemoryQueue.remove', () => {
  it('takes a waiting check out for good and tells watchers once', async () => {
    const { pool, events } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 });
    pool.add(checkSpec({ id: 'b' }), { dueAt: T0 + 10 });
    expect(pool.remove('a')).toBe(true);
    expect(pool.remove('a')).toBe(false);
    expect(removedEvents(events)).toEqual([{ type: 'removed', checkId: 'a' }]);
    expect(pool.get('a')).toBeUndefined();
    expect(pool.status('a')).toBeUndefined();
    expect(await pool.count()).toBe(1);
    expect((await pool.claim(T0 + 1_000, 10)).map((check) => check.spec.id)).toEqual(['b']);
  });

  it('does not put back a check removed while it runs, and tells watchers once', async () => {
    const { pool, events } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 });
    const check = await claimOne(pool, 'a');
    expect(pool.status('a')).toBe('running');
    expect(pool.remove('a')).toBe(true);
    expect(pool.remove('a')).toBe(false);
    expect(pool.get('a')).toBeUndefined();
    expect(pool.list()).toEqual([]);
    expect(await pool.count()).toBe(0);
    await completeRegular(pool, check, T0 + 60_000);
    expect(await pool.nextDueAt()).toBeNull();
    expect(await pool.claim(Infinity, 10)).toEqual([]);
    expect(await pool.count()).toBe(0);
    expect(removedEvents(events)).toEqual([{ type: 'removed', checkId: 'a' }]);
  });

  it('takes the same id again while the removed check still runs, and ignores the stale completion', async () => {
    const { pool, events } = setup();
    pool.add(checkSpec({ id: 'a', attributes: { v: 1 } }), { dueAt: T0 });
    const old = await claimOne(pool, 'a');
    pool.remove('a');
    const fresh = pool.add(checkSpec({ id: 'a', attributes: { v: 2 } }), { dueAt: T0 + 5_000 });
    expect(pool.get('a')).toBe(fresh);
    expect(pool.status('a')).toBe('waiting');
    old.state = downState;
    await completeRegular(pool, old, T0 + 60_000);
    expect(pool.get('a')).toBe(fresh);
    expect(fresh).toMatchObject({ dueAt: T0 + 5_000, state: initialCheckState, spec: { attributes: { v: 2 } } });
    expect(pool.status('a')).toBe('waiting');
    expect(pool.size).toBe(1);
    expect(await pool.count()).toBe(1);
    expect(await pool.claim(T0 + 5_000, 10)).toEqual([fresh]);
    expect(removedEvents(events)).toHaveLength(1);
  });

  it('answers false for an unknown id', () => {
    const { pool, events } = setup();
    expect(pool.remove('nope')).toBe(false);
    expect(events).toEqual([]);
  });
});

describe('TrackedMemoryQueue.reschedule and setState', () => {
  it('moves a waiting check to the given time, by default now', async () => {
    const { pool, clock, events } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 + 50_000 });
    pool.add(checkSpec({ id: 'b' }), { dueAt: T0 + 40_000 });
    events.length = 0;
    clock.now = T0 + 1_000;
    expect(pool.reschedule('a')).toBe(true);
    expect(pool.get('a')?.dueAt).toBe(T0 + 1_000);
    expect(events).toEqual([{ type: 'due-earlier' }]);
    expect(pool.reschedule('a', T0 + 45_000)).toBe(true);
    expect(await pool.nextDueAt()).toBe(T0 + 40_000);
  });

  it('does not reschedule a running or unknown check', async () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'a' }), { dueAt: T0 });
    await claimOne(pool, 'a');
    expect(pool.reschedule('a', T0 + 1)).toBe(false);
    expect(pool.reschedule('nope')).toBe(false);
    expect(await pool.nextDueAt()).toBeNull();
  });

  it('replaces the state of a waiting or running check', async () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'db' }), { dueAt: T0 });
    expect(pool.setState('db', downState)).toBe(true);
    expect(pool.get('db')?.state).toBe(downState);
    const check = await claimOne(pool, 'db');
    expect(pool.setState('db', initialCheckState)).toBe(true);
    expect(check.state).toBe(initialCheckState);
    expect(pool.setState('nope', downState)).toBe(false);
  });
});

describe('TrackedMemoryQueue one-shot checks and counts', () => {
  it('keeps a finished one-shot check as done, out of line, until it is rescheduled', async () => {
    const { pool, clock } = setup();
    pool.add(checkSpec({ id: 'once', intervalMs: null }));
    const check = await claimOne(pool, 'once');
    await pool.complete(check, null);
    expect(pool.status('once')).toBe('done');
    expect(pool.get('once')).toBe(check);
    expect(await pool.nextDueAt()).toBeNull();
    expect(pool.size).toBe(1);
    expect(await pool.count()).toBe(1);
    clock.now = T0 + 5_000;
    expect(pool.reschedule('once')).toBe(true);
    expect(pool.status('once')).toBe('waiting');
    expect(await pool.nextDueAt()).toBe(T0 + 5_000);
  });

  it('lists and counts waiting, running and done checks', async () => {
    const { pool } = setup();
    pool.add(checkSpec({ id: 'waiting' }), { dueAt: T0 + 10_000 });
    pool.add(checkSpec({ id: 'running' }), { dueAt: T0 });
    pool.add(checkSpec({ id: 'done', intervalMs: null }), { dueAt: T0 + 1 });
    await claimOne(pool, 'running');
    await pool.complete(await claimOne(pool, 'done'), null);
    expect(pool.list().map((check) => check.spec.id).sort()).toEqual(['done', 'running', 'waiting']);
    expect(pool.size).toBe(3);
    expect(await pool.count()).toBe(3);
    expect(pool.status('waiting')).toBe('waiting');
    expect(pool.status('running')).toBe('running');
    expect(pool.status('done')).toBe('done');
    pool.remove('running');
    expect(pool.size).toBe(2);
    expect(await pool.count()).toBe(2);
  });

  it('stops telling a watcher once it unsubscribes', () => {
    const pool = new TrackedMemoryQueue({ clock: clockWith(() => T0) });
    const events: QueueEvent[] = [];
    const unwatch = pool.watch((event) => events.push(event));
    pool.add(checkSpec({ id: 'a' }));
    unwatch();
    pool.add(checkSpec({ id: 'b' }), { dueAt: T0 - 1 });
    pool.remove('a');
    expect(events).toEqual([{ type: 'due-earlier' }]);
  });
});
