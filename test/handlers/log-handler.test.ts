import { describe, expect, it } from 'vitest';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { initialCheckState, type CheckSpec, type CheckState } from '../../src/checks/check.js';
import type { Handler, HandlerContext, Outcome } from '../../src/handlers/handler.js';
import { logHandlerType } from '../../src/handlers/log-handler.js';
import type { Incident, IncidentEvent, IncidentEventType } from '../../src/results/incident.js';
import { gauge } from '../../src/results/metric.js';
import type { Result, State } from '../../src/results/result.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';

const spec: CheckSpec = {
  id: 'web',
  command: 'tcp',
  attributes: { host: 'localhost', port: 80 },
  intervalMs: 60_000,
  timeoutMs: 10_000,
  retryIntervalMs: 10_000,
  maxAttempts: 3,
  recoverAfter: 1,
  handlers: ['log'],
  pool: null,
  metadata: {},
  suppressed: false,
};

const ctx: HandlerContext = { signal: new AbortController().signal };

// pino's numeric levels
const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 } as const;

function result(state: State, overrides: Partial<Result> = {}): Result {
  return {
    state,
    reason: state === 'ok' ? 'ok' : 'refused',
    message: state === 'ok' ? 'connected in 3 ms' : 'connection refused',
    metrics: [gauge('connect_time', 3, 'ms'), gauge('packet_loss', 0, '%')],
    startedAt: 1_700_000_000_000,
    durationMs: 3,
    ...overrides,
  };
}

function incidentEvent(type: IncidentEventType): IncidentEvent {
  const incident: Incident = {
    id: 'web:1700000000000',
    checkId: 'web',
    openedAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    resolvedAt: type === 'resolve' ? 1_700_000_060_000 : null,
    state: 'crit',
    worstState: 'crit',
    reason: 'refused',
    acknowledgedAt: type === 'acknowledge' ? 1_700_000_030_000 : null,
    externalId: null,
  };
  return { type, incident };
}

interface OutcomeOptions {
  result: Result;
  previous?: CheckState;
  state?: Partial<CheckState>;
  incident?: IncidentEvent | null;
  logger: Logger;
}

function outcome({ result: runResult, previous = initialCheckState, state = {}, incident = null, logger }: OutcomeOptions): Outcome {
  return {
    check: spec,
    result: runResult,
    previous,
    state: { ...previous, lastResult: runResult, ...state },
    incident,
    logger: logger.child({ checkId: spec.id }),
  };
}

function handler(options: unknown = {}): Handler {
  const parsed = logHandlerType.parseOptions(options);
  if (!parsed.ok) throw new Error(`unexpected option issues: ${JSON.stringify(parsed.issues)}`);
  return logHandlerType.create('log', parsed.value, { logger: silentLogger(), registry: new Registry() });
}

async function run(log: Handler, value: Outcome): Promise<void> {
  await log.process?.(value, ctx);
}

describe('log handler options', () => {
  it('defaults to info and every run', () => {
    expect(logHandlerType.parseOptions(undefined)).toEqual({ ok: true, value: { level: 'info', onlyChanges: false } });
  });

  it('rejects unknown keys and levels', () => {
    const parsed = logHandlerType.parseOptions({ level: 'loud', verbose: true });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.issues.map((issue) => issue.path.join('.')).sort()).toEqual(['level', 'verbose']);
  });
});

