import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { basename, isAbsolute } from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { z } from 'zod';
import { States, type CommandOutcome, type State } from '../../results/result.js';
import { integer } from '../../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from '../command.js';
import { resolveProgram } from '../executable.js';
import { parsePluginOutput, type PluginOutput } from './perfdata.js';

/** The `exec` command's attributes after parsing. Plain data: a reload compares them deeply. */
export interface ExecAttributes {
  /**
   * The program, resolved to an absolute path at load time, then its arguments; as written when the
   * program was missing then (see `missing`).
   */
  readonly argv: readonly string[];
  /**
   * Why the program could not be found at load time: the check loads anyway (with a config warning) and
   * reports `plugin-missing` until the program appears, so one missing plugin does not keep the daemon
   * and every other check from starting.
   */
  readonly missing?: string;
  /** The plugin's complete environment: `PATH` (the daemon's), `LANG=C`, then the configured `env`. */
  readonly env: Readonly<Record<string, string>>;
  /** Working directory of the plugin; the daemon's own when not set. */
  readonly cwd?: string;
  /** Bytes of standard output kept; the rest is read and dropped. */
  readonly maxOutputBytes: number;
}

/** Options of the `exec` command (not of a check). */
export interface ExecOptions {
  /** How long a plugin's process group has between SIGTERM and SIGKILL, in ms; default 1000. */
  readonly killGraceMs?: number;
}

/** Reason codes of `exec` outcomes besides `ok` and `timeout`. */
export const ExecReasons = {
  /** Exit code 1, 2 or 3: the plugin said warn, crit or unknown; the message is its text. */
  plugin: 'plugin',
  /** Any other exit code, or the plugin was killed by a signal that vigil did not send. */
  pluginError: 'plugin-error',
  /** The program could not be started (removed since load, permissions, no processes left, …). */
  spawnError: 'spawn-error',
  /** The program was missing at load time and still is (not found on PATH, no such file). */
  pluginMissing: 'plugin-missing',
} as const;

const DEFAULT_KILL_GRACE_MS = 1000;
const DEFAULT_MAX_OUTPUT_BYTES = 65_536;
const MAX_OUTPUT_BYTES_LIMIT = 16 * 1_048_576;
/** Standard error only fills in a message when standard output has none, so little of it is kept. */
const STDERR_BYTES = 4096;
/** When the daemon itself has no PATH. */
const FALLBACK_PATH = '/usr/local/bin:/usr/bin:/bin';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const argvError = 'expected a non-empty array of strings: the program, then its arguments';
const noNul = (what: string) =>
  z.string({ error: `expected ${what}` }).refine((text) => !text.includes('\0'), { error: `expected ${what} without NUL characters` });

const attributes = z
  .strictObject({
    /** The program (absolute path, or a name looked up on PATH at load time) and its arguments; no shell. */
    argv: z.array(noNul('a string'), { error: argvError }).min(1, { error: argvError }),
    /** Variables added to the plugin's environment (`PATH` and `LANG=C`); the daemon's are not passed on. */
    env: z.record(z.string(), noNul('a string')).optional(),
    /** Absolute path of an existing directory to run the plugin in; default the daemon's working directory. */
    cwd: noNul('an absolute directory path').optional(),
    /** Bytes of standard output kept, default 65536 (64 KiB); the rest is dropped and the message says so. */
    maxOutputBytes: integer(1, MAX_OUTPUT_BYTES_LIMIT).default(DEFAULT_MAX_OUTPUT_BYTES),
  })
  .transform((raw, ctx): ExecAttributes => {
    const env: Record<string, string> = { PATH: process.env['PATH'] ?? FALLBACK_PATH, LANG: 'C' };
    for (const [name, value] of Object.entries(raw.env ?? {})) {
      if (ENV_NAME.test(name)) env[name] = value;
      else ctx.addIssue({ code: 'custom', path: ['env', name], message: 'expected a key that is a variable name (letters, digits, _; not starting with a digit) for this value' });
    }
    const program = resolveProgram(raw.argv[0] as string, env['PATH'] as string);
    const missing = typeof program !== 'string' && program.missing === true;
    if (typeof program !== 'string' && !missing) ctx.addIssue({ code: 'custom', path: ['argv', 0], message: program.problem, input: raw.argv[0] });
    if (raw.cwd !== undefined) {
      const problem = directoryProblem(raw.cwd);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['cwd'], message: problem, input: raw.cwd });
    }
    if (typeof program !== 'string' && !missing) return z.NEVER;
    return {
      argv: typeof program === 'string' ? [program, ...raw.argv.slice(1)] : raw.argv,
      ...(typeof program === 'string' ? {} : { missing: program.problem }),
      env,
      ...(raw.cwd === undefined ? {} : { cwd: raw.cwd }),
      maxOutputBytes: raw.maxOutputBytes,
    };
  });

