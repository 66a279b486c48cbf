import { Client, credentials, Metadata, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import { createRequire } from 'node:module';
import { WebSocket, type RawData } from 'ws';
import type { CheckSpec } from '../src/checks/check.js';
import type { AnyCommand } from '../src/commands/command.js';
import { grpcCommand } from '../src/commands/grpc/grpc.js';
import { decodeHealthCheckResponse, HEALTH_CHECK_PATH, type HealthCheckResponse } from '../src/commands/grpc/health-messages.js';
import { webSocketCommand } from '../src/commands/websocket/websocket.js';
import type { Benchmark, BenchReport, Ratio, Table } from './benchmark.js';
import { closedLoop } from './closed-loop.js';
import { fmt, markUsage, progress, rssMB, usageSince, type Usage } from './measure.js';
import { benchSpec, measureSaturated, parseAttributes, startPipeline } from './pipeline.js';
import { multiPortTargetScript, startTargetProcess, type TargetProcess } from './processes.js';

const HOST = '127.0.0.1';
/** Calls (or WebSocket sessions) in flight at once, for the bare loops and for vigil (`server.concurrency`). */
const CONCURRENCY = 64;
const TIMEOUT_MS = 5_000;
const require = createRequire(import.meta.url);

/**
 * A grpc-js server in its own process answering every `grpc.health.v1.Health/Check` SERVING, bound to
 * `count` ports (one per check: safe mode never runs two checks of one target at once).
 */
function grpcTargetScript(count: number): string {
  return `
const grpc = require(${JSON.stringify(require.resolve('@grpc/grpc-js'))});
const SERVING = Buffer.from([8, 1]);
const id = (bytes) => bytes;
const health = { Check: { path: '${HEALTH_CHECK_PATH}', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } };
const server = new grpc.Server();
server.addService(health, { Check: (call, callback) => callback(null, SERVING) });
const ports = [];
let bound = 0;
for (let i = 0; i < ${count}; i++) {
  server.bindAsync('${HOST}:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error) { console.error(error); process.exit(1); }
    ports[i] = port;
    if (++bound === ${count}) process.stdout.write(ports.join(' ') + '\\n');
  });
}
`;
}

/** A ws server in its own process on `count` ports, echoing every message (no permessage-deflate). */
function webSocketTargetScript(count: number): string {
  return multiPortTargetScript(
    HOST,
    count,
    `const http = require('node:http');
const { WebSocketServer } = require(${JSON.stringify(require.resolve('ws'))});
const onConnection = (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
};
const createServer = () => {
  const server = http.createServer();
  new WebSocketServer({ server, perMessageDeflate: false }).on('connection', onConnection);
  return server;
};`,
  );
}

interface Sizes {
  /** Unmeasured runs of each kind first, so every client is JIT-compiled before the first measured round. */
  readonly warmup: number;
  /** Measured runs per round. */
  readonly runs: number;
  /** bare/vigil rounds, alternating. */
  readonly pairs: number;
  /** Checks (and target ports) vigil cycles through; each runs once (metric series created) before measuring. */
  readonly checks: number;
}

const FULL: Sizes = { warmup: 2_000, runs: 5_000, pairs: 2, checks: 256 };
// A warm-up as long as the round: a grpc-js client is far from compiled after a few hundred calls.
const QUICK: Sizes = { warmup: 300, runs: 300, pairs: 1, checks: 128 };
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
 * grpc and websocket checks through the whole pipeline against bare client loops doing the same work at
 * the same concurrency, against target servers in other processes; bare and vigil rounds alternate.
 * grpc: a health call on a fresh channel, closed after it (as the command does), and on a channel
 * kept per target (what caching channels would save). websocket: connect → send → echoed reply →
 * close. vigil is saturated by one-shot checks made due again as each finishes.
 */
export const grpcBenchmark: Benchmark = {
  name: 'grpc',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const grpc = await grpcSection(sizes);
    const ws = await webSocketSection(sizes);
    return {
      tables: [grpc.table, ws.table],
      ratios: [...grpc.ratios, ...ws.ratios],
      notes: [
        `grpc: grpc.health.v1.Health/Check answered SERVING by a grpc-js server in another process (its CPU from /proc, 10 ms ticks), one port per check; concurrency ${CONCURRENCY} everywhere; bare fresh = new Client (the command's channel options: own subchannel pool, no channelz, no retries) → makeUnaryRequest → close(); bare reused = one Client per port kept for the round; vigil = grpcCommand through the whole pipeline (server.concurrency ${CONCURRENCY}, of which the default pool gets 90 %), saturated by ${fmt(sizes.checks)} one-shot checks made due again as each finishes (measured after each ran once); ratios over the ${sizes.pairs} round${sizes.pairs === 1 ? '' : 's'}, vigil against bare fresh.`,
        `websocket: a ws server in another process echoing each message, one port per check; bare = new WebSocket (no permessage-deflate) → open → send "ping" → the echo → close(1000) → its close event; vigil = webSocketCommand with send "ping", expect "ping" (which waits for the close too), through the same pipeline.`,
      ],
    };
  },
};

