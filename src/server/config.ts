import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isScalar, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import type { CheckSpec } from '../checks/check.js';
import type { AnyCommand, ParseResult } from '../commands/command.js';
import type { AnyHandlerType } from '../handlers/handler.js';
import { duration, integer, nonEmptyString } from './schema-types.js';
import { describeValue, formatIssue, formatPath, fromZodError, prefixIssues, ValidationError, type Issue } from './validation.js';

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
}

/** The validated, deeply frozen config. */
export interface VigilConfig {
  /** Absolute path of the file it was read from; `null` when it came from elsewhere. */
  readonly file: string | null;
  readonly server: ServerConfig;
  readonly queue: { readonly type: 'memory' };
  readonly defaults: CheckDefaults;
  /** Handler instances to create, in order: the `handlers:` entries, then handler types used by name. */
  readonly handlers: readonly HandlerConfig[];
  readonly checks: readonly CheckSpec[];
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

const ROOT_KEYS = new Set(['server', 'queue', 'defaults', 'handlers', 'plugins', 'checks']);

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

  const checks = parseChecks(root.checks, { defaults, commands, handlerNames }, issues, references);

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
    },
    queue: { type: queue.type },
    defaults,
    handlers: configs,
    checks,
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

const serverSchema = z.strictObject(
  {
    host: nonEmptyString('a host name or address').default('127.0.0.1').meta({ description: 'Address the HTTP API listens on' }),
    port: integer(0, 65535).default(9470).meta({ description: 'Port of the HTTP API and /metrics; 0 for any free port' }),
    concurrency: integer(1).default(256).meta({ description: 'Checks running at once' }),
    dataDir: nonEmptyString('a directory path').default('./data').meta({ description: 'State directory, relative to the working directory' }),
    apiToken: nonEmptyString('a token').nullable().default(null).meta({ description: 'Bearer token for the HTTP API mutations; without it they are refused' }),
    stopTimeout: durationField('How long stopping waits for running checks').prefault('10s'),
    handlerTimeout: durationField('How long one handler hook may take').prefault('5s'),
    stateSaveInterval: durationField('How often check state is saved').prefault('30s'),
  },
  { error: MAPPING },
);

const queueSchema = z.strictObject(
  { type: z.literal('memory').default('memory').meta({ description: 'Where checks wait for their next run' }) },
  { error: MAPPING },
);

