import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import type { CheckSpec } from '../checks/check.js';
import type { AnyCommand, ParseResult } from '../commands/command.js';
import type { AnyHandlerType } from '../handlers/handler.js';
import { substituteEnv } from './env.js';
import { errorMessage } from '../core/errors.js';
import { isMapping } from '../core/values.js';
import { amqpIngestSettings, type AmqpIngestSettings } from '../ingest/amqp-ingest.js';
import { loadPlugins } from './plugin-loader.js';
import { defaultPools, type PoolRouting, type PoolSpec } from '../server/pools.js';
import { duration, integer, nonEmptyString } from '../validation/schema-types.js';
import { describeValue, formatIssue, formatPath, fromZodError, prefixIssues, ValidationError, type Issue } from '../validation/issues.js';
import { formatDuration } from '../core/format.js';

/**
 * The daemon's default `server.heapGrowthPercent`. Measured with 100,000 checks at 10,000 runs/s
 * (`npm run bench -- --only scheduler`, 2 cores, a few runs each): V8's own choice gave RSS 294–349 MB
 * at 13–17 µs of CPU a run; 50 % gave 277–317 MB at 14–21 µs; 30 % gave 267–272 MB at 15–20 µs, p99
 * lag 1–3 ms throughout. (Before runs stopped leaking into the old generation, 30 % cost 26 µs a run
 * and 18 ms of p99 lag: see server/in-flight-runs.ts.)
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 30;

/** A named handler instance: a `handlers:` entry, or a handler type used by its name with default options. */
export interface HandlerConfig {
  /** The name checks use in `handlers:`. */
  readonly name: string;
  /** The HandlerType that creates it; an entry without `type` uses its name. */
  readonly type: string;
  /** Options as parsed by the type's `parseOptions`. */
  readonly options: unknown;
}

/** What a check that does not say otherwise gets (the config's `defaults:` over the built-in ones). */
export interface CheckDefaults {
  /** Default 60 s; `null` when the defaults say `once`. */
  readonly intervalMs: number | null;
  /** Default 10 s; a check inheriting it gets at most its own interval. */
  readonly timeoutMs: number;
  /** Default 15 s. */
  readonly retryIntervalMs: number;
  /** Default 3. */
  readonly maxAttempts: number;
  /** Default 1. */
  readonly recoverAfter: number;
  /** Default `[log, prometheus]`. */
  readonly handlers: readonly string[];
}

export interface ServerConfig {
  /** Address the HTTP API listens on; default `127.0.0.1`. */
  readonly host: string;
  /** Port of the HTTP API and `/metrics`; default 9470, 0 for any free port. */
  readonly port: number;
  /** Checks running at once; default 256. */
  readonly concurrency: number;
  /** Absolute path of the state directory; default `./data` resolved against the working directory. */
  readonly dataDir: string;
  /** Bearer token the HTTP API's mutations require; default `null` (mutations refused). */
  readonly apiToken: string | null;
  /** How long `stop()` waits for running checks (`stopTimeout`); default 10 s. */
  readonly stopTimeoutMs: number;
  /** How long one handler hook may take (`handlerTimeout`); default 5 s. */
  readonly handlerTimeoutMs: number;
  /** How often check state is saved to `dataDir` (`stateSaveInterval`); default 30 s. */
  readonly stateSaveIntervalMs: number;
  /** Shares of the concurrency (`pools`); default `default` 85 %, `exec` 10 % and `browser` 5 %. */
  readonly pools: readonly PoolSpec[];
  /** Where checks that name no pool run (`defaultPool`, `commandPools`). */
  readonly poolRouting: PoolRouting;
  /** Two checks with the same command and attributes never run at once; default true. */
  readonly safeMode: boolean;
  /** Reads of the HTTP API need the bearer token too; default false. */
  readonly protectReads: boolean;
  /** Stop with exit code 75 when the install directory's real path changes; default false. */
  readonly exitOnPathChange: boolean;
  /** How often that is looked at (`pathCheckInterval`); default 5 s. */
  readonly pathCheckIntervalMs: number;
  /** How far (%) the JavaScript heap may grow past its live data before a full collection; 0 lets V8 choose; default 30. */
  readonly heapGrowthPercent: number;
}

