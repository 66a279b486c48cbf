import { ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Browser, BrowserContext, BrowserContextOptions } from 'playwright-core';
import { errorMessage } from '../../core/errors.js';

/**
 * How Chromium is started, besides Playwright's own flags (`--headless`, `--remote-debugging-pipe`,
 * and a fresh temporary `--user-data-dir` that Playwright makes and removes). Without the
 * background-networking ones Chromium keeps calling home (updates, sync, field trials), which on a
 * closed network floods it with failing requests; `--no-sandbox` because vigil may run as root.
 */
export const CHROMIUM_FLAGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The default of `launchTimeoutMs`. */
export const DEFAULT_LAUNCH_TIMEOUT_MS = 30_000;

/** Chromium could not be started: the run says `browser-unavailable`. */
export class BrowserLaunchError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BrowserLaunchError';
  }
}

/** What a `ChromiumProcess` starts. */
export interface ChromiumProcessOptions {
  /** Absolute path of the program. */
  readonly executablePath: string;
  /** How long a start may take, in ms; default 30000. */
  readonly launchTimeoutMs?: number;
}

/**
 * One Chromium process shared by every run of the `browser` command that uses this executable: started
 * on the first run, started again on the next run after it died (`disconnected`), each run in a
 * `BrowserContext` of its own. While no run uses it, the process does not keep vigil's event loop
 * alive (its child process and pipes are unreferenced), so `vigil once` exits when its run is over;
 * when vigil exits, the process group is killed (Playwright does so on `exit`, and so does the hook
 * here). If vigil is killed outright, Chromium ends itself when its debugging pipe closes.
 */
export class ChromiumProcess {
  readonly executablePath: string;
  readonly #launchTimeoutMs: number;
  #browser: Browser | undefined;
  #launching: Promise<Browser> | undefined;
  /** The launched process, when found among the event loop's handles: referenced only while runs use it. */
  #child: ChildProcess | undefined;
  #pid: number | undefined;
  #exitHook: (() => void) | undefined;
  #users = 0;
  #closing = false;

  constructor(options: ChromiumProcessOptions) {
    this.executablePath = options.executablePath;
    this.#launchTimeoutMs = options.launchTimeoutMs ?? DEFAULT_LAUNCH_TIMEOUT_MS;
  }

  /** The process id of the running browser, when one runs and its id is known. */
  get pid(): number | undefined {
    return this.#browser === undefined ? undefined : this.#pid;
  }

  /**
   * Marks the browser in use by a run until the returned function is called: meanwhile its process
   * keeps the event loop alive. A browser whose process could not be found is closed once unused.
   */
  use(): () => void {
    this.#users++;
    if (this.#users === 1) this.#hold(true);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#users--;
      if (this.#users > 0) return;
      this.#hold(false);
      if (this.#browser !== undefined && this.#child === undefined) void this.close();
    };
  }

  /**
   * A fresh context in the browser, which is started first when none runs. A browser that died since
   * the last run may not have said so yet: when the context cannot be made in it and it turns out
   * disconnected, another is started, once. Throws `BrowserLaunchError` when no browser could start.
   */
  async newContext(options: BrowserContextOptions, logger: Logger): Promise<BrowserContext> {
    const browser = await this.#connected(logger);
    try {
      return await browser.newContext(options);
    } catch (error) {
      if (browser.isConnected()) throw error;
      this.#forget(browser, logger);
      return await (await this.#connected(logger)).newContext(options);
    }
  }

  /** Closes the browser (waiting for a start under way first) and removes its profile directory. */
  async close(): Promise<void> {
    await this.#launching?.catch(() => undefined);
    const browser = this.#browser;
    if (browser === undefined) return;
    this.#closing = true;
    try {
      await browser.close();
    } catch {
      // Playwright kills the process when it does not close; either way it is gone.
    } finally {
      this.#closing = false;
      this.#forget(browser, undefined);
    }
  }

  #connected(logger: Logger): Promise<Browser> {
    const browser = this.#browser;
    if (browser?.isConnected()) return Promise.resolve(browser);
    if (browser !== undefined) this.#forget(browser, logger);
    this.#launching ??= this.#launch(logger).finally(() => {
      this.#launching = undefined;
    });
    return this.#launching;
  }

