import { z } from 'zod';
import { gauge, type Metric } from '../results/metric.js';
import type { CommandOutcome, Result } from '../results/result.js';
import { duration } from '../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext, type Ping } from './command.js';

export type { Ping } from './command.js';
import { nowOf, type Clock } from '../core/clock.js';
import { formatElapsed } from '../core/format.js';

/**
 * Push heartbeats, Healthchecks-style: a job pings vigil (`/ping/:token`, see http/push-routes.ts) and
 * the `push` check judges whether the pings come in time. Nothing is kept outside the check's own
 * Results: every push-related Result carries the timestamps below as metrics, so the state survives a
 * restart through the state file, and each evaluation or ping reads them from the previous Result.
 */

/** The name push checks use in `command:`. */
export const PUSH_COMMAND = 'push';

/** The metrics push Results carry; timestamps are epoch seconds (millisecond precision), durations seconds. */
export const PushMetrics = {
  /** The last ping of any kind (success, start, fail, exit code). */
  lastPing: 'last_ping_timestamp',
  /** The last success ping; period + grace count from it. Absent until the first success. */
  lastSuccess: 'last_success_timestamp',
  /** The last failure ping; the check is `crit` while it is later than the last success. */
  lastFailure: 'last_failure_timestamp',
  /**
   * When vigil first evaluated the check (or got its first ping, whichever came first): what period +
   * grace count from while the check has never had a success.
   */
  watchingSince: 'watching_since_timestamp',
  /** The `start` ping of the run in progress; absent when no run is in progress. */
  runStarted: 'run_started_timestamp',
  /** The time between a `start` ping and the success or failure that finished it. */
  runTime: 'run_time',
} as const;

/** Fewest characters of a given token: enough that it cannot be guessed. */
export const MIN_TOKEN_LENGTH = 16;
/** Most characters of a given token. */
export const MAX_TOKEN_LENGTH = 128;
/** Default grace, as Healthchecks has it. */
export const DEFAULT_GRACE_MS = 3_600_000;

// The URL path's unreserved characters: a token is one path segment, sent as it is written.
const TOKEN_CHARS = /^[A-Za-z0-9._~-]+$/;
const tokenError = `expected a token of ${MIN_TOKEN_LENGTH}–${MAX_TOKEN_LENGTH} characters from A–Z, a–z, 0–9, ".", "_", "~", "-"`;

const attributes = z
  .strictObject({
    /**
     * The secret in the ping URL. Default: derived from the check id and the data dir's push secret
     * (stable across restarts; see http/push-tokens.ts).
     */
    token: z
      .string({ error: tokenError })
      .min(MIN_TOKEN_LENGTH, { error: tokenError })
      .max(MAX_TOKEN_LENGTH, { error: tokenError })
      .regex(TOKEN_CHARS, { error: tokenError })
      .optional(),
    /** How often the job is expected to succeed (ms), at least 1 s. */
    period: duration(1000),
    /** How late a success may be (ms) before it is `heartbeat-missed`; default 1 h. */
    grace: duration().default(DEFAULT_GRACE_MS),
    /** How long a run may take from its `start` ping (ms), at least 1 s; default the grace, or the period when the grace is 0. */
    maxRunTime: duration(1000).optional(),
  })
  .transform(({ token, period, grace, maxRunTime }) => ({
    ...(token === undefined ? {} : { token }),
    period,
    grace,
    maxRunTime: maxRunTime ?? (grace > 0 ? grace : period),
  }));

/** The `push` command's attributes after parsing: durations in milliseconds, `maxRunTime` filled in. */
export type PushAttributes = z.output<typeof attributes>;

export interface PushCommandOptions {
  /** Tells the time; default `systemClock`. */
  readonly clock?: Clock;
}

