import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseHeartbeat, serializeHeartbeat, type HeartbeatRecord } from '../../src/heartbeats/heartbeat-file-format.js';
import { startHeartbeatFile, type Heartbeat } from '../../src/heartbeats/heartbeat-writer.js';
import { clockWith } from '../../src/core/clock.js';

/** The writer as built by the global setup, for a process that imports nothing else. */
const BUILT_WRITER = fileURLToPath(new URL('../../dist/heartbeats/heartbeat-writer.js', import.meta.url));

let dir: string;
let file: string;
const started: Heartbeat[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-heartbeat-writer-'));
  file = join(dir, 'worker.json');
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((heartbeat) => heartbeat.stop()));
  await rm(dir, { recursive: true, force: true });
});

function start(options: Partial<Parameters<typeof startHeartbeatFile>[0]> = {}): Heartbeat {
  const heartbeat = startHeartbeatFile({ file, intervalMs: 60_000, ...options });
  started.push(heartbeat);
  return heartbeat;
}

async function read(path = file): Promise<HeartbeatRecord> {
  const parsed = parseHeartbeat(await readFile(path, 'utf8'));
  if (!parsed.ok) throw new Error(parsed.problem);
  return parsed.value;
}

describe('startHeartbeatFile', () => {
  it('writes a beat at once: timestamp, uptime, rss, pid and beat 1', async () => {
    const now = Date.parse('2024-06-10T12:00:00.250Z');
    const heartbeat = start({ clock: clockWith(() => now) });
    await vi.waitFor(() => expect(heartbeat.beats).toBe(1));
    const beat = await read();
    expect(beat).toMatchObject({ timestampMs: now, pid: process.pid, beat: 1 });
    expect(beat.uptime).toBeGreaterThan(0);
    expect(beat.uptime).toBeLessThanOrEqual(process.uptime());
    expect(beat.memoryUsage).toBeGreaterThan(1_000_000);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ timestamp: 1718020800.25 });
  });

  it('beats every intervalMs, counting up', async () => {
    const heartbeat = start({ intervalMs: 10 });
    await vi.waitFor(async () => expect((await read()).beat).toBeGreaterThanOrEqual(3), { timeout: 5_000 });
    expect(heartbeat.beats).toBeGreaterThanOrEqual(3);
  });

  it('writes a beat on demand, after the one in flight, and leaves no temporary files', async () => {
    const heartbeat = start();
    await Promise.all([heartbeat.beat(), heartbeat.beat(), heartbeat.beat()]);
    expect(heartbeat.beats).toBe(4);
    expect((await read()).beat).toBe(4);
    expect(await readdir(dir)).toEqual(['worker.json']);
  });

  it('creates the directory of the file', async () => {
    const nested = join(dir, 'run', 'vigil', 'worker.json');
    const heartbeat = start({ file: nested });
    await heartbeat.beat();
    expect((await read(nested)).beat).toBe(2);
  });

  it('reports a failed write to onError, never throwing from its timer, and rejects a failed beat()', async () => {
    await writeFile(join(dir, 'plain'), '');
    const errors: unknown[] = [];
    const heartbeat = start({ file: join(dir, 'plain', 'worker.json'), intervalMs: 10, onError: (error) => errors.push(error) });
    await vi.waitFor(() => expect(errors.length).toBeGreaterThanOrEqual(2), { timeout: 5_000 });
    expect((errors[0] as NodeJS.ErrnoException).code).toMatch(/^(ENOTDIR|EEXIST)$/);
    await expect(heartbeat.beat()).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOTDIR|EEXIST)$/) as unknown });
    expect(heartbeat.beats).toBe(0);
  });

  it('stop() leaves the file, stop({ remove: true }) deletes it, and either can come second', async () => {
    const kept = start();
    await kept.beat();
    await kept.stop();
    expect(existsSync(file)).toBe(true);
    await kept.stop({ remove: true });
    expect(existsSync(file)).toBe(false);
    // Removing a file that is already gone is fine.
    await kept.stop({ remove: true });
  });

  it('waits for a beat in flight before removing, so the file does not come back', async () => {
    const heartbeat = start();
    const inFlight = heartbeat.beat();
    await heartbeat.stop({ remove: true });
    await inFlight;
    expect(existsSync(file)).toBe(false);
    await expect(heartbeat.beat()).rejects.toThrow(`the heartbeat ${file} is stopped`);
    expect(existsSync(file)).toBe(false);
  });

  it('stops without removing when disposed', async () => {
    const heartbeat = start();
    await heartbeat.beat();
    await heartbeat[Symbol.asyncDispose]();
    const beats = heartbeat.beats;
    expect(existsSync(file)).toBe(true);
    await expect(heartbeat.beat()).rejects.toThrow('is stopped');
    expect(heartbeat.beats).toBe(beats);
  });

  it('uses the sample it is given', async () => {
    const heartbeat = start({ sample: () => Promise.resolve({ pid: 99, uptime: 12.3456, memoryUsage: undefined }) });
    await heartbeat.beat();
    expect(await read()).toEqual({ timestampMs: expect.any(Number) as unknown, pid: 99, uptime: 12.346, memoryUsage: undefined, beat: 2 });
  });

  it('does not keep a process alive by itself', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `import { startHeartbeatFile } from ${JSON.stringify(BUILT_WRITER)}; startHeartbeatFile({ file: process.argv[1], intervalMs: 1000 });`, file], {
      stdio: 'inherit',
    });
    // Without an unref'd timer this would never exit; the test's timeout bounds the wait.
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect((await read()).beat).toBe(1);
  });

  it('refuses an interval that is not a positive integer', () => {
    expect(() => startHeartbeatFile({ file, intervalMs: 0 })).toThrow(new TypeError('Expected `intervalMs` to be a positive integer, got `0`'));
    expect(() => startHeartbeatFile({ file, intervalMs: 2.5 })).toThrow(TypeError);
    expect(existsSync(file)).toBe(false);
  });
});

describe('heartbeat file format', () => {
  it('round-trips a record through its text, in epoch seconds with millisecond precision', () => {
    const record: HeartbeatRecord = { timestampMs: 1_718_020_800_123, uptime: 5.5, memoryUsage: 1024, pid: 7, beat: 3 };
    const text = serializeHeartbeat(record);
    expect(text).toBe('{"timestamp":1718020800.123,"uptime":5.5,"memoryUsage":1024,"pid":7,"beat":3}\n');
    expect(parseHeartbeat(text)).toEqual({ ok: true, value: record });
  });

  it('reads ISO-8601 timestamps with a zone, and leaves out the fields a file does not have', () => {
    expect(parseHeartbeat('{"timestamp":"2024-06-10T14:00:00.5+02:00"}')).toEqual({
      ok: true,
      value: { timestampMs: Date.parse('2024-06-10T12:00:00.500Z'), uptime: undefined, memoryUsage: undefined, pid: undefined, beat: undefined },
    });
    expect(parseHeartbeat('{"timestamp":"2024-06-10 12:00:00Z"}')).toMatchObject({ ok: true });
    expect(parseHeartbeat('{"timestamp":"2024-06-10T12:00:00+0200"}')).toMatchObject({ ok: true });
    expect(parseHeartbeat('{"timestamp":"2024-06-10"}')).toMatchObject({ ok: false });
  });
});