/** Where checks wait: the embedded queue, or PostgreSQL shared by many instances. */
export type QueueConfig =
  | { readonly type: 'memory' }
  | {
      readonly type: 'postgres';
      readonly url: string;
      readonly schema: string;
      /** Apply the migrations at start; default true. */
      readonly migrate: boolean;
      readonly poolSize: number;
      readonly pollIntervalMs: number;
      /** A claimed check's lease lasts leaseFactor × its timeout + leaseMarginMs. */
      readonly leaseFactor: number;
      readonly leaseMarginMs: number;
      readonly heartbeatIntervalMs: number;
    };

/** The validated, deeply frozen config. */
export interface VigilConfig {
  /** Absolute path of the file it was read from; `null` when it came from elsewhere. */
  readonly file: string | null;
  readonly server: ServerConfig;
  readonly queue: QueueConfig;
  /** Results arriving from other vigils; `amqp` null when none are consumed. */
  readonly ingest: { readonly amqp: AmqpIngestSettings | null; readonly check: Readonly<Record<string, unknown>> };
  readonly defaults: CheckDefaults;
  /** Handler instances to create, in order: the `handlers:` entries, then handler types used by name. */
  readonly handlers: readonly HandlerConfig[];
  readonly checks: readonly CheckSpec[];
  /**
   * Problems that did not stop the config from loading, with their paths (an `exec` plugin missing on
   * this host: the check reports `plugin-missing` until it appears). `vigil validate --strict` fails on them.
   */
  readonly warnings: readonly Issue[];
  /** Built-in and plugin commands by name. */
  readonly commands: ReadonlyMap<string, AnyCommand>;
  /** Built-in and plugin handler types by type name. */
  readonly handlerTypes: ReadonlyMap<string, AnyHandlerType>;
}

export interface LoadConfigOptions {
  /** Variables for `${VAR}` substitution; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** The built-in commands; plugins add theirs. */
  readonly commands: readonly AnyCommand[];
  /** The built-in handler types; plugins add theirs. */
  readonly handlerTypes: readonly AnyHandlerType[];
}

export interface ParseConfigOptions extends LoadConfigOptions {
  /** Where the input came from, for messages and `VigilConfig.file`; default `null`. */
  readonly file?: string | null | undefined;
  /** Directory relative plugin paths are tried against first (then the working directory). */
  readonly baseDir: string;
}

/** What checks get when neither they nor the config's `defaults:` say otherwise. */
export const builtinCheckDefaults: CheckDefaults = Object.freeze({
  intervalMs: 60_000,
  timeoutMs: 10_000,
  retryIntervalMs: 15_000,
  maxAttempts: 3,
  recoverAfter: 1,
  handlers: Object.freeze(['log', 'prometheus']),
});

/** Reads, validates and freezes a YAML config file; every problem in it is reported in one ValidationError. */
export async function loadConfig(file: string, options: LoadConfigOptions): Promise<VigilConfig> {
  const what = `invalid config ${file}`;
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const message = errorCode(error) === 'ENOENT' ? `file not found: ${path}` : `cannot read ${path}: ${errorMessage(error)}`;
    throw new ValidationError([{ path: [], message }], what);
  }
  return build(readYaml(text, what), { ...options, file: path, baseDir: dirname(path) }, what);
}

/** Validates and freezes a config already read (YAML or JSON parsed into plain values). */
export async function parseConfig(raw: unknown, options: ParseConfigOptions): Promise<VigilConfig> {
  return build(raw, options, options.file == null ? 'invalid config' : `invalid config ${options.file}`);
}

function readYaml(text: string, what: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ValidationError(
      doc.errors.map((error) => {
        const { line, col } = lineCounter.linePos(error.pos[0]);
        return { path: [], message: `YAML syntax error at line ${line}, column ${col}: ${error.message}` };
      }),
      what,
    );
  }
  try {
    return doc.toJS();
  } catch (error) {
    throw new ValidationError([{ path: [], message: `YAML error: ${errorMessage(error)}` }], what);
  }
}

const ROOT_KEYS = new Set(['server', 'queue', 'defaults', 'handlers', 'plugins', 'checks', 'ingest']);