/**
 * `exec`: runs a Nagios-style plugin — no shell, in its own process group, with a minimal environment
 * (only `PATH` comes from the daemon, plus `LANG=C` and the check's `env`) — and reads its exit code
 * and its output.
 *
 * - Exit 0/1/2/3 → `ok`/`warn`/`crit`/`unknown`, reason `ok` (0) or `plugin` (1–3); the message is the
 *   first line of output before `|` (or the last line of standard error when standard output is empty).
 * - Any other exit code, or a signal vigil did not send → `unknown`, reason `plugin-error`.
 * - The program cannot start → `unknown`, reason `spawn-error`.
 * - The program was missing at load time (a config warning, not an error) and still is → `unknown`,
 *   reason `plugin-missing`; it is looked up again on every run and runs once it appears.
 * - Aborted (deadline or shutdown) → `unknown`, reason `timeout`: whether the plugin or its target hung
 *   is not known. The whole process group gets SIGTERM, then SIGKILL after `killGraceMs`.
 * - Performance data (first line and long output) becomes Metrics, see `parsePerfdata`.
 * - Processes the plugin leaves behind in its group when it exits get SIGTERM (then SIGKILL): a run
 *   never outlives itself, and a background child holding the output pipe cannot stall the result.
 */
export function execCommand(options: ExecOptions = {}): Command<ExecAttributes> {
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  return defineCommand({
    name: 'exec',
    attributes,
    run: (attrs, ctx) => runExec(attrs, ctx, killGraceMs),
    warnings: (attrs) => (attrs.missing === undefined ? [] : [{ path: ['argv', 0], message: `${attrs.missing}; the check reports plugin-missing until it appears` }]),
    apiRefusal: 'exec checks run programs on this host, so they cannot be created, changed or removed through the API; manage them in the config file',
  });
}

async function runExec(loaded: ExecAttributes, ctx: CommandContext, killGraceMs: number): Promise<CommandOutcome> {
  const { signal } = ctx;
  const attrs = present(loaded);
  if (typeof attrs === 'string') return { state: 'unknown', reason: ExecReasons.pluginMissing, message: `${basename(loaded.argv[0] as string)}: ${attrs}` };
  if (signal.aborted) {
    return { state: 'unknown', reason: 'timeout', message: `${programName(attrs)} was not started: ${abortReason(signal)}` };
  }
  const run = new PluginRun(attrs, signal, killGraceMs);
  signal.addEventListener('abort', run);
  try {
    run.start();
    const outcome = await run.outcome;
    if (ctx.logger.isLevelEnabled('debug')) {
      const stderr = run.stderr;
      if (stderr !== '') ctx.logger.debug({ stderr }, 'plugin wrote to standard error');
    }
    return outcome;
  } finally {
    signal.removeEventListener('abort', run);
  }
}

/**
 * The attributes with the program found, for a check whose program was missing at load time (looked up
 * again on every run, so it runs as soon as it is installed); what is still wrong otherwise.
 */
function present(attrs: ExecAttributes): ExecAttributes | string {
  if (attrs.missing === undefined) return attrs;
  const program = resolveProgram(attrs.argv[0] as string, attrs.env['PATH'] as string);
  if (typeof program !== 'string') return program.problem;
  return { argv: [program, ...attrs.argv.slice(1)], env: attrs.env, ...(attrs.cwd === undefined ? {} : { cwd: attrs.cwd }), maxOutputBytes: attrs.maxOutputBytes };
}