const defaultsSchema = z.strictObject(
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

const pluginsSchema = z
  .array(nonEmptyString('a path to an ES module'), { error: 'expected a list of paths to ES modules' })
  .meta({ description: 'ES modules exporting `commands` and/or `handlers` (handler types); relative to this file, then to the working directory' });

const checkSchema = z.strictObject(
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
      issues.push({ path: ['defaults', 'timeout'], message: `expected at most the interval (${formatMs(intervalMs)}), got ${formatMs(given.timeout)}` });
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
  const commandName = raw.command;
  if (typeof commandName === 'string' && commandName !== '') {
    const command = context.commands.get(commandName);
    if (!command) {
      issues.push({ path: ['command'], message: `unknown command ${JSON.stringify(commandName)}; known commands: ${list(context.commands.keys())}` });
    } else if (raw.attributes == null || isMapping(raw.attributes)) {
      const parsed = parseAttributesSafely(command, raw.attributes ?? {});
      if (parsed.ok) attributes = parsed.value;
      else issues.push(...prefixIssues(['attributes'], parsed.issues));
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
  if (!shape.success || issues.length > 0) return { ok: false, issues };

  const check = shape.data;
  const defaults = context.defaults;
  const intervalMs = check.interval === undefined ? defaults.intervalMs : check.interval;
  // An inherited timeout is a default, so it gives way to a shorter interval; a check's own is a mistake.
  let timeoutMs = intervalMs === null ? defaults.timeoutMs : Math.min(defaults.timeoutMs, intervalMs);
  if (check.timeout !== undefined) {
    timeoutMs = check.timeout;
    if (intervalMs !== null && check.timeout > intervalMs) {
      const interval = check.interval === undefined ? `the default interval (${formatMs(intervalMs)})` : `the interval (${formatMs(intervalMs)})`;
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
  return { ok: true, value: deepFreeze(spec) };
}

function parseChecks(
  raw: unknown,
  context: CheckContext,
  issues: Issue[],
  references: { name: string; path: (string | number)[] }[],
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
    if (parsed.ok) specs.push(parsed.value);
    else issues.push(...prefixIssues(path, parsed.issues));
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
// Plugins

interface Plugins {
  commands: AnyCommand[];
  handlerTypes: AnyHandlerType[];
}

async function loadPlugins(raw: unknown, options: ParseConfigOptions, issues: Issue[]): Promise<Plugins> {
  const plugins: Plugins = { commands: [], handlerTypes: [] };
  if (raw == null) return plugins;
  const shape = pluginsSchema.safeParse(raw);
  if (!shape.success) issues.push(...prefixIssues(['plugins'], fromZodError(shape.error, raw)));
  if (!Array.isArray(raw)) return plugins;

  const commandOwners = new Map(options.commands.map((command) => [command.name, 'a built-in command']));
  const typeOwners = new Map(options.handlerTypes.map((type) => [type.type, 'a built-in handler type']));
  const entries: unknown[] = raw;
  for (const [i, entry] of entries.entries()) {
    if (typeof entry !== 'string' || entry === '') continue;
    const path = ['plugins', i];
    const owner = formatPath(path);
    const found = await findPlugin(entry, options.baseDir);
    if ('tried' in found) {
      issues.push({ path, message: `file not found: tried ${found.tried.join(' and ')}` });
      continue;
    }
    let module: Record<string, unknown>;
    try {
      // The modification time in the URL makes a reload (SIGHUP) pick up an edited plugin.
      module = (await import(`${pathToFileURL(found.file).href}?mtime=${Math.trunc(found.mtimeMs)}`)) as Record<string, unknown>;
    } catch (error) {
      issues.push({ path, message: `cannot load ${found.file}: ${errorMessage(error)}` });
      continue;
    }
    const exported = pluginExports(module);
    if (!exported) {
      const names = Object.keys(module);
      const got = names.length === 0 ? 'a module with no exports' : `exports ${names.join(', ')}`;
      issues.push({ path, message: `expected a module exporting commands (a list of commands) and/or handlers (a list of handler types), got ${got}` });
      continue;
    }
    const problems: string[] = [];
    for (const [k, command] of listExport(exported.commands, 'commands', 'a list of commands', problems)) {
      const missing = missingMembers(command, { name: 'string', parse: 'function', run: 'function' });
      if (missing) problems.push(`commands[${k}]: expected a command (name, parse(), run()), got ${missing}`);
      else claim((command as AnyCommand).name, 'command', commandOwners, owner, `commands[${k}]`, problems, () => plugins.commands.push(command as AnyCommand));
    }
    for (const [k, type] of listExport(exported.handlers, 'handlers', 'a list of handler types', problems)) {
      const missing = missingMembers(type, { type: 'string', parseOptions: 'function', create: 'function' });
      if (missing) problems.push(`handlers[${k}]: expected a handler type (type, parseOptions(), create()), got ${missing}`);
      else claim((type as AnyHandlerType).type, 'handler type', typeOwners, owner, `handlers[${k}]`, problems, () => plugins.handlerTypes.push(type as AnyHandlerType));
    }
    issues.push(...problems.map((message) => ({ path, message })));
  }
  return plugins;
}

async function findPlugin(spec: string, baseDir: string): Promise<{ file: string; mtimeMs: number } | { tried: string[] }> {
  const path = spec.startsWith('file:') ? fileURLToPath(spec) : spec;
  const candidates = isAbsolute(path) ? [path] : [...new Set([resolve(baseDir, path), resolve(process.cwd(), path)])];
  for (const file of candidates) {
    try {
      const stats = await stat(file);
      if (stats.isFile()) return { file, mtimeMs: stats.mtimeMs };
    } catch {
      // Not there: try the next place.
    }
  }
  return { tried: candidates };
}

function pluginExports(module: Record<string, unknown>): { commands?: unknown; handlers?: unknown } | undefined {
  if ('commands' in module || 'handlers' in module) return module;
  const fallback = module.default;
  if (isMapping(fallback) && ('commands' in fallback || 'handlers' in fallback)) return fallback;
  return undefined;
}

function listExport(value: unknown, name: string, expected: string, problems: string[]): [number, unknown][] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return [...(value as unknown[]).entries()];
  problems.push(`export ${name}: expected ${expected}, got ${describeValue(value)}`);
  return [];
}

/** `undefined` when `value` has every member; otherwise a description of what it lacks. */
function missingMembers(value: unknown, members: Record<string, 'string' | 'function'>): string | undefined {
  if (value === null || typeof value !== 'object') return describeValue(value);
  const record = value as Record<string, unknown>;
  const missing = Object.entries(members)
    .filter(([key, kind]) => typeof record[key] !== kind || (kind === 'string' && record[key] === ''))
    .map(([key, kind]) => (kind === 'function' ? `${key}()` : key));
  return missing.length === 0 ? undefined : `an object without ${missing.join(', ')}`;
}

function claim(
  name: string,
  kind: string,
  owners: Map<string, string>,
  owner: string,
  where: string,
  problems: string[],
  add: () => void,
): void {
  const taken = owners.get(name);
  if (taken !== undefined) {
    problems.push(`${where}: ${kind} ${JSON.stringify(name)} is already defined by ${taken}`);
    return;
  }
  owners.set(name, owner);
  add();
}

// ---------------------------------------------------------------------------------------------------------
// ${ENV} substitution

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_REFERENCE = /\$\$\{|\$\{([^}]*)(\}?)/g;
const WHOLE_REFERENCE = /^\$\{[^}]*\}$/;

/** A copy of `value` with `${VAR}` substituted in every string; problems go to `issues`. */
function substituteEnv(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
  path: (string | number)[],
  issues: Issue[],
  ancestors: object[],
): unknown {
  if (typeof value === 'string') return substituteString(value, env, path, issues);
  if (value === null || typeof value !== 'object') return value;
  if (ancestors.includes(value)) {
    issues.push({ path, message: 'expected a value, got an alias to itself (a circular structure)' });
    return null;
  }
  const inside = [...ancestors, value];
  if (Array.isArray(value)) return value.map((item: unknown, i) => substituteEnv(item, env, [...path, i], issues, inside));
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substituteEnv(item, env, [...path, key], issues, inside)]));
}

function substituteString(text: string, env: Readonly<Record<string, string | undefined>>, path: (string | number)[], issues: Issue[]): unknown {
  if (!text.includes('${')) return text;
  let failed = false;
  const fail = (message: string): void => {
    failed = true;
    issues.push({ path, message });
  };
  const result = text.replace(ENV_REFERENCE, (match: string, body: string | undefined, close: string | undefined) => {
    if (match === '$${') return '${';
    if (body === undefined || close !== '}') {
      fail(`expected \${VAR} or \${VAR:-default} (or $\${ for a literal \${), got an unterminated ${JSON.stringify(match)}`);
      return match;
    }
    const separator = body.indexOf(':-');
    const name = separator === -1 ? body : body.slice(0, separator);
    if (!ENV_NAME.test(name)) {
      fail(`expected \${VAR} or \${VAR:-default} (or $\${ for a literal \${), got ${JSON.stringify(match)}`);
      return match;
    }
    const found = env[name];
    if (separator !== -1) return found === undefined || found === '' ? body.slice(separator + 2) : found;
    if (found !== undefined) return found;
    fail(`environment variable ${name} is not set`);
    return match;
  });
  if (failed) return text;
  return WHOLE_REFERENCE.test(text) ? readScalar(result) : result;
}

/** `8080` → 8080, `true` → true, `null` → null; anything else (including a YAML string) stays the text it was. */
function readScalar(text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0 || !isScalar(doc.contents)) return text;
  const value = doc.contents.value;
  return typeof value === 'number' || typeof value === 'boolean' || value === null ? value : text;
}

