import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type CheckSpec, type CheckState } from '../../src/checks/check.js';
import { transition } from '../../src/checks/state-machine.js';
import type { Outcome } from '../../src/handlers/handler.js';
import { redisHandler, redisHandlerType, type RedisHandler } from '../../src/handlers/redis-handler.js';
import type { Result, State } from '../../src/results/result.js';
import { checkSpec } from '../helpers/checks.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';
import { clientId, connectRedis, deleteKeys, REDIS_URL, uniquePrefix } from './redis-helpers.js';
import { freePort as closedPort } from '../helpers/processes.js';

const logger = silentLogger();
const WAIT = { timeout: 15_000, interval: 20 };

const prefix = uniquePrefix();
const connecting = connectRedis();
// Reported by every test (in `beforeEach`), not as an unhandled rejection.
connecting.catch(() => undefined);
let admin: Redis;

beforeEach(async () => {
  admin = await connecting;
});
afterAll(async () => {
  const redis = await connecting.catch(() => null);
  if (redis === null) return;
  await deleteKeys(redis, prefix);
  await redis.quit();
});

const handlers: RedisHandler[] = [];
const servers: Server[] = [];
const sockets = new Set<Socket>();
let handlerCount = 0;

afterEach(async () => {
  await Promise.all(handlers.splice(0).map((handler) => handler.close()));
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

interface Made {
  readonly handler: RedisHandler;
  readonly name: string;
  readonly keyPrefix: string;
  readonly indexKey: string;
  readonly registry: Registry;
}

/** A handler with keys of its own under the run's prefix; closed by `afterEach`. */
function make(raw: Record<string, unknown> = {}, extra: { registry?: Registry; closeTimeoutMs?: number; logger?: typeof logger } = {}): Made {
  const name = `redis-${++handlerCount}`;
  const keyPrefix = `${prefix}${name}:check:`;
  const indexKey = `${prefix}${name}:checks`;
  const parsed = redisHandlerType.parseOptions({ url: REDIS_URL, keyPrefix, indexKey, ...raw });
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  const registry = extra.registry ?? new Registry();
  const handler = redisHandler(name, parsed.value, {
    logger: extra.logger ?? logger,
    registry,
    ...(extra.closeTimeoutMs === undefined ? {} : { closeTimeoutMs: extra.closeTimeoutMs }),
  });
  handlers.push(handler);
  return { handler, name, keyPrefix, indexKey, registry };
}

/** Runs checks through the real state machine, so outcomes carry the states the engine would give. */
function runner(specOverrides: Partial<CheckSpec> = {}) {
  const states = new Map<string, CheckState>();
  let clock = Date.parse('2030-01-02T03:04:05.000Z');
  return {
    outcome(checkId: string, state: State, message = `${state} run`): Outcome {
      const check = checkSpec({ id: checkId, command: 'tcp', ...specOverrides });
      const previous = states.get(checkId) ?? initialCheckState;
      clock += 1000;
      const result: Result = { state, reason: state === 'ok' ? 'ok' : 'refused', message, metrics: [], startedAt: clock, durationMs: 12.4 };
      const next = transition(check, previous, result, clock + 12);
      states.set(checkId, next.state);
      return { check, result, state: next.state, previous, incident: next.event, logger };
    },
  };
}

async function metric(registry: Registry, name: string, handler: string): Promise<number> {
  const data = await registry.getSingleMetric(name)?.get();
  return data?.values.find((value) => value.labels.handler === handler)?.value ?? Number.NaN;
}

/** Forwards every connection on 127.0.0.1:`port` to the suite's Redis: Redis "comes back" there. */
async function proxyToRedis(port: number): Promise<void> {
  const target = new URL(REDIS_URL);
  const server = createServer((socket) => {
    const upstream = createConnection(Number(target.port || 6379), target.hostname);
    for (const end of [socket, upstream]) {
      sockets.add(end);
      end.on('close', () => sockets.delete(end));
    }
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.pipe(upstream).pipe(socket);
  });
  servers.push(server);
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
}

describe('options', () => {
  it('has defaults for everything', () => {
    const parsed = redisHandlerType.parseOptions(undefined);
    expect(parsed).toEqual({ ok: true, value: { url: 'redis://127.0.0.1:6379', keyPrefix: 'vigil:check:', ttl: 600_000, indexKey: 'vigil:checks' } });
  });

  it('says what it expected', () => {
    const parsed = redisHandlerType.parseOptions({ url: 'http://127.0.0.1:6379', ttl: '500ms', keyPrefix: '', onlyChanges: true });
    expect(parsed.ok).toBe(false);
    const text = JSON.stringify(parsed);
    expect(text).toContain('expected a redis:// or rediss:// URL');
    expect(text).toContain('at least 1000ms');
    expect(text).toContain('expected a key prefix');
    expect(text).toContain('onlyChanges');
  });
});

describe('redis handler', () => {
  it('writes one hash per check with the state, its type, since, the last result and the incident', async () => {
    const { handler, keyPrefix, indexKey, registry, name } = make();
    const run = runner();
    const ok = run.outcome('web', 'ok', 'connected in 1.2 ms');
    handler.process(ok);
    await handler.flush();
    expect(await admin.hgetall(`${keyPrefix}web`)).toEqual({
      state: 'ok',
      stateType: 'hard',
      hardState: 'ok',
      since: '',
      lastResultAt: new Date(ok.result.startedAt + 12).toISOString(),
      message: 'connected in 1.2 ms',
      reason: 'ok',
      incident: '',
      command: 'tcp',
    });

    const crit = run.outcome('web', 'crit', 'connection refused');
    expect(crit.state.incident).not.toBeNull();
    handler.process(crit);
    await handler.flush();
    const hash = await admin.hgetall(`${keyPrefix}web`);
    expect(hash).toMatchObject({
      state: 'crit',
      stateType: 'hard',
      hardState: 'crit',
      since: new Date(crit.state.lastHardChangeAt ?? 0).toISOString(),
      message: 'connection refused',
      reason: 'refused',
      incident: crit.state.incident?.id,
    });
    expect(Number(await admin.zscore(indexKey, 'web'))).toBe(crit.result.startedAt + 12);
    expect(await metric(registry, 'vigil_redis_writes_total', name)).toBe(2);
    expect(await metric(registry, 'vigil_redis_errors_total', name)).toBe(0);
  });

  it('shows a problem being confirmed as soft, with the hard state beside it', async () => {
    const { handler, keyPrefix } = make();
    const run = runner({ maxAttempts: 3 });
    handler.process(run.outcome('db', 'ok'));
    handler.process(run.outcome('db', 'warn'));
    await handler.flush();
    expect(await admin.hmget(`${keyPrefix}db`, 'state', 'stateType', 'hardState', 'incident')).toEqual(['warn', 'soft', 'ok', '']);
  });

  it('sets the TTL on every write and on the index, so a silent publisher ages out', async () => {
    const { handler, keyPrefix, indexKey } = make({ ttl: '10m' });
    const run = runner();
    handler.process(run.outcome('web', 'ok'));
    await handler.flush();
    const first = await admin.pttl(`${keyPrefix}web`);
    expect(first).toBeGreaterThan(590_000);
    expect(first).toBeLessThanOrEqual(600_000);
    expect(await admin.pttl(indexKey)).toBeGreaterThan(590_000);

    // As if most of the TTL had passed: the next run gives the key its full TTL again.
    await admin.pexpire(`${keyPrefix}web`, 5_000);
    handler.process(run.outcome('web', 'ok'));
    await handler.flush();
    expect(await admin.pttl(`${keyPrefix}web`)).toBeGreaterThan(590_000);
  });

  it('lets a check that stops reporting expire, and trims it from the index on the next write', async () => {
    const { handler, keyPrefix, indexKey } = make({ ttl: '1s' });
    const run = runner({ intervalMs: 500, timeoutMs: 100 });
    handler.process(run.outcome('gone', 'ok'));
    await handler.flush();
    expect(await admin.exists(`${keyPrefix}gone`)).toBe(1);
    await vi.waitFor(async () => expect(await admin.exists(`${keyPrefix}gone`)).toBe(0), WAIT);

    // The runner's results carry times in 2030: score one "now"-ish member old enough to be trimmed.
    await admin.zadd(indexKey, Date.now() - 5_000, 'stale');
    handler.process(run.outcome('alive', 'ok'));
    await handler.flush();
    expect(await admin.zscore(indexKey, 'stale')).toBeNull();
    expect(await admin.zscore(indexKey, 'alive')).not.toBeNull();
  });

  it('warns once when a check runs less often than the TTL', async () => {
    const { logger: capturing, lines } = capturingLogger('warn');
    const { handler } = make({ ttl: '1m' }, { logger: capturing });
    const run = runner({ intervalMs: 3_600_000 });
    handler.process(run.outcome('hourly', 'ok'));
    handler.process(run.outcome('hourly', 'ok'));
    await handler.flush();
    const warnings = lines.filter((line) => String(line.msg).includes('expires between runs'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ checkId: 'hourly', ttlMs: 60_000 });
  });

  it('collects the outcomes of one turn and writes them together, only the latest per check', async () => {
    const { handler, keyPrefix, indexKey, registry, name } = make();
    const run = runner();
    for (let i = 0; i < 50; i++) handler.process(run.outcome(`c${i}`, 'ok'));
    handler.process(run.outcome('c7', 'crit', 'the latest'));
    expect(handler.pending).toBe(50);
    await vi.waitFor(() => expect(handler.pending).toBe(0), WAIT);
    await handler.flush();
    expect(await admin.hget(`${keyPrefix}c7`, 'message')).toBe('the latest');
    expect(await admin.zcard(indexKey)).toBe(50);
    expect(await metric(registry, 'vigil_redis_writes_total', name)).toBe(50);
  });

  it('deletes the hash and the index entry of a removed check', async () => {
    const { handler, keyPrefix, indexKey } = make();
    const run = runner();
    handler.process(run.outcome('a', 'ok'));
    handler.process(run.outcome('b', 'ok'));
    await handler.flush();
    handler.checkRemoved('a');
    await handler.flush();
    expect(await admin.exists(`${keyPrefix}a`)).toBe(0);
    expect(await admin.zrange(indexKey, '0', '-1')).toEqual(['b']);
    expect(await admin.exists(`${keyPrefix}b`)).toBe(1);
  });

  it('drops a write Redis refuses, counts it, and writes the rest of the batch', async () => {
    const { handler, keyPrefix, registry, name } = make();
    await admin.set(`${keyPrefix}clash`, 'a string, not a hash');
    const run = runner();
    handler.process(run.outcome('clash', 'crit'));
    handler.process(run.outcome('fine', 'ok'));
    await handler.flush();
    expect(await admin.hget(`${keyPrefix}fine`, 'state')).toBe('ok');
    expect(handler.pending).toBe(0);
    expect(await metric(registry, 'vigil_redis_errors_total', name)).toBe(1);
    expect(await metric(registry, 'vigil_redis_writes_total', name)).toBe(1);
  });

  it('keeps collecting while Redis holds writes (CLIENT PAUSE) and writes the latest state after', async () => {
    const { handler, keyPrefix } = make();
    const run = runner();
    handler.process(run.outcome('web', 'ok'));
    await handler.flush();

    await admin.client('PAUSE', '500', 'WRITE');
    handler.process(run.outcome('web', 'warn'));
    const held = handler.flush();
    // Reads go on during a write pause: the write in flight has not landed.
    expect(await admin.hget(`${keyPrefix}web`, 'state')).toBe('ok');
    handler.process(run.outcome('web', 'unknown'));
    handler.process(run.outcome('web', 'crit', 'the latest'));
    expect(handler.pending).toBe(1);
    await held;
    await handler.flush();
    expect(await admin.hmget(`${keyPrefix}web`, 'state', 'message')).toEqual(['crit', 'the latest']);
    expect(handler.pending).toBe(0);
  });

  it('writes again, after reconnecting, what a killed connection lost, unless something newer came', async () => {
    const { handler, keyPrefix, name } = make();
    const run = runner();
    handler.process(run.outcome('web', 'ok'));
    handler.process(run.outcome('db', 'ok'));
    await handler.flush();
    const before = await clientId(admin, `vigil:${name}`);
    expect(before).not.toBeNull();

    // Held by the pause, the write cannot land before its connection is killed.
    await admin.client('PAUSE', '300', 'WRITE');
    handler.process(run.outcome('web', 'warn', 'lost with the connection'));
    handler.process(run.outcome('db', 'warn', 'lost and replaced'));
    const inFlight = handler.flush();
    // Taken out for writing: nothing waits any more.
    await vi.waitFor(() => expect(handler.pending).toBe(0), WAIT);
    handler.process(run.outcome('db', 'crit', 'newer than the lost one'));
    await admin.client('KILL', 'ID', before as string);
    await inFlight;
    expect(handler.pending).toBe(2);

    await vi.waitFor(() => expect(handler.pending).toBe(0), WAIT);
    await handler.flush();
    expect(await admin.hmget(`${keyPrefix}web`, 'state', 'message')).toEqual(['warn', 'lost with the connection']);
    expect(await admin.hmget(`${keyPrefix}db`, 'state', 'message')).toEqual(['crit', 'newer than the lost one']);
    const after = await clientId(admin, `vigil:${name}`);
    expect(after).not.toBeNull();
    expect(after).not.toBe(before);
  });

  it('keeps only the latest state per check while Redis is away and writes it when Redis is back', async () => {
    const port = await closedPort();
    const { handler, keyPrefix, registry, name } = make({ url: `redis://127.0.0.1:${port}` });
    const run = runner();
    for (const state of ['ok', 'warn', 'crit'] as const) handler.process(run.outcome('web', state));
    handler.process(run.outcome('db', 'ok'));
    await vi.waitFor(async () => expect(await metric(registry, 'vigil_redis_errors_total', name)).toBeGreaterThan(0), WAIT);
    expect(handler.pending).toBe(2);
    expect(await admin.exists(`${keyPrefix}web`)).toBe(0);

    await proxyToRedis(port);
    await vi.waitFor(async () => expect(await admin.hget(`${keyPrefix}web`, 'state')).toBe('crit'), WAIT);
    await vi.waitFor(() => expect(handler.pending).toBe(0), WAIT);
    expect(await admin.hget(`${keyPrefix}db`, 'state')).toBe('ok');
    expect(await metric(registry, 'vigil_redis_writes_total', name)).toBe(2);
  });

  it('writes what is waiting when closed, then quits', async () => {
    const { handler, keyPrefix, name } = make();
    const run = runner();
    await vi.waitFor(async () => expect(await clientId(admin, `vigil:${name}`)).not.toBeNull(), WAIT);
    handler.process(run.outcome('last', 'crit', 'written at close'));
    await handler.close();
    expect(await admin.hget(`${keyPrefix}last`, 'message')).toBe('written at close');
    expect(await clientId(admin, `vigil:${name}`)).toBeNull();
    // Idempotent, and later outcomes are ignored.
    handler.process(run.outcome('late', 'ok'));
    await handler.close();
    expect(await admin.exists(`${keyPrefix}late`)).toBe(0);
  });

  it('gives up closing after the close timeout when Redis stays away, and says what it dropped', async () => {
    const port = await closedPort();
    const { logger: capturing, lines } = capturingLogger('warn');
    const { handler } = make({ url: `redis://127.0.0.1:${port}` }, { closeTimeoutMs: 200, logger: capturing });
    handler.process(runner().outcome('web', 'crit'));
    const started = Date.now();
    await handler.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(handler.pending).toBe(0);
    expect(lines.find((line) => String(line.msg).includes('not written to Redis at shutdown'))).toMatchObject({ left: 1 });
  });

  it('shares its metrics between handlers on one registry', async () => {
    const registry = new Registry();
    const first = make({}, { registry });
    const second = make({}, { registry });
    first.handler.process(runner().outcome('x', 'ok'));
    await first.handler.flush();
    expect(await metric(registry, 'vigil_redis_writes_total', first.name)).toBe(1);
    expect(await metric(registry, 'vigil_redis_writes_total', second.name)).toBe(0);
  });
});
