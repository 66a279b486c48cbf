import { describeValue } from '../validation/issues.js';

/**
 * The heartbeat file: one small JSON object that a supervised process (or `vigil beat` on its behalf)
 * replaces atomically on every beat, and that the `heartbeat-file` command reads.
 *
 * ```json
 * {"timestamp":1718000000.25,"uptime":3600.5,"memoryUsage":73400320,"pid":4242,"beat":720}
 * ```
 *
 * - `timestamp` (required): when the beat was written, in epoch seconds (a number, fractions allowed)
 *   or an ISO-8601 / RFC 3339 string with a time zone (`2024-06-10T06:13:20Z`, `…+02:00`). A string
 *   without a zone is refused: it would be read in whatever zone the monitor runs in.
 * - `uptime`: seconds the process has been running.
 * - `memoryUsage`: its resident set size, bytes.
 * - `pid`: its process id.
 * - `beat`: how many beats it has written, from 1.
 *
 * Only `timestamp` is required, so a shell script can beat with
 * `printf '{"timestamp":%s}' "$(date +%s)" > .w.tmp && mv .w.tmp w.json`; the other fields, when present,
 * must have the right type, and other keys are ignored. Writers put their temporary files in the same
 * directory under a name starting with a dot, which `heartbeat-dir` never attaches.
 */

/** One heartbeat as read from, or written to, a heartbeat file. */
export interface HeartbeatRecord {
  /** Epoch milliseconds of the beat. */
  readonly timestampMs: number;
  /** Seconds the process had been running; undefined when the file does not say. */
  readonly uptime: number | undefined;
  /** Resident set size, bytes; undefined when the file does not say. */
  readonly memoryUsage: number | undefined;
  readonly pid: number | undefined;
  /** Beats written so far, from 1; undefined when the file does not say. */
  readonly beat: number | undefined;
}

/** The outcome of reading a heartbeat file's text: the record, or what was wrong with it (one line). */
export type HeartbeatParse = { readonly ok: true; readonly value: HeartbeatRecord } | { readonly ok: false; readonly problem: string };

/**
 * A numeric timestamp above this is not in epoch seconds (it would be after the year 5138): most likely
 * epoch milliseconds, which the message then suggests.
 */
const MAX_EPOCH_SECONDS = 1e11;
/** ISO-8601 / RFC 3339 date and time with a zone; `Date.parse` alone would also take local-time strings. */
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})$/;

/** Parses a heartbeat file's text. Never throws. */
export function parseHeartbeat(text: string): HeartbeatParse {
  if (text.trim() === '') return { ok: false, problem: 'the file is empty' };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return { ok: false, problem: `not valid JSON (${(error as Error).message})` };
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { ok: false, problem: `expected a JSON object with a timestamp, got ${describeValue(data)}` };
  }
  const fields = data as Record<string, unknown>;
  const timestampMs = toEpochMs(fields.timestamp);
  if (typeof timestampMs === 'string') return { ok: false, problem: timestampMs };

  const uptime = fields.uptime;
  if (uptime !== undefined && !isNonNegative(uptime)) return wrong('uptime', 'a number of seconds ≥ 0', uptime);
  const memoryUsage = fields.memoryUsage;
  if (memoryUsage !== undefined && !isNonNegative(memoryUsage)) return wrong('memoryUsage', 'a number of bytes ≥ 0', memoryUsage);
  const pid = fields.pid;
  if (pid !== undefined && !(isInteger(pid) && pid > 0)) return wrong('pid', 'a positive integer', pid);
  const beat = fields.beat;
  if (beat !== undefined && !(isInteger(beat) && beat >= 0)) return wrong('beat', 'an integer ≥ 0', beat);
  return {
    ok: true,
    value: {
      timestampMs,
      uptime,
      memoryUsage,
      pid,
      beat,
    },
  };
}

/**
 * The file's text for a record: one line of JSON, `timestamp` in epoch seconds with millisecond
 * precision. Fields that are undefined are left out.
 */
export function serializeHeartbeat(record: HeartbeatRecord): string {
  const { timestampMs, uptime, memoryUsage, pid, beat } = record;
  return `${JSON.stringify({
    timestamp: Math.round(timestampMs) / 1000,
    uptime: uptime === undefined ? undefined : Math.round(uptime * 1000) / 1000,
    memoryUsage,
    pid,
    beat,
  })}\n`;
}

/** Epoch milliseconds of a `timestamp` value, or a string saying what was wrong with it. */
function toEpochMs(value: unknown): number | string {
  const expected = 'expected `timestamp` in epoch seconds or as an ISO-8601 string with a time zone';
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) return `${expected}, got ${describeValue(value)}`;
    if (value > MAX_EPOCH_SECONDS) return `${expected}, got ${value} (epoch milliseconds? write seconds)`;
    return value * 1000;
  }
  if (typeof value === 'string') {
    const ms = ISO_TIMESTAMP.test(value) ? Date.parse(value) : Number.NaN;
    return Number.isNaN(ms) ? `${expected}, got ${describeValue(value)}` : ms;
  }
  return `${expected}, got ${describeValue(value)}`;
}

function isInteger(value: unknown): value is number {
  return Number.isInteger(value);
}

function isNonNegative(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function wrong(field: string, expected: string, value: unknown): HeartbeatParse {
  return { ok: false, problem: `expected \`${field}\` to be ${expected}, got ${describeValue(value)}` };
}
