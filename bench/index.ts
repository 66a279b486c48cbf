/**
 * `npm run bench [-- --quick] [-- --only NAME]`: runs the benchmarks one after the other, prints each
 * one's tables on stdout as it finishes and, last, one line with every benchmark's ratios. Progress goes
 * to stderr. Exits 1 when a benchmark broke (threw): the figures are never judged, the harness is.
 */
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Benchmark, Ratio } from './benchmark.js';
import { formatRatio, formatTable, progress } from './measure.js';
import { schedulerBenchmark } from './scheduler.js';
import { tcpBenchmark } from './tcp.js';
import { httpBenchmark } from './http.js';
import { heartbeatFileBenchmark } from './heartbeat-file.js';
import { postgresQueueBenchmark } from './postgres-queue.js';
import { blackboxBenchmark } from './blackbox.js';
import { metricsScrapeBenchmark } from './metrics-scrape.js';
import { pingBenchmark } from './ping.js';
import { grpcBenchmark } from './grpc.js';
import { scaleBenchmark } from './scale.js';

/** In the order they run. A new benchmark is one file exporting a `Benchmark`, added here. */
const benchmarks: readonly Benchmark[] = [schedulerBenchmark, tcpBenchmark, httpBenchmark, heartbeatFileBenchmark, blackboxBenchmark, postgresQueueBenchmark, metricsScrapeBenchmark, pingBenchmark, grpcBenchmark, scaleBenchmark];

interface Arguments {
  readonly quick: boolean;
  /** Names given with `--only`; empty for all. */
  readonly only: readonly string[];
}

const USAGE = `usage: npm run bench -- [--quick] [--only NAME]...
  --quick      a short run (what CI calls); figures are rough
  --only NAME  run only this benchmark (repeatable): ${benchmarks.map((b) => b.name).join(', ')}`;

function parseArguments(argv: readonly string[]): Arguments {
  let quick = false;
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const name = arg === '--only' ? argv[++i] : arg.slice('--only='.length);
      if (name === undefined || name === '') throw new UsageError('Expected a benchmark name after --only, got nothing');
      if (!benchmarks.some((b) => b.name === name)) {
        throw new UsageError(`Expected --only to name a benchmark (${benchmarks.map((b) => b.name).join(', ')}), got ${JSON.stringify(name)}`);
      }
      only.push(name);
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new UsageError(`Expected --quick or --only NAME, got ${JSON.stringify(arg)}`);
  }
  return { quick, only };
}

class UsageError extends Error {}

async function main(): Promise<number> {
  let args: Arguments;
  try {
    args = parseArguments(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    return 2;
  }
  const chosen = args.only.length === 0 ? benchmarks : benchmarks.filter((b) => args.only.includes(b.name));
  const ratios: Ratio[] = [];
  const broken: string[] = [];
  const startedAt = performance.now();
  const startLoad = loadavg()[0] as number;
  process.stdout.write(`vigil bench${args.quick ? ' --quick' : ''}: node ${process.version}, ${process.platform}/${process.arch}\n\n`);
  for (const benchmark of chosen) {
    progress(`${benchmark.name}: starting`);
    try {
      const report = await benchmark.run({ quick: args.quick });
      for (const table of report.tables) process.stdout.write(`${formatTable(table)}\n\n`);
      for (const note of report.notes ?? []) process.stdout.write(`${note}\n`);
      if (report.notes?.length) process.stdout.write('\n');
      ratios.push(...report.ratios);
    } catch (error) {
      broken.push(benchmark.name);
      process.stderr.write(`bench ${benchmark.name} broke: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.stdout.write(`${benchmark.name}: broke (see stderr)\n\n`);
    }
  }
  // Other work on the machine starves the benchmarks: runs/s and lag suffer first, CPU per run least.
  process.stdout.write(`machine: ${availableParallelism()} cores, load average (1 min) ${startLoad.toFixed(1)} at start, ${(loadavg()[0] as number).toFixed(1)} at end\n`);
  process.stdout.write(`ratios: ${ratios.map(formatRatio).join('  ')}\n`);
  progress(`done in ${((performance.now() - startedAt) / 1000).toFixed(1)} s${broken.length > 0 ? `; broken: ${broken.join(', ')}` : ''}`);
  return broken.length > 0 ? 1 : 0;
}

process.exitCode = await main();
