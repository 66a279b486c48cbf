import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseHeartbeat, type HeartbeatRecord } from '../../src/heartbeats/heartbeat-file-format.js';
import { superviseWithHeartbeat } from '../../src/heartbeats/supervise.js';

let dir: string;
let file: string;
let ready: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-supervise-'));
  file = join(dir, 'worker.json');
  ready = join(dir, 'ready');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function read(): Promise<HeartbeatRecord> {
  const parsed = parseHeartbeat(await readFile(file, 'utf8'));
  if (!parsed.ok) throw new Error(parsed.problem);
  return parsed.value;
}

/**
 * A `node -e` command. Its script gets `file` (the heartbeat file) and `ready` (a path to create once
 * it is set up), and `waitForBeat(then)`, which calls `then` once the heartbeat file exists (or exits 9
 * after 10 s), so a test knows the command was beaten for before it ends.
 */
function node(script: string): string[] {
  const prelude = `
    const fs = require('node:fs');
    const [file, ready] = process.argv.slice(1);
    function waitForBeat(then) {
      let tries = 0;
      const timer = setInterval(() => {
        if (fs.existsSync(file)) { clearInterval(timer); then(); }
        else if (++tries > 2000) process.exit(9);
      }, 5);
    }
  `;
  return [process.execPath, '-e', prelude + script, file, ready];
}

describe('superviseWithHeartbeat with a command', () => {
  it('removes the file and resolves 0 when the command exits 0', async () => {
    const code = await superviseWithHeartbeat({ file, intervalMs: 20, argv: node('waitForBeat(() => process.exit(0));') });
    expect(code).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it('leaves the file to go stale and resolves the exit code when the command fails', async () => {
    const code = await superviseWithHeartbeat({ file, intervalMs: 20, argv: node('waitForBeat(() => process.exit(3));') });
    expect(code).toBe(3);
    const beat = await read();
    expect(beat.pid).not.toBe(process.pid);
    expect(beat.beat).toBeGreaterThanOrEqual(1);
  });

  it('resolves 128 + the signal and leaves the file when the command is killed from elsewhere', async () => {
    const code = await superviseWithHeartbeat({ file, intervalMs: 20, argv: node(`waitForBeat(() => process.kill(process.pid, 'SIGKILL'));`) });
    expect(code).toBe(137);
    expect(existsSync(file)).toBe(true);
  });

  it('beats for the command while it runs: its pid, its uptime and its memory', async () => {
    const controller = new AbortController();
    const supervised = superviseWithHeartbeat({ file, intervalMs: 20, argv: node('setInterval(() => {}, 1000);'), signal: controller.signal });
    await vi.waitFor(async () => expect((await read()).beat).toBeGreaterThanOrEqual(3), { timeout: 10_000 });
    const first = await read();
    await vi.waitFor(async () => expect((await read()).beat).toBeGreaterThan(first.beat as number), { timeout: 10_000 });
    const later = await read();
    expect(later.pid).toBe(first.pid);
    expect(later.pid).not.toBe(process.pid);
    expect(later.uptime).toBeGreaterThan(first.uptime as number);
    expect(later.timestampMs).toBeGreaterThanOrEqual(first.timestampMs);
    if (process.platform === 'linux') expect(later.memoryUsage).toBeGreaterThan(1_000_000);

    // Aborting stops the command with SIGTERM: a stop on purpose, so the file goes too.
    controller.abort();
    expect(await supervised).toBe(143);
    expect(existsSync(file)).toBe(false);
  });

  it('passes SIGTERM on to the command; one that then exits 0 is a clean exit', async () => {
    const before = process.listenerCount('SIGTERM');
    const beforeInt = process.listenerCount('SIGINT');
    const supervised = superviseWithHeartbeat({
      file,
      intervalMs: 20,
      argv: node(`process.on('SIGTERM', () => process.exit(0)); fs.writeFileSync(ready, ''); setInterval(() => {}, 1000);`),
    });
    await vi.waitFor(() => expect(existsSync(ready) && existsSync(file)).toBe(true), { timeout: 10_000 });
    expect(process.listenerCount('SIGTERM')).toBe(before + 1);
    process.emit('SIGTERM');
    expect(await supervised).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(process.listenerCount('SIGTERM')).toBe(before);
    expect(process.listenerCount('SIGINT')).toBe(beforeInt);
  });

  it('passes SIGINT on to the command; dying of it is a stop on purpose', async () => {
    const supervised = superviseWithHeartbeat({ file, intervalMs: 20, argv: node(`fs.writeFileSync(ready, ''); setInterval(() => {}, 1000);`) });
    await vi.waitFor(() => expect(existsSync(ready) && existsSync(file)).toBe(true), { timeout: 10_000 });
    process.emit('SIGINT');
    expect(await supervised).toBe(130);
    expect(existsSync(file)).toBe(false);
  });

  it('leaves the file when the command fails some other way after a forwarded signal', async () => {
    const supervised = superviseWithHeartbeat({
      file,
      intervalMs: 20,
      argv: node(`process.on('SIGTERM', () => process.exit(2)); fs.writeFileSync(ready, ''); setInterval(() => {}, 1000);`),
    });
    await vi.waitFor(() => expect(existsSync(ready) && existsSync(file)).toBe(true), { timeout: 10_000 });
    process.emit('SIGTERM');
    expect(await supervised).toBe(2);
    expect(existsSync(file)).toBe(true);
  });

  it('rejects, writing nothing, when the command cannot be started', async () => {
    const before = process.listenerCount('SIGTERM');
    const missing = join(dir, 'no-such-command');
    const failure = superviseWithHeartbeat({ file, intervalMs: 20, argv: [missing, '--flag'] });
    await expect(failure).rejects.toThrow(`cannot start ${JSON.stringify(missing)}: spawn ${missing} ENOENT`);
    await expect(failure).rejects.toMatchObject({ cause: { code: 'ENOENT' } });
    expect(existsSync(file)).toBe(false);
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });
});

describe('superviseWithHeartbeat as a sidecar', () => {
  it('beats for this process until the signal aborts, then removes the file and resolves 0', async () => {
    const before = process.listenerCount('SIGTERM');
    const controller = new AbortController();
    const supervised = superviseWithHeartbeat({ file, intervalMs: 10, signal: controller.signal });
    await vi.waitFor(async () => expect((await read()).beat).toBeGreaterThanOrEqual(3), { timeout: 10_000 });
    expect((await read()).pid).toBe(process.pid);
    controller.abort();
    expect(await supervised).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });

  it('stops on SIGTERM too', async () => {
    const supervised = superviseWithHeartbeat({ file, intervalMs: 10, argv: [] });
    await vi.waitFor(() => expect(existsSync(file)).toBe(true), { timeout: 10_000 });
    process.emit('SIGTERM');
    expect(await supervised).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it('starts nothing when the signal is already aborted or the interval is wrong', async () => {
    await expect(superviseWithHeartbeat({ file, intervalMs: 10, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(superviseWithHeartbeat({ file, intervalMs: -5 })).rejects.toThrow('Expected `intervalMs` to be a positive integer, got `-5`');
    expect(existsSync(file)).toBe(false);
  });
});
