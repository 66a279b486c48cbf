import { describe, expect, it } from 'vitest';
import type { CommandContext } from '../../src/commands/command.js';
import { formatElapsed } from '../../src/core/format.js';
import { applyPing, pushCommand, PushMetrics, readPushState, type Ping, type PushAttributes } from '../../src/commands/push.js';
import { toResult, type CommandOutcome, type Result } from '../../src/results/result.js';
import { silentLogger } from '../helpers/logger.js';
import { clockWith } from '../../src/core/clock.js';

const logger = silentLogger();
const T0 = Date.parse('2024-06-01T00:00:00Z');
const S = 1000;
const H = 3_600_000;

let clock = T0;
const push = pushCommand({ clock: clockWith(() => clock) });

function parse(raw: unknown): PushAttributes {
  const parsed = push.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

/** A check with period 1d, grace 1h, maxRunTime 2h. */
const daily = parse({ period: '1d', grace: '1h', maxRunTime: '2h' });

function ctx(previous: Result | null, signal: AbortSignal = new AbortController().signal): CommandContext {
  return { checkId: 'nightly-backup', signal, deadline: clock + 10_000, logger, previous };
}

/** The scheduled evaluation at `at`, after `previous`. */
async function evaluateAt(at: number, previous: Result | null, attrs: PushAttributes = daily): Promise<Result> {
  clock = at;
  return toResult(await push.run(attrs, ctx(previous)), at, 0);
}

function pingAt(at: number, previous: Result | null, ping: Omit<Ping, 'at'>, attrs: PushAttributes = daily): Result {
  return toResult(applyPing(attrs, previous, { ...ping, at }), at, 0);
}

function metric(result: CommandOutcome, name: string): number | undefined {
  return result.metrics?.find((m) => m.name === name)?.value;
}

describe('push command: scheduled evaluation', () => {
  it('is ok (no-ping-yet) at first, and anchors period + grace on its first evaluation', async () => {
    const first = await evaluateAt(T0, null);
    expect(first).toMatchObject({ state: 'ok', reason: 'no-ping-yet' });
    expect(first.message).toBe('no ping yet; the first success is due by 2024-06-02T01:00:00.000Z');
    expect(metric(first, PushMetrics.watchingSince)).toBe(T0 / 1000);
    expect(metric(first, PushMetrics.lastPing)).toBeUndefined();

    // The anchor is carried, not reset by later evaluations.
    const later = await evaluateAt(T0 + 24 * H, first);
    expect(later).toMatchObject({ state: 'ok', reason: 'no-ping-yet' });
    const missed = await evaluateAt(T0 + 25 * H, later);
    expect(missed).toMatchObject({ state: 'crit', reason: 'heartbeat-missed' });
    expect(missed.message).toBe('no success ping since vigil began watching 1d 1h ago (2024-06-01T00:00:00.000Z); expected every 1d + 1h grace');
  });

  it('stays ok while successes come within period + grace, and misses after', async () => {
    const start = await evaluateAt(T0, null);
    const success = pingAt(T0 + H, start, { kind: 'success', text: 'backup done' });
    expect(success).toMatchObject({ state: 'ok', reason: 'ping', message: 'backup done' });
    expect(metric(success, PushMetrics.lastSuccess)).toBe((T0 + H) / 1000);
    expect(metric(success, PushMetrics.watchingSince)).toBe(T0 / 1000);

    const onTime = await evaluateAt(T0 + H + 23 * H + 30 * 60 * S, success);
    expect(onTime).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(onTime.message).toBe('last success ping 23h 30m ago; next due by 2024-06-02T02:00:00.000Z');
    expect(metric(onTime, PushMetrics.lastSuccess)).toBe((T0 + H) / 1000);

    const inTime = await evaluateAt(T0 + H + 25 * H - S, onTime);
    expect(inTime).toMatchObject({ state: 'ok', reason: 'ok' });

    const late = await evaluateAt(T0 + H + 25 * H, inTime);
    expect(late).toMatchObject({ state: 'crit', reason: 'heartbeat-missed' });
    expect(late.message).toBe('no success ping for 1d 1h (last at 2024-06-01T01:00:00.000Z); expected every 1d + 1h grace');

    const recovered = pingAt(T0 + 27 * H, late, { kind: 'success' });
    expect(recovered).toMatchObject({ state: 'ok', reason: 'ping', message: 'ping received' });
    expect((await evaluateAt(T0 + 28 * H, recovered)).state).toBe('ok');
  });

  it('keeps a failure crit until a success, repeating its message', async () => {
    const failed = pingAt(T0, null, { kind: 'fail', exitCode: 3, text: 'disk full' });
    expect(failed).toMatchObject({ state: 'crit', reason: 'failed', message: 'exited with code 3: disk full' });
    expect(metric(failed, PushMetrics.lastFailure)).toBe(T0 / 1000);

    const again = await evaluateAt(T0 + H, failed);
    expect(again).toMatchObject({ state: 'crit', reason: 'failed', message: 'exited with code 3: disk full' });
    // A start does not clear a failure either.
    const started = pingAt(T0 + 2 * H, again, { kind: 'start' });
    expect(started).toMatchObject({ state: 'crit', reason: 'failed' });
    expect(metric(started, PushMetrics.runStarted)).toBe((T0 + 2 * H) / 1000);

    const success = pingAt(T0 + 3 * H, started, { kind: 'success' });
    expect(success.state).toBe('ok');
    expect(metric(success, PushMetrics.runTime)).toBe(3600);
    expect(metric(success, PushMetrics.runStarted)).toBeUndefined();
    expect((await evaluateAt(T0 + 4 * H, success)).state).toBe('ok');
  });

  it('reports run-too-long when a start has no finish within maxRunTime, and measures the run time', async () => {
    const started = pingAt(T0, null, { kind: 'start', text: 'rsync begins' });
    expect(started).toMatchObject({ state: 'ok', reason: 'started', message: 'run started: rsync begins' });

    const running = await evaluateAt(T0 + 2 * H - S, started);
    expect(running).toMatchObject({ state: 'ok', reason: 'running' });
    expect(running.message).toContain('run in progress for 1h 59m (maxRunTime 2h)');

    const tooLong = await evaluateAt(T0 + 2 * H, running);
    expect(tooLong).toMatchObject({ state: 'crit', reason: 'run-too-long' });
    expect(tooLong.message).toBe('the run started at 2024-06-01T00:00:00.000Z has not finished after 2h, longer than maxRunTime 2h');
    expect(metric(tooLong, PushMetrics.runStarted)).toBe(T0 / 1000);

    const finished = pingAt(T0 + 3 * H, tooLong, { kind: 'fail' });
    expect(finished).toMatchObject({ state: 'crit', reason: 'failed', message: 'failure reported' });
    expect(metric(finished, PushMetrics.runTime)).toBe(3 * 3600);
    expect(metric(finished, PushMetrics.runStarted)).toBeUndefined();
  });

  it('carries every timestamp through a result, as the state file keeps them', () => {
    const previous = pingAt(T0 + 5 * S, pingAt(T0, null, { kind: 'fail' }), { kind: 'start' });
    const roundTrip = JSON.parse(JSON.stringify(previous)) as Result;
    expect(readPushState(roundTrip)).toEqual({ lastPingAt: T0 + 5 * S, lastFailureAt: T0, watchingSince: T0, runStartedAt: T0 + 5 * S });
    expect(readPushState(toResult({ state: 'unknown', reason: 'exception', message: 'x' }, T0, 0))).toEqual({});
  });

  it('reports an exit code 0 as a success that names it', () => {
    expect(pingAt(T0, null, { kind: 'success', exitCode: 0 })).toMatchObject({ state: 'ok', reason: 'ping', message: 'ping received (exit code 0)' });
  });

  it('keeps the timestamps on a run whose signal is already aborted', async () => {
    const success = pingAt(T0, null, { kind: 'success' });
    clock = T0 + S;
    const outcome = await push.run(daily, ctx(success, AbortSignal.abort()));
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'timeout' });
    expect(metric(outcome, PushMetrics.lastSuccess)).toBe(T0 / 1000);
  });

  it('formats durations by their two largest units', () => {
    expect(formatElapsed(250)).toBe('250ms');
    expect(formatElapsed(42 * S)).toBe('42s');
    expect(formatElapsed(3 * 60 * S + 5 * S)).toBe('3m 5s');
    expect(formatElapsed(25 * H)).toBe('1d 1h');
    expect(formatElapsed(24 * H + 30 * S)).toBe('1d');
  });
});

