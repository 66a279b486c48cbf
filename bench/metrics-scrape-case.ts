/**
 * One metrics-scrape case, run by `bench/metrics-scrape.ts` in a process of its own (so that its RSS
 * and heap are this path's alone): N checks' runs recorded in the `prometheus` handler, the registry
 * served by vigil's HTTP endpoint, and `/metrics` scraped over HTTP by a client in another process
 * (so that reading 64 MB is not this process's work), measuring this process's side of each scrape.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { CheckSpec } from '../src/checks/check.js';
import { initialCheckState } from '../src/checks/check.js';
import type { Handler } from '../src/handlers/handler.js';
import { prometheusHandlerType } from '../src/handlers/prometheus/prometheus-handler.js';
import { counter, gauge, type Metric } from '../src/results/metric.js';
import type { Result, State } from '../src/results/result.js';
import { startHttpEndpoint } from '../src/http/endpoint.js';
import { expositionStream } from '../src/metrics/exposition.js';
import { cpuMicros, rssMB, within } from './measure.js';
import { benchSpec } from './pipeline.js';
import { caseInput, reportToParent } from './processes.js';

/** How `/metrics` is written. */
export type ScrapePath = 'single-string' | 'streamed';

export interface MetricsScrapeCaseInput {
  readonly checks: number;
  /** `single-string`: the old route, `registry.metrics()` sent as one string; `streamed`: vigil's `/metrics`. */
  readonly path: ScrapePath;
  /** For `streamed`: the slice length to use instead of the route's default, ms; null for `/metrics` itself. */
  readonly sliceMs: number | null;
  /** Measured scrapes, after one unmeasured (JIT warm-up). */
  readonly scrapes: number;
  /** The idle window measured first, ms: how long the loop is delayed when nothing is scraped (the machine's noise). */
  readonly idleMs: number;
}

/** This process's side of one scrape. */
export interface ScrapeFigures {
  /** Request sent → response read, as the client saw it. */
  readonly wallMs: number;
  readonly bytes: number;
  /** Sample lines (neither `#` lines nor blank ones). */
  readonly series: number;
  /** Of those, vigil's own (`vigil_…`): the same on both paths, where Node's process metrics may gain a GC kind between scrapes. */
  readonly vigilSeries: number;
  /** CPU (user + system) of this process during the scrape, ms. */
  readonly cpuMs: number;
  /** Longest delay of a 1 ms timer during the scrape (`monitorEventLoopDelay` max): the longest block, ms. */
  readonly maxBlockMs: number;
  /** 99th percentile of that delay, ms. */
  readonly p99BlockMs: number;
}

export interface MetricsScrapeCaseResult extends MetricsScrapeCaseInput {
  readonly measured: readonly ScrapeFigures[];
  /** Longest timer delay over the idle window, ms. */
  readonly idleMaxBlockMs: number;
  /** RSS once the checks' runs were recorded, before any scrape. */
  readonly rssBeforeMB: number;
  /** Highest RSS seen (every 10 ms) during the measured scrapes. */
  readonly rssPeakMB: number;
  /** The status, content type and cache-control of the last answer (the same for every path, or the comparison is moot). */
  readonly answer: string;
}

const HOST = '127.0.0.1';
const OLD_ROUTE = '/metrics-single-string';
const SLICE_ROUTE = '/metrics-sliced';
/** No scrape may take longer, whatever the machine. */
const SCRAPE_LIMIT_MS = 120_000;

/**
 * The client: reads a URL per line on stdin, GETs it on a fresh connection, counts bytes and sample
 * lines, and writes one JSON line per answer. Exits when stdin closes (when the case ends).
 */
const CLIENT_SCRIPT = `
const http = require('node:http');
const { performance } = require('node:perf_hooks');
const lines = require('node:readline').createInterface({ input: process.stdin });
lines.on('close', () => process.exit(0));
lines.on('line', (url) => {
  const started = performance.now();
  const reply = (value) => process.stdout.write(JSON.stringify(value) + '\\n');
  http.get(url, { agent: false }, (res) => {
    let bytes = 0, series = 0, vigilSeries = 0, atLineStart = true;
    res.on('data', (chunk) => {
      bytes += chunk.length;
      let at = 0;
      while (at < chunk.length) {
        if (atLineStart) { const first = chunk[at]; if (first !== 35 && first !== 10) { series++; if (first === 118) vigilSeries++; } }
        const end = chunk.indexOf(10, at);
        if (end < 0) { atLineStart = false; break; }
        atLineStart = true;
        at = end + 1;
      }
    });
    res.on('end', () => reply({ status: res.statusCode, contentType: res.headers['content-type'], cacheControl: res.headers['cache-control'], bytes, series, vigilSeries, wallMs: performance.now() - started }));
    res.on('error', (error) => reply({ error: error.message }));
  }).on('error', (error) => reply({ error: error.message }));
});
`;

interface ClientAnswer {
  readonly error?: string;
  readonly status: number;
  readonly contentType: string;
  readonly cacheControl: string;
  readonly bytes: number;
  readonly series: number;
  readonly vigilSeries: number;
  readonly wallMs: number;
}

interface Client {
  get(url: string): Promise<ClientAnswer>;
  stop(): void;
}

