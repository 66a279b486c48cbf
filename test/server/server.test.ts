import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineCommand } from '../../src/commands/command.js';
import type { Handler, Outcome } from '../../src/handlers/handler.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import type { CheckFinishEvent, IncidentEventPayload } from '../../src/server/events.js';
import { Server } from '../../src/server/server.js';
import { checkSpec, noopCommand, outcome, scriptedCommand, sleep } from '../helpers/checks.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';

const T0 = Date.UTC(2026, 0, 1);

/** Never settles and never looks at its signal. */
const deafCommand = defineCommand({ name: 'deaf', attributes: z.object({}), run: () => new Promise(() => undefined) });
/** Honours its signal and reports its own timeout as crit. */
const politeCommand = defineCommand({
  name: 'polite',
  attributes: z.object({}),
  run: async (_attributes, ctx) => {
    await sleep(60_000, ctx.signal).catch(() => undefined);
    return outcome('crit', 'timeout');
  },
});
const throwingCommand = defineCommand({
  name: 'throws',
  attributes: z.object({}),
  run: () => Promise.reject(new Error('boom')),
});

function recorder(name: string, seen: Outcome[] = []): Handler & { seen: Outcome[] } {
  return { name, seen, process: (o) => void seen.push(o) };
}

describe('Server', () => {
  beforeEach(() => vi.useFakeTimers({ now: T0 }));
  afterEach(() => vi.useRealTimers());

  function finishes(server: Server): CheckFinishEvent[] {
    const events: CheckFinishEvent[] = [];
    server.on('check:finish', (event) => events.push(event));
    return events;
  }

  it('abandons a command that ignores its signal at the deadline and reports unknown/timeout', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'deaf', command: 'deaf', timeoutMs: 2_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [deafCommand], logger: silentLogger() });
    const done = finishes(server);
    server.start();
    await vi.advanceTimersByTimeAsync(2_100);
    expect(done).toHaveLength(1);
    expect(done[0]?.result).toMatchObject({ state: 'unknown', reason: 'timeout', message: 'timed out after 2000 ms' });
    expect(done[0]?.result.durationMs).toBeGreaterThanOrEqual(2_000);
    expect(pool.status('deaf')).toBe('waiting');
    await server.stop();
  });

  it('keeps the outcome of a command that honours its signal in time', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'p', command: 'polite', timeoutMs: 1_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [politeCommand], logger: silentLogger() });
    const done = finishes(server);
    server.start();
    await vi.advanceTimersByTimeAsync(1_100);
    expect(done[0]?.result).toMatchObject({ state: 'crit', reason: 'timeout' });
    await server.stop();
  });

  it('turns an exception into an unknown result and keeps going', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 't', command: 'throws', intervalMs: 1_000, timeoutMs: 500 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [throwingCommand], logger: silentLogger() });
    const done = finishes(server);
    server.start();
    await vi.advanceTimersByTimeAsync(3_500);
    expect(done.map((event) => event.result.reason)).toEqual(['exception', 'exception', 'exception', 'exception']);
    expect(done[0]?.result).toMatchObject({ state: 'unknown', message: 'boom' });
    await server.stop();
  });

  it('reports a check whose command is not registered as unknown', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'x', command: 'nope' }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [], logger: silentLogger() });
    const done = finishes(server);
    server.start();
    await vi.advanceTimersByTimeAsync(10);
    expect(done[0]?.result).toMatchObject({ state: 'unknown', reason: 'unknown-command' });
    await server.stop();
  });

  it('isolates handlers: one throwing, one hanging, one rejecting; the others and the loop go on', async () => {
    const { logger, lines } = capturingLogger('error');
    const seen: Outcome[] = [];
    const handlers: Handler[] = [
      { name: 'throws', mutate: () => { throw new Error('mutate broke'); }, process: () => { throw new Error('process broke'); } },
      { name: 'hangs', process: () => new Promise<void>(() => undefined) },
      { name: 'rejects', process: () => Promise.reject(new Error('later')) },
      recorder('good', seen),
    ];
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'c', intervalMs: 1_000, handlers: ['throws', 'hangs', 'rejects', 'good'] }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [noopCommand], handlers, logger, handlerTimeoutMs: 300 });
    const errors: string[] = [];
    server.on('error', (event) => errors.push(event.source));
    server.start();
    await vi.advanceTimersByTimeAsync(2_500);
    expect(seen).toHaveLength(3);
    expect(server.stats.runs).toBe(3);
    expect(server.handlerErrors.get('throws')).toBe(6);
    expect(server.handlerErrors.get('hangs')).toBe(3);
    expect(server.handlerErrors.get('rejects')).toBe(3);
    expect(errors).toContain('handler:hangs:process');
    expect(lines.some((line) => line.msg === 'handler failed' && line.handler === 'hangs')).toBe(true);
    await server.stop();
  });

  it('lets a mutate hook enrich the incident and keeps the enrichment in the check state', async () => {
    const pager: Handler = {
      name: 'pager',
      mutate: (o) => (o.incident?.type === 'open' ? { ...o, incident: { ...o.incident, incident: { ...o.incident.incident, externalId: 'PD-1' } } } : undefined),
    };
    const seen: Outcome[] = [];
    const pool = new TrackedMemoryQueue();
    const down = scriptedCommand('down', { d: ['crit', 'crit', 'ok'] });
    pool.add(checkSpec({ id: 'd', command: 'down', intervalMs: 1_000, handlers: ['pager', 'rec'] }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [down], handlers: [pager, recorder('rec', seen)], logger: silentLogger() });
    const resolved: IncidentEventPayload[] = [];
    server.on('incident:resolve', (event) => resolved.push(event));
    server.start();
    await vi.advanceTimersByTimeAsync(1_500);
    expect(seen[0]?.incident?.incident.externalId).toBe('PD-1');
    expect(pool.get('d')?.state.incident?.externalId).toBe('PD-1');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(resolved[0]?.incident).toMatchObject({ externalId: 'PD-1', resolvedAt: T0 + 2_000 });
    expect(pool.get('d')?.state.incident).toBeNull();
    await server.stop();
  });

  it('emits incident events once per outage and passes a resolved incident to handlers once', async () => {
    const seen: Outcome[] = [];
    const pool = new TrackedMemoryQueue();
    const cmd = scriptedCommand('seq', { s: ['crit', 'crit', 'warn', 'ok', 'ok'] });
    pool.add(checkSpec({ id: 's', command: 'seq', intervalMs: 1_000, handlers: ['rec'] }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [cmd], handlers: [recorder('rec', seen)], logger: silentLogger() });
    const events: string[] = [];
    for (const type of ['open', 'update', 'resolve'] as const) server.on(`incident:${type}`, () => events.push(type));
    server.start();
    await vi.advanceTimersByTimeAsync(4_500);
    expect(events).toEqual(['open', 'update', 'resolve']);
    expect(seen.map((o) => o.incident?.type ?? '-')).toEqual(['open', '-', 'update', 'resolve', '-']);
    await server.stop();
  });

  it('acknowledges an open incident through the handlers', async () => {
    const seen: Outcome[] = [];
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'a', command: 'seq', intervalMs: 1_000, handlers: ['rec'] }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [scriptedCommand('seq', { a: ['crit'] })], handlers: [recorder('rec', seen)], logger: silentLogger() });
    server.start();
    await vi.advanceTimersByTimeAsync(100);
    const incident = await server.acknowledge('a');
    expect(incident).toMatchObject({ checkId: 'a', acknowledgedAt: T0 + 100 });
    expect(seen.at(-1)?.incident?.type).toBe('acknowledge');
    expect(await server.acknowledge('a')).toBeNull();
    await expect(server.acknowledge('missing')).rejects.toThrow('check "missing" does not exist');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pool.get('a')?.state.incident?.acknowledgedAt).toBe(T0 + 100);
    await server.stop();
  });

  it('applies a submitted (passive) result through the state machine and handlers, leaving the schedule alone', async () => {
    const seen: Outcome[] = [];
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'p', handlers: ['rec'] }), { dueAt: T0 + 60_000 });
    const server = new Server({ queue: pool, commands: [noopCommand], handlers: [recorder('rec', seen)], logger: silentLogger() });
    const opened: IncidentEventPayload[] = [];
    server.on('incident:open', (event) => opened.push(event));
    server.start();
    const result = await server.submit('p', outcome('crit', 'heartbeat-missed'), { durationMs: 12 });
    expect(result).toMatchObject({ state: 'crit', reason: 'heartbeat-missed', startedAt: T0, durationMs: 12 });
    expect(opened).toHaveLength(1);
    expect(pool.get('p')).toMatchObject({ dueAt: T0 + 60_000, state: { hardState: 'crit', incident: { reason: 'heartbeat-missed' } } });
    await vi.advanceTimersByTimeAsync(0);
    expect(seen.map((o) => o.incident?.type)).toEqual(['open']);
    await expect(server.submit('missing', outcome('ok'))).rejects.toThrow('check "missing" does not exist');
    await server.stop();
  });

  it('runs a check now on request, but not one that is running', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'n', command: 'slow' }), { dueAt: T0 + 60_000 });
    const server = new Server({ queue: pool, commands: [scriptedCommand('slow', {}, 1_000)], logger: silentLogger() });
    const starts: number[] = [];
    server.on('check:start', () => starts.push(Date.now() - T0));
    server.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(server.runNow('n')).toBe(true);
    await vi.advanceTimersByTimeAsync(500);
    expect(starts).toEqual([5_000]);
    expect(server.runNow('n')).toBe(false);
    await vi.advanceTimersByTimeAsync(1_000);
    await server.stop();
  });

  it('tells handlers when a check is removed', async () => {
    const removed: string[] = [];
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'gone' }));
    const server = new Server({ queue: pool, commands: [noopCommand], handlers: [{ name: 'h', checkRemoved: (id) => removed.push(id) }], logger: silentLogger() });
    server.start();
    pool.remove('gone');
    expect(removed).toEqual(['gone']);
    await server.stop();
  });

  it('stops gracefully: waits for running checks, gives back the unstarted, is idempotent', async () => {
    const slow = scriptedCommand('slow', {}, 2_000);
    const pool = new TrackedMemoryQueue();
    for (const id of ['a', 'b', 'c']) pool.add(checkSpec({ id, command: 'slow' }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [slow], logger: silentLogger(), concurrency: 1, stopTimeoutMs: 5_000 });
    const done = finishes(server);
    server.start();
    await vi.advanceTimersByTimeAsync(500);
    const first = server.stop();
    const second = server.stop();
    expect(second).toBe(first);
    await vi.advanceTimersByTimeAsync(2_000);
    await first;
    expect(done.map((event) => event.check.id)).toEqual(['a']);
    // b and c were never started: still due at their old time, untouched.
    expect(pool.get('b')).toMatchObject({ dueAt: T0, state: { lastResult: null } });
    expect(pool.status('c')).toBe('waiting');
    expect(() => server.start()).toThrow('cannot start again');
  });

  it('aborts checks still running at the stop deadline and gives them back without a result', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'deaf', command: 'deaf', timeoutMs: 60_000, intervalMs: 120_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [deafCommand], logger: silentLogger(), stopTimeoutMs: 1_000 });
    const done = finishes(server);
    server.start();
    await vi.advanceTimersByTimeAsync(100);
    const stopped = server.stop();
    await vi.advanceTimersByTimeAsync(1_000);
    await stopped;
    expect(done).toHaveLength(0);
    expect(pool.get('deaf')).toMatchObject({ dueAt: T0, state: { lastResult: null } });
    expect(pool.status('deaf')).toBe('waiting');
  });

  it('closes handlers in reverse order on stop, and [Symbol.asyncDispose] stops', async () => {
    const closed: string[] = [];
    const handler = (name: string): Handler => ({ name, close: () => Promise.resolve(void closed.push(name)) });
    {
      await using server = new Server({ queue: new TrackedMemoryQueue(), commands: [], handlers: [handler('first'), handler('second')], logger: silentLogger() });
      server.start();
    }
    expect(closed).toEqual(['second', 'first']);
  });
});

