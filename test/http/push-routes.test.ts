import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CheckSpec } from '../../src/checks/check.js';
import { pushCommand, PushMetrics } from '../../src/commands/push.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import type { Result } from '../../src/results/result.js';
import type { IncidentEventPayload } from '../../src/server/events.js';
import { startHttpEndpoint, type HttpEndpoint } from '../../src/http/endpoint.js';
import { MAX_PING_REQUEST_BYTES, registerPushRoutes } from '../../src/http/push-routes.js';
import { derivePushToken, loadPushSecret, pushSecretPath, PushTokens, tokenFor } from '../../src/http/push-tokens.js';
import { Server } from '../../src/server/server.js';
import { checkSpec } from '../helpers/checks.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';
import { clockWith } from '../../src/core/clock.js';
import type { PingReceiver } from '../../src/commands/command.js';

/** What the daemon passes: the `pings` of the command a check names (only `push` here). */
const pingsOf = (name: string): PingReceiver<unknown> | undefined => (name === 'push' ? pushCommand().pings : undefined);

const TOKEN = 'nightly-backup-token-0123456789';
const push = pushCommand();

function pushSpec(id: string, attributes: Record<string, unknown>, overrides: Partial<CheckSpec> = {}): CheckSpec {
  const parsed = push.parse(attributes);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return checkSpec({ id, command: 'push', attributes: parsed.value, ...overrides });
}

