import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type Check, type CheckState } from '../../src/checks/check.js';
import { firstDueAt } from '../../src/checks/schedule.js';
import { loadState, restoredSchedule, saveState, StateFileWriter, type SavedCheck } from '../../src/queues/state-file.js';
import { checkSpec } from '../helpers/checks.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';
import { clockWith } from '../../src/core/clock.js';

const T0 = Date.UTC(2024, 0, 1);

const downState: CheckState = {
  hardState: 'crit',
  stateType: 'hard',
  attempt: 3,
  okStreak: 0,
  lastResult: {
    state: 'crit',
    reason: 'refused',
    message: 'connection refused',
    metrics: [{ name: 'connect_time', value: 12.5, unit: 'ms', kind: 'gauge', warn: 100, crit: 500 }],
    startedAt: T0 - 1_000,
    durationMs: 3,
  },
  incident: {
    id: `db:${T0 - 60_000}`,
    checkId: 'db',
    openedAt: T0 - 60_000,
    updatedAt: T0 - 30_000,
    resolvedAt: null,
    state: 'crit',
    worstState: 'crit',
    reason: 'refused',
    acknowledgedAt: T0 - 30_000,
    externalId: 'PAGE-42',
  },
  lastHardChangeAt: T0 - 60_000,
};

function check(id: string, state: CheckState, dueAt: number, slotAt = dueAt): Check {
  return { spec: checkSpec({ id }), state, dueAt, slotAt };
}

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-state-'));
  file = join(dir, 'state.json');
});
afterEach(async () => {
  vi.useRealTimers();
  await rm(dir, { recursive: true, force: true });
});

/** The saved file's contents. */
async function readSaved(path = file): Promise<{ version: number; savedAt: number; checks: Record<string, SavedCheck> }> {
  return JSON.parse(await readFile(path, 'utf8')) as { version: number; savedAt: number; checks: Record<string, SavedCheck> };
}

describe('saveState and loadState', () => {
  it('round-trips checks, an open incident included', async () => {
    await saveState(file, [check('db', downState, T0 + 15_000, T0), check('web', initialCheckState, T0 + 20_000)], T0);
    const saved = await readSaved();
    expect(saved).toMatchObject({ version: 1, savedAt: T0 });
    expect(Object.keys(saved.checks).sort()).toEqual(['db', 'web']);

    const { logger, lines } = capturingLogger();
    const loaded = await loadState(file, logger);
    expect([...loaded.keys()].sort()).toEqual(['db', 'web']);
    expect(loaded.get('db')).toEqual({ state: downState, dueAt: T0 + 15_000, slotAt: T0 });
    expect(loaded.get('web')).toEqual({ state: initialCheckState, dueAt: T0 + 20_000, slotAt: T0 + 20_000 });
    expect(lines).toEqual([]);
  });

  it('keeps an id that is also an Object.prototype key as data', async () => {
    await saveState(file, [check('__proto__', downState, T0), check('constructor', initialCheckState, T0)], T0);
    const loaded = await loadState(file, silentLogger());
    expect(loaded.get('__proto__')?.state).toEqual(downState);
    expect(loaded.get('constructor')?.state).toEqual(initialCheckState);
  });

  it('creates the directory and leaves no temporary files behind', async () => {
    const nested = join(dir, 'a', 'b', 'state.json');
    for (let i = 0; i < 5; i++) await saveState(nested, [check('db', downState, T0 + i)], T0 + i);
    expect(await readdir(join(dir, 'a', 'b'))).toEqual(['state.json']);
    expect((await readSaved(nested)).savedAt).toBe(T0 + 4);
  });

  it('replaces the previous file as a whole', async () => {
    await saveState(file, [check('a', initialCheckState, T0), check('b', initialCheckState, T0)], T0);
    await saveState(file, [check('b', downState, T0 + 1)], T0 + 1);
    const loaded = await loadState(file, silentLogger());
    expect([...loaded.keys()]).toEqual(['b']);
    expect(loaded.get('b')?.state).toEqual(downState);
  });

  it('gives an empty map for a missing file without a warning', async () => {
    const { logger, lines } = capturingLogger();
    expect((await loadState(join(dir, 'missing.json'), logger)).size).toBe(0);
    expect(lines).toEqual([]);
  });

  it.each([
    ['not JSON', '{"version": 1, "checks": {', 'is not valid JSON'],
    ['another version', JSON.stringify({ version: 2, savedAt: T0, checks: {} }), 'has version 2, expected 1'],
    ['no checks object', JSON.stringify({ version: 1, savedAt: T0, checks: [] }), 'has no `checks` object'],
    ['not an object', '[]', 'is not a JSON object'],
  ])('moves a corrupt file (%s) aside with a warning and gives an empty map', async (_name, text, problem) => {
    await writeFile(file, text);
    const { logger, lines } = capturingLogger();
    const loaded = await loadState(file, logger);
    expect(loaded.size).toBe(0);

    const files = await readdir(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^state\.json\.corrupt-\d{13}$/);
    const aside = join(dir, files[0] as string);
    expect(await readFile(aside, 'utf8')).toBe(text);

    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, file, movedTo: aside });
    expect(lines[0]?.problem).toContain(problem);
    expect(lines[0]?.msg).toContain(file);
    expect(lines[0]?.msg).toContain(problem);
  });

  it('skips an invalid entry with a warning naming it and keeps the others', async () => {
    const good: SavedCheck = { state: downState, dueAt: T0, slotAt: T0 };
    const checks = {
      good,
      badState: { ...good, state: { ...downState, hardState: 'broken' } },
      noDueAt: { state: downState, slotAt: T0 },
      notAnObject: 42,
    };
    await writeFile(file, JSON.stringify({ version: 1, savedAt: T0, checks }));
    const { logger, lines } = capturingLogger();
    const loaded = await loadState(file, logger);
    expect([...loaded.keys()]).toEqual(['good']);
    expect(loaded.get('good')).toEqual(good);
    expect(lines.map((line) => line.checkId)).toEqual(['badState', 'noDueAt', 'notAnObject']);
    expect(lines.every((line) => line.level === 40 && line.file === file)).toBe(true);
    expect(lines[0]?.msg).toContain('"badState"');
    expect(lines[0]?.problem).toContain('state.hardState');
    expect(lines[1]?.problem).toContain('dueAt');
    // The file itself is fine: it stays where it is.
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('drops a metric JSON could not hold rather than the whole check', async () => {
    const nanMetric = { name: 'loss', value: NaN, unit: '%', kind: 'gauge' as const };
    const state: CheckState = { ...downState, lastResult: { ...(downState.lastResult as NonNullable<CheckState['lastResult']>), metrics: [nanMetric] } };
    await saveState(file, [check('db', state, T0)], T0);
    const loaded = await loadState(file, silentLogger());
    expect(loaded.get('db')?.state.lastResult?.metrics).toEqual([]);
    expect(loaded.get('db')?.state.incident).toEqual(downState.incident);
  });
});

