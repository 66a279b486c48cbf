import type { CheckSpec } from '../../src/checks/check.js';
import { defineCommand, type AnyCommand } from '../../src/commands/command.js';
import type { CommandOutcome, State } from '../../src/results/result.js';
import { z } from 'zod';

/** A check spec with test defaults: 60 s interval, 10 s timeout, one attempt, the `noop` command. */
export function checkSpec(overrides: Partial<CheckSpec> & { id: string }): CheckSpec {
  return {
    command: 'noop',
    attributes: {},
    intervalMs: 60_000,
    timeoutMs: 10_000,
    retryIntervalMs: 15_000,
    maxAttempts: 1,
    recoverAfter: 1,
    handlers: [],
    pool: null,
    metadata: {},
    suppressed: false,
    ...overrides,
  };
}

export function outcome(state: State, reason: string = state === 'ok' ? 'ok' : 'test'): CommandOutcome {
  return { state, reason, message: `${state} (${reason})` };
}

/** Answers at once with `ok`. */
export const noopCommand: AnyCommand = defineCommand({
  name: 'noop',
  attributes: z.object({}),
  run: () => Promise.resolve(outcome('ok')),
});

/**
 * Answers each check's runs with the states scripted for its id, one per run (the last one repeats);
 * a run waits `delayMs` (on the timers, so fake timers control it) while honouring its signal.
 */
export function scriptedCommand(name: string, script: Record<string, readonly State[]>, delayMs = 0): AnyCommand {
  const calls = new Map<string, number>();
  return defineCommand({
    name,
    attributes: z.object({}).passthrough(),
    async run(_attributes, ctx) {
      const call = calls.get(ctx.checkId) ?? 0;
      calls.set(ctx.checkId, call + 1);
      const states = script[ctx.checkId] ?? ['ok'];
      const state = states[Math.min(call, states.length - 1)] as State;
      if (delayMs > 0) await sleep(delayMs, ctx.signal);
      return outcome(state);
    },
  });
}

/** Sleeps on the timers; rejects when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    }, { once: true });
  });
}
