import { once } from 'node:events';
import { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCommand, type AnyCommand } from '../../src/commands/command.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import { ResultHistory } from '../../src/results/result-history.js';
import { builtinCheckDefaults, parseCheckSpec, type CheckContext } from '../../src/config/config.js';
import { startHttpEndpoint, type HttpEndpoint } from '../../src/http/endpoint.js';
import { registerApiRoutes } from '../../src/http/api.js';
import { port } from '../../src/validation/schema-types.js';
import { Server } from '../../src/server/server.js';
import { checkSpec, noopCommand, outcome } from '../helpers/checks.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';
import { execCommand as builtinExecCommand } from '../../src/commands/exec/exec.js';

const TOKEN = 'test-token-5f2b9c1e7a';

/** Stands in for the real `exec` command: the API must refuse it by name. */
/** Stands in for `exec`, with the real one's refusal: the API learns it from the command, not from its name. */
const execCommand: AnyCommand = defineCommand({
  name: 'exec',
  attributes: z.strictObject({ path: z.string() }),
  run: () => Promise.resolve(outcome('ok')),
  ...(builtinExecCommand().apiRefusal === undefined ? {} : { apiRefusal: builtinExecCommand().apiRefusal }),
});

/** A command with strict attributes, for problems reported inside `attributes`. */
const probeCommand: AnyCommand = defineCommand({
  name: 'probe',
  attributes: z.strictObject({ port: port() }),
  run: () => Promise.resolve(outcome('ok')),
});

/** Runs until the test releases it (or the run is aborted), so a check can be caught running. */
function gateCommand(): { command: AnyCommand; release: () => void } {
  const waiting: (() => void)[] = [];
  const command = defineCommand({
    name: 'gate',
    attributes: z.object({}),
    run: (_attributes, ctx) =>
      new Promise((resolve) => {
        const finish = (): void => {
          ctx.signal.removeEventListener('abort', finish);
          resolve(outcome('ok'));
        };
        if (ctx.signal.aborted) return finish();
        ctx.signal.addEventListener('abort', finish, { once: true });
        waiting.push(finish);
      }),
  });
  return { command, release: () => waiting.splice(0).forEach((finish) => finish()) };
}

interface Harness {
  readonly url: string;
  readonly server: Server;
  readonly pool: TrackedMemoryQueue;
  readonly history: ResultHistory;
  readonly release: () => void;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(options: { apiToken?: string | null; protectReads?: boolean; logger?: Logger } = {}): Promise<Harness> {
  const logger = options.logger ?? silentLogger();
  const gate = gateCommand();
  const commands = [noopCommand, execCommand, probeCommand, gate.command];
  const context: CheckContext = {
    defaults: builtinCheckDefaults,
    commands: new Map(commands.map((command) => [command.name, command])),
    handlerNames: new Set(['log']),
    poolNames: new Set(['default', 'exec']),
  };
  const pool = new TrackedMemoryQueue();
  pool.add(checkSpec({ id: 'web', metadata: { team: 'ops' } }));
  pool.add(checkSpec({ id: 'db', command: 'gate', timeoutMs: 30_000 }));
  pool.add(checkSpec({ id: 'backup-script', command: 'exec', attributes: { path: '/usr/local/bin/backup' } }));
  const history = new ResultHistory({ perCheck: 5 });
  const server = new Server({ queue: pool, commands, logger, stopTimeoutMs: 1_000 });
  // What the daemon wires: the history is filled from the server's events.
  server.on('check:finish', (event) => history.record(event.check.id, event.result));
  server.on('incident:resolve', (event) => history.recordResolved(event.incident));
  server.start();
  cleanups.push(async () => {
    gate.release();
    await server.stop();
  });
  const endpoint: HttpEndpoint = await startHttpEndpoint({
    host: '127.0.0.1',
    port: 0,
    registry: new Registry(),
    logger,
    health: () => ({ status: 'ok', instanceId: 'test', epoch: 1, version: '0.0.0', uptimeSeconds: 0, checks: pool.size }),
    routes: (app) =>
      registerApiRoutes(app, {
        server,
        checks: pool,
        history,
        parseCheck: (raw) => parseCheckSpec(raw, context),
        apiToken: options.apiToken === undefined ? TOKEN : options.apiToken,
        protectReads: options.protectReads ?? false,
        logger,
      }),
  });
  cleanups.push(() => endpoint.close());
  return { url: `${endpoint.url}/api/v1`, server, pool, history, release: gate.release };
}

interface ResultBody {
  readonly state: string;
  readonly reason: string;
  readonly startedAt: string;
}
interface IncidentBody {
  readonly id: string;
  readonly checkId: string;
}
interface CheckBody {
  readonly id: string;
  readonly nextDueAt: string | null;
  readonly lastResult: ResultBody | null;
  readonly incident: IncidentBody | null;
}
interface ErrorBody {
  readonly error: string;
  readonly details: string | { readonly path: string; readonly message: string }[];
}
interface Answer<T> {
  readonly status: number;
  readonly headers: Headers;
  /** The parsed JSON, typed by the caller for reading; the assertions check it. */
  readonly body: T;
}

async function call<T = unknown>(
  url: string,
  options: { method?: string; json?: unknown; body?: string; contentType?: string; token?: string | null; authorization?: string } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? TOKEN : options.token;
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  else if (token !== null) headers.authorization = `Bearer ${token}`;
  let body = options.body;
  if (options.json !== undefined) body = JSON.stringify(options.json);
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  const response = await fetch(url, { method: options.method ?? 'GET', headers, ...(body === undefined ? {} : { body }) });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: (text === '' ? undefined : JSON.parse(text)) as T };
}