function startClient(): Client {
  const child: ChildProcess = spawn(process.execPath, ['-e', CLIENT_SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  const answers = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const waiting: ((line: string) => void)[] = [];
  answers.on('line', (line) => waiting.shift()?.(line));
  return {
    get(url) {
      return new Promise((resolve, reject) => {
        waiting.push((line) => {
          const answer = JSON.parse(line) as ClientAnswer;
          if (answer.error !== undefined) reject(new Error(`GET ${url} failed: ${answer.error}`));
          else resolve(answer);
        });
        child.stdin?.write(`${url}\n`);
      });
    },
    stop() {
      child.stdin?.end();
    },
  };
}

const STATES: readonly State[] = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'warn', 'crit', 'unknown', 'ok'];

/**
 * The Result of check `index`'s last run, as a tcp or http check leaves it: a state (mostly ok), a
 * fractional duration, a start time in whole ms, a `connect_time` gauge, and for one check in five a
 * counter (as heartbeat and plugin checks report).
 */
function resultOf(index: number, now: number): Result {
  const metrics: Metric[] = [gauge('connect_time', 0.0001 + (index % 997) / 100_000, 's')];
  if (index % 5 === 0) metrics.push(counter('beats', index % 10_000));
  return {
    state: STATES[index % STATES.length] as State,
    reason: 'ok',
    message: 'bench',
    metrics,
    startedAt: now - (index % 60_000),
    durationMs: 0.3 + (index % 113) / 7,
  };
}

/** Records one run of each of `checks` checks in the handler, as the server would hand them over. */
async function recordRuns(prometheus: Handler, checks: number): Promise<void> {
  const logger = pino({ level: 'silent' });
  const ctx = { signal: new AbortController().signal };
  const now = Date.now();
  for (let index = 0; index < checks; index++) {
    const spec: CheckSpec = benchSpec(`check-${index}`, index % 3 === 0 ? 'http' : 'tcp', {}, { intervalMs: 60_000, timeoutMs: 10_000 });
    const result = resultOf(index, now);
    const state = { ...initialCheckState, lastResult: result, attempt: result.state === 'ok' ? 0 : 1 };
    await prometheus.process?.({ check: spec, result, state, previous: initialCheckState, incident: null, logger }, ctx);
  }
}

async function runMetricsScrapeCase(input: MetricsScrapeCaseInput): Promise<MetricsScrapeCaseResult> {
  const registry = new Registry();
  // As the daemon does: the process's own metrics are part of every scrape.
  collectDefaultMetrics({ register: registry });
  const parsed = prometheusHandlerType.parseOptions({});
  if (!parsed.ok) throw new Error(`Expected the prometheus handler's default options to be valid, got ${JSON.stringify(parsed.issues)}`);
  const prometheus = prometheusHandlerType.create('prometheus', parsed.value, { logger: pino({ level: 'silent' }), registry });
  await recordRuns(prometheus, input.checks);

  const endpoint = await startHttpEndpoint({
    host: HOST,
    port: 0,
    registry,
    logger: pino({ level: 'silent' }),
    health: () => ({ status: 'ok', instanceId: 'bench', epoch: 1, version: 'bench', uptimeSeconds: 0, checks: input.checks }),
    routes(app) {
      // The route as it was: the whole exposition built by prom-client, then sent as one string.
      app.get(OLD_ROUTE, async (_request, reply) => {
        const text = await registry.metrics();
        return reply.type(registry.contentType).header('cache-control', 'no-store').send(text);
      });
      // `/metrics` with another slice length, to see what the default buys.
      app.get(SLICE_ROUTE, async (_request, reply) => {
        const body = await expositionStream(registry, input.sliceMs === null ? {} : { sliceMs: input.sliceMs });
        return reply.type(registry.contentType).header('cache-control', 'no-store').send(body);
      });
    },
  });
  const client = startClient();
  const route = input.path === 'single-string' ? OLD_ROUTE : input.sliceMs === null ? '/metrics' : SLICE_ROUTE;
  const url = `${endpoint.url}${route}`;
  const delay = monitorEventLoopDelay({ resolution: 1 });
  try {
    await within(client.get(url), SCRAPE_LIMIT_MS, 'the warm-up scrape');
    const rssBefore = rssMB();

    delay.enable();
    // Measuring a window of nothing, not waiting for an event: the machine's own delays.
    await sleep(input.idleMs);
    delay.disable();
    const idleMaxBlockMs = delay.max / 1e6;

    let rssPeak = rssMB();
    const rssSampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssMB())), 10);
    const measured: ScrapeFigures[] = [];
    let answer = '';
    try {
      for (let scrape = 0; scrape < input.scrapes; scrape++) {
        delay.reset();
        delay.enable();
        const cpuBefore = cpuMicros();
        const got = await within(client.get(url), SCRAPE_LIMIT_MS, `scrape ${scrape + 1} of ${route}`);
        const cpuMs = (cpuMicros() - cpuBefore) / 1000;
        delay.disable();
        if (got.status !== 200) throw new Error(`Expected ${route} to answer 200, got ${got.status}`);
        answer = `${got.status} ${got.contentType}; cache-control: ${got.cacheControl}`;
        measured.push({ wallMs: got.wallMs, bytes: got.bytes, series: got.series, vigilSeries: got.vigilSeries, cpuMs, maxBlockMs: delay.max / 1e6, p99BlockMs: delay.percentile(99) / 1e6 });
      }
    } finally {
      clearInterval(rssSampler);
    }
    return { ...input, measured, idleMaxBlockMs, rssBeforeMB: rssBefore, rssPeakMB: rssPeak, answer };
  } finally {
    client.stop();
    await endpoint.close();
  }
}

await reportToParent(await runMetricsScrapeCase(caseInput<MetricsScrapeCaseInput>()));
// collectDefaultMetrics keeps timers of its own: this process has nothing left to do.
process.exit(0);
