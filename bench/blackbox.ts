import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckSpec } from '../src/checks/check.js';
import type { AnyCommand } from '../src/commands/command.js';
import { httpCommand } from '../src/commands/http/http.js';
import { tcpCommand } from '../src/commands/tcp.js';
import type { Benchmark, BenchReport, Ratio, Table } from './benchmark.js';
import { closedLoop } from './closed-loop.js';
import { httpSpecs, targetScript as httpTargetScript } from './http.js';
import { fmt, markUsage, NA, processCpuMicros, progress, usageSince, within } from './measure.js';
import { measureSaturated, startPipeline } from './pipeline.js';
import { startTargetProcess, type TargetProcess } from './processes.js';
import { tcpSpecs, targetScript as tcpTargetScript } from './tcp.js';

/** Debian's `prometheus-blackbox-exporter` package installs it here; `BLACKBOX_EXPORTER_BIN` points elsewhere. */
const BLACKBOX_BIN = process.env.BLACKBOX_EXPORTER_BIN ?? '/usr/bin/prometheus-blackbox-exporter';
const DEBIAN_PACKAGE = 'prometheus-blackbox-exporter';
const HOST = '127.0.0.1';
/** Probes in flight at once (the driver's keep-alive sockets), and vigil's `server.concurrency`. */
const CONCURRENCY = 32;
/** Target ports, and vigil's checks (one per port: safe mode never runs two checks of one target at once). */
const CHECKS = 256;
/** blackbox's module timeout and vigil's check timeout alike. */
const TIMEOUT_MS = 5_000;

/**
 * The two modules the issue names. `preferred_ip_protocol: ip4` because every target is an IPv4
 * literal; blackbox builds a new HTTP client per probe, so every http probe is a fresh connection, as
 * vigil's (keepAlive false, its default) and the target's `connection: close` make them too.
 */
const CONFIG = `modules:
  tcp_connect:
    prober: tcp
    timeout: ${TIMEOUT_MS / 1000}s
    tcp:
      preferred_ip_protocol: ip4
  http_2xx:
    prober: http
    timeout: ${TIMEOUT_MS / 1000}s
    http:
      preferred_ip_protocol: ip4
`;

interface Sizes {
  /** Unmeasured probes of the exporter and checks of vigil first, per module. */
  readonly warmup: number;
  /** Measured probes (or checks) per round. */
  readonly runs: number;
  /** exporter/vigil pairs per module, alternating. */
  readonly pairs: number;
}

const FULL: Sizes = { warmup: 1_000, runs: 3_000, pairs: 3 };
const QUICK: Sizes = { warmup: 200, runs: 600, pairs: 2 };
/** No round may take longer, whatever the machine: a slow one reports what it did by then. */
const ROUND_LIMIT_MS = 60_000;
/** For the exporter to print the address it listens on, and to answer `/-/healthy`. */
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

/** One kind of check, with its target server, its blackbox module and its vigil command. */
interface Module {
  readonly kind: 'tcp' | 'http';
  readonly target: TargetProcess;
  /** `/probe?module=…&target=…` for one target port. */
  probePath(port: number): string;
  readonly command: AnyCommand;
  /** vigil's one-shot checks, one per target port. */
  specs(): CheckSpec[];
}

interface Round {
  readonly label: string;
  readonly runs: number;
  readonly errors: number;
  readonly wallMs: number;
  /** The exporter's CPU (from /proc) for its rounds, this process's for vigil's. */
  readonly cpuMicros: number;
  /** This process's CPU while it drove the exporter; `NaN` for vigil (nothing drives it). */
  readonly driverCpuMicros: number;
  readonly targetCpuMicros: number;
}

/**
 * vigil against Prometheus' blackbox_exporter, the usual way to probe TCP and HTTP targets from
 * Prometheus: CPU per probe of the exporter (a Go process, its CPU from /proc) against CPU per check of
 * vigil's whole pipeline (this process), on the same targets. The exporter is driven as Prometheus
 * would drive it, `/probe?module=…&target=…` over keep-alive connections at a fixed concurrency; the
 * driver's own CPU is shown, not charged to the exporter. Exporter and vigil rounds alternate. Without
 * the exporter, vigil's figures are still shown and the notes say what to install.
 */
