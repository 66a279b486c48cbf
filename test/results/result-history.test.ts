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

  it('shares a total budget: with many checks each keeps fewer results, but always its last one', () => {
    const history = new ResultHistory({ perCheck: 4, total: 6 });
    for (let at = 1; at <= 5; at++) history.record('a', result(at));
    expect(history.results('a').map((r) => r.startedAt)).toEqual([5, 4, 3, 2]);
    // Two checks share six results: three each, trimmed as each records its next one.
    history.record('b', result(10));
    history.record('a', result(6));
    expect(history.results('a').map((r) => r.startedAt)).toEqual([6, 5, 4]);
    // Seven checks for six results: each keeps only its newest.
    for (const id of ['c', 'd', 'e', 'f', 'g']) history.record(id, result(20));
    history.record('a', result(7));
    history.record('b', result(11));
    expect(history.results('a').map((r) => r.startedAt)).toEqual([7]);
    expect(history.results('b').map((r) => r.startedAt)).toEqual([11]);
    expect(history.results('g').map((r) => r.startedAt)).toEqual([20]);
  });

  it('grows a check back to a list when forgotten checks leave room', () => {
    const history = new ResultHistory({ perCheck: 3, total: 3 });
    for (const id of ['a', 'b', 'c', 'd']) history.record(id, result(1));
    // Four checks for three results: a keeps only its newest.
    history.record('a', result(2));
    expect(history.results('a').map((r) => r.startedAt)).toEqual([2]);
    for (const id of ['b', 'c', 'd']) history.forget(id);
    history.record('a', result(3));
    history.record('a', result(4));
    history.record('a', result(5));
    expect(history.results('a').map((r) => r.startedAt)).toEqual([5, 4, 3]);
    expect(history.results('a', 0)).toEqual([]);
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
