import { stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { AnyCommand } from '../commands/command.js';
import type { AnyHandlerType } from '../handlers/handler.js';
import { errorMessage } from '../core/errors.js';
import { isMapping } from '../core/values.js';
import { nonEmptyString } from '../validation/schema-types.js';
import { describeValue, formatPath, fromZodError, prefixIssues, type Issue } from '../validation/issues.js';

/** The shape of the config's `plugins:` section. */
export const pluginsSchema = z
  .array(nonEmptyString('a path to an ES module'), { error: 'expected a list of paths to ES modules' })
  .meta({ description: 'ES modules exporting `commands` and/or `handlers` (handler types); relative to this file, then to the working directory' });

/** What the config's plugins add to the built-in commands and handler types, in the order they were listed. */
export interface LoadedPlugins {
  commands: AnyCommand[];
  handlerTypes: AnyHandlerType[];
}

export interface LoadPluginsOptions {
  /** The built-in commands; a plugin may not redefine one. */
  readonly commands: readonly AnyCommand[];
  /** The built-in handler types; a plugin may not redefine one. */
  readonly handlerTypes: readonly AnyHandlerType[];
  /** Directory relative plugin paths are tried against first (then the working directory). */
  readonly baseDir: string;
}

/**
 * Imports the ES modules the `plugins:` section (`raw`) lists and collects their `commands` and `handlers`
 * exports. Every problem (bad shape, missing file, bad export, a name already taken) goes to `issues` at
 * `plugins[i]`, and that plugin's offending part is left out.
 */
export async function loadPlugins(raw: unknown, options: LoadPluginsOptions, issues: Issue[]): Promise<LoadedPlugins> {
  const plugins: LoadedPlugins = { commands: [], handlerTypes: [] };
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
