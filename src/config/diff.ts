import { isDeepStrictEqual } from 'node:util';
import type { CheckSpec } from '../checks/check.js';

/** How the checks of a reloaded config differ from the running ones. */
export interface CheckDiff {
  /** In `next` only, in `next`'s order. */
  readonly added: CheckSpec[];
  /** Ids in `current` only, in `current`'s order. */
  readonly removed: string[];
  /** In both with a different spec: the new spec, in `next`'s order. */
  readonly changed: CheckSpec[];
  /** Ids in both with deeply equal specs, in `next`'s order. */
  readonly unchanged: string[];
}

/** Compares two sets of checks by id; specs are compared deeply (`isDeepStrictEqual`). */
export function diffChecks(current: readonly CheckSpec[], next: readonly CheckSpec[]): CheckDiff {
  const before = new Map(current.map((spec) => [spec.id, spec]));
  const after = new Set(next.map((spec) => spec.id));
  const diff = { added: [] as CheckSpec[], removed: [] as string[], changed: [] as CheckSpec[], unchanged: [] as string[] };
  for (const spec of next) {
    const old = before.get(spec.id);
    if (old === undefined) diff.added.push(spec);
    else if (isDeepStrictEqual(old, spec)) diff.unchanged.push(spec.id);
    else diff.changed.push(spec);
  }
  for (const spec of current) if (!after.has(spec.id)) diff.removed.push(spec.id);
  return diff;
}
