import { describe, expect, it } from 'vitest';
import { browserCommand } from '../../../src/commands/browser/browser.js';
import type { BrowserAttributes } from '../../../src/commands/browser/attributes.js';
import type { Issue } from '../../../src/validation/issues.js';

/** The `browser` command's attributes, validated at load time: defaults, steps in their run form, and problems with their paths. */

const browser = browserCommand();

function parse(raw: unknown): BrowserAttributes {
  const parsed = browser.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: unknown): readonly Issue[] {
  const parsed = browser.parse(raw);
  if (parsed.ok) throw new Error(`expected issues, got ${JSON.stringify(parsed.value)}`);
  return parsed.issues;
}

describe('browser attributes', () => {
  it('fills in the defaults', () => {
    expect(parse({ url: 'https://example.org/shop' })).toEqual({
      url: 'https://example.org/shop',
      steps: [],
      expectStatus: { display: '2xx', codes: [], classes: [2] },
      waitUntil: 'load',
      viewport: { width: 1280, height: 720 },
      ignoreConsoleErrors: false,
      ignoreFailedRequests: false,
      tlsVerify: true,
      screenshot: true,
    });
  });

  it('turns steps into their run form: relative gotos resolved, step timeouts defaulted, text patterns compiled', () => {
    const attrs = parse({
      url: 'https://example.org/app/',
      stepTimeoutMs: '2s',
      steps: [
        { fill: '#user', value: 'ada' },
        { click: 'text=Sign in', timeoutMs: '10s' },
        { waitFor: '#dashboard' },
        { goto: 'settings?tab=1' },
        { expectText: 'Welcome' },
        { expectText: '/welcome,? ada/gi' },
      ],
    });
    expect(attrs.steps).toEqual([
      { action: 'fill', selector: '#user', value: 'ada', timeoutMs: 2000 },
      { action: 'click', selector: 'text=Sign in', timeoutMs: 10_000 },
      { action: 'waitFor', selector: '#dashboard', timeoutMs: 2000 },
      { action: 'goto', url: 'https://example.org/app/settings?tab=1', timeoutMs: 2000 },
      { action: 'expectText', text: { display: '"Welcome"', text: 'Welcome' }, timeoutMs: 2000 },
      // `g` would make the pattern remember where it last matched.
      { action: 'expectText', text: { display: '/welcome,? ada/gi', regex: /welcome,? ada/i }, timeoutMs: 2000 },
    ]);
  });

  it('takes credentials out of the URL, for its origin only', () => {
    const attrs = parse({ url: 'https://ada:p%40ss@example.org/private', steps: [{ goto: 'https://bob:x@example.org/other' }] });
    expect(attrs.url).toBe('https://example.org/private');
    expect(attrs.credentials).toEqual({ username: 'ada', password: 'p@ss', origin: 'https://example.org' });
    expect(attrs.steps[0]).toMatchObject({ action: 'goto', url: 'https://example.org/other' });
  });

  it('takes expectStatus as the http command does', () => {
    expect(parse({ url: 'https://example.org/', expectStatus: [200, '3xx'] }).expectStatus).toEqual({ display: '200, 3xx', codes: [200], classes: [3] });
    expect(issues({ url: 'https://example.org/', expectStatus: 'fine' })).toEqual([{ path: ['expectStatus'], message: 'expected a status code 100–599 or a class 1xx–5xx, got "fine"' }]);
  });

  it('reports a missing or unusable url', () => {
    expect(issues({})).toEqual([{ path: ['url'], message: 'expected an http:// or https:// URL, got nothing' }]);
    expect(issues({ url: 'ftp://files.example/' })).toEqual([{ path: ['url'], message: 'expected an http:// or https:// URL, got "ftp://files.example/"' }]);
  });

  it('reports every bad step at its path', () => {
    const found = issues({
      url: 'https://example.org/',
      steps: [{ click: '#ok' }, { fill: '#user' }, { tap: '#x' }, { click: '#a', waitFor: '#b' }, { waitFor: '' }, { expectText: '/(/' }, { value: 'x' }, 'click'],
    });
    expect(found).toEqual([
      { path: ['steps', 2, 'tap'], message: 'unknown key' },
      { path: ['steps', 4, 'waitFor'], message: 'expected a selector: CSS (`#login`), or `text=…` and the other Playwright selectors, got ""' },
      { path: ['steps', 5, 'expectText'], message: 'expected a valid regular expression (Unterminated group), got "/(/"' },
      { path: ['steps', 7], message: 'expected a step: a mapping with one of click, fill, waitFor, goto, expectText, like { click: "#login" }, got "click"' },
    ]);
    // Once every step has the right shape, what each step says as a whole is checked.
    expect(issues({ url: 'https://example.org/', steps: [{ fill: '#user' }, {}, { click: '#a', waitFor: '#b' }, { value: 'x' }, { goto: 'ftp://x/' }] })).toEqual([
      { path: ['steps', 0, 'value'], message: 'expected the text to type into the field (a string), got nothing' },
      { path: ['steps', 1], message: 'expected a step with one of click, fill, waitFor, goto, expectText, got an object' },
      { path: ['steps', 2, 'waitFor'], message: 'expected one action per step (this one has click and waitFor), got "#b"' },
      { path: ['steps', 3], message: 'expected a step with one of click, fill, waitFor, goto, expectText, got an object' },
      { path: ['steps', 3, 'value'], message: 'expected only in a fill step, got "x"' },
      { path: ['steps', 4, 'goto'], message: 'expected an http:// or https:// URL, or a path relative to url, got "ftp://x/"' },
    ]);
  });

  it('reports bad thresholds, viewports, timeouts, flags and programs', () => {
    expect(issues({ url: 'https://example.org/', responseWarnMs: '5s', responseCritMs: '1s' })).toEqual([
      { path: ['responseWarnMs'], message: 'expected a duration no longer than responseCritMs (1000ms), got "5s"' },
    ]);
    expect(issues({ url: 'https://example.org/', viewport: { width: 0, height: 600, depth: 3 } })).toEqual([
      { path: ['viewport', 'width'], message: 'expected an integer 1–10000, got 0' },
      { path: ['viewport', 'depth'], message: 'unknown key' },
    ]);
    expect(issues({ url: 'https://example.org/', stepTimeoutMs: 'soon', waitUntil: 'idle', ignoreConsoleErrors: 'yes' }).map((issue) => issue.path)).toEqual([
      ['waitUntil'],
      ['ignoreConsoleErrors'],
      ['stepTimeoutMs'],
    ]);
    expect(issues({ url: 'https://example.org/', executablePath: 'bin/chromium' })).toEqual([
      { path: ['executablePath'], message: 'expected a program: an absolute path or a name found on PATH (a relative path is not resolved), got "bin/chromium"' },
    ]);
    expect(issues({ url: 'https://example.org/', headless: false })).toEqual([{ path: ['headless'], message: 'unknown key' }]);
  });

  it('describes its attributes in JSON Schema for the config editor', () => {
    const schema = browser.attributesJsonSchema as { properties: Record<string, unknown>; required: string[] };
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining(['url', 'steps', 'expectStatus', 'waitUntil', 'responseWarnMs', 'responseCritMs', 'viewport', 'ignoreConsoleErrors', 'ignoreFailedRequests', 'stepTimeoutMs', 'tlsVerify', 'screenshot', 'executablePath']),
    );
    expect(schema.required).toEqual(['url']);
  });
});
