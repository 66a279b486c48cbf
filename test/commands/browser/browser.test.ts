import { once } from 'node:events';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { browserCommand, type BrowserCommand, type BrowserCommandOptions } from '../../../src/commands/browser/browser.js';
import type { BrowserAttributes } from '../../../src/commands/browser/attributes.js';
import type { CommandContext } from '../../../src/commands/command.js';
import { builtinCommands } from '../../../src/plugins/builtins.js';
import type { Metric } from '../../../src/results/metric.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { childrenNamed, freePort } from '../../helpers/processes.js';
import { testCertificates } from '../../helpers/tls.js';

/**
 * The `browser` command against pages that a server on 127.0.0.1 serves, in the real Chromium of this
 * machine (Debian's, found on PATH). One command (one browser) serves most tests, as it serves a
 * daemon's checks; the tests of the process itself start their own.
 */

/** A name the resolver rejects on this machine without asking any server (a label may be at most 63 characters). */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
/** A number as messages print it. */
const NUM = String.raw`\d+(?:\.\d+)?`;
const logger = silentLogger();

/** Requests the server has seen, `path?query`, in order. */
const seen: string[] = [];
/** Requests to `/hang`, held open: each test that uses it ends them. */
const hanging: { req: IncomingMessage; res: ServerResponse }[] = [];
let onHang: ((req: IncomingMessage) => void) | undefined;

