import type { State } from './result.js';

/** An outage of one check: opened on a HARD non-OK state, resolved on confirmed recovery. */
export interface Incident {
  /** Unique across restarts: `<checkId>:<openedAt>`. */
  readonly id: string;
  readonly checkId: string;
  /** Epoch milliseconds. */
  readonly openedAt: number;
  /** Epoch milliseconds of the last change (severity, acknowledgement, resolution). */
  readonly updatedAt: number;
  /** Epoch milliseconds; `null` while open. */
  readonly resolvedAt: number | null;
  /** The check's current non-OK state (its last one, once resolved). */
  readonly state: State;
  /** The most severe state seen during the incident. */
  readonly worstState: State;
  /** Reason code of the result that last changed the incident. */
  readonly reason: string;
  /** Epoch milliseconds; `null` until someone acknowledges. */
  readonly acknowledgedAt: number | null;
  /** An id given by an outside system (a pager), set by a handler's `mutate` hook. */
  readonly externalId: string | null;
}

/** What happened to an incident in one step of the state machine. */
export const IncidentEventTypes = ['open', 'update', 'resolve', 'acknowledge'] as const;
export type IncidentEventType = (typeof IncidentEventTypes)[number];

export interface IncidentEvent {
  readonly type: IncidentEventType;
  readonly incident: Incident;
}
