import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type CheckSpec } from '../../../src/checks/check.js';
import type { CommandContext } from '../../../src/commands/command.js';
import { heartbeatDirCommand, type HeartbeatDirAttributes } from '../../../src/commands/heartbeat/heartbeat-dir.js';
import { heartbeatFileCommand } from '../../../src/commands/heartbeat/heartbeat-file.js';
import { TrackedMemoryQueue } from '../../../src/queues/tracked-memory-queue.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import type { CheckFinishEvent } from '../../../src/server/events.js';
import { Server } from '../../../src/server/server.js';
import { checkSpec } from '../../helpers/checks.js';
import { silentLogger } from '../../helpers/logger.js';

const logger = silentLogger();
const PARENT = 'workers';

let dir: string;
let pool: TrackedMemoryQueue;
let command: ReturnType<typeof heartbeatDirCommand>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-heartbeat-dir-'));
  pool = new TrackedMemoryQueue();
  command = heartbeatDirCommand();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function parse(raw: Record<string, unknown>): HeartbeatDirAttributes {
  const parsed = command.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

/** Registers the parent check in the pool with these attributes (and spec overrides). */
function addParent(raw: Record<string, unknown> = {}, overrides: Partial<CheckSpec> = {}): HeartbeatDirAttributes {
  const attributes = parse({ dir, warnAfter: '10s', critAfter: '30s', ...raw });
  pool.add(
    checkSpec({
      id: PARENT,
      command: 'heartbeat-dir',
      attributes,
      intervalMs: 5_000,
      timeoutMs: 2_000,
      retryIntervalMs: 1_000,
      maxAttempts: 2,
      recoverAfter: 2,
      handlers: ['log', 'pager'],
      pool: 'ops',
      metadata: { team: 'payments' },
      suppressed: false,
      ...overrides,
    }),
  );
  return attributes;
}

/** `checks: null` leaves the registry out of the context. */
function ctx(checks: TrackedMemoryQueue | null = pool, signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: PARENT, signal, deadline: Date.now() + 5000, logger, previous: null, ...(checks ? { checks } : {}) };
}

function runParent(attributes: HeartbeatDirAttributes = pool.get(PARENT)?.spec.attributes as HeartbeatDirAttributes): Promise<CommandOutcome> {
  return command.run(attributes, ctx());
}

async function beat(name: string, ageMs = 0): Promise<void> {
  await writeFile(join(dir, name), JSON.stringify({ timestamp: (Date.now() - ageMs) / 1000 }));
}

function children(): string[] {
  return pool
    .list()
    .filter((check) => check.spec.metadata.heartbeatDir === PARENT)
    .map((check) => check.spec.id)
    .sort();
}

function metricValues(outcome: CommandOutcome): Record<string, number> {
  return Object.fromEntries((outcome.metrics ?? []).map((m) => [m.name, m.value]));
}

function markHardCrit(id: string): void {
  expect(pool.setState(id, { ...initialCheckState, hardState: 'crit', stateType: 'hard' })).toBe(true);
}

