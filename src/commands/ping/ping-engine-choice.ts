import type { Logger } from 'pino';
import { resolveProgram } from '../executable.js';
import { fpingPingEngine, type FpingPingEngineOptions } from './fping-engine.js';
import { processPingEngine, type PingEngine, type PingTarget } from './ping-engine.js';
import { errorMessage } from '../../core/errors.js';

/** The engines `defaultPingEngine` chooses from. */
export type PingEngineName = 'fping' | 'process';

/** The engine `defaultPingEngine` chose; its name says which one pings (`/healthz` shows it). */
export interface ChosenPingEngine extends PingEngine {
  /**
   * `fping` when an fping executable was found, until the probe (with the first run) shows that it
   * cannot ping here; `process` otherwise.
   */
  readonly name: PingEngineName;
}

export interface DefaultPingEngineOptions {
  /** The fping program: a path, or a name looked up on `path`. Default `fping`. */
  readonly fping?: string;
  /** Where a bare `fping` name is looked for, directories separated by `:`. Default `process.env.PATH`. */
  readonly path?: string | undefined;
  /** The iputils ping program of the process engine. Default `ping`. */
  readonly ping?: string;
  /** The fping engine's batching. */
  readonly batching?: Omit<FpingPingEngineOptions, 'executable'>;
  /** Where the choice, and why fping was given up, are logged. Default: not logged. */
  readonly logger?: Logger;
}

/**
 * A ping to loopback, once, before the first run uses fping: an fping that cannot open its ICMP socket
 * (no root, no CAP_NET_RAW, no unprivileged ping sockets) reports that for every target, which would make
 * every ping check `unknown` where iputils `ping` (often set up differently) works.
 */
const PROBE_TARGET: PingTarget = { host: '127.0.0.1', count: 1, packetSize: 56, packetTimeoutMs: 1000, ipVersion: 4 };
/** A probe that has not answered by then counts as failed (ms). */
const PROBE_TIMEOUT_MS = 5000;

/**
 * The engine vigil pings with: batched fping processes (`fpingPingEngine`) when an `fping` executable is
 * found, otherwise one iputils `ping` process per run (`processPingEngine`). The executable is looked
 * for once, here; whether it can ping is probed lazily, with the first run, so that a vigil without
 * ping checks never starts fping. A failed probe is logged, and every run from then on uses the process
 * engine; runs that arrived during the probe wait for it.
 */
export function defaultPingEngine(options: DefaultPingEngineOptions = {}): ChosenPingEngine {
  const { logger } = options;
  const fallback = processPingEngine(options.ping === undefined ? {} : { executable: options.ping });
  const fping = resolveProgram(options.fping ?? 'fping', options.path ?? process.env.PATH ?? '');
  if (typeof fping !== 'string') {
    logger?.info({ pingEngine: 'process', reason: fping.problem }, `ping engine: process (no ${options.fping ?? 'fping'} executable found)`);
    return { name: 'process', ping: (target, signal) => fallback.ping(target, signal) };
  }
  logger?.info({ pingEngine: 'fping', fping }, 'ping engine: fping');
  const batched = fpingPingEngine({ ...options.batching, executable: fping });
  let chosen: PingEngine | null = null;
  let probing: Promise<PingEngine> | null = null;

  async function probe(): Promise<PingEngine> {
    let why: string | null;
    try {
      const reply = await batched.ping(PROBE_TARGET, AbortSignal.timeout(PROBE_TIMEOUT_MS));
      why = reply.kind === 'reply' ? null : reply.message;
    } catch (error) {
      why = `no answer within ${PROBE_TIMEOUT_MS} ms (${errorMessage(error)})`;
    }
    if (why !== null) logger?.warn({ pingEngine: 'process', fping, reason: why }, `fping cannot ping here (${why}); pinging with one ping process per run`);
    chosen = why === null ? batched : fallback;
    return chosen;
  }

  return {
    get name(): PingEngineName {
      return chosen === fallback ? 'process' : 'fping';
    },
    async ping(target, signal) {
      if (chosen !== null) return chosen.ping(target, signal);
      const engine = await untilAborted((probing ??= probe()), signal);
      return engine.ping(target, signal);
    },
  };
}

/** `work`, or a rejection with `signal.reason` as soon as the signal aborts (already-aborted included). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
