#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { builtinCommands, builtinHandlerTypes } from './plugins/builtins.js';
import { initialCheckState } from './checks/check.js';
import { migrate } from './postgres/migrations.js';
import { TrackedMemoryQueue } from './queues/tracked-memory-queue.js';
import { stateCode, type Result } from './results/result.js';
import { loadConfig, type VigilConfig } from './config/config.js';
import type { Health } from './core/health.js';
import { EXIT_PATH_CHANGED, watchRealPath } from './daemon/path-watch.js';
import { acquirePidfile } from './daemon/pidfile.js';
import { startDaemon } from './daemon/daemon.js';
import { daemonLogDestination } from './daemon/log-destination.js';
import { limitHeapGrowth } from './daemon/heap-growth.js';
import { systemClock } from './core/clock.js';
import { runCheck } from './server/run-check.js';
import { formatIssue, ValidationError } from './validation/issues.js';
import { version } from './core/version.js';
import { startDatabaseHeartbeat } from './heartbeats/database-heartbeat.js';
import { superviseWithHeartbeat } from './heartbeats/supervise.js';
import { parseDuration } from './validation/schema-types.js';
import { bracketHost } from './core/host-port.js';
import { errorMessage } from './core/errors.js';

const USAGE = `vigil ${version} — check poller and heartbeat monitor

Usage:
  vigil run [-c FILE] [--log-level LEVEL] [--pidfile FILE]   run the daemon
  vigil status [-c FILE]                    is the daemon of this config running? exit 0 yes, 3 no
  vigil migrate [-c FILE]                   apply the PostgreSQL migrations of the config's queue
  vigil validate [-c FILE] [--strict]       check a config file; exit 0 when valid, 1 with every problem
  vigil once CHECK_ID [-c FILE] [--json]    run one check once, print its Result; exit 0/1/2/3 (Nagios)
  vigil beat --file FILE [--every 5s] [-- COMMAND ARGS…]   write a heartbeat file (for a command)
  vigil beat --database URL --id NAME [--schema vigil] [--every 5s] [-- COMMAND ARGS…]   the same as a table row
  vigil COMMAND --help                      help for one command

The config file is -c FILE, else $VIGIL_CONFIG, else ./config/vigil.yaml, else the example config
that ships with vigil.`;

const HELP: Record<string, string> = {
  run: `Usage: vigil run [-c FILE] [--log-level LEVEL] [--pidfile FILE]

Runs the daemon: polls the config's checks, serves /metrics and /healthz.
  -c, --config FILE    config file (default: $VIGIL_CONFIG, ./config/vigil.yaml, the bundled example)
  --log-level LEVEL    trace, debug, info (default, or $VIGIL_LOG_LEVEL), warn, error, silent
  --pidfile FILE       write the pid here (refused while another live vigil holds it); removed on stop
Signals: SIGTERM/SIGINT stop gracefully (exit 0; a second one forces exit 1),
SIGHUP reloads the config (an invalid one is rejected and the running one stays).
With server.exitOnPathChange, a changed install directory stops vigil with exit code 75.`,
  migrate: `Usage: vigil migrate [-c FILE]

Applies the versioned SQL migrations to the config's PostgreSQL queue (queue.type postgres), in its
schema; applied ones are skipped, so it can run any number of times. Exit 0, or 1 with the error.`,
  status: `Usage: vigil status [-c FILE]

Asks /healthz at the config's server address. Exit 0 when vigil answers (running, or stopping),
3 when nothing answers, 4 when the config does not say where (port 0) or cannot be read.`,
  validate: `Usage: vigil validate [-c FILE] [--strict]

Validates the config file and lists every problem with its path. Exit 0 when valid, 1 otherwise.
Warnings (an exec plugin missing on this host: vigil run starts, and the check reports plugin-missing
until the program appears) are listed on stderr; with --strict they fail the validation too.`,
  beat: `Usage: vigil beat --file FILE [--every DURATION] [-- COMMAND ARGS…]
       vigil beat --database URL --id NAME [--schema SCHEMA] [--every DURATION] [-- COMMAND ARGS…]

Writes a heartbeat file (JSON: timestamp, uptime, memoryUsage, pid, beat) every DURATION (default 5s),
atomically, for a heartbeat-file or heartbeat-dir check to watch.
With a COMMAND: runs it (no shell) and beats while it runs. A clean exit (0, or a stop vigil beat
passed on) removes the file; a crash leaves it to go stale, so the monitor sees a heart attack.
vigil beat exits with the command's code (128 + signal number for a signal).
Without a COMMAND: beats until SIGTERM/SIGINT, then removes the file (a sidecar).
With --database: upserts row NAME of SCHEMA.heartbeats (created by vigil migrate) instead of a file,
for a heartbeat-table check; the same rules remove the row.`,
  once: `Usage: vigil once CHECK_ID [-c FILE] [--json]

Runs one check of the config once and prints its Result. The exit code is the Nagios one:
0 ok, 1 warn, 2 crit, 3 unknown.
  --json    print the Result as JSON`,
};

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  'log-level': { type: 'string' },
  pidfile: { type: 'string' },
  file: { type: 'string' },
  every: { type: 'string' },
  database: { type: 'string' },
  id: { type: 'string' },
  schema: { type: 'string' },
  json: { type: 'boolean' },
  strict: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

