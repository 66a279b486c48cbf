import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { HEARTBEAT_FUTURE_SKEW_MS, heartbeatFileCommand, MAX_HEARTBEAT_BYTES, type HeartbeatFileAttributes } from '../../../src/commands/heartbeat/heartbeat-file.js';
import { parseHeartbeat } from '../../../src/heartbeats/heartbeat-file-format.js';
import { startHeartbeatFile } from '../../../src/heartbeats/heartbeat-writer.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { clockWith } from '../../../src/core/clock.js';

/** The time the command sees: a fixed instant, so ages are exact. */
const NOW = Date.parse('2024-06-10T12:00:00.000Z');
const command = heartbeatFileCommand({ clock: clockWith(() => NOW) });
const logger = silentLogger();

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-heartbeat-file-'));
  file = join(dir, 'worker.json');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ctx(signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 'hb', signal, deadline: Date.now() + 5000, logger, previous: null };
}

function parse(raw: unknown): HeartbeatFileAttributes {
  const parsed = command.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return command.run(parse({ file, ...raw }), ctx(signal));
}

/** Writes a heartbeat whose timestamp is `ageMs` before NOW, in epoch seconds. */
async function beatAged(ageMs: number, extra: Record<string, unknown> = { uptime: 3600.5, memoryUsage: 73_400_320, pid: 4242, beat: 720 }): Promise<void> {
  await writeFile(file, JSON.stringify({ timestamp: (NOW - ageMs) / 1000, ...extra }));
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
}

const thresholds = { warnAfter: '10s', critAfter: '30s' };

describe('heartbeat-file command: ages', () => {
  it('is ok for a fresh heartbeat, with age, uptime, memory and beat metrics', async () => {
    await beatAged(2_500);
    const outcome = await run(thresholds);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: `heartbeat ${file} is 2.5 s old (pid 4242, beat 720)` });
    expect(outcome.metrics).toEqual([
      { name: 'age', value: 2.5, unit: 's', kind: 'gauge', warn: 10, crit: 30 },
      { name: 'uptime', value: 3600.5, unit: 's', kind: 'gauge' },
      { name: 'memory_usage', value: 73_400_320, unit: 'B', kind: 'gauge' },
      { name: 'beat', value: 720, unit: 'c', kind: 'counter' },
    ]);
  });

  it('is warn (heartbeat-late) at the warning threshold and crit (heart-attack) at the critical one', async () => {
    await beatAged(9_999);
    expect((await run(thresholds)).state).toBe('ok');

    await beatAged(10_000);
    const late = await run(thresholds);
    expect(late).toMatchObject({ state: 'warn', reason: 'heartbeat-late' });
    expect(late.message).toBe(`heartbeat ${file} is 10 s old (pid 4242, beat 720), at or above the warning threshold of 10 s`);

    await beatAged(45_250);
    const dead = await run(thresholds);
    expect(dead).toMatchObject({ state: 'crit', reason: 'heart-attack' });
    expect(dead.message).toBe(`heartbeat ${file} is 45.25 s old (pid 4242, beat 720), at or above the critical threshold of 30 s`);
    expect(metric(dead, 'age')).toMatchObject({ value: 45.25, warn: 10, crit: 30 });
  });

  it('has no warning without warnAfter, and no age thresholds but crit on the metric', async () => {
    await beatAged(29_000);
    const outcome = await run({ critAfter: '30s' });
    expect(outcome.state).toBe('ok');
    expect(metric(outcome, 'age')).toEqual({ name: 'age', value: 29, unit: 's', kind: 'gauge', crit: 30 });
  });

  it('reads an ISO-8601 timestamp with a zone', async () => {
    await writeFile(file, JSON.stringify({ timestamp: new Date(NOW - 12_000).toISOString() }));
    expect(await run(thresholds)).toMatchObject({ state: 'warn', message: `heartbeat ${file} is 12 s old, at or above the warning threshold of 10 s` });
    await writeFile(file, JSON.stringify({ timestamp: '2024-06-10T13:59:58+02:00' }));
    const outcome = await run(thresholds);
    expect(outcome).toMatchObject({ state: 'ok', message: `heartbeat ${file} is 2 s old` });
    // Only the fields present give metrics.
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['age']);
  });

  it('reads an epoch-seconds timestamp with fractions, and an integer one', async () => {
    await writeFile(file, `{"timestamp": ${(NOW - 1_234) / 1000}, "beat": 3}\n`);
    expect(metric(await run(thresholds), 'age')?.value).toBe(1.234);
    await writeFile(file, `{"timestamp": ${NOW / 1000 - 31}}`);
    expect((await run(thresholds)).state).toBe('crit');
  });

  it('reads a heartbeat slightly from the future as age 0, and one beyond the skew as bad-heartbeat', async () => {
    await beatAged(-HEARTBEAT_FUTURE_SKEW_MS);
    const skewed = await run(thresholds);
    expect(skewed.state).toBe('ok');
    expect(metric(skewed, 'age')?.value).toBe(0);

    await beatAged(-60_000);
    expect(await run(thresholds)).toEqual({
      state: 'unknown',
      reason: 'bad-heartbeat',
      message: `bad heartbeat file ${file}: dated 60 s in the future, more than the 5 s allowed for clock skew`,
    });
  });

  it('reads the file the writer writes', async () => {
    const heartbeat = startHeartbeatFile({ file, intervalMs: 60_000, clock: clockWith(() => NOW - 3_000) });
    await heartbeat.beat();
    await heartbeat.stop();
    const outcome = await run(thresholds);
    expect(outcome).toMatchObject({ state: 'ok', message: `heartbeat ${file} is 3 s old (pid ${process.pid}, beat ${heartbeat.beats})` });
    expect(metric(outcome, 'memory_usage')?.value).toBeGreaterThan(0);
    expect(metric(outcome, 'uptime')?.value).toBeGreaterThan(0);
  });
});

