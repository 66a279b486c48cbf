import { z } from 'zod';
import { compileRegexLiteral } from '../../core/regex-literal.js';
import { duration, integer, nonEmptyString, validRegex } from '../../validation/schema-types.js';
import { statusExpectation, type StatusExpectation } from '../http/expectations.js';

/** Text a page must show (`expectText`): a substring, or a regular expression written `/pattern/flags`. */
export type TextMatcher =
  /** `display`: how messages show it, `"Welcome"` or `/^Hello/i`. */
  | { readonly display: string; readonly text: string }
  | { readonly display: string; readonly regex: RegExp };

/** One step of a run, after the page has loaded; each waits at most its `timeoutMs`. */
export type BrowserStep =
  /** Clicks the one element `selector` matches. */
  | { readonly action: 'click'; readonly selector: string; readonly timeoutMs: number }
  /** Types `value` into the one field `selector` matches (the value never appears in messages). */
  | { readonly action: 'fill'; readonly selector: string; readonly value: string; readonly timeoutMs: number }
  /** Waits until an element `selector` matches is visible. */
  | { readonly action: 'waitFor'; readonly selector: string; readonly timeoutMs: number }
  /** Loads another URL (absolute, resolved against `url` at load time); its status must be in `expectStatus`. */
  | { readonly action: 'goto'; readonly url: string; readonly timeoutMs: number }
  /** Waits until the page's visible text contains or matches the text. */
  | { readonly action: 'expectText'; readonly text: TextMatcher; readonly timeoutMs: number };

/** What the run waits for before the page counts as loaded (Playwright's `waitUntil`). */
export const WaitUntil = ['load', 'domcontentloaded', 'networkidle'] as const;

/** The `browser` command's attributes after parsing. Plain data: a reload compares them deeply. */
export interface BrowserAttributes {
  /** The page to load, without credentials: what messages show. */
  readonly url: string;
  /** Basic-authentication credentials from `url`, sent to its origin only. */
  readonly credentials?: { readonly username: string; readonly password: string; readonly origin: string };
  readonly steps: readonly BrowserStep[];
  /** Statuses the page (after redirects, which the browser follows) and every `goto` step may have; default `2xx`. */
  readonly expectStatus: StatusExpectation;
  /** Default `load`. */
  readonly waitUntil: (typeof WaitUntil)[number];
  /** Load time (ms) at or above which the result is `warn` (`slow-load`). */
  readonly responseWarnMs?: number;
  /** Load time (ms) at or above which the result is `crit` (`slow-load`). */
  readonly responseCritMs?: number;
  /** CSS pixels; default 1280 × 720. */
  readonly viewport: { readonly width: number; readonly height: number };
  /** Do not warn (`console-errors`) about errors in the page's console; default false. */
  readonly ignoreConsoleErrors: boolean;
  /** Do not warn (`failed-requests`) about the page's requests that failed; default false. */
  readonly ignoreFailedRequests: boolean;
  /** Verify certificates; default true. */
  readonly tlsVerify: boolean;
  /** Save a screenshot of a failed run (when the command has a screenshot directory); default true. */
  readonly screenshot: boolean;
  /** The Chromium to run: an absolute path or a name on PATH; default the command's (`VIGIL_CHROMIUM`, then PATH). */
  readonly executablePath?: string;
}

/** The default of a step's `timeoutMs` (`stepTimeoutMs`). */
export const DEFAULT_STEP_TIMEOUT_MS = 5000;
/** Most steps a check may have: a check watches a journey, it does not script a session. */
const MAX_STEPS = 50;
const ACTIONS = ['click', 'fill', 'waitFor', 'goto', 'expectText'] as const;

const urlError = 'expected an http:// or https:// URL';
const selector = nonEmptyString('a selector: CSS (`#login`), or `text=…` and the other Playwright selectors');
const programError = 'expected a program: an absolute path or a name found on PATH';

