import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startDaemon, stateFilePath, type Daemon } from '../../src/daemon/daemon.js';
import { instanceFilePath } from '../../src/daemon/instance.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../helpers/postgres.js';
import { freePort } from '../helpers/processes.js';

/**
 * A handler type loaded by path, as users load theirs: each close appends the handler's name to the
 * file `log`, so the test sees which handlers were closed, in which order and how often.
 */
const RECORDER_PLUGIN = `
import { appendFileSync } from 'node:fs';
export const handlers = [{
  type: 'recorder',
  parseOptions: (raw) => ({ ok: true, value: raw ?? {} }),
  create(name, options) {
    if (options.failCreate) throw new Error('cannot create ' + name);
    return {
      name,
      async close() {
        appendFileSync(options.log, name + '\\n');
        if (options.failClose) throw new Error('cannot close ' + name);
      },
    };
  },
}];
`;

/** Whether nothing listens on `port` any more. */
function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

interface RecorderOptions {
  readonly failCreate?: boolean;
  readonly failClose?: boolean;
}

/** What a start step that fails must release: whatever started before it, in reverse, once. */
describe('startDaemon releases what it started', () => {
  let dir: string;
  let database: TestDatabase;
  let daemon: Daemon | undefined;
  const listeners: NetServer[] = [];

  beforeAll(async () => {
    database = await testDatabase('daemon_release');
  });
  afterAll(async () => {
    await database.drop();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-release-'));
    await writeFile(join(dir, 'recorder.mjs'), RECORDER_PLUGIN);
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    for (const listener of listeners.splice(0)) await new Promise<void>((resolve) => listener.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  const closesLog = (): string => join(dir, 'closes.log');

  /** The handlers closed so far, in the order they were closed. */
  async function closed(): Promise<string[]> {
    if (!existsSync(closesLog())) return [];
    return (await readFile(closesLog(), 'utf8')).split('\n').filter((line) => line !== '');
  }

  /** A data dir whose instance id the test knows: PostgreSQL connections carry it as `vigil:<id>`. */
  async function dataDirWithId(): Promise<{ dataDir: string; id: string }> {
    const dataDir = join(dir, 'data');
    const id = `release-test-${randomBytes(4).toString('hex')}`;
    await mkdir(dataDir, { recursive: true });
    await writeFile(instanceFilePath(dataDir), JSON.stringify({ id, epoch: 1 }));
    return { dataDir, id };
  }

  async function writeConfig(options: { handlers: Record<string, RecorderOptions>; dataDir?: string; port?: number; queue?: string; server?: string; checks?: string }): Promise<string> {
    const handlers = Object.entries(options.handlers).map(([name, flags]) => `  ${name}: ${JSON.stringify({ type: 'recorder', log: closesLog(), ...flags })}`);
    const file = join(dir, 'vigil.yaml');
    await writeFile(
      file,
      [
        'plugins: [./recorder.mjs]',
        `server: { host: 127.0.0.1, port: ${options.port ?? 0}, dataDir: ${JSON.stringify(options.dataDir ?? join(dir, 'data'))}${options.server ?? ''} }`,
        options.queue === undefined ? '' : `queue: ${options.queue}`,
        `handlers:\n${handlers.join('\n')}`,
        `checks:\n${options.checks ?? '  []'}`,
      ].join('\n'),
    );
    return file;
  }

  /** A port another listener holds, so the HTTP endpoint cannot listen there. */
  async function takenPort(): Promise<number> {
    const listener = createServer();
    listeners.push(listener);
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    return (listener.address() as AddressInfo).port;
  }

  const postgresQueue = (extra = ''): string => `{ type: postgres, url: ${JSON.stringify(database.url)}, schema: ${database.schema}, pollInterval: 100ms${extra} }`;

  async function connections(id: string): Promise<number> {
    const { rows } = await database.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [`vigil:${id}`]);
    return rows[0]?.n ?? -1;
  }

  /** A backend leaves pg_stat_activity once it has exited, a moment after its client disconnected. */
  async function expectNoConnections(id: string): Promise<void> {
    await vi.waitFor(async () => expect(await connections(id)).toBe(0), { timeout: 5_000, interval: 50 });
  }

  it('closes the handlers created before one whose creation throws, and never that one', async () => {
    const file = await writeConfig({ handlers: { first: {}, second: {}, broken: { failCreate: true } } });
    await expect(startDaemon({ configFile: file, logger: silentLogger() })).rejects.toThrow('cannot create broken');
    expect(await closed()).toEqual(['second', 'first']);
  });

  it('closes the handlers when the PostgreSQL queue cannot connect', async () => {
    const closedPort = await freePort();
    const file = await writeConfig({ handlers: { first: {} }, queue: `{ type: postgres, url: "postgres://postgres@127.0.0.1:${closedPort}/test" }` });
    await expect(startDaemon({ configFile: file, logger: silentLogger() })).rejects.toThrow(/ECONNREFUSED/);
    expect(await closed()).toEqual(['first']);
  });

  it('leaves no connection and closes the handlers when the PostgreSQL queue fails after connecting', async () => {
    const { dataDir, id } = await dataDirWithId();
    // No migrations into a schema that does not exist: registering the instance fails on a live connection.
    const queue = `{ type: postgres, url: ${JSON.stringify(database.url)}, schema: ${database.schema}_missing, migrate: false }`;
    const file = await writeConfig({ handlers: { first: {} }, dataDir, queue });
    await expect(startDaemon({ configFile: file, logger: silentLogger() })).rejects.toThrow(/does not exist/);
    expect(await closed()).toEqual(['first']);
    await expectNoConnections(id);
  });

  it('releases the PostgreSQL queue (instance marked stopped, no connection left) and the handlers when the HTTP port is taken', async () => {
    const { dataDir, id } = await dataDirWithId();
    const port = await takenPort();
    const file = await writeConfig({ handlers: { first: {}, second: {} }, dataDir, port, queue: postgresQueue() });
    await expect(startDaemon({ configFile: file, logger: silentLogger() })).rejects.toThrow(`Cannot listen on 127.0.0.1:${port}`);
    expect(await closed()).toEqual(['second', 'first']);
    const { rows } = await database.pool.query<{ dead: boolean }>('SELECT dead FROM instances WHERE id = $1', [id]);
    expect(rows).toEqual([{ dead: true }]);
    await expectNoConnections(id);
  });

  it('saves the state file and closes the handlers when the HTTP port is taken with the memory queue', async () => {
    const port = await takenPort();
    const file = await writeConfig({ handlers: { first: {} }, port });
    await expect(startDaemon({ configFile: file, logger: silentLogger() })).rejects.toThrow(`Cannot listen on 127.0.0.1:${port}`);
    expect(await closed()).toEqual(['first']);
    expect(existsSync(stateFilePath(join(dir, 'data')))).toBe(true);
  });

  it('logs a release that throws during a failed start, runs the others, and rethrows the start’s error', async () => {
    const port = await takenPort();
    const file = await writeConfig({ handlers: { first: {}, second: { failClose: true } }, port });
    const { logger, lines } = capturingLogger('error');
    await expect(startDaemon({ configFile: file, logger })).rejects.toThrow(`Cannot listen on 127.0.0.1:${port}`);
    expect(await closed()).toEqual(['second', 'first']);
    expect(lines).toMatchObject([{ msg: 'release failed', step: 'handler second', err: { message: 'cannot close second' } }]);
    expect(existsSync(stateFilePath(join(dir, 'data')))).toBe(true);
  });

  it('holds connections to PostgreSQL while running, none once stopped, and closes each handler once', async () => {
    const { dataDir, id } = await dataDirWithId();
    const file = await writeConfig({ handlers: { first: {}, second: {} }, dataDir, queue: postgresQueue() });
    const running = await startDaemon({ configFile: file, logger: silentLogger() });
    expect(await connections(id)).toBeGreaterThan(0);
    await running.stop();
    expect(await closed()).toEqual(['second', 'first']);
    await expectNoConnections(id);
  });

  it('stops in reverse: the endpoint says `stopping` while a check drains, the state is saved after it, handlers close once', async () => {
    const held: ServerResponse[] = [];
    let requested!: () => void;
    const arrived = new Promise<void>((resolve) => (requested = resolve));
    const target = createHttpServer((_request, response) => {
      held.push(response);
      requested();
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    try {
      const checks = `  - { id: slow, command: http, interval: once, timeout: 30s, handlers: [first], attributes: { url: "http://127.0.0.1:${(target.address() as AddressInfo).port}/" } }`;
      const file = await writeConfig({ handlers: { first: {} }, server: ', stopTimeout: 30s', checks });
      daemon = await startDaemon({ configFile: file, logger: silentLogger() });
      const { url } = daemon;
      await arrived;

      const stopping = daemon.stop();
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ status: 'stopping', checks: 1 });
      // The queue is still open for the API while the check drains.
      expect((await fetch(`${url}/api/v1/checks/slow`)).status).toBe(200);
      expect(await closed()).toEqual([]);

      held[0]?.end('ok');
      await stopping;
      expect(await closed()).toEqual(['first']);
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
      // Saved after the run finished: the queue closed after the server drained.
      const state = JSON.parse(await readFile(stateFilePath(join(dir, 'data')), 'utf8')) as { checks: Record<string, { state: { lastResult: { state: string } | null } }> };
      expect(state.checks.slow?.state.lastResult?.state).toBe('ok');
    } finally {
      target.closeAllConnections();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    }
  });

  it('answers an API request in flight at stop before the queue closes, so what it changed is saved', async () => {
    const file = await writeConfig({ handlers: { first: {} }, server: ', apiToken: secret-token-for-release' });
    daemon = await startDaemon({ configFile: file, logger: silentLogger() });
    const { port } = new URL(daemon.url);
    const body = JSON.stringify({ command: 'tcp', interval: '1h', attributes: { host: '127.0.0.1', port: 1 } });
    const request = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'PUT',
      path: '/api/v1/checks/late',
      // Without keep-alive: a closing endpoint would otherwise wait for the idle connection's timeout.
      headers: { authorization: 'Bearer secret-token-for-release', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' },
    });
    const answered = new Promise<number | undefined>((resolve, reject) => {
      request.on('response', (response) => {
        response.resume();
        resolve(response.statusCode);
      });
      request.on('error', reject);
    });
    // Headers and half the body: the request is in flight until the rest arrives.
    await new Promise<void>((resolve) => request.write(body.slice(0, 10), () => resolve()));
    // Answered after the endpoint has taken the PUT's connection (connections are accepted in order).
    expect((await fetch(`${daemon.url}/healthz`)).status).toBe(200);

    const stopping = daemon.stop();
    // The endpoint stops listening and waits for the PUT, before the queue saves its state.
    await vi.waitFor(() => expect(refusesConnections(Number(port))).resolves.toBe(true), { timeout: 5_000, interval: 20 });
    request.end(body.slice(10));
    expect(await answered).toBe(201);
    await stopping;
    const state = JSON.parse(await readFile(stateFilePath(join(dir, 'data')), 'utf8')) as { checks: Record<string, unknown> };
    expect(Object.keys(state.checks)).toEqual(['late']);
  });

  it('closes the other handlers, the endpoint and the queue at stop when one handler’s close throws', async () => {
    const file = await writeConfig({ handlers: { first: {}, second: { failClose: true }, third: {} } });
    const running = await startDaemon({ configFile: file, logger: silentLogger() });
    await running.stop();
    expect(await closed()).toEqual(['third', 'second', 'first']);
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
    expect(existsSync(stateFilePath(join(dir, 'data')))).toBe(true);
  });
});