async function build(raw: unknown, options: ParseConfigOptions, what: string): Promise<VigilConfig> {
  const envIssues: Issue[] = [];
  const input = substituteEnv(raw ?? {}, options.env ?? process.env, [], envIssues, []);
  const issues: Issue[] = [];

  let root: Record<string, unknown> = {};
  if (isMapping(input)) root = input;
  else issues.push({ path: [], message: `expected a mapping with server, queue, defaults, handlers, plugins and checks, got ${describeValue(input)}` });
  for (const key of Object.keys(root)) if (!ROOT_KEYS.has(key)) issues.push({ path: [key], message: 'unknown key' });

  const server = section(['server'], serverSchema, root.server, issues);
  const queue = section(['queue'], queueSchema, root.queue, issues);
  const ingest = section(['ingest'], ingestSchema, root.ingest, issues);
  const defaults = effectiveDefaults(section(['defaults'], defaultsSchema, root.defaults, issues), issues);

  const plugins = await loadPlugins(root.plugins, options, issues);
  const commands = byName([...options.commands, ...plugins.commands], (command) => command.name);
  const handlerTypes = byName([...options.handlerTypes, ...plugins.handlerTypes], (type) => type.type);

  const handlers = parseHandlers(root.handlers, handlerTypes, issues);
  const handlerNames = new Set([...handlers.declared, ...handlerTypes.keys()]);
  // Handler references, with their paths, for the handler types used by name that need an instance.
  const references: { name: string; path: (string | number)[] }[] = [];
  defaults.handlers.forEach((name, j) => {
    const issue = handlerReferenceIssue(name, defaults.handlers.slice(0, j), handlerNames);
    if (issue) issues.push({ path: ['defaults', 'handlers', j], message: issue });
    else references.push({ name, path: ['defaults', 'handlers', j] });
  });

  const pools = resolvePools(server, issues);
  const poolNames = new Set(pools.pools.map((pool) => pool.name));
  if (server.protectReads && server.apiToken === null) issues.push({ path: ['server', 'protectReads'], message: 'expected server.apiToken to be set: reads cannot need a token that does not exist' });
  const warnings: Issue[] = [];
  const checks = parseChecks(root.checks, { defaults, commands, handlerNames, poolNames }, issues, references, warnings);
  if (ingest.check !== undefined) {
    const template = ingestedCheckEntry(ingest.check, 'ingested');
    const parsed = parseCheckSpec(template, { defaults, commands, handlerNames, poolNames });
    if (!parsed.ok) issues.push(...prefixIssues(['ingest', 'check'], parsed.issues.filter((issue) => issue.path[0] !== 'id' && issue.path[0] !== 'command')));
  }

  const configs = [...handlers.configs.values()];
  const implicit = new Set<string>();
  for (const { name, path } of references) {
    const type = handlerTypes.get(name);
    if (handlers.declared.has(name) || implicit.has(name) || !type) continue;
    implicit.add(name);
    const parsed = parseOptionsSafely(type, {});
    if (parsed.ok) configs.push({ name, type: name, options: parsed.value });
    else {
      const why = parsed.issues.map(formatIssue).join('; ');
      issues.push({ path, message: `handler type "${name}" needs options (${why}): configure a handler for it under handlers` });
    }
  }

  // A value whose ${…} could not be substituted would only repeat its problem as a shape error.
  const all = [...envIssues, ...issues.filter((issue) => !envIssues.some((env) => startsWith(issue.path, env.path)))];
  if (all.length > 0) throw new ValidationError(all, what);

  return deepFreeze({
    file: options.file ?? null,
    server: {
      host: server.host,
      port: server.port,
      concurrency: server.concurrency,
      dataDir: resolve(process.cwd(), server.dataDir),
      apiToken: server.apiToken,
      stopTimeoutMs: server.stopTimeout,
      handlerTimeoutMs: server.handlerTimeout,
      stateSaveIntervalMs: server.stateSaveInterval,
      pools: pools.pools,
      poolRouting: pools.routing,
      safeMode: server.safeMode,
      protectReads: server.protectReads,
      exitOnPathChange: server.exitOnPathChange,
      pathCheckIntervalMs: server.pathCheckInterval,
      heapGrowthPercent: server.heapGrowthPercent,
    },
    queue: queueConfig(queue),
    ingest: { amqp: ingest.amqp ?? null, check: ingest.check ?? {} },
    defaults,
    handlers: configs,
    checks,
    warnings,
    commands: frozenMap(commands),
    handlerTypes: frozenMap(handlerTypes),
  });
}

// ---------------------------------------------------------------------------------------------------------
// Shape

