import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { heartbeatFileCommand } from '../src/commands/heartbeat/heartbeat-file.js';
import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { fmt, markUsage, NA, progress, rssMB, Samples, usageSince, type Summary, type Usage } from './measure.js';
import { benchSpec, parseAttributes, startPipeline } from './pipeline.js';

/** Heartbeat files, and checks (one per file). */
const FILES = 1_000;
/** Reads in flight at once, for the bare loop and for vigil (`server.concurrency`). */
const CONCURRENCY = 64;
/** Every check's interval: 1,000 checks every 200 ms ask for 5,000 runs/s. */
const INTERVAL_MS = 200;
/** Fresh for the whole run: every check is `ok`, as a healthy fleet's are. */
const CRIT_AFTER_MS = 3_600_000;

interface Sizes {
  /** Unmeasured bare reads first, so the bare loop is JIT-compiled before the first measured pair. */
  readonly warmup: number;
  /** Measured reads per bare round. */
  readonly reads: number;
  /** Bare/vigil pairs, alternating. */
  readonly pairs: number;
  /** Measured window of each vigil round, after one unmeasured second in which every check ran. */
  readonly windowMs: number;
}

const FULL: Sizes = { warmup: 5_000, reads: 30_000, pairs: 3, windowMs: 5_000 };
const QUICK: Sizes = { warmup: 1_000, reads: 5_000, pairs: 2, windowMs: 1_000 };
/** No bare round may take longer, whatever the machine: a slow one reports what it did by then. */
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
 * 1,000 heartbeat-file checks through the whole pipeline, each every 200 ms, against a bare loop of
 * `fs.promises.readFile` + `JSON.parse` of the same files at the same concurrency; bare and vigil
 * rounds alternate. A synchronous read loop is shown once for reference (the floor the issue quotes).
 * The files are written once, fresh, in a temporary directory removed at the end.
 */
