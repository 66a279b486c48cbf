import { spawnSync } from 'node:child_process';
import { Counter, Gauge, Histogram, Registry, Summary, type OpenMetricsContentType } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { initialCheckState, type CheckSpec } from '../../../src/checks/check.js';
import type { Handler } from '../../../src/handlers/handler.js';
import { prometheusHandlerType } from '../../../src/handlers/prometheus/prometheus-handler.js';
import { counter, gauge, type Metric } from '../../../src/results/metric.js';
import type { Result, State } from '../../../src/results/result.js';
import { exposition } from '../../../src/metrics/exposition.js';
import { checkSpec } from '../../helpers/checks.js';
import { silentLogger } from '../../helpers/logger.js';

/**
 * The `prometheus` handler's series through the sliced exposition `/metrics` serves: the same text as
 * `registry.metrics()` (prom-client's own formatting of the same records), byte for byte.
 */

const logger = silentLogger();
const ctx = { signal: new AbortController().signal };
const STATES: readonly State[] = ['ok', 'warn', 'crit', 'unknown'];

function spec(id: string, command = 'tcp'): CheckSpec {
  return checkSpec({ id, command, handlers: ['prometheus'] });
}

function handler(registry: Registry): Handler {
  const parsed = prometheusHandlerType.parseOptions(undefined);
  if (!parsed.ok) throw new Error('unexpected option issues');
  return prometheusHandlerType.create('prometheus', parsed.value, { logger, registry });
}

async function run(prometheus: Handler, id: string, index: number, command = index % 3 === 0 ? 'http' : 'tcp'): Promise<void> {
  const metrics: Metric[] = [gauge('connect_time', 0.0001 + (index % 997) / 100_000, 's')];
  if (index % 4 === 0) metrics.push(counter('beats', index));
  if (index % 7 === 0) metrics.push(gauge('odd "name"\\', index / 3));
  const result: Result = {
    state: STATES[index % STATES.length] as State,
    reason: 'ok',
    message: 'x',
    metrics,
    startedAt: 1_700_000_000_000 + index * 7,
    durationMs: 0.25 + (index % 113) / 7,
  };
  const state = { ...initialCheckState, lastResult: result, attempt: index % 3 };
  await prometheus.process?.({ check: spec(id, command), result, state, previous: initialCheckState, incident: null, logger }, ctx);
}

/** Ids as operators write them, and the awkward ones: quotes, backslashes, a line feed, non-ASCII. */
function checkId(index: number): string {
  switch (index % 500) {
    case 1:
      return `quote-"${index}"`;
    case 2:
      return `back\\slash-${index}`;
    case 3:
      return `line\nfeed-${index}`;
    case 4:
      return `prüfung-€-${index}`;
    default:
      return `check-${index}`;
  }
}

async function withChecks(registry: Registry, count: number): Promise<Handler> {
  const prometheus = handler(registry);
  for (let index = 0; index < count; index++) await run(prometheus, checkId(index), index);
  return prometheus;
}

async function streamed(registry: Registry, options: Parameters<typeof exposition>[1] = {}): Promise<{ text: string; chunks: number }> {
  let text = '';
  let chunks = 0;
  for await (const chunk of exposition(registry, options)) {
    text += chunk;
    chunks++;
  }
  return { text, chunks };
}

/** prom-client's other kinds, before and after the handler's, so that separators between both kinds are compared too. */
function otherMetrics(registry: Registry): void {
  new Counter({ name: 'before_total', help: 'a counter registered first', labelNames: ['kind'], registers: [registry] }).inc({ kind: 'a' }, 3);
  const histogram = new Histogram({ name: 'after_seconds', help: 'a histogram\nwith a line feed in its help', labelNames: ['pool'], buckets: [0.1, 1], registers: [registry] });
  histogram.observe({ pool: 'p"1' }, 0.5);
  const summary = new Summary({ name: 'after_latency', help: 'a summary', percentiles: [0.5], registers: [registry] });
  summary.observe(4);
  new Gauge({ name: 'after_collected', help: 'a gauge set when collected', registers: [registry], collect() { this.set(42); } });
}

/** A registry speaking OpenMetrics (prom-client's typings leave out the constructor's content type). */
function openMetricsRegistry(): Registry {
  const registry = new Registry<OpenMetricsContentType>();
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  return registry as unknown as Registry;
}

/** promtool's verdict on an exposition: '' when it has nothing to say. */
function promtool(text: string): string {
  const checked = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (checked.error !== undefined) throw new Error(`promtool is missing (${checked.error.message}): install Debian's prometheus package`);
  return `${checked.stdout}${checked.stderr}${checked.status === 0 ? '' : `exit ${checked.status}`}`;
}