const MAPPING = 'expected a mapping';
const DURATION_PATTERN = '^\\s*\\d+(\\.\\d+)?(ms|s|m|h|d)\\s*$';
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const ID_ERROR = 'expected an id of at most 200 letters, digits and _ . : - starting with a letter or digit';

function durationField(description: string) {
  return duration(1).meta({ description: `${description}: 30s, 5m, 250ms, 1h, 1d or milliseconds`, pattern: DURATION_PATTERN, minimum: 1 });
}

function intervalField() {
  return z
    .union([z.literal('once').transform(() => null), durationField('Time between runs')], {
      error: 'expected a duration like 30s, 5m, 250ms, milliseconds, or once',
    })
    .meta({ description: 'Time between runs (30s, 5m, 250ms, 1h, 1d or milliseconds), or `once` for a one-shot check' });
}

function mappingField(description: string) {
  return z.record(z.string(), z.unknown(), { error: MAPPING }).nullish().meta({ description });
}

function handlerListField() {
  return z
    .array(nonEmptyString('a handler name'), { error: 'expected a list of handler names' })
    .meta({ description: 'Names of handlers (a `handlers:` entry or a handler type) that receive the outcomes, in order' });
}

/** The shape of the config's `server:` section (durations in ms after parsing). */
export const serverSchema = z.strictObject(
  {
    host: nonEmptyString('a host name or address').default('127.0.0.1').meta({ description: 'Address the HTTP API listens on' }),
    port: integer(0, 65535).default(9470).meta({ description: 'Port of the HTTP API and /metrics; 0 for any free port' }),
    concurrency: integer(1).default(256).meta({ description: 'Checks running at once' }),
    dataDir: nonEmptyString('a directory path').default('./data').meta({ description: 'State directory, relative to the working directory' }),
    apiToken: nonEmptyString('a token').nullable().default(null).meta({ description: 'Bearer token for the HTTP API mutations; without it they are refused' }),
    stopTimeout: durationField('How long stopping waits for running checks').prefault('10s'),
    handlerTimeout: durationField('How long one handler hook may take').prefault('5s'),
    stateSaveInterval: durationField('How often check state is saved').prefault('30s'),
    pools: z
      .array(
        z.strictObject(
          {
            name: nonEmptyString('a pool name'),
            ratio: z.number({ error: 'expected a share of concurrency above 0 and at most 1' }).gt(0, { error: 'expected a share of concurrency above 0 and at most 1' }).max(1, { error: 'expected a share of concurrency above 0 and at most 1' }),
            shared: z.boolean({ error: 'expected true or false' }).default(false),
          },
          { error: MAPPING },
        ),
        { error: 'expected a list of pools' },
      )
      .min(1, { error: 'expected at least one pool' })
      .optional()
      .meta({ description: 'Shares of concurrency: a non-shared pool reserves ceil(concurrency × ratio) slots; shared pools run the overflow of the others in definition order. Default: default 85 %, exec 10 %, browser 5 %' }),
    defaultPool: nonEmptyString('a pool name').optional().meta({ description: 'Pool of checks that name none; default the first shared pool, else the first pool' }),
    commandPools: z.record(z.string(), nonEmptyString('a pool name'), { error: 'expected a mapping of command names to pool names' }).optional().meta({ description: 'Default pool per command; exec checks default to a pool named exec when there is one' }),
    safeMode: z.boolean({ error: 'expected true or false' }).default(true).meta({ description: 'Two checks with the same command and attributes never run at once' }),
    protectReads: z.boolean({ error: 'expected true or false' }).default(false).meta({ description: 'Reads of the HTTP API need the bearer token too' }),
    exitOnPathChange: z.boolean({ error: 'expected true or false' }).default(false).meta({ description: 'Stop (exit code 75) when the real path behind the install directory changes, e.g. a release deployed by switching a symlink' }),
    pathCheckInterval: durationField('How often exitOnPathChange looks at the install directory').prefault('5s'),
    heapGrowthPercent: integer(0, 1000)
      .default(DEFAULT_HEAP_GROWTH_PERCENT)
      .meta({ description: 'How far (%) the JavaScript heap may grow past its live data before a full collection: lower keeps the resident size down for a little more CPU; 0 lets V8 choose (up to 4 times the live data)' }),
  },
  { error: MAPPING },
);