  async #launch(logger: Logger): Promise<Browser> {
    const startedAt = performance.now();
    let browser: Browser;
    try {
      // Imported on the first start: Playwright takes half a second and 90 MB to load, which a vigil
      // without browser checks should not pay.
      const { chromium } = await import('playwright-core');
      browser = await chromium.launch({
        executablePath: this.executablePath,
        headless: true,
        args: [...CHROMIUM_FLAGS],
        // vigil stops on its own signals (gracefully, draining runs); Playwright's handlers would close
        // the browser under the runs still going, or exit the process on SIGINT.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        timeout: this.#launchTimeoutMs,
      });
    } catch (error) {
      throw new BrowserLaunchError(`cannot start Chromium ${this.executablePath}: ${firstLine(errorMessage(error))}`, { cause: error });
    }
    this.#browser = browser;
    browser.once('disconnected', () => this.#forget(browser, logger));
    const pid = await browserPid(browser);
    // Died while asked for its id: the run that wanted it finds out and starts another.
    if (this.#browser !== browser) return browser;
    this.#pid = pid;
    this.#child = pid === undefined ? undefined : childProcess(pid);
    this.#hold(this.#users > 0);
    if (pid !== undefined) {
      // Playwright kills its browsers on `exit` too; this one does not depend on how it does.
      const hook = (): void => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      };
      process.once('exit', hook);
      this.#exitHook = hook;
    }
    logger.info({ pid, executablePath: this.executablePath, launchMs: Math.round(performance.now() - startedAt), version: browser.version() }, 'browser started');
    if (this.#child === undefined) logger.debug({ pid }, 'browser process not found among the event loop handles: it is closed when no run uses it');
    return browser;
  }

  /** Drops a browser that closed or died; `logger` says so when it was not closed on purpose. */
  #forget(browser: Browser, logger: Logger | undefined): void {
    if (this.#browser !== browser) return;
    if (!this.#closing) logger?.warn({ pid: this.#pid, executablePath: this.executablePath }, 'browser disconnected; the next run starts another');
    this.#browser = undefined;
    this.#child = undefined;
    this.#pid = undefined;
    if (this.#exitHook !== undefined) process.removeListener('exit', this.#exitHook);
    this.#exitHook = undefined;
  }

  /** Whether the process (and its pipes) keep the event loop alive. */
  #hold(held: boolean): void {
    const child = this.#child;
    if (child === undefined) return;
    if (held) child.ref();
    else child.unref();
    for (const stream of child.stdio) {
      if (!(stream instanceof Socket)) continue;
      if (held) stream.ref();
      else stream.unref();
    }
  }
}

/** The browser's process id, as Chromium itself reports it. */
async function browserPid(browser: Browser): Promise<number | undefined> {
  try {
    const session = await browser.newBrowserCDPSession();
    const { processInfo } = await session.send('SystemInfo.getProcessInfo');
    await session.detach();
    return processInfo.find((info) => info.type === 'browser')?.id;
  } catch {
    return undefined;
  }
}

/**
 * The child process with `pid`, found among the handles of the event loop: Playwright does not hand
 * out the process of a browser it launched. Node has listed them (`process._getActiveHandles`) since
 * its first versions; where it does not, the browser is closed after each run instead.
 */
function childProcess(pid: number): ChildProcess | undefined {
  const handles = (process as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  return handles.find((handle): handle is ChildProcess => handle instanceof ChildProcess && handle.pid === pid);
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] as string;
  return line.replace(/^browserType\.launch: /, '');
}
