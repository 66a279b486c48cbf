import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DaemonProcess, runCli } from './helpers/cli.js';
import { testDatabase, type TestDatabase } from './helpers/postgres.js';

/** `vigil migrate` and `vigil run` with `queue: { type: postgres }`, as processes, from config files. */
describe('vigil with a PostgreSQL queue', () => {
  let dir: string;
  let database: TestDatabase;
  const daemons: DaemonProcess[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-cli-pg-'));
    database = await testDatabase('cli');
  });
  afterEach(async () => {
    for (const daemon of daemons.splice(0)) {
      daemon.kill('SIGTERM');
      await daemon.exited;
    }
    await database.drop();
    await rm(dir, { recursive: true, force: true });
  });

  async function config(name: string, checks: string, migrate = true): Promise<string> {
    const file = join(dir, `${name}.yaml`);
    await writeFile(
      file,
      [
        `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, name))} }`,
        `queue: { type: postgres, url: "${database.url}", schema: ${database.schema}, migrate: ${String(migrate)}, pollInterval: 200ms, heartbeatInterval: 500ms }`,
        'defaults: { handlers: [log] }',
        `checks:\n${checks}`,
      ].join('\n'),
    );
    return file;
  }

  it('migrates with vigil migrate, then again finds nothing to do', async () => {
    const file = await config('a', '  []', false);
    const first = await runCli(['migrate', '-c', file]);
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(new RegExp(`^applied to schema ${database.schema}: 0001_initial, 0002_heartbeats, 0003_queue_hot_path\\n$`));
    expect(first.code).toBe(0);
    const again = await runCli(['migrate', '-c', file]);
    expect(again.stdout).toBe(`schema ${database.schema} is up to date\n`);
    const memory = join(dir, 'memory.yaml');
    await writeFile(memory, 'checks: []\n');
    const refused = await runCli(['migrate', '-c', memory]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('uses the memory queue');
  });

  it('shares the checks between two instances, each showing the other in /healthz', async () => {
    // A command that always answers: vigil's own HTTP port is not known in advance, a closed one is.
    const checks = Array.from({ length: 12 }, (_, i) => `  - { id: c${i}, command: tcp, interval: 1s, timeout: 500ms, maxAttempts: 5, attributes: { host: 127.0.0.1, port: 1 } }`).join('\n');
    const first = new DaemonProcess(['-c', await config('a', checks)]);
    daemons.push(first);
    const { url } = await first.waitForMessage('vigil started');
    const second = new DaemonProcess(['-c', await config('b', checks)]);
    daemons.push(second);
    await second.waitForMessage('vigil started', { queue: 'postgres' });

    // Every check runs, and both instances take part.
    const ran = (daemon: DaemonProcess) => new Set(daemon.lines.filter((line) => typeof line.checkId === 'string' && line.reason === 'refused').map((line) => line.checkId as string));
    await first.waitFor(() => ran(first).size > 0 && ran(second).size > 0 && new Set([...ran(first), ...ran(second)]).size === 12, 30_000);
    // Peers are read at each heartbeat (500 ms here).
    await vi.waitFor(
      async () => {
        const health = (await (await fetch(`${url as string}/healthz`)).json()) as { peers: { alive: boolean }[] };
        expect(health.peers.filter((peer) => peer.alive)).toHaveLength(2);
      },
      { timeout: 10_000, interval: 200 },
    );
    const metrics = await (await fetch(`${url as string}/metrics`)).text();
    expect(metrics).toContain('vigil_queue_database_up 1');
    expect(metrics).toContain('vigil_queue_dropped_completions_total 0');
  });
});
