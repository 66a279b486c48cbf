import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import type { CheckSpec } from '../src/checks/check.js';
import type { AnyCommand } from '../src/commands/command.js';
import type { Handler, HandlerDeps, HandlerType } from '../src/handlers/handler.js';
import { logHandlerType } from '../src/handlers/log-handler.js';
import { prometheusHandlerType } from '../src/handlers/prometheus/prometheus-handler.js';
import { TrackedMemoryQueue } from '../src/queues/tracked-memory-queue.js';
import { ResultHistory } from '../src/results/result-history.js';
import { daemonLogDestination } from '../src/daemon/log-destination.js';
import { Server } from '../src/server/server.js';
import { fmt, markUsage, usageSince, type Usage } from './measure.js';

/**
 * vigil's whole pipeline in this process, built as `startDaemon` builds it minus the config file, the
 * HTTP endpoint and the state file: TrackedMemoryQueue → Server → state machine → the `log` handler at
 * `info` (pino into /dev/null through the daemon's batching destination: every run formats and writes a line) and the `prometheus` handler on a
 * fresh Registry, and the API's result history (the daemon keeps recent results for `/api/v1`). `collectDefaultMetrics` is left out: it costs nothing per run, only per scrape, and
 * the observers it starts would pile up across the runs of one bench process.
 */

/** The handlers every check names, as the config's defaults do (one frozen array, as the config shares it). */
const HANDLERS: readonly string[] = Object.freeze(['log', 'prometheus']);
const NO_METADATA = Object.freeze({});

export interface PipelineOptions {
  readonly commands: readonly AnyCommand[];
  readonly specs: Iterable<CheckSpec>;
  /** Checks running at once; default 256, as `server.concurrency`. */
  readonly concurrency?: number;
}

export interface Pipeline extends AsyncDisposable {
  readonly server: Server;
  readonly pool: TrackedMemoryQueue;
  readonly registry: Registry;
  /** Stops the server (running checks finish, at most 10 s) and closes the log destination. Idempotent. */
  stop(): Promise<void>;
}

/** Builds the pipeline, adds the checks (spread over their intervals as at start-up) and starts the server. */
export function startPipeline(options: PipelineOptions): Pipeline {
  const destination = daemonLogDestination('/dev/null');
  const logger: Logger = pino({ level: 'info' }, destination);
  const registry = new Registry();
  const deps: HandlerDeps = { logger, registry };
  const handlers = [createHandler(logHandlerType, 'log', deps), createHandler(prometheusHandlerType, 'prometheus', deps)];
  const pool = new TrackedMemoryQueue();
  for (const spec of options.specs) pool.add(spec);
  const server = new Server({ queue: pool, commands: options.commands, handlers, logger, concurrency: options.concurrency ?? 256 });
  const history = new ResultHistory();
  server.on('check:finish', (event) => history.record(event.check.id, event.result));
  server.start();

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await server.stop({ timeoutMs: 10_000 });
      // end() writes what is gathered, once the file is open.
      destination.end();
    })());
  return { server, pool, registry, stop, [Symbol.asyncDispose]: stop };
}

function createHandler<O>(type: HandlerType<O>, name: string, deps: HandlerDeps): Handler {
  const parsed = type.parseOptions({});
  if (!parsed.ok) throw new Error(`Expected the ${type.type} handler's default options to be valid, got ${JSON.stringify(parsed.issues)}`);
  return type.create(name, parsed.value, deps);
}

/** Parses a command's attributes as the config loader does; throws with the issues when they are invalid. */
export function parseAttributes(command: AnyCommand, raw: unknown): unknown {
  const parsed = command.parse(raw);
  if (!parsed.ok) throw new Error(`Expected valid ${command.name} attributes, got ${JSON.stringify(raw)}: ${JSON.stringify(parsed.issues)}`);
  return parsed.value as unknown;
}

/**
 * A frozen check spec as the config would give it: the `log` and `prometheus` handlers, three attempts,
 * `intervalMs` null for a one-shot check.
 */
export function benchSpec(id: string, command: string, attributes: unknown, timing: { intervalMs: number | null; timeoutMs: number }): CheckSpec {
  return Object.freeze({
    id,
    command,
    attributes,
    intervalMs: timing.intervalMs,
    timeoutMs: timing.timeoutMs,
    retryIntervalMs: timing.intervalMs ?? 15_000,
    maxAttempts: 3,
    recoverAfter: 1,
    handlers: HANDLERS,
    pool: null,
    metadata: NO_METADATA,
    suppressed: false,
  });
}

/** What a saturated round measured: runs after the warm-up, the non-ok ones, and the CPU they took. */
export interface SaturatedMeasure {
  readonly runs: number;
  readonly errors: number;
  readonly usage: Usage;
}

/**
 * Keeps one-shot checks of a pipeline busy, like a bare loop's workers: each is made due again as it
 * finishes. The first `checks` runs (one each) warm up; the next `runs` are measured, with the CPU of
 * this process and of `targetPid`. Gives up after `limitMs`, naming the round.
 */
export async function measureSaturated(pipeline: Pipeline, targetPid: number, checks: number, runs: number, label: string, limitMs: number): Promise<SaturatedMeasure> {
  const { server, pool } = pipeline;
  let finished = 0;
  let errors = 0;
  let mark = markUsage(targetPid);
  // Read at the moment the last measured run finishes (or the time limit strikes), not a tick later.
  const outcome: { usage?: Usage; runs: number } = { runs: 0 };
  let end!: () => void;
  const over = new Promise<void>((resolve) => (end = resolve));
  const stopMeasuring = (): void => {
    if (outcome.usage !== undefined) return;
    outcome.usage = usageSince(mark);
    outcome.runs = Math.max(0, finished - checks);
    end();
  };
  server.on('check:finish', ({ check, result }) => {
    if (outcome.usage !== undefined) return;
    finished++;
    if (finished === checks) mark = markUsage(targetPid);
    else if (finished > checks && result.state !== 'ok') errors++;
    if (finished >= checks + runs) stopMeasuring();
    else pool.reschedule(check.id, Date.now());
  });
  const timer = setTimeout(stopMeasuring, limitMs);
  await over;
  clearTimeout(timer);
  if (outcome.runs === 0 || outcome.usage === undefined) {
    throw new Error(`the round "${label}" did not finish its ${fmt(checks)} warm-up runs within ${limitMs} ms (${fmt(finished)} finished)`);
  }
  return { runs: outcome.runs, errors, usage: outcome.usage };
}
