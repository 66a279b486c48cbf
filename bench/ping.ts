import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { CommandContext } from '../src/commands/command.js';
import { fpingPingEngine } from '../src/commands/ping/fping-engine.js';
import { pingCommand, type PingAttributes } from '../src/commands/ping/ping.js';
import { processPingEngine, type PingEngine } from '../src/commands/ping/ping-engine.js';
import { resolveProgram } from '../src/commands/executable.js';
import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { clockTicksPerSecond, cpuMicros, fmt, progress, rssMB, within } from './measure.js';
import { parseAttributes } from './pipeline.js';

/**
 * Distinct loopback addresses the checks ping, round robin: Linux answers all of 127.0.0.0/8 on `lo`,
 * so each check has a target of its own, as real checks do, and fping gets as many hosts as runs.
 */
const TARGETS = Array.from({ length: 100 }, (_, i) => `127.0.0.${i + 1}`);
/** Runs in flight at once in a saturated round (a server's concurrency): one full fping batch. */
const CONCURRENCY = 100;
/** The paced rounds start one run every this many ms, as checks spread over their interval arrive. */
const PACE_MS = 10;
/** A narrower batch window than the engine's default (100 ms), for the paced comparison. */
const NARROW_WINDOW_MS = 20;

interface Sizes {
  /** Unmeasured runs of each engine first. */
  readonly warmup: number;
  /** Measured runs per saturated process round. */
  readonly processRuns: number;
  /**
   * Measured runs per saturated fping round: more than the process rounds, as they are cheaper and their
   * children's CPU comes in 10 ms ticks (a batch of 100 costs about one).
   */
  readonly fpingRuns: number;
  /** Saturated process/fping pairs, alternating. */
  readonly pairs: number;
  /** Measured runs per paced round (one pair). */
  readonly pacedRuns: number;
}

const FULL: Sizes = { warmup: 200, processRuns: 1_000, fpingRuns: 5_000, pairs: 3, pacedRuns: 1_000 };
const QUICK: Sizes = { warmup: 30, processRuns: 100, fpingRuns: 500, pairs: 2, pacedRuns: 60 };
/** No round may take longer, whatever the machine. */
const ROUND_LIMIT_MS = 120_000;

interface Round {
  readonly label: string;
  readonly runs: number;
  readonly notOk: number;
  readonly wallMs: number;
  /** This process's CPU (µs). */
  readonly selfMicros: number;
  /** The CPU (µs) of the child processes (ping, fping) that ended during the round. */
  readonly childMicros: number;
  readonly rssMB: number;
}

/**
 * The ping command (count 1, loopback) with the process engine (one iputils `ping` per run) against the
 * fping engine (runs batched into fping processes), alternating; CPU per ping counts this process and
 * the ping/fping processes it started. Saturated rounds keep `CONCURRENCY` runs in flight; a paced pair
 * starts one run every `PACE_MS`, so fping batches only what arrives within its window.
 */
export const pingBenchmark: Benchmark = {
  name: 'ping',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const missing = ['ping', 'fping'].filter((program) => typeof resolveProgram(program, process.env.PATH ?? '') !== 'string');
    if (missing.length > 0) return { tables: [], ratios: [], notes: [`ping: not measured: ${missing.join(' and ')} not found on PATH (apt-get install iputils-ping fping)`] };
    const processEngine = processPingEngine();
    const fpingEngine = fpingPingEngine();

    progress(`ping: warm-up, ${fmt(sizes.warmup)} runs each`);
    for (const engine of [processEngine, fpingEngine]) await saturatedRound(engine, sizes.warmup, 'warm-up');

    const processRounds: Round[] = [];
    const fpingRounds: Round[] = [];
    const rounds: Round[] = [];
    for (let pair = 1; pair <= sizes.pairs; pair++) {
      progress(`ping: pair ${pair}/${sizes.pairs}, ${fmt(sizes.processRuns)} process and ${fmt(sizes.fpingRuns)} fping runs`);
      const p = await saturatedRound(processEngine, sizes.processRuns, `process #${pair}`);
      const f = await saturatedRound(fpingEngine, sizes.fpingRuns, `fping #${pair}`);
      processRounds.push(p);
      fpingRounds.push(f);
      rounds.push(p, f);
    }
    progress(`ping: paced, ${fmt(sizes.pacedRuns)} runs each, one every ${PACE_MS} ms`);
    const pacedProcess = await pacedRound(processEngine, sizes.pacedRuns, `process, 1 run / ${PACE_MS} ms`);
    const pacedFping = await pacedRound(fpingEngine, sizes.pacedRuns, `fping, 1 run / ${PACE_MS} ms`);
    // What the default window buys when checks arrive spread out: more runs a process, each waiting longer.
    const pacedNarrow = await pacedRound(fpingPingEngine({ batchWindowMs: NARROW_WINDOW_MS }), sizes.pacedRuns, `fping ${NARROW_WINDOW_MS} ms window, 1 run / ${PACE_MS} ms`);
    rounds.push(pacedProcess, pacedFping, pacedNarrow);

    const p = perPing(processRounds);
    const f = perPing(fpingRounds);
    const ratios: Ratio[] = [
      { name: 'ping cpu/ping process÷fping', value: p / f, digits: 1 },
      { name: `ping cpu/ping process÷fping @${1000 / PACE_MS}/s`, value: perPing([pacedProcess]) / perPing([pacedFping]), digits: 1 },
      { name: `ping cpu/ping process÷fping ${NARROW_WINDOW_MS} ms window @${1000 / PACE_MS}/s`, value: perPing([pacedProcess]) / perPing([pacedNarrow]), digits: 1 },
      { name: 'ping cpu/ping fping', value: f, unit: 'µs', digits: 0 },
    ];
    return {
      tables: [
        {
          columns: ['ping', 'runs', 'rate/s', 'cpu µs/ping', 'vigil µs/ping', 'children µs/ping', 'not ok', 'rss MB'],
          rows: rounds.map((round) => [
            round.label,
            fmt(round.runs),
            fmt(round.runs / (round.wallMs / 1000)),
            fmt((round.selfMicros + round.childMicros) / round.runs, 1),
            fmt(round.selfMicros / round.runs, 1),
            fmt(round.childMicros / round.runs, 1),
            fmt(round.notOk),
            fmt(round.rssMB),
          ]),
        },
      ],
      ratios,
      notes: [
        `ping: pingCommand (count 1, default packetTimeout) on ${TARGETS.length} loopback addresses (127.0.0.1–${TARGETS.length}), round robin; process = one iputils ping per run; fping = fpingPingEngine (its default 100 ms window, ≤ 100 hosts a process; one paced round with a 20 ms window); saturated rounds keep ${CONCURRENCY} runs in flight (one full fping batch at a time), paced rounds start one run every ${PACE_MS} ms; cpu = this process (process.cpuUsage) + the children it reaped (cutime + cstime in /proc/self/stat, ${fmt(1000 / clockTicksPerSecond())} ms ticks); the headline ratio is over the ${sizes.pairs} saturated pairs; a paced process round that cannot keep up on a busy machine shows runs timing out (10 s) as not ok.`,
      ],
    };
  },
};