/** The pools and how checks that name none are routed: the configured ones, or vigil's defaults. */
function resolvePools(server: z.output<typeof serverSchema>, issues: Issue[]): { pools: readonly PoolSpec[]; routing: PoolRouting } {
  if (server.pools === undefined) {
    if (server.defaultPool !== undefined) issues.push({ path: ['server', 'defaultPool'], message: 'expected server.pools to be configured first' });
    if (server.commandPools !== undefined) issues.push({ path: ['server', 'commandPools'], message: 'expected server.pools to be configured first' });
    return defaultPools();
  }
  const pools = server.pools;
  const names = new Set<string>();
  pools.forEach((pool, i) => {
    if (names.has(pool.name)) issues.push({ path: ['server', 'pools', i, 'name'], message: `duplicate pool name ${JSON.stringify(pool.name)}` });
    names.add(pool.name);
  });
  const total = pools.reduce((sum, pool) => sum + pool.ratio, 0);
  if (total > 1 + 1e-9) issues.push({ path: ['server', 'pools'], message: `expected ratios adding up to at most 1, got ${Number(total.toFixed(6))}` });
  const known = (name: string, path: (string | number)[]): void => {
    if (!names.has(name)) issues.push({ path, message: `unknown pool ${JSON.stringify(name)}; known pools: ${list(names)}` });
  };
  if (server.defaultPool !== undefined) known(server.defaultPool, ['server', 'defaultPool']);
  for (const [command, pool] of Object.entries(server.commandPools ?? {})) known(pool, ['server', 'commandPools', command]);
  const firstShared = pools.find((pool) => pool.shared) ?? pools[0];
  return {
    pools,
    routing: {
      fallback: server.defaultPool ?? (firstShared as PoolSpec).name,
      byCommand: server.commandPools ?? { ...(names.has('exec') ? { exec: 'exec' } : {}), ...(names.has('browser') ? { browser: 'browser' } : {}) },
    },
  };
}

/**
 * The shape of the config's `ingest:` section: results arriving from other vigils. `check` is the entry
 * (like one under `checks:`, without id and command) that checks created for them start from.
 */
export const ingestSchema = z.strictObject(
  {
    amqp: amqpIngestSettings.optional().meta({ description: 'Consume results published by other vigils through RabbitMQ (amqp handler)' }),
    check: z.record(z.string(), z.unknown(), { error: MAPPING }).optional().meta({ description: 'What checks created for ingested results start from: a check entry without id and command (a push check)' }),
  },
  { error: MAPPING },
);

function queueConfig(queue: z.output<typeof queueSchema>): QueueConfig {
  if (queue.type === 'memory') return { type: 'memory' };
  return {
    type: 'postgres',
    url: queue.url,
    schema: queue.schema,
    migrate: queue.migrate,
    poolSize: queue.poolSize,
    pollIntervalMs: queue.pollInterval,
    leaseFactor: queue.leaseFactor,
    leaseMarginMs: queue.leaseMargin,
    heartbeatIntervalMs: queue.heartbeatInterval,
  };
}

/** The check entry for an ingested check `id`: a push check (period 1m, grace 1m unless `check` says otherwise). */
export function ingestedCheckEntry(check: Readonly<Record<string, unknown>>, id: string): Record<string, unknown> {
  const attributes = typeof check.attributes === 'object' && check.attributes !== null ? check.attributes : {};
  return { ...check, id, command: 'push', attributes: { period: '1m', grace: '1m', ...attributes } };
}

/** The shape of the config's `queue:` section: `memory` (the default) or `postgres`. */
export const queueSchema = z.preprocess(
  // `type` may be left out for the embedded queue.
  (value) => (isMapping(value) && value.type === undefined ? { ...value, type: 'memory' } : value),
  z.discriminatedUnion(
    'type',
    [
      z.strictObject({ type: z.literal('memory').meta({ description: 'The embedded queue, with a state file in dataDir' }) }, { error: MAPPING }),
      z.strictObject(
        {
          type: z.literal('postgres').meta({ description: 'A PostgreSQL database shared by any number of vigil instances' }),
          url: nonEmptyString('a postgres:// connection URL'),
          schema: nonEmptyString('a schema name').default('vigil'),
          migrate: z.boolean({ error: 'expected true or false' }).default(true).meta({ description: 'Apply the migrations at start' }),
          poolSize: integer(1, 100).default(10),
          pollInterval: durationField('How often the queue looks for due checks besides notifications').prefault('2s'),
          leaseFactor: z.number({ error: 'expected a number ≥ 1' }).min(1, { error: 'expected a number ≥ 1' }).default(2),
          leaseMargin: durationField('Added to a lease of leaseFactor × the check timeout').prefault('1s'),
          heartbeatInterval: durationField('How often this instance heartbeats in the instances table').prefault('5s'),
        },
        { error: MAPPING },
      ),
    ],
    { error: 'expected type memory or postgres' },
  ),
);

