import { mkdir, mkdtemp, readFile, rm, symlink, writeFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, DaemonProcess, runCli } from './helpers/cli.js';
import { freePort } from './helpers/processes.js';

let dir: string;
const daemons: DaemonProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-ops-'));
});
afterEach(async () => {
  for (const daemon of daemons.splice(0)) daemon.kill();
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(server: string): Promise<string> {
  const file = join(dir, 'vigil.yaml');
  await writeFile(file, `server: { host: 127.0.0.1, dataDir: ${JSON.stringify(join(dir, 'data'))}, stopTimeout: 1s, ${server} }\nchecks: []\n`);
  return file;
}

function start(args: string[], cli?: string): DaemonProcess {
  const daemon = new DaemonProcess(args, cli === undefined ? {} : { cli });
  daemons.push(daemon);
  return daemon;
}

describe('vigil run --pidfile', () => {
  it('writes the pid, refuses a second vigil on the same pidfile, and removes it on a graceful stop', async () => {
    const file = await writeConfig('port: 0');
    const pidfile = join(dir, 'run', 'vigil.pid');
    const daemon = start(['-c', file, '--pidfile', pidfile]);
    await daemon.waitForMessage('vigil started');
    expect((await readFile(pidfile, 'utf8')).trim()).toBe(String(daemon.child.pid));

    const second = start(['-c', file, '--pidfile', pidfile]);
    expect(await second.exited).toBe(1);
    expect(JSON.stringify(second.lines)).toContain(`vigil is already running with pid ${daemon.child.pid}`);

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(existsSync(pidfile)).toBe(false);
  });

  it('takes over a stale pidfile whose process is gone', async () => {
    const file = await writeConfig('port: 0');
    const pidfile = join(dir, 'vigil.pid');
    // pid 2^22 + 1 is above Linux's pid_max ceiling: no process can have it.
    await writeFile(pidfile, `${2 ** 22 + 1}\n`);
    const daemon = start(['-c', file, '--pidfile', pidfile]);
    await daemon.waitForMessage('vigil started');
    expect((await readFile(pidfile, 'utf8')).trim()).toBe(String(daemon.child.pid));
  });
});

describe('vigil status', () => {
  it('exits 0 with the health of a running vigil and 3 once it is gone', async () => {
    const port = await freePort();
    const file = await writeConfig(`port: ${port}`);
    const daemon = start(['-c', file]);
    const started = await daemon.waitForMessage('vigil started');
    const running = await runCli(['status', '-c', file]);
    expect(running.code).toBe(0);
    expect(running.stdout).toContain(`vigil ok at http://127.0.0.1:${port}/healthz: instance ${started.instanceId as string} epoch 1`);
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    const stopped = await runCli(['status', '-c', file]);
    expect(stopped.code).toBe(3);
    expect(stopped.stdout).toContain('vigil is not running');
  });

  it('exits 4 when the config has no fixed port', async () => {
    const result = await runCli(['status', '-c', await writeConfig('port: 0')]);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('server.port 0');
  });
});

describe('server.exitOnPathChange', () => {
  it('stops with exit code 75 when the install directory link is switched to another release', async () => {
    // releases/a and releases/b are real directories whose dist/ is this build; `current` links to a.
    const repo = dirname(dirname(CLI));
    for (const release of ['a', 'b']) {
      await mkdir(join(dir, 'releases', release), { recursive: true });
      await symlink(join(repo, 'dist'), join(dir, 'releases', release, 'dist'));
    }
    await symlink(join(dir, 'releases', 'a'), join(dir, 'current'));
    const file = await writeConfig('port: 0, exitOnPathChange: true, pathCheckInterval: 100ms');
    const daemon = start(['-c', file], join(dir, 'current', 'dist', 'cli.js'));
    await daemon.waitForMessage('vigil started');
    // Switch the link atomically, as a deploy does.
    await symlink(join(dir, 'releases', 'b'), join(dir, 'next'));
    await rename(join(dir, 'next'), join(dir, 'current'));
    const changed = await daemon.waitForMessage('install directory changed: stopping so the supervisor starts the new release');
    expect(changed).toMatchObject({ from: join(dir, 'releases', 'a'), to: join(dir, 'releases', 'b'), exitCode: 75 });
    expect(await daemon.exited).toBe(75);
  });
});
