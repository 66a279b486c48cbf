import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stripVTControlCharacters } from 'node:util';
import type { BrowserContext, BrowserContextOptions, Page, Request } from 'playwright-core';
import { errorMessage } from '../../core/errors.js';
import type { CommandOutcome } from '../../results/result.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from '../command.js';
import { statusMatches } from '../http/expectations.js';
import { browserAttributes, type BrowserAttributes, type BrowserStep, type TextMatcher } from './attributes.js';
import { BrowserLaunchError, ChromiumProcess } from './chromium-process.js';
import { findChromium } from './find-chromium.js';
import {
  browserCrashed,
  browserUnavailable,
  loaded,
  navigationFailed,
  stepFailed,
  timedOut,
  timedOutBeforeStart,
  unexpectedStatus,
  withScreenshot,
  type Phase,
  type RunRecord,
} from './outcome.js';
import { DEFAULT_KEEP_SCREENSHOTS, saveScreenshot, type ScreenshotPolicy } from './screenshots.js';

/** Options of the `browser` command (not of a check). */
export interface BrowserCommandOptions {
  /**
   * Where screenshots of failed runs are saved, as `<checkId>-<UTC time>.png` (the daemon's is
   * `<dataDir>/screenshots`); without it none are taken. A function is asked on each failed run, for
   * a caller that knows the directory only later (the daemon, once its config is loaded).
   */
  readonly screenshotDir?: string | (() => string | undefined);
  /** Screenshots kept per check, the newest; default 5. */
  readonly keepScreenshots?: number;
  /** The Chromium of checks that name none; default `VIGIL_CHROMIUM`, else chromium, chromium-browser or google-chrome on PATH. */
  readonly executablePath?: string;
  /** The environment `VIGIL_CHROMIUM` and `PATH` are read from; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** How long Chromium may take to start, in ms; default 30000. */
  readonly launchTimeoutMs?: number;
}

/** The `browser` command, with the browser processes it started. */
export interface BrowserCommand extends Command<BrowserAttributes> {
  /** Closes the browsers this command started (a later run would start another); the daemon calls it on stop. */
  close(): Promise<void>;
}

/** Most time a screenshot of a failed run may take, in ms (less when the deadline is nearer). */
const SCREENSHOT_TIMEOUT_MS = 5000;
/** How often an `expectText` step looks at the page's text, in ms. */
const TEXT_POLL_MS = 100;
/** How much of a failed request, or of Playwright's word on a failed step, a message shows. */
const DETAIL_CHARS = 200;
/** Chromium's messages for a subresource that failed: counted as failed requests, not again as console errors. */
const NETWORK_CONSOLE_ERROR = 'Failed to load resource:';

/** What every run of one command shares. */
interface Shared {
  readonly env: NodeJS.ProcessEnv;
  readonly executablePath: string | undefined;
  /** Where a failed run's screenshot goes, if anywhere. */
  screenshots(): ScreenshotPolicy | undefined;
  processOf(executablePath: string): ChromiumProcess;
}

/**
 * `browser`: loads `url` in headless Chromium (driven by Playwright), checks its status, runs `steps`
 * (click, fill, waitFor, goto, expectText), and reports the load time, console errors and failed
 * requests. One Chromium process serves every run (each in a fresh context, closed after), started on
 * the first run and again after it died. A failed run's screenshot is saved in `screenshotDir`, and
 * the message names the file.
 *
 * Reasons: `ok`; `unexpected-status`, `step-failed`, `refused`, `dns`, `tls-error`,
 * `navigation-failed`, `timeout` (crit; `timeout` is `unknown` while Chromium was still starting);
 * `slow-load` (warn or crit); `failed-requests`, `console-errors` (warn); `browser-unavailable`,
 * `browser-crashed` (unknown).
 */
export function browserCommand(options: BrowserCommandOptions = {}): BrowserCommand {
  const processes = new Map<string, ChromiumProcess>();
  const { screenshotDir } = options;
  const keep = options.keepScreenshots ?? DEFAULT_KEEP_SCREENSHOTS;
  const shared: Shared = {
    env: options.env ?? process.env,
    executablePath: options.executablePath,
    screenshots() {
      const dir = typeof screenshotDir === 'function' ? screenshotDir() : screenshotDir;
      return dir === undefined ? undefined : { dir, keep };
    },
    processOf(executablePath) {
      let chromium = processes.get(executablePath);
      if (chromium === undefined) {
        chromium = new ChromiumProcess({ executablePath, ...(options.launchTimeoutMs === undefined ? {} : { launchTimeoutMs: options.launchTimeoutMs }) });
        processes.set(executablePath, chromium);
      }
      return chromium;
    },
  };
  const command = defineCommand({ name: 'browser', attributes: browserAttributes, run: (attrs, ctx) => runBrowser(attrs, ctx, shared) });
  return {
    ...command,
    close: async () => {
      await Promise.all([...processes.values()].map((chromium) => chromium.close()));
    },
  };
}

