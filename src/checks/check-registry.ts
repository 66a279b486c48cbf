import type { Check, CheckSpec, CheckState } from './check.js';

/** How a known check stands: waiting in line, running (claimed), or done (a finished one-shot check). */
export type CheckStatus = 'waiting' | 'running' | 'done';

/**
 * A queue that knows its checks by id and lets them be changed at runtime (TrackedMemoryQueue does).
 * The server uses it for acknowledgements, passive results and "run now"; commands that manage other
 * checks (`heartbeat-dir` attaches one check per heartbeat file) get it as `ctx.checks`.
 */
export interface CheckRegistry {
  /** The check with this id; `undefined` when unknown. */
  get(id: string): Check | undefined;
  /** Every known check. */
  list(): Check[];
  /** Whether the check waits, runs or is done; `undefined` when unknown. */
  status(id: string): CheckStatus | undefined;
  /** Adds a check, its first run spread across its interval. Throws when the id is taken. */
  add(spec: CheckSpec): Check;
  /** Replaces a check's spec, keeping its state; a running check takes it from its next run. */
  update(spec: CheckSpec): void;
  /** Removes a check; a running one is not put back. Returns false for an unknown id. */
  remove(id: string): boolean;
  /** Makes a check that is not running due at `dueAt` (default now). Returns false when it cannot. */
  reschedule(id: string, dueAt?: number): boolean;
  /** Replaces a check's runtime state. */
  setState(id: string, state: CheckState): boolean;
}

/** Whether a queue is also a CheckRegistry. */
export function isCheckRegistry(value: object): value is CheckRegistry {
  const candidate = value as Partial<CheckRegistry>;
  return typeof candidate.get === 'function' && typeof candidate.list === 'function' && typeof candidate.add === 'function' && typeof candidate.remove === 'function';
}