describe('heartbeat-file command: missing and unreadable files', () => {
  it('reports a missing file as a heart attack by default', async () => {
    expect(await run(thresholds)).toEqual({ state: 'crit', reason: 'heart-attack', message: `heartbeat file ${file} is missing` });
  });

  it('reports a missing file in the state `missing` says', async () => {
    expect(await run({ ...thresholds, missing: 'warn' })).toEqual({ state: 'warn', reason: 'heart-attack', message: `heartbeat file ${file} is missing (treated as warn)` });
    expect(await run({ ...thresholds, missing: 'unknown' })).toMatchObject({ state: 'unknown', reason: 'heart-attack' });
    expect(await run({ ...thresholds, missing: 'ok' })).toEqual({ state: 'ok', reason: 'no-heartbeat', message: `heartbeat file ${file} is missing (treated as ok)` });
  });

  it('treats a missing directory on the path as a missing file', async () => {
    const outcome = await command.run(parse({ file: join(dir, 'nowhere', 'worker.json'), critAfter: '30s' }), ctx());
    expect(outcome).toMatchObject({ state: 'crit', reason: 'heart-attack' });
  });

  it('reports a directory in place of the file as unreadable', async () => {
    await mkdir(file);
    const outcome = await run(thresholds);
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'unreadable' });
    expect(outcome.message).toContain(`cannot read heartbeat file ${file}: EISDIR`);
  });

  it('reports a file it may not read as unreadable', async () => {
    await beatAged(1_000);
    await chmod(file, 0o000);
    // root reads anything: then the file is simply read.
    const expected = process.getuid?.() === 0 ? { state: 'ok' } : { state: 'unknown', reason: 'unreadable' };
    expect(await run(thresholds)).toMatchObject(expected);
  });

  it('does not read when the signal is already aborted', async () => {
    await beatAged(1_000);
    expect(await run(thresholds, AbortSignal.abort())).toEqual({ state: 'unknown', reason: 'timeout', message: `timed out before reading heartbeat file ${file}` });
  });
});

describe('heartbeat-file command: malformed heartbeats', () => {
  const cases: [string, string, string][] = [
    ['an empty file', '', 'the file is empty'],
    ['bad JSON', '{"timestamp": 1718020800,', 'not valid JSON ('],
    ['a JSON array', '[1718020800]', 'expected a JSON object with a timestamp, got an array'],
    ['no timestamp', '{"pid": 12}', 'expected `timestamp` in epoch seconds or as an ISO-8601 string with a time zone, got nothing'],
    ['a timestamp of the wrong type', '{"timestamp": true}', 'got true'],
    ['a timestamp in milliseconds', `{"timestamp": ${NOW}}`, `got ${NOW} (epoch milliseconds? write seconds)`],
    ['an ISO timestamp without a zone', '{"timestamp": "2024-06-10T12:00:00"}', 'got "2024-06-10T12:00:00"'],
    ['a string that is no date', '{"timestamp": "yesterday"}', 'got "yesterday"'],
    ['a negative timestamp', '{"timestamp": -5}', 'got -5'],
    ['uptime as a string', `{"timestamp": ${NOW / 1000}, "uptime": "1h"}`, 'expected `uptime` to be a number of seconds ≥ 0, got "1h"'],
    ['a negative memoryUsage', `{"timestamp": ${NOW / 1000}, "memoryUsage": -1}`, 'expected `memoryUsage` to be a number of bytes ≥ 0, got -1'],
    ['a fractional pid', `{"timestamp": ${NOW / 1000}, "pid": 1.5}`, 'expected `pid` to be a positive integer, got 1.5'],
    ['beat as an object', `{"timestamp": ${NOW / 1000}, "beat": {}}`, 'expected `beat` to be an integer ≥ 0, got an object'],
  ];

  it.each(cases)('reports %s as bad-heartbeat, saying what was wrong', async (_what, text, problem) => {
    await writeFile(file, text);
    const outcome = await run(thresholds);
    expect(outcome.state).toBe('unknown');
    expect(outcome.reason).toBe('bad-heartbeat');
    expect(outcome.message.startsWith(`bad heartbeat file ${file}: `)).toBe(true);
    expect(outcome.message).toContain(problem);
    expect(outcome.message).not.toContain('\n');
  });

  it('reports a file of 8 KiB or more as bad-heartbeat without parsing it', async () => {
    await writeFile(file, `{"timestamp": ${NOW / 1000}, "pad": "${'x'.repeat(MAX_HEARTBEAT_BYTES)}"}`);
    expect(await run(thresholds)).toEqual({
      state: 'unknown',
      reason: 'bad-heartbeat',
      message: `bad heartbeat file ${file}: ${MAX_HEARTBEAT_BYTES} bytes or larger, not a heartbeat`,
    });
    // Just under the limit is read in full; the extra key is ignored.
    const text = `{"timestamp": ${NOW / 1000}, "pad": "`;
    await writeFile(file, `${text}${'x'.repeat(MAX_HEARTBEAT_BYTES - text.length - 3)}"}`);
    expect((await run(thresholds)).state).toBe('ok');
  });

  it('keeps answering correctly when many runs share its read buffers', async () => {
    const other = join(dir, 'other.json');
    await beatAged(1_000);
    await writeFile(other, JSON.stringify({ timestamp: (NOW - 40_000) / 1000, beat: 9 }));
    const a = parse({ file, ...thresholds });
    const b = parse({ file: other, ...thresholds });
    const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) => command.run(i % 2 === 0 ? a : b, ctx())));
    outcomes.forEach((outcome, i) => expect(outcome.state).toBe(i % 2 === 0 ? 'ok' : 'crit'));
  });
});