/** A bad request must not take the API down: a plain read still answers. */
async function expectStillServing(h: Harness): Promise<void> {
  const answer = await call<{ checks: CheckBody[] }>(`${h.url}/checks`);
  expect(answer.status).toBe(200);
  expect(answer.body.checks.length).toBeGreaterThan(0);
}

function expectError(answer: Answer<unknown>, status: number, details: RegExp): void {
  expect(answer.status).toBe(status);
  expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
  expect(answer.body).toEqual({ error: anyString(), details: matching(details) });
}

/** Asymmetric matchers, typed for use inside expected objects. */
function matching(pattern: RegExp): unknown {
  return expect.stringMatching(pattern);
}
function anyString(): unknown {
  return expect.any(String);
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('HTTP API: checks', () => {
  it('lists every check with its state, sorted by id, without attributes', async () => {
    const h = await start();
    const answer = await call<{ checks: CheckBody[] }>(`${h.url}/checks`);
    expect(answer.status).toBe(200);
    expect(answer.body.checks.map((check) => check.id)).toEqual(['backup-script', 'db', 'web']);
    const web = answer.body.checks[2];
    expect(web).toEqual({
      id: 'web',
      command: 'noop',
      status: 'waiting',
      hardState: 'ok',
      stateType: 'hard',
      attempt: 0,
      lastResult: null,
      incident: null,
      nextDueAt: matching(ISO),
      lastHardChangeAt: null,
      pool: null,
      metadata: { team: 'ops' },
      suppressed: false,
      intervalMs: 60_000,
      timeoutMs: 10_000,
      retryIntervalMs: 15_000,
      maxAttempts: 1,
      recoverAfter: 1,
      handlers: [],
    });
    expect(Date.parse(web?.nextDueAt ?? '')).toBe(h.pool.get('web')?.dueAt);
    expect(JSON.stringify(answer.body)).not.toContain('/usr/local/bin/backup');
  });

  it('shows one check, and answers 404 for an unknown one and 400 for a malformed id', async () => {
    const h = await start();
    const one = await call<CheckBody>(`${h.url}/checks/web`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id: 'web', command: 'noop', status: 'waiting' });

    expectError(await call(`${h.url}/checks/nope`), 404, /^check "nope" does not exist$/);
    expect((await call<ErrorBody>(`${h.url}/checks/nope`)).body.error).toBe('not found');
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/-bad%20id`), 400, /^path parameter id: expected a check id: .*, got "-bad id"$/);
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/${'a'.repeat(90)}!`), 400, /^path parameter id: expected a check id/);
    await expectStillServing(h);
  });

  it('addresses a heartbeat-dir heartbeat by its id with a slash, sent encoded', async () => {
    const h = await start();
    h.pool.add(checkSpec({ id: 'workers/api', command: 'noop' }));
    const child = await call<CheckBody>(`${h.url}/checks/workers%2Fapi`);
    expect(child.status).toBe(200);
    expect(child.body).toMatchObject({ id: 'workers/api', status: 'waiting' });
  });

  it('creates a check with PUT (201, Location), taking the id from the URL, and schedules it', async () => {
    const h = await start();
    const created = await call<CheckBody>(`${h.url}/checks/api-1`, { method: 'PUT', json: { command: 'noop', interval: '5m', metadata: { owner: 'me' } } });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/api/v1/checks/api-1');
    expect(created.body).toMatchObject({ id: 'api-1', command: 'noop', status: 'waiting', intervalMs: 300_000, timeoutMs: 10_000, maxAttempts: 3, metadata: { owner: 'me' } });
    expect(h.pool.get('api-1')?.spec).toMatchObject({ id: 'api-1', intervalMs: 300_000, handlers: ['log', 'prometheus'] });
    expect((await call<CheckBody>(`${h.url}/checks/api-1`)).body.id).toBe('api-1');
  });

  it('replaces a check with PUT (200), keeping its state, and accepts the same id in the body', async () => {
    const h = await start();
    await h.server.submit('web', outcome('warn', 'slow'));
    const replaced = await call<CheckBody>(`${h.url}/checks/web`, { method: 'PUT', json: { id: 'web', command: 'noop', interval: '2m', suppressed: true } });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ id: 'web', intervalMs: 120_000, suppressed: true, metadata: {}, hardState: 'warn', lastResult: { state: 'warn', reason: 'slow' } });
    expect(replaced.body.lastResult?.startedAt).toMatch(ISO);
    expect(h.pool.get('web')?.spec).toMatchObject({ intervalMs: 120_000, suppressed: true });
  });

  it('answers 422 listing every problem of an invalid entry, with paths relative to the entry', async () => {
    const h = await start();
    const answer = await call<ErrorBody>(`${h.url}/checks/broken`, { method: 'PUT', json: { command: 'nope', interval: 'soon', maxAttempts: 0, colour: 'red', handlers: ['pager'] } });
    expect(answer.status).toBe(422);
    expect(answer.body.error).toMatch(/^invalid check "broken" \(5 problems\): /);
    expect(answer.body.error).not.toContain('\n');
    expect(answer.body.details).toEqual(
      expect.arrayContaining([
        { path: 'interval', message: matching(/^expected a duration like 30s.*, got "soon"$/) },
        { path: 'maxAttempts', message: 'expected an integer ≥ 1, got 0' },
        { path: 'colour', message: 'unknown key' },
        { path: 'command', message: matching(/^unknown command "nope"; known commands: exec, gate, noop, probe$/) },
        { path: 'handlers[0]', message: matching(/^unknown handler "pager"/) },
      ]),
    );
    expect(answer.body.details).toHaveLength(5);
    expect(h.pool.get('broken')).toBeUndefined();
    await expectStillServing(h);

    const attributes = await call<ErrorBody>(`${h.url}/checks/web`, { method: 'PUT', json: { command: 'probe', attributes: { port: 'http', extra: 1 } } });
    expect(attributes.status).toBe(422);
    expect(attributes.body.details).toEqual([
      { path: 'attributes.port', message: 'expected an integer 1–65535, got "http"' },
      { path: 'attributes.extra', message: 'unknown key' },
    ]);
    const timeout = await call<ErrorBody>(`${h.url}/checks/web`, { method: 'PUT', json: { command: 'noop', timeout: '2m', interval: '1m' } });
    expect(timeout.status).toBe(422);
    expect(timeout.body.details).toEqual([{ path: 'timeout', message: 'expected at most the interval (1m), got "2m"' }]);
    expect(h.pool.get('web')?.spec).toMatchObject({ command: 'noop', intervalMs: 60_000 });

    const notAnEntry = await call<ErrorBody>(`${h.url}/checks/web`, { method: 'PUT', json: ['noop'] });
    expect(notAnEntry.status).toBe(422);
    expect(notAnEntry.body.details).toEqual([{ path: '', message: 'expected a mapping, got an array' }]);
    await expectStillServing(h);
  });

  it('answers 422 when the body names another id than the URL', async () => {
    const h = await start();
    const answer = await call<ErrorBody>(`${h.url}/checks/web`, { method: 'PUT', json: { id: 'other', command: 'noop' } });
    expect(answer.status).toBe(422);
    expect(answer.body.details).toEqual([{ path: 'id', message: 'expected "web" (the id in the URL) or no id, got "other"' }]);
    expect(h.pool.get('other')).toBeUndefined();
    await expectStillServing(h);
  });

  it('answers 400 for bad JSON or no body, 415 for a non-JSON body and 413 for a body over 64 KiB', async () => {
    const h = await start();
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT', body: '{"command": "noop",' }), 400, /not valid JSON/);
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT' }), 400, /^expected a JSON body with the check entry/);
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT', body: 'command: noop', contentType: 'text/plain' }), 415, /^expected a JSON body \(content-type: application\/json\), got content-type "text\/plain"$/);
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT', body: 'command: noop', contentType: 'application/yaml' }), 415, /application\/yaml/);
    await expectStillServing(h);
    const big = { command: 'noop', metadata: { note: 'x'.repeat(70_000) } };
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT', json: big }), 413, /^expected a body of at most 65536 bytes$/);
    await expectStillServing(h);
    expect(h.pool.get('x')).toBeUndefined();
  });

  it('removes a check with DELETE (204) and answers 404 for an unknown one', async () => {
    const h = await start();
    await h.server.submit('web', outcome('ok'));
    expect(h.history.results('web')).toHaveLength(1);
    const removed = await call(`${h.url}/checks/web`, { method: 'DELETE' });
    expect(removed.status).toBe(204);
    expect(removed.body).toBeUndefined();
    expect(h.pool.get('web')).toBeUndefined();
    expect(h.history.results('web')).toEqual([]);
    expectError(await call(`${h.url}/checks/web`), 404, /does not exist/);
    expectError(await call(`${h.url}/checks/web`, { method: 'DELETE' }), 404, /^check "web" does not exist$/);
    await expectStillServing(h);
  });

  it('refuses to create, change or remove exec checks (403)', async () => {
    const h = await start();
    expectError(await call(`${h.url}/checks/new-script`, { method: 'PUT', json: { command: 'exec', attributes: { path: '/bin/true' } } }), 403, /exec checks .* cannot be created, changed or removed through the API/);
    expect(h.pool.get('new-script')).toBeUndefined();
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/backup-script`, { method: 'PUT', json: { command: 'noop' } }), 403, /exec checks/);
    expect(h.pool.get('backup-script')?.spec.command).toBe('exec');
    expectError(await call(`${h.url}/checks/web`, { method: 'PUT', json: { command: 'exec', attributes: { path: '/bin/true' } } }), 403, /exec checks/);
    expect(h.pool.get('web')?.spec.command).toBe('noop');
    expectError(await call(`${h.url}/checks/backup-script`, { method: 'DELETE' }), 403, /exec checks/);
    expect(h.pool.get('backup-script')).toBeDefined();
    await expectStillServing(h);
  });
});

describe('HTTP API: runs and results', () => {
  it('runs a check now (202) and shows its results newest first, limited on request', async () => {
    const h = await start();
    for (let run = 1; run <= 3; run++) {
      const finished = once(h.server, 'check:finish');
      const answer = await call<CheckBody>(`${h.url}/checks/web/run`, { method: 'POST' });
      expect(answer.status).toBe(202);
      expect(answer.body.id).toBe('web');
      await finished;
    }
    await h.server.submit('web', outcome('warn', 'slow'));
    const all = await call<{ checkId: string; results: ResultBody[] }>(`${h.url}/checks/web/results`);
    expect(all.status).toBe(200);
    expect(all.body.checkId).toBe('web');
    expect(all.body.results.map((result) => result.state)).toEqual(['warn', 'ok', 'ok', 'ok']);
    expect(all.body.results[0]).toEqual({ state: 'warn', reason: 'slow', message: 'warn (slow)', metrics: [], startedAt: matching(ISO), durationMs: 0 });
    const limited = await call<{ checkId: string; results: ResultBody[] }>(`${h.url}/checks/web/results?limit=2`);
    expect(limited.body.results.map((result) => result.reason)).toEqual(['slow', 'ok']);
    expect((await call(`${h.url}/checks/db/results`)).body).toEqual({ checkId: 'db', results: [] });
  });

  it('validates the results limit (400) and answers 404 for an unknown check', async () => {
    const h = await start();
    expectError(await call(`${h.url}/checks/web/results?limit=0`), 400, /^query parameter limit: expected an integer 1–1000.*, got 0$/);
    await expectStillServing(h);
    expectError(await call(`${h.url}/checks/web/results?limit=abc`), 400, /^query parameter limit: expected an integer 1–1000.*, got "abc"$/);
    expectError(await call(`${h.url}/checks/web/results?limit=5000`), 400, /got 5000$/);
    expectError(await call(`${h.url}/checks/nope/results`), 404, /^check "nope" does not exist$/);
    await expectStillServing(h);
  });

  it('answers 409 to run-now while the check is running, and 404 for an unknown check', async () => {
    const h = await start();
    const started = once(h.server, 'check:start');
    expect((await call(`${h.url}/checks/db/run`, { method: 'POST' })).status).toBe(202);
    await started;
    expect(h.pool.status('db')).toBe('running');
    expect((await call(`${h.url}/checks/db`)).body).toMatchObject({ status: 'running', nextDueAt: null });
    expectError(await call(`${h.url}/checks/db/run`, { method: 'POST' }), 409, /^check "db" is running/);
    await expectStillServing(h);
    // Replaced while running: the answer shows the accepted spec, which applies from the next run.
    const replaced = await call<CheckBody & { intervalMs: number }>(`${h.url}/checks/db`, { method: 'PUT', json: { command: 'gate', interval: '2m' } });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ status: 'running', intervalMs: 120_000 });
    const finished = once(h.server, 'check:finish');
    h.release();
    await finished;
    expect((await call<{ results: ResultBody[] }>(`${h.url}/checks/db/results`)).body.results).toHaveLength(1);
    expectError(await call(`${h.url}/checks/nope/run`, { method: 'POST' }), 404, /does not exist/);
  });
});

describe('HTTP API: incidents', () => {
  it('lists open incidents, acknowledges one (200), then answers 409 to a second ack', async () => {
    const h = await start();
    expect((await call(`${h.url}/incidents`)).body).toEqual({ incidents: [] });
    const acknowledged = once(h.server, 'incident:acknowledge');
    await h.server.submit('web', outcome('crit', 'refused'));
    const incidentId = h.pool.get('web')?.state.incident?.id as string;
    expect(incidentId).toMatch(/^web:\d+$/);

    const open = await call<{ incidents: IncidentBody[] }>(`${h.url}/incidents`);
    expect(open.status).toBe(200);
    expect(open.body.incidents).toEqual([
      {
        id: incidentId,
        checkId: 'web',
        openedAt: matching(ISO),
        updatedAt: matching(ISO),
        resolvedAt: null,
        state: 'crit',
        worstState: 'crit',
        reason: 'refused',
        acknowledgedAt: null,
        externalId: null,
      },
    ]);
    expect((await call<CheckBody>(`${h.url}/checks/web`)).body.incident?.id).toBe(incidentId);

    const ack = await call<IncidentBody>(`${h.url}/incidents/${incidentId}/ack`, { method: 'POST' });
    expect(ack.status).toBe(200);
    expect(ack.body).toMatchObject({ id: incidentId, checkId: 'web', acknowledgedAt: matching(ISO) });
    await acknowledged;
    expect(h.pool.get('web')?.state.incident?.acknowledgedAt).not.toBeNull();

    expectError(await call(`${h.url}/incidents/${incidentId}/ack`, { method: 'POST' }), 409, /already acknowledged at \d{4}-/);
    await expectStillServing(h);
  });

  it('lists resolved incidents from the history, answers 409 to acking one and 404 to an unknown id', async () => {
    const h = await start();
    await h.server.submit('web', outcome('crit'));
    const incidentId = h.pool.get('web')?.state.incident?.id as string;
    await h.server.submit('web', outcome('ok'));
    await h.server.submit('db', outcome('warn'));

    const resolved = await call<{ incidents: IncidentBody[] }>(`${h.url}/incidents?state=resolved`);
    expect(resolved.body.incidents).toHaveLength(1);
    expect(resolved.body.incidents[0]).toMatchObject({ id: incidentId, resolvedAt: matching(ISO) });
    expect((await call<{ incidents: IncidentBody[] }>(`${h.url}/incidents`)).body.incidents.map((incident) => incident.checkId)).toEqual(['db']);
    const all = await call<{ incidents: IncidentBody[] }>(`${h.url}/incidents?state=all`);
    expect(all.body.incidents.map((incident) => incident.checkId)).toEqual(['db', 'web']);

    expectError(await call(`${h.url}/incidents/${incidentId}/ack`, { method: 'POST' }), 409, /is resolved/);
    expectError(await call(`${h.url}/incidents/web:1/ack`, { method: 'POST' }), 404, /^incident "web:1" does not exist/);
    expectError(await call(`${h.url}/incidents/nothing/ack`, { method: 'POST' }), 404, /does not exist/);
    expectError(await call(`${h.url}/incidents?state=closed`), 400, /^query parameter state: expected open, resolved or all, got "closed"$/);
    await expectStillServing(h);
  });
});

describe('HTTP API: authentication', () => {
  it('refuses mutations with 403 when no API token is configured, and still serves reads', async () => {
    const h = await start({ apiToken: null });
    const answer = await call(`${h.url}/checks/new`, { method: 'PUT', json: { command: 'noop' } });
    expectError(answer, 403, /API token is not configured \(server\.apiToken\)/);
    expect(h.pool.get('new')).toBeUndefined();
    expectError(await call(`${h.url}/checks/web/run`, { method: 'POST', token: null }), 403, /API token is not configured/);
    expectError(await call(`${h.url}/checks/web`, { method: 'DELETE' }), 403, /API token is not configured/);
    expect(h.pool.get('web')).toBeDefined();
    expect((await call(`${h.url}/checks`, { token: null })).status).toBe(200);
  });

  it('answers 401 with WWW-Authenticate to a missing, malformed or wrong token and accepts the right one', async () => {
    const { logger, lines } = capturingLogger('debug');
    const h = await start({ logger });
    const missing = await call(`${h.url}/checks/web`, { method: 'DELETE', token: null });
    expectError(missing, 401, /^missing API token/);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="vigil"');
    await expectStillServing(h);

    const wrong = await call(`${h.url}/checks/web`, { method: 'DELETE', token: `${TOKEN}x` });
    expectError(wrong, 401, /^invalid API token$/);
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="vigil", error="invalid_token"');
    const short = await call(`${h.url}/checks/web`, { method: 'DELETE', token: 'a' });
    expectError(short, 401, /^invalid API token$/);

    const basic = await call(`${h.url}/checks/web`, { method: 'DELETE', authorization: `Basic ${Buffer.from(`me:${TOKEN}`).toString('base64')}` });
    expectError(basic, 401, /^expected the header Authorization: Bearer <token>, got a Basic authorization$/);
    expect(h.pool.get('web')).toBeDefined();

    expect((await call(`${h.url}/checks/web`, { method: 'DELETE', authorization: `bearer ${TOKEN}` })).status).toBe(204);
    expect(h.pool.get('web')).toBeUndefined();

    // Neither the right token nor the wrong ones reach the logs.
    expect(lines.length).toBeGreaterThan(0);
    const logged = JSON.stringify(lines);
    expect(logged).not.toContain(TOKEN);
    expect(logged).not.toContain(Buffer.from(`me:${TOKEN}`).toString('base64'));
  });

  it('leaves reads open by default and protects them with protectReads', async () => {
    const open = await start();
    expect((await call(`${open.url}/checks`, { token: null })).status).toBe(200);
    expect((await call(`${open.url}/incidents`, { token: null })).status).toBe(200);

    const h = await start({ protectReads: true });
    expect((await fetch(`${h.url}/checks`, { method: 'HEAD' })).status).toBe(401);
    for (const path of ['/checks', '/checks/web', '/checks/web/results', '/incidents']) {
      const refused = await call(`${h.url}${path}`, { token: null });
      expectError(refused, 401, /^missing API token/);
      expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="vigil"');
      expectError(await call(`${h.url}${path}`, { token: 'guess' }), 401, /^invalid API token$/);
      expect((await call(`${h.url}${path}`)).status).toBe(200);
    }
    // The document describes the API, not its data: it stays readable.
    expect((await call(`${h.url}/openapi.json`, { token: null })).status).toBe(200);
  });

  it('checks the token before reading the body', async () => {
    const h = await start();
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT', body: '{not json', token: null }), 401, /missing API token/);
    expectError(await call(`${h.url}/checks/x`, { method: 'PUT', body: 'x'.repeat(70_000), contentType: 'text/plain', token: 'nope' }), 401, /invalid API token/);
  });
});

describe('HTTP API: the rest', () => {
  it('serves an OpenAPI 3.1 document of its routes, with shared schemas and the bearer scheme', async () => {
    const h = await start({ protectReads: true });
    const response = await fetch(`${h.url}/openapi.json`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const document = JSON.parse(await response.text()) as {
      openapi: string;
      info: { title: string };
      paths: Record<string, Record<string, { security?: unknown; requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> } }>>;
      components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
    };
    expect(document.openapi).toBe('3.1.0');
    expect(document.info.title).toBe('vigil API');
    const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
    expect(operations.sort()).toEqual(
      [
        'GET /api/v1/checks',
        'GET /api/v1/checks/{id}',
        'PUT /api/v1/checks/{id}',
        'DELETE /api/v1/checks/{id}',
        'POST /api/v1/checks/{id}/run',
        'GET /api/v1/checks/{id}/results',
        'GET /api/v1/incidents',
        'POST /api/v1/incidents/{id}/ack',
        'GET /api/v1/openapi.json',
      ].sort(),
    );
    expect(Object.keys(document.components.schemas)).toEqual(expect.arrayContaining(['Check', 'Incident', 'Result', 'Metric', 'Error', 'Problem']));
    expect(Object.keys(document.components.securitySchemes)).toEqual(['bearer']);
    expect(document.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(document.paths['/api/v1/checks/{id}']?.put?.security).toEqual([{ bearer: [] }]);
    expect(document.paths['/api/v1/checks']?.get?.security).toEqual([{ bearer: [] }]);
    const body = document.paths['/api/v1/checks/{id}']?.put?.requestBody?.content['application/json']?.schema;
    expect(Object.keys(body?.properties ?? {})).toEqual(expect.arrayContaining(['id', 'command', 'attributes', 'interval']));
    // Every reference points at a schema the document has.
    const refs = [...JSON.stringify(document).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((match) => match[1] as string);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect(document.components.schemas).toHaveProperty([ref]);
  });

  it('answers unknown API routes with 404 JSON and keeps serving', async () => {
    const h = await start();
    expectError(await call(`${h.url}/nothing`), 404, /^no route for GET \/api\/v1\/nothing$/);
    expectError(await call(`${h.url}/checks`, { method: 'POST', json: {} }), 404, /no route for POST/);
    await expectStillServing(h);
  });
});
