import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CheckSpec } from '../src/checks/check.js';
import type { AnyCommand } from '../src/commands/command.js';
import { tcpCommand } from '../src/commands/tcp.js';
import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { fmt, markUsage, NA, progress, rssMB, Samples, usageSince, type Summary, type Usage } from './measure.js';
import { benchSpec, measureSaturated, parseAttributes, startPipeline } from './pipeline.js';
import { multiPortTargetScript, startTargetProcess, type TargetProcess } from './processes.js';

const HOST = '127.0.0.1';
/** Connects in flight at once, for the bare loop and for vigil (`server.concurrency`). */
const CONCURRENCY = 64;

/**
 * Listens on `count` ports, each standing for one target (safe mode never runs two checks of one target
 * at once, and real checks watch different targets); accepts and closes at once. In its own process, so
 * the client's CPU is the client's.
 */
export function targetScript(count: number): string {
  return multiPortTargetScript(
    HOST,
    count,
    `const net = require('node:net');
const onConnection = (socket) => { socket.on('error', () => {}); socket.destroy(); };
const createServer = () => net.createServer(onConnection);`,
  );
}

interface Sizes {
  /** Unmeasured connects of each kind first, so both are JIT-compiled before the first measured pair. */
  readonly warmup: number;
  /** Measured connects (runs) per bare or vigil round. */
  readonly runs: number;
  /** Bare/vigil pairs, alternating. */
  readonly pairs: number;
  /** Checks (and target ports) vigil cycles through when saturated; each runs once (metric series created) before measuring. */
  readonly checks: number;
  /** The scheduled round: checks at a 1 s interval, and intervals warmed up and measured. */
  readonly scheduledChecks: number;
  readonly scheduledIntervals: number;
}

const FULL: Sizes = { warmup: 2_000, runs: 20_000, pairs: 2, checks: 2_000, scheduledChecks: 2_000, scheduledIntervals: 3 };
const QUICK: Sizes = { warmup: 500, runs: 3_000, pairs: 2, checks: 1_000, scheduledChecks: 1_000, scheduledIntervals: 1 };
const SCHEDULED_INTERVAL_MS = 1_000;
/** No round may take longer, whatever the machine: a slow one reports what it did by then. */
const ROUND_LIMIT_MS = 60_000;

interface Round {
  readonly label: string;
  readonly runs: number;
  readonly errors: number;
  readonly usage: Usage;
  readonly lag: Summary | null;
  readonly rssMB: number;
}

/**
 * tcp checks through the whole pipeline against a bare `node:net` loop doing the same connects, at the
 * same concurrency, against a target server in another process; bare and vigil rounds alternate. vigil
 * is saturated by one-shot checks that are made due again as each finishes (a closed loop like the bare
 * one); a last round runs checks on a regular 1 s schedule, below saturation, for lag and CPU at that rate.
 */
export const tcpBenchmark: Benchmark = {
  name: 'tcp',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const target = await startTargetProcess(targetScript(Math.max(sizes.checks, sizes.scheduledChecks)));
    try {
      progress(`tcp: warm-up, ${fmt(sizes.warmup)} connects each`);
      await bareRound(target, sizes.warmup, 'warm-up');
      await vigilSaturatedRound(target, Math.min(sizes.checks, sizes.warmup), sizes.warmup, 'warm-up');

      const bare: Round[] = [];
      const vigil: Round[] = [];
      for (let pair = 1; pair <= sizes.pairs; pair++) {
        progress(`tcp: pair ${pair}/${sizes.pairs}, ${fmt(sizes.runs)} connects each`);
        bare.push(await bareRound(target, sizes.runs, `bare #${pair}`));
        vigil.push(await vigilSaturatedRound(target, sizes.checks, sizes.runs, `vigil #${pair}`));
      }
      progress(`tcp: ${fmt(sizes.scheduledChecks)} checks every 1 s`);
      const scheduled = await vigilScheduledRound(target, sizes.scheduledChecks, sizes.scheduledIntervals);

      const rounds = [...interleave(bare, vigil), scheduled];
      const total = (list: readonly Round[]): { runs: number; cpu: number; wallMs: number } => ({
        runs: list.reduce((sum, round) => sum + round.runs, 0),
        cpu: list.reduce((sum, round) => sum + round.usage.cpuMicros, 0),
        wallMs: list.reduce((sum, round) => sum + round.usage.wallMs, 0),
      });
      const b = total(bare);
      const v = total(vigil);
      const ratios: Ratio[] = [
        { name: 'tcp cpu/check vigil÷bare', value: v.cpu / v.runs / (b.cpu / b.runs) },
        { name: 'tcp throughput vigil÷bare', value: v.runs / v.wallMs / (b.runs / b.wallMs) },
      ];
      return {
        tables: [
          {
            columns: ['tcp', 'runs', 'rate/s', 'cpu µs/check', 'target cpu µs/conn', 'not ok', 'lag p50 ms', 'lag p99 ms', 'rss MB'],
            rows: rounds.map((round) => [
              round.label,
              fmt(round.runs),
              fmt(round.runs / (round.usage.wallMs / 1000)),
              fmt(round.usage.cpuMicros / round.runs, 1),
              fmt(round.usage.otherCpuMicros / round.runs, 1),
              fmt(round.errors),
              round.lag ? fmt(round.lag.p50) : NA,
              round.lag ? fmt(round.lag.p99) : NA,
              fmt(round.rssMB),
            ]),
          },
        ],
        ratios,
        notes: [
          `tcp: connect-and-close to a node:net server in another process (its CPU from /proc, 10 ms ticks), one port per check; bare concurrency ${CONCURRENCY}; bare = node:net connect → destroy; vigil = tcpCommand through the whole pipeline (server.concurrency ${CONCURRENCY}, of which the default pool gets 90 %), saturated by ${fmt(sizes.checks)} one-shot checks made due again as each finishes (measured after each ran once); ratios over the ${sizes.pairs} pairs.`,
        ],
      };
    } finally {
      await target.stop();
    }
  },
};