describe('streamed exposition of the prometheus handler', () => {
  it('writes what registry.metrics() writes for many checks, in many chunks', async () => {
    const registry = new Registry();
    new Counter({ name: 'first_total', help: 'a counter registered before the handler', registers: [registry] }).inc(2);
    await withChecks(registry, 6_000);
    otherMetrics(registry);
    const { text, chunks } = await streamed(registry);
    expect(text).toBe(await registry.metrics());
    expect(chunks).toBeGreaterThan(10);
    expect(text).toContain('vigil_check_up{check="quote-\\"501\\""}');
    expect(text).toContain('vigil_check_runs_total{check="line\\nfeed-503",command="tcp",state="unknown"} 1');
    expect(text).toContain('vigil_check_metric{check="prüfung-€-504",metric="connect_time"}');
    expect(text).toContain('vigil_check_metric{check="check-7",metric="odd \\"name\\"\\\\"} 2.3333333333333335');
  });

  it('writes the same with the registry’s default labels', async () => {
    const registry = new Registry();
    registry.setDefaultLabels({ instance: 'a"b', command: 'shadowed by the runs’ own', metric: 'and by the metrics’' });
    await withChecks(registry, 600);
    otherMetrics(registry);
    const { text } = await streamed(registry);
    expect(text).toBe(await registry.metrics());
    expect(text).toContain('vigil_check_runs_total{check="check-0",instance="a\\"b",metric="and by the metrics’",command="http",state="ok"} 1');
    expect(text).toContain('vigil_check_up{check="check-0",instance="a\\"b",command="shadowed by the runs’ own",metric="and by the metrics’"} 1');
  });

  it('writes the same for an OpenMetrics registry, counters renamed and # EOF last', async () => {
    const registry = openMetricsRegistry();
    await withChecks(registry, 600);
    otherMetrics(registry);
    // registry.metrics() renames the counters in place; the exposition must do the same on its own.
    const { text } = await streamed(registry);
    expect(text).toBe(await registry.metrics());
    expect(text).toContain('# TYPE vigil_check_runs counter\n');
    expect(text).toContain('vigil_check_runs_total{check="check-5",command="tcp",state="warn"} 1\n');
    expect(text.endsWith('\n# EOF\n')).toBe(true);
  });

  it('writes the same for a registry with no checks, and for an empty one', async () => {
    const registry = new Registry();
    handler(registry);
    expect((await streamed(registry)).text).toBe(await registry.metrics());
    const empty = new Registry();
    expect((await streamed(empty)).text).toBe(await empty.metrics());
    const emptyOpenMetrics = openMetricsRegistry();
    expect((await streamed(emptyOpenMetrics)).text).toBe(await emptyOpenMetrics.metrics());
  });

  it('writes the same after checks were removed and changed command', async () => {
    const registry = new Registry();
    const prometheus = await withChecks(registry, 1_000);
    for (let index = 0; index < 1_000; index += 3) prometheus.checkRemoved?.(checkId(index));
    for (let index = 1; index < 1_000; index += 10) await run(prometheus, checkId(index), index, 'ping');
    const { text } = await streamed(registry);
    expect(text).toBe(await registry.metrics());
    expect(text).not.toContain('check="check-6"');
    expect(text).toContain('vigil_check_runs_total{check="check-11",command="ping",state="unknown"} 1');
    expect(text).toContain('vigil_check_runs_total{check="check-11",command="ping",state="ok"} 0');
  });

  it('passes promtool check metrics', async () => {
    const registry = new Registry();
    await withChecks(registry, 3_000);
    otherMetrics(registry);
    expect(promtool((await streamed(registry)).text)).toBe('');
  });

  it('lets other work run between slices', async () => {
    const registry = new Registry();
    await withChecks(registry, 3_000);
    let turns = 0;
    let ticking = true;
    const tick = (): void => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    let turnsAtFirstChunk = -1;
    try {
      for await (const chunk of exposition(registry, { sliceMs: 0 })) {
        expect(chunk.length).toBeGreaterThan(0);
        if (turnsAtFirstChunk < 0) turnsAtFirstChunk = turns;
      }
    } finally {
      ticking = false;
    }
    // Without slices the whole exposition is one macrotask: not a single turn of the loop in between.
    expect(turns - turnsAtFirstChunk).toBeGreaterThan(10);
  });

  it('shows every check at most once per family while checks come and go during a scrape', async () => {
    const registry = new Registry();
    const prometheus = await withChecks(registry, 2_000);
    let text = '';
    let churn = 0;
    for await (const chunk of exposition(registry, { sliceMs: 0, chunkChars: 4_096 })) {
      text += chunk;
      // Between two chunks: a check removed and back (it moves to the end of the handler's records), and a new one.
      const index = churn++ % 2_000;
      prometheus.checkRemoved?.(checkId(index));
      await run(prometheus, checkId(index), index);
      await run(prometheus, `new-${churn}`, churn);
    }
    expect(churn).toBeGreaterThan(20);
    const samples = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    const series = samples.map((line) => line.slice(0, line.lastIndexOf(' ')));
    expect(new Set(series).size).toBe(series.length);
    expect(samples.filter((line) => line.startsWith('vigil_check_up{'))).toHaveLength(2_000);
    expect(promtool(text)).toBe('');
  });

  it('stops writing when aborted', async () => {
    const registry = new Registry();
    await withChecks(registry, 2_000);
    const controller = new AbortController();
    let chunks = 0;
    for await (const _chunk of exposition(registry, { sliceMs: 0, chunkChars: 1_024, signal: controller.signal })) {
      if (++chunks === 3) controller.abort();
    }
    const all = (await streamed(registry, { sliceMs: 0, chunkChars: 1_024 })).chunks;
    expect(chunks).toBeLessThanOrEqual(4);
    expect(all).toBeGreaterThan(20);
  });

  it('rejects before writing anything when a metric fails to collect', async () => {
    const registry = new Registry();
    await withChecks(registry, 10);
    new Gauge({
      name: 'broken',
      help: 'fails when collected',
      registers: [registry],
      collect() {
        throw new Error('queue unreachable');
      },
    });
    const chunks: string[] = [];
    await expect(
      (async () => {
        for await (const chunk of exposition(registry)) chunks.push(chunk);
      })(),
    ).rejects.toThrow('queue unreachable');
    expect(chunks).toEqual([]);
  });
});
