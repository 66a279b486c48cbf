import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import type { Check, CheckSpec } from '../../checks/check.js';
import type { CheckRegistry } from '../../checks/check-registry.js';
import { counter, gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome } from '../../results/result.js';
import { duration, nonEmptyString } from '../../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from '../command.js';
import type { HeartbeatFileAttributes } from './heartbeat-file.js';

/** The command the attached checks run. */
export const HEARTBEAT_FILE_COMMAND = 'heartbeat-file';

/** What `pattern` became at load time. Plain data, so a reload with the same pattern compares equal. */
export interface FilePattern {
  /** As written: `*.json`. */
  readonly glob: string;
  readonly regex: RegExp;
  /** The literal ending after the last wildcard, cut from a file name to make its check id: `.json`. */
  readonly suffix: string;
  /** Whether names starting with a dot match (only when the pattern itself starts with one). */
  readonly dotFiles: boolean;
}

const patternError = 'expected a file name pattern with * and ? wildcards, like *.json (no slashes)';

function toPattern(glob: string, ctx: z.RefinementCtx<string>): FilePattern {
  if (glob.includes('/')) {
    ctx.addIssue({ code: 'custom', message: patternError, input: glob });
    return z.NEVER;
  }
  let source = '^';
  for (const char of glob) {
    if (char === '*') source += '.*';
    else if (char === '?') source += '.';
    else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  const last = Math.max(glob.lastIndexOf('*'), glob.lastIndexOf('?'));
  return { glob, regex: new RegExp(`${source}$`, 's'), suffix: last < 0 ? '' : glob.slice(last + 1), dotFiles: glob.startsWith('.') };
}

const attributes = z
  .strictObject({
    /** Directory whose heartbeat files are watched. */
    dir: nonEmptyString('a directory path'),
    /** Passed to each heartbeat's check: age (ms) at or above which it is late (`warn`). Default: no warning. */
    warnAfter: duration(1).optional(),
    /** Passed to each heartbeat's check: age (ms) at or above which the heart stopped (`crit`). */
    critAfter: duration(1),
    /** Which files are heartbeats: `*` and `?` wildcards; default `*.json`. Dot-files match only a pattern starting with a dot. */
    pattern: z.string({ error: patternError }).min(1, { error: patternError }).default('*.json').transform(toPattern),
    /** Detach a heartbeat once its check is HARD crit (the file stays, ignored until it changes); default false. */
    autoDetach: z.boolean({ error: 'expected true or false' }).default(false),
  })
  .superRefine((value, ctx) => {
    if (value.warnAfter !== undefined && value.warnAfter > value.critAfter) {
      ctx.addIssue({ code: 'custom', path: ['warnAfter'], message: `expected a duration no longer than critAfter (${value.critAfter}ms)` });
    }
  });

/** The `heartbeat-dir` command's attributes after parsing: durations in milliseconds, the pattern compiled. */
export type HeartbeatDirAttributes = z.output<typeof attributes>;

/** What the command remembers about one `heartbeat-dir` check between its runs. */
interface DirMemory {
  /** The parent spec the children were last built from; a new one (a reload) updates them all. */
  spec: CheckSpec | null;
  /** Attached heartbeats by file name. */
  readonly children: Map<string, Child>;
  /**
   * Files whose heartbeat was detached because it was HARD crit (`autoDetach`), with their mtime (ms)
   * then; NaN until the next run has read it. Attached again once the mtime changes (the process beats
   * again), forgotten once the file is gone.
   */
  readonly dead: Map<string, number>;
  runs: number;
  attachedTotal: number;
  detachedTotal: number;
}

interface Child {
  readonly id: string;
  /** The run (`DirMemory.runs`) that last saw its file. */
  seenRun: number;
}

/**
 * `heartbeat-dir`: the monitor of a directory of heartbeat files. Each run lists `dir`; a file matching
 * `pattern` attaches a heartbeat, a check added through `ctx.checks` with id `<this id>/<file name
 * without the pattern's suffix>`, command `heartbeat-file`, attributes `{ file, warnAfter, critAfter,
 * missing: ok }`, this check's schedule, handlers, pool and suppression, and its metadata plus
 * `heartbeatDir: <this id>`. A file that disappeared (its process exited cleanly and removed it)
 * detaches its heartbeat; between the removal and this check's next run the child sees a missing file,
 * which `missing: ok` keeps quiet. With `autoDetach`, a heartbeat whose check is HARD crit is detached
 * (its incident stays with the handlers) and its file is ignored until it changes.
 *
 * Children are detached only by the run of their own parent: removing the `heartbeat-dir` check leaves
 * its children running (cleaning them up is the server's job), and while `dir` is missing they stay.
 * After a restart the children are attached again from the files; the daemon gives them back their
 * saved state (open incidents included) through TrackedMemoryQueue.adopt.
 *
 * Outcomes: `ok` (`attached` gauge, `attached_total`/`detached_total` counters, `dead_files` with
 * autoDetach); `warn`, `id-conflict` when a child's id is taken by another check; `crit`,
 * `dir-missing`; `unknown`, `no-registry` (the queue cannot add checks at runtime), `unreadable`,
 * `timeout`.
 */
export function heartbeatDirCommand(): Command<HeartbeatDirAttributes> {
  // Keyed by check id rather than by Check object, so it holds with a registry that hands out fresh
  // objects; an entry outlives its removed check, which costs a few bytes per removed parent.
  const memories = new Map<string, DirMemory>();
  return defineCommand({ name: 'heartbeat-dir', attributes, run: (attrs, ctx) => runHeartbeatDir(attrs, ctx, memories), attachedBy: heartbeatDirOf });
}

async function runHeartbeatDir(attrs: HeartbeatDirAttributes, ctx: CommandContext, memories: Map<string, DirMemory>): Promise<CommandOutcome> {
  const { checks: registry, checkId, signal } = ctx;
  if (registry === undefined) {
    return { state: 'unknown', reason: 'no-registry', message: `cannot attach heartbeats from ${attrs.dir}: this server's queue cannot add checks at runtime` };
  }
  if (registry.get(checkId) === undefined) return unregistered(attrs, checkId);
  if (signal.aborted) return timedOut(attrs);

  let entries: Dirent[];
  try {
    entries = await readdir(attrs.dir, { withFileTypes: true });
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { state: 'crit', reason: 'dir-missing', message: `heartbeat directory ${attrs.dir} is missing` };
    return { state: 'unknown', reason: 'unreadable', message: `cannot list heartbeat directory ${attrs.dir}: ${message}` };
  }
  if (signal.aborted) return timedOut(attrs);

  let memory = memories.get(checkId);
  if (memory === undefined) {
    memory = { spec: null, children: adopt(registry, checkId), dead: new Map(), runs: 0, attachedTotal: 0, detachedTotal: 0 };
    memories.set(checkId, memory);
  }
  const run = ++memory.runs;

  const names: string[] = [];
  for (const entry of entries) {
    const name = entry.name;
    if (entry.isDirectory() || (name.startsWith('.') && !attrs.pattern.dotFiles) || !attrs.pattern.regex.test(name)) continue;
    names.push(name);
  }
  const mtimes = await deadFileMtimes(attrs.dir, names, memory.dead);
  if (signal.aborted) return timedOut(attrs);
  // Looked up after the awaits: removed meanwhile, it must not attach children nobody will detach.
  const parent = registry.get(checkId);
  if (parent === undefined) return unregistered(attrs, checkId);

  const specChanged = memory.spec !== parent.spec;
  memory.spec = parent.spec;
  let attached = 0;
  let detached = 0;
  const conflicts: string[] = [];
  for (const name of names) {
    const child = memory.children.get(name);
    const found = child === undefined ? undefined : registry.get(child.id);
    // Not ours when it was removed by someone else and its id taken by another check.
    const check = found?.spec.metadata.heartbeatDir === checkId ? found : undefined;
    if (child !== undefined && check !== undefined) {
      child.seenRun = run;
      if (attrs.autoDetach && check.state.hardState === 'crit' && check.state.stateType === 'hard') {
        registry.remove(child.id);
        memory.children.delete(name);
        memory.dead.set(name, Number.NaN);
        detached++;
      } else if (specChanged) {
        registry.update(childSpec(parent.spec, attrs, name));
      }
      continue;
    }
    const deadAt = memory.dead.get(name);
    if (deadAt !== undefined) {
      const mtime = mtimes.get(name);
      if (Number.isNaN(deadAt) || mtime === undefined || mtime === deadAt) {
        if (mtime !== undefined) memory.dead.set(name, mtime);
        continue;
      }
      memory.dead.delete(name);
    }
    const spec = childSpec(parent.spec, attrs, name);
    const taken = registry.get(spec.id);
    if (taken !== undefined && taken.spec.metadata.heartbeatDir !== checkId) {
      conflicts.push(spec.id);
      memory.children.delete(name);
      continue;
    }
    // Removed by someone else (the API) while its file stayed, or left by an earlier parent of this id.
    if (taken !== undefined) registry.update(spec);
    else {
      registry.add(spec);
      attached++;
    }
    memory.children.set(name, { id: spec.id, seenRun: run });
  }

  for (const [name, child] of memory.children) {
    if (child.seenRun === run) continue;
    memory.children.delete(name);
    // Only a check of ours: one removed by someone else may have left its id to an unrelated check.
    if (registry.get(child.id)?.spec.metadata.heartbeatDir === checkId) registry.remove(child.id);
    detached++;
  }
  if (memory.dead.size > 0) {
    const listed = new Set(names);
    for (const name of memory.dead.keys()) if (!listed.has(name)) memory.dead.delete(name);
  }
  memory.attachedTotal += attached;
  memory.detachedTotal += detached;
  return summary(attrs, memory, attached, detached, conflicts);
}

/** The heartbeats a parent of this id attached before this command instance knew it (a re-added parent). */
function adopt(registry: CheckRegistry, parentId: string): Map<string, Child> {
  const children = new Map<string, Child>();
  for (const check of registry.list()) {
    if (check.spec.metadata.heartbeatDir !== parentId || check.spec.command !== HEARTBEAT_FILE_COMMAND) continue;
    const file = (check.spec.attributes as Partial<HeartbeatFileAttributes>).file;
    if (typeof file === 'string') children.set(basename(file), { id: check.spec.id, seenRun: 0 });
  }
  return children;
}

/** Current mtimes (ms) of the listed files that were detached as dead; a file that vanished meanwhile is left out. */
async function deadFileMtimes(dir: string, names: readonly string[], dead: ReadonlyMap<string, number>): Promise<Map<string, number>> {
  const mtimes = new Map<string, number>();
  if (dead.size === 0) return mtimes;
  await Promise.all(
    names
      .filter((name) => dead.has(name))
      .map(async (name) => {
        try {
          mtimes.set(name, (await stat(join(dir, name))).mtimeMs);
        } catch {
          // Gone between the listing and the stat: left out, so it is not attached; the next listing forgets it.
        }
      }),
  );
  return mtimes;
}

/** The spec of the heartbeat attached for one file. */
export function childSpec(parent: CheckSpec, attrs: HeartbeatDirAttributes, name: string): CheckSpec {
  const { suffix } = attrs.pattern;
  const stem = suffix !== '' && name.endsWith(suffix) && name.length > suffix.length ? name.slice(0, -suffix.length) : name;
  const fileAttributes: HeartbeatFileAttributes = {
    file: join(attrs.dir, name),
    critAfter: attrs.critAfter,
    missing: 'ok',
    ...(attrs.warnAfter === undefined ? {} : { warnAfter: attrs.warnAfter }),
  };
  return Object.freeze({
    ...parent,
    id: `${parent.id}/${stem}`,
    command: HEARTBEAT_FILE_COMMAND,
    attributes: Object.freeze(fileAttributes),
    metadata: Object.freeze({ ...parent.metadata, heartbeatDir: parent.id }),
  });
}

function summary(attrs: HeartbeatDirAttributes, memory: DirMemory, attached: number, detached: number, conflicts: readonly string[]): CommandOutcome {
  const count = memory.children.size;
  const changes = attached + detached === 0 ? '' : ` (${attached} attached, ${detached} detached this run)`;
  const dead = memory.dead.size === 0 ? '' : memory.dead.size === 1 ? '; 1 dead file ignored until it changes' : `; ${memory.dead.size} dead files ignored until they change`;
  const base = `${count} ${count === 1 ? 'heartbeat' : 'heartbeats'} attached from ${attrs.dir}${changes}${dead}`;
  const metrics: Metric[] = [gauge('attached', count), counter('attached_total', memory.attachedTotal), counter('detached_total', memory.detachedTotal)];
  if (attrs.autoDetach) metrics.push(gauge('dead_files', memory.dead.size));
  if (conflicts.length > 0) {
    const ids = conflicts.map((id) => JSON.stringify(id)).join(', ');
    return { state: 'warn', reason: 'id-conflict', message: `${base}; not attached, their check ids are taken by other checks: ${ids}`, metrics };
  }
  return { state: 'ok', reason: 'ok', message: base, metrics };
}

function unregistered(attrs: HeartbeatDirAttributes, checkId: string): CommandOutcome {
  return { state: 'unknown', reason: 'no-registry', message: `cannot attach heartbeats from ${attrs.dir}: check "${checkId}" is not in the server's registry` };
}

function timedOut(attrs: HeartbeatDirAttributes): CommandOutcome {
  return { state: 'unknown', reason: 'timeout', message: `timed out listing heartbeat directory ${attrs.dir}` };
}

/** Whether a check was attached by a `heartbeat-dir` check, and by which. */
export function heartbeatDirOf(check: Check): string | undefined {
  const parent = check.spec.metadata.heartbeatDir;
  return typeof parent === 'string' ? parent : undefined;
}