/**
 * `push`: judges the pings a job sent. Its scheduled run (every `interval`, which sets how soon a miss is
 * noticed) reads the timestamps the previous Result carries and reports, in this order:
 * `run-too-long` (crit: a `start` ping with no finish within `maxRunTime`), `heartbeat-missed` (crit: no
 * success within period + grace of the last success, or of when vigil began watching), `failed` (crit:
 * the last finish was a failure; it stays until a success), `running` (ok: a run is in progress),
 * `ok` (the last success was in time), `no-ping-yet` (ok: never pinged, still within period + grace).
 * Pings are applied by `applyPing`.
 */
export function pushCommand(options: PushCommandOptions = {}): Command<PushAttributes> {
  const now = nowOf(options.clock);
  return defineCommand({
    name: PUSH_COMMAND,
    attributes,
    run: (attrs, ctx) => Promise.resolve(runPush(attrs, ctx, now())),
    pings: {
      token: (attrs) => attrs.token,
      apply: applyPing,
      // A ping was just judged: the check's own run need not look before the next one is overdue.
      quietAfterMs: (attrs) => attrs.period + attrs.grace,
    },
  });
}

function runPush(attrs: PushAttributes, { signal, previous }: CommandContext, nowMs: number): CommandOutcome {
  const state = readPushState(previous);
  const watching = { ...state, watchingSince: state.watchingSince ?? nowMs };
  // Keep the timestamps even then: a Result without them would make the check forget its pings.
  if (signal.aborted) return { state: 'unknown', reason: 'timeout', message: 'timed out before evaluating the pings', metrics: pushMetrics(watching) };
  return evaluate(attrs, watching, previous, nowMs);
}

/**
 * The outcome a ping makes, given the check's previous Result: a success is `ok` (reason `ping`, message
 * the body's first line or `ping received`) and resets the clock; a failure is `crit` (reason `failed`);
 * a start records `run_started_timestamp` and is `ok` (reason `started`) unless the check is down, which
 * a start does not change (only a success clears a failure or a missed heartbeat). A finish after a
 * start carries `run_time`.
 */
export function applyPing(attrs: PushAttributes, previous: Result | null, ping: Ping): CommandOutcome {
  const state = readPushState(previous);
  const at = ping.at;
  const text = ping.text ?? '';
  const watchingSince = state.watchingSince ?? at;
  if (ping.kind === 'start') {
    const next = { ...state, watchingSince, lastPingAt: at, runStartedAt: at };
    const judged = evaluate(attrs, next, previous, at);
    if (judged.state !== 'ok') return judged;
    return { state: 'ok', reason: 'started', message: text === '' ? 'run started' : `run started: ${text}`, metrics: pushMetrics(next) };
  }

  const runTimeMs = state.runStartedAt === undefined ? undefined : Math.max(0, at - state.runStartedAt);
  const { runStartedAt: _finished, ...rest } = state;
  if (ping.kind === 'success') {
    const next: PushState = { ...rest, watchingSince, lastPingAt: at, lastSuccessAt: at };
    const message = text !== '' ? text : ping.exitCode === undefined ? 'ping received' : `ping received (exit code ${ping.exitCode})`;
    return { state: 'ok', reason: 'ping', message, metrics: pushMetrics(next, runTimeMs) };
  }
  const next: PushState = { ...rest, watchingSince, lastPingAt: at, lastFailureAt: at };
  const what = ping.exitCode === undefined ? 'failure reported' : `exited with code ${ping.exitCode}`;
  return { state: 'crit', reason: 'failed', message: text === '' ? what : `${what}: ${text}`, metrics: pushMetrics(next, runTimeMs) };
}

/** The timestamps (epoch ms) a push check carries from Result to Result. */
export interface PushState {
  readonly lastPingAt?: number;
  readonly lastSuccessAt?: number;
  readonly lastFailureAt?: number;
  readonly watchingSince?: number;
  readonly runStartedAt?: number;
}

