import { Counter, Gauge, register as globalRegistry, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { initialCheckState, type CheckSpec, type CheckState } from '../../../src/checks/check.js';
import type { Handler, HandlerContext, Outcome } from '../../../src/handlers/handler.js';
import { prometheusHandlerType } from '../../../src/handlers/prometheus/prometheus-handler.js';
import type { IncidentEvent } from '../../../src/results/incident.js';
import { counter, gauge, type Metric } from '../../../src/results/metric.js';
import type { Result, State } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';

const ctx: HandlerContext = { signal: new AbortController().signal };
const logger = silentLogger();

function spec(id: string, command = 'tcp'): CheckSpec {
  return {
    id,
    command,
    attributes: {},
    intervalMs: 60_000,
    timeoutMs: 10_000,
    retryIntervalMs: 10_000,
    maxAttempts: 3,
    recoverAfter: 1,
    handlers: ['prometheus'],
    pool: null,
    metadata: {},
    suppressed: false,
  };
}

function result(state: State, durationMs = 250, startedAt = 1_700_000_000_000): Result {
  return { state, reason: state === 'ok' ? 'ok' : 'refused', message: state, metrics: [], startedAt, durationMs };
}

function outcome(check: CheckSpec, runResult: Result, state: Partial<CheckState> = {}, incident: IncidentEvent | null = null): Outcome {
  return {
    check,
    result: runResult,
    previous: initialCheckState,
    state: { ...initialCheckState, lastResult: runResult, ...state },
    incident,
    logger,
  };
}

function handler(registry: Registry, name = 'prometheus'): Handler {
  const parsed = prometheusHandlerType.parseOptions(undefined);
  if (!parsed.ok) throw new Error('unexpected option issues');
  return prometheusHandlerType.create(name, parsed.value, { logger, registry });
}

async function run(prometheus: Handler, value: Outcome): Promise<void> {
  await prometheus.process?.(value, ctx);
}

/** The sample lines (no HELP/TYPE) of the registry's exposition. */
async function samples(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('prometheus handler', () => {
  it('rejects options', () => {
    expect(prometheusHandlerType.parseOptions({ port: 9100 }).ok).toBe(false);
  });

  it('exposes the last run of a check', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web'), result('crit', 1500, 1_700_000_123_000), { stateType: 'soft', attempt: 2 }));

    const lines = await samples(registry);
    expect(lines).toEqual(
      expect.arrayContaining([
        'vigil_check_up{check="web"} 0',
        'vigil_check_state{check="web"} 2',
        'vigil_check_last_duration_seconds{check="web"} 1.5',
        'vigil_check_duration_seconds_bucket{le="2.5",command="tcp"} 1',
        'vigil_check_duration_seconds_bucket{le="1",command="tcp"} 0',
        'vigil_check_duration_seconds_count{command="tcp"} 1',
        'vigil_check_last_run_timestamp_seconds{check="web"} 1700000123',
        'vigil_check_attempts{check="web"} 2',
        'vigil_check_runs_total{check="web",command="tcp",state="crit"} 1',
      ]),
    );
  });

  it.each([
    ['ok', 1, 0],
    ['warn', 1, 1],
    ['crit', 0, 2],
    ['unknown', 0, 3],
  ] as const)('reports %s as up %i, state %i', async (state, up, code) => {
    const registry = new Registry();
    await run(handler(registry), outcome(spec('web'), result(state)));
    expect(await registry.getSingleMetricAsString('vigil_check_up')).toContain(`vigil_check_up{check="web"} ${up}`);
    expect(await registry.getSingleMetricAsString('vigil_check_state')).toContain(`vigil_check_state{check="web"} ${code}`);
  });

  it('counts runs by state, from 0 for every state', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    for (const state of ['ok', 'ok', 'crit', 'ok', 'warn', 'ok'] as const) await run(prometheus, outcome(spec('web'), result(state)));

    const text = await registry.getSingleMetricAsString('vigil_check_runs_total');
    expect(text).toContain('vigil_check_runs_total{check="web",command="tcp",state="ok"} 4');
    expect(text).toContain('vigil_check_runs_total{check="web",command="tcp",state="warn"} 1');
    expect(text).toContain('vigil_check_runs_total{check="web",command="tcp",state="crit"} 1');
    expect(text).toContain('vigil_check_runs_total{check="web",command="tcp",state="unknown"} 0');
  });

  it('does not count an acknowledgement as a run', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    const crit = result('crit');
    await run(prometheus, outcome(spec('web'), crit));
    const ack: IncidentEvent = {
      type: 'acknowledge',
      incident: {
        id: 'web:1',
        checkId: 'web',
        openedAt: 1,
        updatedAt: 2,
        resolvedAt: null,
        state: 'crit',
        worstState: 'crit',
        reason: 'refused',
        acknowledgedAt: 2,
        externalId: null,
      },
    };
    await run(prometheus, outcome(spec('web'), crit, {}, ack));
    expect(await registry.getSingleMetricAsString('vigil_check_runs_total')).toContain('state="crit"} 1');
  });

  it('keeps checks apart', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web'), result('ok')));
    await run(prometheus, outcome(spec('db', 'ping'), result('crit')));
    const lines = await samples(registry);
    expect(lines).toContain('vigil_check_up{check="web"} 1');
    expect(lines).toContain('vigil_check_up{check="db"} 0');
    expect(lines).toContain('vigil_check_runs_total{check="db",command="ping",state="crit"} 1');
  });

  it('removes every series of a removed check and keeps the others', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web'), result('ok')));
    await run(prometheus, outcome(spec('db', 'ping'), result('crit')));

    prometheus.checkRemoved?.('web');

    const lines = await samples(registry);
    expect(lines.filter((line) => line.includes('check="web"'))).toEqual([]);
    // db: up, state, last duration, last run, attempts and four runs_total states
    expect(lines.filter((line) => line.includes('check="db"'))).toHaveLength(9);
    // The duration histogram is by command, not by check: removing a check leaves it alone.
    expect(lines).toContain('vigil_check_duration_seconds_count{command="tcp"} 1');
  });

  it('forgets a removed check’s series that a command change left behind', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web', 'tcp'), result('ok')));
    await run(prometheus, outcome(spec('web', 'http'), result('ok')));

    const lines = await samples(registry);
    expect(lines.filter((line) => line.includes('check="web"') && line.includes('command="tcp"'))).toEqual([]);
    expect(lines).toContain('vigil_check_runs_total{check="web",command="http",state="ok"} 1');
  });

  it('exposes a check again after it was removed and comes back', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web'), result('ok')));
    prometheus.checkRemoved?.('web');
    await run(prometheus, outcome(spec('web'), result('crit')));
    const lines = await samples(registry);
    expect(lines).toContain('vigil_check_up{check="web"} 0');
    expect(lines).toContain('vigil_check_runs_total{check="web",command="tcp",state="ok"} 0');
    expect(lines).toContain('vigil_check_runs_total{check="web",command="tcp",state="crit"} 1');
  });

  it('ignores the removal of a check it never saw', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web'), result('ok')));
    prometheus.checkRemoved?.('nope');
    expect(await samples(registry)).toContain('vigil_check_up{check="web"} 1');
  });

  it('shares the metrics with a second handler on the same registry', async () => {
    const registry = new Registry();
    const first = handler(registry, 'prometheus');
    const second = handler(registry, 'prometheus-premium');
    await run(first, outcome(spec('web'), result('ok')));
    await run(second, outcome(spec('db'), result('crit')));

    const lines = await samples(registry);
    expect(lines).toContain('vigil_check_up{check="web"} 1');
    expect(lines).toContain('vigil_check_up{check="db"} 0');
    expect(registry.getMetricsAsArray().map((metric) => metric.name).sort()).toEqual([
      'vigil_check_attempts',
      'vigil_check_duration_seconds',
      'vigil_check_last_duration_seconds',
      'vigil_check_last_run_timestamp_seconds',
      'vigil_check_metric',
      'vigil_check_metric_total',
      'vigil_check_runs_total',
      'vigil_check_state',
      'vigil_check_up',
    ]);

    second.checkRemoved?.('db');
    expect((await samples(registry)).filter((line) => line.includes('check="db"'))).toEqual([]);
  });

  it('registers on the given registry, not the global one', async () => {
    const registry = new Registry();
    await run(handler(registry), outcome(spec('web'), result('ok')));
    expect(registry.getSingleMetric('vigil_check_up')).toBeDefined();
    expect(globalRegistry.getSingleMetric('vigil_check_up')).toBeUndefined();
    expect(await globalRegistry.metrics()).not.toContain('vigil_check');
  });

  it('says what is wrong when the registry has a metric of that name of another kind', () => {
    const registry = new Registry();
    new Counter({ name: 'vigil_check_up', help: 'not ours', registers: [registry] });
    expect(() => handler(registry)).toThrow(/vigil_check_up.*gauge labelled check, got a counter labelled \(none\)/);
  });

  it('says what is wrong when the registry has a metric of that name with other labels', () => {
    const registry = new Registry();
    new Gauge({ name: 'vigil_check_runs_total', help: 'not ours', labelNames: ['check'], registers: [registry] });
    expect(() => handler(registry)).toThrow(/vigil_check_runs_total.*counter labelled check, command, state, got a gauge labelled check$/);
  });

  it('exposes every Result Metric: gauges as vigil_check_metric, counters as vigil_check_metric_total', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    const withMetrics = (metrics: Metric[]): Result => ({ ...result('ok'), metrics });
    await run(prometheus, outcome(spec('worker'), withMetrics([gauge('age', 3.5, 's'), counter('beat', 10)])));
    await run(prometheus, outcome(spec('worker'), withMetrics([gauge('age', 1, 's'), counter('beat', 14)])));
    let lines = await samples(registry);
    expect(lines).toContain('vigil_check_metric{check="worker",metric="age"} 1');
    expect(lines).toContain('vigil_check_metric_total{check="worker",metric="beat"} 14');
    // The process restarted its count: the series starts over.
    await run(prometheus, outcome(spec('worker'), withMetrics([gauge('age', 0.2, 's'), counter('beat', 2)])));
    lines = await samples(registry);
    expect(lines).toContain('vigil_check_metric_total{check="worker",metric="beat"} 2');
    prometheus.checkRemoved?.('worker');
    expect((await samples(registry)).filter((line) => line.includes('worker'))).toEqual([]);
  });
  it('starts a series afresh when a Result Metric changes kind, and ignores values it cannot expose', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    const withMetrics = (metrics: Metric[]): Result => ({ ...result('ok'), metrics });
    await run(prometheus, outcome(spec('worker'), withMetrics([gauge('queue', 7), counter('beat', 5)])));
    await run(prometheus, outcome(spec('worker'), withMetrics([counter('queue', 3), gauge('lag', Number.NaN), counter('beat', -1)])));
    const lines = await samples(registry);
    expect(lines.filter((line) => line.includes('metric="queue"'))).toEqual(['vigil_check_metric_total{check="worker",metric="queue"} 3']);
    expect(lines.filter((line) => line.includes('metric="lag"'))).toEqual([]);
    expect(lines).toContain('vigil_check_metric_total{check="worker",metric="beat"} 5');
  });

  it('drops the Result Metrics of a check whose command changed', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web', 'tcp'), { ...result('ok'), metrics: [gauge('connect_time', 0.2, 's')] }));
    await run(prometheus, outcome(spec('web', 'http'), { ...result('ok'), metrics: [gauge('response_time', 0.3, 's')] }));
    const lines = await samples(registry);
    expect(lines.filter((line) => line.includes('metric="connect_time"'))).toEqual([]);
    expect(lines).toContain('vigil_check_metric{check="web",metric="response_time"} 0.3');
  });

  it('gives every sample all its labels as JSON', async () => {
    const registry = new Registry();
    await run(handler(registry), outcome(spec('web'), { ...result('warn'), metrics: [gauge('rtt', 2)] }));
    const json = await registry.getMetricsAsJSON();
    const values = (name: string) => json.find((metric) => metric.name === name)?.values;
    expect(values('vigil_check_up')).toEqual([{ value: 1, labels: { check: 'web' } }]);
    expect(values('vigil_check_runs_total')).toContainEqual({ value: 1, labels: { check: 'web', command: 'tcp', state: 'warn' } });
    expect(values('vigil_check_metric')).toEqual([{ value: 2, labels: { check: 'web', metric: 'rtt' } }]);
    expect(json.find((metric) => metric.name === 'vigil_check_runs_total')?.type).toBe('counter');
  });

  it('adds the registry’s default labels', async () => {
    const registry = new Registry();
    registry.setDefaultLabels({ instance: 'a' });
    await run(handler(registry), outcome(spec('web'), result('ok')));
    const lines = await samples(registry);
    expect(lines).toContain('vigil_check_up{check="web",instance="a"} 1');
    expect(lines).toContain('vigil_check_runs_total{check="web",instance="a",command="tcp",state="ok"} 1');
  });

  it('forgets every check when the registry resets its metrics', async () => {
    const registry = new Registry();
    const prometheus = handler(registry);
    await run(prometheus, outcome(spec('web'), result('ok')));
    registry.resetMetrics();
    expect((await samples(registry)).filter((line) => line.includes('check="web"'))).toEqual([]);
    await run(prometheus, outcome(spec('web'), result('crit')));
    expect(await samples(registry)).toContain('vigil_check_runs_total{check="web",command="tcp",state="ok"} 0');
  });

  it('says what is wrong when the registry has a metric of that name and kind that is not the handler’s', () => {
    const registry = new Registry();
    new Gauge({ name: 'vigil_check_state', help: 'not ours', labelNames: ['check'], registers: [registry] });
    expect(() => handler(registry)).toThrow(/vigil_check_state.*gauge labelled check of vigil's prometheus handler, got a gauge labelled check that other code registered/);
    // Nothing half-registered: the conflict is found before anything is added.
    expect(registry.getSingleMetric('vigil_check_up')).toBeUndefined();
  });
});