/** Exit codes besides the Nagios ones of `once`. */
const EXIT_USAGE = 64;

async function main(argv: readonly string[]): Promise<number> {
  // Everything after `--` belongs to the command `vigil beat` supervises, flags included.
  const separator = argv.indexOf('--');
  const own = separator < 0 ? argv : argv.slice(0, separator);
  const supervised = separator < 0 ? [] : argv.slice(separator + 1);
  let parsed;
  try {
    parsed = parseArgs({ args: [...own], options: OPTIONS, allowPositionals: true });
  } catch (error) {
    process.stderr.write(`vigil: ${(error as Error).message}\n\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.version) {
    process.stdout.write(`${version}\n`);
    return 0;
  }
  if (command === undefined || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return values.help || command === 'help' ? 0 : EXIT_USAGE;
  }
  if (!(command in HELP)) {
    process.stderr.write(`vigil: unknown command "${command}" (expected one of: ${Object.keys(HELP).join(', ')})\n\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (values.help) {
    process.stdout.write(`${HELP[command]}\n`);
    return 0;
  }
  if (command === 'beat') return beat({ file: values.file, database: values.database, id: values.id, schema: values.schema }, values.every ?? '5s', supervised);
  const configFile = resolveConfigFile(values.config);
  switch (command) {
    case 'run':
      return run(configFile, values['log-level'] ?? process.env.VIGIL_LOG_LEVEL ?? 'info', values.pidfile);
    case 'status':
      return status(configFile);
    case 'migrate':
      return migrateDatabase(configFile);
    case 'validate':
      return validate(configFile, values.strict === true);
    default: {
      const checkId = rest[0];
      if (checkId === undefined) {
        process.stderr.write(`vigil once: which check? ${HELP.once}\n`);
        return EXIT_USAGE;
      }
      return once(configFile, checkId, values.json === true);
    }
  }
}

function resolveConfigFile(flag: string | undefined): string {
  const chosen = flag ?? process.env.VIGIL_CONFIG;
  if (chosen) return resolve(chosen);
  const local = resolve('config/vigil.yaml');
  if (existsSync(local)) return local;
  return fileURLToPath(new URL('../config/vigil.yaml', import.meta.url));
}

/** The built-ins a config is parsed with; `dataDir` tells a failed browser check where its screenshot goes. */
function loadOptions(dataDir?: () => string | undefined) {
  return { commands: builtinCommands(dataDir === undefined ? {} : { dataDir }), handlerTypes: builtinHandlerTypes() };
}

async function validate(configFile: string, strict: boolean): Promise<number> {
  try {
    const config = await loadConfig(configFile, loadOptions());
    const { warnings } = config;
    for (const warning of warnings) process.stderr.write(`${configFile}: warning: ${formatIssue(warning)}\n`);
    if (strict && warnings.length > 0) {
      process.stderr.write(`${configFile}: invalid with --strict: ${warnings.length} ${warnings.length === 1 ? 'warning' : 'warnings'}\n`);
      return 1;
    }
    const noted = warnings.length === 0 ? '' : ` (${warnings.length} ${warnings.length === 1 ? 'warning' : 'warnings'})`;
    process.stdout.write(`${configFile}: valid, ${config.checks.length} checks${noted}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n`);
    return 1;
  }
}

async function once(configFile: string, checkId: string, json: boolean): Promise<number> {
  let config: VigilConfig | undefined;
  try {
    config = await loadConfig(configFile, loadOptions(() => config?.server.dataDir));
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n`);
    return 3;
  }
  const spec = config.checks.find((check) => check.id === checkId);
  if (!spec) {
    process.stderr.write(`vigil once: no check "${checkId}" in ${configFile} (known: ${config.checks.map((check) => check.id).join(', ') || 'none'})\n`);
    return 3;
  }
  const logger = pino({ level: 'warn' }, pino.destination(2));
  // A registry of its own holding the check, so that a command that attaches checks (heartbeat-dir)
  // can report what it finds.
  const registry = new TrackedMemoryQueue();
  const check = registry.add(spec, { state: initialCheckState, dueAt: Date.now() });
  const run = await runCheck(check, {
    commands: config.commands,
    clock: systemClock,
    logger: logger.child({ checkId, command: spec.command }),
    checks: registry,
  });
  await config.commands.get(spec.command)?.close?.();
  if (run.kind !== 'result') return 3;
  process.stdout.write(json ? `${JSON.stringify({ check: checkId, ...run.result })}\n` : `${formatResult(checkId, run.result)}\n`);
  return stateCode(run.result.state);
}

/** Nagios plugin style: `db-port CRIT refused: connection refused | connect_time=0.4ms;100;300`. */
function formatResult(checkId: string, result: Result): string {
  const perfdata = result.metrics.map((metric) => `${metric.name}=${metric.value}${metric.unit};${metric.warn ?? ''};${metric.crit ?? ''}`.replace(/;+$/, ''));
  const line = `${checkId} ${result.state.toUpperCase()} ${result.reason}: ${result.message}`;
  return perfdata.length > 0 ? `${line} | ${perfdata.join(' ')}` : line;
}

/** Where `vigil beat` writes: a file, or a row of a database's heartbeats table. */
interface BeatTarget {
  readonly file: string | undefined;
  readonly database: string | undefined;
  readonly id: string | undefined;
  readonly schema: string | undefined;
}

async function beat(target: BeatTarget, every: string, argv: readonly string[]): Promise<number> {
  const intervalMs = parseDuration(every);
  const problem =
    intervalMs === undefined || intervalMs < 1
      ? `expected --every as a duration like 5s, got ${JSON.stringify(every)}`
      : target.file === undefined && target.database === undefined
        ? 'expected --file FILE or --database URL --id NAME'
        : target.file !== undefined && target.database !== undefined
          ? 'expected either --file or --database, not both'
          : target.database !== undefined && target.id === undefined
            ? 'expected --id NAME with --database'
            : null;
  if (problem !== null || intervalMs === undefined) {
    process.stderr.write(`vigil beat: ${problem ?? 'bad arguments'}\n\n${HELP.beat}\n`);
    return EXIT_USAGE;
  }
  const where = target.file ?? `row ${target.id ?? ''}`;
  const onError = (error: unknown): void => void process.stderr.write(`vigil beat: cannot write ${where}: ${errorMessage(error)}\n`);
  const { database, id, schema } = target;
  try {
    return await superviseWithHeartbeat({
      intervalMs,
      onError,
      ...(argv.length > 0 ? { argv } : {}),
      ...(database !== undefined && id !== undefined
        ? { start: (sample) => startDatabaseHeartbeat({ databaseUrl: database, id, intervalMs, onError, ...(schema === undefined ? {} : { schema }), ...(sample === undefined ? {} : { sample }) }) }
        : { file: resolve(target.file ?? '') }),
    });
  } catch (error) {
    process.stderr.write(`vigil beat: ${errorMessage(error)}\n`);
    // The shell's conventions: 127 command not found, 126 found but not runnable.
    return (error as { cause?: { code?: string } }).cause?.code === 'ENOENT' ? 127 : 126;
  }
}

async function migrateDatabase(configFile: string): Promise<number> {
  let config;
  try {
    config = await loadConfig(configFile, loadOptions());
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n`);
    return 1;
  }
  const { queue } = config;
  if (queue.type !== 'postgres') {
    process.stderr.write(`vigil migrate: ${configFile} uses the ${queue.type} queue; migrations are for queue.type postgres\n`);
    return 1;
  }
  const database = new pg.Pool({ connectionString: queue.url, max: 1 });
  try {
    const { applied } = await migrate(database, { schema: queue.schema });
    process.stdout.write(applied.length > 0 ? `applied to schema ${queue.schema}: ${applied.join(', ')}\n` : `schema ${queue.schema} is up to date\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`vigil migrate: ${errorMessage(error)}\n`);
    return 1;
  } finally {
    await database.end();
  }
}

async function status(configFile: string): Promise<number> {
  let config;
  try {
    config = await loadConfig(configFile, loadOptions());
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n`);
    return 4;
  }
  const { host, port } = config.server;
  if (port === 0) {
    process.stderr.write(`vigil status: ${configFile} sets server.port 0 (any free port), so there is no address to ask\n`);
    return 4;
  }
  // A daemon listening on every address answers on loopback.
  const address = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : bracketHost(host);
  const url = `http://${address}:${port}/healthz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    const health = (await response.json()) as Health;
    process.stdout.write(`vigil ${health.status} at ${url}: instance ${health.instanceId} epoch ${health.epoch}, version ${health.version}, up ${health.uptimeSeconds} s, ${health.checks} checks\n`);
    return 0;
  } catch (error) {
    process.stdout.write(`vigil is not running at ${url} (${errorMessage(error instanceof Error && error.cause instanceof Error ? error.cause : error)})\n`);
    return 3;
  }
}

async function run(configFile: string, level: string, pidfile: string | undefined): Promise<number> {
  const logger: Logger = pino({ level }, daemonLogDestination());
  const releases: (() => Promise<void> | void)[] = [];
  // The install directory as the process was started through it (argv[1] is dist/cli.js), links
  // unresolved, and the release it resolves to now, before anything can switch it.
  const installDir = dirname(dirname(resolve(process.argv[1] ?? '.')));
  const startedFrom = await realpath(installDir);
  let daemon;
  try {
    if (pidfile !== undefined) releases.push(await acquirePidfile(resolve(pidfile)));
    daemon = await startDaemon({ configFile, logger });
  } catch (error) {
    logger.fatal({ err: error instanceof ValidationError ? undefined : error }, errorMessage(error));
    for (const release of releases.reverse()) await release();
    logger.flush();
    return 1;
  }
  const running = daemon;
  // The process is the daemon's own: it may size the heap (server/heap-growth.ts).
  limitHeapGrowth(running.config.server.heapGrowthPercent);
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection (ignored; vigil keeps running)'));
  process.on('SIGHUP', () => void running.reload());
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (code: number): void => {
      stopping = true;
      running
        .stop()
        .then(async () => {
          for (const release of releases.reverse()) await release();
          resolveExit(code);
        })
        .catch((error: unknown) => {
          logger.error({ err: error }, 'stop failed');
          resolveExit(1);
        });
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        logger.flush();
        process.exit(1);
      }
      logger.info({ signal }, 'stopping gracefully (send the signal again to force)');
      stop(0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const { exitOnPathChange, pathCheckIntervalMs } = running.config.server;
    if (exitOnPathChange) {
      releases.push(
        watchRealPath(installDir, startedFrom, pathCheckIntervalMs, (from, to) => {
          if (stopping) return;
          logger.warn({ installDir, from, to, exitCode: EXIT_PATH_CHANGED }, 'install directory changed: stopping so the supervisor starts the new release');
          stop(EXIT_PATH_CHANGED);
        }),
      );
    }
  });
}


main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`vigil: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
