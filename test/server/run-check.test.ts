import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { initialCheckState, type Check } from '../../src/checks/check.js';
import { defineCommand, listenForAbort, type AbortListener, type AnyCommand, type CommandContext } from '../../src/commands/command.js';
import { httpCommand } from '../../src/commands/http/http.js';
import type { CommandOutcome } from '../../src/results/result.js';
import { systemClock } from '../../src/core/clock.js';
import { InFlightRuns } from '../../src/server/in-flight-runs.js';
import { runCheck } from '../../src/server/run-check.js';
import { checkSpec, outcome } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';

/** Records what its abort listener was told, and settles when it is told: a command that honours aborts through `listenForAbort`. */
function listeningCommand(seen: { reason?: unknown; signalReason?: unknown }) {
  return defineCommand({
    name: 'listening',
    attributes: z.object({}),
    run: (_attributes, ctx) =>
      new Promise<CommandOutcome>((resolve) => {
        const stop = listenForAbort(ctx, (reason) => {
          seen.reason = reason;
          seen.signalReason = ctx.signal.reason;
          resolve(outcome('crit', 'timeout'));
        });
        if (stop === null) resolve(outcome('unknown', 'aborted-before'));
      }),
  });
}

function check(command: string, timeoutMs: number, attributes: unknown = {}): Check {
  return { spec: checkSpec({ id: 'c', command, timeoutMs, attributes }), state: initialCheckState, dueAt: Date.now(), slotAt: Date.now() };
}

function run(command: AnyCommand, target: Check, inFlight?: InFlightRuns) {
  return runCheck(target, { commands: new Map([[command.name, command]]), clock: systemClock, logger: silentLogger(), ...(inFlight ? { inFlight } : {}) });
}

describe('runCheck: abort listeners', () => {
  it('tells an onAbort listener at the deadline, with the reason the signal carries', async () => {
    const seen: { reason?: unknown; signalReason?: unknown } = {};
    const command = listeningCommand(seen);
    const result = await run(command, check('listening', 50));
    expect(result).toMatchObject({ kind: 'result', result: { state: 'crit', reason: 'timeout' } });
    expect(seen.reason).toBeInstanceOf(DOMException);
    expect((seen.reason as DOMException).name).toBe('TimeoutError');
    expect(seen.signalReason).toBe(seen.reason);
  });

  it('tells it when the server interrupts the run at stop, and the run settles as shutdown', async () => {
    const seen: { reason?: unknown } = {};
    const inFlight = new InFlightRuns();
    const running = run(listeningCommand(seen), check('listening', 60_000), inFlight);
    expect(inFlight.size).toBe(1);
    for (const each of inFlight) each.interrupt();
    expect(await running).toEqual({ kind: 'shutdown' });
    expect((seen.reason as DOMException).name).toBe('AbortError');
    expect(inFlight.size).toBe(0);
  });

  it('does not call a listener that was removed, nor one added after the abort', async () => {
    const calls: string[] = [];
    let lateStop: (() => void) | null | undefined;
    const command = defineCommand({
      name: 'removing',
      attributes: z.object({}),
      run: (_attributes, ctx: CommandContext) =>
        new Promise<CommandOutcome>((resolve) => {
          const removed = listenForAbort(ctx, () => calls.push('removed'));
          removed?.();
          listenForAbort(ctx, () => {
            calls.push('kept');
            lateStop = listenForAbort(ctx, () => calls.push('late'));
            resolve(outcome('crit', 'timeout'));
          });
        }),
    });
    await run(command, check('removing', 30));
    expect(calls).toEqual(['kept']);
    expect(lateStop).toBeNull();
  });

  it('keeps going when a listener throws: the run is abandoned at the deadline as unknown/timeout', async () => {
    const throwing: AbortListener = () => {
      throw new Error('listener broke');
    };
    const command = defineCommand({ name: 'throwing', attributes: z.object({}), run: (_attributes, ctx) => new Promise<CommandOutcome>(() => void listenForAbort(ctx, throwing)) });
    const result = await run(command, check('throwing', 30));
    expect(result).toMatchObject({ kind: 'result', result: { state: 'unknown', reason: 'timeout' } });
  });
});

describe('runCheck: the http command aborted through onAbort', () => {
  let server: HttpServer | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  it('reports timeout at the deadline and drops the connection of a server that never answers', async () => {
    let closed!: () => void;
    const connectionClosed = new Promise<void>((resolve) => (closed = resolve));
    server = createServer(() => undefined);
    server.on('connection', (socket) => socket.on('close', () => closed()));
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const http = httpCommand();
    const parsed = http.parse({ url: `http://127.0.0.1:${port}/` });
    if (!parsed.ok) throw new Error('unreachable');
    const result = await run(http, check('http', 200, parsed.value));
    expect(result).toMatchObject({ kind: 'result', result: { state: 'crit', reason: 'timeout' } });
    // Dropped by the run, not by the server: it never answers and has no timeout of its own.
    await connectionClosed;
  });
});
