import { describe, expect, it } from 'vitest';
import type { Incident } from '../../src/results/incident.js';
import { ResultHistory } from '../../src/results/result-history.js';
import { toResult } from '../../src/results/result.js';
import { outcome } from '../helpers/checks.js';

const result = (at: number) => toResult(outcome('ok'), at, 1);

describe('ResultHistory', () => {
  it('keeps the last results of each check, newest first, bounded', () => {
    const history = new ResultHistory({ perCheck: 3 });
    for (let at = 1; at <= 5; at++) history.record('a', result(at));
    history.record('b', result(9));
    expect(history.results('a').map((r) => r.startedAt)).toEqual([5, 4, 3]);
    expect(history.results('a', 2).map((r) => r.startedAt)).toEqual([5, 4]);
    expect(history.results('b').map((r) => r.startedAt)).toEqual([9]);
    expect(history.results('none')).toEqual([]);
    history.forget('a');
    expect(history.results('a')).toEqual([]);
  });

  it('keeps the last resolved incidents, newest first, bounded', () => {
    const history = new ResultHistory({ resolvedIncidents: 2 });
    for (const id of ['x:1', 'x:2', 'x:3']) history.recordResolved({ id } as Incident);
    expect(history.resolvedIncidents().map((incident) => incident.id)).toEqual(['x:3', 'x:2']);
  });

  it('keeps nothing with perCheck 0', () => {
    const history = new ResultHistory({ perCheck: 0 });
    history.record('a', result(1));
    expect(history.results('a')).toEqual([]);
  });
});