/** The screenshot directory of a data directory (`<dataDir>/screenshots`), what `screenshotDir` gets; none without one. */
export function screenshotDirOf(dataDir: string | undefined): string | undefined {
  return dataDir === undefined ? undefined : join(dataDir, 'screenshots');
}

async function runBrowser(attrs: BrowserAttributes, ctx: CommandContext, shared: Shared): Promise<CommandOutcome> {
  const run = new BrowserRun(attrs, ctx, shared);
  const stopListening = listenForAbort(ctx, run.onAbort);
  if (stopListening === null) return timedOutBeforeStart(attrs);
  try {
    run.start();
    return await run.outcome;
  } finally {
    stopListening();
  }
}

/**
 * One run: its context and page, what it has seen (the `RunRecord` its outcome is built from), and its
 * outcome, which settles once. An abort settles it at once (the engine waits only a moment) and closes
 * the context, which makes the pending browser calls fail; the run then closes up behind it.
 */
class BrowserRun implements RunRecord {
  readonly attrs: BrowserAttributes;
  readonly outcome: Promise<CommandOutcome>;
  phase: Phase = { kind: 'starting' };
  status: number | undefined;
  statusText = '';
  loadMs: number | undefined;
  domContentLoadedMs: number | undefined;
  consoleErrors = 0;
  firstConsoleError: string | undefined;
  stepsRun = 0;
  readonly #ctx: CommandContext;
  readonly #shared: Shared;
  #resolve!: (outcome: CommandOutcome) => void;
  #reject!: (error: unknown) => void;
  #settled = false;
  #context: BrowserContext | undefined;
  #pageCrashed = false;
  /** Requests that failed or got a status of 400 or more, in order. */
  readonly #failures: { readonly request: Request; readonly text: string }[] = [];
  /** Requests whose status `expectStatus` judges (the page's, `goto` steps'): not also failed requests. */
  readonly #judged = new Set<Request>();
  /** The outcome worked out, while its screenshot is taken: what an abort then settles with. */
  #pending: CommandOutcome | undefined;

