import { request } from 'node:http';
import { Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { initialCheckState } from '../../src/checks/check.js';
import type { Handler } from '../../src/handlers/handler.js';
import { prometheusHandlerType } from '../../src/handlers/prometheus/prometheus-handler.js';
import { gauge } from '../../src/results/metric.js';
import type { Result } from '../../src/results/result.js';
import { startHttpEndpoint, type HttpEndpoint } from '../../src/http/endpoint.js';
import { SAMPLE_TEXT, type SampleTextMetric } from '../../src/metrics/exposition.js';
import { checkSpec } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';

/** `GET /metrics`: streamed, sliced, and the same text as `registry.metrics()`. */

const logger = silentLogger();
const started: HttpEndpoint[] = [];

async function serve(registry: Registry): Promise<HttpEndpoint> {
  const endpoint = await startHttpEndpoint({
    host: '127.0.0.1',
    port: 0,
    registry,
    logger,
    health: () => ({ status: 'ok', instanceId: 'test', epoch: 1, version: '0', uptimeSeconds: 0, checks: 0 }),
  });
  started.push(endpoint);
  return endpoint;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((endpoint) => endpoint.close()));
});

async function withChecks(registry: Registry, count: number): Promise<Handler> {
  const parsed = prometheusHandlerType.parseOptions(undefined);
  if (!parsed.ok) throw new Error('unexpected option issues');
  const prometheus = prometheusHandlerType.create('prometheus', parsed.value, { logger, registry });
  const ctx = { signal: new AbortController().signal };
  for (let index = 0; index < count; index++) {
    const result: Result = {
      state: index % 5 === 0 ? 'crit' : 'ok',
      reason: 'ok',
      message: 'x',
      metrics: [gauge('connect_time', index / 1000, 's')],
      startedAt: 1_700_000_000_000 + index,
      durationMs: index / 7,
    };
    const check = checkSpec({ id: `check-${index}`, command: 'tcp', handlers: ['prometheus'] });
    await prometheus.process?.({ check, result, state: { ...initialCheckState, lastResult: result }, previous: initialCheckState, incident: null, logger }, ctx);
  }
  return prometheus;
}

/**
 * A metric that writes `lines` sample lines, one per piece, and tells how far it got: how many pieces,
 * how many scrapes wrote it at once at most, and when each writing ended (done or stopped).
 */
function countingMetric(registry: Registry, lines: number) {
  const seen = { pieces: 0, active: 0, mostActive: 0, ended: [] as number[] };
  let endedWaiters: (() => void)[] = [];
  const metric: SampleTextMetric = {
    name: 'test_lines',
    help: 'lines written by the test',
    type: 'gauge',
    *[SAMPLE_TEXT](sampleName) {
      seen.active++;
      seen.mostActive = Math.max(seen.mostActive, seen.active);
      let written = 0;
      try {
        for (; written < lines; written++) {
          seen.pieces++;
          yield `${sampleName}{line="${written}"} ${written}\n`;
        }
      } finally {
        seen.active--;
        seen.ended.push(written);
        for (const wake of endedWaiters) wake();
        endedWaiters = [];
      }
    },
  };
  // For registry.metrics(), to compare with: the same samples, as prom-client's registry reads them.
  Object.assign(metric, {
    getForPromString: () => ({
      name: metric.name,
      help: metric.help,
      type: metric.type,
      values: Array.from({ length: lines }, (_, line) => ({ value: line, labels: { line: String(line) } })),
      aggregator: 'sum',
    }),
  });
  // The registry asks no more of a metric than a name and, for `/metrics`, the method above.
  registry.registerMetric(metric as unknown as Gauge);
  const ended = (count: number): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => (seen.ended.length >= count ? resolve() : void endedWaiters.push(check));
      check();
    });
  return { seen, ended };
}

describe('GET /metrics', () => {
  it('streams what registry.metrics() writes, with its content type and no caching', async () => {
    const registry = new Registry();
    new Gauge({ name: 'before', help: 'registered before the handler', registers: [registry] }).set(1);
    await withChecks(registry, 20_000);
    const endpoint = await serve(registry);
    const response = await fetch(`${endpoint.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(registry.contentType);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    const text = await response.text();
    expect(text.length).toBeGreaterThan(10_000_000);
    expect(text).toBe(await registry.metrics());
  });

  it('answers concurrent scrapes each in full', async () => {
    const registry = new Registry();
    await withChecks(registry, 20_000);
    const { seen } = countingMetric(registry, 200_000);
    const endpoint = await serve(registry);
    const [first, second, third] = await Promise.all([1, 2, 3].map(async () => (await fetch(`${endpoint.url}/metrics`)).text()));
    const expected = await registry.metrics();
    expect(first).toBe(expected);
    expect(second).toBe(expected);
    expect(third).toBe(expected);
    // They were written at the same time, not one after the other.
    expect(seen.mostActive).toBeGreaterThan(1);
    expect(seen.ended).toEqual([200_000, 200_000, 200_000]);
  });

  it('stops writing when the client goes away mid-stream, and answers the next scrape', async () => {
    const registry = new Registry();
    const lines = 2_000_000;
    const { seen, ended } = countingMetric(registry, lines);
    const endpoint = await serve(registry);
    const url = new URL('/metrics', endpoint.url);
    const firstBytes = await new Promise<string>((resolve, reject) => {
      const get = request(url, (response) => {
        response.once('data', (chunk: Buffer) => {
          // Read no further, and hang up.
          response.pause();
          get.destroy();
          resolve(chunk.toString('utf8', 0, 40));
        });
      });
      get.on('error', (error) => (get.destroyed ? undefined : reject(error)));
      get.end();
    });
    expect(firstBytes).toMatch(/^# HELP test_lines/);
    await ended(1);
    expect(seen.ended[0]).toBeLessThan(lines);

    const next = await fetch(url);
    expect(next.status).toBe(200);
    const text = await next.text();
    expect(text.endsWith(`test_lines{line="${lines - 1}"} ${lines - 1}\n`)).toBe(true);
  });

  it('answers HEAD with the headers, writing nothing', async () => {
    const registry = new Registry();
    const { seen } = countingMetric(registry, 10);
    const endpoint = await serve(registry);
    const response = await fetch(`${endpoint.url}/metrics`, { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(registry.contentType);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.text()).toBe('');
    expect(seen.pieces).toBe(0);
  });

  it('answers 500 when a metric fails to collect, before anything was sent', async () => {
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
    const endpoint = await serve(registry);
    const response = await fetch(`${endpoint.url}/metrics`);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'internal server error', details: 'queue unreachable' });
  });
});
