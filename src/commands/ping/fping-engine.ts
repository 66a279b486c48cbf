import { spawn, type ChildProcess } from 'node:child_process';
import { PING_INTERVAL_MS, RESOLVER_FAILURES, type PingEngine, type PingReply, type PingStatistics, type PingTarget } from './ping-engine.js';
import { errorMessage } from '../../core/errors.js';

export interface FpingPingEngineOptions {
  /** The fping program (5.x), a path or a name looked up on `PATH`. Default `fping`. */
  readonly executable?: string;
  /** How long (ms) the first run of a batch waits for more runs to join it before its fping starts. Default 100. */
  readonly batchWindowMs?: number;
  /** Most distinct hosts one fping process pings; a batch that reaches it starts at once. Default 100. */
  readonly maxHostsPerProcess?: number;
}

/**
 * 100 ms: checks are spread over their interval, so they arrive one by one, not in bursts, and each
 * fping process costs vigil about a millisecond of CPU to start (a fork of a large process) whatever it
 * pings. With runs arriving 10 ms apart (`npm run bench -- --only ping`), a 20 ms window batched about 2
 * a process, 2.3 times less CPU a ping than a process per run; 100 ms batches about 10, 5.9 times less.
 * A run waits at most that long before its first packet, half of the 200 ms between two requests of one
 * run; a full batch starts at once.
 */
const DEFAULT_BATCH_WINDOW_MS = 100;
/**
 * fping's `-i`: the least gap (ms) between any two requests of one process. 1 ms is the least fping
 * built with safe limits lets unprivileged users ask for (its default, 10 ms, would stretch a round of
 * 100 hosts to a second).
 */
const SEND_GAP_MS = 1;
/**
 * At SEND_GAP_MS, a round of requests to 100 hosts takes 100 ms, half of PING_INTERVAL_MS: each host's
 * requests stay PING_INTERVAL_MS apart with room to spare. The argv stays far below Linux's limits.
 */
const DEFAULT_MAX_HOSTS_PER_PROCESS = 100;
/**
 * fping's stderr beyond this is not kept. A full batch with `-C 100` writes about 100 × 8 characters a
 * host, 80 kB for 100 hosts; only a runaway process comes near this.
 */
const MAX_STDERR_CHARS = 1 << 20;

/** How one batch pings: what its runs have in common. */
export type BatchSettings = Omit<PingTarget, 'host'>;

/**
 * An engine that batches runs into fping processes. Runs that arrive within `batchWindowMs` of the
 * first and agree on count, packet size, packet timeout and IP version go to one
 * `fping -C count … -- host1 host2 …` (argv, no shell, C locale); a host asked for twice is pinged once
 * and each run gets the answer. fping's per-target summary gives each run its own reply; an exit code
 * saying that some targets were unreachable or unknown is not a failure of the batch. A program that
 * cannot be started is an `error` reply for every run of the batch.
 *
 * fping waits `packetTimeoutMs` for each request's reply (iputils `ping` waits that long after the last
 * request), so a reply slower than `packetTimeoutMs` is lost here even for earlier requests.
 *
 * Abort: a run whose signal aborts rejects with `signal.reason` at once, and its batch's other runs go
 * on; the batch's packets keep going until every run in it has aborted. Then the process is killed,
 * and the last run to abort rejects once the process is gone.
 */