export const blackboxBenchmark: Benchmark = {
  name: 'blackbox',
  async run({ quick }): Promise<BenchReport> {
    const sizes = quick ? QUICK : FULL;
    const missing = await exporterMissing();
    const tcp = tcpCommand();
    const http = httpCommand();
    await using tcpTarget = await startTargetProcess(tcpTargetScript(CHECKS));
    await using httpTarget = await startTargetProcess(httpTargetScript(CHECKS));
    const modules: Module[] = [
      {
        kind: 'tcp',
        target: tcpTarget,
        probePath: (port) => `/probe?module=tcp_connect&target=${HOST}:${port}`,
        command: tcp,
        specs: () => tcpSpecs(tcp, tcpTarget, CHECKS, { intervalMs: null, timeoutMs: TIMEOUT_MS }),
      },
      {
        kind: 'http',
        target: httpTarget,
        probePath: (port) => `/probe?module=http_2xx&target=${encodeURIComponent(`http://${HOST}:${port}/`)}`,
        command: http,
        specs: () => httpSpecs(http, httpTarget, CHECKS),
      },
    ];
    await using exporter = missing === null ? await BlackboxExporter.start() : null;

    const tables: Table[] = [];
    const ratios: Ratio[] = [];
    for (const module of modules) {
      const { kind } = module;
      progress(`blackbox: ${kind} warm-up, ${fmt(sizes.warmup)} runs each`);
      if (exporter) await exporterRound(exporter, module, sizes.warmup, 'warm-up');
      await vigilRound(module, sizes.warmup, 'warm-up');

      const probed: Round[] = [];
      const checked: Round[] = [];
      const rounds: Round[] = [];
      for (let pair = 1; pair <= sizes.pairs; pair++) {
        progress(`blackbox: ${kind} pair ${pair}/${sizes.pairs}, ${fmt(sizes.runs)} runs each`);
        if (exporter) {
          const round = await exporterRound(exporter, module, sizes.runs, `exporter #${pair}`);
          probed.push(round);
          rounds.push(round);
        }
        const round = await vigilRound(module, sizes.runs, `vigil #${pair}`);
        checked.push(round);
        rounds.push(round);
      }
      tables.push(table(kind, rounds));
      if (exporter) ratios.push({ name: `blackbox ${kind} cpu/probe÷vigil cpu/check`, value: cpuPerRun(probed) / cpuPerRun(checked) });
    }

    const notes = [
      `blackbox: ${missing ?? `blackbox_exporter ${exporter?.version ?? '(version unknown)'} (${BLACKBOX_BIN}) on ${HOST}, modules tcp_connect and http_2xx, driven with /probe over ${CONCURRENCY} keep-alive node:http connections; its CPU from /proc (10 ms ticks); the driver's CPU (this process) is its own column, not charged to the exporter; a probe is not ok unless it answers 200 with probe_success 1.`}`,
      `blackbox: vigil = tcpCommand and httpCommand through the whole pipeline (server.concurrency ${CONCURRENCY}, of which the default pool gets 90 %), saturated by ${CHECKS} one-shot checks made due again as each finishes (measured after each ran once), this process's CPU; "cpu µs/run" is the exporter's per probe or vigil's per check; the same target servers in other processes for both (tcp: accept and close; http: 200 "ok" with connection: close), ${CHECKS} ports; ratios over the ${sizes.pairs} pairs.`,
    ];
    return { tables, ratios, notes };
  },
};

/** `null` when the exporter can be run; else what the notes say instead of its figures. */
async function exporterMissing(): Promise<string | null> {
  try {
    await access(BLACKBOX_BIN, constants.X_OK);
    return null;
  } catch {
    return `blackbox_exporter was not found at ${BLACKBOX_BIN}, so only vigil's figures are shown: install the Debian package \`${DEBIAN_PACKAGE}\` (apt-get install ${DEBIAN_PACKAGE}) or set BLACKBOX_EXPORTER_BIN to its binary`;
  }
}

function cpuPerRun(rounds: readonly Round[]): number {
  const runs = rounds.reduce((sum, round) => sum + round.runs, 0);
  return rounds.reduce((sum, round) => sum + round.cpuMicros, 0) / runs;
}