function html(res: ServerResponse, body: string, status = 200): void {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><html><head><title>test</title></head><body>${body}</body></html>`);
}

const LOGIN_PAGE = `
  <form action="/hello" method="get">
    <input id="user" name="user"><button id="go" type="submit">Go</button>
  </form>`;

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  seen.push(`${url.pathname}${url.search}`);
  switch (url.pathname) {
    case '/':
      return html(res, '<h1>Hello</h1><p>All is well.</p>');
    case '/favicon.ico':
      res.statusCode = 204;
      return void res.end();
    case '/login':
      return html(res, LOGIN_PAGE);
    case '/hello':
      return html(res, `<p id="welcome">Welcome, ${url.searchParams.get('user') ?? 'nobody'}</p><a id="about" href="/about">about</a>`);
    case '/late':
      // Shows its text a moment after loading, as pages that fetch their content do.
      return html(res, `<div id="slot"></div><script>setTimeout(() => { document.getElementById('slot').textContent = 'Ready now'; }, 150);</script>`);
    case '/about':
      return html(res, '<h1>About us</h1>');
    case '/redirect':
      res.statusCode = 302;
      res.setHeader('location', '/');
      return void res.end();
    case '/down':
      return html(res, '<h1>Down for maintenance</h1>', 503);
    case '/missing':
      return html(res, '<h1>Not here</h1>', 404);
    case '/console':
      return html(res, `<p>noisy</p><script>console.error('boom'); console.log('fine'); throw new TypeError('kaput');</script>`);
    case '/broken-image':
      return html(res, '<p>picture:</p><img src="/missing.png">');
    case '/slow':
      // The server is slow, not the test: the page's load time includes this wait.
      setTimeout(() => html(res, '<p>eventually</p>'), 60);
      return;
    case '/empty':
      req.socket.destroy();
      return;
    case '/hang':
      hanging.push({ req, res });
      onHang?.(req);
      return;
    case '/viewport':
      return html(res, `<p id="size"></p><script>document.getElementById('size').textContent = innerWidth + 'x' + innerHeight;</script>`);
    case '/auth': {
      const expected = `Basic ${Buffer.from('ada:s3cret').toString('base64')}`;
      if (req.headers.authorization === expected) return html(res, '<p>Members only</p>');
      res.setHeader('www-authenticate', 'Basic realm="test"');
      return html(res, '<p>Who are you?</p>', 401);
    }
    default:
      return html(res, '<h1>Not found</h1>', 404);
  }
}

let server: Server;
let base: string;
const sockets = new Set<Socket>();
let browser: BrowserCommand;

beforeAll(async () => {
  server = createServer(route);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = browserCommand();
});

afterAll(async () => {
  await browser.close();
  for (const socket of sockets) socket.destroy();
  server.close();
});

afterEach(() => {
  onHang = undefined;
  for (const { res } of hanging.splice(0)) res.destroy();
  seen.length = 0;
});

function ctx(options: { signal?: AbortSignal; timeoutMs?: number; checkId?: string } = {}): CommandContext {
  const timeoutMs = options.timeoutMs ?? 20_000;
  return { checkId: options.checkId ?? 'web', signal: options.signal ?? AbortSignal.timeout(timeoutMs), deadline: Date.now() + timeoutMs, logger, previous: null };
}

function parse(command: BrowserCommand, raw: Record<string, unknown>): BrowserAttributes {
  const parsed = command.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, options: Parameters<typeof ctx>[0] = {}, command: BrowserCommand = browser): Promise<CommandOutcome> {
  return command.run(parse(command, raw), ctx(options));
}

function metric(outcome: CommandOutcome, name: string): Metric | undefined {
  return outcome.metrics?.find((m) => m.name === name);
}

function valuesOf(outcome: CommandOutcome): Record<string, number> {
  return Object.fromEntries((outcome.metrics ?? []).map((m) => [m.name, m.value]));
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('browser command: a page that loads', () => {
  it('reports ok with the status, load time, console errors and failed requests', async () => {
    const outcome = await run({ url: `${base}/` });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^200 OK from ${escape(base)}/ loaded in ${NUM} ms$`));
    expect((outcome.metrics ?? []).map((m) => m.name)).toEqual(['status_code', 'load_time', 'dom_content_loaded', 'console_errors', 'failed_requests']);
    expect(valuesOf(outcome)).toMatchObject({ status_code: 200, console_errors: 0, failed_requests: 0 });
    expect(metric(outcome, 'load_time')).toMatchObject({ unit: 'ms', kind: 'gauge' });
    expect(metric(outcome, 'load_time')?.value).toBeGreaterThan(0);
    expect(metric(outcome, 'dom_content_loaded')?.value).toBeLessThanOrEqual(metric(outcome, 'load_time')?.value ?? 0);
  });

  it('runs the steps in order: fill, click, waitFor, expectText, goto', async () => {
    const outcome = await run({
      url: `${base}/login`,
      steps: [
        { fill: '#user', value: 'ada' },
        { click: '#go' },
        { waitFor: 'text=Welcome' },
        { expectText: 'Welcome, ada' },
        { goto: '/about' },
        { expectText: '/about US/i' },
      ],
    });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^200 OK from ${escape(base)}/login loaded in ${NUM} ms, 6 of 6 steps done$`));
    expect(valuesOf(outcome)).toMatchObject({ steps_run: 6, failed_requests: 0 });
    // The form was filled and sent by the browser, and the goto step loaded its page.
    expect(seen).toEqual(expect.arrayContaining(['/login', '/hello?user=ada', '/about']));
  });

  it('waits, within the step timeout, for text that a page shows after loading', async () => {
    const outcome = await run({ url: `${base}/late`, steps: [{ expectText: 'Ready now' }] });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('follows redirects and judges the page it ends on', async () => {
    const outcome = await run({ url: `${base}/redirect` });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(metric(outcome, 'status_code')?.value).toBe(200);
    expect(seen.slice(0, 2)).toEqual(['/redirect', '/']);
  });

  it('opens the page in the viewport asked for', async () => {
    const outcome = await run({ url: `${base}/viewport`, viewport: { width: 800, height: 600 }, steps: [{ expectText: '800x600' }] });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('sends the credentials of the URL for basic authentication, and never shows them', async () => {
    const outcome = await run({ url: `http://ada:s3cret@${base.slice('http://'.length)}/auth`, steps: [{ expectText: 'Members only' }] });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).not.toContain('s3cret');
    const without = await run({ url: `${base}/auth` });
    expect(without).toEqual({
      state: 'crit',
      reason: 'unexpected-status',
      message: `expected status 2xx, got an authentication challenge from ${base}/auth, and the url has none (ERR_INVALID_AUTH_CREDENTIALS)`,
    });
    const wrong = await run({ url: `http://ada:guess@${base.slice('http://'.length)}/auth` });
    expect(wrong).toMatchObject({ state: 'crit', reason: 'unexpected-status' });
    expect(wrong.message).toMatch(/^expected status 2xx, got 401 Unauthorized from /);
    expect(wrong.message).not.toContain('guess');
  });

  it('accepts the statuses expectStatus names, without counting the page as a failed request', async () => {
    const outcome = await run({ url: `${base}/down`, expectStatus: 503 });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/^503 Service Unavailable from /);
    expect(valuesOf(outcome)).toMatchObject({ status_code: 503, failed_requests: 0 });
  });
});