function total(list: readonly Round[]): { runs: number; cpu: number; wallMs: number } {
  return {
    runs: list.reduce((sum, round) => sum + round.runs, 0),
    cpu: list.reduce((sum, round) => sum + round.usage.cpuMicros, 0),
    wallMs: list.reduce((sum, round) => sum + round.usage.wallMs, 0),
  };
}

function table(name: string, rounds: readonly Round[]): Table {
  return {
    columns: [name, 'runs', 'rate/s', 'cpu µs/check', 'target cpu µs/check', 'not ok', 'rss MB'],
    rows: rounds.map((round) => [
      round.label,
      fmt(round.runs),
      fmt(round.runs / (round.usage.wallMs / 1000)),
      fmt(round.usage.cpuMicros / round.runs, 1),
      fmt(round.usage.otherCpuMicros / round.runs, 1),
      fmt(round.errors),
      fmt(round.rssMB),
    ]),
  };
}

/** One unit of bare work against `port`; calls `done` once, with whether it succeeded. */
type Work = (port: number, done: (ok: boolean) => void) => void;

async function bareRound(target: TargetProcess, count: number, label: string, work: Work): Promise<Round> {
  const mark = markUsage(target.pid);
  const { done, errors } = await closedLoop(CONCURRENCY, count, Date.now() + ROUND_LIMIT_MS, (i, finish) => work(target.ports[i % target.ports.length] as number, finish));
  const usage = usageSince(mark);
  return { label, runs: done, errors, usage, rssMB: rssMB() };
}

async function vigilRound(target: TargetProcess, command: AnyCommand, specs: CheckSpec[], runs: number, label: string): Promise<Round> {
  const pipeline = startPipeline({ commands: [command], specs, concurrency: CONCURRENCY });
  try {
    const measured = await measureSaturated(pipeline, target.pid, specs.length, runs, `${command.name} ${label}`, ROUND_LIMIT_MS);
    return { label, ...measured, rssMB: rssMB() };
  } finally {
    await pipeline.stop();
  }
}

/** The channel options of the `grpc` command (src/commands/grpc/grpc.ts), so that the bare loop differs only in what vigil adds. */
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.use_local_subchannel_pool': 1,
  'grpc.enable_channelz': 0,
  'grpc.enable_retries': 0,
  'grpc.enable_http_proxy': 0,
  'grpc.service_config_disable_resolution': 1,
};
const INSECURE = credentials.createInsecure();
const EMPTY_REQUEST = Buffer.alloc(0);

function identity(bytes: Buffer): Buffer {
  return bytes;
}

function healthCall(client: Client, done: (ok: boolean) => void): void {
  client.makeUnaryRequest(HEALTH_CHECK_PATH, identity, decodeHealthCheckResponse, EMPTY_REQUEST, new Metadata(), { deadline: Date.now() + TIMEOUT_MS }, (error: ServiceError | null, response?: HealthCheckResponse) => {
    done(error === null && response !== undefined && 'status' in response && response.status === 1);
  });
}

const freshChannelCall: Work = (port, done) => {
  const client = new Client(`${HOST}:${port}`, INSECURE, CHANNEL_OPTIONS);
  healthCall(client, (ok) => {
    client.close();
    done(ok);
  });
};

/** A call on the port's kept channel (made on first use); `close()` ends them all. */
function reusedChannels(): { work: Work; close(): void } {
  const clients = new Map<number, Client>();
  return {
    work: (port, done) => {
      let client = clients.get(port);
      if (client === undefined) clients.set(port, (client = new Client(`${HOST}:${port}`, INSECURE, CHANNEL_OPTIONS)));
      healthCall(client, done);
    },
    close: () => {
      for (const client of clients.values()) client.close();
      clients.clear();
    },
  };
}

