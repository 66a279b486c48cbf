import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startDaemon, type Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../helpers/logger.js';

/** The daemon as `vigil run` composes it, in-process: the API wired to its queue, server and history. */
describe('startDaemon', () => {
  let dir: string;
  let target: NetServer;
  let targetPort: number;
  let daemon: Daemon | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-daemon-'));
    target = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as AddressInfo).port;
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await new Promise<void>((resolve) => target.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  async function start(checks: string, server = ''): Promise<Daemon> {
    const file = join(dir, 'vigil.yaml');
    await writeFile(file, `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, 'data'))}, apiToken: "\${TOKEN}"${server} }\ndefaults: { maxAttempts: 1 }\nchecks:\n${checks}`);
    daemon = await startDaemon({ configFile: file, logger: silentLogger(), env: { TOKEN: 'secret-token-for-tests' } });
    return daemon;
  }

  const auth = { authorization: 'Bearer secret-token-for-tests', 'content-type': 'application/json' };
  const bearer = { authorization: auth.authorization };

  it('creates a check through the API, runs it, shows its results, and deletes it', async () => {
    const { url } = await start('  []\n');
    const created = await fetch(`${url}/api/v1/checks/api-made`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ command: 'tcp', interval: '1h', attributes: { host: '127.0.0.1', port: targetPort } }),
    });
    expect(created.status).toBe(201);
    expect((await fetch(`${url}/api/v1/checks/api-made/run`, { method: 'POST', headers: bearer })).status).toBe(202);
    const results = await vi.waitFor(async () => {
      const body = (await (await fetch(`${url}/api/v1/checks/api-made/results`)).json()) as { results: { state: string }[] };
      if (body.results.length === 0) throw new Error('no result yet');
      return body.results;
    });
    expect(results[0]?.state).toBe('ok');
    const exec = await fetch(`${url}/api/v1/checks/sneaky`, { method: 'PUT', headers: auth, body: JSON.stringify({ command: 'exec', attributes: { argv: ['/bin/true'] } }) });
    expect(exec.status).toBe(403);
    expect((await fetch(`${url}/api/v1/checks/api-made`, { method: 'DELETE', headers: bearer })).status).toBe(204);
    expect((await fetch(`${url}/api/v1/checks/api-made`)).status).toBe(404);
  });

  it('acknowledges an incident opened by a failing check', async () => {
    const { url } = await start(`  - { id: down, command: tcp, interval: 1h, attributes: { host: 127.0.0.1, port: 1 } }\n`);
    await fetch(`${url}/api/v1/checks/down/run`, { method: 'POST', headers: bearer });
    const [incident] = await vi.waitFor(async () => {
      const { incidents } = (await (await fetch(`${url}/api/v1/incidents?state=open`)).json()) as { incidents: { id: string; checkId: string }[] };
      if (incidents.length === 0) throw new Error('no incident yet');
      return incidents;
    });
    expect(incident?.checkId).toBe('down');
    const acked = await fetch(`${url}/api/v1/incidents/${encodeURIComponent(incident!.id)}/ack`, { method: 'POST', headers: bearer });
    expect(acked.status).toBe(200);
    const body = (await acked.json()) as { id: string; acknowledgedAt: string | null };
    expect(body.id).toBe(incident!.id);
    expect(Date.parse(body.acknowledgedAt ?? '')).toBeGreaterThan(0);
  });

  it('lets a config reload win over an API change of the same id', async () => {
    const running = await start(`  - { id: shared, command: tcp, interval: 1h, attributes: { host: 127.0.0.1, port: ${targetPort} } }\n`);
    expect((await fetch(`${running.url}/api/v1/checks/shared`, { method: 'DELETE', headers: bearer })).status).toBe(204);
    await fetch(`${running.url}/api/v1/checks/from-api`, { method: 'PUT', headers: auth, body: JSON.stringify({ command: 'tcp', attributes: { host: '127.0.0.1', port: targetPort } }) });
    await writeFile(
      join(dir, 'vigil.yaml'),
      `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, 'data'))}, apiToken: "\${TOKEN}" }\nchecks:\n  - { id: shared, command: tcp, interval: 30m, attributes: { host: 127.0.0.1, port: ${targetPort} } }\n  - { id: from-api, command: tcp, interval: 30m, attributes: { host: 127.0.0.1, port: ${targetPort} } }\n`,
    );
    expect(await running.reload()).toMatchObject({ ok: true, changed: 1, added: 1 });
    expect(running.queue.get('shared')?.spec.intervalMs).toBe(1_800_000);
    expect(running.queue.get('from-api')?.spec.intervalMs).toBe(1_800_000);
  });

  it('takes pushed heartbeats on /ping/:token through the same state machine', async () => {
    const token = 'nightly-backup-token-0123';
    const { url } = await start(`  - { id: backup, command: push, interval: 1h, attributes: { token: ${token}, period: 1d, grace: 1h } }\n`);
    const failed = await fetch(`${url}/ping/${token}/fail`, { method: 'POST', body: 'disk full' });
    expect(failed.status).toBe(200);
    const open = (await (await fetch(`${url}/api/v1/incidents?state=open`)).json()) as { incidents: { checkId: string; reason: string }[] };
    expect(open.incidents).toMatchObject([{ checkId: 'backup', reason: 'failed' }]);
    expect((await fetch(`${url}/ping/${token}`)).status).toBe(200);
    const after = (await (await fetch(`${url}/api/v1/incidents?state=open`)).json()) as { incidents: unknown[] };
    expect(after.incidents).toEqual([]);
    expect((await fetch(`${url}/ping/not-a-known-token-at-all`)).status).toBe(404);
  });

  it('registers a push check through the API and shows the ping URL its job uses', async () => {
    const { url } = await start('  []\n');
    const created = await fetch(`${url}/api/v1/checks/cron-job`, { method: 'PUT', headers: auth, body: JSON.stringify({ command: 'push', attributes: { period: '1h' } }) });
    expect(created.status).toBe(201);
    const { pingUrl } = (await created.json()) as { pingUrl?: string };
    expect(pingUrl).toMatch(new RegExp(`^${url}/ping/[A-Za-z0-9_-]{16,}$`));
    expect((await fetch(pingUrl!, { method: 'POST', body: 'done' })).status).toBe(200);
    const shown = (await (await fetch(`${url}/api/v1/checks/cron-job`)).json()) as { pingUrl: string; lastResult: { reason: string; message: string } };
    expect(shown.pingUrl).toBe(pingUrl);
    expect(shown.lastResult).toMatchObject({ reason: 'ping', message: 'done' });
  });
});
