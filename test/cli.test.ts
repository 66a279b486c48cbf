import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultPingEngine } from '../src/commands/ping/ping-engine-choice.js';
import { migrate } from '../src/postgres/migrations.js';
import { DaemonProcess, runCli } from './helpers/cli.js';
import { testDatabase } from './helpers/postgres.js';
import { freePort as closedPort } from './helpers/processes.js';

let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-cli-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

/** A TCP server on 127.0.0.1 that greets with `banner`, or stays silent; reports each connection. */
async function tcpServer(banner: string | null, onConnection?: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (banner !== null) socket.end(banner);
    onConnection?.(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

async function writeConfig(body: string, name = 'vigil.yaml'): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, 'data'))}, stopTimeout: 1s }\n${body}`);
  return file;
}

function startDaemon(file: string): DaemonProcess {
  const daemon = new DaemonProcess(['-c', file, '--log-level', 'debug']);
  cleanups.push(() => daemon.kill());
  return daemon;
}

describe('vigil validate', () => {
  it('accepts a valid config', async () => {
    const file = await writeConfig('checks:\n  - { id: a, command: tcp, attributes: { host: 127.0.0.1, port: 80 } }\n');
    const result = await runCli(['validate', '-c', file]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('valid, 1 checks');
  });

  it('lists every problem with its path and exits 1', async () => {
    const file = await writeConfig(
      [
        'checks:',
        '  - { id: a, command: tcp, attributes: { host: 127.0.0.1, port: http } }',
        '  - { id: a, command: tcp, interval: soon, attributes: { host: 127.0.0.1, port: 1 } }',
        '  - { id: b, command: nope }',
      ].join('\n'),
    );
    const result = await runCli(['validate', '-c', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('checks[0].attributes.port: expected an integer 1–65535, got "http"');
    expect(result.stderr).toMatch(/checks\[1\]\.id: duplicate id "a"/);
    expect(result.stderr).toMatch(/checks\[1\]\.interval: expected a duration/);
    expect(result.stderr).toMatch(/checks\[2\]\.command: .*"nope".*tcp/);
  });

  it('validates the example config that ships with vigil', async () => {
    const result = await runCli(['validate', '-c', 'config/vigil.yaml']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('prints help and refuses unknown commands', async () => {
    const help = await runCli(['once', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('vigil once CHECK_ID');
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });
});

describe('vigil once', () => {
  it('prints an ok result and exits 0', async () => {
    const port = await tcpServer('SSH-2.0-test\r\n');
    const file = await writeConfig(`checks:\n  - { id: ssh, command: tcp, attributes: { host: 127.0.0.1, port: ${port}, expect: SSH- } }\n`);
    const result = await runCli(['once', 'ssh', '-c', file]);
    expect(result.stdout).toMatch(/^ssh OK ok: .* \| connect_time=[\d.]+ms\n$/);
    expect(result.code).toBe(0);
  });

  it('exits 2 for crit and prints JSON with --json', async () => {
    const port = await closedPort();
    const file = await writeConfig(`checks:\n  - { id: down, command: tcp, attributes: { host: 127.0.0.1, port: ${port} } }\n`);
    const result = await runCli(['once', 'down', '-c', file, '--json']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ check: 'down', state: 'crit', reason: 'refused' });
  });

  it('exits 3 for an unknown check id, naming the known ones', async () => {
    const file = await writeConfig('checks:\n  - { id: a, command: tcp, attributes: { host: 127.0.0.1, port: 1 } }\n');
    const result = await runCli(['once', 'b', '-c', file]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('no check "b"');
    expect(result.stderr).toContain('known: a');
  });
});

describe('vigil beat', () => {
  it('beats while the command runs, removes the file on a clean exit, and keeps it on a crash', async () => {
    const file = join(dir, 'beats', 'worker.json');
    // The command exits once it has seen two beats written by its supervisor.
    const script = `const fs=require('fs');const t=setInterval(()=>{try{const b=JSON.parse(fs.readFileSync(${JSON.stringify(file)},'utf8'));if(b.beat>=2){clearInterval(t);process.exit(Number(process.argv[1]))}}catch{}},20);setTimeout(()=>process.exit(9),20000)`;
    const clean = await runCli(['beat', '--file', file, '--every', '50ms', '--', process.execPath, '-e', script, '0']);
    expect(clean.stderr).toBe('');
    expect(clean.code).toBe(0);
    await expect(readFile(file, 'utf8')).rejects.toThrow(/ENOENT/);

    const crash = await runCli(['beat', '--file', file, '--every', '50ms', '--', process.execPath, '-e', script, '3']);
    expect(crash.code).toBe(3);
    const left = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(left.beat).toBeGreaterThanOrEqual(2);
    expect(typeof left.timestamp).toBe('number');
  });

  it('beats into a database row with --database, read back by a heartbeat-table check', async () => {
    const database = await testDatabase('cli-beat');
    cleanups.push(() => database.drop());
    await migrate(database.pool, { schema: database.schema });
    const script = `setTimeout(() => process.exit(3), 600)`;
    const crashed = await runCli(['beat', '--database', database.url, '--schema', database.schema, '--id', 'worker-1', '--every', '100ms', '--', process.execPath, '-e', script]);
    expect(crashed.stderr).toBe('');
    expect(crashed.code).toBe(3);
    // The crash left the row: a heartbeat-table check finds it, fresh.
    const file = await writeConfig(`checks:\n  - { id: worker, command: heartbeat-table, attributes: { url: "${database.url}", schema: ${database.schema}, id: worker-1, critAfter: 1m } }\n`);
    const seen = await runCli(['once', 'worker', '-c', file]);
    expect(seen.stdout).toMatch(/^worker OK /);
    expect(seen.code).toBe(0);
    const usage = await runCli(['beat', '--database', database.url]);
    expect(usage.code).toBe(64);
    expect(usage.stderr).toContain('expected --id NAME with --database');
  });

  it('exits 127 when the command does not exist, and 64 without --file', async () => {
    const missing = await runCli(['beat', '--file', join(dir, 'x.json'), '--', join(dir, 'no-such-program')]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('cannot start');
    const usage = await runCli(['beat', '--every', '1s']);
    expect(usage.code).toBe(64);
    expect(usage.stderr).toContain('expected --file FILE');
  });
});

describe('vigil run', () => {
  it('serves /metrics and /healthz, and stops gracefully on SIGTERM with a check in flight', async () => {
    let inFlight!: () => void;
    const connected = new Promise<void>((resolve) => (inFlight = resolve));
    const silent = await tcpServer(null, () => inFlight());
    const file = await writeConfig(
      `checks:\n  - { id: silent, command: tcp, interval: once, timeout: 30s, attributes: { host: 127.0.0.1, port: ${silent}, expect: hello } }\n`,
    );
    const daemon = startDaemon(file);
    const started = await daemon.waitForMessage('vigil started');
    const url = started.url as string;
    const health = (await (await fetch(`${url}/healthz`)).json()) as Record<string, unknown>;
    // The daemon runs with this test's PATH, so it finds (or misses) fping as this process does.
    expect(health).toMatchObject({ status: 'ok', epoch: 1, checks: 1, pingEngine: defaultPingEngine().name });
    expect(typeof health.instanceId).toBe('string');
    await connected;
    daemon.child.kill('SIGTERM');
    await daemon.waitForMessage('stopping: waiting for running checks', { running: 1 });
    await daemon.waitForMessage('stopping: aborting checks still running');
    expect(await daemon.exited).toBe(0);
    // The aborted run left no result; the state file was written on stop.
    const state = JSON.parse(await readFile(join(dir, 'data', 'state.json'), 'utf8')) as { checks: Record<string, { state: { lastResult: unknown } }> };
    expect(state.checks.silent?.state.lastResult).toBeNull();
  });

  it('polls checks and shows them on /metrics', async () => {
    const port = await tcpServer('hi');
    const file = await writeConfig(`checks:\n  - { id: up, command: tcp, interval: 1s, attributes: { host: 127.0.0.1, port: ${port} } }\n`);
    const daemon = startDaemon(file);
    const { url } = await daemon.waitForMessage('vigil started');
    await daemon.waitFor((line) => line.checkId === 'up' && line.state === 'ok');
    const metrics = await (await fetch(`${url as string}/metrics`)).text();
    expect(metrics).toMatch(/vigil_check_up\{check="up"\} 1/);
    expect(metrics).toMatch(/vigil_check_runs_total\{check="up",command="tcp",state="ok"\} [1-9]/);
    expect(metrics).toContain('process_cpu_user_seconds_total');
    daemon.child.kill('SIGINT');
    expect(await daemon.exited).toBe(0);
  });

  it('reloads the config on SIGHUP by diff, and rejects an invalid one while running on', async () => {
    const port = await tcpServer('hi');
    const check = (id: string): string => `  - { id: ${id}, command: tcp, interval: 1s, attributes: { host: 127.0.0.1, port: ${port} } }\n`;
    const file = await writeConfig(`checks:\n${check('keep')}${check('old')}`);
    const daemon = startDaemon(file);
    const { url } = await daemon.waitForMessage('vigil started');
    await daemon.waitFor((line) => line.checkId === 'old' && line.state === 'ok');

    await writeConfig(`checks:\n${check('keep')}${check('new')}`);
    daemon.child.kill('SIGHUP');
    const reloaded = await daemon.waitForMessage('config reloaded');
    expect(reloaded).toMatchObject({ added: 1, removed: 1, changed: 0, unchanged: 1 });
    await daemon.waitFor((line) => line.checkId === 'new' && line.state === 'ok');
    const metrics = await (await fetch(`${url as string}/metrics`)).text();
    expect(metrics).not.toContain('check="old"');
    expect(metrics).toContain('check="new"');

    await writeConfig(`checks:\n  - { id: broken, command: tcp, attributes: { port: 0 } }\n`);
    daemon.child.kill('SIGHUP');
    const rejected = await daemon.waitFor((line) => typeof line.msg === 'string' && line.msg.startsWith('config reload rejected'));
    expect(rejected.msg).toContain('checks[0].attributes.port');
    const health = (await (await fetch(`${url as string}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', checks: 2 });
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
  });

  it('restores state across a restart: an open incident is neither forgotten nor alerted again', async () => {
    const port = await closedPort();
    const file = await writeConfig(
      `defaults: { maxAttempts: 1 }\nchecks:\n  - { id: down, command: tcp, interval: 1s, attributes: { host: 127.0.0.1, port: ${port} } }\n`,
    );
    const first = startDaemon(file);
    const opened = await first.waitFor((line) => line.checkId === 'down' && line.incidentEvent === 'open');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = startDaemon(file);
    const { url } = await second.waitForMessage('vigil started', { restored: 1 });
    // Two more crit runs after the restart: still the same incident, and no new `open`.
    await second.waitFor((line) => line.checkId === 'down' && line.state === 'crit');
    const runs = second.lines.length;
    await second.waitFor((line) => line.checkId === 'down' && line.state === 'crit' && second.lines.indexOf(line) >= runs);
    expect(second.lines.filter((line) => line.incidentEvent === 'open')).toHaveLength(0);
    const health = (await (await fetch(`${url as string}/healthz`)).json()) as Record<string, unknown>;
    expect(health.epoch).toBe(2);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    const state = JSON.parse(await readFile(join(dir, 'data', 'state.json'), 'utf8')) as { checks: Record<string, { state: { incident: { id: string } } }> };
    expect(state.checks.down?.state.incident.id).toBe(opened.incident);
  });

  it('exits 1 with the problems when the config is invalid', async () => {
    const file = await writeConfig('checks:\n  - { id: a, command: tcp, attributes: { host: 127.0.0.1, port: 99999 } }\n');
    const daemon = startDaemon(file);
    expect(await daemon.exited).toBe(1);
    expect(JSON.stringify(daemon.lines)).toContain('checks[0].attributes.port');
  });
});
