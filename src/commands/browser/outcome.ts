import { formatMs } from '../../core/format.js';
import { gauge, type Metric } from '../../results/metric.js';
import { severity, type CommandOutcome, type State } from '../../results/result.js';
import { describeStep, type BrowserAttributes } from './attributes.js';

/**
 * How the `browser` command words its outcomes: reasons, one-line messages and metrics, from what a
 * run saw. Kept apart from driving the browser in `browser.ts`.
 */

/** Reason codes of `browser` outcomes besides `ok` and `timeout`. */
export const BrowserReasons = {
  /** The page's status (after redirects) is not in `expectStatus`. */
  unexpectedStatus: 'unexpected-status',
  /** A step could not be done: which one, and why. */
  stepFailed: 'step-failed',
  /** Load time at or above `responseWarnMs` (warn) or `responseCritMs` (crit). */
  slowLoad: 'slow-load',
  /** Requests of the page failed or got a status of 400 or more (warn). */
  failedRequests: 'failed-requests',
  /** The page logged errors or threw uncaught exceptions (warn). */
  consoleErrors: 'console-errors',
  /** Nothing listens at the page's host and port. */
  refused: 'refused',
  /** The page's host name does not resolve. */
  dns: 'dns',
  /** The TLS handshake or the certificate failed. */
  tlsError: 'tls-error',
  /** The page could not be loaded for another reason (empty response, reset connection, …). */
  navigationFailed: 'navigation-failed',
  /** No Chromium to run, or it would not start (`unknown`). */
  browserUnavailable: 'browser-unavailable',
  /** Chromium or the page's renderer died during the run (`unknown`); the next run starts a new one. */
  browserCrashed: 'browser-crashed',
} as const;

/** What a run does: getting a browser and a page, loading the page, a step (0-based), or wrapping up. */
export type Phase = { readonly kind: 'starting' } | { readonly kind: 'loading' } | { readonly kind: 'step'; readonly index: number } | { readonly kind: 'done' };

/** What a run has seen so far: everything its outcome is built from. */
export interface RunRecord {
  readonly attrs: BrowserAttributes;
  readonly phase: Phase;
  /** The page's status; undefined until it answered. */
  readonly status: number | undefined;
  readonly statusText: string;
  /** From the start of the navigation to the end of the load event (or to the page counting as loaded), ms. */
  readonly loadMs: number | undefined;
  /** From the start of the navigation to the end of DOMContentLoaded, ms. */
  readonly domContentLoadedMs: number | undefined;
  readonly consoleErrors: number;
  /** The first console error or uncaught exception, for the message. */
  readonly firstConsoleError: string | undefined;
  /** `GET https://example.org/app.js: 404`, one per failed request. */
  readonly failedRequests: readonly string[];
  /** Steps done. */
  readonly stepsRun: number;
}

/** How many failed requests a message names. */
const NAMED_REQUESTS = 3;
/** How much of a console error a message quotes. */
const QUOTE_CHARS = 100;

/** The run was aborted before it began. */
export function timedOutBeforeStart(attrs: BrowserAttributes): CommandOutcome {
  return { state: 'crit', reason: 'timeout', message: `timed out before loading ${attrs.url}` };
}

/** The signal aborted: where the run was. Before the page was asked for, the browser was slow, not the target. */
export function timedOut(run: RunRecord): CommandOutcome {
  const { phase, attrs } = run;
  switch (phase.kind) {
    case 'starting':
      return { state: 'unknown', reason: 'timeout', message: `timed out waiting for Chromium to start or open a page, before loading ${attrs.url}` };
    case 'loading':
      return { state: 'crit', reason: 'timeout', message: `timed out loading ${attrs.url} (waiting for ${attrs.waitUntil})`, ...measured(run) };
    case 'step':
      return { state: 'crit', reason: 'timeout', message: `timed out at ${stepName(run, phase.index)} on ${attrs.url}`, ...measured(run) };
    case 'done':
      return { state: 'crit', reason: 'timeout', message: `timed out after loading ${attrs.url}`, ...measured(run) };
  }
}

