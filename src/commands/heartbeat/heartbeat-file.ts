import { close, closeSync, open, openSync, read, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { parseHeartbeat, type HeartbeatRecord } from '../../heartbeats/heartbeat-file-format.js';
import { counter, gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome, State } from '../../results/result.js';
import { duration, nonEmptyString } from '../../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from '../command.js';
import { LocalDirectories } from './local-directories.js';
import { nowOf, type Clock } from '../../core/clock.js';

/**
 * How far in the future a heartbeat's timestamp may be (ms) before it is `bad-heartbeat`: a little
 * clock skew between writer and reader is normal and reads as age 0; more means the clock of one of
 * them is wrong, and a file dated ahead would otherwise stay "fresh" long after its writer died.
 */
export const HEARTBEAT_FUTURE_SKEW_MS = 5_000;

/**
 * A file this large (bytes) or larger is not a heartbeat file: the command reads only this much, so a
 * `file:` pointed at a log by mistake costs one small read rather than the whole log.
 */
export const MAX_HEARTBEAT_BYTES = 8_192;

/** What a missing heartbeat file means. */
export const MissingFileStates = ['crit', 'warn', 'ok', 'unknown'] as const satisfies readonly State[];
export type MissingFileState = (typeof MissingFileStates)[number];

const missingError = 'expected crit, warn, ok or unknown';

const attributes = z
  .strictObject({
    /** Path of the heartbeat file (relative paths are relative to vigil's working directory). */
    file: nonEmptyString('a file path'),
    /** Age (ms) at or above which the heartbeat is late: `warn`, reason `heartbeat-late`. Default: no warning. */
    warnAfter: duration(1).optional(),
    /** Age (ms) at or above which the heart stopped: `crit`, reason `heart-attack`. */
    critAfter: duration(1),
    /** The state of a missing file; default `crit` (reason `heart-attack`; with `ok`, reason `no-heartbeat`). */
    missing: z.enum(MissingFileStates, { error: missingError }).default('crit'),
  })
  .superRefine((value, ctx) => {
    if (value.warnAfter !== undefined && value.warnAfter > value.critAfter) {
      ctx.addIssue({ code: 'custom', path: ['warnAfter'], message: `expected a duration no longer than critAfter (${value.critAfter}ms)` });
    }
  });

/**
 * The `heartbeat-file` command's attributes after parsing: durations in milliseconds. Also valid input
 * (a number is milliseconds), which is how `heartbeat-dir` builds its children's attributes.
 */
export type HeartbeatFileAttributes = z.output<typeof attributes>;

export interface HeartbeatFileCommandOptions {
  /** Tells the time; default `systemClock`. */
  readonly clock?: Clock;
}

/**
 * `heartbeat-file`: reads a heartbeat file (see `heartbeats/heartbeat-file-format.ts`) and judges its
 * age, now − `timestamp`. Reasons: `ok`; `heartbeat-late` (warn, age ≥ `warnAfter`); `heart-attack`
 * (crit, age ≥ `critAfter`; or the file is missing, in the state `missing` says); `no-heartbeat` (the
 * file is missing and `missing: ok`); `bad-heartbeat` (unknown: not a heartbeat, or dated more than
 * 5 s in the future); `unreadable` (unknown: the file exists but cannot be read); `timeout` (unknown).
 * Metrics: `age` (s, with the thresholds), and from the file `uptime` (s), `memory_usage` (B) and
 * `beat` (counter).
 */
export function heartbeatFileCommand(options: HeartbeatFileCommandOptions = {}): Command<HeartbeatFileAttributes> {
  const now = nowOf(options.clock);
  const reader: HeartbeatReader = { buffers: new BufferCache(), localDirectories: new LocalDirectories() };
  return defineCommand({ name: 'heartbeat-file', attributes, run: (attrs, ctx) => runHeartbeatFile(attrs, ctx, now, reader) });
}

/** What every run of one `heartbeat-file` command shares. */
interface HeartbeatReader {
  readonly buffers: BufferCache;
  /** Files in these are read synchronously. */
  readonly localDirectories: LocalDirectories;
}

async function runHeartbeatFile(attrs: HeartbeatFileAttributes, { signal }: CommandContext, now: () => number, reader: HeartbeatReader): Promise<CommandOutcome> {
  // A read cannot be interrupted once started (it is short); an aborted run does not start one.
  if (signal.aborted) return { state: 'unknown', reason: 'timeout', message: `timed out before reading heartbeat file ${attrs.file}` };
  const { buffers } = reader;
  const buffer = buffers.take();
  let text: string;
  try {
    const bytes = reader.localDirectories.isLocal(dirname(attrs.file)) ? readHeadSync(attrs.file, buffer) : await readHead(attrs.file, buffer);
    if (bytes === buffer.length) {
      return { state: 'unknown', reason: 'bad-heartbeat', message: `bad heartbeat file ${attrs.file}: ${MAX_HEARTBEAT_BYTES} bytes or larger, not a heartbeat` };
    }
    text = buffer.toString('utf8', 0, bytes);
  } catch (error) {
    return readFailure(attrs, error as NodeJS.ErrnoException);
  } finally {
    buffers.give(buffer);
  }
  const parsed = parseHeartbeat(text);
  if (!parsed.ok) return { state: 'unknown', reason: 'bad-heartbeat', message: `bad heartbeat file ${attrs.file}: ${parsed.problem}` };
  return judgeHeartbeat('file', attrs.file, attrs, parsed.value, now());
}

/** The ages a heartbeat is judged by, in milliseconds. */
export interface HeartbeatThresholds {
  /** Age at or above which the heartbeat is late: `warn`, reason `heartbeat-late`; none when undefined. */
  readonly warnAfter?: number | undefined;
  /** Age at or above which the heart stopped: `crit`, reason `heart-attack`. */
  readonly critAfter: number;
}

/**
 * Judges a heartbeat's age, `nowMs` − its timestamp, whatever carried it (a file, a database row):
 * `ok`; `heartbeat-late` (warn, age ≥ `warnAfter`); `heart-attack` (crit, age ≥ `critAfter`);
 * `bad-heartbeat` (unknown, dated more than 5 s in the future). Metrics: `age` (s, with the thresholds),
 * and `uptime` (s), `memory_usage` (B) and `beat` (counter) when the beat has them. Messages name it
 * `heartbeat <name> is 3 s old …` and `bad heartbeat <kind> <name>: …`.
 */
export function judgeHeartbeat(kind: string, name: string, thresholds: HeartbeatThresholds, beat: HeartbeatRecord, nowMs: number): CommandOutcome {
  const { warnAfter, critAfter } = thresholds;
  const ageMs = nowMs - beat.timestampMs;
  if (ageMs < -HEARTBEAT_FUTURE_SKEW_MS) {
    return {
      state: 'unknown',
      reason: 'bad-heartbeat',
      message: `bad heartbeat ${kind} ${name}: dated ${seconds(-ageMs)} s in the future, more than the ${seconds(HEARTBEAT_FUTURE_SKEW_MS)} s allowed for clock skew`,
    };
  }
  const age = Math.max(0, Math.round(ageMs)) / 1000;
  const base = `heartbeat ${name} is ${seconds(age * 1000)} s old${details(beat)}`;
  if (ageMs >= critAfter) {
    return { state: 'crit', reason: 'heart-attack', message: `${base}, at or above the critical threshold of ${seconds(critAfter)} s`, metrics: metrics(thresholds, beat, age) };
  }
  if (warnAfter !== undefined && ageMs >= warnAfter) {
    return { state: 'warn', reason: 'heartbeat-late', message: `${base}, at or above the warning threshold of ${seconds(warnAfter)} s`, metrics: metrics(thresholds, beat, age) };
  }
  return { state: 'ok', reason: 'ok', message: base, metrics: metrics(thresholds, beat, age) };
}

/**
 * The outcome for a heartbeat that is not there, in the state `missing` says: reason `heart-attack`, or
 * `no-heartbeat` with `missing: ok`. `what` names it: `heartbeat file /run/w.json`.
 */
export function missingHeartbeat(what: string, missing: MissingFileState): CommandOutcome {
  const treated = missing === 'crit' ? '' : ` (treated as ${missing})`;
  return { state: missing, reason: missing === 'ok' ? 'no-heartbeat' : 'heart-attack', message: `${what} is missing${treated}` };
}

function readFailure({ file, missing }: HeartbeatFileAttributes, error: NodeJS.ErrnoException): CommandOutcome {
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return missingHeartbeat(`heartbeat file ${file}`, missing);
  return { state: 'unknown', reason: 'unreadable', message: `cannot read heartbeat file ${file}: ${error.message}` };
}

function metrics({ warnAfter, critAfter }: HeartbeatThresholds, beat: HeartbeatRecord, age: number): Metric[] {
  const list = [gauge('age', age, 's', { warn: warnAfter === undefined ? undefined : warnAfter / 1000, crit: critAfter / 1000 })];
  if (beat.uptime !== undefined) list.push(gauge('uptime', beat.uptime, 's'));
  if (beat.memoryUsage !== undefined) list.push(gauge('memory_usage', beat.memoryUsage, 'B'));
  if (beat.beat !== undefined) list.push(counter('beat', beat.beat));
  return list;
}

function details({ pid, beat }: HeartbeatRecord): string {
  if (pid === undefined) return beat === undefined ? '' : ` (beat ${beat})`;
  return beat === undefined ? ` (pid ${pid})` : ` (pid ${pid}, beat ${beat})`;
}

/** Milliseconds as seconds for messages: `0.25`, `12.3`, `3600`. */
function seconds(ms: number): string {
  const s = ms / 1000;
  return s >= 100 ? String(Math.round(s)) : String(Math.round(s * 100) / 100);
}

/**
 * Reads the start of a file into `buffer` and resolves the number of bytes read: open, one read, close.
 * Three thread-pool trips where `readFile` takes four (it `fstat`s for the size first), and bounded.
 */
function readHead(path: string, buffer: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (openError, fd) => {
      if (openError) {
        reject(openError);
        return;
      }
      read(fd, buffer, 0, buffer.length, 0, (readError, bytes) => {
        // Closing a descriptor opened read-only cannot lose data; its error would say nothing useful.
        close(fd, ignore);
        if (readError) reject(readError);
        else resolve(bytes);
      });
    });
  });
}

/** The same as `readHead`, for a file on a local filesystem: a few microseconds, with no trip through the thread pool. */
function readHeadSync(path: string, buffer: Buffer): number {
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, buffer, 0, buffer.length, 0);
  } finally {
    closeSync(fd);
  }
}

function ignore(): void {}

/** Read buffers kept between runs, so a run does not allocate 8 KiB; one per run in flight, at most 64 kept. */
class BufferCache {
  readonly #spare: Buffer[] = [];

  take(): Buffer {
    return this.#spare.pop() ?? Buffer.allocUnsafe(MAX_HEARTBEAT_BYTES);
  }

  give(buffer: Buffer): void {
    if (this.#spare.length < 64) this.#spare.push(buffer);
  }
}
