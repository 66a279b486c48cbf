import { request, type IncomingMessage } from 'node:http';
import type { CheckSpec } from '../src/checks/check.js';
import type { AnyCommand } from '../src/commands/command.js';
import { httpCommand } from '../src/commands/http/http.js';
import type { Benchmark, BenchReport, Ratio } from './benchmark.js';
import { closedLoop } from './closed-loop.js';
import { fmt, markUsage, progress, rssMB, usageSince, type Usage } from './measure.js';
import { benchSpec, measureSaturated, parseAttributes, startPipeline } from './pipeline.js';
import { multiPortTargetScript, startTargetProcess, type TargetProcess } from './processes.js';

const HOST = '127.0.0.1';
/** GETs in flight at once, for the bare loops and for vigil (`server.concurrency`). */
const CONCURRENCY = 64;

/**
 * Listens on `count` ports, each standing for one target (safe mode never runs two checks of one target
 * at once); answers every GET `200 ok` with `connection: close`, so every GET is a fresh connection for
 * every client (vigil's http command, node:http without an agent, and fetch's pooled dispatcher alike).
 * In its own process, so the client's CPU is the client's.
 */
export function targetScript(count: number): string {
  return multiPortTargetScript(
    HOST,
    count,
    `const http = require('node:http');
const onRequest = (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2', connection: 'close' });
  res.end('ok');
};
const createServer = () => {
  const server = http.createServer({ keepAlive: false }, onRequest);
  server.on('clientError', (error, socket) => socket.destroy());
  return server;
};`,
  );
}

interface Sizes {
  /** Unmeasured GETs of each kind first, so every client is JIT-compiled before the first measured pair. */
  readonly warmup: number;
  /** Measured GETs (runs) per round. */
  readonly runs: number;
  /** bare node:http / bare fetch / vigil triples, alternating. */
  readonly pairs: number;
  /** Checks (and target ports) vigil cycles through; each runs once (metric series created) before measuring. */
  readonly checks: number;
}

const FULL: Sizes = { warmup: 2_000, runs: 15_000, pairs: 2, checks: 256 };
const QUICK: Sizes = { warmup: 500, runs: 2_000, pairs: 2, checks: 256 };
/** No round may take longer, whatever the machine: a slow one reports what it did by then. */
const ROUND_LIMIT_MS = 60_000;

interface Round {
  readonly label: string;
  readonly runs: number;
  readonly errors: number;
  readonly usage: Usage;
  readonly rssMB: number;
}

/**
 * http checks through the whole pipeline against bare loops doing the same GETs on fresh connections
 * (node:http with `agent: false`, and fetch), at the same concurrency, against a target server in
 * another process; the three alternate. vigil is saturated by one-shot checks made due again as each
 * finishes, a closed loop like the bare ones. The ratios compare vigil with bare node:http, the cheaper
 * client for fresh connections (the fetch rows show by how much).
 */
export const httpBenchmark: Benchmark = {
  name: 'http',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const target = await startTargetProcess(targetScript(sizes.checks));
    try {
      progress(`http: warm-up, ${fmt(sizes.warmup)} GETs each`);
      await bareRound(target, sizes.warmup, 'warm-up', nodeHttpGet);
      await bareRound(target, sizes.warmup, 'warm-up', fetchGet);
      await vigilSaturatedRound(target, sizes.checks, sizes.warmup, 'warm-up');

      const bare: Round[] = [];
      const fetched: Round[] = [];
      const vigil: Round[] = [];
      const rounds: Round[] = [];
      for (let pair = 1; pair <= sizes.pairs; pair++) {
        progress(`http: round ${pair}/${sizes.pairs}, ${fmt(sizes.runs)} GETs each`);
        const b = await bareRound(target, sizes.runs, `bare node:http #${pair}`, nodeHttpGet);
        const f = await bareRound(target, sizes.runs, `bare fetch #${pair}`, fetchGet);
        const v = await vigilSaturatedRound(target, sizes.checks, sizes.runs, `vigil #${pair}`);
        bare.push(b);
        fetched.push(f);
        vigil.push(v);
        rounds.push(b, f, v);
      }

      const b = total(bare);
      const f = total(fetched);
      const v = total(vigil);
      const ratios: Ratio[] = [
        { name: 'http cpu/check vigil÷bare', value: v.cpu / v.runs / (b.cpu / b.runs) },
        { name: 'http throughput vigil÷bare', value: v.runs / v.wallMs / (b.runs / b.wallMs) },
        { name: 'http cpu/GET fetch÷node:http', value: f.cpu / f.runs / (b.cpu / b.runs) },
      ];
      return {
        tables: [
          {
            columns: ['http', 'runs', 'rate/s', 'cpu µs/check', 'target cpu µs/GET', 'not ok', 'rss MB'],
            rows: rounds.map((round) => [
              round.label,
              fmt(round.runs),
              fmt(round.runs / (round.usage.wallMs / 1000)),
              fmt(round.usage.cpuMicros / round.runs, 1),
              fmt(round.usage.otherCpuMicros / round.runs, 1),
              fmt(round.errors),
              fmt(round.rssMB),
            ]),
          },
        ],
        ratios,
        notes: [
          `http: GET / answered 200 "ok" with connection: close by a node:http server in another process (its CPU from /proc, 10 ms ticks), one port per check, so every GET is a fresh connection; concurrency ${CONCURRENCY} everywhere; bare node:http = request({ agent: false }) → read the body; bare fetch = fetch() → text(); vigil = httpCommand (keepAlive false, its default) through the whole pipeline (server.concurrency ${CONCURRENCY}, of which the default pool gets 90 %), saturated by ${fmt(sizes.checks)} one-shot checks made due again as each finishes (measured after each ran once); ratios over the ${sizes.pairs} rounds, vigil against bare node:http.`,
        ],
      };
    } finally {
      await target.stop();
    }
  },
};

