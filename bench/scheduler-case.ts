/**
 * One scheduler case, run by `bench/scheduler.ts` in a process of its own (so RSS is this case's
 * alone): N no-op checks through the whole pipeline, warmed up, then measured over whole intervals.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { z } from 'zod';
import { defineCommand } from '../src/commands/command.js';
import type { CommandOutcome } from '../src/results/result.js';
import { limitHeapGrowth } from '../src/daemon/heap-growth.js';
import { expositionStream } from '../src/metrics/exposition.js';
import { markUsage, rssMB, Samples, usageSince, within, type Summary } from './measure.js';
import { benchSpec, parseAttributes, startPipeline } from './pipeline.js';
import { caseInput, reportToParent } from './processes.js';

export interface SchedulerCaseInput {
  readonly checks: number;
  readonly intervalMs: number;
  /** Whole intervals run before measuring: every check runs once, its metric series exist. */
  readonly warmupIntervals: number;
  /** Whole intervals measured. */
  readonly measureIntervals: number;
  /** `server.heapGrowthPercent` as `vigil run` applies it; 0 leaves the heap to V8. */
  readonly heapGrowthPercent: number;
}

export interface SchedulerCaseResult extends SchedulerCaseInput {
  /** Runs finished in the measured window. */
  readonly runs: number;
  readonly wallMs: number;
  readonly cpuMicros: number;
  /** `check:start` lag (start − due time) of the runs started in the window, ms (the server's clock: 1 ms steps). */
  readonly lag: Summary;
  /** Event-loop utilisation over the window, 0–1. */
  readonly loopBusy: number;
  readonly rssMB: number;
  readonly heapUsedMB: number;
  /** Runs in the window that were not `ok` (a timeout would be one). */
  readonly notOk: number;
  /** One `/metrics` exposition after the window, read to the end as the endpoint streams it: wall time, ms. */
  readonly scrapeMs: number;
  /** The longest the event loop was blocked during it (a 1 ms timer's worst delay), ms. */
  readonly scrapeBlockMs: number;
  /** Server counters over the window. */
  readonly lateStarts: number;
  readonly overruns: number;
}

const DONE: CommandOutcome = Object.freeze({ state: 'ok', reason: 'ok', message: 'no-op done' });

/**
 * Resolves after 1 ms on a timer: a command that costs the engine a run and the loop one timer. `target`
 * only makes each check's attributes its own, as real checks watch different targets: safe mode never
 * runs two checks with equal command and attributes at once.
 */
const noopCommand = defineCommand({
  name: 'noop',
  attributes: z.strictObject({ target: z.string() }),
  run: () => new Promise<CommandOutcome>((resolve) => setTimeout(resolve, 1, DONE)),
});

async function runSchedulerCase(input: SchedulerCaseInput): Promise<SchedulerCaseResult> {
  const { checks, intervalMs, warmupIntervals, measureIntervals } = input;
  limitHeapGrowth(input.heapGrowthPercent);
  // The timeout the config would give: the default 10 s, at most the interval.
  const timing = { intervalMs, timeoutMs: Math.min(10_000, intervalMs) };
  const specs = Array.from({ length: checks }, (_, i) => benchSpec(`noop-${i}`, 'noop', parseAttributes(noopCommand, { target: `t${i}` }), timing));
  const pipeline = startPipeline({ commands: [noopCommand], specs });
  const { server } = pipeline;

  let measuring = false;
  let notOk = 0;
  const lags = new Samples();
  server.on('check:start', ({ lagMs }) => {
    if (measuring) lags.add(lagMs);
  });
  server.on('check:finish', ({ result }) => {
    if (measuring && result.state !== 'ok') notOk++;
  });

  try {
    // Measuring windows, not waiting for an event: the schedule is the load.
    await sleep(intervalMs * warmupIntervals);
    const before = server.stats;
    const mark = markUsage();
    const loop = performance.eventLoopUtilization();
    measuring = true;
    await sleep(intervalMs * measureIntervals);
    measuring = false;
    const usage = usageSince(mark);
    const loopBusy = performance.eventLoopUtilization(loop).utilization;
    const after = server.stats;
    const memory = process.memoryUsage();
    const rss = rssMB();
    // After the window, so that its pauses are not in the measured lag: the cost of Prometheus looking.
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const scrapeStart = performance.now();
    for await (const chunk of await expositionStream(pipeline.registry)) void chunk;
    const scrapeMs = performance.now() - scrapeStart;
    delay.disable();
    return {
      ...input,
      runs: after.runs - before.runs,
      wallMs: usage.wallMs,
      cpuMicros: usage.cpuMicros,
      lag: lags.summary(),
      loopBusy,
      rssMB: rss,
      heapUsedMB: memory.heapUsed / 1_048_576,
      scrapeMs,
      scrapeBlockMs: delay.max / 1e6,
      notOk,
      lateStarts: after.lateStarts - before.lateStarts,
      overruns: after.overruns - before.overruns,
    };
  } finally {
    await within(pipeline.stop(), 30_000, 'stopping the scheduler case');
  }
}

await reportToParent(await runSchedulerCase(caseInput<SchedulerCaseInput>()));