describe('heartbeat-dir command: attaching and detaching', () => {
  it('attaches a heartbeat-file check for each matching file, with the parent schedule and handlers', async () => {
    addParent();
    await beat('api.json');
    await beat('mailer.json');
    await writeFile(join(dir, 'notes.txt'), 'not a heartbeat');
    await beat('.api.json.4242.1.tmp');
    await beat('.hidden.json');
    await mkdir(join(dir, 'archive.json'));

    const outcome = await runParent();
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: `2 heartbeats attached from ${dir} (2 attached, 0 detached this run)` });
    expect(metricValues(outcome)).toEqual({ attached: 2, attached_total: 2, detached_total: 0 });
    expect(outcome.metrics?.find((m) => m.name === 'attached_total')?.kind).toBe('counter');
    expect(children()).toEqual(['workers/api', 'workers/mailer']);

    expect(pool.get('workers/api')?.spec).toEqual({
      id: 'workers/api',
      command: 'heartbeat-file',
      attributes: { file: join(dir, 'api.json'), warnAfter: 10_000, critAfter: 30_000, missing: 'ok' },
      intervalMs: 5_000,
      timeoutMs: 2_000,
      retryIntervalMs: 1_000,
      maxAttempts: 2,
      recoverAfter: 2,
      handlers: ['log', 'pager'],
      pool: 'ops',
      metadata: { team: 'payments', heartbeatDir: PARENT },
      suppressed: false,
    });
  });

  it('gives children attributes that heartbeat-file accepts as they are', async () => {
    addParent({ warnAfter: undefined });
    await beat('api.json');
    await runParent();
    const attributes = pool.get('workers/api')?.spec.attributes;
    expect(attributes).toEqual({ file: join(dir, 'api.json'), critAfter: 30_000, missing: 'ok' });
    expect(heartbeatFileCommand().parse(attributes)).toEqual({ ok: true, value: attributes });
  });

  it('attaches files as they appear and detaches those that disappear (a clean exit)', async () => {
    addParent();
    await beat('a.json');
    await beat('b.json');
    await runParent();
    const first = pool.get('workers/a');

    const quiet = await runParent();
    expect(quiet.message).toBe(`2 heartbeats attached from ${dir}`);
    // An unchanged child is left alone: same check object, same state.
    expect(pool.get('workers/a')).toBe(first);

    await beat('c.json');
    await rm(join(dir, 'a.json'));
    const changed = await runParent();
    expect(changed.message).toBe(`2 heartbeats attached from ${dir} (1 attached, 1 detached this run)`);
    expect(children()).toEqual(['workers/b', 'workers/c']);
    expect(metricValues(changed)).toEqual({ attached: 2, attached_total: 3, detached_total: 1 });

    await rm(join(dir, 'b.json'));
    await rm(join(dir, 'c.json'));
    const empty = await runParent();
    expect(empty.message).toBe(`0 heartbeats attached from ${dir} (0 attached, 2 detached this run)`);
    expect(children()).toEqual([]);
    expect(pool.size).toBe(1);
  });

  it('attaches again a child that was removed from the registry while its file stayed', async () => {
    addParent();
    await beat('a.json');
    await runParent();
    pool.remove('workers/a');
    const outcome = await runParent();
    expect(children()).toEqual(['workers/a']);
    expect(metricValues(outcome).attached_total).toBe(2);
  });

  it('keeps a HARD crit child without autoDetach', async () => {
    addParent();
    await beat('a.json', 3_600_000);
    await runParent();
    markHardCrit('workers/a');
    await runParent();
    expect(children()).toEqual(['workers/a']);
  });

  it('with autoDetach, detaches a HARD crit child and ignores its file until it changes', async () => {
    addParent({ autoDetach: true });
    await beat('a.json', 3_600_000);
    await beat('b.json');
    await runParent();
    // SOFT crit is not yet a heart attack.
    expect(pool.setState('workers/a', { ...initialCheckState, hardState: 'ok', stateType: 'soft', attempt: 1 })).toBe(true);
    await runParent();
    expect(children()).toEqual(['workers/a', 'workers/b']);

    markHardCrit('workers/a');
    const detached = await runParent();
    expect(children()).toEqual(['workers/b']);
    expect(detached.message).toBe(`1 heartbeat attached from ${dir} (0 attached, 1 detached this run); 1 dead file ignored until it changes`);
    expect(metricValues(detached)).toEqual({ attached: 1, attached_total: 2, detached_total: 1, dead_files: 1 });

    // The stale file stays: it is not attached again.
    await runParent();
    const still = await runParent();
    expect(children()).toEqual(['workers/b']);
    expect(metricValues(still).dead_files).toBe(1);

    // The process beats again: the file changes and is attached, with a fresh state.
    await beat('a.json');
    const later = new Date(Date.now() + 60_000);
    await utimes(join(dir, 'a.json'), later, later);
    const back = await runParent();
    expect(children()).toEqual(['workers/a', 'workers/b']);
    expect(pool.get('workers/a')?.state).toEqual(initialCheckState);
    expect(metricValues(back)).toMatchObject({ attached: 2, attached_total: 3, dead_files: 0 });
  });

  it('with autoDetach, forgets a dead file once it is deleted', async () => {
    addParent({ autoDetach: true });
    await beat('a.json', 3_600_000);
    await runParent();
    markHardCrit('workers/a');
    await runParent();
    await rm(join(dir, 'a.json'));
    expect(metricValues(await runParent()).dead_files).toBe(0);
    // A new process with the same name is attached at once.
    await beat('a.json');
    await runParent();
    expect(children()).toEqual(['workers/a']);
  });

  it('updates its children when its own spec changes (a reload)', async () => {
    addParent();
    await beat('a.json');
    await runParent();
    const parent = pool.get(PARENT)?.spec as CheckSpec;
    const attributes = parse({ dir, critAfter: '2m' });
    pool.update({ ...parent, attributes, intervalMs: 20_000, handlers: ['log'] });
    await runParent(attributes);
    expect(pool.get('workers/a')?.spec).toMatchObject({
      attributes: { file: join(dir, 'a.json'), critAfter: 120_000, missing: 'ok' },
      intervalMs: 20_000,
      handlers: ['log'],
    });
    expect(pool.get('workers/a')?.spec.attributes).not.toHaveProperty('warnAfter');
  });

  it('takes over the children of an earlier parent with the same id, and detaches them when their file is gone', async () => {
    addParent();
    await beat('a.json');
    await beat('b.json');
    await runParent();
    await rm(join(dir, 'a.json'));
    // A fresh command instance (a restarted command, a parent removed and added again) knows nothing yet.
    command = heartbeatDirCommand();
    const outcome = await runParent();
    expect(children()).toEqual(['workers/b']);
    expect(outcome.message).toBe(`1 heartbeat attached from ${dir} (0 attached, 1 detached this run)`);
  });

  it('warns about a file whose check id is taken by another check, and leaves that check alone', async () => {
    addParent();
    pool.add(checkSpec({ id: 'workers/a' }));
    await beat('a.json');
    await beat('b.json');
    const outcome = await runParent();
    expect(outcome.state).toBe('warn');
    expect(outcome.reason).toBe('id-conflict');
    expect(outcome.message).toBe(`1 heartbeat attached from ${dir} (1 attached, 0 detached this run); not attached, their check ids are taken by other checks: "workers/a"`);
    expect(pool.get('workers/a')?.spec.command).toBe('noop');
    expect(children()).toEqual(['workers/b']);
  });

  it('never removes another check that took the id of a child removed from the registry', async () => {
    addParent();
    await beat('a.json');
    await runParent();
    pool.remove('workers/a');
    pool.add(checkSpec({ id: 'workers/a' }));
    expect((await runParent()).reason).toBe('id-conflict');
    await rm(join(dir, 'a.json'));
    const outcome = await runParent();
    expect(outcome).toMatchObject({ state: 'ok', message: `0 heartbeats attached from ${dir}` });
    expect(pool.get('workers/a')?.spec.command).toBe('noop');
  });

  it('names children after the file without the pattern suffix', async () => {
    addParent({ pattern: 'worker-*.hb' });
    await beat('worker-1.hb');
    await beat('worker-2.hb');
    await beat('worker-3.json');
    await beat('other.hb');
    await runParent();
    expect(children()).toEqual(['workers/worker-1', 'workers/worker-2']);
    expect(pool.get('workers/worker-1')?.spec.attributes).toMatchObject({ file: join(dir, 'worker-1.hb') });
  });

  it('matches dot-files only with a pattern that starts with a dot', async () => {
    addParent({ pattern: '.*.beat' });
    await beat('.a.beat');
    await beat('b.beat');
    await runParent();
    expect(children()).toEqual(['workers/.a']);
  });
});

