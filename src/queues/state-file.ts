import { mkdir, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import type { Check, CheckSpec, CheckState } from '../checks/check.js';
import { firstDueAt } from '../checks/schedule.js';
import { MetricKinds, type Metric } from '../results/metric.js';
import { States } from '../results/result.js';
import { errorMessage } from '../core/errors.js';
import { isMapping, kindOf } from '../core/values.js';
import { nowOf, type Clock } from '../core/clock.js';

/**
 * The memory queue's check state kept across restarts, so that a restarted vigil neither forgets an
 * open incident nor alerts about it again. One JSON file, replaced atomically on every save:
 * `{ version: 1, savedAt, checks: { [id]: SavedCheck } }`.
 */

/** The version `saveState` writes and `loadState` accepts. */
export const STATE_FILE_VERSION = 1;

/** What is kept of one check. */
export interface SavedCheck {
  state: CheckState;
  /** Epoch milliseconds of the next run when the state was saved. */
  dueAt: number;
  /** Epoch milliseconds of the check's fixed-rate slot when the state was saved. */
  slotAt: number;
}

/** Writes the state of `checks` to `file` atomically (a reader sees the old file or the new one), creating its directory. */
export async function saveState(file: string, checks: Iterable<Check>, now: number): Promise<void> {
  // Read the checks before the first await: one consistent snapshot, however long the write takes.
  const entries: [string, SavedCheck][] = [];
  for (const check of checks) entries.push([check.spec.id, { state: check.state, dueAt: check.dueAt, slotAt: check.slotAt }]);
  // fromEntries defines own properties, so even an id like `__proto__` is kept as data.
  const data = { version: STATE_FILE_VERSION, savedAt: now, checks: Object.fromEntries(entries) };
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`);
}

/**
 * Reads the checks saved in `file`. A missing file gives an empty map. An unreadable or corrupt file, or
 * one of another version, is logged, renamed aside to `<file>.corrupt-<epochms>` so it is not lost, and
 * gives an empty map. An entry that is not a valid SavedCheck is logged and skipped.
 */
export async function loadState(file: string, logger: Logger): Promise<Map<string, SavedCheck>> {
  const saved = new Map<string, SavedCheck>();
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') return saved;
    await setAside(file, `cannot be read: ${errorMessage(error)}`, logger);
    return saved;
  }

  let checks: Record<string, unknown>;
  try {
    checks = parseEnvelope(text);
  } catch (error) {
    await setAside(file, errorMessage(error), logger);
    return saved;
  }

  for (const [id, entry] of Object.entries(checks)) {
    const parsed = savedCheckSchema.safeParse(entry);
    if (parsed.success) saved.set(id, parsed.data);
    else logger.warn({ file, checkId: id, problem: formatIssues(parsed.error) }, `skipping saved state of check "${id}": ${formatIssues(parsed.error)}`);
  }
  return saved;
}

/** Where a restored check stands in its schedule: next due time (`null`: a finished one-shot) and grid anchor. */
export interface RestoredSchedule {
  readonly dueAt: number | null;
  readonly slotAt: number;
}

/**
 * When a restored check runs next: its saved due time while that is still ahead, otherwise (vigil was
 * down past it) its spread first slot, so a restart does not run every overdue check at once. A saved
 * due time further ahead than the check's interval (or retry interval) could ever put it is from an
 * older config with a longer interval, and is not kept either. A check saved mid-retry keeps its grid
 * anchor, so it returns to its own slots afterwards; a one-shot check that had finished stays finished.
 */
export function restoredSchedule(saved: SavedCheck, spec: CheckSpec, now: number): RestoredSchedule {
  if (spec.intervalMs === null && saved.state.lastResult !== null && saved.state.stateType === 'hard') {
    return { dueAt: null, slotAt: saved.slotAt };
  }
  const furthest = spec.intervalMs === null ? Infinity : now + Math.max(spec.intervalMs, spec.retryIntervalMs);
  if (saved.dueAt > now && saved.dueAt <= furthest) {
    const retrying = saved.dueAt !== saved.slotAt && spec.intervalMs !== null && saved.slotAt <= saved.dueAt;
    return { dueAt: saved.dueAt, slotAt: retrying ? saved.slotAt : saved.dueAt };
  }
  const dueAt = firstDueAt(spec.id, spec.intervalMs, now);
  return { dueAt, slotAt: dueAt };
}

export interface StateFileWriterOptions {
  /** The state file. */
  readonly file: string;
  /** The checks to save, read at the start of each save. */
  readonly source: () => Iterable<Check>;
  /** Milliseconds between periodic saves (a positive integer). */
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Tells the time, written as `savedAt`; default `systemClock`. */
  readonly clock?: Clock;
}

/**
 * Saves the state file every `intervalMs` and once more on stop. Saves never overlap: one asked for
 * while another writes starts when that one is done, and calls made before it starts share it.
 */
export class StateFileWriter {
  readonly #file: string;
  readonly #source: () => Iterable<Check>;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | null = null;
  /** Settles when the last save asked for has finished; never rejects. */
  #tail: Promise<void> = Promise.resolve();
  /** The save asked for that has not started writing yet. */
  #pending: Promise<void> | null = null;
  #stopped: Promise<void> | null = null;

  constructor(options: StateFileWriterOptions) {
    const { intervalMs } = options;
    // setInterval fires at once for delays above 2^31 - 1 ms.
    if (!Number.isInteger(intervalMs) || intervalMs < 1 || intervalMs > 2_147_483_647) {
      throw new TypeError(`Expected \`intervalMs\` to be a positive integer up to 2147483647, got \`${String(intervalMs)}\` (${typeof intervalMs})`);
    }
    this.#file = options.file;
    this.#source = options.source;
    this.#intervalMs = intervalMs;
    this.#logger = options.logger;
    this.#now = nowOf(options.clock);
  }

  /** Starts the periodic saves; the timer does not keep the process alive. Calling it again does nothing. */
  start(): void {
    if (this.#stopped) throw new Error('a stopped StateFileWriter cannot start again; create a new one');
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      this.save().catch((error: unknown) => this.#logger.error({ err: error, file: this.#file }, 'saving the state file failed'));
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Saves now, after any save in progress; rejects when this save fails. */
  save(): Promise<void> {
    if (this.#pending) return this.#pending;
    const run = this.#tail.then(() => {
      this.#pending = null;
      return saveState(this.#file, this.#source(), this.#now());
    });
    this.#pending = run;
    this.#tail = run.then(noop, noop);
    return run;
  }

  /**
   * Stops the periodic saves and saves a last time. A failing last save is logged, not thrown, so the
   * rest of a shutdown goes on. Idempotent: every call returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#finalSave();
    return this.#stopped;
  }

  async #finalSave(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    try {
      await this.save();
    } catch (error) {
      this.#logger.error({ err: error, file: this.#file }, 'saving the state file on stop failed');
    }
  }
}

function noop(): void {}

const stateSchema = z.enum(States);
const metricSchema = z.object({
  name: z.string(),
  value: z.number(),
  unit: z.string(),
  kind: z.enum(MetricKinds),
  warn: z.number().optional(),
  crit: z.number().optional(),
});
const resultSchema = z.object({
  state: stateSchema,
  reason: z.string(),
  message: z.string(),
  // A metric JSON could not hold (a NaN value became null) is dropped rather than the whole check.
  metrics: z.array(z.unknown()).transform((items) => items.filter((item) => metricSchema.safeParse(item).success) as Metric[]),
  startedAt: z.number(),
  durationMs: z.number(),
});
const incidentSchema = z.object({
  id: z.string(),
  checkId: z.string(),
  openedAt: z.number(),
  updatedAt: z.number(),
  resolvedAt: z.number().nullable(),
  state: stateSchema,
  worstState: stateSchema,
  reason: z.string(),
  acknowledgedAt: z.number().nullable(),
  externalId: z.string().nullable(),
});
const checkStateSchema = z.object({
  hardState: stateSchema,
  stateType: z.enum(['soft', 'hard']),
  attempt: z.number().int().nonnegative(),
  okStreak: z.number().int().nonnegative(),
  lastResult: resultSchema.nullable(),
  incident: incidentSchema.nullable(),
  lastHardChangeAt: z.number().nullable(),
});
const savedCheckSchema = z.object({ state: checkStateSchema, dueAt: z.number(), slotAt: z.number() });

/** The checks of a state file's text; throws with what is wrong for anything that is not a version 1 file. */
function parseEnvelope(text: string): Record<string, unknown> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`is not valid JSON: ${errorMessage(error)}`, { cause: error });
  }
  if (!isMapping(data)) throw new Error(`is not a JSON object (got ${kindOf(data)})`);
  if (data.version !== STATE_FILE_VERSION) {
    throw new Error(`has version ${JSON.stringify(data.version) ?? 'undefined'}, expected ${STATE_FILE_VERSION}`);
  }
  if (typeof data.savedAt !== 'number') throw new Error(`has no numeric \`savedAt\` (got ${kindOf(data.savedAt)})`);
  if (!isMapping(data.checks)) throw new Error(`has no \`checks\` object (got ${kindOf(data.checks)})`);
  return data.checks;
}

async function setAside(file: string, problem: string, logger: Logger): Promise<void> {
  const aside = `${file}.corrupt-${Date.now()}`;
  try {
    await rename(file, aside);
    logger.warn({ file, problem, movedTo: aside }, `state file ${file} ${problem}; moved it to ${aside} and starting without saved state`);
  } catch (error) {
    logger.warn({ file, problem, err: error }, `state file ${file} ${problem}; could not move it aside, starting without saved state`);
  }
}

function formatIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(entry)'}: ${issue.message}`).join('; ');
}

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && 'code' in error;
}

