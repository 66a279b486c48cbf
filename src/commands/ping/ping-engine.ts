import { spawn } from 'node:child_process';

/**
 * How the `ping` command sends its echo requests. The command only decides what the answer means;
 * an engine decides how packets go out: one `ping` process per run (`processPingEngine`), or runs
 * batched into fping processes (`fpingPingEngine`); `defaultPingEngine` chooses between them.
 */
export interface PingEngine {
  /** Short name for logs: `process`, `fping`, … */
  readonly name: string;
  /**
   * Sends `target.count` echo requests to `target.host` and reports what came back. A target that does
   * not answer is a `reply` with `received: 0`, not a rejection.
   *
   * Rejects with `signal.reason` when the signal aborts (already-aborted included). The packets stop per
   * batch, the runs an engine sends together: once every run of a batch has rejected, the batch's
   * packets have stopped going out. An engine with a process per run (`processPingEngine`) has batches
   * of one, so each run rejects only once its own packets have stopped. A batching engine
   * (`fpingPingEngine`) rejects an aborted run at once while the rest of its batch goes on, and stops
   * the batch when its last run aborts; that run rejects once the packets have stopped.
   */
  ping(target: PingTarget, signal: AbortSignal): Promise<PingReply>;
}

/** What to ping and how. */
export interface PingTarget {
  /** Host name or IP address. */
  readonly host: string;
  /** Echo requests to send, 1–100. */
  readonly count: number;
  /** ICMP payload per request in bytes (at least 16, the room a round-trip time needs); 56 makes 64-byte ICMP packets. */
  readonly packetSize: number;
  /**
   * Milliseconds to wait for a reply that has not come when the last request is out; later replies count
   * as lost. (fping waits this long for every request, so there a slower reply is lost for any request.)
   */
  readonly packetTimeoutMs: number;
  /** IP version to ping over; `undefined` lets the system choose (for a name, the resolver's first address). */
  readonly ipVersion?: 4 | 6 | undefined;
}

/** What one ping run found: statistics when the requests went out, or why they could not. */
export type PingReply = PingStatistics | PingFailure;

/** The requests went out: how many came back, and how fast. */
export interface PingStatistics {
  readonly kind: 'reply';
  /** Echo requests sent. */
  readonly sent: number;
  /** Replies received (duplicates not counted). */
  readonly received: number;
  /** Fastest round trip in ms; `null` when nothing came back. */
  readonly rttMinMs: number | null;
  /** Mean round trip in ms; `null` when nothing came back. */
  readonly rttAvgMs: number | null;
  /** Slowest round trip in ms; `null` when nothing came back. */
  readonly rttMaxMs: number | null;
  /** Mean deviation of the round trips in ms (iputils' `mdev`); `null` when nothing came back. */
  readonly jitterMs: number | null;
}

/** No requests went out: the name did not resolve (`dns`), or pinging failed some other way (`error`). */
export interface PingFailure {
  readonly kind: 'dns' | 'error';
  /** What went wrong, in the words of the ping program or the system: `Name or service not known`. */
  readonly message: string;
}

/**
 * Gap between two echo requests to one host, in ms. Shorter than ping's 1 s default so that 100
 * packets fit in about 20 s, and no shorter than the 200 ms that older iputils allow unprivileged users.
 * Every engine uses it, so results do not depend on which engine sent them.
 */
export const PING_INTERVAL_MS = 200;

export interface ProcessPingEngineOptions {
  /** The ping program: iputils `ping` (with `-4`/`-6`), looked up on `PATH`. Default `ping`. */
  readonly executable?: string;
}

/**
 * An engine that runs the system's iputils `ping` once per run (argv, no shell) and parses its summary.
 * On abort it kills the process and settles once the process is gone.
 *
 * Why not the `ping` npm package: it does not expose the child process, so an aborted run could not
 * stop its `ping`; it passes `-W` in whole seconds; it reports an unknown host like any other failure;
 * and it assigns `LANG=C` into this process's own `process.env` on every call.
 */
export function processPingEngine(options: ProcessPingEngineOptions = {}): PingEngine {
  const executable = options.executable ?? 'ping';
  // The C locale makes ping's and the resolver's messages the English ones the parser knows.
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  return {
    name: 'process',
    ping: (target, signal) => runPing(executable, env, target, signal),
  };
}