describe('heartbeat-dir command: failures', () => {
  it('is crit (dir-missing) when the directory is missing, and keeps its children', async () => {
    addParent();
    await beat('a.json');
    await runParent();
    await rm(dir, { recursive: true });
    expect(await runParent()).toEqual({ state: 'crit', reason: 'dir-missing', message: `heartbeat directory ${dir} is missing` });
    expect(children()).toEqual(['workers/a']);
  });

  it('is crit (dir-missing) when the path is a file', async () => {
    const file = join(dir, 'plain');
    await writeFile(file, '');
    addParent({ dir: file });
    expect(await runParent()).toMatchObject({ state: 'crit', reason: 'dir-missing' });
  });

  it('is unknown (no-registry) without a registry to add checks to', async () => {
    const attributes = parse({ dir, critAfter: '30s' });
    expect(await command.run(attributes, ctx(null))).toEqual({
      state: 'unknown',
      reason: 'no-registry',
      message: `cannot attach heartbeats from ${dir}: this server's queue cannot add checks at runtime`,
    });
  });

  it('is unknown (no-registry) when its own check is not in the registry', async () => {
    const attributes = parse({ dir, critAfter: '30s' });
    const outcome = await command.run(attributes, ctx());
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'no-registry' });
    expect(outcome.message).toContain(`check "${PARENT}" is not in the server's registry`);
  });

  it('changes nothing when the signal is already aborted', async () => {
    const attributes = addParent();
    await beat('a.json');
    expect(await command.run(attributes, ctx(pool, AbortSignal.abort()))).toEqual({ state: 'unknown', reason: 'timeout', message: `timed out listing heartbeat directory ${dir}` });
    expect(children()).toEqual([]);
  });
});