describe('browser command: what is wrong with a page', () => {
  it('reports unexpected-status for a status outside expectStatus', async () => {
    const outcome = await run({ url: `${base}/down` });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-status' });
    expect(outcome.message).toMatch(new RegExp(`^expected status 2xx, got 503 Service Unavailable from ${escape(base)}/down loaded in ${NUM} ms$`));
    expect(metric(outcome, 'status_code')?.value).toBe(503);
  });

  it('reports step-failed, naming the step, when an element never appears', async () => {
    const outcome = await run({ url: `${base}/`, steps: [{ waitFor: 'h1' }, { click: '#nope', timeoutMs: 200 }] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'step-failed' });
    expect(outcome.message).toMatch(
      new RegExp(`^step 2 of 2 \\(click "#nope"\\) failed: timed out after 200 ms \\(waiting for locator\\('#nope'\\)\\); 200 OK from ${escape(base)}/ loaded in ${NUM} ms, 1 of 2 steps done$`),
    );
    expect(valuesOf(outcome)).toMatchObject({ steps_run: 1, status_code: 200 });
  });

  it('reports step-failed when the text is not on the page', async () => {
    const outcome = await run({ url: `${base}/`, stepTimeoutMs: 200, steps: [{ expectText: 'Goodbye' }] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'step-failed' });
    expect(outcome.message).toMatch(/^step 1 of 1 \(expectText "Goodbye"\) failed: "Goodbye" not on the page within 200 ms; /);
  });

  it('reports step-failed when a goto step gets a bad status', async () => {
    const outcome = await run({ url: `${base}/`, steps: [{ goto: '/missing' }] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'step-failed' });
    expect(outcome.message).toMatch(new RegExp(`^step 1 of 1 \\(goto ${escape(base)}/missing\\) failed: expected status 2xx, got 404 Not Found; `));
  });

  it('reports step-failed when a selector is ambiguous for a click', async () => {
    const outcome = await run({ url: `${base}/login`, steps: [{ click: 'form *' }] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'step-failed' });
    expect(outcome.message).toMatch(/^step 1 of 1 \(click "form \*"\) failed: .*strict mode violation/);
  });

  it('warns console-errors for console.error calls and uncaught exceptions, unless ignored', async () => {
    const outcome = await run({ url: `${base}/console` });
    expect(outcome).toMatchObject({ state: 'warn', reason: 'console-errors' });
    expect(outcome.message).toMatch(new RegExp(`^200 OK from ${escape(base)}/console loaded in ${NUM} ms: 2 console errors \\(first: "boom"\\)$`));
    expect(valuesOf(outcome)).toMatchObject({ console_errors: 2, failed_requests: 0 });
    const ignored = await run({ url: `${base}/console`, ignoreConsoleErrors: true });
    expect(ignored).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(metric(ignored, 'console_errors')?.value).toBe(2);
  });

  it('warns failed-requests for a resource that is missing, unless ignored', async () => {
    const outcome = await run({ url: `${base}/broken-image` });
    expect(outcome).toMatchObject({ state: 'warn', reason: 'failed-requests' });
    expect(outcome.message).toMatch(new RegExp(`: 1 failed request \\(GET ${escape(base)}/missing\\.png: 404\\)$`));
    // Chromium's own console line about it is not a second problem.
    expect(valuesOf(outcome)).toMatchObject({ failed_requests: 1, console_errors: 0 });
    const ignored = await run({ url: `${base}/broken-image`, ignoreFailedRequests: true });
    expect(ignored).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('reports slow-load past the thresholds: crit, or warn', async () => {
    const crit = await run({ url: `${base}/slow`, responseCritMs: 20 });
    expect(crit).toMatchObject({ state: 'crit', reason: 'slow-load' });
    expect(crit.message).toMatch(new RegExp(`^200 OK from ${escape(base)}/slow loaded in ${NUM} ms: load time at or above the critical threshold of 20 ms$`));
    expect(metric(crit, 'load_time')).toMatchObject({ crit: 20 });
    expect(metric(crit, 'load_time')?.value).toBeGreaterThanOrEqual(60);
    const warn = await run({ url: `${base}/slow`, responseWarnMs: 20, responseCritMs: 600_000 });
    expect(warn).toMatchObject({ state: 'warn', reason: 'slow-load' });
    expect(metric(warn, 'load_time')).toMatchObject({ warn: 20, crit: 600_000 });
  });

  it('reports navigation-failed when the server closes the connection without a response', async () => {
    const outcome = await run({ url: `${base}/empty` });
    expect(outcome).toEqual({ state: 'crit', reason: 'navigation-failed', message: `loading ${base}/empty failed: ERR_EMPTY_RESPONSE` });
  });

  it('reports refused for a port nothing listens on', async () => {
    const port = await freePort();
    const outcome = await run({ url: `http://127.0.0.1:${port}/` });
    expect(outcome).toEqual({ state: 'crit', reason: 'refused', message: `connection refused by 127.0.0.1:${port} (loading http://127.0.0.1:${port}/)` });
  });

  it('reports dns for a host name that cannot be resolved', async () => {
    const outcome = await run({ url: `http://${UNRESOLVABLE}/` });
    expect(outcome).toEqual({ state: 'crit', reason: 'dns', message: `cannot resolve host ${UNRESOLVABLE} (ERR_NAME_NOT_RESOLVED)` });
  });

  it('reports tls-error for a certificate it cannot trust, and loads the page with tlsVerify false', async () => {
    const certs = await testCertificates();
    const tls = createHttpsServer({ key: certs.selfSigned.key, cert: certs.selfSigned.cert }, (_req, res) => html(res, '<p>secure</p>'));
    tls.listen(0, '127.0.0.1');
    await once(tls, 'listening');
    try {
      const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/`;
      const outcome = await run({ url });
      expect(outcome).toMatchObject({ state: 'crit', reason: 'tls-error' });
      expect(outcome.message).toMatch(/^TLS with 127\.0\.0\.1:\d+ failed: ERR_CERT_AUTHORITY_INVALID$/);
      const unverified = await run({ url, tlsVerify: false, steps: [{ expectText: 'secure' }] });
      expect(unverified).toMatchObject({ state: 'ok', reason: 'ok' });
    } finally {
      tls.closeAllConnections();
      tls.close();
    }
  });
});

describe('browser command: deadlines', () => {
  it('reports timeout while the page loads when the run is aborted, and closes its page', async () => {
    const controller = new AbortController();
    let request: IncomingMessage | undefined;
    onHang = (req) => {
      request = req;
      controller.abort(new DOMException('timed out', 'TimeoutError'));
    };
    const outcome = await run({ url: `${base}/hang` }, { signal: controller.signal });
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: `timed out loading ${base}/hang (waiting for load)` });
    // The context was closed: the browser drops the request it was waiting on.
    const socket = (request as IncomingMessage).socket;
    if (!socket.destroyed) await once(socket, 'close');
    expect(socket.destroyed).toBe(true);
  });

  it('reports timeout at the step under way when the deadline comes first', async () => {
    const outcome = await run({ url: `${base}/`, steps: [{ waitFor: '#never', timeoutMs: 120_000 }] }, { timeoutMs: 3000 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out at step 1 of 1 (waitFor "#never") on ${base}/` });
    expect(metric(outcome, 'status_code')?.value).toBe(200);
  });

  it('reports timeout without loading anything when the run is aborted already', async () => {
    const outcome = await run({ url: `${base}/` }, { signal: AbortSignal.abort() });
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: `timed out before loading ${base}/` });
    expect(seen).toEqual([]);
  });
});