export function fpingPingEngine(options: FpingPingEngineOptions = {}): PingEngine {
  const executable = options.executable ?? 'fping';
  const windowMs = options.batchWindowMs ?? DEFAULT_BATCH_WINDOW_MS;
  const maxHosts = options.maxHostsPerProcess ?? DEFAULT_MAX_HOSTS_PER_PROCESS;
  // The C locale makes the resolver's messages the English ones the parser knows.
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  /** Batches still collecting runs, by their settings. */
  const collecting = new Map<string, FpingBatch>();
  let timer: NodeJS.Timeout | null = null;

  function startAll(): void {
    timer = null;
    const batches = [...collecting.values()];
    collecting.clear();
    for (const batch of batches) batch.start();
  }

  function forget(key: string, batch: FpingBatch): void {
    if (collecting.get(key) !== batch) return;
    collecting.delete(key);
    if (collecting.size === 0 && timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  }

  return {
    name: 'fping',
    ping(target, signal) {
      if (signal.aborted) return Promise.reject(signal.reason as Error);
      const { host, ...settings } = target;
      const key = `${settings.count} ${settings.packetSize} ${settings.packetTimeoutMs} ${settings.ipVersion ?? ''}`;
      let batch = collecting.get(key);
      if (batch === undefined) {
        const created = new FpingBatch(executable, env, settings, () => forget(key, created));
        collecting.set(key, created);
        batch = created;
      }
      const reply = batch.add(host, signal);
      if (batch.hostCount >= maxHosts) {
        collecting.delete(key);
        batch.start();
      }
      if (collecting.size > 0) timer ??= setTimeout(startAll, windowMs);
      return reply;
    },
  };
}

/** One run waiting for its batch. */
interface Waiter {
  readonly signal: AbortSignal;
  readonly resolve: (reply: PingReply) => void;
  readonly reject: (reason: Error) => void;
  readonly onAbort: () => void;
}

/**
 * The runs that share one fping process: collecting while the window is open, then running until the
 * process closes.
 */
class FpingBatch {
  readonly #executable: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #settings: BatchSettings;
  /** Called when every run left before the process started: the engine stops collecting into this batch. */
  readonly #onEmpty: () => void;
  /** The runs still waiting, by host. */
  readonly #waiters = new Map<string, Set<Waiter>>();
  #child: ChildProcess | null = null;
  /** Rejections of the runs that aborted last, due once the killed process is gone. */
  readonly #afterClose: (() => void)[] = [];

  constructor(executable: string, env: NodeJS.ProcessEnv, settings: BatchSettings, onEmpty: () => void) {
    this.#executable = executable;
    this.#env = env;
    this.#settings = settings;
    this.#onEmpty = onEmpty;
  }

  get hostCount(): number {
    return this.#waiters.size;
  }

  add(host: string, signal: AbortSignal): Promise<PingReply> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { signal, resolve, reject, onAbort: () => this.#abort(host, waiter) };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      let waiters = this.#waiters.get(host);
      if (waiters === undefined) {
        waiters = new Set();
        this.#waiters.set(host, waiters);
      }
      waiters.add(waiter);
    });
  }

  start(): void {
    const hosts = [...this.#waiters.keys()];
    if (hosts.length === 0) return;
    let child: ChildProcess;
    try {
      child = spawn(this.#executable, fpingArguments(this.#settings, hosts), { stdio: ['ignore', 'ignore', 'pipe'], env: this.#env });
    } catch (error) {
      // spawn throws for arguments it refuses (a NUL byte in a host), before any process exists.
      this.#settle(() => spawnFailure(this.#executable, error));
      return;
    }
    this.#child = child;
    let stderr = '';
    let spawnError: unknown;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < MAX_STDERR_CHARS) stderr += chunk;
    });
    child.once('error', (error) => {
      spawnError = error;
    });
    // `close` comes after the process has exited (and been reaped) and its output is all read; it also
    // follows a failed spawn.
    child.once('close', (code: number | null, killedBy: NodeJS.Signals | null) => {
      if (spawnError !== undefined) {
        this.#settle(() => spawnFailure(this.#executable, spawnError));
        return;
      }
      const replies = parseFpingOutput(stderr, hosts, code, killedBy);
      this.#settle((host) => replies.get(host) as PingReply);
    });
  }

  /** Answers every run still waiting, then rejects the runs whose abort killed the process. */
  #settle(replyFor: (host: string) => PingReply): void {
    for (const [host, waiters] of this.#waiters) {
      const reply = replyFor(host);
      for (const waiter of waiters) {
        waiter.signal.removeEventListener('abort', waiter.onAbort);
        waiter.resolve(reply);
      }
    }
    this.#waiters.clear();
    for (const reject of this.#afterClose.splice(0)) reject();
  }

  #abort(host: string, waiter: Waiter): void {
    const waiters = this.#waiters.get(host);
    if (waiters === undefined || !waiters.delete(waiter)) return;
    if (waiters.size === 0) this.#waiters.delete(host);
    const reject = (): void => waiter.reject(waiter.signal.reason as Error);
    if (this.#waiters.size > 0) {
      reject();
      return;
    }
    if (this.#child === null) {
      // Nothing went out yet: no process to wait for.
      this.#onEmpty();
      reject();
      return;
    }
    // The last run has gone: nobody wants the rest of the packets. It rejects once the process is gone,
    // so that a caller who waits for it leaves no fping behind.
    this.#afterClose.push(reject);
    this.#child.kill();
  }
}

function spawnFailure(executable: string, error: unknown): PingReply {
  return { kind: 'error', message: `cannot run ${executable}: ${errorMessage(error)}` };
}