describe('heartbeat-dir command: in a running server', () => {
  it('attaches a stale heartbeat that then alerts, and with autoDetach detaches it once HARD crit', async () => {
    await beat('dead.json', 3_600_000);
    await beat('alive.json');
    const attributes = parse({ dir, critAfter: '1h', autoDetach: true });
    pool.add(checkSpec({ id: PARENT, command: 'heartbeat-dir', attributes, intervalMs: 40, timeoutMs: 1_000, retryIntervalMs: 20, maxAttempts: 2 }));
    const server = new Server({ queue: pool, commands: [heartbeatDirCommand(), heartbeatFileCommand()], logger });
    const finished: CheckFinishEvent[] = [];
    server.on('check:finish', (event) => finished.push(event));
    server.start();
    try {
      await vi.waitFor(() => expect(finished.some((e) => e.check.id === 'workers/dead' && e.state.hardState === 'crit' && e.state.stateType === 'hard')).toBe(true), { timeout: 10_000 });
      await vi.waitFor(() => expect(children()).toEqual(['workers/alive']), { timeout: 10_000 });
      const dead = finished.find((e) => e.check.id === 'workers/dead');
      expect(dead?.result).toMatchObject({ state: 'crit', reason: 'heart-attack' });
      const alive = finished.find((e) => e.check.id === 'workers/alive');
      expect(alive?.result).toMatchObject({ state: 'ok', reason: 'ok' });
    } finally {
      await server.stop();
    }
  });
});

describe('heartbeat-dir command: attributes', () => {
  it('defaults pattern to *.json and autoDetach to false', () => {
    const attributes = parse({ dir: '/var/run/heartbeats', critAfter: '30s' });
    expect(attributes).toMatchObject({ dir: '/var/run/heartbeats', critAfter: 30_000, autoDetach: false, pattern: { glob: '*.json', suffix: '.json', dotFiles: false } });
    expect(attributes.pattern.regex.test('a.json')).toBe(true);
    expect(attributes.pattern.regex.test('a.json.tmp')).toBe(false);
    expect(attributes.pattern.regex.test('ajson')).toBe(false);
  });

  it('compiles a pattern into equal plain data every time (reloads compare attributes deeply)', () => {
    expect(parse({ dir: 'd', critAfter: 1000, pattern: 'w-?.hb' })).toEqual(parse({ dir: 'd', critAfter: 1000, pattern: 'w-?.hb' }));
    expect(parse({ dir: 'd', critAfter: 1000, pattern: 'w-?.hb' }).pattern).toMatchObject({ suffix: '.hb' });
  });

  it('rejects a pattern with a slash, unknown keys, a non-boolean autoDetach and thresholds in the wrong order', () => {
    expect(command.parse({ dir: 'd', critAfter: '1s', pattern: 'sub/*.json' })).toEqual({
      ok: false,
      issues: [{ path: ['pattern'], message: 'expected a file name pattern with * and ? wildcards, like *.json (no slashes), got "sub/*.json"' }],
    });
    expect(command.parse({ dir: 'd', critAfter: '1s', missing: 'ok' })).toEqual({ ok: false, issues: [{ path: ['missing'], message: 'unknown key' }] });
    expect(command.parse({ dir: 'd', critAfter: '1s', autoDetach: 'yes' })).toEqual({ ok: false, issues: [{ path: ['autoDetach'], message: 'expected true or false, got "yes"' }] });
    expect(command.parse({ dir: 'd', warnAfter: '2m', critAfter: '1m' })).toMatchObject({ ok: false, issues: [{ path: ['warnAfter'] }] });
    expect(command.parse({ critAfter: '1m' })).toEqual({ ok: false, issues: [{ path: ['dir'], message: 'expected a directory path, got nothing' }] });
  });
});
