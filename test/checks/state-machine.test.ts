import { describe, expect, it } from 'vitest';
import { initialCheckState, type CheckSpec, type CheckState } from '../../src/checks/check.js';
import { acknowledge, transition } from '../../src/checks/state-machine.js';
import type { IncidentEvent } from '../../src/results/incident.js';
import { toResult, type State } from '../../src/results/result.js';
import { checkSpec, outcome } from '../helpers/checks.js';

interface Step {
  readonly state: CheckState;
  readonly event: IncidentEvent | null;
  readonly retry: boolean;
}

/** Feeds results one a second; returns every step. */
function feed(spec: CheckSpec, states: readonly State[], from: CheckState = initialCheckState): Step[] {
  let state = from;
  return states.map((resultState, i) => {
    const step = transition(spec, state, toResult(outcome(resultState), i * 1000, 5), i * 1000);
    state = step.state;
    return step;
  });
}

/** `open:crit` for each incident event, `-` where none. */
function events(steps: readonly Step[]): string[] {
  return steps.map((step) => (step.event ? `${step.event.type}:${step.event.incident.state}` : '-'));
}

/** `HARD ok`, `SOFT crit#2` per step: state type, the state, and the attempt while soft. */
function states(steps: readonly Step[]): string[] {
  return steps.map(({ state }) => {
    const shown = state.stateType === 'soft' ? state.lastResult?.state : state.hardState;
    return `${state.stateType.toUpperCase()} ${String(shown)}${state.stateType === 'soft' ? `#${state.hardState === 'ok' ? state.attempt : state.okStreak}` : ''}`;
  });
}

describe('state machine', () => {
  const table: {
    name: string;
    spec: Partial<CheckSpec>;
    results: State[];
    states: string[];
    events: string[];
    retries: boolean[];
  }[] = [
    {
      name: 'ok stays HARD ok, no events',
      spec: { maxAttempts: 3 },
      results: ['ok', 'ok'],
      states: ['HARD ok', 'HARD ok'],
      events: ['-', '-'],
      retries: [false, false],
    },
    {
      name: 'soft attempts, then HARD crit opens one incident',
      spec: { maxAttempts: 3 },
      results: ['crit', 'crit', 'crit', 'crit'],
      states: ['SOFT crit#1', 'SOFT crit#2', 'HARD crit', 'HARD crit'],
      events: ['-', '-', 'open:crit', '-'],
      retries: [true, true, false, false],
    },
    {
      name: 'a soft problem that clears opens nothing',
      spec: { maxAttempts: 3 },
      results: ['crit', 'warn', 'ok', 'crit'],
      states: ['SOFT crit#1', 'SOFT warn#2', 'HARD ok', 'SOFT crit#1'],
      events: ['-', '-', '-', '-'],
      retries: [true, true, false, true],
    },
    {
      name: 'maxAttempts 1 opens at once; recovery resolves',
      spec: { maxAttempts: 1 },
      results: ['warn', 'ok'],
      states: ['HARD warn', 'HARD ok'],
      events: ['open:warn', 'resolve:warn'],
      retries: [false, false],
    },
    {
      name: 'severity changes update the open incident, no second one',
      spec: { maxAttempts: 1 },
      results: ['warn', 'crit', 'crit', 'warn', 'unknown'],
      states: ['HARD warn', 'HARD crit', 'HARD crit', 'HARD warn', 'HARD unknown'],
      events: ['open:warn', 'update:crit', '-', 'update:warn', 'update:unknown'],
      retries: [false, false, false, false, false],
    },
    {
      name: 'recoverAfter 3 needs three OKs in a row, retried meanwhile',
      spec: { maxAttempts: 1, recoverAfter: 3 },
      results: ['crit', 'ok', 'ok', 'crit', 'ok', 'ok', 'ok', 'ok'],
      states: ['HARD crit', 'SOFT ok#1', 'SOFT ok#2', 'HARD crit', 'SOFT ok#1', 'SOFT ok#2', 'HARD ok', 'HARD ok'],
      events: ['open:crit', '-', '-', '-', '-', '-', 'resolve:crit', '-'],
      retries: [false, true, true, false, true, true, false, false],
    },
    {
      name: 'a suppressed check goes HARD but opens no incident',
      spec: { maxAttempts: 2, suppressed: true },
      results: ['crit', 'crit', 'crit', 'ok'],
      states: ['SOFT crit#1', 'HARD crit', 'HARD crit', 'HARD ok'],
      events: ['-', '-', '-', '-'],
      retries: [true, false, false, false],
    },
  ];

  for (const row of table) {
    it(row.name, () => {
      const steps = feed(checkSpec({ id: 'c', ...row.spec }), row.results);
      expect(states(steps)).toEqual(row.states);
      expect(events(steps)).toEqual(row.events);
      expect(steps.map((step) => step.retry)).toEqual(row.retries);
    });
  }

  it('keeps the worst state and the opening time across updates, and resolves with a time', () => {
    const steps = feed(checkSpec({ id: 'c' }), ['warn', 'crit', 'warn', 'ok']);
    const update = steps[2]?.event?.incident;
    expect(update).toMatchObject({ state: 'warn', worstState: 'crit', openedAt: 0, updatedAt: 2000, resolvedAt: null });
    const resolved = steps[3]?.event?.incident;
    expect(resolved).toMatchObject({ id: 'c:0', checkId: 'c', worstState: 'crit', resolvedAt: 3000 });
    expect(steps[3]?.state.incident).toBeNull();
  });

  it('opens the incident once suppression is lifted while still down', () => {
    const down = feed(checkSpec({ id: 'c', suppressed: true }), ['crit']);
    const after = feed(checkSpec({ id: 'c', suppressed: false }), ['crit'], down[0]?.state);
    expect(down[0]?.event).toBeNull();
    expect(events(after)).toEqual(['open:crit']);
  });

  it('acknowledges an open incident once', () => {
    const [opened] = feed(checkSpec({ id: 'c' }), ['crit']);
    const acked = acknowledge(opened!.state, 5000);
    expect(acked?.event).toMatchObject({ type: 'acknowledge', incident: { acknowledgedAt: 5000, state: 'crit' } });
    expect(acked?.state.incident?.acknowledgedAt).toBe(5000);
    expect(acknowledge(acked!.state, 6000)).toBeNull();
    expect(acknowledge(initialCheckState, 6000)).toBeNull();
  });

  it('carries the acknowledgement through a severity update', () => {
    const [opened] = feed(checkSpec({ id: 'c' }), ['crit']);
    const acked = acknowledge(opened!.state, 500)!;
    const [updated] = feed(checkSpec({ id: 'c' }), ['warn'], acked.state);
    expect(updated?.event).toMatchObject({ type: 'update', incident: { acknowledgedAt: 500, state: 'warn' } });
  });
});