interface Vigil {
  readonly url: string;
  readonly server: Server;
  readonly pool: TrackedMemoryQueue;
  readonly tokens: PushTokens;
  readonly dataDir: string;
  /** Moves the push command's and the routes' clock ahead of real time. */
  advance(ms: number): void;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-push-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A real Server over a TrackedMemoryQueue with the push routes on 127.0.0.1, port 0. */
async function startVigil(
  checks: readonly CheckSpec[],
  options: { logger?: Logger; bodyLimitBytes?: number; dataDir?: string; missRebuildIntervalMs?: number; start?: boolean } = {},
): Promise<Vigil> {
  const logger = options.logger ?? silentLogger();
  const dataDir = options.dataDir ?? (await tempDir());
  let offset = 0;
  const clock = clockWith(() => Date.now() + offset);
  const pool = new TrackedMemoryQueue();
  for (const spec of checks) pool.add(spec);
  const server = new Server({ queue: pool, commands: [pushCommand({ clock })], logger });
  const tokens = new PushTokens({ checks: pool, secret: await loadPushSecret(dataDir), pingsOf, ...(options.missRebuildIntervalMs === undefined ? {} : { missRebuildIntervalMs: options.missRebuildIntervalMs }) });
  const endpoint: HttpEndpoint = await startHttpEndpoint({
    host: '127.0.0.1',
    port: 0,
    registry: new Registry(),
    logger,
    health: () => ({ status: 'ok', instanceId: 'test', epoch: 1, version: '0', uptimeSeconds: 0, checks: pool.size }),
    routes: (app) => registerPushRoutes(app, { server, checks: pool, tokens, logger, clock, ...(options.bodyLimitBytes === undefined ? {} : { bodyLimitBytes: options.bodyLimitBytes }) }),
  });
  cleanups.push(async () => {
    await endpoint.close();
    await server.stop();
  });
  if (options.start === true) server.start();
  return { url: endpoint.url, server, pool, tokens, dataDir, advance: (ms) => (offset += ms) };
}

function lastResult(vigil: Vigil, id: string): Result {
  const result = vigil.pool.get(id)?.state.lastResult;
  if (!result) throw new Error(`check ${id} has no result yet`);
  return result;
}

function metric(result: Result, name: string): number | undefined {
  return result.metrics.find((m) => m.name === name)?.value;
}

/** Runs the check's scheduled evaluation now and waits for its result. */
async function evaluateNow(vigil: Vigil, id: string): Promise<Result> {
  const finished = new Promise<Result>((resolve) => {
    const listener = ({ check, result }: { check: CheckSpec; result: Result }): void => {
      if (check.id !== id) return;
      vigil.server.off('check:finish', listener);
      resolve(result);
    };
    vigil.server.on('check:finish', listener);
  });
  vigil.server.start();
  expect(vigil.server.runNow(id)).toBe(true);
  return finished;
}

describe('push routes: pings', () => {
  it('applies a success ping at once and answers 200 OK, the body’s first line becoming the message', async () => {
    const vigil = await startVigil([pushSpec('nightly-backup', { token: TOKEN, period: '1d', grace: '1h' })]);
    const response = await fetch(`${vigil.url}/ping/${TOKEN}`, { method: 'POST', body: '\n   backup finished: 3 GB in 42 s  \nsecond line\n' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await response.text()).toBe('OK');
    const result = lastResult(vigil, 'nightly-backup');
    expect(result).toMatchObject({ state: 'ok', reason: 'ping', message: 'backup finished: 3 GB in 42 s' });
    expect(metric(result, PushMetrics.lastSuccess)).toBeCloseTo(Date.now() / 1000, -1);

    const get = await fetch(`${vigil.url}/ping/${TOKEN}`);
    expect(await get.text()).toBe('OK');
    expect(lastResult(vigil, 'nightly-backup').message).toBe('ping received');

    // HEAD pings too, as on hc-ping.com.
    await fetch(`${vigil.url}/ping/${TOKEN}/fail`);
    expect((await fetch(`${vigil.url}/ping/${TOKEN}`, { method: 'HEAD' })).status).toBe(200);
    expect(lastResult(vigil, 'nightly-backup')).toMatchObject({ state: 'ok', message: 'ping received' });
  });

  it('opens an incident on a fail ping and resolves it on the next success, through the handlers’ path', async () => {
    const vigil = await startVigil([pushSpec('nightly-backup', { token: TOKEN, period: '1d' })]);
    const opened = once(vigil.server, 'incident:open');
    expect((await fetch(`${vigil.url}/ping/${TOKEN}/fail`, { method: 'POST', body: 'tar: disk full' })).status).toBe(200);
    const [{ incident }] = (await opened) as [IncidentEventPayload];
    expect(incident).toMatchObject({ checkId: 'nightly-backup', state: 'crit', reason: 'failed' });
    expect(lastResult(vigil, 'nightly-backup').message).toBe('failure reported: tar: disk full');
    expect(vigil.pool.get('nightly-backup')?.state.incident).not.toBeNull();

    const resolved = once(vigil.server, 'incident:resolve');
    expect((await fetch(`${vigil.url}/ping/${TOKEN}`)).status).toBe(200);
    await resolved;
    expect(vigil.pool.get('nightly-backup')?.state).toMatchObject({ hardState: 'ok', incident: null });
  });

  it('takes exit codes: 0 is a success, 1–255 a failure naming the code, anything else a 400', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h' })]);
    expect((await fetch(`${vigil.url}/ping/${TOKEN}/0`)).status).toBe(200);
    expect(lastResult(vigil, 'job')).toMatchObject({ state: 'ok', reason: 'ping', message: 'ping received (exit code 0)' });

    expect((await fetch(`${vigil.url}/ping/${TOKEN}/3`, { method: 'POST', body: 'rsync: connection refused' })).status).toBe(200);
    expect(lastResult(vigil, 'job')).toMatchObject({ state: 'crit', reason: 'failed', message: 'exited with code 3: rsync: connection refused' });

    for (const bad of ['256', 'log', '-1', '0x1']) {
      const response = await fetch(`${vigil.url}/ping/${TOKEN}/${bad}`);
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: 'bad request', details: `expected start, fail or an exit code 0–255 after the token, got "${bad}"` });
    }
    expect(lastResult(vigil, 'job').message).toBe('exited with code 3: rsync: connection refused');
    expect((await fetch(`${vigil.url}/ping/${TOKEN}/255`)).status).toBe(200);
    expect(lastResult(vigil, 'job').message).toBe('exited with code 255');
  });

