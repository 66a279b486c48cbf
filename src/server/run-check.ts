import type { Logger } from 'pino';
import type { Check } from '../checks/check.js';
import type { AnyCommand, CommandContext } from '../commands/command.js';
import type { CheckRegistry } from '../queues/check-registry.js';
import { EngineReasons, toResult, type CommandOutcome, type Result } from '../results/result.js';
import type { Clock } from './clock.js';

export interface RunCheckDeps {
  readonly commands: ReadonlyMap<string, AnyCommand>;
  readonly clock: Clock;
  /** The run's child logger. */
  readonly logger: Logger;
  /** Aborted when the server gives up waiting for in-flight runs at stop. */
  readonly stopSignal: AbortSignal;
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

const SHUTDOWN = Symbol('shutdown');
const ABANDONED = Symbol('abandoned');

/**
 * Runs a check's command once under its timeout and turns whatever happens into a Result: a returned
 * outcome, a thrown exception (`unknown`, `exception`), or a deadline that the command ignored
 * (`unknown`, `timeout`). Never throws.
 */
export async function runCheck(check: Check, deps: RunCheckDeps): Promise<RunOutcome> {
  const { spec } = check;
  const { clock, stopSignal } = deps;
  const startedAt = clock.now();
  const command = deps.commands.get(spec.command);
  if (!command) {
    const outcome: CommandOutcome = { state: 'unknown', reason: 'unknown-command', message: `no command named "${spec.command}" is registered` };
    return { kind: 'result', result: toResult(outcome, startedAt, 0) };
  }

  const controller = new AbortController();
  const deadline = startedAt + spec.timeoutMs;
  let settle!: (value: typeof SHUTDOWN | typeof ABANDONED) => void;
  const interrupted = new Promise<typeof SHUTDOWN | typeof ABANDONED>((resolve) => (settle = resolve));
  let graceTimer: unknown;
  const deadlineTimer = clock.setTimeout(() => {
    controller.abort(new DOMException(`timed out after ${spec.timeoutMs} ms`, 'TimeoutError'));
    graceTimer = clock.setTimeout(() => settle(ABANDONED), ABANDON_GRACE_MS);
  }, spec.timeoutMs);
  const onStop = (): void => {
    controller.abort(new DOMException('the server is stopping', 'AbortError'));
    settle(SHUTDOWN);
  };
  if (stopSignal.aborted) onStop();
  else stopSignal.addEventListener('abort', onStop, { once: true });

  const ctx: CommandContext = {
    checkId: spec.id,
    signal: controller.signal,
    deadline,
    logger: deps.logger,
    previous: check.state.lastResult,
    ...(deps.checks ? { checks: deps.checks } : {}),
  };
  let outcome: CommandOutcome | typeof SHUTDOWN | typeof ABANDONED;
  try {
    const running = command.run(spec.attributes, ctx);
    // An abandoned command may still reject later; that must not become an unhandled rejection.
    running.catch(() => undefined);
    outcome = await Promise.race([running, interrupted]);
  } catch (error) {
    outcome = {
      state: 'unknown',
      reason: EngineReasons.exception,
      message: error instanceof Error ? error.message : String(error),
    };
    deps.logger.warn({ err: error }, 'command threw');
  } finally {
    clock.clearTimeout(deadlineTimer);
    if (graceTimer !== undefined) clock.clearTimeout(graceTimer);
    stopSignal.removeEventListener('abort', onStop);
  }

  if (outcome === SHUTDOWN) return { kind: 'shutdown' };
  const durationMs = clock.now() - startedAt;
  if (outcome === ABANDONED) {
    deps.logger.warn({ timeoutMs: spec.timeoutMs }, 'command ignored its deadline and was abandoned');
    outcome = { state: 'unknown', reason: EngineReasons.timeout, message: `timed out after ${spec.timeoutMs} ms` };
  }
  return { kind: 'result', result: toResult(outcome, startedAt, durationMs) };
}
