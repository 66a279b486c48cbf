import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.js';

/** Debian's `prometheus-alertmanager` package installs it here; `ALERTMANAGER_BIN` points elsewhere. */
export const ALERTMANAGER_BIN = process.env.ALERTMANAGER_BIN ?? '/usr/bin/prometheus-alertmanager';

/** One alert as `GET /api/v2/alerts` returns it (the fields the tests read). */
export interface GettableAlert {
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly startsAt: string;
  readonly endsAt: string;
  readonly fingerprint: string;
  readonly status: { readonly state: 'unprocessed' | 'active' | 'suppressed' };
}

// Every alert goes to a receiver that sends nothing: the tests read alerts back through the API.
const CONFIG = `route:
  receiver: blackhole
receivers:
  - name: blackhole
`;

const READY_TIMEOUT_MS = 20_000;
const READY_POLL_MS = 50;
const STOP_TIMEOUT_MS = 5_000;
const START_TRIES = 3;

/**
 * A real Alertmanager on 127.0.0.1 and a free port, with a throwaway storage directory, clustering off
 * and a config whose one receiver sends nothing. `start()` fails with what is missing when the binary
 * is not installed or does not come up; stop it in `afterAll`/`afterEach`.
 */
export class TestAlertmanager {
  readonly #child: ChildProcess;
  readonly #dir: string;
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;

  private constructor(child: ChildProcess, dir: string, url: string) {
    this.#child = child;
    this.#dir = dir;
    this.url = url;
  }

  static async start(): Promise<TestAlertmanager> {
    try {
      await access(ALERTMANAGER_BIN, constants.X_OK);
    } catch {
      throw new Error(
        `Alertmanager is needed for this test and was not found at ${ALERTMANAGER_BIN}: install the Debian package ` +
          '`prometheus-alertmanager` (apt-get install prometheus-alertmanager) or set ALERTMANAGER_BIN to its binary',
      );
    }
    // The free port is found by binding and releasing it; another process may take it in between, so a
    // start that fails to listen is tried again on another port.
    let lastError: unknown;
    for (let tries = 0; tries < START_TRIES; tries++) {
      const dir = await mkdtemp(join(tmpdir(), 'vigil-alertmanager-'));
      try {
        return await TestAlertmanager.#startIn(dir);
      } catch (error) {
        lastError = error;
        await rm(dir, { recursive: true, force: true });
      }
    }
    throw lastError;
  }

  static async #startIn(dir: string): Promise<TestAlertmanager> {
    const config = join(dir, 'alertmanager.yml');
    await writeFile(config, CONFIG);
    const port = await freePort();
    const child = spawn(
      ALERTMANAGER_BIN,
      [
        `--config.file=${config}`,
        `--storage.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        // Empty: no cluster (gossip) listener, so nothing is opened beyond the API port.
        '--cluster.listen-address=',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4_000);
    });
    const url = `http://127.0.0.1:${port}`;
    const alertmanager = new TestAlertmanager(child, dir, url);
    try {
      await waitReady(child, url, () => stderr);
    } catch (error) {
      await alertmanager.#kill();
      throw error;
    }
    return alertmanager;
  }

  /** `GET /api/v2/alerts`: the alerts Alertmanager holds that have not resolved. */
  async alerts(): Promise<GettableAlert[]> {
    const response = await fetch(`${this.url}/api/v2/alerts`, { signal: AbortSignal.timeout(5_000) });
    if (!response.ok) throw new Error(`GET /api/v2/alerts: expected 200, got ${response.status}: ${await response.text()}`);
    return (await response.json()) as GettableAlert[];
  }

  /** Stops the process and removes its storage. */
  async stop(): Promise<void> {
    await this.#kill();
    await rm(this.#dir, { recursive: true, force: true });
  }

  async #kill(): Promise<void> {
    const child = this.#child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Polls `/-/ready` until it answers 200; fails at once when the process exits, and after 20 s. */
async function waitReady(child: ChildProcess, url: string, stderr: () => string): Promise<void> {
  const exited: { how: string | null } = { how: null };
  const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    exited.how = signal ?? `exit code ${code}`;
  };
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  child.once('exit', onExit);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    for (;;) {
      if (exited.how !== null) throw new Error(`Alertmanager (${ALERTMANAGER_BIN}) exited before it was ready (${exited.how}):\n${stderr()}`);
      const ready = await Promise.race([probe(`${url}/-/ready`), spawnError]);
      if (ready) return;
      if (Date.now() > deadline) throw new Error(`Alertmanager at ${url} was not ready within ${READY_TIMEOUT_MS} ms:\n${stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
  } finally {
    child.off('exit', onExit);
  }
}

async function probe(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}