function total(list: readonly Round[]): { runs: number; cpu: number; wallMs: number } {
  return {
    runs: list.reduce((sum, round) => sum + round.runs, 0),
    cpu: list.reduce((sum, round) => sum + round.usage.cpuMicros, 0),
    wallMs: list.reduce((sum, round) => sum + round.usage.wallMs, 0),
  };
}

/** One GET to `port`; calls `done` once, with whether it answered 200 and its body was read. */
type Get = (port: number, done: (ok: boolean) => void) => void;

const nodeHttpGet: Get = (port, done) => {
  let called = false;
  const finish = (ok: boolean): void => {
    if (called) return;
    called = true;
    done(ok);
  };
  const req = request({ host: HOST, port, path: '/', agent: false }, (res: IncomingMessage) => {
    res.on('error', () => finish(false));
    res.on('end', () => finish(res.statusCode === 200));
    res.resume();
  });
  req.on('error', () => finish(false));
  req.end();
};

const fetchGet: Get = (port, done) => {
  fetch(`http://${HOST}:${port}/`).then(
    async (response) => {
      await response.text();
      done(response.status === 200);
    },
    () => done(false),
  );
};

/** `count` GETs with `get`, `CONCURRENCY` at a time, round the target ports. */
async function bareRound(target: TargetProcess, count: number, label: string, get: Get): Promise<Round> {
  const mark = markUsage(target.pid);
  const { done, errors } = await closedLoop(CONCURRENCY, count, Date.now() + ROUND_LIMIT_MS, (i, finish) => get(target.ports[i % target.ports.length] as number, finish));
  const usage = usageSince(mark);
  return { label, runs: done, errors, usage, rssMB: rssMB() };
}


/**
 * vigil saturated: `checks` one-shot http checks, all due at once, each made due again (`reschedule`) as
 * it finishes, so `CONCURRENCY` run all the time. The first `checks` runs warm up (every check's metric
 * series created); the next `runs` are measured.
 */
async function vigilSaturatedRound(target: TargetProcess, checks: number, runs: number, label: string): Promise<Round> {
  const http = httpCommand();
  const specs = httpSpecs(http, target, checks);
  const pipeline = startPipeline({ commands: [http], specs, concurrency: CONCURRENCY });
  try {
    const measured = await measureSaturated(pipeline, target.pid, checks, runs, `http ${label}`, ROUND_LIMIT_MS);
    return { label, ...measured, rssMB: rssMB() };
  } finally {
    await pipeline.stop();
  }
}

/** One http check per target port. */
export function httpSpecs(http: AnyCommand, target: TargetProcess, checks: number): CheckSpec[] {
  const { ports } = target;
  return Array.from({ length: checks }, (_, i) =>
    benchSpec(`http-${i}`, 'http', parseAttributes(http, { url: `http://${HOST}:${ports[i % ports.length]}/` }), { intervalMs: null, timeoutMs: 5_000 }),
  );
}
