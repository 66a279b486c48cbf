import type { Metric } from './metric.js';

/** The four states of a check run, in Nagios order: their index is the Nagios exit code. */
export const States = ['ok', 'warn', 'crit', 'unknown'] as const;
export type State = (typeof States)[number];

/** Nagios exit code of a state: ok 0, warn 1, crit 2, unknown 3. */
export function stateCode(state: State): 0 | 1 | 2 | 3 {
  return States.indexOf(state) as 0 | 1 | 2 | 3;
}

/**
 * How bad a state is, for keeping an incident's worst state: ok < warn < unknown < crit.
 * (`unknown` says nothing about the target, so a confirmed `crit` outranks it.)
 */
export function severity(state: State): number {
  return SEVERITY[state];
}
const SEVERITY: Record<State, number> = { ok: 0, warn: 1, unknown: 2, crit: 3 };

/** Reason codes the engine itself gives; commands add their own (`refused`, `dns`, …). */
export const EngineReasons = {
  ok: 'ok',
  timeout: 'timeout',
  exception: 'exception',
  shutdown: 'shutdown',
} as const;

/** The outcome of one run of a check. */
export interface Result {
  readonly state: State;
  /** Machine-readable cause, kebab-case: `ok`, `timeout`, `refused`, `unexpected-response`, … */
  readonly reason: string;
  /** One human-readable line. */
  readonly message: string;
  readonly metrics: readonly Metric[];
  /** Epoch milliseconds when the run started. */
  readonly startedAt: number;
  /** Wall-clock duration of the run in milliseconds. */
  readonly durationMs: number;
}

/** The parts of a Result a command decides; the engine adds the timing. */
export type CommandOutcome = Pick<Result, 'state' | 'reason' | 'message'> & { readonly metrics?: readonly Metric[] };

/** Completes a command's outcome with the run's timing. */
/** The metrics of a Result that has none: one shared array rather than one per run (most runs keep their Result for an interval). */
const NO_METRICS: readonly Metric[] = Object.freeze([]);

export function toResult(outcome: CommandOutcome, startedAt: number, durationMs: number): Result {
  return {
    state: outcome.state,
    reason: outcome.reason,
    message: outcome.message,
    metrics: outcome.metrics ?? NO_METRICS,
    startedAt,
    durationMs,
  };
}