  it('answers an unknown token with 404 JSON and never logs the token whole', async () => {
    const { logger, lines } = capturingLogger('debug');
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h' })], { logger });
    const unknown = 'unknown-token-abcdefghijkl';
    const response = await fetch(`${vigil.url}/ping/${unknown}/fail`, { method: 'POST', body: 'x' });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'not found', details: 'no push check has this token' });
    expect((await fetch(`${vigil.url}/ping/${TOKEN}`)).status).toBe(200);
    expect((await fetch(`${vigil.url}/ping/${TOKEN}/999`)).status).toBe(400);

    const text = lines.map((line) => JSON.stringify(line)).join('\n');
    expect(text).toContain('"token":"unkn…"');
    expect(text).toContain('"token":"nigh…"');
    expect(text).not.toContain(unknown);
    expect(text).not.toContain(TOKEN);
    expect(vigil.pool.get('job')?.state.lastResult?.state).toBe('ok');
  });

  it('keeps only bodyLimitBytes of a body, still counting the ping; refuses a body over 1 MiB with 413 and keeps serving', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h' })], { bodyLimitBytes: 64 });
    const long = `${'x'.repeat(100)}\n${'y'.repeat(100_000)}`;
    expect((await fetch(`${vigil.url}/ping/${TOKEN}`, { method: 'POST', body: long })).status).toBe(200);
    expect(lastResult(vigil, 'job').message).toBe('x'.repeat(64));

    const huge = Buffer.alloc(MAX_PING_REQUEST_BYTES + 1, 'z');
    const refused = await fetch(`${vigil.url}/ping/${TOKEN}/fail`, { method: 'POST', body: huge });
    expect(refused.status).toBe(413);
    expect(await refused.json()).toMatchObject({ error: 'payload too large' });
    expect(lastResult(vigil, 'job').state).toBe('ok');

    expect((await fetch(`${vigil.url}/ping/${TOKEN}/fail`, { method: 'POST', body: 'after' })).status).toBe(200);
    expect(lastResult(vigil, 'job').message).toBe('failure reported: after');
  });

  it('cuts a long first line to 200 characters and blanks control characters', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h' })]);
    await fetch(`${vigil.url}/ping/${TOKEN}`, { method: 'POST', body: `a\u001b[31mred\u0007 ${'w'.repeat(300)}` });
    const message = lastResult(vigil, 'job').message;
    expect(message).toHaveLength(200);
    expect(message.startsWith('a [31mred  www')).toBe(true);
    expect(message.endsWith('…')).toBe(true);
  });

  it('measures the run time between start and success', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h' })]);
    expect((await fetch(`${vigil.url}/ping/${TOKEN}/start`, { method: 'POST' })).status).toBe(200);
    expect(lastResult(vigil, 'job')).toMatchObject({ state: 'ok', reason: 'started', message: 'run started' });
    vigil.advance(90_000);
    await fetch(`${vigil.url}/ping/${TOKEN}`);
    const result = lastResult(vigil, 'job');
    expect(metric(result, PushMetrics.runTime)).toBeGreaterThanOrEqual(90);
    expect(metric(result, PushMetrics.runTime)).toBeLessThan(100);
    expect(metric(result, PushMetrics.runStarted)).toBeUndefined();
  });

  it('refuses a token two checks share with 409, and pings with 503 once vigil stops', async () => {
    const vigil = await startVigil([pushSpec('a', { token: TOKEN, period: '1h' }), pushSpec('b', { token: TOKEN, period: '1h' }), pushSpec('c', { token: `${TOKEN}-c`, period: '1h' })]);
    const shared = await fetch(`${vigil.url}/ping/${TOKEN}`);
    expect(shared.status).toBe(409);
    expect(await shared.json()).toEqual({ error: 'conflict', details: 'this token belongs to 2 push checks; give each its own token' });
    expect(vigil.pool.get('a')?.state.lastResult).toBeNull();

    await vigil.server.stop();
    const stopping = await fetch(`${vigil.url}/ping/${TOKEN}-c`);
    expect(stopping.status).toBe(503);
    expect(await stopping.json()).toEqual({ error: 'service unavailable', details: 'vigil is stopping; the ping was not recorded' });
  });
});

