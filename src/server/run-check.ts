import type { Logger } from 'pino';
import type { Check } from '../checks/check.js';
import type { AbortListener, AnyCommand, CommandContext } from '../commands/command.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import { EngineReasons, toResult, type CommandOutcome, type Result } from '../results/result.js';
import type { Clock } from '../core/clock.js';
import type { InFlightRuns, InterruptibleRun } from './in-flight-runs.js';
import { errorMessage } from '../core/errors.js';

export interface RunCheckDeps {
  readonly commands: ReadonlyMap<string, AnyCommand>;
  readonly clock: Clock;
  /** The run's child logger. */
  readonly logger: Logger;
  /**
   * Runs whose command is under way. A run is in it from the moment its command starts until it
   * settles, so that a server giving up on them at stop can `interrupt()` each one.
   */
  readonly inFlight?: InFlightRuns;
  /** Passed to the command as `ctx.checks`. */
  readonly checks?: CheckRegistry | undefined;
}

/** A run's Result, or `shutdown` when the server stopped it before it finished (no Result counts). */
export type RunOutcome = { readonly kind: 'result'; readonly result: Result } | { readonly kind: 'shutdown' };

/**
 * After the deadline aborts its signal, a command gets this long to return its own outcome (a tcp check
 * reports its own `timeout` as `crit`) before it is abandoned and reported `unknown`.
 */
export const ABANDON_GRACE_MS = 25;

/**
 * Runs a check's command once under its timeout and turns whatever happens into a Result: a returned
 * outcome, a thrown exception (`unknown`, `exception`), or a deadline that the command ignored
 * (`unknown`, `timeout`). Never rejects.
 */
export function runCheck(check: Check, deps: RunCheckDeps): Promise<RunOutcome> {
  const { spec } = check;
  const startedAt = deps.clock.now();
  const command = deps.commands.get(spec.command);
  if (!command) {
    const outcome: CommandOutcome = { state: 'unknown', reason: 'unknown-command', message: `no command named "${spec.command}" is registered` };
    return Promise.resolve({ kind: 'result', result: toResult(outcome, startedAt, 0) });
  }
  return new Promise((resolve) => new CheckRun(check, deps, startedAt, resolve).start(command));
}

/**
 * One run of a command, and the context the command sees. Up to ten thousand runs a second go through
 * here, so a run is one object: it is the command's context itself, it makes its AbortController only
 * when the command asks for `signal` (or when there is something to abort) and takes plain listeners
 * through `onAbort`, and the server reaches it at stop through `inFlight` rather than through a listener
 * on a shared signal.
 */
class CheckRun implements CommandContext, InterruptibleRun {
  readonly checkId: string;
  readonly deadline: number;
  readonly logger: Logger;
  readonly previous: Result | null;
  readonly checks?: CheckRegistry;
  readonly #check: Check;
  readonly #deps: RunCheckDeps;
  readonly #startedAt: number;
  readonly #resolve: (outcome: RunOutcome) => void;
  #controller: AbortController | undefined;
  /** What `onAbort` was given, in order; `null` until then, and once they have been called. */
  #abortListeners: AbortListener[] | null = null;
  #abortReason: DOMException | undefined;
  #deadlineTimer: unknown;
  #graceTimer: unknown;
  #settled = false;
  inFlightSlot = -1;

  constructor(check: Check, deps: RunCheckDeps, startedAt: number, resolve: (outcome: RunOutcome) => void) {
    this.checkId = check.spec.id;
    this.deadline = startedAt + check.spec.timeoutMs;
    this.logger = deps.logger;
    this.previous = check.state.lastResult;
    if (deps.checks) this.checks = deps.checks;
    this.#check = check;
    this.#deps = deps;
    this.#startedAt = startedAt;
    this.#resolve = resolve;
  }

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  onAbort(listener: AbortListener): (() => void) | null {
    if (this.#abortReason !== undefined) return null;
    (this.#abortListeners ??= []).push(listener);
    return () => {
      const index = this.#abortListeners?.indexOf(listener) ?? -1;
      if (index >= 0) this.#abortListeners?.splice(index, 1);
    };
  }

  start(command: AnyCommand): void {
    const { clock, inFlight } = this.#deps;
    const { timeoutMs } = this.#check.spec;
    inFlight?.add(this);
    this.#deadlineTimer = clock.setTimeout(() => this.#onDeadline(), timeoutMs);
    let running: Promise<CommandOutcome>;
    try {
      running = command.run(this.#check.spec.attributes, this);
    } catch (error) {
      this.#threw(error);
      return;
    }
    // Settling first wins; an abandoned command that rejects later is ignored, never unhandled.
    running.then(
      (outcome) => this.#finish(outcome),
      (error: unknown) => this.#threw(error),
    );
  }

  interrupt(): void {
    if (this.#settled) return;
    this.#abort(new DOMException('the server is stopping', 'AbortError'));
    this.#settle({ kind: 'shutdown' });
  }

  #onDeadline(): void {
    const { timeoutMs } = this.#check.spec;
    this.#abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError'));
    this.#graceTimer = this.#deps.clock.setTimeout(() => {
      this.#deps.logger.warn({ timeoutMs }, 'command ignored its deadline and was abandoned');
      this.#finish({ state: 'unknown', reason: EngineReasons.timeout, message: `timed out after ${timeoutMs} ms` });
    }, ABANDON_GRACE_MS);
  }

  #threw(error: unknown): void {
    if (this.#settled) return;
    this.#deps.logger.warn({ err: error }, 'command threw');
    this.#finish({ state: 'unknown', reason: EngineReasons.exception, message: errorMessage(error) });
  }

  #finish(outcome: CommandOutcome): void {
    if (this.#settled) return;
    const durationMs = this.#deps.clock.now() - this.#startedAt;
    this.#settle({ kind: 'result', result: toResult(outcome, this.#startedAt, durationMs) });
  }

  #settle(outcome: RunOutcome): void {
    this.#settled = true;
    const { clock, inFlight } = this.#deps;
    clock.clearTimeout(this.#deadlineTimer);
    if (this.#graceTimer !== undefined) clock.clearTimeout(this.#graceTimer);
    inFlight?.delete(this);
    this.#resolve(outcome);
  }

  /**
   * Aborts the signal the command holds (one it never asked for is made aborted, in case it asks later)
   * and calls the `onAbort` listeners. Once: a stop during the deadline's grace changes nothing.
   */
  #abort(reason: DOMException): void {
    if (this.#abortReason !== undefined) return;
    this.#abortReason = reason;
    (this.#controller ??= new AbortController()).abort(reason);
    const listeners = this.#abortListeners;
    this.#abortListeners = null;
    for (const listener of listeners ?? []) {
      try {
        listener(reason);
      } catch (error) {
        // As an exception in the command itself: the run still settles (at the deadline's grace at the latest).
        this.#deps.logger.warn({ err: error }, 'an abort listener threw');
      }
    }
  }
}