describe('Server with TrackedMemoryQueue changes while checks are in flight', () => {
  beforeEach(() => vi.useFakeTimers({ now: T0 }));
  afterEach(() => vi.useRealTimers());

  it('does not re-queue a check removed while it runs', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'r', command: 'slow', intervalMs: 5_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [scriptedCommand('slow', {}, 1_000)], logger: silentLogger() });
    let runs = 0;
    server.on('check:start', () => runs++);
    server.start();
    await vi.advanceTimersByTimeAsync(500);
    expect(pool.status('r')).toBe('running');
    expect(pool.remove('r')).toBe(true);
    expect(pool.get('r')).toBeUndefined();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(runs).toBe(1);
    expect(await pool.count()).toBe(0);
    await server.stop();
  });

  it('runs an updated check with its new spec from its next run', async () => {
    const seenAttributes: unknown[] = [];
    const echo = defineCommand({
      name: 'echo',
      attributes: z.object({ v: z.number() }),
      run: async (attributes, ctx) => {
        seenAttributes.push(attributes.v);
        await sleep(1_000, ctx.signal);
        return outcome('ok');
      },
    });
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'u', command: 'echo', attributes: { v: 1 }, intervalMs: 5_000 }), { dueAt: T0 });
    const server = new Server({ queue: pool, commands: [echo], logger: silentLogger() });
    const finished: { v: unknown; next: number | null }[] = [];
    server.on('check:finish', (event) => finished.push({ v: (event.check.attributes as { v: number }).v, next: event.nextDueAt }));
    server.start();
    await vi.advanceTimersByTimeAsync(500);
    pool.update(checkSpec({ id: 'u', command: 'echo', attributes: { v: 2 }, intervalMs: 5_000 }));
    expect(pool.get('u')?.spec.attributes).toEqual({ v: 1 });
    await vi.advanceTimersByTimeAsync(9_000);
    expect(seenAttributes).toEqual([1, 2]);
    expect(finished[0]).toEqual({ v: 1, next: T0 + 5_000 });
    expect(pool.get('u')?.spec.attributes).toEqual({ v: 2 });
    await server.stop();
  });

  it('wakes up for a check added while it sleeps', async () => {
    const pool = new TrackedMemoryQueue();
    pool.add(checkSpec({ id: 'late', intervalMs: 3_600_000 }), { dueAt: T0 + 3_000_000 });
    const server = new Server({ queue: pool, commands: [noopCommand], logger: silentLogger() });
    const starts: string[] = [];
    server.on('check:start', ({ check }) => starts.push(`${check.spec.id}@${Date.now() - T0}`));
    server.start();
    await vi.advanceTimersByTimeAsync(1_000);
    pool.add(checkSpec({ id: 'new' }), { dueAt: T0 + 2_000 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(starts).toEqual(['new@2000']);
    await server.stop();
  });
});