/** No Chromium to run (`problem` says which was looked for), or it would not start. */
export function browserUnavailable(problem: string): CommandOutcome {
  return { state: 'unknown', reason: BrowserReasons.browserUnavailable, message: problem };
}

/** `what`: `Chromium exited` or `the page's renderer crashed`. */
export function browserCrashed(run: RunRecord, what: string): CommandOutcome {
  const { phase, attrs } = run;
  const where = phase.kind === 'step' ? `at ${stepName(run, phase.index)} on ${attrs.url}` : phase.kind === 'loading' ? `while loading ${attrs.url}` : `before loading ${attrs.url}`;
  return { state: 'unknown', reason: BrowserReasons.browserCrashed, message: `${what} ${where}; the next run starts a new browser`, ...measured(run) };
}

/** The first navigation failed with Chromium's `net::ERR_…` code, or with no code at all. */
export function navigationFailed(run: RunRecord, code: string | undefined, detail: string): CommandOutcome {
  const url = new URL(run.attrs.url);
  if (code === 'ERR_CONNECTION_REFUSED') return { state: 'crit', reason: BrowserReasons.refused, message: `connection refused by ${url.host} (loading ${run.attrs.url})` };
  if (code === 'ERR_NAME_NOT_RESOLVED' || code === 'ERR_NAME_RESOLUTION_FAILED') {
    return { state: 'crit', reason: BrowserReasons.dns, message: `cannot resolve host ${url.hostname} (${code})` };
  }
  if (code !== undefined && (code.startsWith('ERR_CERT_') || code.startsWith('ERR_SSL_') || code === 'ERR_BAD_SSL_CLIENT_AUTH_CERT')) {
    return { state: 'crit', reason: BrowserReasons.tlsError, message: `TLS with ${url.host} failed: ${code}${run.attrs.tlsVerify ? '' : ' (with tlsVerify false)'}` };
  }
  if (code === 'ERR_TIMED_OUT' || code === 'ERR_CONNECTION_TIMED_OUT') return { state: 'crit', reason: 'timeout', message: `timed out loading ${run.attrs.url} (${code})` };
  // Chromium gives up on an authentication challenge it has no (or no accepted) credentials for: it was a 401 or 407.
  if (code === 'ERR_INVALID_AUTH_CREDENTIALS') {
    const credentials = run.attrs.credentials === undefined ? 'the url has none' : 'it refused those of the url';
    return { state: 'crit', reason: BrowserReasons.unexpectedStatus, message: `expected status ${run.attrs.expectStatus.display}, got an authentication challenge from ${run.attrs.url}, and ${credentials} (${code})` };
  }
  return { state: 'crit', reason: BrowserReasons.navigationFailed, message: `loading ${run.attrs.url} failed: ${code ?? detail}` };
}

/** The page answered with a status outside `expectStatus`. */
export function unexpectedStatus(run: RunRecord): CommandOutcome {
  return { state: 'crit', reason: BrowserReasons.unexpectedStatus, message: `expected status ${run.attrs.expectStatus.display}, got ${summary(run)}`, ...measured(run) };
}

/** Step `index` (0-based) could not be done. */
export function stepFailed(run: RunRecord, index: number, why: string): CommandOutcome {
  return { state: 'crit', reason: BrowserReasons.stepFailed, message: `${stepName(run, index)} failed: ${why}; ${summary(run)}`, ...measured(run) };
}

