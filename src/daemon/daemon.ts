import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { builtinCommands, builtinHandlerTypes } from '../plugins/builtins.js';
import { defaultPingEngine } from '../commands/ping/ping-engine-choice.js';
import type { Handler } from '../handlers/handler.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import type { Queue } from '../queues/queue.js';
import type { CheckSpec } from '../checks/check.js';
import type { ParseResult } from '../commands/command.js';
import { ResultHistory } from '../results/result-history.js';
import { startAmqpIngest } from '../ingest/amqp-ingest.js';
import { ingestedCheckEntry, loadConfig, parseCheckSpec, type VigilConfig } from '../config/config.js';
import { registerApiRoutes } from '../http/api.js';
import { registerPushRoutes } from '../http/push-routes.js';
import { loadPushSecret, PushTokens } from '../http/push-tokens.js';
import { openQueue } from './open-queue.js';
import { startHttpEndpoint } from '../http/endpoint.js';
import { startInstance, type InstanceIdentity } from './instance.js';
import { registerServerMetrics } from './server-metrics.js';
import { Server } from '../server/server.js';
import { formatIssue, formatPath, ValidationError } from '../validation/issues.js';
import { version } from '../core/version.js';
import { ReleaseStack } from '../core/release-stack.js';
import { errorMessage } from '../core/errors.js';

export interface DaemonOptions {
  /** The YAML config file. */
  readonly configFile: string;
  readonly logger: Logger;
  /** Variables for `${VAR}` substitution; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** What a reload did: the check changes applied, or why the new config was rejected. */
export type ReloadReport =
  | { readonly ok: true; readonly added: number; readonly removed: number; readonly changed: number; readonly unchanged: number }
  | { readonly ok: false; readonly error: string };

/** A running `vigil run`: the server, its queue, its HTTP endpoint and its state file. */
export interface Daemon {
  readonly server: Server;
  /** The queue with the checks: the embedded one, or PostgreSQL. */
  readonly queue: Queue & CheckRegistry;
  readonly identity: InstanceIdentity;
  /** The config in force (the last one a reload accepted). */
  readonly config: VigilConfig;
  /** Where `/metrics` and `/healthz` are served. */
  readonly url: string;
  /** Reads the config file again and applies the difference in checks; an invalid file changes nothing. */
  reload(): Promise<ReloadReport>;
  /**
   * Stops gracefully (idempotent): stops ingest, drains running checks (the endpoint answers `/healthz`
   * with 503 meanwhile) and closes the handlers, closes the endpoint, then saves state or releases the
   * database. Every step runs even when one fails; then it rejects with the failures (each is logged).
   */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The state file of the memory queue, in the data dir. */
export function stateFilePath(dataDir: string): string {
  return join(dataDir, 'state.json');
}

/**
 * Starts vigil as `vigil run` does: config → instance identity → metrics registry → handlers → queue
 * (with the saved state, saved periodically) → HTTP endpoint → server → AMQP ingest. What was started is
 * released in reverse order when a later step fails (then the start's error is thrown), and on stop.
 */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { configFile, logger, env } = options;
  // Chosen once: every config load (reloads too) builds its ping command on the same engine, and /healthz names it.
  const pingEngine = defaultPingEngine({ logger });
  // The data dir is read when a browser check fails (its screenshot), long after the config was loaded.
  const commands = (): ReturnType<typeof builtinCommands> => builtinCommands({ pingEngine, dataDir: () => config.server.dataDir });
  const load = (): Promise<VigilConfig> => loadConfig(configFile, { env, commands: commands(), handlerTypes: builtinHandlerTypes() });
  let config: VigilConfig = await load();
  const { server: settings } = config;
  logWarnings(config, logger);

  const identity = await startInstance(settings.dataDir, Date.now(), logger);
  const pushSecret = await loadPushSecret(settings.dataDir, logger);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client exposes these gauges with a `_total` suffix, which Prometheus reserves for counters
  // (`promtool check metrics` objects); they say little that nodejs_active_* resources do not.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);