  constructor(attrs: BrowserAttributes, ctx: CommandContext, shared: Shared) {
    this.attrs = attrs;
    this.#ctx = ctx;
    this.#shared = shared;
    this.outcome = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  get failedRequests(): readonly string[] {
    return this.#failures.filter((failure) => !this.#judged.has(failure.request)).map((failure) => failure.text);
  }

  readonly onAbort = (): void => {
    this.#settle(this.#pending ?? timedOut(this));
    void this.#context?.close().catch(() => undefined);
  };

  start(): void {
    void this.#run();
  }

  /** Never rejects: an unexpected error rejects `outcome` (the engine reports it as `exception`). */
  async #run(): Promise<void> {
    let release: (() => void) | undefined;
    let outcome: CommandOutcome | undefined;
    let unexpected: { readonly error: unknown } | undefined;
    try {
      const found = findChromium(this.attrs.executablePath ?? this.#shared.executablePath, this.#shared.env);
      if (typeof found === 'string') {
        const chromium = this.#shared.processOf(found);
        release = chromium.use();
        outcome = await this.#visit(chromium);
      } else {
        outcome = browserUnavailable(found.problem);
      }
    } catch (error) {
      outcome = this.#failed(error);
      if (outcome === undefined) unexpected = { error };
    }
    await this.#context?.close().catch(() => undefined);
    release?.();
    if (unexpected !== undefined) this.#fail(unexpected.error);
    else this.#settle(outcome as CommandOutcome);
  }

  async #visit(chromium: ChromiumProcess): Promise<CommandOutcome> {
    const { attrs } = this;
    this.#context = await chromium.newContext(contextOptions(attrs), this.#ctx.logger);
    // Aborted while the browser started: the outcome is out; the context is closed by `#run`.
    if (this.#settled) return timedOut(this);
    const page = await this.#context.newPage();
    this.#watch(page);
    this.phase = { kind: 'loading' };
    const startedAt = performance.now();
    let response;
    try {
      response = await page.goto(attrs.url, { waitUntil: attrs.waitUntil, timeout: this.#remainingMs() });
    } catch (error) {
      if (this.#settled || this.#browserGone() || isTimeout(error)) throw error;
      const message = errorMessage(error);
      return navigationFailed(this, /net::(ERR_[A-Z0-9_]+)/.exec(message)?.[1], firstLine(message));
    }
    const wallMs = performance.now() - startedAt;
    if (response === null) return navigationFailed(this, undefined, 'no response');
    this.#judged.add(response.request());
    this.status = response.status();
    this.statusText = response.statusText();
    await this.#readTiming(page, wallMs);
    if (!statusMatches(attrs.expectStatus, this.status)) return await this.#failedWithScreenshot(page, unexpectedStatus(this));
    for (const [index, step] of attrs.steps.entries()) {
      this.phase = { kind: 'step', index };
      const problem = await this.#step(page, step);
      if (problem !== undefined) return await this.#failedWithScreenshot(page, stepFailed(this, index, problem));
      this.stepsRun++;
    }
    this.phase = { kind: 'done' };
    const outcome = loaded(this);
    return outcome.state === 'ok' ? outcome : await this.#failedWithScreenshot(page, outcome);
  }

  /** Counts the page's console errors, uncaught exceptions and failed requests; notes a renderer crash. */
  #watch(page: Page): void {
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const text = message.text();
      if (!text.startsWith(NETWORK_CONSOLE_ERROR)) this.#consoleError(text);
    });
    page.on('pageerror', (error) => this.#consoleError(`uncaught ${error.name}: ${error.message}`));
    page.on('requestfailed', (request) => {
      const why = request.failure()?.errorText ?? 'failed';
      // Requests cut short by a navigation away (or by the run's end) did not fail.
      if (why !== 'net::ERR_ABORTED') this.#failures.push({ request, text: clip(`${request.method()} ${request.url()}: ${why}`) });
    });
    page.on('response', (response) => {
      const status = response.status();
      if (status < 400) return;
      const request = response.request();
      this.#failures.push({ request, text: clip(`${request.method()} ${response.url()}: ${status}`) });
    });
    page.on('crash', () => {
      this.#pageCrashed = true;
    });
  }

  #consoleError(text: string): void {
    this.consoleErrors++;
    this.firstConsoleError ??= text;
  }

  /** The page's own Navigation Timing; the time `goto` took where the page has none. */
  async #readTiming(page: Page, wallMs: number): Promise<void> {
    let timing: { load: number; dom: number } | null = null;
    try {
      timing = await page.evaluate(navigationTiming);
    } catch {
      // The steps will meet whatever went wrong; the time is measured from here.
    }
    this.loadMs = timing !== null && timing.load > 0 ? timing.load : wallMs;
    if (timing !== null && timing.dom > 0) this.domContentLoadedMs = timing.dom;
  }

