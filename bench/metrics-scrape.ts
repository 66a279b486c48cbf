import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { fmt, progress, summarize } from './measure.js';
import type { MetricsScrapeCaseInput, MetricsScrapeCaseResult, ScrapeFigures } from './metrics-scrape-case.js';
import { runCase } from './processes.js';

interface Sizes {
  readonly checks: number;
  /** Measured scrapes per case (each case is one process). */
  readonly scrapes: number;
  /** Cases of the old and the new path, alternating. */
  readonly rounds: number;
  /** Slice lengths tried besides the default, one case each, ms. */
  readonly slices: readonly number[];
}

const FULL: Sizes = { checks: 100_000, scrapes: 4, rounds: 2, slices: [1, 5] };
const QUICK: Sizes = { checks: 10_000, scrapes: 3, rounds: 1, slices: [] };
const IDLE_MS = 500;

/** One row: every case of one path (and slice length). */
interface PathFigures {
  readonly label: string;
  readonly cases: readonly MetricsScrapeCaseResult[];
  readonly scrapes: readonly ScrapeFigures[];
}

/**
 * `/metrics` with N checks' runs recorded in the `prometheus` handler, scraped over HTTP: the old path
 * (prom-client's `registry.metrics()` as one string, as the route was) against the streamed, sliced
 * exposition vigil serves now, each case in a fresh process, alternating. Reports per scrape the time
 * the client took, the bytes and series it read, this process's CPU, and the longest event-loop block
 * (a 1 ms timer's worst delay) beside the same machine's idle delay.
 */
export const metricsScrapeBenchmark: Benchmark = {
  name: 'metrics-scrape',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const old: MetricsScrapeCaseResult[] = [];
    const streamed: MetricsScrapeCaseResult[] = [];
    const base = { checks: sizes.checks, scrapes: sizes.scrapes, idleMs: IDLE_MS };
    for (let round = 0; round < sizes.rounds; round++) {
      // Alternating which goes first, so that neither always meets the machine's same moment.
      const order = round % 2 === 0 ? (['single-string', 'streamed'] as const) : (['streamed', 'single-string'] as const);
      for (const path of order) {
        progress(`metrics-scrape: ${fmt(sizes.checks)} checks, ${path}, round ${round + 1} of ${sizes.rounds}`);
        const result = await runScrapeCase({ ...base, path, sliceMs: null });
        (path === 'single-string' ? old : streamed).push(result);
      }
    }
    const sliced: PathFigures[] = [];
    for (const sliceMs of sizes.slices) {
      progress(`metrics-scrape: ${fmt(sizes.checks)} checks, streamed in ${sliceMs} ms slices`);
      sliced.push(figures(`streamed, ${sliceMs} ms slices`, [await runScrapeCase({ ...base, path: 'streamed', sliceMs })]));
    }

    const before = figures('single string (old)', old);
    const after = figures('streamed (/metrics)', streamed);
    const rows = [before, after, ...sliced].map(row);
    const count = shortCount(sizes.checks);
    const oldBlock = medianOf(before.scrapes, (s) => s.maxBlockMs);
    const newBlock = medianOf(after.scrapes, (s) => s.maxBlockMs);
    const ratios: Ratio[] = [
      { name: `metrics scrape ${count} max block ms`, value: newBlock, unit: 'ms', digits: 1 },
      { name: `metrics scrape ${count} max block old÷new`, value: oldBlock / newBlock, digits: 0 },
      { name: `metrics scrape ${count} cpu old÷new`, value: medianOf(before.scrapes, (s) => s.cpuMs) / medianOf(after.scrapes, (s) => s.cpuMs), digits: 1 },
      { name: `metrics scrape ${count} peak rss old÷new`, value: maxOf(before.cases, (c) => c.rssPeakMB) / maxOf(after.cases, (c) => c.rssPeakMB), digits: 2 },
    ];
    const answers = new Set([...old, ...streamed].map((c) => c.answer));
    const series = new Set([...before.scrapes, ...after.scrapes].map((s) => s.series));
    const vigilSeries = new Set([...before.scrapes, ...after.scrapes].map((s) => s.vigilSeries));
    return {
      tables: [
        {
          columns: ['metrics-scrape', 'checks', 'scrape ms', 'MB', 'series', 'cpu ms', 'block ms', 'worst ms', 'block p99', 'idle ms', 'rss MB', 'peak MB'],
          rows,
        },
      ],
      ratios,
      notes: [
        `metrics-scrape: the prometheus handler fed one run per check directly (tcp and http commands, 7 in 10 ok, a connect_time gauge each, a counter for 1 in 5), collectDefaultMetrics on the registry, vigil's HTTP endpoint, a client in another process GETting on fresh connections; ${sizes.rounds} case(s) per path alternating, each a fresh process, 1 warm-up scrape + ${sizes.scrapes} measured.`,
        'metrics-scrape: scrape ms = request to last byte at the client (median); cpu ms = this process, user + system (median); block ms = median over scrapes of the longest delay of a 1 ms timer (monitorEventLoopDelay max), worst ms = the longest of all; idle ms = the same over 500 ms with no scrape (the machine\'s own noise); rss MB before scraping, peak MB sampled every 10 ms while scraping.',
        `metrics-scrape: every answer: ${[...answers].join(' | ')}; series per scrape: ${[...series].map((n) => fmt(n)).join(', ')}, of them vigil_*: ${[...vigilSeries].map((n) => fmt(n)).join(', ')}${vigilSeries.size === 1 ? ' (old and new alike; Node\'s process metrics may gain a GC kind, 9 series, between scrapes)' : ' (vigil_* series DIFFER between paths)'}.`,
      ],
    };
  },
};

async function runScrapeCase(input: MetricsScrapeCaseInput): Promise<MetricsScrapeCaseResult> {
  // Generous: building the checks, the scrapes (the old path takes seconds each at 100k on a busy machine), stopping.
  return runCase<MetricsScrapeCaseResult>(new URL('./metrics-scrape-case.js', import.meta.url), input, 600_000);
}

function figures(label: string, cases: readonly MetricsScrapeCaseResult[]): PathFigures {
  return { label, cases, scrapes: cases.flatMap((c) => c.measured) };
}

function row({ label, cases, scrapes }: PathFigures): string[] {
  const first = cases[0];
  return [
    label,
    fmt(first?.checks ?? Number.NaN),
    fmt(medianOf(scrapes, (s) => s.wallMs)),
    fmt(medianOf(scrapes, (s) => s.bytes) / 1_000_000, 1),
    fmt(medianOf(scrapes, (s) => s.series)),
    fmt(medianOf(scrapes, (s) => s.cpuMs)),
    fmt(medianOf(scrapes, (s) => s.maxBlockMs), 1),
    fmt(maxOf(scrapes, (s) => s.maxBlockMs), 1),
    fmt(medianOf(scrapes, (s) => s.p99BlockMs), 1),
    fmt(maxOf(cases, (c) => c.idleMaxBlockMs), 1),
    fmt(medianOf(cases, (c) => c.rssBeforeMB)),
    fmt(maxOf(cases, (c) => c.rssPeakMB)),
  ];
}

function medianOf<T>(items: readonly T[], value: (item: T) => number): number {
  return summarize(items.map(value)).p50;
}

function maxOf<T>(items: readonly T[], value: (item: T) => number): number {
  return summarize(items.map(value)).max;
}

function shortCount(count: number): string {
  return count % 1000 === 0 ? `${count / 1000}k` : String(count);
}