  // Whatever throws from here on releases what was started before it; `move()` below hands the releases to stop().
  await using releases = new ReleaseStack({ logger });
  // A server that stopped has closed its handlers (the Handler contract): theirs are for a start that failed first.
  let serverClosedHandlers = false;
  const handlers: Handler[] = [];
  for (const entry of config.handlers) {
    const type = config.handlerTypes.get(entry.type);
    if (!type) throw new Error(`handler "${entry.name}" has unknown type "${entry.type}"`);
    const handler = type.create(entry.name, entry.options, { logger, registry });
    handlers.push(handler);
    releases.push(`handler ${handler.name}`, () => (serverClosedHandlers ? undefined : handler.close?.()));
  }

  const handlerNames = new Set(handlers.map((handler) => handler.name));
  const poolNames = new Set(settings.pools.map((spec) => spec.name));
  // Reads `config` when called, so the defaults of a reloaded config apply to checks created later.
  const parseCheck = (raw: unknown): ParseResult<CheckSpec> =>
    parseCheckSpec(raw, { defaults: config.defaults, commands: config.commands, handlerNames, poolNames });
  const opened = await openQueue({
    config: config.queue,
    checks: config.checks,
    dataDir: settings.dataDir,
    stateFile: stateFilePath(settings.dataDir),
    stateSaveIntervalMs: settings.stateSaveIntervalMs,
    identity,
    parseCheck,
    logger,
    registry,
  });
  releases.push('queue', () => opened.close());
  const queue = opened.queue;
  // Read through `config` when called: a reload's commands answer from then on.
  const pushTokens = new PushTokens({ checks: queue, secret: pushSecret, logger, pingsOf: (name) => config.commands.get(name)?.pings });
  // Checks a command attached at runtime (a heartbeat-dir's files) go with the check that attached them.
  queue.watch((event) => {
    if (event.type !== 'removed') return;
    const attachers = [...config.commands.values()].filter((command) => command.attachedBy !== undefined);
    if (attachers.length === 0) return;
    for (const check of queue.list()) if (attachers.some((command) => command.attachedBy?.(check) === event.checkId)) queue.remove(check.spec.id);
  });

  const server = new Server({
    queue,
    commands: config.commands.values(),
    handlers,
    logger,
    concurrency: settings.concurrency,
    pools: settings.pools,
    poolRouting: settings.poolRouting,
    safeMode: settings.safeMode,
    stopTimeoutMs: settings.stopTimeoutMs,
    handlerTimeoutMs: settings.handlerTimeoutMs,
  });
  registerServerMetrics({ registry, server, checks: queue });
  const history = new ResultHistory();
  server.on('check:finish', (event) => history.record(event.check.id, event.result));
  server.on('incident:resolve', (event) => history.recordResolved(event.incident));
  queue.watch((event) => {
    if (event.type === 'removed') history.forget(event.checkId);
  });
  const startedAt = Date.now();
  // Known once the endpoint listens (port 0 picks one); only read by requests, which come after.
  let baseUrl = '';
  const http = await startHttpEndpoint({
    host: settings.host,
    port: settings.port,
    registry,
    logger,
    routes: async (app) => {
      await registerPushRoutes(app, { server, checks: queue, tokens: pushTokens, logger });
      await registerApiRoutes(app, {
        server,
        checks: queue,
        history: opened.history(history),
        parseCheck,
        apiToken: settings.apiToken,
        protectReads: settings.protectReads,
        logger,
        pingUrlOf: (check) => {
          const token = pushTokens.tokenOf(check.spec.id);
          return token === undefined ? undefined : `${baseUrl}/ping/${token}`;
        },
      });
    },
    health: () => ({
      status: server.stopping ? 'stopping' : 'ok',
      instanceId: identity.id,
      epoch: opened.epoch,
      version,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      checks: queue.list().length,
      pingEngine: pingEngine.name,
      ...(config.queue.type === 'postgres' ? { peers: opened.peers().map(({ id, epoch, alive }) => ({ id, epoch, alive })) } : {}),
    }),
  });
  releases.push('http', () => http.close());
  baseUrl = http.url;
  // What the server's commands keep between runs (a browser) goes once the server has stopped.
  const running = [...config.commands.values()];
  releases.push('commands', async () => {
    for (const command of running) await command.close?.();
  });
  // Released before the endpoint: while running checks drain, /healthz says 503 `stopping`, pushes are
  // refused with 503, and API requests still meet an open queue.
  releases.push('server', async () => {
    await server.stop();
    serverClosedHandlers = true;
  });
  server.start();
  const { amqp } = config.ingest;
  const ingest = amqp
    ? startAmqpIngest({
        ...amqp,
        server,
        checks: queue,
        logger,
        registry,
        makeCheck: (id) => {
          const parsed = parseCheck(ingestedCheckEntry(config.ingest.check, id));
          if (!parsed.ok) logger.warn({ checkId: id, issues: parsed.issues }, 'cannot create a check for an ingested result');
          return parsed.ok ? parsed.value : undefined;
        },
      })
    : null;
  if (ingest) releases.push('amqp ingest', () => ingest.stop());
  logger.info({ url: http.url, queue: config.queue.type, checks: queue.list().length, restored: opened.restored, instanceId: identity.id, epoch: opened.epoch, config: configFile, version }, 'vigil started');