function* interleave<T>(a: readonly T[], b: readonly T[]): Generator<T> {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) yield a[i] as T;
    if (i < b.length) yield b[i] as T;
  }
}

/** `count` connects with node:net, `CONCURRENCY` at a time, round the target ports, each destroyed as soon as it is established. */
async function bareRound(target: TargetProcess, count: number, label: string): Promise<Round> {
  const mark = markUsage(target.pid);
  const { done, errors } = await bareConnects(target.ports, count, Date.now() + ROUND_LIMIT_MS);
  const usage = usageSince(mark);
  return { label, runs: done, errors, usage, lag: null, rssMB: rssMB() };
}

/**
 * `closedLoop` (bench/closed-loop.ts) written out for connects: the bare loop's sockets take
 * module-level listeners rather than a closure each, so that the baseline costs what a connect costs.
 */
function bareConnects(ports: readonly number[], count: number, deadline: number): Promise<{ done: number; errors: number }> {
  return new Promise((resolve) => {
    let started = 0;
    let active = 0;
    let done = 0;
    let errors = 0;
    function launch(): void {
      while (active < CONCURRENCY && started < count && Date.now() < deadline) {
        started++;
        active++;
        const socket = connect({ host: HOST, port: ports[started % ports.length] as number });
        socket.once('connect', onConnect);
        socket.once('error', onError);
      }
      if (active === 0) resolve({ done, errors });
    }
    function finish(ok: boolean): void {
      active--;
      done++;
      if (!ok) errors++;
      launch();
    }
    function onConnect(this: Socket): void {
      this.removeListener('error', onError);
      this.destroy();
      finish(true);
    }
    function onError(this: Socket): void {
      this.destroy();
      finish(false);
    }
    launch();
  });
}

/**
 * vigil saturated: `checks` one-shot tcp checks, all due at once, each made due again (`reschedule`) as
 * it finishes, so `CONCURRENCY` run all the time. The first `checks` runs warm up (every check's metric
 * series created); the next `runs` are measured.
 */
async function vigilSaturatedRound(target: TargetProcess, checks: number, runs: number, label: string): Promise<Round> {
  const tcp = tcpCommand();
  const specs = tcpSpecs(tcp, target, checks, { intervalMs: null, timeoutMs: 5_000 });
  const pipeline = startPipeline({ commands: [tcp], specs, concurrency: CONCURRENCY });
  try {
    const measured = await measureSaturated(pipeline, target.pid, checks, runs, `tcp ${label}`, ROUND_LIMIT_MS);
    return { label, ...measured, lag: null, rssMB: rssMB() };
  } finally {
    await pipeline.stop();
  }
}

/** vigil below saturation: `checks` tcp checks every second, warmed up one interval, measured `intervals`. */
async function vigilScheduledRound(target: TargetProcess, checks: number, intervals: number): Promise<Round> {
  const tcp = tcpCommand();
  const specs = tcpSpecs(tcp, target, checks, { intervalMs: SCHEDULED_INTERVAL_MS, timeoutMs: SCHEDULED_INTERVAL_MS });
  const pipeline = startPipeline({ commands: [tcp], specs, concurrency: CONCURRENCY });
  const { server } = pipeline;
  try {
    let measuring = false;
    let errors = 0;
    const lags = new Samples();
    server.on('check:start', ({ lagMs }) => {
      if (measuring) lags.add(lagMs);
    });
    server.on('check:finish', ({ result }) => {
      if (measuring && result.state !== 'ok') errors++;
    });
    // Measuring windows, not waiting for an event: the schedule is the load.
    await sleep(SCHEDULED_INTERVAL_MS);
    const before = server.stats.runs;
    const mark = markUsage(target.pid);
    measuring = true;
    await sleep(SCHEDULED_INTERVAL_MS * intervals);
    measuring = false;
    const usage = usageSince(mark);
    const label = `vigil ${fmt(checks)} checks @ 1 s`;
    return { label, runs: server.stats.runs - before, errors, usage, lag: lags.summary(), rssMB: rssMB() };
  } finally {
    await pipeline.stop();
  }
}

/** One tcp check per target port, round the ports when there are more checks. */
export function tcpSpecs(tcp: AnyCommand, target: TargetProcess, checks: number, timing: { intervalMs: number | null; timeoutMs: number }): CheckSpec[] {
  const { ports } = target;
  return Array.from({ length: checks }, (_, i) => benchSpec(`tcp-${i}`, 'tcp', parseAttributes(tcp, { host: HOST, port: ports[i % ports.length] }), timing));
}
