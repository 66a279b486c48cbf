import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI (test/helpers/global-setup.ts builds it before the tests). */
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to completion. */
export function runCli(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A running `vigil run` whose JSON log lines the test can wait for. */
export class DaemonProcess {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  #waiters: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  stderr = '';

  /** `options.cli`: the CLI script to start, default the built one (a path through a link, for deploy tests). */
  constructor(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; cli?: string } = {}) {
    this.child = spawn(process.execPath, [options.cli ?? CLI, 'run', ...args], { cwd: options.cwd, env: { ...process.env, ...options.env } });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const text = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text) as Record<string, unknown>;
        } catch {
          line = { msg: text };
        }
        this.lines.push(line);
        this.#waiters = this.#waiters.filter((waiter) => (waiter.predicate(line) ? (waiter.resolve(line), false) : true));
      }
    });
    this.child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  /** The first log line (already seen or to come) matching; rejects after `timeoutMs` or when the process exits. */
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const seen = this.lines.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line matched within ${timeoutMs} ms; stderr: ${this.stderr}; lines: ${JSON.stringify(this.lines.slice(-5))}`)), timeoutMs);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`vigil exited (${String(code)}) before a log line matched; stderr: ${this.stderr}`));
      });
      this.#waiters.push({
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  /** Waits for a log line whose `msg` is `msg` and that has the given fields. */
  waitForMessage(msg: string, fields: Record<string, unknown> = {}, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.waitFor((line) => line.msg === msg && Object.entries(fields).every(([key, value]) => line[key] === value), timeoutMs);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
}