  /** Does one step: `undefined` when done, else why not. Throws when the run is over or the browser is gone. */
  async #step(page: Page, step: BrowserStep): Promise<string | undefined> {
    const timeout = Math.min(step.timeoutMs, this.#remainingMs());
    try {
      switch (step.action) {
        case 'click':
          await page.locator(step.selector).click({ timeout });
          return undefined;
        case 'fill':
          await page.locator(step.selector).fill(step.value, { timeout });
          return undefined;
        case 'waitFor':
          await page.locator(step.selector).first().waitFor({ state: 'visible', timeout });
          return undefined;
        case 'goto': {
          const response = await page.goto(step.url, { waitUntil: this.attrs.waitUntil, timeout });
          // `null`: the same document, at another fragment.
          if (response === null) return undefined;
          this.#judged.add(response.request());
          const status = response.status();
          if (statusMatches(this.attrs.expectStatus, status)) return undefined;
          return `expected status ${this.attrs.expectStatus.display}, got ${`${status} ${response.statusText()}`.trim()}`;
        }
        case 'expectText':
          await page.waitForFunction(textShown, textArgument(step.text), { timeout, polling: TEXT_POLL_MS });
          return undefined;
      }
    } catch (error) {
      // The deadline, not the step's own timeout: the run timed out.
      if (this.#settled || this.#browserGone() || (isTimeout(error) && timeout < step.timeoutMs)) throw error;
      if (!isTimeout(error)) return clip(firstLine(stripVTControlCharacters(errorMessage(error))).replace(/^[\w.]+: /, ''));
      if (step.action === 'expectText') return `${step.text.display} not on the page within ${timeout} ms`;
      return `timed out after ${timeout} ms${lastCallLogLine(errorMessage(error))}`;
    }
  }

  async #failedWithScreenshot(page: Page, outcome: CommandOutcome): Promise<CommandOutcome> {
    const policy = this.#shared.screenshots();
    if (policy === undefined || !this.attrs.screenshot || this.#settled || this.#browserGone()) return outcome;
    this.#pending = outcome;
    try {
      const file = await saveScreenshot(page, this.#ctx.checkId, policy, Math.min(SCREENSHOT_TIMEOUT_MS, this.#remainingMs()));
      return withScreenshot(outcome, file);
    } catch (error) {
      if (!this.#settled) this.#ctx.logger.warn({ err: error, dir: policy.dir }, 'cannot save the screenshot of a failed run');
      return outcome;
    }
  }

  /** The outcome of an error thrown by the browser; `undefined` for one that is a bug. */
  #failed(error: unknown): CommandOutcome | undefined {
    if (this.#settled) return timedOut(this);
    if (error instanceof BrowserLaunchError) return browserUnavailable(error.message);
    if (this.#pageCrashed) return browserCrashed(this, "the page's renderer crashed");
    if (this.#browserGone()) return browserCrashed(this, 'Chromium exited');
    // Playwright's own timeout, given the time left before the deadline: the deadline came.
    if (isTimeout(error)) return timedOut(this);
    if (this.#context === undefined) return browserCrashed(this, `Chromium could not open a context (${firstLine(errorMessage(error))})`);
    return undefined;
  }

  #browserGone(): boolean {
    return this.#pageCrashed || (this.#context !== undefined && !(this.#context.browser()?.isConnected() ?? false));
  }

  #remainingMs(): number {
    return Math.max(1, this.#ctx.deadline - Date.now());
  }

  #settle(outcome: CommandOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(outcome);
  }

  #fail(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#reject(error);
  }
}

function contextOptions(attrs: BrowserAttributes): BrowserContextOptions {
  return {
    viewport: attrs.viewport,
    ignoreHTTPSErrors: !attrs.tlsVerify,
    // A service worker would answer from its cache: the check is of the site.
    serviceWorkers: 'block',
    acceptDownloads: false,
    ...(attrs.credentials === undefined ? {} : { httpCredentials: { ...attrs.credentials, send: 'unauthorized' as const } }),
  };
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && error.name === 'TimeoutError';
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] as string;
}

/** ` (waiting for locator('#go'))`: the last thing Playwright's call log says it did, which says where it stuck. */
function lastCallLogLine(message: string): string {
  // Playwright colours its call log for terminals.
  const log = stripVTControlCharacters(message).split('\nCall log:\n')[1];
  const last = log
    ?.split('\n')
    .map((line) => line.trim().replace(/^- /, ''))
    .filter((line) => line !== '')
    .pop();
  return last === undefined ? '' : ` (${clip(last)})`;
}

function clip(text: string): string {
  return text.length > DETAIL_CHARS ? `${text.slice(0, DETAIL_CHARS - 1)}…` : text;
}

/** What `textShown` gets: plain values, as page functions take. */
type TextArgument = { readonly text: string } | { readonly source: string; readonly flags: string };

function textArgument(matcher: TextMatcher): TextArgument {
  return 'text' in matcher ? { text: matcher.text } : { source: matcher.regex.source, flags: matcher.regex.flags };
}

// The two functions below run in the page, not in Node: they may use only what a page has.

/** Whether the page's visible text contains (or matches) the expected text. */
function textShown(expected: TextArgument): boolean {
  const page = globalThis as unknown as { document: { body: { innerText: string } | null } };
  const shown = page.document.body?.innerText ?? '';
  return 'text' in expected ? shown.includes(expected.text) : new RegExp(expected.source, expected.flags).test(shown);
}

/** Milliseconds from the start of the navigation to the end of its load and DOMContentLoaded events (0 when not yet). */
function navigationTiming(): { load: number; dom: number } | null {
  const page = globalThis as unknown as { performance: { getEntriesByType(type: string): { loadEventEnd: number; domContentLoadedEventEnd: number }[] } };
  const [entry] = page.performance.getEntriesByType('navigation');
  return entry === undefined ? null : { load: entry.loadEventEnd, dom: entry.domContentLoadedEventEnd };
}