// ---------------------------------------------------------------------------------------------------------
// JSON Schema

/** JSON Schema (draft 2020-12) of the config file for editors; each check's `attributes` is typed by its command. */
export function configJsonSchema(commands: readonly AnyCommand[], handlerTypes: readonly AnyHandlerType[]): Record<string, unknown> {
  const handlers = handlersJsonSchema(handlerTypes);
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'vigil config',
    description: 'Configuration of vigil, a check poller and heartbeat monitor. String values may use ${VAR} and ${VAR:-default}.',
    type: 'object',
    additionalProperties: false,
    properties: {
      server: jsonSchemaOf(serverSchema),
      queue: jsonSchemaOf(queueSchema),
      defaults: jsonSchemaOf(defaultsSchema),
      handlers: handlers.schema,
      plugins: jsonSchemaOf(pluginsSchema),
      checks: { type: 'array', description: 'The checks to run', items: checkJsonSchema(commands) },
    },
    $defs: handlers.$defs,
  };
}

function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

/** Places a command's or handler type's own schema inside ours; with `$defs`, its `$ref`s need their own base. */
function embed(schema: Record<string, unknown>, id: string): Record<string, unknown> {
  const { $schema: _, ...rest } = schema;
  return '$defs' in rest && !('$id' in rest) ? { $id: `urn:vigil:${id}`, ...rest } : rest;
}