/** The argv (after the program name) that makes fping ping `hosts` as `settings` ask, with one summary line a host. */
export function fpingArguments(settings: BatchSettings, hosts: readonly string[]): string[] {
  const args = [
    '-C', String(settings.count), // count mode, every round trip in the summary
    '-p', String(PING_INTERVAL_MS), // gap between two requests to one host
    '-i', String(SEND_GAP_MS), // gap between any two requests
    '-b', String(settings.packetSize),
    '-t', String(settings.packetTimeoutMs),
  ];
  if (settings.ipVersion !== undefined) args.push(settings.ipVersion === 6 ? '-6' : '-4');
  // No `-q`: it also hides the resolver's message for a name without an address. The per-reply lines
  // it would hide go to stdout, which is not read.
  // `--` so that no host can be read as an option, whatever validation let through.
  args.push('--', ...hosts);
  return args;
}

/** `127.0.0.1 : 0.054 0.023 -`: the host (padded to the longest), then one round trip (ms) or `-` per request. */
const SUMMARY_LINE = /^(\S+) +:((?: \S+)*)$/;
/** A round trip as fping prints it: `0.054`, `12.3`, `140`, `1.234e+06`. */
const ROUND_TRIP = /^\d+(?:\.\d+)?(?:e[+-]\d+)?$/;

/**
 * Reads what fping (without `-q`) wrote on stderr, for each of `hosts` (the hosts on its command line):
 * its `-C` summary line, or the resolver's message (`host: Name or service not known`, a `dns` reply),
 * or another message about it. A host with neither gets fping's first other line (`fping: can't create
 * socket …`), or what the exit code or signal says.
 */
export function parseFpingOutput(stderr: string, hosts: readonly string[], exitCode: number | null, killedBy: NodeJS.Signals | null = null): Map<string, PingReply> {
  const wanted = new Set(hosts);
  const summaries = new Map<string, (number | null)[]>();
  const messages = new Map<string, string>();
  let general: string | undefined;
  for (const raw of stderr.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    const times = summaryOf(line, wanted);
    if (times !== null) {
      summaries.set(times.host, times.times);
      continue;
    }
    // Hosts hold no whitespace, so the first `: ` ends the host.
    const colon = line.indexOf(': ');
    const host = colon > 0 ? line.slice(0, colon) : '';
    if (wanted.has(host) && !messages.has(host)) messages.set(host, line.slice(colon + 2));
    else general ??= line;
  }

  const replies = new Map<string, PingReply>();
  for (const host of hosts) {
    const times = summaries.get(host);
    const message = messages.get(host);
    if (times !== undefined) replies.set(host, fpingStatistics(times));
    else if (message !== undefined) replies.set(host, RESOLVER_FAILURES.includes(message) ? { kind: 'dns', message } : { kind: 'error', message });
    else if (general !== undefined) replies.set(host, { kind: 'error', message: general });
    else if (killedBy !== null) replies.set(host, { kind: 'error', message: `fping was killed by ${killedBy}` });
    else replies.set(host, { kind: 'error', message: `fping exited with code ${exitCode ?? 'unknown'} without a result for ${host}` });
  }
  return replies;
}

function summaryOf(line: string, wanted: ReadonlySet<string>): { host: string; times: (number | null)[] } | null {
  const match = SUMMARY_LINE.exec(line);
  if (match === null) return null;
  const host = match[1] as string;
  if (!wanted.has(host)) return null;
  const tokens = (match[2] as string).split(' ').slice(1);
  const times: (number | null)[] = [];
  for (const token of tokens) {
    if (token === '-') times.push(null);
    else if (ROUND_TRIP.test(token)) times.push(Number(token));
    else return null;
  }
  return { host, times };
}

/**
 * A run's statistics from fping's round trips (`null` for a request without a reply), computed as
 * iputils does: min, mean and max, and the mean deviation `sqrt(mean(rtt²) − mean(rtt)²)`, to the µs.
 */
export function fpingStatistics(times: readonly (number | null)[]): PingStatistics {
  const rtts = times.filter((time): time is number => time !== null);
  const sent = times.length;
  const received = rtts.length;
  if (received === 0) return { kind: 'reply', sent, received, rttMinMs: null, rttAvgMs: null, rttMaxMs: null, jitterMs: null };
  const mean = rtts.reduce((sum, rtt) => sum + rtt, 0) / received;
  const meanOfSquares = rtts.reduce((sum, rtt) => sum + rtt * rtt, 0) / received;
  return {
    kind: 'reply',
    sent,
    received,
    rttMinMs: toMicros(Math.min(...rtts)),
    rttAvgMs: toMicros(mean),
    rttMaxMs: toMicros(Math.max(...rtts)),
    // Rounding can leave the difference a hair below zero for equal round trips.
    jitterMs: toMicros(Math.sqrt(Math.max(0, meanOfSquares - mean * mean))),
  };
}

function toMicros(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
