import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { fmt, progress } from './measure.js';
import { runCase } from './processes.js';
import { DEFAULT_HEAP_GROWTH_PERCENT } from '../src/config/config.js';
import type { SchedulerCaseInput, SchedulerCaseResult } from './scheduler-case.js';

const DAEMON = DEFAULT_HEAP_GROWTH_PERCENT;
/** V8's own heap growth (`server.heapGrowthPercent: 0`), to show what the daemon's default trades. */
const V8_OWN = 0;

/**
 * Checks and intervals: ~1,700 and ~10,000 runs/s in full; ~2,500 and ~10,000 runs/s in a few seconds when
 * quick. The largest case runs with the daemon's heap growth (the ratios) and with V8's own.
 */
const FULL: readonly SchedulerCaseInput[] = [
  { checks: 10_000, intervalMs: 6_000, warmupIntervals: 1, measureIntervals: 2, heapGrowthPercent: DAEMON },
  { checks: 100_000, intervalMs: 10_000, warmupIntervals: 1, measureIntervals: 2, heapGrowthPercent: V8_OWN },
  { checks: 100_000, intervalMs: 10_000, warmupIntervals: 1, measureIntervals: 2, heapGrowthPercent: DAEMON },
];
const QUICK: readonly SchedulerCaseInput[] = [
  { checks: 10_000, intervalMs: 4_000, warmupIntervals: 1, measureIntervals: 1, heapGrowthPercent: DAEMON },
  { checks: 20_000, intervalMs: 2_000, warmupIntervals: 1, measureIntervals: 1, heapGrowthPercent: DAEMON },
];

/**
 * The engine alone: N no-op checks (each resolves after 1 ms) through the whole pipeline, each case in
 * a fresh process. Reports the runs/s achieved, the schedule lag, CPU per run and RSS.
 */
export const schedulerBenchmark: Benchmark = {
  name: 'scheduler',
  async run({ quick }): Promise<BenchReport> {
    const results: SchedulerCaseResult[] = [];
    for (const input of quick ? QUICK : FULL) {
      const seconds = (input.intervalMs * (input.warmupIntervals + input.measureIntervals)) / 1000;
      progress(`scheduler: ${fmt(input.checks)} checks every ${input.intervalMs / 1000} s, ${growthLabel(input.heapGrowthPercent)} (${seconds} s)`);
      // Generous: start-up, the case itself, and stopping; a hung case is killed, not waited for.
      results.push(await runCase<SchedulerCaseResult>(new URL('./scheduler-case.js', import.meta.url), input, seconds * 1000 + 120_000));
    }
    const rows = results.map((r) => [
      `${fmt(r.checks)} checks`,
      growthLabel(r.heapGrowthPercent),
      `${fmt(r.intervalMs / 1000, 0)} s`,
      fmt((r.checks * 1000) / r.intervalMs),
      fmt(r.runs / (r.wallMs / 1000)),
      fmt(r.lag.p50),
      fmt(r.lag.p99),
      fmt(r.lag.max),
      fmt(r.cpuMicros / r.runs, 1),
      fmt((100 * r.cpuMicros) / (r.wallMs * 1000), 0),
      fmt(100 * r.loopBusy, 0),
      fmt(r.rssMB),
      fmt(r.heapUsedMB),
      fmt(r.scrapeMs),
      fmt(r.scrapeBlockMs),
      fmt(r.lateStarts),
      fmt(r.overruns),
      fmt(r.notOk),
    ]);
    // The daemon's default heap growth: the last case.
    const largest = results.at(-1);
    const ratios: Ratio[] = largest
      ? [
          { name: `scheduler ${shortCount(largest.checks)} p99 lag`, value: largest.lag.p99, unit: 'ms', digits: 0 },
          { name: `scheduler ${shortCount(largest.checks)} rss`, value: largest.rssMB, unit: 'MB', digits: 0 },
          { name: `scheduler ${shortCount(largest.checks)} cpu/run`, value: largest.cpuMicros / largest.runs, unit: 'µs', digits: 1 },
          { name: `scheduler ${shortCount(largest.checks)} scrape max block`, value: largest.scrapeBlockMs, unit: 'ms', digits: 0 },
        ]
      : [];
    return {
      tables: [
        {
          columns: ['scheduler', 'heap growth', 'interval', 'due/s', 'runs/s', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'cpu µs/run', 'cpu %', 'loop %', 'rss MB', 'heap MB', 'scrape ms', 'block ms', 'late', 'overran', 'not ok'],
          rows,
        },
      ],
      ratios,
      notes: [
        `scheduler: no-op command (1 ms timer), log handler at info into /dev/null, prometheus handler; ${quick ? 'quick: 1 interval warm-up, 1 measured' : '1 interval warm-up, 2 measured'}; each case in its own process; lag from check:start (1 ms steps); cpu % of one core (V8's helper threads included); loop % = event-loop utilisation (above cpu % when the machine is busy); late = started > 1 s after due (each logs a warning); heap growth = server.heapGrowthPercent (vigil run's default ${DAEMON} %, or V8's own); scrape ms = one /metrics exposition after the window, streamed as the endpoint serves it, and block ms the longest it held the event loop.`,
      ],
    };
  },
};

function growthLabel(percent: number): string {
  return percent === V8_OWN ? 'V8' : `${percent} %`;
}

function shortCount(count: number): string {
  return count % 1000 === 0 ? `${count / 1000}k` : String(count);
}