function table(kind: string, rounds: readonly Round[]): Table {
  return {
    columns: [`blackbox ${kind}`, 'runs', 'rate/s', 'cpu µs/run', 'driver cpu µs/run', 'target cpu µs/run', 'not ok'],
    rows: rounds.map((round) => [
      round.label,
      fmt(round.runs),
      fmt(round.runs / (round.wallMs / 1000)),
      fmt(round.cpuMicros / round.runs, 1),
      Number.isNaN(round.driverCpuMicros) ? NA : fmt(round.driverCpuMicros / round.runs, 1),
      fmt(round.targetCpuMicros / round.runs, 1),
      fmt(round.errors),
    ]),
  };
}

/** `count` probes of the module's targets, round the ports, `CONCURRENCY` at a time. */
async function exporterRound(exporter: BlackboxExporter, module: Module, count: number, label: string): Promise<Round> {
  const { ports } = module.target;
  const targetBefore = processCpuMicros(module.target.pid);
  const mark = markUsage(exporter.pid);
  const { done, errors } = await closedLoop(CONCURRENCY, count, Date.now() + ROUND_LIMIT_MS, (i, finish) => exporter.probe(module.probePath(ports[i % ports.length] as number), finish));
  const usage = usageSince(mark);
  const targetCpuMicros = processCpuMicros(module.target.pid) - targetBefore;
  return { label, runs: done, errors, wallMs: usage.wallMs, cpuMicros: usage.otherCpuMicros, driverCpuMicros: usage.cpuMicros, targetCpuMicros };
}

/** `CHECKS` one-shot checks kept busy in a fresh pipeline: each runs once, then `runs` are measured. */
async function vigilRound(module: Module, runs: number, label: string): Promise<Round> {
  const pipeline = startPipeline({ commands: [module.command], specs: module.specs(), concurrency: CONCURRENCY });
  try {
    const measured = await measureSaturated(pipeline, module.target.pid, CHECKS, runs, `blackbox ${module.kind} vigil ${label}`, ROUND_LIMIT_MS);
    const { usage } = measured;
    return { label, runs: measured.runs, errors: measured.errors, wallMs: usage.wallMs, cpuMicros: usage.cpuMicros, driverCpuMicros: Number.NaN, targetCpuMicros: usage.otherCpuMicros };
  } finally {
    await pipeline.stop();
  }
}


/**
 * Runs the exporter (`"$@"`) under `sh`, which prints the exporter's pid (for its CPU in /proc), kills
 * it as soon as this process's end of the shell's stdin closes — at `stop()`, or when the bench dies,
 * however it dies — and exits when the exporter does. Background jobs of a shell ignore SIGINT, so a
 * Ctrl-C reaches the exporter only this way.
 */
const GUARD = `exec 3<&0
"$@" </dev/null >/dev/null 3<&- &
pid=$!
echo "$pid"
{ cat <&3 >/dev/null; kill "$pid" 2>/dev/null; } &
wait "$pid"`;

/**
 * A blackbox_exporter on 127.0.0.1, port 0 (it logs the port it got, so no other process can take it
 * first), with a config in a temporary directory, under `GUARD`. `stop()` ends it (SIGTERM, SIGKILL
 * after 5 s) and removes the directory.
 */
class BlackboxExporter implements AsyncDisposable {
  readonly #guard: ChildProcess;
  readonly #dir: string;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  readonly #port: number;
  #stopped: Promise<void> | null = null;
  /** The exporter's own pid (not the guard's). */
  readonly pid: number;
  /** As its start-up log gives it. */
  readonly version: string;

  private constructor(guard: ChildProcess, dir: string, started: Started) {
    this.#guard = guard;
    this.#dir = dir;
    this.#port = started.port;
    this.pid = started.pid;
    this.version = started.version;
  }