describe('push routes: scheduled evaluations', () => {
  it('reports run-too-long when a started run does not finish within maxRunTime', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h', maxRunTime: '10m' }, { intervalMs: 50, timeoutMs: 40 })], { start: true });
    await fetch(`${vigil.url}/ping/${TOKEN}/start`);
    await vi.waitFor(() => expect(lastResult(vigil, 'job').reason).toBe('running'));

    const opened = once(vigil.server, 'incident:open');
    vigil.advance(10 * 60_000);
    await vi.waitFor(() => expect(lastResult(vigil, 'job')).toMatchObject({ state: 'crit', reason: 'run-too-long' }));
    const [{ incident }] = (await opened) as [IncidentEventPayload];
    expect(incident).toMatchObject({ checkId: 'job', reason: 'run-too-long' });

    const resolved = once(vigil.server, 'incident:resolve');
    await fetch(`${vigil.url}/ping/${TOKEN}/0`);
    await resolved;
    expect(metric(lastResult(vigil, 'job'), PushMetrics.runTime)).toBeGreaterThanOrEqual(600);
  });

  it('reports heartbeat-missed once period + grace pass without a success, and recovers on the next ping', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h', grace: '5m' }, { intervalMs: 50, timeoutMs: 40 })], { start: true });
    await fetch(`${vigil.url}/ping/${TOKEN}`);
    await vi.waitFor(() => expect(lastResult(vigil, 'job')).toMatchObject({ state: 'ok', reason: 'ok' }));

    vigil.advance(60 * 60_000);
    await vi.waitFor(() => expect(lastResult(vigil, 'job').message).toMatch(/^last success ping 1h ago/));
    expect(lastResult(vigil, 'job').state).toBe('ok');

    const opened = once(vigil.server, 'incident:open');
    vigil.advance(5 * 60_000);
    const [{ incident }] = (await opened) as [IncidentEventPayload];
    expect(incident).toMatchObject({ checkId: 'job', state: 'crit', reason: 'heartbeat-missed' });
    expect(lastResult(vigil, 'job').message).toMatch(/^no success ping for 1h 5m \(last at .*\); expected every 1h \+ 5m grace$/);

    const resolved = once(vigil.server, 'incident:resolve');
    await fetch(`${vigil.url}/ping/${TOKEN}`);
    await resolved;
    await vi.waitFor(() => expect(lastResult(vigil, 'job').reason).toBe('ok'));
    expect(vigil.pool.get('job')?.state.hardState).toBe('ok');
  });

  it('counts a never-pinged check from its first evaluation', async () => {
    const vigil = await startVigil([pushSpec('job', { token: TOKEN, period: '1h', grace: '0s' })]);
    const first = await evaluateNow(vigil, 'job');
    expect(first).toMatchObject({ state: 'ok', reason: 'no-ping-yet' });
    vigil.advance(60 * 60_000);
    const missed = await evaluateNow(vigil, 'job');
    expect(missed).toMatchObject({ state: 'crit', reason: 'heartbeat-missed' });
    expect(missed.message).toMatch(/^no success ping since vigil began watching 1h ago/);
  });
});

