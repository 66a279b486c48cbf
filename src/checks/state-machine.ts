import type { Incident, IncidentEvent } from '../results/incident.js';
import { severity, type Result } from '../results/result.js';
import type { CheckSpec, CheckState } from './check.js';

/** One step of the state machine: the new state, the incident event it raised, and when to run next. */
export interface Transition {
  readonly state: CheckState;
  readonly event: IncidentEvent | null;
  /** True while a problem or a recovery is being confirmed: the next run is at the retry interval. */
  readonly retry: boolean;
}

/**
 * Nagios semantics: a non-OK result from HARD OK starts SOFT attempts; `maxAttempts` non-OK results in a
 * row make the state HARD and open an incident (unless the check is suppressed); severity changes update
 * the open incident; `recoverAfter` OK results in a row resolve it.
 */
export function transition(spec: CheckSpec, state: CheckState, result: Result, now: number): Transition {
  const isOk = result.state === 'ok';
  if (state.hardState === 'ok') {
    if (isOk) {
      // The path of nearly every run: every field written out, so the new state is one object with its
      // fields in place (a spread adds them behind it in a second array, kept an interval per check).
      const steady: CheckState = { hardState: 'ok', stateType: 'hard', attempt: 0, okStreak: 0, lastResult: result, incident: state.incident, lastHardChangeAt: state.lastHardChangeAt };
      return { state: steady, event: null, retry: false };
    }
    const attempt = state.attempt + 1;
    if (attempt < spec.maxAttempts) {
      return { state: { ...state, stateType: 'soft', attempt, okStreak: 0, lastResult: result }, event: null, retry: true };
    }
    const incident = spec.suppressed ? null : openIncident(spec.id, result, now);
    return {
      state: { hardState: result.state, stateType: 'hard', attempt, okStreak: 0, lastResult: result, incident, lastHardChangeAt: now },
      event: incident ? { type: 'open', incident } : null,
      retry: false,
    };
  }

  if (isOk) {
    const okStreak = state.okStreak + 1;
    if (okStreak < spec.recoverAfter) {
      return { state: { ...state, stateType: 'soft', okStreak, lastResult: result }, event: null, retry: true };
    }
    const resolved = state.incident ? { ...state.incident, resolvedAt: now, updatedAt: now } : null;
    return {
      state: { hardState: 'ok', stateType: 'hard', attempt: 0, okStreak: 0, lastResult: result, incident: null, lastHardChangeAt: now },
      event: resolved ? { type: 'resolve', incident: resolved } : null,
      retry: false,
    };
  }

  // Still down, confirmed. A changed severity updates the incident; a check that was suppressed when it
  // went down opens its incident once the suppression is lifted.
  const changedAt = result.state === state.hardState ? state.lastHardChangeAt : now;
  const next = { ...state, hardState: result.state, stateType: 'hard' as const, okStreak: 0, lastResult: result, lastHardChangeAt: changedAt };
  if (!state.incident) {
    const incident = spec.suppressed ? null : openIncident(spec.id, result, now);
    return { state: { ...next, incident }, event: incident ? { type: 'open', incident } : null, retry: false };
  }
  if (state.incident.state === result.state) return { state: next, event: null, retry: false };
  const incident: Incident = {
    ...state.incident,
    state: result.state,
    worstState: severity(result.state) > severity(state.incident.worstState) ? result.state : state.incident.worstState,
    reason: result.reason,
    updatedAt: now,
  };
  return { state: { ...next, incident }, event: { type: 'update', incident }, retry: false };
}

/** Marks the open incident acknowledged; `null` when there is none or it already is. */
export function acknowledge(state: CheckState, now: number): Transition | null {
  if (!state.incident || state.incident.acknowledgedAt !== null) return null;
  const incident: Incident = { ...state.incident, acknowledgedAt: now, updatedAt: now };
  return { state: { ...state, incident }, event: { type: 'acknowledge', incident }, retry: false };
}

function openIncident(checkId: string, result: Result, now: number): Incident {
  return {
    id: `${checkId}:${now}`,
    checkId,
    openedAt: now,
    updatedAt: now,
    resolvedAt: null,
    state: result.state,
    worstState: result.state,
    reason: result.reason,
    acknowledgedAt: null,
    externalId: null,
  };
}