export const heartbeatFileBenchmark: Benchmark = {
  name: 'heartbeat-file',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const dir = await mkdtemp(join(tmpdir(), 'vigil-bench-heartbeat-'));
    try {
      const files = await writeHeartbeats(dir);
      progress(`heartbeat-file: warm-up, ${fmt(sizes.warmup)} reads`);
      await bareRound(files, sizes.warmup, 'warm-up');

      const bare: Round[] = [];
      const vigil: Round[] = [];
      const rounds: Round[] = [];
      for (let pair = 1; pair <= sizes.pairs; pair++) {
        progress(`heartbeat-file: pair ${pair}/${sizes.pairs}, ${fmt(sizes.reads)} reads / ${fmt(FILES)} checks for ${fmt(sizes.windowMs)} ms`);
        const b = await bareRound(files, sizes.reads, `bare readFile #${pair}`);
        const v = await vigilRound(files, sizes.windowMs, `vigil #${pair}`);
        bare.push(b);
        vigil.push(v);
        rounds.push(b, v);
      }
      rounds.push(syncRound(files, sizes.reads));

      const b = total(bare);
      const v = total(vigil);
      const ratios: Ratio[] = [
        { name: 'heartbeat-file cpu/check vigil÷bare', value: v.cpu / v.runs / (b.cpu / b.runs) },
        { name: 'heartbeat-file cpu/check', value: v.cpu / v.runs, unit: 'µs', digits: 1 },
      ];
      return {
        tables: [
          {
            columns: ['heartbeat-file', 'runs', 'rate/s', 'cpu µs/check', 'not ok', 'lag p50 ms', 'lag p99 ms', 'rss MB'],
            rows: rounds.map((round) => [
              round.label,
              fmt(round.runs),
              fmt(round.runs / (round.usage.wallMs / 1000)),
              fmt(round.usage.cpuMicros / round.runs, 1),
              fmt(round.errors),
              round.lag ? fmt(round.lag.p50) : NA,
              round.lag ? fmt(round.lag.p99) : NA,
              fmt(round.rssMB),
            ]),
          },
        ],
        ratios,
        notes: [
          `heartbeat-file: ${fmt(FILES)} fresh heartbeat files (~90 B of JSON each) in a temporary directory; bare = fs.promises.readFile + JSON.parse round the files, ${CONCURRENCY} at a time; vigil = heartbeatFileCommand through the whole pipeline (server.concurrency ${CONCURRENCY}), ${fmt(FILES)} checks every ${INTERVAL_MS} ms, measured ${fmt(sizes.windowMs)} ms after one unmeasured second; CPU is this process's only (the thread pool's reads included); the sync row is readFileSync + JSON.parse in a plain loop, for reference; ratios over the ${sizes.pairs} pairs; the issue's target is ≤ 50 µs per check.`,
        ],
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};

function total(list: readonly Round[]): { runs: number; cpu: number } {
  return { runs: list.reduce((sum, round) => sum + round.runs, 0), cpu: list.reduce((sum, round) => sum + round.usage.cpuMicros, 0) };
}

/** Writes `FILES` heartbeat files dated now; resolves their paths. */
async function writeHeartbeats(dir: string): Promise<string[]> {
  const now = Date.now();
  const files = Array.from({ length: FILES }, (_, i) => join(dir, `worker-${i}.json`));
  await Promise.all(
    files.map((file, i) =>
      writeFile(file, JSON.stringify({ timestamp: now / 1000, uptime: 3600.5, memoryUsage: 73_400_320, pid: 10_000 + i, beat: 720 })),
    ),
  );
  return files;
}

/** `count` reads with readFile + JSON.parse, `CONCURRENCY` at a time, round the files. */
async function bareRound(files: readonly string[], count: number, label: string): Promise<Round> {
  const mark = markUsage();
  const deadline = Date.now() + ROUND_LIMIT_MS;
  let next = 0;
  let errors = 0;
  const worker = async (): Promise<void> => {
    while (next < count && Date.now() < deadline) {
      const file = files[next++ % files.length] as string;
      try {
        const beat = JSON.parse(await readFile(file, 'utf8')) as { timestamp?: unknown };
        if (typeof beat.timestamp !== 'number') errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const usage = usageSince(mark);
  return { label, runs: Math.min(next, count), errors, usage, lag: null, rssMB: rssMB() };
}

/** `count` reads with readFileSync + JSON.parse, one after the other. */
function syncRound(files: readonly string[], count: number): Round {
  const mark = markUsage();
  let errors = 0;
  for (let i = 0; i < count; i++) {
    const beat = JSON.parse(readFileSync(files[i % files.length] as string, 'utf8')) as { timestamp?: unknown };
    if (typeof beat.timestamp !== 'number') errors++;
  }
  return { label: 'bare readFileSync', runs: count, errors, usage: usageSince(mark), lag: null, rssMB: rssMB() };
}

/** `FILES` heartbeat-file checks every `INTERVAL_MS`, one unmeasured second, then measured for `windowMs`. */
async function vigilRound(files: readonly string[], windowMs: number, label: string): Promise<Round> {
  const command = heartbeatFileCommand();
  const specs = files.map((file, i) =>
    benchSpec(`heartbeat-${i}`, 'heartbeat-file', parseAttributes(command, { file, critAfter: CRIT_AFTER_MS }), { intervalMs: INTERVAL_MS, timeoutMs: INTERVAL_MS }),
  );
  const pipeline = startPipeline({ commands: [command], specs, concurrency: CONCURRENCY });
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
    await sleep(1_000);
    const before = server.stats.runs;
    const mark = markUsage();
    measuring = true;
    await sleep(windowMs);
    measuring = false;
    const usage = usageSince(mark);
    return { label, runs: server.stats.runs - before, errors, usage, lag: lags.summary(), rssMB: rssMB() };
  } finally {
    await pipeline.stop();
  }
}
