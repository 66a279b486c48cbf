import type { Incident } from '../results/incident.js';
import type { Result, State } from '../results/result.js';

/** What to watch and how often: the validated, frozen form of one config or API entry. */
export interface CheckSpec {
  /** Unique, stable id; metrics and incidents are keyed by it. */
  readonly id: string;
  /** Name of the registered Command that performs the check. */
  readonly command: string;
  /** Attributes for the command, already parsed by its `parse` at load time. */
  readonly attributes: unknown;
  /** Milliseconds between runs; `null` for a one-shot check that runs until it reaches a HARD state. */
  readonly intervalMs: number | null;
  /** Milliseconds a run may take before it is abandoned and reported `unknown` (`timeout`). */
  readonly timeoutMs: number;
  /** Milliseconds between runs while a non-OK state is being confirmed (SOFT) or a recovery is. */
  readonly retryIntervalMs: number;
  /** Consecutive non-OK results that make a state HARD and open an incident (≥ 1). */
  readonly maxAttempts: number;
  /** Consecutive OK results that resolve an open incident (≥ 1). */
  readonly recoverAfter: number;
  /** Names of the handlers that receive this check's outcomes, in order. */
  readonly handlers: readonly string[];
  /** Concurrency pool; `null` for the server's default. */
  readonly pool: string | null;
  /** Free-form labels for handlers (team, runbook, …). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Maintenance: while true, a HARD non-OK state opens no incident. */
  readonly suppressed: boolean;
}

/** HARD states are confirmed; SOFT ones are being confirmed by retries. */
export type StateType = 'soft' | 'hard';

/** What the engine remembers about a check between runs. */
export interface CheckState {
  /** The last confirmed (HARD) state. */
  readonly hardState: State;
  /** `soft` while a change away from `hardState` is being confirmed. */
  readonly stateType: StateType;
  /** Consecutive non-OK results while confirming a problem (0 when none). */
  readonly attempt: number;
  /** Consecutive OK results while confirming a recovery (0 when none). */
  readonly okStreak: number;
  readonly lastResult: Result | null;
  /** The open incident, if any. */
  readonly incident: Incident | null;
  /** Epoch milliseconds of the last HARD state change; `null` before the first. */
  readonly lastHardChangeAt: number | null;
}

export const initialCheckState: CheckState = Object.freeze({
  hardState: 'ok',
  stateType: 'hard',
  attempt: 0,
  okStreak: 0,
  lastResult: null,
  incident: null,
  lastHardChangeAt: null,
});

/** A check as a queue holds it: its spec, its state and when it is next due. */
export interface Check {
  spec: CheckSpec;
  state: CheckState;
  /** Epoch milliseconds of the next run. */
  dueAt: number;
  /**
   * The fixed-rate slot the schedule is anchored on: the due time of the last regular run.
   * Retries leave it alone, so a check returns to its own grid after a problem.
   */
  slotAt: number;
}