describe('heartbeat-file command: atomic writes', () => {
  it('never reads half a heartbeat while the writer replaces the file many times', async () => {
    const heartbeat = startHeartbeatFile({ file, intervalMs: 60_000 });
    await heartbeat.beat();
    const attrs = parse({ file, critAfter: '1h' });
    let writing = true;
    const writer = (async () => {
      try {
        for (let i = 0; i < 300; i++) await heartbeat.beat();
      } finally {
        writing = false;
      }
    })();
    const problems: string[] = [];
    const beatsSeen = new Set<number>();
    let reads = 0;
    // Bounded: stops when the writer is done, or after 20 000 reads whatever happens.
    while (writing && reads < 20_000) {
      const [outcome, text] = await Promise.all([heartbeatFileCommand().run(attrs, ctx()), readFile(file, 'utf8')]);
      reads++;
      if (outcome.state !== 'ok') problems.push(outcome.message);
      const parsed = parseHeartbeat(text);
      if (parsed.ok) beatsSeen.add(parsed.value.beat ?? -1);
      else problems.push(parsed.problem);
    }
    await writer;
    await heartbeat.stop();
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(10);
    // The reads overlapped the writes: they saw the beats change.
    expect(beatsSeen.size).toBeGreaterThan(2);
    expect(heartbeat.beats).toBe(302);
  });
});

describe('heartbeat-file command: attributes', () => {
  it('accepts file, thresholds and missing, with durations in ms and missing defaulting to crit', () => {
    expect(parse({ file: '/var/run/worker.json', warnAfter: '10s', critAfter: '30s' })).toEqual({ file: '/var/run/worker.json', warnAfter: 10_000, critAfter: 30_000, missing: 'crit' });
    expect(parse({ file: 'w.json', critAfter: 1500, missing: 'ok' })).toEqual({ file: 'w.json', critAfter: 1500, missing: 'ok' });
  });

  it('accepts its own parsed attributes as input', () => {
    const parsed = parse({ file: 'w.json', warnAfter: '1m', critAfter: '5m', missing: 'unknown' });
    expect(parse(parsed)).toEqual(parsed);
  });

  it('requires a file and critAfter', () => {
    expect(command.parse({})).toEqual({
      ok: false,
      issues: [
        { path: ['file'], message: 'expected a file path, got nothing' },
        { path: ['critAfter'], message: 'expected a duration like 30s, 5m, 250ms or milliseconds (at least 1ms), got nothing' },
      ],
    });
  });

  it('rejects unknown keys, a bad missing state and thresholds in the wrong order', () => {
    expect(command.parse({ file: 'f', critAfter: '1s', maxAge: '1s' })).toEqual({ ok: false, issues: [{ path: ['maxAge'], message: 'unknown key' }] });
    expect(command.parse({ file: 'f', critAfter: '1s', missing: 'ignore' })).toEqual({
      ok: false,
      issues: [{ path: ['missing'], message: 'expected crit, warn, ok or unknown, got "ignore"' }],
    });
    expect(command.parse({ file: 'f', warnAfter: '1m', critAfter: '30s' })).toEqual({
      ok: false,
      issues: [{ path: ['warnAfter'], message: 'expected a duration no longer than critAfter (30000ms), got "1m"' }],
    });
    expect(command.parse({ file: 'f', critAfter: 0 })).toMatchObject({ ok: false, issues: [{ path: ['critAfter'] }] });
  });

  it('describes its attributes in JSON Schema', () => {
    expect(command.attributesJsonSchema).toMatchObject({ type: 'object', required: ['file', 'critAfter'], additionalProperties: false });
  });
});
