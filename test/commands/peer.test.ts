import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { CheckSpec } from '../../src/checks/check.js';
import { stableHash } from '../../src/checks/schedule.js';
import type { CommandContext } from '../../src/commands/command.js';
import { peerCommand, PeerMetrics, type PeerAttributes } from '../../src/commands/peer.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import { toResult, type CommandOutcome, type Result } from '../../src/results/result.js';
import type { IncidentEventPayload } from '../../src/server/events.js';
import type { Health } from '../../src/core/health.js';
import { startHttpEndpoint, type HttpEndpoint } from '../../src/http/endpoint.js';
import { startInstance, type InstanceIdentity } from '../../src/daemon/instance.js';
import { Server } from '../../src/server/server.js';
import { checkSpec } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';

const peer = peerCommand();
const logger = silentLogger();

function parse(raw: unknown): PeerAttributes {
  const parsed = peer.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function ctx(previous: Result | null = null, signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 'peer', signal, deadline: Date.now() + 5000, logger, previous };
}

async function run(raw: Record<string, unknown>, previous: Result | null = null, signal?: AbortSignal): Promise<Result> {
  return toResult(await peer.run(parse(raw), ctx(previous, signal)), Date.now(), 0);
}

function metric(outcome: CommandOutcome, name: string): number | undefined {
  return outcome.metrics?.find((m) => m.name === name)?.value;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const health: Health = { status: 'ok', instanceId: 'instance-b', epoch: 4, version: '0.1.0', uptimeSeconds: 120, checks: 12 };

/** A fake peer on 127.0.0.1: answers each request as `answer` says; records what it was sent. */
async function fakePeer(answer: (response: ServerResponse) => void): Promise<{ url: string; requests: { url: string; headers: IncomingHttpHeaders }[] }> {
  const requests: { url: string; headers: IncomingHttpHeaders }[] = [];
  const sockets = new Set<Socket>();
  const server: HttpServer = createServer((request, response) => {
    requests.push({ url: request.url ?? '', headers: request.headers });
    answer(response);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

function json(status: number, body: unknown): (response: ServerResponse) => void {
  return (response) => response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

describe('peer command: polling', () => {
  it('reports ok with uptime, checks, epoch and the instance hash, sending the given headers', async () => {
    const target = await fakePeer(json(200, health));
    const result = await run({ url: `${target.url}/`, headers: { authorization: 'Bearer secret-token' } });
    expect(result).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(result.message).toBe(`peer ${target.url}/healthz is up: instance instance-b epoch 4, up 120 s, 12 checks, version 0.1.0`);
    expect(result.message).not.toContain('secret-token');
    expect(result.metrics).toEqual([
      { name: PeerMetrics.uptime, value: 120, unit: 's', kind: 'gauge' },
      { name: PeerMetrics.checks, value: 12, unit: '', kind: 'gauge' },
      { name: PeerMetrics.epoch, value: 4, unit: '', kind: 'gauge' },
      { name: PeerMetrics.instanceHash, value: stableHash('instance-b'), unit: '', kind: 'gauge' },
    ]);
    expect(target.requests).toHaveLength(1);
    expect(target.requests[0]).toMatchObject({ url: '/healthz', headers: { authorization: 'Bearer secret-token', accept: 'application/json' } });
  });

  it('polls under a path prefix', async () => {
    const target = await fakePeer(json(200, health));
    expect((await run({ url: `${target.url}/vigil-b/` })).state).toBe('ok');
    expect(target.requests[0]?.url).toBe('/vigil-b/healthz');
  });

  it('warns peer-restarted once when the epoch or the instance changed, then is ok', async () => {
    let current: Health = health;
    const target = await fakePeer((response) => json(200, current)(response));
    const first = await run({ url: target.url });
    current = { ...health, epoch: 5, uptimeSeconds: 1 };
    const restarted = await run({ url: target.url }, first);
    expect(restarted).toMatchObject({ state: 'warn', reason: 'peer-restarted', message: `peer ${target.url}/healthz restarted: epoch 4 → 5, up 1 s, 12 checks, version 0.1.0` });
    const steady = await run({ url: target.url }, restarted);
    expect(steady).toMatchObject({ state: 'ok', reason: 'ok' });

    current = { ...health, instanceId: 'instance-c', epoch: 5 };
    const replaced = await run({ url: target.url }, steady);
    expect(replaced).toMatchObject({ state: 'warn', reason: 'peer-restarted' });
    expect(replaced.message).toBe(`peer ${target.url}/healthz is another instance now: instance-c epoch 5, up 120 s, 12 checks, version 0.1.0`);
  });

  it('reports unhealthy for an answer other than 200 and for a stopping peer, keeping the identity it saw', async () => {
    const failing = await fakePeer((response) => response.writeHead(500).end('boom'));
    const first = await run({ url: (await fakePeer(json(200, health))).url });
    const error = await run({ url: failing.url }, first);
    expect(error).toMatchObject({ state: 'crit', reason: 'unhealthy', message: `peer ${failing.url}/healthz answered HTTP 500` });
    expect(metric(error, PeerMetrics.epoch)).toBe(4);

    const stopping = await fakePeer(json(503, { ...health, status: 'stopping', epoch: 4 }));
    const result = await run({ url: stopping.url }, error);
    expect(result).toMatchObject({ state: 'crit', reason: 'unhealthy', message: `peer ${stopping.url}/healthz is stopping (HTTP 503)` });
    expect(metric(result, PeerMetrics.instanceHash)).toBe(stableHash('instance-b'));
  });

  it('reports bad-response for a 200 that is not a vigil health answer', async () => {
    const html = await fakePeer((response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>'));
    expect(await run({ url: html.url })).toMatchObject({ state: 'unknown', reason: 'bad-response' });
    const partial = await fakePeer(json(200, { status: 'ok', instanceId: 'x' }));
    const result = await run({ url: partial.url });
    expect(result.reason).toBe('bad-response');
    expect(result.message).toContain('not a vigil health answer');
    const huge = await fakePeer((response) => response.writeHead(200).end('x'.repeat(100_000)));
    expect((await run({ url: huge.url })).message).toContain('longer than 65536 bytes');
  });

  it('reports unreachable for a port nothing listens on, keeping the last identity', async () => {
    const target = await fakePeer(json(200, health));
    const first = await run({ url: target.url });
    await cleanups.pop()?.();
    const result = await run({ url: target.url }, first);
    expect(result).toMatchObject({ state: 'crit', reason: 'unreachable' });
    expect(result.message).toMatch(new RegExp(`^cannot reach peer ${target.url}/healthz: .*ECONNREFUSED`));
    expect(metric(result, PeerMetrics.epoch)).toBe(4);
    expect(metric(result, PeerMetrics.uptime)).toBeUndefined();
  });

  it('reports unreachable when the peer does not answer before the timeout, and returns promptly', async () => {
    const silent = await fakePeer(() => undefined);
    const started = performance.now();
    const result = await run({ url: silent.url }, null, AbortSignal.timeout(200));
    expect(result).toMatchObject({ state: 'crit', reason: 'unreachable', message: `cannot reach peer ${silent.url}/healthz: no answer before the timeout` });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(silent.requests).toHaveLength(1);
  });

  it('does not connect when its signal is already aborted', async () => {
    const target = await fakePeer(json(200, health));
    const result = await run({ url: target.url }, null, AbortSignal.abort());
    expect(result).toMatchObject({ state: 'crit', reason: 'unreachable', message: `timed out before polling ${target.url}/healthz` });
    expect(target.requests).toHaveLength(0);
  });
});

describe('peer command: attributes', () => {
  it('normalises the base URL and keeps headers', () => {
    expect(parse({ url: 'http://vigil-b:9470/' })).toEqual({ url: 'http://vigil-b:9470' });
    expect(parse({ url: 'https://example.com/vigil//', headers: { 'x-token': 't' } })).toEqual({ url: 'https://example.com/vigil', headers: { 'x-token': 't' } });
  });

  it('says what a URL must be', () => {
    const expected = 'expected the base URL of another vigil, http:// or https:// (e.g. http://vigil-b:9470)';
    expect(peer.parse({ url: 'vigil-b:9470x' })).toEqual({ ok: false, issues: [{ path: ['url'], message: `${expected}, got "vigil-b:9470x"` }] });
    expect(peer.parse({ url: 'ftp://vigil-b' })).toMatchObject({ ok: false, issues: [{ path: ['url'], message: `${expected}, got "ftp://vigil-b"` }] });
    expect(peer.parse({ url: 'http://user:pw@vigil-b' })).toMatchObject({ ok: false, issues: [{ path: ['url'], message: expect.stringContaining('without credentials') as string }] });
    expect(peer.parse({ url: 'http://vigil-b/?x=1' })).toMatchObject({ ok: false, issues: [{ path: ['url'] }] });
    expect(peer.parse({})).toMatchObject({ ok: false, issues: [{ path: ['url'] }] });
  });

  it('rejects unknown keys and headers that are not strings', () => {
    expect(peer.parse({ url: 'http://a', timeout: '5s' })).toEqual({ ok: false, issues: [{ path: ['timeout'], message: 'unknown key' }] });
    expect(peer.parse({ url: 'http://a', headers: { 'x-n': 3 } })).toMatchObject({ ok: false, issues: [{ path: ['headers', 'x-n'], message: 'expected a header value (a string), got 3' }] });
  });
});

/** One vigil as daemon.ts wires it: instance identity in its data dir, a Server, its /healthz. */
interface Vigil {
  readonly identity: InstanceIdentity;
  readonly pool: TrackedMemoryQueue;
  readonly server: Server;
  readonly http: HttpEndpoint;
  readonly port: number;
  stop(): Promise<void>;
}

async function startVigil(dataDir: string, port = 0): Promise<Vigil> {
  const identity = await startInstance(dataDir, Date.now(), logger);
  const pool = new TrackedMemoryQueue();
  const server = new Server({ queue: pool, commands: [peerCommand()], logger });
  const http = await startHttpEndpoint({
    host: '127.0.0.1',
    port,
    registry: new Registry(),
    logger,
    health: () => ({
      status: server.stopping ? 'stopping' : 'ok',
      instanceId: identity.id,
      epoch: identity.epoch,
      version: 'test',
      uptimeSeconds: Math.round((Date.now() - identity.startedAt) / 1000),
      checks: pool.size,
    }),
  });
  server.start();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await server.stop();
      await http.close();
    })());
  cleanups.push(stop);
  return { identity, pool, server, http, port: Number(new URL(http.url).port), stop };
}

function watch(vigil: Vigil, id: string, other: Vigil): void {
  vigil.pool.add(checkSpec({ id, command: 'peer', attributes: parse({ url: other.http.url }), intervalMs: 3_600_000, timeoutMs: 2_000, maxAttempts: 1 }));
}

/** Runs the check now on its vigil and waits for its Result. */
async function poll(vigil: Vigil, id: string): Promise<Result> {
  const finished = new Promise<Result>((resolve) => {
    const listener = ({ check, result }: { check: CheckSpec; result: Result }): void => {
      if (check.id !== id) return;
      vigil.server.off('check:finish', listener);
      resolve(result);
    };
    vigil.server.on('check:finish', listener);
  });
  expect(vigil.server.runNow(id)).toBe(true);
  return finished;
}

describe('peer command: two vigils watching each other', () => {
  it('sees the other restart (new epoch), reports peer-restarted, then ok again', async () => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-peer-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const a = await startVigil(join(root, 'a'));
    let b = await startVigil(join(root, 'b'));
    watch(a, 'watch-b', b);
    watch(b, 'watch-a', a);

    const seen = await poll(a, 'watch-b');
    expect(seen).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(metric(seen, PeerMetrics.epoch)).toBe(1);
    expect(metric(seen, PeerMetrics.instanceHash)).toBe(stableHash(b.identity.id));
    expect(await poll(b, 'watch-a')).toMatchObject({ state: 'ok', reason: 'ok' });

    // B restarts between two polls of A: same data dir, same port, next epoch.
    await b.stop();
    b = await startVigil(join(root, 'b'), b.port);
    watch(b, 'watch-a', a);
    expect(b.identity.epoch).toBe(2);
    const restarted = await poll(a, 'watch-b');
    expect(restarted).toMatchObject({ state: 'warn', reason: 'peer-restarted' });
    expect(restarted.message).toMatch(/restarted: epoch 1 → 2, up \d+ s, 1 checks, version test$/);
    expect(await poll(a, 'watch-b')).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await poll(b, 'watch-a')).toMatchObject({ state: 'ok', reason: 'ok' });

    // B is down for one poll: A opens an incident (unreachable), then sees the restart and recovers.
    const opened = once(a.server, 'incident:open');
    const port = b.port;
    await b.stop();
    expect(await poll(a, 'watch-b')).toMatchObject({ state: 'crit', reason: 'unreachable' });
    const [{ incident }] = (await opened) as [IncidentEventPayload];
    expect(incident).toMatchObject({ checkId: 'watch-b', reason: 'unreachable' });

    b = await startVigil(join(root, 'b'), port);
    watch(b, 'watch-a', a);
    const back = await poll(a, 'watch-b');
    expect(back).toMatchObject({ state: 'warn', reason: 'peer-restarted' });
    expect(back.message).toContain('restarted: epoch 2 → 3');
    const resolved = once(a.server, 'incident:resolve');
    expect(await poll(a, 'watch-b')).toMatchObject({ state: 'ok', reason: 'ok' });
    await resolved;
    expect(a.pool.get('watch-b')?.state.incident).toBeNull();
  });
});