describe('browser command: screenshots of failed runs', () => {
  let dir: string;
  let shooting: BrowserCommand;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-shots-'));
  });
  afterEach(async () => {
    await shooting.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('saves one per failed run, names it in the message, and keeps the newest per check', async () => {
    shooting = browserCommand({ screenshotDir: dir, keepScreenshots: 2 });
    const files: string[] = [];
    for (let i = 0; i < 3; i++) {
      const outcome = await run({ url: `${base}/down` }, { checkId: 'shop' }, shooting);
      expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-status' });
      const file = /; screenshot (\S+)$/.exec(outcome.message)?.[1];
      expect(file).toMatch(new RegExp(`^${escape(dir)}/shop-\\d{8}T\\d{9}Z\\.png$`));
      files.push(file as string);
    }
    // Another check's screenshots are its own.
    const other = await run({ url: `${base}/`, steps: [{ click: '#nope', timeoutMs: 100 }] }, { checkId: 'shop-2' }, shooting);
    expect(other.message).toMatch(/; screenshot \S+\/shop-2-\d{8}T\d{9}Z\.png$/);
    const png = await readFile(files[2] as string);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const kept = (await readdir(dir)).sort();
    expect(kept.filter((name) => name.startsWith('shop-2-'))).toHaveLength(1);
    expect(kept.filter((name) => !name.startsWith('shop-2-'))).toEqual(files.slice(1).map((file) => file.slice(dir.length + 1)));
  });

  it('asks for the directory on each failed run: builtinCommands({ dataDir }) puts them in <dataDir>/screenshots', async () => {
    // As the daemon knows it: only once its config is loaded.
    const daemon: { dataDir?: string } = {};
    shooting = builtinCommands({ dataDir: () => daemon.dataDir }).find((command) => command.name === 'browser') as BrowserCommand;
    const before = await run({ url: `${base}/down` }, {}, shooting);
    expect(before.message).not.toContain('screenshot');
    daemon.dataDir = dir;
    const after = await run({ url: `${base}/down` }, {}, shooting);
    expect(after.message).toMatch(new RegExp(`; screenshot ${escape(dir)}/screenshots/web-\\d{8}T\\d{9}Z\\.png$`));
    expect(await readdir(join(dir, 'screenshots'))).toHaveLength(1);
  });

  it('takes none of a run that is ok, nor with screenshot false', async () => {
    shooting = browserCommand({ screenshotDir: dir });
    const ok = await run({ url: `${base}/` }, {}, shooting);
    expect(ok.state).toBe('ok');
    const failed = await run({ url: `${base}/down`, screenshot: false }, {}, shooting);
    expect(failed).toMatchObject({ state: 'crit', reason: 'unexpected-status' });
    expect(failed.message).not.toContain('screenshot');
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('browser command: the browser process', () => {
  const commands: BrowserCommand[] = [];
  let before: Set<number>;
  beforeEach(() => {
    before = new Set(childrenNamed('chromium'));
  });
  afterEach(async () => {
    for (const command of commands.splice(0)) await command.close();
  });

  function fresh(options: BrowserCommandOptions = {}): BrowserCommand {
    const command = browserCommand(options);
    commands.push(command);
    return command;
  }

  /** Chromium processes started (by this test file's process) since the test began. */
  function started(): number[] {
    return childrenNamed('chromium').filter((pid) => !before.has(pid));
  }

  it('starts Chromium on the first run, not at load, and reuses it', async () => {
    const command = fresh();
    const attrs = parse(command, { url: `${base}/` });
    expect(started()).toEqual([]);
    expect((await command.run(attrs, ctx())).state).toBe('ok');
    const [pid] = started();
    expect(pid).toBeGreaterThan(0);
    expect((await command.run(attrs, ctx())).state).toBe('ok');
    expect(started()).toEqual([pid]);
  });

  it('starts one Chromium for runs that start together, each in its own context', async () => {
    const command = fresh();
    const outcomes = await Promise.all([run({ url: `${base}/` }, {}, command), run({ url: `${base}/about` }, {}, command), run({ url: `${base}/down` }, {}, command)]);
    expect(outcomes.map((outcome) => outcome.reason)).toEqual(['ok', 'ok', 'unexpected-status']);
    expect(started()).toHaveLength(1);
  });

  it('reports timeout (unknown) when aborted while Chromium starts, and keeps the browser for the next run', async () => {
    const command = fresh();
    const controller = new AbortController();
    const running = run({ url: `${base}/` }, { signal: controller.signal }, command);
    controller.abort(new DOMException('timed out', 'TimeoutError'));
    expect(await running).toEqual({ state: 'unknown', reason: 'timeout', message: `timed out waiting for Chromium to start or open a page, before loading ${base}/` });
    expect(seen).toEqual([]);
    expect((await run({ url: `${base}/` }, {}, command)).state).toBe('ok');
    expect(started()).toHaveLength(1);
  });

  it('starts a new Chromium on the next run after it was killed between runs', async () => {
    const command = fresh();
    expect((await run({ url: `${base}/` }, {}, command)).state).toBe('ok');
    const [first] = started();
    process.kill(first as number, 'SIGKILL');
    const outcome = await run({ url: `${base}/` }, {}, command);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    const now = started();
    expect(now).toHaveLength(1);
    expect(now).not.toContain(first);
  });

  it('reports browser-crashed when Chromium dies during a run, and recovers on the next', async () => {
    const command = fresh();
    expect((await run({ url: `${base}/` }, {}, command)).state).toBe('ok');
    const [first] = started();
    onHang = () => process.kill(first as number, 'SIGKILL');
    const outcome = await run({ url: `${base}/hang` }, {}, command);
    expect(outcome).toEqual({
      state: 'unknown',
      reason: 'browser-crashed',
      message: `Chromium exited while loading ${base}/hang; the next run starts a new browser`,
    });
    onHang = undefined;
    expect((await run({ url: `${base}/` }, {}, command)).state).toBe('ok');
    expect(started()).not.toContain(first);
  });

  it('closes its Chromium on close()', async () => {
    const command = fresh();
    expect((await run({ url: `${base}/` }, {}, command)).state).toBe('ok');
    expect(started()).toHaveLength(1);
    await command.close();
    expect(started()).toEqual([]);
  });

  it('runs the Chromium a check names with executablePath', async () => {
    const command = fresh({ env: { PATH: '/nonexistent' } });
    const outcome = await run({ url: `${base}/`, executablePath: '/usr/bin/chromium' }, {}, command);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
  });
});

describe('browser command: no browser to run', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-no-browser-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports browser-unavailable (unknown) when no Chromium is on PATH', async () => {
    const command = browserCommand({ env: { PATH: dir } });
    const outcome = await run({ url: `${base}/` }, {}, command);
    expect(outcome.state).toBe('unknown');
    expect(outcome.reason).toBe('browser-unavailable');
    expect(outcome.message).toBe(
      `no Chromium found: none of chromium, chromium-browser, google-chrome is on PATH (${dir}); install one (Debian: apt-get install chromium), or name it with VIGIL_CHROMIUM or the executablePath attribute`,
    );
    expect(seen).toEqual([]);
  });

  it('reports browser-unavailable when VIGIL_CHROMIUM names no program', async () => {
    const command = browserCommand({ env: { PATH: '/usr/bin:/bin', VIGIL_CHROMIUM: join(dir, 'chromium') } });
    const outcome = await run({ url: `${base}/` }, {}, command);
    expect(outcome).toEqual({
      state: 'unknown',
      reason: 'browser-unavailable',
      message: `cannot run the Chromium of VIGIL_CHROMIUM=${join(dir, 'chromium')}: expected an existing executable file (no such file)`,
    });
  });

  it('reports browser-unavailable when the program will not start as a browser', async () => {
    const fake = join(dir, 'broken-chromium');
    await writeFile(fake, '#!/bin/sh\necho "no display, no luck" >&2\nexit 1\n');
    await chmod(fake, 0o755);
    const command = browserCommand({ executablePath: fake });
    const outcome = await run({ url: `${base}/` }, {}, command);
    expect(outcome.state).toBe('unknown');
    expect(outcome.reason).toBe('browser-unavailable');
    expect(outcome.message).toMatch(new RegExp(`^cannot start Chromium ${escape(fake)}: `));
    // Nothing is left running, and a later run tries again rather than remembering the failure.
    expect((await run({ url: `${base}/` }, {}, command)).reason).toBe('browser-unavailable');
  });
});