  async function reload(): Promise<ReloadReport> {
    let next: VigilConfig;
    try {
      next = await load();
    } catch (error) {
      const message = errorMessage(error);
      logger.error({ issues: error instanceof ValidationError ? error.issues : undefined }, `config reload rejected, the running config stays: ${message}`);
      return { ok: false, error: message };
    }
    const missing = missingPieces(next, config, handlers);
    if (missing) {
      logger.error(`config reload rejected, the running config stays: ${missing} (restart vigil to load them)`);
      return { ok: false, error: missing };
    }
    logWarnings(next, logger);
    for (const section of ['server', 'queue', 'handlers', 'ingest'] as const) {
      if (!isDeepStrictEqual(next[section], config[section])) logger.warn({ section }, 'config section changed; it takes effect on restart');
    }
    const counts = await opened.applyConfigChecks(config.checks, next.checks);
    pushTokens.invalidate();
    config = next;
    const report = { ok: true as const, ...counts };
    logger.info(report, 'config reloaded');
    return report;
  }

  const started = releases.move();
  let stopped: Promise<void> | null = null;
  async function shutdown(): Promise<void> {
    logger.info('stopping');
    const failures = await started.releaseAll();
    logger.info('vigil stopped');
    if (failures.length > 0) throw new AggregateError(failures.map(({ error }) => error), `stopping failed at ${failures.map(({ step }) => step).join(', ')}`);
  }
  const stop = (): Promise<void> => (stopped ??= shutdown());

  return {
    server,
    queue,
    identity,
    get config() {
      return config;
    },
    url: http.url,
    reload,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** The config's warnings (a plugin missing on this host), each with its path: the checks load and report them. */
function logWarnings(config: VigilConfig, logger: Logger): void {
  for (const warning of config.warnings) logger.warn({ path: formatPath(warning.path) }, `config warning: ${formatIssue(warning)}`);
}

/** A command or handler the new config's checks use that the running server was not built with. */
function missingPieces(next: VigilConfig, running: VigilConfig, handlers: readonly Handler[]): string | null {
  const handlerNames = new Set(handlers.map((handler) => handler.name));
  for (const spec of next.checks) {
    if (!running.commands.has(spec.command)) return `check "${spec.id}" uses command "${spec.command}", which the running vigil has not loaded`;
    const unknown = spec.handlers.find((name) => !handlerNames.has(name));
    if (unknown !== undefined) return `check "${spec.id}" uses handler "${unknown}", which the running vigil has not created`;
  }
  return null;
}