describe('push tokens', () => {
  it('derives a token that is stable across restarts with the same secret file, kept 0600', async () => {
    const dataDir = await tempDir();
    const first = new PushTokens({ checks: new TrackedMemoryQueue(), secret: await loadPushSecret(dataDir), pingsOf });
    const pool = new TrackedMemoryQueue();
    pool.add(pushSpec('nightly-backup', { period: '1d' }));
    const secret = await loadPushSecret(dataDir);
    const second = new PushTokens({ checks: pool, secret, pingsOf });
    expect(first).not.toBe(second);
    expect((await stat(pushSecretPath(dataDir))).mode & 0o777).toBe(0o600);
    expect((await readFile(pushSecretPath(dataDir), 'utf8')).trim()).toMatch(/^[0-9a-f]{64}$/);

    const token = second.tokenOf('nightly-backup') as string;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(token).toBe(derivePushToken('nightly-backup', await loadPushSecret(dataDir)));
    expect(second.lookup(token)).toEqual({ kind: 'found', checkId: 'nightly-backup' });
    // Another data dir, another secret: another token.
    expect(derivePushToken('nightly-backup', await loadPushSecret(await tempDir()))).not.toBe(token);

    // A vigil restarted on the same data dir answers the same URL.
    for (let restart = 0; restart < 2; restart++) {
      const vigil = await startVigil([pushSpec('nightly-backup', { period: '1d' })], { dataDir });
      expect(vigil.tokens.tokenOf('nightly-backup')).toBe(token);
      expect((await fetch(`${vigil.url}/ping/${token}`)).status).toBe(200);
    }
  });

  it('agrees on one secret when several start at once, and refuses a damaged secret file', async () => {
    const dataDir = join(await tempDir(), 'nested', 'data');
    const secrets = await Promise.all(Array.from({ length: 8 }, () => loadPushSecret(dataDir)));
    for (const secret of secrets) expect(secret.equals(secrets[0] as Buffer)).toBe(true);

    await writeFile(pushSecretPath(dataDir), 'not a secret\n');
    await expect(loadPushSecret(dataDir)).rejects.toThrow(`push secret ${pushSecretPath(dataDir)} is not 64 hex characters (32 bytes)`);
  });

  it('warns when the secret file is readable by others', async () => {
    const dataDir = await tempDir();
    await loadPushSecret(dataDir);
    await chmod(pushSecretPath(dataDir), 0o644);
    const { logger, lines } = capturingLogger('warn');
    await loadPushSecret(dataDir, logger);
    expect(lines).toEqual([expect.objectContaining({ level: 40, mode: '0644' })]);
  });

  it('uses a given token as it is, and follows changed, added and removed checks', async () => {
    let now = 0;
    const pool = new TrackedMemoryQueue();
    pool.add(pushSpec('a', { token: TOKEN, period: '1h' }));
    pool.add(checkSpec({ id: 'not-push' }));
    const secret = await loadPushSecret(await tempDir());
    const tokens = new PushTokens({ checks: pool, secret, pingsOf, missRebuildIntervalMs: 60_000, clock: clockWith(() => now) });
    expect(tokenFor(pool.get('a')?.spec as CheckSpec, secret, pushCommand().pings as PingReceiver<unknown>)).toBe(TOKEN);
    expect(tokens.lookup(TOKEN)).toEqual({ kind: 'found', checkId: 'a' });
    expect(tokens.tokenOf('not-push')).toBeUndefined();
    expect(tokens.lookup(derivePushToken('not-push', secret))).toEqual({ kind: 'unknown' });

    // A replaced spec makes the old token stale: it is refused, and the new one found.
    pool.update(pushSpec('a', { token: `${TOKEN}-new`, period: '1h' }));
    expect(tokens.lookup(TOKEN)).toEqual({ kind: 'unknown' });
    expect(tokens.lookup(`${TOKEN}-new`)).toEqual({ kind: 'found', checkId: 'a' });

    // A check added since the last build: found after invalidate(), or once the rebuild interval passed.
    pool.add(pushSpec('b', { period: '1h' }));
    const tokenB = derivePushToken('b', secret);
    expect(tokens.lookup(tokenB)).toEqual({ kind: 'unknown' });
    tokens.invalidate();
    expect(tokens.lookup(tokenB)).toEqual({ kind: 'found', checkId: 'b' });
    pool.add(pushSpec('c', { period: '1h' }));
    now += 60_000;
    expect(tokens.lookup(derivePushToken('c', secret))).toEqual({ kind: 'found', checkId: 'c' });

    pool.remove('b');
    expect(tokens.lookup(tokenB)).toEqual({ kind: 'unknown' });
  });
});