/** The argv (after the program name) that makes iputils `ping` do what `target` asks. */
export function pingArguments(target: PingTarget): string[] {
  const args = [
    '-n', // no reverse lookups of the replying address
    '-q', // only the summary: nothing to parse per packet
    '-c', String(target.count),
    '-i', String(PING_INTERVAL_MS / 1000),
    '-s', String(target.packetSize),
    '-W', String(target.packetTimeoutMs / 1000),
  ];
  if (target.ipVersion !== undefined) args.push(target.ipVersion === 6 ? '-6' : '-4');
  // `--` so that no host can be read as an option, whatever validation let through.
  args.push('--', target.host);
  return args;
}

/** Stderr beyond this is not kept: the first line says what went wrong. */
const MAX_STDERR_CHARS = 4096;

function runPing(executable: string, env: NodeJS.ProcessEnv, target: PingTarget, signal: AbortSignal): Promise<PingReply> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const child = spawn(executable, pingArguments(target), { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    let spawnError: Error | undefined;
    const kill = (): void => {
      child.kill('SIGKILL');
    };
    signal.addEventListener('abort', kill, { once: true });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < MAX_STDERR_CHARS) stderr += chunk;
    });
    child.once('error', (error) => {
      spawnError = error;
    });
    // `close` comes after the process has exited (and been reaped) and its output is all read; it also
    // follows a failed spawn.
    child.once('close', (code: number | null, killedBy: NodeJS.Signals | null) => {
      signal.removeEventListener('abort', kill);
      if (signal.aborted) reject(signal.reason as Error);
      else if (spawnError !== undefined) resolve({ kind: 'error', message: `cannot run ${executable}: ${spawnError.message}` });
      else resolve(parsePingOutput(stdout, stderr, code, killedBy));
    });
  });
}

const SUMMARY = /^(\d+) packets transmitted, (\d+) (?:packets )?received/m;
const RTT = /^(?:rtt|round-trip) min\/avg\/max\/(?:mdev|stddev) = ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/m;
/** getaddrinfo's messages (gai_strerror, C locale) for a name that has no address (of the family asked for). */
export const RESOLVER_FAILURES: readonly string[] = [
  'Name or service not known',
  'No address associated with hostname',
  'Temporary failure in name resolution',
  'Non-recoverable failure in name resolution',
  'Address family for hostname not supported',
];
/** A resolver failure at the end of a line of ping's stderr, or old iputils' own message. */
const DNS_FAILURE = new RegExp(`: (${RESOLVER_FAILURES.join('|')})$|unknown host`, 'm');

/**
 * Reads what iputils `ping -q` printed: the summary (`3 packets transmitted, 2 received, …` and
 * `rtt min/avg/max/mdev = …`) when there is one, otherwise the error it gave on stderr.
 */
export function parsePingOutput(stdout: string, stderr: string, exitCode: number | null, killedBy: NodeJS.Signals | null = null): PingReply {
  const summary = SUMMARY.exec(stdout);
  if (summary !== null) {
    const sent = Number(summary[1]);
    const received = Number(summary[2]);
    const rtt = received > 0 ? RTT.exec(stdout) : null;
    return {
      kind: 'reply',
      sent,
      received,
      rttMinMs: rtt === null ? null : Number(rtt[1]),
      rttAvgMs: rtt === null ? null : Number(rtt[2]),
      rttMaxMs: rtt === null ? null : Number(rtt[3]),
      jitterMs: rtt === null ? null : Number(rtt[4]),
    };
  }
  const dns = DNS_FAILURE.exec(stderr);
  if (dns !== null) return { kind: 'dns', message: dns[1] ?? 'unknown host' };
  const firstLine = stderr.trim().split('\n', 1)[0] ?? '';
  if (firstLine !== '') return { kind: 'error', message: firstLine };
  if (killedBy !== null) return { kind: 'error', message: `ping was killed by ${killedBy}` };
  return { kind: 'error', message: `ping exited with code ${exitCode ?? 'unknown'} without a summary` };
}