/**
 * One run of a plugin. It is itself the signal's abort listener (`handleEvent`); the outcome settles
 * once, with the first of: the output closing after exit, a spawn error, the abort.
 */
class PluginRun {
  readonly outcome: Promise<CommandOutcome>;
  readonly #attrs: ExecAttributes;
  readonly #signal: AbortSignal;
  readonly #killGraceMs: number;
  #resolve!: (outcome: CommandOutcome) => void;
  #settled = false;
  #child: ChildProcess | undefined;
  #stdout: Buffer[] = [];
  #stdoutBytes = 0;
  #droppedBytes = 0;
  #stderr: Buffer[] = [];
  #stderrBytes = 0;
  /** Set once the plugin (the group's leader) has exited. */
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(attrs: ExecAttributes, signal: AbortSignal, killGraceMs: number) {
    this.#attrs = attrs;
    this.#signal = signal;
    this.#killGraceMs = killGraceMs;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** What the plugin wrote to standard error (up to 4 KiB), trimmed. */
  get stderr(): string {
    return this.#stderrBytes === 0 ? '' : Buffer.concat(this.#stderr, this.#stderrBytes).toString('utf8').trim();
  }

  start(): void {
    const { argv, env, cwd } = this.#attrs;
    let child: ChildProcess;
    try {
      child = spawn(argv[0] as string, argv.slice(1), {
        env,
        ...(cwd === undefined ? {} : { cwd }),
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group (and session), so that a timeout can end everything it started.
        detached: true,
      });
    } catch (error) {
      this.#settle(spawnFailed(this.#attrs, error));
      return;
    }
    this.#child = child;
    child.stdout?.on('data', (chunk: Buffer) => this.#onStdout(chunk));
    child.stderr?.on('data', (chunk: Buffer) => this.#onStderr(chunk));
    child.once('error', (error) => this.#onError(error));
    child.once('exit', (code, signal) => this.#onExit(code, signal));
    child.once('close', () => this.#onClose());
  }

  /** The signal aborted. */
  handleEvent(): void {
    if (this.#settled) return;
    // The plugin already exited and only something it started keeps the output open: its answer stands.
    if (this.#exit === undefined) {
      this.#settle({ state: 'unknown', reason: 'timeout', message: `${programName(this.#attrs)} did not finish: ${abortReason(this.#signal)}` });
    } else {
      this.#settle(this.#exited(this.#exit));
    }
    this.#terminateGroup();
    // Anything that escaped the group may still hold the pipes; they are not read any more.
    this.#child?.stdout?.destroy();
    this.#child?.stderr?.destroy();
  }

  #onStdout(chunk: Buffer): void {
    const room = this.#attrs.maxOutputBytes - this.#stdoutBytes;
    if (chunk.length <= room) {
      this.#stdout.push(chunk);
      this.#stdoutBytes += chunk.length;
    } else {
      // Keep reading, so that the plugin does not block on a full pipe, but keep nothing more.
      if (room > 0) {
        this.#stdout.push(chunk.subarray(0, room));
        this.#stdoutBytes += room;
      }
      this.#droppedBytes += chunk.length - Math.max(room, 0);
    }
  }

  #onStderr(chunk: Buffer): void {
    const room = STDERR_BYTES - this.#stderrBytes;
    if (room <= 0) return;
    const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.#stderr.push(kept);
    this.#stderrBytes += kept.length;
  }

  #onError(error: Error): void {
    if (this.#child?.pid === undefined) this.#settle(spawnFailed(this.#attrs, error));
    else this.#terminateGroup();
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.#exit = { code, signal };
    // Whatever the plugin left running in its group goes with it; usually the group is empty (ESRCH).
    this.#terminateGroup();
  }

  #onClose(): void {
    if (this.#exit !== undefined) this.#settle(this.#exited(this.#exit));
  }

  #settle(outcome: CommandOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(outcome);
  }

  /** SIGTERM to the plugin's process group, and SIGKILL after the grace when the group was still there. */
  #terminateGroup(): void {
    const pid = this.#child?.pid;
    if (pid === undefined || !signalGroup(pid, 'SIGTERM')) return;
    // The group id stays taken while any member lives, so the SIGKILL cannot reach a stranger then;
    // once the group is empty its id could only be reused after the pids wrapped around within the grace.
    setTimeout(signalGroup, this.#killGraceMs, pid, 'SIGKILL');
  }

  #exited({ code, signal }: { code: number | null; signal: NodeJS.Signals | null }): CommandOutcome {
    const { message, metrics } = this.#output();
    const name = programName(this.#attrs);
    const text = message !== '' ? message : this.#stderrLine();
    const truncated = this.#droppedBytes > 0 ? ` (output truncated to ${this.#attrs.maxOutputBytes} bytes)` : '';
    if (signal !== null) {
      return { state: 'unknown', reason: ExecReasons.pluginError, message: `${name} was killed by ${signal}${text === '' ? '' : `: ${text}`}${truncated}`, metrics };
    }
    if (code !== null && code >= 0 && code <= 3) {
      const state = States[code] as State;
      const said = text === '' ? `${name} exited with code ${code} and printed nothing` : text;
      return { state, reason: code === 0 ? 'ok' : ExecReasons.plugin, message: said + truncated, metrics };
    }
    return { state: 'unknown', reason: ExecReasons.pluginError, message: `${name} exited with code ${String(code)}, expected 0–3${text === '' ? '' : `: ${text}`}${truncated}`, metrics };
  }

  #output(): PluginOutput {
    if (this.#stdoutBytes === 0) return { message: '', metrics: [] };
    let text = (this.#stdout.length === 1 ? (this.#stdout[0] as Buffer) : Buffer.concat(this.#stdout, this.#stdoutBytes)).toString('utf8');
    if (this.#droppedBytes > 0) {
      // The last line was cut somewhere: its perfdata could carry a cut number (`size=12` of `size=1234`).
      const lastNewline = text.lastIndexOf('\n');
      if (lastNewline !== -1) text = text.slice(0, lastNewline);
      else return { message: text.split('|', 1)[0]?.trim() ?? '', metrics: [] };
    }
    return parsePluginOutput(text);
  }

  #stderrLine(): string {
    const stderr = this.stderr;
    if (stderr === '') return '';
    // The last line: where a shell's or an interpreter's complaint (a traceback's exception) ends up.
    return `stderr: ${stderr.slice(stderr.lastIndexOf('\n') + 1).trim()}`;
  }
}

/** Sends a signal to a process group; false when the group no longer exists (or cannot be signalled). */
function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

function spawnFailed(attrs: ExecAttributes, error: unknown): CommandOutcome {
  const { code, errno } = error as NodeJS.ErrnoException;
  const description = errno === undefined ? undefined : getSystemErrorMap().get(errno)?.[1];
  const why = code === undefined ? String((error as Error).message ?? error) : description === undefined ? code : `${code} (${description})`;
  const where = attrs.cwd === undefined ? '' : ` in ${attrs.cwd}`;
  return { state: 'unknown', reason: ExecReasons.spawnError, message: `cannot start ${attrs.argv[0] as string}${where}: ${why}` };
}

function programName(attrs: ExecAttributes): string {
  return basename(attrs.argv[0] as string);
}

function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  return reason instanceof Error && reason.message !== '' ? reason.message : 'aborted';
}

function directoryProblem(dir: string): string | undefined {
  if (!isAbsolute(dir)) return 'expected an absolute directory path';
  try {
    if (!statSync(dir).isDirectory()) return 'expected a directory (this is not one)';
    accessSync(dir, constants.X_OK);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'expected an existing directory (no such directory)';
    if (code === 'EACCES') return 'expected a directory the daemon may enter (no search permission)';
    return `expected a directory (${code ?? String(error)})`;
  }
}