async function grpcSection(sizes: Sizes): Promise<{ table: Table; ratios: Ratio[] }> {
  const target = await startTargetProcess(grpcTargetScript(sizes.checks));
  const reused = reusedChannels();
  try {
    const command = grpcCommand();
    const specs = target.ports.map((port, i) => benchSpec(`grpc-${i}`, 'grpc', parseAttributes(command, { host: HOST, port }), { intervalMs: null, timeoutMs: TIMEOUT_MS }));
    progress(`grpc: warm-up, ${fmt(sizes.warmup)} calls each`);
    await bareRound(target, sizes.warmup, 'warm-up', freshChannelCall);
    await bareRound(target, sizes.warmup, 'warm-up', reused.work);
    await vigilRound(target, command, specs, sizes.warmup, 'warm-up');

    const fresh: Round[] = [];
    const kept: Round[] = [];
    const vigil: Round[] = [];
    const rounds: Round[] = [];
    for (let pair = 1; pair <= sizes.pairs; pair++) {
      progress(`grpc: round ${pair}/${sizes.pairs}, ${fmt(sizes.runs)} calls each`);
      const f = await bareRound(target, sizes.runs, `bare fresh channel #${pair}`, freshChannelCall);
      const k = await bareRound(target, sizes.runs, `bare reused channel #${pair}`, reused.work);
      const v = await vigilRound(target, command, specs, sizes.runs, `vigil #${pair}`);
      fresh.push(f);
      kept.push(k);
      vigil.push(v);
      rounds.push(f, k, v);
    }
    const f = total(fresh);
    const k = total(kept);
    const v = total(vigil);
    return {
      table: table('grpc', rounds),
      ratios: [
        { name: 'grpc cpu/check vigil÷bare', value: v.cpu / v.runs / (f.cpu / f.runs) },
        { name: 'grpc throughput vigil÷bare', value: v.runs / v.wallMs / (f.runs / f.wallMs) },
        { name: 'grpc cpu/call fresh÷reused channel', value: f.cpu / f.runs / (k.cpu / k.runs) },
      ],
    };
  } finally {
    reused.close();
    await target.stop();
  }
}

const bareWebSocket: Work = (port, done) => {
  const ws = new WebSocket(`ws://${HOST}:${port}/`, { perMessageDeflate: false });
  let ok = false;
  ws.on('open', () => ws.send('ping'));
  ws.on('message', (data: RawData) => {
    ok = Buffer.isBuffer(data) && data.toString() === 'ping';
    ws.close(1000);
  });
  ws.on('error', () => undefined);
  ws.on('close', () => done(ok));
};

async function webSocketSection(sizes: Sizes): Promise<{ table: Table; ratios: Ratio[] }> {
  const target = await startTargetProcess(webSocketTargetScript(sizes.checks));
  try {
    const command = webSocketCommand();
    const specs = target.ports.map((port, i) =>
      benchSpec(`ws-${i}`, 'websocket', parseAttributes(command, { url: `ws://${HOST}:${port}/`, send: 'ping', expect: 'ping' }), { intervalMs: null, timeoutMs: TIMEOUT_MS }),
    );
    progress(`websocket: warm-up, ${fmt(sizes.warmup)} sessions each`);
    await bareRound(target, sizes.warmup, 'warm-up', bareWebSocket);
    await vigilRound(target, command, specs, sizes.warmup, 'warm-up');

    const bare: Round[] = [];
    const vigil: Round[] = [];
    const rounds: Round[] = [];
    for (let pair = 1; pair <= sizes.pairs; pair++) {
      progress(`websocket: round ${pair}/${sizes.pairs}, ${fmt(sizes.runs)} sessions each`);
      const b = await bareRound(target, sizes.runs, `bare ws #${pair}`, bareWebSocket);
      const v = await vigilRound(target, command, specs, sizes.runs, `vigil #${pair}`);
      bare.push(b);
      vigil.push(v);
      rounds.push(b, v);
    }
    const b = total(bare);
    const v = total(vigil);
    return {
      table: table('websocket', rounds),
      ratios: [
        { name: 'websocket cpu/check vigil÷bare', value: v.cpu / v.runs / (b.cpu / b.runs) },
        { name: 'websocket throughput vigil÷bare', value: v.runs / v.wallMs / (b.runs / b.wallMs) },
      ],
    };
  } finally {
    await target.stop();
  }
}