describe('log handler', () => {
  it('logs an ok run at the configured level with its fields and the message', async () => {
    const { logger, lines } = capturingLogger('trace');
    await run(handler({ level: 'debug' }), outcome({ result: result('ok'), logger }));
    expect(lines).toHaveLength(1);
    const line = lines[0];
    expect(line).toMatchObject({
      level: LEVEL.debug,
      checkId: 'web',
      state: 'ok',
      reason: 'ok',
      durationMs: 3,
      stateType: 'hard',
      attempt: 0,
      metrics: { connect_time: 3, packet_loss: 0 },
      msg: 'connected in 3 ms',
    });
    expect(line).not.toHaveProperty('incident');
  });

  it('binds checkId once, through the child logger', async () => {
    // The raw line: parsing it would hide a duplicated key.
    const raw: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => raw.push(line) });
    await run(handler(), outcome({ result: result('ok'), logger }));
    expect(raw).toHaveLength(1);
    expect(raw[0]?.match(/"checkId"/g)).toHaveLength(1);
  });

  it('logs non-OK runs at warn, with the SOFT attempt', async () => {
    const { logger, lines } = capturingLogger('trace');
    await run(handler({ level: 'debug' }), outcome({ result: result('crit'), state: { stateType: 'soft', attempt: 2 }, logger }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: LEVEL.warn, state: 'crit', reason: 'refused', stateType: 'soft', attempt: 2, msg: 'connection refused' });
  });

  it('logs non-OK runs at error when OK runs log at error', async () => {
    const { logger, lines } = capturingLogger('trace');
    await run(handler({ level: 'error' }), outcome({ result: result('warn'), logger }));
    expect(lines[0]?.level).toBe(LEVEL.error);
  });

  it.each([
    ['open', 'crit', LEVEL.warn],
    ['update', 'unknown', LEVEL.warn],
    ['resolve', 'ok', LEVEL.info],
    ['acknowledge', 'crit', LEVEL.info],
  ] as const)('logs an incident %s at its own level with the incident id and event', async (type, state, level) => {
    const { logger, lines } = capturingLogger('trace');
    await run(handler({ level: 'trace' }), outcome({ result: result(state), incident: incidentEvent(type), logger }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level, state, incident: 'web:1700000000000', incidentEvent: type });
  });

  it('writes an empty metrics object for a run without metrics', async () => {
    const { logger, lines } = capturingLogger('trace');
    await run(handler(), outcome({ result: result('ok', { metrics: [] }), logger }));
    expect(lines[0]?.metrics).toEqual({});
  });

  it('writes nothing when the logger is above the line’s level', async () => {
    const { logger, lines } = capturingLogger('warn');
    const log = handler({ level: 'info' });
    await run(log, outcome({ result: result('ok'), logger }));
    await run(log, outcome({ result: result('ok'), incident: incidentEvent('resolve'), logger }));
    expect(lines).toHaveLength(0);
    await run(log, outcome({ result: result('crit'), logger }));
    expect(lines).toHaveLength(1);
  });

  it('reads no metrics when the level is disabled', async () => {
    const { logger, lines } = capturingLogger('warn');
    const metrics = new Proxy([], {
      get() {
        throw new Error('metrics were read although nothing is logged');
      },
    });
    await run(handler({ level: 'debug' }), outcome({ result: result('ok', { metrics }), logger }));
    expect(lines).toHaveLength(0);
  });
});

describe('log handler with onlyChanges', () => {
  const okState: CheckState = { ...initialCheckState, lastResult: result('ok') };
  const softCrit: CheckState = { ...initialCheckState, stateType: 'soft', attempt: 1, lastResult: result('crit') };

  it('skips a first OK run and OK runs after OK', async () => {
    const { logger, lines } = capturingLogger('trace');
    const log = handler({ onlyChanges: true });
    await run(log, outcome({ result: result('ok'), logger }));
    await run(log, outcome({ result: result('ok'), previous: okState, logger }));
    expect(lines).toHaveLength(0);
  });

  it('logs a change of state', async () => {
    const { logger, lines } = capturingLogger('trace');
    const log = handler({ onlyChanges: true });
    await run(log, outcome({ result: result('crit'), previous: okState, state: { stateType: 'soft', attempt: 1 }, logger }));
    await run(log, outcome({ result: result('warn'), previous: softCrit, state: { stateType: 'soft', attempt: 2 }, logger }));
    expect(lines.map((line) => line.state)).toEqual(['crit', 'warn']);
  });

  it('logs a change of state type only', async () => {
    const { logger, lines } = capturingLogger('trace');
    const log = handler({ onlyChanges: true });
    await run(log, outcome({ result: result('crit'), previous: softCrit, state: { stateType: 'soft', attempt: 2 }, logger }));
    expect(lines).toHaveLength(0);
    await run(log, outcome({ result: result('crit'), previous: softCrit, state: { hardState: 'crit', stateType: 'hard', attempt: 3 }, logger }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ state: 'crit', stateType: 'hard', attempt: 3 });
  });

  it('logs incident events even without a state change', async () => {
    const { logger, lines } = capturingLogger('trace');
    const hardCrit: CheckState = { ...softCrit, hardState: 'crit', stateType: 'hard', attempt: 3 };
    await run(handler({ onlyChanges: true }), outcome({ result: result('crit'), previous: hardCrit, incident: incidentEvent('acknowledge'), logger }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ incidentEvent: 'acknowledge', level: LEVEL.info });
  });
});