describe('restoredSchedule', () => {
  const spec = checkSpec({ id: 'db', intervalMs: 60_000, retryIntervalMs: 15_000 });

  it('keeps a saved due time that is still ahead, and the grid anchor of a check saved mid-retry', () => {
    expect(restoredSchedule({ state: downState, dueAt: T0 + 40_000, slotAt: T0 + 40_000 }, spec, T0)).toEqual({ dueAt: T0 + 40_000, slotAt: T0 + 40_000 });
    expect(restoredSchedule({ state: downState, dueAt: T0 + 10_000, slotAt: T0 - 20_000 }, spec, T0)).toEqual({ dueAt: T0 + 10_000, slotAt: T0 - 20_000 });
  });

  it('spreads a check whose due time passed while vigil was down over its interval', () => {
    const { dueAt, slotAt } = restoredSchedule({ state: downState, dueAt: T0 - 3_600_000, slotAt: T0 - 3_600_000 }, spec, T0);
    expect(dueAt).toBe(firstDueAt('db', 60_000, T0));
    expect(slotAt).toBe(dueAt);
    expect(dueAt).toBeGreaterThanOrEqual(T0);
    expect(dueAt).toBeLessThan(T0 + 60_000);
    expect(restoredSchedule({ state: downState, dueAt: T0, slotAt: T0 }, spec, T0).dueAt).toBe(firstDueAt('db', 60_000, T0));
  });

  it('does not keep a due time further ahead than the configured interval allows', () => {
    expect(restoredSchedule({ state: downState, dueAt: T0 + 86_400_000, slotAt: T0 }, spec, T0).dueAt).toBe(firstDueAt('db', 60_000, T0));
  });

  it('runs an overdue one-shot check that had not finished now, and leaves a finished one finished', () => {
    const once = checkSpec({ id: 'once', intervalMs: null });
    expect(restoredSchedule({ state: initialCheckState, dueAt: T0 - 1, slotAt: T0 - 1 }, once, T0).dueAt).toBe(T0);
    expect(restoredSchedule({ state: downState, dueAt: T0 - 1, slotAt: T0 - 1 }, once, T0).dueAt).toBeNull();
  });
});