/** An http(s) URL, or `undefined` when `text` (resolved against `base`) is none. */
function httpUrl(text: string, base?: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(text, base);
  } catch {
    return undefined;
  }
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '' ? url : undefined;
}

const textMatcher = nonEmptyString('a non-empty text, or a regular expression written /pattern/flags').transform((text, ctx): TextMatcher => {
  const compiled = compileRegexLiteral(text);
  if (compiled === null) return { display: JSON.stringify(text), text };
  return { display: text, regex: validRegex(compiled, text, ctx) };
});

/** A step as written: exactly one action key, `value` with `fill` only, and its own `timeoutMs` if need be. */
const stepFields = z.strictObject(
  {
    /** Selector of the element to click. */
    click: selector.optional(),
    /** Selector of the field to fill with `value`. */
    fill: selector.optional(),
    /** The text `fill` types. */
    value: z.string({ error: 'expected the text to type (a string)' }).optional(),
    /** Selector of an element to wait for. */
    waitFor: selector.optional(),
    /** A URL to load, absolute or relative to `url`. */
    goto: z.string({ error: urlError }).optional(),
    /** Text the page must show: a substring, or `/pattern/flags`. */
    expectText: textMatcher.optional(),
    /** How long the step may wait; default `stepTimeoutMs`. */
    timeoutMs: duration(1).optional(),
  },
  { error: `expected a step: a mapping with one of ${ACTIONS.join(', ')}, like { click: "#login" }` },
);

type StepFields = z.output<typeof stepFields>;

const fields = z.strictObject({
  /** The page to load: `http://` or `https://`, with credentials for basic authentication if need be. */
  url: z.string({ error: urlError }).refine((text) => httpUrl(text) !== undefined, { error: urlError }),
  /** What to do once the page has loaded, in order. */
  steps: z.array(stepFields, { error: 'expected a list of steps' }).max(MAX_STEPS, { error: `expected at most ${MAX_STEPS} steps` }).default([]),
  /** Acceptable statuses of the page and of `goto` steps: codes and classes, `[200, 3xx]`; default `2xx`. */
  expectStatus: statusExpectation.optional(),
  /** When the page counts as loaded: `load` (default), `domcontentloaded` or `networkidle`. */
  waitUntil: z.enum(WaitUntil, { error: `expected one of ${WaitUntil.join(', ')}` }).default('load'),
  /** Load time at or above which the result is `warn`. */
  responseWarnMs: duration().optional(),
  /** Load time at or above which the result is `crit`. */
  responseCritMs: duration().optional(),
  /** Window size in CSS pixels; default 1280 × 720. */
  viewport: z
    .strictObject({ width: integer(1, 10_000), height: integer(1, 10_000) }, { error: 'expected a mapping { width, height } in CSS pixels' })
    .default({ width: 1280, height: 720 }),
  /** Errors in the page's console do not make the result `warn`; default false. */
  ignoreConsoleErrors: z.boolean({ error: 'expected true or false' }).default(false),
  /** Failed requests of the page do not make the result `warn`; default false. */
  ignoreFailedRequests: z.boolean({ error: 'expected true or false' }).default(false),
  /** How long each step may wait (for its element, text or page); default 5 s. */
  stepTimeoutMs: duration(1).default(DEFAULT_STEP_TIMEOUT_MS),
  /** Verify certificates; default true. */
  tlsVerify: z.boolean({ error: 'expected true or false' }).default(true),
  /** Save a screenshot of a failed run; default true. */
  screenshot: z.boolean({ error: 'expected true or false' }).default(true),
  /** The Chromium to run: an absolute path or a name looked up on PATH at run time. */
  executablePath: nonEmptyString(programError)
    .refine((path) => path.startsWith('/') || !path.includes('/'), { error: `${programError} (a relative path is not resolved)` })
    .optional(),
});

type Fields = z.output<typeof fields>;