/** CPU µs per ping (this process and its children) over the rounds. */
function perPing(rounds: readonly Round[]): number {
  const runs = rounds.reduce((sum, round) => sum + round.runs, 0);
  const micros = rounds.reduce((sum, round) => sum + round.selfMicros + round.childMicros, 0);
  return micros / runs;
}

/** `runs` pings, `CONCURRENCY` in flight, each started as another ends. */
async function saturatedRound(engine: PingEngine, runs: number, label: string): Promise<Round> {
  return measured(engine, label, async (run) => {
    let started = 0;
    const worker = async (): Promise<number> => {
      let notOk = 0;
      while (started < runs) notOk += await run(started++);
      return notOk;
    };
    const counts = await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    return { runs, notOk: counts.reduce((sum, count) => sum + count, 0) };
  });
}

/** `runs` pings started one every `PACE_MS`, whatever is still in flight. */
async function pacedRound(engine: PingEngine, runs: number, label: string): Promise<Round> {
  return measured(engine, label, async (run) => {
    const started = performance.now();
    const running: Promise<number>[] = [];
    for (let i = 0; i < runs; i++) {
      // On schedule, not after each sleep's overshoot: the rate stays `1000 / PACE_MS` per second.
      const due = started + i * PACE_MS;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      running.push(run(i));
    }
    const counts = await Promise.all(running);
    return { runs, notOk: counts.reduce((sum, count) => sum + count, 0) };
  });
}

/**
 * Measures `drive` running pings through the command on `engine`: wall time, this process's CPU and
 * the CPU of the children reaped meanwhile (every run's process has ended, and been reaped, once its
 * run settled).
 */
async function measured(engine: PingEngine, label: string, drive: (run: (i: number) => Promise<number>) => Promise<{ runs: number; notOk: number }>): Promise<Round> {
  const ping = pingCommand(engine);
  const attributes = TARGETS.map((host) => parseAttributes(ping, { host, count: 1 }) as PingAttributes);
  const logger = pino({ level: 'silent' });
  const run = async (i: number): Promise<number> => {
    const ctx: CommandContext = { checkId: `ping-${i}`, signal: AbortSignal.timeout(10_000), deadline: Date.now() + 10_000, logger, previous: null };
    const outcome = await ping.run(attributes[i % attributes.length] as PingAttributes, ctx);
    return outcome.state === 'ok' ? 0 : 1;
  };
  const startedAt = performance.now();
  const self = cpuMicros();
  const children = reapedChildrenCpuMicros();
  const { runs, notOk } = await within(drive(run), ROUND_LIMIT_MS, `ping ${label}`);
  return {
    label,
    runs,
    notOk,
    wallMs: performance.now() - startedAt,
    selfMicros: cpuMicros() - self,
    childMicros: reapedChildrenCpuMicros() - children,
    rssMB: rssMB(),
  };
}

/**
 * Microseconds of CPU (user + system) of this process's children that have ended and been waited for
 * (`cutime` + `cstime` in /proc/self/stat): `process.cpuUsage()` leaves them out. One clock tick of
 * resolution, and only reaped children count: read it after the runs have settled.
 */
function reapedChildrenCpuMicros(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // After the parenthesised command name fields[0] is field 3 (state): cutime (16) and cstime (17) are fields[13] and fields[14].
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[13]) + Number(fields[14]);
  if (!Number.isFinite(ticks)) throw new Error(`Expected cutime and cstime in /proc/self/stat, got ${JSON.stringify(stat.slice(0, 200))}`);
  return (ticks * 1_000_000) / clockTicksPerSecond();
}