/** The page loaded and every step was done: ok, or what is wrong with it, the worst first. */
export function loaded(run: RunRecord): CommandOutcome {
  const { attrs } = run;
  const problems: { state: State; reason: string; text: string }[] = [];
  const load = run.loadMs ?? 0;
  if (attrs.responseCritMs !== undefined && load >= attrs.responseCritMs) {
    problems.push({ state: 'crit', reason: BrowserReasons.slowLoad, text: `load time at or above the critical threshold of ${attrs.responseCritMs} ms` });
  } else if (attrs.responseWarnMs !== undefined && load >= attrs.responseWarnMs) {
    problems.push({ state: 'warn', reason: BrowserReasons.slowLoad, text: `load time at or above the warning threshold of ${attrs.responseWarnMs} ms` });
  }
  // A failed request is the likelier cause of a console error than the other way round: named first.
  if (!attrs.ignoreFailedRequests && run.failedRequests.length > 0) {
    const count = run.failedRequests.length;
    const named = run.failedRequests.slice(0, NAMED_REQUESTS).join('; ');
    const more = count > NAMED_REQUESTS ? `; and ${count - NAMED_REQUESTS} more` : '';
    problems.push({ state: 'warn', reason: BrowserReasons.failedRequests, text: `${plural(count, 'failed request')} (${named}${more})` });
  }
  if (!attrs.ignoreConsoleErrors && run.consoleErrors > 0) {
    problems.push({ state: 'warn', reason: BrowserReasons.consoleErrors, text: `${plural(run.consoleErrors, 'console error')} (first: ${quote(run.firstConsoleError ?? '')})` });
  }
  if (problems.length === 0) return { state: 'ok', reason: 'ok', message: summary(run), ...measured(run) };
  // The worst problem gives the state and reason; on a tie the one listed first.
  const worst = problems.reduce((a, b) => (severity(b.state) > severity(a.state) ? b : a));
  return { state: worst.state, reason: worst.reason, message: `${summary(run)}: ${problems.map((problem) => problem.text).join('; ')}`, ...measured(run) };
}

/** Names the saved screenshot in the message: a Result has no other place for it. */
export function withScreenshot(outcome: CommandOutcome, file: string): CommandOutcome {
  return { ...outcome, message: `${outcome.message}; screenshot ${file}` };
}

/** `step 2 of 3 (click "#login")` */
function stepName(run: RunRecord, index: number): string {
  const { steps } = run.attrs;
  const step = steps[index];
  return step === undefined ? `step ${index + 1}` : `step ${index + 1} of ${steps.length} (${describeStep(step)})`;
}

/** `200 OK from https://example.org/ loaded in 812 ms, 3 steps done` */
function summary(run: RunRecord): string {
  const status = run.statusText === '' ? String(run.status) : `${run.status} ${run.statusText}`;
  const load = run.loadMs === undefined ? '' : ` loaded in ${formatMs(run.loadMs)} ms`;
  const steps = run.attrs.steps.length === 0 ? '' : `, ${run.stepsRun} of ${plural(run.attrs.steps.length, 'step')} done`;
  return `${status} from ${run.attrs.url}${load}${steps}`;
}

/** `{ metrics }` once the page answered; nothing before (a timeout while connecting measured nothing). */
function measured(run: RunRecord): { readonly metrics?: readonly Metric[] } {
  return run.status === undefined ? {} : { metrics: metrics(run) };
}

function metrics(run: RunRecord): readonly Metric[] {
  const { attrs } = run;
  const list: Metric[] = [gauge('status_code', run.status ?? 0)];
  if (run.loadMs !== undefined) list.push(gauge('load_time', round(run.loadMs), 'ms', { warn: attrs.responseWarnMs, crit: attrs.responseCritMs }));
  if (run.domContentLoadedMs !== undefined) list.push(gauge('dom_content_loaded', round(run.domContentLoadedMs), 'ms'));
  list.push(gauge('console_errors', run.consoleErrors), gauge('failed_requests', run.failedRequests.length));
  if (attrs.steps.length > 0) list.push(gauge('steps_run', run.stepsRun));
  return list;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function quote(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return JSON.stringify(line.length > QUOTE_CHARS ? `${line.slice(0, QUOTE_CHARS - 1)}…` : line);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