  static async start(): Promise<BlackboxExporter> {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-bench-blackbox-'));
    const config = join(dir, 'blackbox.yml');
    await writeFile(config, CONFIG);
    const args = [`--config.file=${config}`, `--web.listen-address=${HOST}:0`, '--log.level=info'];
    const guard = spawn('/bin/sh', ['-c', GUARD, 'blackbox-guard', BLACKBOX_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const output = { stdout: '', stderr: '' };
    guard.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output.stdout = (output.stdout + chunk).slice(-1_000)));
    guard.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output.stderr = (output.stderr + chunk).slice(-8_000)));
    // A failed spawn is reported by `started`; a closed stdin (the guard gone) needs nothing more.
    guard.on('error', () => undefined);
    guard.stdin?.on('error', () => undefined);
    let exporter: BlackboxExporter | null = null;
    try {
      exporter = new BlackboxExporter(guard, dir, await within(started(guard, output), START_TIMEOUT_MS, `blackbox_exporter (${BLACKBOX_BIN}) announcing its address`));
      const healthy = await within(exporter.#get('/-/healthy'), START_TIMEOUT_MS, `blackbox_exporter's /-/healthy`);
      if (healthy.status !== 200) throw new Error(`Expected blackbox_exporter's /-/healthy to answer 200, got ${healthy.status}: ${healthy.body.slice(0, 200)}`);
      return exporter;
    } catch (error) {
      if (exporter) await exporter.stop();
      else {
        await stopGuard(guard, null);
        await rm(dir, { recursive: true, force: true });
      }
      throw error;
    }
  }

  /** GETs `path` (`/probe?…`) on a keep-alive connection; `finish(true)` when it answered 200 with `probe_success 1`. */
  probe(path: string, finish: (ok: boolean) => void): void {
    this.#get(path).then(
      ({ status, body }) => finish(status === 200 && /^probe_success 1$/m.test(body)),
      () => finish(false),
    );
  }

  #get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: HOST, port: this.#port, path, agent: this.#agent, timeout: TIMEOUT_MS * 2 }, (res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path} got no answer within ${TIMEOUT_MS * 2} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Idempotent. */
  stop(): Promise<void> {
    return (this.#stopped ??= (async () => {
      this.#agent.destroy();
      await stopGuard(this.#guard, this.pid);
      await rm(this.#dir, { recursive: true, force: true });
    })());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

interface Started {
  readonly pid: number;
  readonly port: number;
  readonly version: string;
}

/**
 * The exporter's pid (the guard's first line), the port from its `msg="Listening on"
 * address=127.0.0.1:PORT` log line and its version from `msg="Starting blackbox_exporter"`; rejects
 * when it exits first, with what it logged.
 */
function started(guard: ChildProcess, output: { readonly stdout: string; readonly stderr: string }): Promise<Started> {
  return new Promise((resolve, reject) => {
    const onData = (): void => {
      const pidLine = /^(\d+)\n/.exec(output.stdout);
      const listening = /msg="Listening on" address=127\.0\.0\.1:(\d+)/.exec(output.stderr);
      if (pidLine === null || listening === null) return;
      cleanUp();
      const port = Number(listening[1]);
      if (!(port >= 1 && port <= 65_535)) {
        reject(new Error(`Expected blackbox_exporter to log the port it listens on, got ${JSON.stringify(listening[0])}`));
        return;
      }
      const version = /version="\(version=([^,]+),/.exec(output.stderr)?.[1] ?? '(version unknown)';
      resolve({ pid: Number(pidLine[1]), port, version });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      cleanUp();
      reject(new Error(`blackbox_exporter (${BLACKBOX_BIN}) exited (${signal ?? `code ${code}`}) before it listened:\n${output.stderr}`));
    };
    const onError = (error: Error): void => {
      cleanUp();
      reject(new Error(`blackbox_exporter (${BLACKBOX_BIN}) could not start under /bin/sh: ${error.message}`));
    };
    const cleanUp = (): void => {
      guard.stdout?.off('data', onData);
      guard.stderr?.off('data', onData);
      guard.off('exit', onExit);
      guard.off('error', onError);
    };
    guard.stdout?.on('data', onData);
    guard.stderr?.on('data', onData);
    guard.once('exit', onExit);
    guard.once('error', onError);
  });
}

/**
 * Closes the guard's stdin, so it sends the exporter SIGTERM, and waits for the guard to exit (it waits
 * for the exporter); after 5 s kills both (`exporterPid` when known).
 */
async function stopGuard(guard: ChildProcess, exporterPid: number | null): Promise<void> {
  // Even when the guard has gone (the exporter exited by itself), its watcher waits on this stdin.
  guard.stdin?.end();
  if (guard.exitCode !== null || guard.signalCode !== null || guard.pid === undefined) return;
  const exited = once(guard, 'exit');
  const timer = setTimeout(() => {
    if (exporterPid !== null) {
      try {
        process.kill(exporterPid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    guard.kill('SIGKILL');
  }, STOP_TIMEOUT_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
