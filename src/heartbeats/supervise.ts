import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { assertIntervalMs, startHeartbeatFile, type HeartbeatSample } from './heartbeat-writer.js';
import { type Clock } from '../core/clock.js';

/** What writes the beats: the file writer, or another transport (a database row) with the same stop. */
export type HeartbeatStarter = (sample?: () => HeartbeatSample | Promise<HeartbeatSample>) => { stop(options?: { remove?: boolean }): Promise<void> };

export interface SuperviseOptions {
  /** The heartbeat file (written with startHeartbeatFile), unless `start` is given. */
  readonly file?: string;
  /** Starts another kind of heartbeat in place of the file; `sample`, when passed, reports the command. */
  readonly start?: HeartbeatStarter;
  /** Milliseconds between beats (≥ 1). */
  readonly intervalMs: number;
  /** The command to run and its arguments (no shell); without it (or empty) this process beats alone, as a sidecar. */
  readonly argv?: readonly string[];
  /** Stops supervising: a sidecar stops and removes the file; a command gets SIGTERM. */
  readonly signal?: AbortSignal;
  /** Called with the error of a failed beat; default: ignored. */
  readonly onError?: (error: unknown) => void;
  /** Tells the time; default `systemClock`. */
  readonly clock?: Clock;
}

/** The signals passed on to the command (and that stop a sidecar). */
const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
type ForwardedSignal = (typeof FORWARDED_SIGNALS)[number];

/**
 * `vigil beat`: writes a heartbeat file for a process, for a `heartbeat-file` or `heartbeat-dir`
 * check to watch. Resolves the exit code to exit with.
 *
 * With `argv`: spawns the command (no shell, stdio inherited) and beats for it while it runs — its pid,
 * its uptime, and its rss where `/proc` tells it. SIGTERM and SIGINT sent to this process are passed on
 * to it (from a terminal, Ctrl-C reaches the command both from the terminal and from here). When it
 * exits 0, the file is removed (a clean exit: the monitor detaches it) and this resolves 0. When it
 * exits non-zero or is killed, the file is left to go stale, so the monitor reports a heart attack, and
 * this resolves its exit code (128 + the signal number for a signal) — except after a stop that came
 * through here (a forwarded signal, or `signal` aborting): a command that then exits 0, by that
 * signal, or with 128 + its number was stopped on purpose, and its file is removed too.
 * Rejects when the command cannot be started (the error's `cause` has the `code`, ENOENT or EACCES).
 *
 * Without `argv`: beats for this process until `signal` aborts or SIGTERM/SIGINT arrives, then
 * removes the file and resolves 0.
 *
 * Rejects, starting nothing, when `signal` is already aborted (with its reason) or `intervalMs` is not a
 * positive integer (a TypeError).
 */
export async function superviseWithHeartbeat(options: SuperviseOptions): Promise<number> {
  options.signal?.throwIfAborted();
  // Before anything starts: a bad interval must not leave a command running unwatched.
  assertIntervalMs(options.intervalMs);
  if (options.start === undefined && options.file === undefined) throw new TypeError('Expected `file` or `start`');
  const [command, ...args] = options.argv ?? [];
  return command === undefined ? beatAlone(options) : beatFor(command, args, options);
}

async function beatAlone(options: SuperviseOptions): Promise<number> {
  const heartbeat = starter(options)();
  // The heartbeat's timer is unref'd: without a ref'd handle this process would simply end.
  const keepAlive = setInterval(ignore, 2 ** 30);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  for (const name of FORWARDED_SIGNALS) process.on(name, stop);
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    await stopped;
  } finally {
    for (const name of FORWARDED_SIGNALS) process.off(name, stop);
    options.signal?.removeEventListener('abort', stop);
    clearInterval(keepAlive);
  }
  await heartbeat.stop({ remove: true });
  return 0;
}

async function beatFor(command: string, args: readonly string[], options: SuperviseOptions): Promise<number> {
  const child = spawn(command, args, { stdio: 'inherit' });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  await started(child, command);
  // After a successful spawn, 'error' only reports a failed kill: the exit still comes.
  child.on('error', options.onError ?? ignore);

  const spawnedAt = performance.now();
  const pid = child.pid as number;
  const heartbeat = starter(options)(() => childSample(pid, spawnedAt));
  let forwarded: ForwardedSignal | null = null;
  const forward = (name: ForwardedSignal): void => {
    forwarded = name;
    child.kill(name);
  };
  const onTerm = (): void => forward('SIGTERM');
  const onInt = (): void => forward('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  options.signal?.addEventListener('abort', onTerm, { once: true });
  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    exit = await exited;
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    options.signal?.removeEventListener('abort', onTerm);
  }

  const code = exit.code ?? 128 + (constants.signals[exit.signal as NodeJS.Signals] ?? 0);
  await heartbeat.stop({ remove: code === 0 || stoppedOnPurpose(forwarded, exit.signal, code) });
  return code;
}

/** Resolves once the command is running; rejects, saying which command, when it cannot be started. */
function started(child: ChildProcess, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onSpawn = (): void => {
      child.off('error', onError);
      resolve();
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      child.off('spawn', onSpawn);
      reject(new Error(`cannot start ${JSON.stringify(command)}: ${error.message}`, { cause: error }));
    };
    child.once('spawn', onSpawn);
    child.once('error', onError);
  });
}

/** Whether the command ended because of the signal passed on to it. */
function stoppedOnPurpose(forwarded: ForwardedSignal | null, signal: NodeJS.Signals | null, code: number): boolean {
  if (forwarded === null) return false;
  return signal === forwarded || code === 128 + constants.signals[forwarded];
}

/** The command's pid, uptime and rss (from `/proc/<pid>/status`, so Linux only; elsewhere undefined). */
async function childSample(pid: number, spawnedAt: number): Promise<HeartbeatSample> {
  const uptime = (performance.now() - spawnedAt) / 1000;
  let memoryUsage: number | undefined;
  try {
    const match = VM_RSS.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    if (match) memoryUsage = Number(match[1]) * 1024;
  } catch {
    // No /proc (not Linux), or the command just exited: the beat goes without its memory.
  }
  return { pid, uptime, memoryUsage };
}

const VM_RSS = /^VmRSS:\s+(\d+) kB$/m;

function starter(options: SuperviseOptions): HeartbeatStarter {
  if (options.start) return options.start;
  const file = options.file;
  if (file === undefined) throw new TypeError('Expected `file` or `start`');
  return (sample) =>
    startHeartbeatFile({
      file,
      intervalMs: options.intervalMs,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.onError === undefined ? {} : { onError: options.onError }),
      ...(sample === undefined ? {} : { sample }),
    });
}

function ignore(): void {}
