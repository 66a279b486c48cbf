import { describe, expect, it } from 'vitest';
import { InFlightRuns, type InterruptibleRun } from '../../src/server/in-flight-runs.js';

function run(name: string, interrupted: string[]): InterruptibleRun & { name: string } {
  return { name, inFlightSlot: -1, interrupt: () => void interrupted.push(name) };
}

describe('InFlightRuns', () => {
  it('adds each run once, takes any out in O(1) and keeps the others', () => {
    const interrupted: string[] = [];
    const runs = new InFlightRuns();
    const [a, b, c] = [run('a', interrupted), run('b', interrupted), run('c', interrupted)];
    runs.add(a);
    runs.add(b);
    runs.add(c);
    runs.add(b);
    expect(runs.size).toBe(3);
    runs.delete(a);
    expect(a.inFlightSlot).toBe(-1);
    expect([...runs].map((r) => (r as typeof a).name).sort()).toEqual(['b', 'c']);
    runs.delete(a);
    expect(runs.size).toBe(2);
    runs.delete(c);
    runs.delete(b);
    expect(runs.size).toBe(0);
  });

  it('iterates over a copy, so runs can leave while they are interrupted', () => {
    const interrupted: string[] = [];
    const runs = new InFlightRuns();
    const all = ['a', 'b', 'c'].map((name) => run(name, interrupted));
    for (const each of all) {
      each.interrupt = () => {
        interrupted.push((each as { name: string }).name);
        runs.delete(each);
      };
      runs.add(each);
    }
    for (const each of runs) each.interrupt();
    expect(interrupted.sort()).toEqual(['a', 'b', 'c']);
    expect(runs.size).toBe(0);
  });
});