function checkTogether(value: Fields, ctx: z.RefinementCtx<Fields>): void {
  const { responseWarnMs, responseCritMs } = value;
  if (responseWarnMs !== undefined && responseCritMs !== undefined && responseWarnMs > responseCritMs) {
    ctx.addIssue({ code: 'custom', path: ['responseWarnMs'], message: `expected a duration no longer than responseCritMs (${responseCritMs}ms)` });
  }
  value.steps.forEach((step, index) => {
    const actions = ACTIONS.filter((action) => step[action] !== undefined);
    if (actions.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['steps', index], message: `expected a step with one of ${ACTIONS.join(', ')}` });
    } else if (actions.length > 1) {
      ctx.addIssue({ code: 'custom', path: ['steps', index, actions[1] as string], message: `expected one action per step (this one has ${actions.join(' and ')})` });
    }
    if (step.fill !== undefined && step.value === undefined) {
      ctx.addIssue({ code: 'custom', path: ['steps', index, 'value'], message: 'expected the text to type into the field (a string)' });
    }
    if (step.value !== undefined && step.fill === undefined) {
      ctx.addIssue({ code: 'custom', path: ['steps', index, 'value'], message: 'expected only in a fill step' });
    }
    if (step.goto !== undefined && httpUrl(step.goto, value.url) === undefined) {
      ctx.addIssue({ code: 'custom', path: ['steps', index, 'goto'], message: `${urlError}, or a path relative to url` });
    }
  });
}

function toStep(step: StepFields, base: string, defaultTimeoutMs: number): BrowserStep {
  const timeoutMs = step.timeoutMs ?? defaultTimeoutMs;
  if (step.click !== undefined) return { action: 'click', selector: step.click, timeoutMs };
  if (step.fill !== undefined) return { action: 'fill', selector: step.fill, value: step.value as string, timeoutMs };
  if (step.waitFor !== undefined) return { action: 'waitFor', selector: step.waitFor, timeoutMs };
  if (step.goto !== undefined) return { action: 'goto', url: withoutCredentials(httpUrl(step.goto, base) as URL), timeoutMs };
  return { action: 'expectText', text: step.expectText as TextMatcher, timeoutMs };
}

function withoutCredentials(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

function toAttributes(value: Fields): BrowserAttributes {
  const page = httpUrl(value.url) as URL;
  const url = withoutCredentials(page);
  const credentials =
    page.username === '' && page.password === ''
      ? undefined
      : { username: decodeURIComponent(page.username), password: decodeURIComponent(page.password), origin: page.origin };
  return {
    url,
    ...(credentials === undefined ? {} : { credentials }),
    steps: value.steps.map((step) => toStep(step, url, value.stepTimeoutMs)),
    // The browser follows redirects itself: what it ends on is what is judged.
    expectStatus: value.expectStatus ?? { display: '2xx', codes: [], classes: [2] },
    waitUntil: value.waitUntil,
    ...(value.responseWarnMs === undefined ? {} : { responseWarnMs: value.responseWarnMs }),
    ...(value.responseCritMs === undefined ? {} : { responseCritMs: value.responseCritMs }),
    viewport: value.viewport,
    ignoreConsoleErrors: value.ignoreConsoleErrors,
    ignoreFailedRequests: value.ignoreFailedRequests,
    tlsVerify: value.tlsVerify,
    screenshot: value.screenshot,
    ...(value.executablePath === undefined ? {} : { executablePath: value.executablePath }),
  };
}

/** The `browser` command's attribute schema: validation, defaults, and steps in their run form. */
export const browserAttributes = fields.superRefine(checkTogether).transform(toAttributes);

/** How messages name a step: `click "#login"`, `goto https://example.org/about`, `expectText /^Hi/`. */
export function describeStep(step: BrowserStep): string {
  switch (step.action) {
    case 'click':
    case 'fill':
    case 'waitFor':
      return `${step.action} ${JSON.stringify(step.selector)}`;
    case 'goto':
      return `goto ${step.url}`;
    case 'expectText':
      return `expectText ${step.text.display}`;
  }
}