/** The shape of the config's `defaults:` section, before the built-in defaults fill it in. */
export const defaultsSchema = z.strictObject(
  {
    interval: intervalField().optional().meta({ default: '60s' }),
    timeout: durationField('How long a run may take').optional().meta({ default: '10s' }),
    retryInterval: durationField('Time between runs while a state change is being confirmed').optional().meta({ default: '15s' }),
    maxAttempts: integer(1).optional().meta({ description: 'Consecutive non-OK results that open an incident', default: 3 }),
    recoverAfter: integer(1).optional().meta({ description: 'Consecutive OK results that resolve an incident', default: 1 }),
    handlers: handlerListField().optional().meta({ default: ['log', 'prometheus'] }),
  },
  { error: MAPPING },
);

/** The shape of one `checks:` entry, before its command, attributes and handlers are checked. */
export const checkSchema = z.strictObject(
  {
    id: z
      .string({ error: ID_ERROR })
      .regex(ID_PATTERN, { error: ID_ERROR })
      .max(200, { error: ID_ERROR })
      .meta({ description: 'Unique, stable id' }),
    command: nonEmptyString('a command name').meta({ description: 'The command that performs the check' }),
    attributes: mappingField("The command's attributes"),
    interval: intervalField().optional(),
    timeout: durationField('How long a run may take (at most the interval)').optional(),
    retryInterval: durationField('Time between runs while a state change is being confirmed').optional(),
    maxAttempts: integer(1).optional().meta({ description: 'Consecutive non-OK results that open an incident' }),
    recoverAfter: integer(1).optional().meta({ description: 'Consecutive OK results that resolve an incident' }),
    handlers: handlerListField().optional(),
    pool: nonEmptyString('a pool name').nullable().optional().meta({ description: 'Concurrency pool; the default pool when absent' }),
    metadata: mappingField('Free-form labels for handlers'),
    suppressed: z.boolean({ error: 'expected true or false' }).optional().meta({ description: 'Maintenance: opens no incidents while true' }),
  },
  { error: MAPPING },
);

/** Parses one section; on problems records them and goes on with the section's defaults. */
function section<S extends z.ZodType>(path: (string | number)[], schema: S, value: unknown, issues: Issue[]): z.output<S> {
  const parsed = schema.safeParse(value ?? {});
  if (parsed.success) return parsed.data;
  issues.push(...prefixIssues(path, fromZodError(parsed.error, value)));
  return schema.parse({});
}

