import { describe, expect, it } from 'vitest';
import { initialCheckState, type Check } from '../../src/checks/check.js';
import { MemoryQueue } from '../../src/queues/memory-queue.js';
import type { QueueEvent } from '../../src/queues/queue.js';
import { checkSpec } from '../helpers/checks.js';

function check(id: string, dueAt: number): Check {
  return { spec: checkSpec({ id }), state: initialCheckState, dueAt, slotAt: dueAt };
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

function watchEvents(queue: MemoryQueue): QueueEvent[] {
  const events: QueueEvent[] = [];
  queue.watch((event) => events.push(event));
  return events;
}

describe('MemoryQueue', () => {
  it.each([1, 2, 3, 42, 20240601])('claims in due order under random pushes, replacements and claims (seed %i)', async (seed) => {
    const random = prng(seed);
    const queue = new MemoryQueue();
    // What should be waiting: id → due time.
    const expected = new Map<string, number>();
    let claimedTotal = 0;
    for (let step = 0; step < 3_000; step++) {
      const roll = random();
      if (roll < 0.6) {
        // Few enough ids that pushes often replace a waiting check; small due range so ties happen.
        const id = `c${Math.floor(random() * 400)}`;
        const dueAt = Math.floor(random() * 1_000);
        queue.push(check(id, dueAt));
        expected.set(id, dueAt);
      } else if (roll < 0.7) {
        const id = `c${Math.floor(random() * 400)}`;
        const removed = queue.remove(id);
        expect(removed?.dueAt).toBe(expected.get(id));
        expected.delete(id);
      } else {
        const now = Math.floor(random() * 1_000);
        const limit = 1 + Math.floor(random() * 20);
        const claimed = await queue.claim(now, limit);
        const dueTimes = [...expected.values()].filter((dueAt) => dueAt <= now).sort((a, b) => a - b);
        expect(claimed.map((c) => c.dueAt)).toEqual(dueTimes.slice(0, limit));
        for (const c of claimed) {
          // Ties may come out in any order, but each claimed check must be the one waiting under its id.
          expect(expected.get(c.spec.id)).toBe(c.dueAt);
          expected.delete(c.spec.id);
        }
        claimedTotal += claimed.length;
      }
      expect(queue.waiting).toBe(expected.size);
    }
    expect(await queue.count()).toBe(expected.size + claimedTotal);
    const rest = await queue.claim(Infinity, Infinity);
    expect(rest.map((c) => c.dueAt)).toEqual([...expected.values()].sort((a, b) => a - b));
    expect(queue.waiting).toBe(0);
    expect(await queue.nextDueAt()).toBeNull();
  });

  it('claims only due checks, earliest first, up to the limit', async () => {
    const queue = new MemoryQueue();
    for (const [id, dueAt] of [['d', 400], ['a', 100], ['c', 300], ['b', 200], ['e', 500]] as const) queue.push(check(id, dueAt));
    expect(await queue.claim(50, 10)).toEqual([]);
    expect((await queue.claim(350, 2)).map((c) => c.spec.id)).toEqual(['a', 'b']);
    expect((await queue.claim(350, 2)).map((c) => c.spec.id)).toEqual(['c']);
    expect(await queue.claim(1_000, 0)).toEqual([]);
    expect(queue.claimSync(1_000, 5).map((c) => c.spec.id)).toEqual(['d', 'e']);
  });

  it('replaces a waiting check pushed again under the same id', async () => {
    const queue = new MemoryQueue();
    queue.push(check('a', 100));
    queue.push(check('b', 200));
    const moved = check('a', 300);
    queue.push(moved);
    expect(queue.waiting).toBe(2);
    expect(queue.get('a')).toBe(moved);
    expect(await queue.nextDueAt()).toBe(200);
    expect((await queue.claim(1_000, 10)).map((c) => `${c.spec.id}@${c.dueAt}`)).toEqual(['b@200', 'a@300']);
  });

  it('removes a waiting check by id, and answers undefined for one that is not waiting', async () => {
    const queue = new MemoryQueue();
    const a = check('a', 100);
    queue.push(a);
    queue.push(check('b', 200));
    queue.push(check('c', 50));
    expect(queue.remove('a')).toBe(a);
    expect(queue.remove('a')).toBeUndefined();
    expect(queue.get('a')).toBeUndefined();
    expect(queue.remove('nope')).toBeUndefined();
    expect(queue.forget('b')?.spec.id).toBe('b');
    expect(queue.forget('b')).toBeUndefined();
    expect((await queue.claim(1_000, 10)).map((c) => c.spec.id)).toEqual(['c']);
  });

  it('does not show a claimed check as waiting; one pushed back is in line again, one forgotten while claimed comes back fresh', async () => {
    const queue = new MemoryQueue();
    queue.push(check('a', 100));
    queue.push(check('b', 200));
    const [a, b] = (await queue.claim(1_000, 2)) as [Check, Check];
    expect(queue.get('a')).toBeUndefined();
    expect(queue.waiting).toBe(0);
    // Claimed: nothing waits to be removed or forgotten.
    expect(queue.remove('a')).toBeUndefined();
    expect(queue.forget('b')).toBeUndefined();
    a.dueAt = 150;
    queue.push(a);
    b.dueAt = 120;
    queue.push(b);
    expect(queue.get('a')).toBe(a);
    expect((await queue.claim(1_000, 10)).map((c) => `${c.spec.id}@${c.dueAt}`)).toEqual(['b@120', 'a@150']);
    // Claimed again, then pushed while it is still claimed elsewhere: one place in line, the latest.
    a.dueAt = 300;
    queue.push(a);
    a.dueAt = 250;
    queue.push(a);
    expect(queue.waiting).toBe(1);
    expect(await queue.nextDueAt()).toBe(250);
  });

  it('reports the due time of the earliest waiting check', async () => {
    const queue = new MemoryQueue();
    expect(await queue.nextDueAt()).toBeNull();
    queue.push(check('a', 500));
    expect(await queue.nextDueAt()).toBe(500);
    queue.push(check('b', 200));
    expect(await queue.nextDueAt()).toBe(200);
    queue.remove('b');
    expect(await queue.nextDueAt()).toBe(500);
    await queue.claim(500, 1);
    expect(await queue.nextDueAt()).toBeNull();
  });

  it('counts claimed checks until they are completed, and retired ones no more', async () => {
    const queue = new MemoryQueue();
    queue.push(check('a', 100));
    queue.push(check('b', 200));
    queue.push(check('c', 300));
    const [a, b] = await queue.claim(250, 10);
    expect(queue.waiting).toBe(1);
    expect(await queue.count()).toBe(3);
    await queue.complete(a as Check, 1_100);
    expect(queue.waiting).toBe(2);
    expect(await queue.count()).toBe(3);
    expect(queue.get('a')?.dueAt).toBe(1_100);
    await queue.complete(b as Check, null);
    expect(queue.waiting).toBe(2);
    expect(await queue.count()).toBe(2);
    expect(queue.get('b')).toBeUndefined();
  });

  it('tells watchers due-earlier only when a check becomes the head of the line', async () => {
    const queue = new MemoryQueue();
    const events = watchEvents(queue);
    queue.push(check('a', 500));
    expect(events).toEqual([{ type: 'due-earlier' }]);
    queue.push(check('b', 700));
    queue.push(check('c', 500));
    expect(events).toHaveLength(1);
    queue.push(check('d', 100));
    expect(events).toHaveLength(2);
    queue.remove('d');
    const [first] = await queue.claim(500, 1);
    expect(events).toHaveLength(2);
    // Put back behind the head: nothing due earlier.
    await queue.complete(first as Check, 900);
    expect(events).toHaveLength(2);
    // Put back in front: due earlier.
    const [second] = await queue.claim(500, 1);
    await queue.complete(second as Check, 10);
    expect(events).toEqual([{ type: 'due-earlier' }, { type: 'due-earlier' }, { type: 'due-earlier' }]);
  });

  it('stops telling a watcher once it unsubscribes', () => {
    const queue = new MemoryQueue();
    const events: QueueEvent[] = [];
    const unwatch = queue.watch((event) => events.push(event));
    queue.push(check('a', 500));
    unwatch();
    queue.push(check('b', 100));
    expect(events).toHaveLength(1);
  });
});