describe('push command: attributes', () => {
  it('takes period, grace and maxRunTime as durations, grace defaulting to 1h and maxRunTime to the grace', () => {
    expect(parse({ period: '1d', grace: '1h' })).toEqual({ period: 86_400_000, grace: 3_600_000, maxRunTime: 3_600_000 });
    expect(parse({ period: '5m' })).toEqual({ period: 300_000, grace: 3_600_000, maxRunTime: 3_600_000 });
    expect(parse({ period: '5m', grace: 0 })).toEqual({ period: 300_000, grace: 0, maxRunTime: 300_000 });
    expect(parse({ period: '1d', maxRunTime: '3h', token: 'abcdefghijklmnop' })).toEqual({ token: 'abcdefghijklmnop', period: 86_400_000, grace: 3_600_000, maxRunTime: 10_800_000 });
  });

  it('refuses a short or URL-unsafe token, saying what a token must be', () => {
    const message = 'expected a token of 16–128 characters from A–Z, a–z, 0–9, ".", "_", "~", "-"';
    expect(push.parse({ period: '1d', token: 'short' })).toEqual({ ok: false, issues: [{ path: ['token'], message: `${message}, got "short"` }] });
    expect(push.parse({ period: '1d', token: 'has/a/slash/in/it/yes' })).toMatchObject({ ok: false, issues: [{ path: ['token'] }] });
    expect(push.parse({ period: '1d', token: 1234567890123456 })).toMatchObject({ ok: false, issues: [{ path: ['token'] }] });
  });

  it('requires a period of at least a second and rejects unknown keys', () => {
    expect(push.parse({})).toMatchObject({ ok: false, issues: [{ path: ['period'] }] });
    expect(push.parse({ period: '500ms' })).toMatchObject({ ok: false, issues: [{ path: ['period'] }] });
    expect(push.parse({ period: '1d', timeout: '1h' })).toEqual({ ok: false, issues: [{ path: ['timeout'], message: 'unknown key' }] });
  });
});