function effectiveDefaults(given: z.output<typeof defaultsSchema>, issues: Issue[]): CheckDefaults {
  const builtin = builtinCheckDefaults;
  const intervalMs = given.interval === undefined ? builtin.intervalMs : given.interval;
  let timeoutMs = intervalMs === null ? builtin.timeoutMs : Math.min(builtin.timeoutMs, intervalMs);
  if (given.timeout !== undefined) {
    timeoutMs = given.timeout;
    if (intervalMs !== null && given.timeout > intervalMs) {
      issues.push({ path: ['defaults', 'timeout'], message: `expected at most the interval (${formatDuration(intervalMs)}), got ${formatDuration(given.timeout)}` });
    }
  }
  return {
    intervalMs,
    timeoutMs,
    retryIntervalMs: given.retryInterval ?? builtin.retryIntervalMs,
    maxAttempts: given.maxAttempts ?? builtin.maxAttempts,
    recoverAfter: given.recoverAfter ?? builtin.recoverAfter,
    handlers: given.handlers ?? builtin.handlers,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Checks

/** What a check is validated against. */
export interface CheckContext {
  readonly defaults: CheckDefaults;
  readonly commands: ReadonlyMap<string, AnyCommand>;
  /** Handler names a check may use. */
  readonly handlerNames: ReadonlySet<string>;
  /** Pool names a check may use. */
  readonly poolNames: ReadonlySet<string>;
}

/**
 * Validates one check entry (from the config or the HTTP API) into a frozen CheckSpec: its shape, its command
 * and attributes, its handlers, its timeout against its interval. Issue paths are relative to the entry.
 */
export function parseCheckSpec(raw: unknown, context: CheckContext): ParseResult<CheckSpec> {
  const shape = checkSchema.safeParse(raw);
  const issues: Issue[] = shape.success ? [] : fromZodError(shape.error, raw);
  if (!isMapping(raw)) return { ok: false, issues };

  // The command, attributes and handlers are checked even when the shape has problems: every problem at once.
  let attributes: unknown;
  let warnings: readonly Issue[] = [];
  const commandName = raw.command;
  if (typeof commandName === 'string' && commandName !== '') {
    const command = context.commands.get(commandName);
    if (!command) {
      issues.push({ path: ['command'], message: `unknown command ${JSON.stringify(commandName)}; known commands: ${list(context.commands.keys())}` });
    } else if (raw.attributes == null || isMapping(raw.attributes)) {
      const parsed = parseAttributesSafely(command, raw.attributes ?? {});
      if (parsed.ok) {
        attributes = parsed.value;
        warnings = prefixIssues(['attributes'], parsed.warnings ?? []);
      } else issues.push(...prefixIssues(['attributes'], parsed.issues));
    }
  }
  if (Array.isArray(raw.handlers)) {
    const names: unknown[] = raw.handlers;
    names.forEach((name, j) => {
      if (typeof name !== 'string' || name === '') return;
      const issue = handlerReferenceIssue(name, names.slice(0, j), context.handlerNames);
      if (issue) issues.push({ path: ['handlers', j], message: issue });
    });
  }
  if (typeof raw.pool === 'string' && !context.poolNames.has(raw.pool)) {
    issues.push({ path: ['pool'], message: `unknown pool ${JSON.stringify(raw.pool)}; known pools: ${list(context.poolNames)}` });
  }
  if (!shape.success || issues.length > 0) return { ok: false, issues };

  const check = shape.data;
  const defaults = context.defaults;
  const intervalMs = check.interval === undefined ? defaults.intervalMs : check.interval;
  // An inherited timeout is a default, so it gives way to a shorter interval; a check's own is a mistake.
  let timeoutMs = intervalMs === null ? defaults.timeoutMs : Math.min(defaults.timeoutMs, intervalMs);
  if (check.timeout !== undefined) {
    timeoutMs = check.timeout;
    if (intervalMs !== null && check.timeout > intervalMs) {
      const interval = check.interval === undefined ? `the default interval (${formatDuration(intervalMs)})` : `the interval (${formatDuration(intervalMs)})`;
      return { ok: false, issues: [{ path: ['timeout'], message: `expected at most ${interval}, got ${describeValue(raw.timeout)}` }] };
    }
  }
  const spec: CheckSpec = {
    id: check.id,
    command: check.command,
    attributes,
    intervalMs,
    timeoutMs,
    retryIntervalMs: check.retryInterval ?? defaults.retryIntervalMs,
    maxAttempts: check.maxAttempts ?? defaults.maxAttempts,
    recoverAfter: check.recoverAfter ?? defaults.recoverAfter,
    handlers: check.handlers ?? defaults.handlers,
    pool: check.pool ?? null,
    metadata: check.metadata ?? {},
    suppressed: check.suppressed ?? false,
  };
  return warnings.length === 0 ? { ok: true, value: deepFreeze(spec) } : { ok: true, value: deepFreeze(spec), warnings };
}

function parseChecks(
  raw: unknown,
  context: CheckContext,
  issues: Issue[],
  references: { name: string; path: (string | number)[] }[],
  warnings: Issue[],
): CheckSpec[] {
  if (raw == null) return [];
  if (!Array.isArray(raw)) {
    issues.push({ path: ['checks'], message: `expected a list of checks, got ${describeValue(raw)}` });
    return [];
  }
  const specs: CheckSpec[] = [];
  const firstIndex = new Map<string, number>();
  raw.forEach((entry: unknown, i) => {
    const path = ['checks', i];
    const parsed = parseCheckSpec(entry, context);
    if (parsed.ok) {
      specs.push(parsed.value);
      warnings.push(...prefixIssues(path, parsed.warnings ?? []));
    } else issues.push(...prefixIssues(path, parsed.issues));
    if (!isMapping(entry)) return;
    const id = entry.id;
    if (typeof id === 'string') {
      const first = firstIndex.get(id);
      if (first === undefined) firstIndex.set(id, i);
      else issues.push({ path: [...path, 'id'], message: `duplicate id ${JSON.stringify(id)} (first at ${formatPath(['checks', first])})` });
    }
    if (Array.isArray(entry.handlers)) {
      entry.handlers.forEach((name: unknown, j) => {
        if (typeof name === 'string') references.push({ name, path: [...path, 'handlers', j] });
      });
    }
  });
  return specs;
}

function handlerReferenceIssue(name: string, before: readonly unknown[], known: ReadonlySet<string>): string | undefined {
  if (before.includes(name)) return `duplicate handler ${JSON.stringify(name)}`;
  if (!known.has(name)) return `unknown handler ${JSON.stringify(name)}; known handlers: ${list(known)}`;
  return undefined;
}

function parseAttributesSafely(command: AnyCommand, raw: unknown): ParseResult<unknown> {
  try {
    return command.parse(raw);
  } catch (error) {
    return { ok: false, issues: [{ path: [], message: `command "${command.name}" failed to parse its attributes: ${errorMessage(error)}` }] };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Handlers

function parseHandlers(
  raw: unknown,
  handlerTypes: ReadonlyMap<string, AnyHandlerType>,
  issues: Issue[],
): { declared: Set<string>; configs: Map<string, HandlerConfig> } {
  const declared = new Set<string>();
  const configs = new Map<string, HandlerConfig>();
  if (raw == null) return { declared, configs };
  if (!isMapping(raw)) {
    issues.push({ path: ['handlers'], message: `expected a mapping of handler names to their type and options, got ${describeValue(raw)}` });
    return { declared, configs };
  }
  for (const [name, value] of Object.entries(raw)) {
    declared.add(name);
    const path = ['handlers', name];
    const entry = value ?? {};
    if (!isMapping(entry)) {
      issues.push({ path, message: `expected a mapping of options (and a type, default the name), got ${describeValue(value)}` });
      continue;
    }
    const { type: typeName = name, ...options } = entry;
    if (typeof typeName !== 'string' || typeName === '') {
      issues.push({ path: [...path, 'type'], message: `expected a handler type name, got ${describeValue(typeName)}` });
      continue;
    }
    const type = handlerTypes.get(typeName);
    if (!type) {
      const where = 'type' in entry ? [...path, 'type'] : path;
      issues.push({ path: where, message: `unknown handler type ${JSON.stringify(typeName)}; known types: ${list(handlerTypes.keys())}` });
      continue;
    }
    const parsed = parseOptionsSafely(type, options);
    if (parsed.ok) configs.set(name, { name, type: typeName, options: parsed.value });
    else issues.push(...prefixIssues(path, parsed.issues));
  }
  return { declared, configs };
}

function parseOptionsSafely(type: AnyHandlerType, raw: unknown): ParseResult<unknown> {
  try {
    return type.parseOptions(raw);
  } catch (error) {
    return { ok: false, issues: [{ path: [], message: `handler type "${type.type}" failed to parse its options: ${errorMessage(error)}` }] };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

function byName<T>(items: readonly T[], name: (item: T) => string): Map<string, T> {
  // A clash was reported by loadPlugins; the first definition wins meanwhile.
  const map = new Map<string, T>();
  for (const item of items) if (!map.has(name(item))) map.set(name(item), item);
  return map;
}

function list(names: Iterable<string>): string {
  const sorted = [...names].sort();
  return sorted.length === 0 ? '(none)' : sorted.join(', ');
}

function startsWith(path: readonly (string | number)[], prefix: readonly (string | number)[]): boolean {
  return prefix.length <= path.length && prefix.every((part, i) => path[i] === part);
}

/** Freezes plain objects and arrays all the way down; class instances (a command's parsed values) are left alone. */
function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  const prototype: unknown = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && prototype !== Object.prototype && prototype !== null) return value;
  Object.freeze(value);
  for (const item of Object.values(value)) deepFreeze(item);
  return value;
}

function frozenMap<K, V>(map: Map<K, V>): ReadonlyMap<K, V> {
  const refuse = (): never => {
    throw new TypeError('the config is frozen');
  };
  Object.defineProperties(map, { set: { value: refuse }, delete: { value: refuse }, clear: { value: refuse } });
  return Object.freeze(map);
}

function errorCode(error: unknown): unknown {
  return error !== null && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
}