function nameOrKnown(names: readonly string[], description: string): Record<string, unknown> {
  // The enum offers completions; the plain string admits names from plugins.
  return names.length === 0
    ? { description, type: 'string', minLength: 1 }
    : { description, anyOf: [{ enum: names }, { type: 'string', minLength: 1 }] };
}

function checkJsonSchema(commands: readonly AnyCommand[]): Record<string, unknown> {
  const base = jsonSchemaOf(checkSchema);
  const properties = { ...(base.properties as Record<string, unknown>) };
  properties.command = nameOrKnown(
    commands.map((command) => command.name),
    'The command that performs the check (a built-in one or one from a plugin)',
  );
  const allOf = commands.flatMap((command) =>
    command.attributesJsonSchema
      ? [
          {
            if: { properties: { command: { const: command.name } }, required: ['command'] },
            then: { properties: { attributes: embed(command.attributesJsonSchema, `command:${encodeURIComponent(command.name)}:attributes`) } },
          },
        ]
      : [],
  );
  return { ...base, properties, ...(allOf.length > 0 ? { allOf } : {}) };
}

/** The `handlers:` section's schema, and the `$defs` (one per handler type's options) its branches refer to. */
function handlersJsonSchema(handlerTypes: readonly AnyHandlerType[]): { schema: Record<string, unknown>; $defs: Record<string, unknown> } {
  const typeProperty = nameOrKnown(
    handlerTypes.map((type) => type.type),
    'The handler type (default: the entry name)',
  );
  const $defs: Record<string, unknown> = {};
  const optionsRef = new Map<string, Record<string, unknown>>();
  for (const type of handlerTypes) {
    const key = `handler-options-${type.type}`;
    let options: Record<string, unknown> = {};
    if (type.optionsJsonSchema) {
      options = embed(type.optionsJsonSchema, `handler:${encodeURIComponent(type.type)}:options`);
      // The options sit beside `type` in the entry, so a closed options schema must still let `type` in.
      if (isMapping(options.properties)) options = { ...options, properties: { type: {}, ...options.properties } };
    }
    $defs[key] = options;
    optionsRef.set(type.type, { $ref: `#/$defs/${encodeURIComponent(key.replaceAll('~', '~0').replaceAll('/', '~1'))}` });
  }
  const byType = handlerTypes.map((type) => ({
    if: { properties: { type: { const: type.type } }, required: ['type'] },
    then: optionsRef.get(type.type),
  }));
  const schema = {
    type: 'object',
    description: 'Named handler instances: a type (default: the name) and its options. Checks refer to them by name.',
    properties: Object.fromEntries(
      handlerTypes.map((type) => [
        type.type,
        {
          type: 'object',
          properties: { type: typeProperty },
          allOf: [...byType, { if: { not: { required: ['type'] } }, then: optionsRef.get(type.type) }],
        },
      ]),
    ),
    additionalProperties: { type: 'object', required: ['type'], properties: { type: typeProperty }, allOf: byType },
  };
  return { schema, $defs };
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

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

function formatMs(ms: number): string {
  const units: [string, number][] = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ];
  for (const [unit, size] of units) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
