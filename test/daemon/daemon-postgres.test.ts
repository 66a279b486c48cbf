import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startDaemon, type Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../helpers/logger.js';
import { testDatabase, type TestDatabase } from '../helpers/postgres.js';

/** Two daemons on one PostgreSQL: what one of them saw, the other's API shows, from the database. */
describe('startDaemon with a PostgreSQL queue', () => {
  let dir: string;
  let database: TestDatabase;
  const daemons: Daemon[] = [];
  let target: NetServer | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-daemon-pg-'));
    database = await testDatabase('daemon');
  });
  afterEach(async () => {
    for (const daemon of daemons.splice(0).reverse()) await daemon.stop();
    if (target?.listening) await new Promise<void>((resolve) => target?.close(() => resolve()));
    await database.drop();
    await rm(dir, { recursive: true, force: true });
  });

  async function listen(port = 0): Promise<number> {
    target = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => target?.listen(port, '127.0.0.1', resolve));
    return (target.address() as AddressInfo).port;
  }

  async function start(name: string, checks: string, handlers = ''): Promise<Daemon> {
    const file = join(dir, `${name}.yaml`);
    await writeFile(
      file,
      [
        `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, name))} }`,
        `queue: { type: postgres, url: "${database.url}", schema: ${database.schema}, pollInterval: 100ms, heartbeatInterval: 500ms }`,
        handlers,
        'defaults: { maxAttempts: 1, handlers: [log] }',
        `checks:\n${checks}`,
      ].join('\n'),
    );
    const daemon = await startDaemon({ configFile: file, logger: silentLogger() });
    daemons.push(daemon);
    return daemon;
  }

  it('shows an incident resolved on one instance, and results stored by postgres-results, on the other', async () => {
    const port = await listen();
    const checks = `  - { id: svc, command: tcp, interval: 300ms, timeout: 200ms, handlers: [log, history], attributes: { host: 127.0.0.1, port: ${port} } }`;
    const history = `handlers:\n  history: { type: postgres-results, url: "${database.url}", schema: ${database.schema}, flushInterval: 100ms }`;
    const first = await start('a', checks, history);
    const second = await start('b', checks, history);

    // Down, then up again on the same port: an incident opens and resolves, on whichever instance ran it.
    await new Promise<void>((resolve) => target?.close(() => resolve()));
    await vi.waitFor(async () => {
      const { incidents } = (await (await fetch(`${first.url}/api/v1/incidents?state=open`)).json()) as { incidents: unknown[] };
      expect(incidents).toHaveLength(1);
    }, { timeout: 15_000, interval: 100 });
    await listen(port);
    for (const daemon of [first, second]) {
      await vi.waitFor(async () => {
        const { incidents } = (await (await fetch(`${daemon.url}/api/v1/incidents?state=resolved`)).json()) as { incidents: { checkId: string; worstState: string; resolvedAt: string | null }[] };
        expect(incidents).toMatchObject([{ checkId: 'svc', worstState: 'crit' }]);
        expect(incidents[0]?.resolvedAt).not.toBeNull();
      }, { timeout: 15_000, interval: 100 });
    }
    // Both instances answer the same stored results.
    const [a, b] = await Promise.all(
      [first, second].map(async (daemon) => ((await (await fetch(`${daemon.url}/api/v1/checks/svc/results?limit=5`)).json()) as { results: { startedAt: string }[] }).results),
    );
    expect(a?.length).toBeGreaterThan(0);
    expect(a).toEqual(b);
  });
});