/** The timestamps the previous Result carries; empty for none, or for a Result of another command. */
export function readPushState(previous: Result | null): PushState {
  if (previous === null) return {};
  const state: { -readonly [K in keyof PushState]: number } = {};
  for (const metric of previous.metrics) {
    switch (metric.name) {
      case PushMetrics.lastPing:
        state.lastPingAt = toMs(metric.value);
        break;
      case PushMetrics.lastSuccess:
        state.lastSuccessAt = toMs(metric.value);
        break;
      case PushMetrics.lastFailure:
        state.lastFailureAt = toMs(metric.value);
        break;
      case PushMetrics.watchingSince:
        state.watchingSince = toMs(metric.value);
        break;
      case PushMetrics.runStarted:
        state.runStartedAt = toMs(metric.value);
        break;
    }
  }
  return state;
}

function evaluate(attrs: PushAttributes, state: PushState & { readonly watchingSince: number }, previous: Result | null, nowMs: number): CommandOutcome {
  const { period, grace, maxRunTime } = attrs;
  const metrics = pushMetrics(state);
  const { runStartedAt, lastSuccessAt, lastFailureAt } = state;
  if (runStartedAt !== undefined && nowMs - runStartedAt >= maxRunTime) {
    return {
      state: 'crit',
      reason: 'run-too-long',
      message: `the run started at ${iso(runStartedAt)} has not finished after ${formatElapsed(nowMs - runStartedAt)}, longer than maxRunTime ${formatElapsed(maxRunTime)}`,
      metrics,
    };
  }
  const anchor = lastSuccessAt ?? state.watchingSince;
  const silentMs = Math.max(0, nowMs - anchor);
  const expected = `expected every ${formatElapsed(period)} + ${formatElapsed(grace)} grace`;
  if (silentMs >= period + grace) {
    const since = lastSuccessAt === undefined ? `since vigil began watching ${formatElapsed(silentMs)} ago (${iso(anchor)})` : `for ${formatElapsed(silentMs)} (last at ${iso(anchor)})`;
    return { state: 'crit', reason: 'heartbeat-missed', message: `no success ping ${since}; ${expected}`, metrics };
  }
  if (lastFailureAt !== undefined && (lastSuccessAt === undefined || lastFailureAt > lastSuccessAt)) {
    // Repeat the failure's own message (its body, its exit code) while it stands.
    const message = previous?.reason === 'failed' ? previous.message : `the last run failed (${iso(lastFailureAt)})`;
    return { state: 'crit', reason: 'failed', message, metrics };
  }
  const dueBy = iso(anchor + period + grace);
  if (runStartedAt !== undefined) {
    return { state: 'ok', reason: 'running', message: `run in progress for ${formatElapsed(nowMs - runStartedAt)} (maxRunTime ${formatElapsed(maxRunTime)}); next success due by ${dueBy}`, metrics };
  }
  if (lastSuccessAt === undefined) return { state: 'ok', reason: 'no-ping-yet', message: `no ping yet; the first success is due by ${dueBy}`, metrics };
  return { state: 'ok', reason: 'ok', message: `last success ping ${formatElapsed(silentMs)} ago; next due by ${dueBy}`, metrics };
}

function pushMetrics(state: PushState, runTimeMs?: number): Metric[] {
  const metrics: Metric[] = [];
  if (state.lastPingAt !== undefined) metrics.push(gauge(PushMetrics.lastPing, toSeconds(state.lastPingAt), 's'));
  if (state.lastSuccessAt !== undefined) metrics.push(gauge(PushMetrics.lastSuccess, toSeconds(state.lastSuccessAt), 's'));
  if (state.lastFailureAt !== undefined) metrics.push(gauge(PushMetrics.lastFailure, toSeconds(state.lastFailureAt), 's'));
  if (state.watchingSince !== undefined) metrics.push(gauge(PushMetrics.watchingSince, toSeconds(state.watchingSince), 's'));
  if (state.runStartedAt !== undefined) metrics.push(gauge(PushMetrics.runStarted, toSeconds(state.runStartedAt), 's'));
  if (runTimeMs !== undefined) metrics.push(gauge(PushMetrics.runTime, toSeconds(runTimeMs), 's'));
  return metrics;
}

function toSeconds(ms: number): number {
  return ms / 1000;
}

function toMs(seconds: number): number {
  return Math.round(seconds * 1000);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

