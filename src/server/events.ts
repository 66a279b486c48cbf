import type { Check, CheckSpec, CheckState } from '../checks/check.js';
import type { Incident } from '../results/incident.js';
import type { Result } from '../results/result.js';

/** Emitted when a check's command starts. */
export interface CheckStartEvent {
  readonly check: Check;
  /** Milliseconds between the check's due time and its start. */
  readonly lagMs: number;
  /** The pool the check belongs to. */
  readonly pool: string;
}

/** Emitted when a check's run is over and its state is updated. */
export interface CheckFinishEvent {
  readonly check: CheckSpec;
  readonly result: Result;
  readonly state: CheckState;
  readonly lagMs: number;
  /** When it runs next (epoch ms); `null` for a one-shot check that is done. */
  readonly nextDueAt: number | null;
  /** Regular slots skipped because the run started late or ran long. */
  readonly missedSlots: number;
}

export interface IncidentEventPayload {
  readonly check: CheckSpec;
  readonly incident: Incident;
}

export interface ServerErrorEvent {
  readonly error: unknown;
  /** Where it happened: `handler:<name>:process`, `queue`, … */
  readonly source: string;
  readonly checkId?: string;
}

/** The Server's typed events (listener arguments as tuples, the form node's EventEmitter takes). */
export interface ServerEvents {
  'check:start': [CheckStartEvent];
  'check:finish': [CheckFinishEvent];
  'incident:open': [IncidentEventPayload];
  'incident:update': [IncidentEventPayload];
  'incident:resolve': [IncidentEventPayload];
  'incident:acknowledge': [IncidentEventPayload];
  /** Only emitted while someone listens: an unheard `error` must not throw out of the loop. */
  error: [ServerErrorEvent];
}