describe('StateFileWriter', () => {
  it('saves every intervalMs and once more on stop', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const clock = { now: T0 };
    const checks = [check('db', initialCheckState, T0 + 5_000)];
    const writer = new StateFileWriter({ file, source: () => checks, intervalMs: 60_000, logger: silentLogger(), clock: clockWith(() => clock.now) });
    writer.start();
    writer.start();
    expect(vi.getTimerCount()).toBe(1);

    vi.advanceTimersByTime(60_000);
    await vi.waitFor(async () => expect((await readSaved()).savedAt).toBe(T0), { timeout: 5_000 });

    clock.now = T0 + 60_000;
    checks[0] = check('db', downState, T0 + 75_000, T0 + 60_000);
    vi.advanceTimersByTime(60_000);
    await vi.waitFor(async () => expect((await readSaved()).savedAt).toBe(T0 + 60_000), { timeout: 5_000 });
    expect((await readSaved()).checks.db).toEqual({ state: downState, dueAt: T0 + 75_000, slotAt: T0 + 60_000 });

    clock.now = T0 + 90_000;
    const stopping = writer.stop();
    expect(writer.stop()).toBe(stopping);
    await stopping;
    expect((await readSaved()).savedAt).toBe(T0 + 90_000);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => writer.start()).toThrow('cannot start again');
  });

  it('logs a failing periodic save and goes on', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const { logger, lines } = capturingLogger();
    let calls = 0;
    const source = (): Check[] => {
      calls++;
      if (calls === 1) throw new Error('source broke');
      return [check('db', downState, T0)];
    };
    const writer = new StateFileWriter({ file, source, intervalMs: 60_000, logger, clock: clockWith(() => T0) });
    writer.start();
    vi.advanceTimersByTime(60_000);
    await vi.waitFor(() => expect(lines.map((line) => line.msg)).toContain('saving the state file failed'), { timeout: 5_000 });
    expect(lines[0]).toMatchObject({ level: 50, file, err: { message: 'source broke' } });

    vi.advanceTimersByTime(60_000);
    await vi.waitFor(async () => expect((await readSaved()).checks.db?.state).toEqual(downState), { timeout: 5_000 });
    await writer.stop();
  });

  it('logs a failing final save on stop instead of throwing', async () => {
    const { logger, lines } = capturingLogger();
    const writer = new StateFileWriter({
      file,
      source: () => {
        throw new Error('source broke');
      },
      intervalMs: 60_000,
      logger,
    });
    writer.start();
    await expect(writer.stop()).resolves.toBeUndefined();
    expect(lines).toMatchObject([{ level: 50, msg: 'saving the state file on stop failed', err: { message: 'source broke' } }]);
  });

  it('never lets two saves overlap: one asked for while another writes waits for it', async () => {
    let calls = 0;
    const later: Promise<void>[] = [];
    const seenBySecond: number[] = [];
    const writer = new StateFileWriter({
      file,
      intervalMs: 60_000,
      logger: silentLogger(),
      clock: clockWith(() => T0 + calls),
      source: () => {
        calls++;
        // Asked for while the first save is under way.
        if (calls === 1) later.push(writer.save());
        // When the second save starts, the first has written its file.
        else seenBySecond.push((JSON.parse(readFileSync(file, 'utf8')) as { savedAt: number }).savedAt);
        return [check('db', initialCheckState, T0)];
      },
    });
    await writer.save();
    expect(later).toHaveLength(1);
    await later[0];
    expect(calls).toBe(2);
    expect(seenBySecond).toEqual([T0 + 1]);
    expect((await readSaved()).savedAt).toBe(T0 + 2);
  });

  it('lets calls made before a save starts share it', async () => {
    let calls = 0;
    const writer = new StateFileWriter({ file, intervalMs: 60_000, logger: silentLogger(), source: () => (calls++, []) });
    const first = writer.save();
    const second = writer.save();
    expect(second).toBe(first);
    await Promise.all([first, second]);
    expect(calls).toBe(1);
  });

  it('rejects an interval that is not a positive integer', () => {
    const options = { file, source: () => [], logger: silentLogger() };
    expect(() => new StateFileWriter({ ...options, intervalMs: 0 })).toThrow('Expected `intervalMs` to be a positive integer up to 2147483647, got `0` (number)');
    expect(() => new StateFileWriter({ ...options, intervalMs: 1.5 })).toThrow(TypeError);
    expect(() => new StateFileWriter({ ...options, intervalMs: 2 ** 31 })).toThrow(TypeError);
  });

  it('saves into a data dir that does not exist yet', async () => {
    const nested = join(dir, 'data', 'state.json');
    const writer = new StateFileWriter({ file: nested, source: () => [check('db', downState, T0)], intervalMs: 1_000, logger: silentLogger() });
    await writer.stop();
    expect((await loadState(nested, silentLogger())).get('db')?.state).toEqual(downState);
  });
});
