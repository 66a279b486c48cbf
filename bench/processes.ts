import { fork, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { within } from './measure.js';

/**
 * Other processes a benchmark starts: target servers (so that the client's CPU is its own and the
 * server's is read from /proc), and measured cases that need a process to themselves (a clean RSS).
 */

/** Every script below starts with this: it exits when the bench's end of its stdin closes, so it never outlives the bench. */
const EXIT_WITH_PARENT = "process.stdin.on('end', () => process.exit(0)); process.stdin.on('error', () => process.exit(0)); process.stdin.resume();\n";

/** A target server in a process of its own. */
export interface TargetProcess extends AsyncDisposable {
  /** For `markUsage(pid)`: its CPU comes from /proc/PID/stat. */
  readonly pid: number;
  /** The ports it listens on, on 127.0.0.1 (a server may listen on many, to stand for many targets). */
  readonly ports: readonly number[];
  /** Ends it (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `node -e script`, a CommonJS script that listens on 127.0.0.1 (port 0) and writes its port(s),
 * separated by spaces, and a newline to stdout once it listens. Rejects when it exits or says nothing
 * within `readyTimeoutMs` (default 10 s).
 */
export async function startTargetProcess(script: string, readyTimeoutMs = 10_000): Promise<TargetProcess> {
  const child = spawn(process.execPath, ['-e', EXIT_WITH_PARENT + script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const stop = stopper(child);
  try {
    const line = await within(firstLine(child), readyTimeoutMs, 'the target server');
    const ports = line.split(' ').map(Number);
    if (!ports.every((port) => Number.isInteger(port) && port >= 1 && port <= 65_535)) {
      throw new Error(`Expected the target server to print its ports, got ${JSON.stringify(line.slice(0, 200))}`);
    }
    return { pid: child.pid as number, ports, stop, [Symbol.asyncDispose]: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end >= 0) resolve(text.slice(0, end).trim());
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`the target server exited (${signal ?? `code ${code}`}) before printing its ports`)));
  });
}

function stopper(child: ChildProcess): () => Promise<void> {
  let stopped: Promise<void> | null = null;
  return () =>
    (stopped ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    })());
}

/**
 * Runs a measured case in a fresh Node process: `module` (a compiled bench file that calls `caseInput`
 * and `reportToParent`) gets `input` as JSON and sends back one value. The child inherits this process's
 * `execArgv`, so `node --cpu-prof dist-tools/bench/index.js` profiles the cases too. Rejects when the
 * child exits without a value or takes longer than `timeoutMs` (then it is killed).
 */
export async function runCase<T>(module: URL, input: unknown, timeoutMs: number): Promise<T> {
  const child = fork(fileURLToPath(module), [JSON.stringify(input)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const stop = stopper(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const result = await within(
      new Promise<T>((resolve, reject) => {
        child.once('message', (value) => resolve(value as T));
        child.once('error', reject);
        child.once('exit', (code, signal) => reject(new Error(`the case ${fileURLToPath(module)} exited (${signal ?? `code ${code}`}) without a result`)));
      }),
      timeoutMs,
      `the case ${fileURLToPath(module)}`,
    );
    // Let it end by itself (a --cpu-prof profile is written at exit); kill it only if it lingers.
    await within(exited, 30_000, `the end of the case ${fileURLToPath(module)}`).catch(() => undefined);
    return result;
  } finally {
    await stop();
  }
}

/** In a case's process: the input `runCase` passed. */
export function caseInput<T>(): T {
  const raw = process.argv[2];
  if (raw === undefined || process.send === undefined) throw new Error('Expected to be started by runCase (an IPC channel and a JSON argument), got neither');
  return JSON.parse(raw) as T;
}

/** In a case's process: sends the result to the bench and lets the process end. */
export function reportToParent(value: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    process.send?.(value, undefined, undefined, (error) => {
      if (error) reject(error);
      else {
        process.disconnect?.();
        resolve();
      }
    });
  });
}

/**
 * The source of a target process listening on `count` ports of `host` (one per target: safe mode never
 * runs two checks of one target at once), printing them on one line when all listen. `setup` declares
 * `createServer()`, which makes one server; its errors stop the process.
 */
export function multiPortTargetScript(host: string, count: number, setup: string): string {
  return `
${setup}
const ports = [];
let listening = 0;
for (let i = 0; i < ${count}; i++) {
  const server = createServer();
  server.on('error', (error) => { console.error(error); process.exit(1); });
  server.listen({ host: '${host}', port: 0, backlog: 4096 }, () => {
    ports[i] = server.address().port;
    if (++listening === ${count}) process.stdout.write(ports.join(' ') + '\\n');
  });
}
`;
}
