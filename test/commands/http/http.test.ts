import diagnosticsChannel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, LookupFunction, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { httpCommand, type HttpAttributes } from '../../../src/commands/http/http.js';
import type { Metric } from '../../../src/results/metric.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { version } from '../../../src/core/version.js';
import { silentLogger } from '../../helpers/logger.js';
import { testCertificates, type KeyAndCert, type TestCertificates } from '../../helpers/tls.js';

/**
 * Names the tests resolve without any network: `service.test` is 127.0.0.1, everything else does not
 * exist. (Node asks for every address, `all: true`, when it may try several address families.)
 */
const testLookup = ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
  setImmediate(() => {
    if (hostname !== 'service.test') {
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname }));
    } else if (options.all === true) {
      callback(null, [{ address: '127.0.0.1', family: 4 }]);
    } else {
      callback(null, '127.0.0.1', 4);
    }
  });
}) as unknown as LookupFunction;

const http = httpCommand({ lookup: testLookup });
const logger = silentLogger();

function ctx(signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 5000, logger, previous: null };
}

function parse(raw: unknown): HttpAttributes {
  const parsed = http.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return http.run(parse(raw), ctx(signal));
}

function metric(outcome: CommandOutcome, name: string): Metric | undefined {
  return outcome.metrics?.find((each) => each.name === name);
}

function metricNames(outcome: CommandOutcome): string[] {
  return (outcome.metrics ?? []).map((each) => each.name);
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface Served {
  readonly port: number;
  /** `http://127.0.0.1:<port>` (or https). */
  readonly base: string;
  /** TCP connections the server accepted so far. */
  readonly connections: () => number;
  /** The server's side of every connection, newest last. */
  readonly sockets: Socket[];
}

const servers: Server[] = [];

/** An HTTP server, or an HTTPS one with `tls`, on 127.0.0.1 and a free port; closed by `afterEach`. */
async function serve(handler: Handler, tls?: KeyAndCert): Promise<Served> {
  const server: Server = tls === undefined ? createHttpServer(handler) : createHttpsServer({ key: tls.key, cert: tls.cert }, handler);
  const sockets: Socket[] = [];
  server.on('connection', (socket: Socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
  });
  // A handshake the client rejected is the point of some tests, not a failure of the server.
  server.on('tlsClientError', () => undefined);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { port, base: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`, connections: () => sockets.length, sockets };
}

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

let certs: TestCertificates;
let dir: string;
let caFile: string;

beforeAll(async () => {
  certs = await testCertificates();
  dir = mkdtempSync(join(tmpdir(), 'vigil-http-test-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, certs.ca.cert);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ok: Handler = (_req, res) => res.end('all good');

/**
 * Runs `act` once the client has parsed a response's headers and handed the response on — the run is
 * then reading the body — while `running` runs. Node publishes the parsed headers on a diagnostics
 * channel just before it emits `response`; `setImmediate` lets the `response` listeners run first.
 */
async function whileReading<T>(act: () => void, running: () => Promise<T>): Promise<T> {
  let acted = false;
  const onResponse = (): void => {
    if (acted) return;
    acted = true;
    setImmediate(act);
  };
  diagnosticsChannel.subscribe('http.client.response.finish', onResponse);
  try {
    return await running();
  } finally {
    diagnosticsChannel.unsubscribe('http.client.response.finish', onResponse);
  }
}

describe('http command: plain HTTP', () => {
  it('reports ok with the status and the timing of each phase', async () => {
    const { base } = await serve(ok);
    const outcome = await run({ url: `${base}/health` });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^200 OK from ${base}/health in \\d+(\\.\\d)? ms$`));
    expect(metric(outcome, 'status_code')).toEqual({ name: 'status_code', value: 200, unit: '', kind: 'gauge' });
    expect(metric(outcome, 'body_bytes')).toMatchObject({ value: 8, unit: 'B' });
    // An IP address is not looked up; a plain connection has no TLS phase.
    expect(metricNames(outcome)).toEqual(['status_code', 'total_time', 'connect_time', 'first_byte_time', 'transfer_time', 'body_bytes']);
    const total = metric(outcome, 'total_time')?.value ?? -1;
    const phases = ['connect_time', 'first_byte_time', 'transfer_time'].map((name) => metric(outcome, name)?.value ?? -1);
    for (const phase of phases) expect(phase).toBeGreaterThanOrEqual(0);
    expect(total).toBeLessThan(5000);
    // The phases are consecutive parts of the run: together no longer than it.
    expect(phases.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(total + 0.01);
  });

  it('measures name resolution when the host is a name', async () => {
    const { port } = await serve(ok);
    const outcome = await run({ url: `http://service.test:${port}/` });
    expect(outcome.state).toBe('ok');
    expect(metric(outcome, 'dns_time')?.value).toBeGreaterThanOrEqual(0);
    expect(outcome.message).toContain(`from http://service.test:${port}/ in`);
  });

  it('reports dns when the host name does not resolve', async () => {
    const outcome = await run({ url: 'http://nowhere.test/health' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'dns', message: 'cannot resolve host nowhere.test (ENOTFOUND)' });
  });

  it('reports connection-error naming the code when the connection is refused', async () => {
    const { port } = await serve(ok);
    await new Promise((resolve) => (servers.pop() as Server).close(resolve));
    const outcome = await run({ url: `http://127.0.0.1:${port}/` });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('connection-error');
    expect(outcome.message).toBe(`ECONNREFUSED connecting to http://127.0.0.1:${port}/ (connect ECONNREFUSED 127.0.0.1:${port})`);
  });

  it('reports connection-error when the server resets the connection instead of answering', async () => {
    const { base } = await serve((req) => req.socket.resetAndDestroy());
    const outcome = await run({ url: `${base}/` });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'connection-error' });
    expect(outcome.message).toMatch(new RegExp(`^ECONNRESET waiting for the response from ${base}/ \\(`));
    expect(metric(outcome, 'connect_time')).toBeDefined();
  });

  it('reports connection-error when the connection breaks in the middle of the body', async () => {
    const { base, sockets } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
    });
    // Reset only once the client has the response headers, so that it is reading the body.
    const outcome = await whileReading(() => (sockets[0] as Socket).resetAndDestroy(), () => run({ url: `${base}/` }));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'connection-error' });
    expect(outcome.message).toMatch(new RegExp(`^ECONNRESET reading the body of ${base}/ \\(`));
    expect(metric(outcome, 'status_code')?.value).toBe(200);
  });

  it('reports unexpected-status with what was expected and what came', async () => {
    const { base } = await serve((_req, res) => {
      res.statusCode = 503;
      res.end('down for maintenance');
    });
    const outcome = await run({ url: `${base}/` });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('unexpected-status');
    expect(outcome.message).toMatch(new RegExp(`^expected status 2xx, 3xx, got 503 Service Unavailable from ${base}/ in [\\d.]+ ms$`));
    expect(metric(outcome, 'status_code')?.value).toBe(503);
    expect(metric(outcome, 'total_time')).toBeDefined();
  });

  it('accepts exact codes and classes in expectStatus', async () => {
    const { base } = await serve((_req, res) => {
      res.statusCode = 404;
      res.end();
    });
    expect((await run({ url: base, expectStatus: [200, 404] })).state).toBe('ok');
    expect((await run({ url: base, expectStatus: ['4xx'] })).state).toBe('ok');
    expect((await run({ url: base, expectStatus: 404 })).state).toBe('ok');
    expect(await run({ url: base, expectStatus: [200, '5xx'] })).toMatchObject({ reason: 'unexpected-status' });
  });

  it('does not follow redirects by default: a 3xx answers, and the message shows where it pointed', async () => {
    const { base, connections } = await serve((req, res) => {
      if (req.url === '/old') res.writeHead(302, { location: '/new' }).end();
      else res.end('new');
    });
    const outcome = await run({ url: `${base}/old` });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/^302 Found from .*\/old in /);
    expect(metric(outcome, 'status_code')?.value).toBe(302);
    expect(connections()).toBe(1);

    const strict = await run({ url: `${base}/old`, expectStatus: [200] });
    expect(strict.reason).toBe('unexpected-status');
    expect(strict.message).toContain('got 302 Found from');
    expect(strict.message).toContain(', a redirect to "/new" (not followed: followRedirects is 0)');
  });

  it('follows redirects up to followRedirects, reporting the final URL and the count', async () => {
    const { base } = await serve((req, res) => {
      if (req.url === '/a') res.writeHead(301, { location: '/b' }).end();
      else if (req.url === '/b') res.writeHead(307, { location: `http://${req.headers.host}/c?x=1` }).end();
      else res.end(`at ${req.url}`);
    });
    const outcome = await run({ url: `${base}/a`, followRedirects: 5, bodyContains: 'at /c?x=1' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^200 OK from ${base}/c\\?x=1 in [\\d.]+ ms after 2 redirects$`));
    expect(metric(outcome, 'redirects')?.value).toBe(2);
    // Each hop connected: the phases add up over the hops.
    expect(metric(outcome, 'connect_time')?.value).toBeGreaterThanOrEqual(0);
  });

  it('stops at followRedirects and then holds the redirect against expectStatus (2xx by default)', async () => {
    const { base } = await serve((req, res) => {
      const hop = Number(req.url?.slice(1));
      res.writeHead(302, { location: `/${hop + 1}` }).end();
    });
    const outcome = await run({ url: `${base}/0`, followRedirects: 2 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-status' });
    expect(outcome.message).toMatch(new RegExp(`^expected status 2xx, got 302 Found from ${base}/2 in [\\d.]+ ms after 2 redirects, a redirect to "/3" \\(not followed: followRedirects is 2, all used\\)$`));
  });

  it('reports unexpected-status for a redirect to something other than http or https', async () => {
    const { base } = await serve((_req, res) => res.writeHead(302, { location: 'ftp://files.example/x' }).end());
    const outcome = await run({ url: base, followRedirects: 3 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-status' });
    expect(outcome.message).toMatch(/^302 Found from .* ms: redirect to "ftp:\/\/files\.example\/x", which is not an http:\/\/ or https:\/\/ URL$/);
  });

  it('turns a POST into a GET on 303 and keeps method and body on 307', async () => {
    const seen: string[] = [];
    const { base } = await serve((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${body} ${req.headers['content-type'] ?? '-'}`);
        if (req.url === '/see-other') res.writeHead(303, { location: '/done' }).end();
        else if (req.url === '/temporary') res.writeHead(307, { location: '/done' }).end();
        else res.end('done');
      });
    });
    const attrs = { method: 'POST', body: '{"a":1}', headers: { 'Content-Type': 'application/json' }, followRedirects: 1 };
    expect((await run({ url: `${base}/see-other`, ...attrs })).state).toBe('ok');
    expect((await run({ url: `${base}/temporary`, ...attrs })).state).toBe('ok');
    expect(seen).toEqual([
      'POST /see-other {"a":1} application/json',
      'GET /done  -',
      'POST /temporary {"a":1} application/json',
      'POST /done {"a":1} application/json',
    ]);
  });

  it('sends credentials only to the origin they were meant for', async () => {
    const authorizations: (string | undefined)[] = [];
    const elsewhere = await serve((req, res) => {
      authorizations.push(`elsewhere ${req.headers.authorization ?? 'none'}`);
      res.end();
    });
    const { base } = await serve((req, res) => {
      authorizations.push(`origin ${req.headers.authorization ?? 'none'}`);
      if (req.url === '/here') res.writeHead(302, { location: '/there' }).end();
      else if (req.url === '/away') res.writeHead(302, { location: `${elsewhere.base}/` }).end();
      else res.end();
    });
    const withUser = base.replace('http://', 'http://alice:s%40cret@');
    expect((await run({ url: `${withUser}/here`, followRedirects: 1 })).state).toBe('ok');
    const away = await run({ url: `${base}/away`, followRedirects: 1, headers: { Authorization: 'Bearer t0ken' } });
    expect(away.state).toBe('ok');
    const basic = `Basic ${Buffer.from('alice:s@cret').toString('base64')}`;
    expect(authorizations).toEqual([`origin ${basic}`, `origin ${basic}`, 'origin Bearer t0ken', 'elsewhere none']);
  });

  it('shows the URL without its credentials in messages', async () => {
    const { base } = await serve(ok);
    const outcome = await run({ url: base.replace('http://', 'http://bob:hunter2@') + '/' });
    expect(outcome.message).not.toContain('hunter2');
    expect(outcome.message).toContain(`from ${base}/ in`);
  });

  it('sends the method, headers and body it is given, and a User-Agent of its own', async () => {
    let request: { method: string | undefined; headers: IncomingMessage['headers']; body: string } | undefined;
    const { base } = await serve((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        request = { method: req.method, headers: req.headers, body };
        res.end();
      });
    });
    expect((await run({ url: base, method: 'put', headers: { 'X-Probe': 'yes' }, body: 'héllo' })).state).toBe('ok');
    expect(request?.method).toBe('PUT');
    expect(request?.body).toBe('héllo');
    expect(request?.headers).toMatchObject({ 'x-probe': 'yes', 'user-agent': `vigil/${version}`, 'content-length': '6' });

    expect((await run({ url: base, headers: { 'user-agent': 'mine/1' } })).state).toBe('ok');
    expect(request?.headers['user-agent']).toBe('mine/1');
  });

  it('checks a HEAD request without a body', async () => {
    const { base } = await serve((_req, res) => res.writeHead(200, { 'content-length': '1000' }).end());
    const outcome = await run({ url: base, method: 'HEAD' });
    expect(outcome.state).toBe('ok');
    expect(metric(outcome, 'body_bytes')?.value).toBe(0);
  });
});

describe('http command: body and header expectations', () => {
  const json = { status: 'up', data: { items: [{ name: 'first' }, { name: 'second', tags: ['a'] }] }, 'odd key': null };

  async function jsonServer(): Promise<string> {
    const { base } = await serve((_req, res) => res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(json)));
    return base;
  }

  it('matches a substring, or reports body-mismatch quoting the body', async () => {
    const { base } = await serve((_req, res) => res.end(`degraded: ${'x'.repeat(200)}`));
    expect((await run({ url: base, bodyContains: 'degraded' })).state).toBe('ok');
    const outcome = await run({ url: base, bodyContains: 'healthy' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'body-mismatch' });
    expect(outcome.message).toMatch(new RegExp(`^body does not contain "healthy", got "degraded: x{70}"…; 200 OK from ${base}/ in [\\d.]+ ms$`));
    expect(metric(outcome, 'body_bytes')?.value).toBe(210);
  });

  it('matches a regular expression, or says which did not match', async () => {
    const { base } = await serve((_req, res) => res.end('version=1.42 ok'));
    expect((await run({ url: base, bodyMatches: 'version=1\\.\\d+ ok$' })).state).toBe('ok');
    const outcome = await run({ url: base, bodyMatches: '^OK' });
    expect(outcome.reason).toBe('body-mismatch');
    expect(outcome.message).toMatch(/^body does not match \/\^OK\/, got "version=1\.42 ok"; 200 OK/);
  });

  it('says so when the body is empty', async () => {
    const { base } = await serve((_req, res) => res.end());
    const outcome = await run({ url: base, bodyContains: 'ok' });
    expect(outcome.message).toMatch(/^body does not contain "ok", got an empty body; /);
  });

  it('compares a value at a JSON path', async () => {
    const base = await jsonServer();
    expect((await run({ url: base, jsonPath: 'status', jsonEquals: 'up' })).state).toBe('ok');
    expect((await run({ url: base, jsonPath: 'data.items[1].name', jsonEquals: 'second' })).state).toBe('ok');
    expect((await run({ url: base, jsonPath: '$.data.items[1]', jsonEquals: { name: 'second', tags: ['a'] } })).state).toBe('ok');
    expect((await run({ url: base, jsonPath: '$["odd key"]', jsonEquals: null })).state).toBe('ok');
    // A path alone only has to exist.
    expect((await run({ url: base, jsonPath: "data['items'][0]" })).state).toBe('ok');

    const wrong = await run({ url: base, jsonPath: 'data.items[0].name', jsonEquals: 'second' });
    expect(wrong).toMatchObject({ state: 'crit', reason: 'body-mismatch' });
    expect(wrong.message).toMatch(/^JSON at data\.items\[0\]\.name is "first", expected "second"; 200 OK from /);

    const typed = await run({ url: base, jsonPath: 'status', jsonEquals: 1 });
    expect(typed.message).toMatch(/^JSON at status is "up", expected 1; /);

    const missing = await run({ url: base, jsonPath: 'data.items[5].name', jsonEquals: 'x' });
    expect(missing.message).toMatch(/^JSON body has nothing at data\.items\[5\]\.name; /);
  });

  it('reports a body that is not JSON when a JSON path is asked for', async () => {
    const { base } = await serve((_req, res) => res.end('<html>oops</html>'));
    const outcome = await run({ url: base, jsonPath: 'status', jsonEquals: 'up' });
    expect(outcome.reason).toBe('body-mismatch');
    expect(outcome.message).toMatch(/^body is not JSON \(.+\), got "<html>oops<\/html>"; 200 OK/);
  });

  it('matches response headers, or says which was missing or different', async () => {
    const base = await jsonServer();
    expect((await run({ url: base, headerMatches: { 'Content-Type': '^application/json' } })).state).toBe('ok');
    const different = await run({ url: base, headerMatches: { 'content-type': '^text/html' } });
    expect(different.reason).toBe('body-mismatch');
    expect(different.message).toMatch(/^header content-type does not match \/\^text\\\/html\/, got "application\/json; charset=utf-8"; 200 OK/);
    const missing = await run({ url: base, headerMatches: { 'x-served-by': '.' } });
    expect(missing.message).toMatch(/^header x-served-by is missing, expected it to match \/\.\/; /);
  });

  it('reads at most maxBodyBytes and judges only that much', async () => {
    const { base } = await serve((_req, res) => res.end(`${'a'.repeat(1000)}needle`));
    const outcome = await run({ url: base, bodyContains: 'needle', maxBodyBytes: 1000 });
    expect(outcome.reason).toBe('body-mismatch');
    expect(outcome.message).toContain('(only the first 1000 bytes were read: maxBodyBytes)');
    expect(metric(outcome, 'body_bytes')?.value).toBe(1000);
    expect((await run({ url: base, bodyContains: 'needle', maxBodyBytes: 1006 })).state).toBe('ok');
  });

  it('stops reading an endless body at maxBodyBytes, closing the connection', async () => {
    const { base, sockets } = await serve((_req, res) => {
      res.writeHead(200);
      res.write('z'.repeat(4096));
    });
    const outcome = await run({ url: base, maxBodyBytes: 1024 }, AbortSignal.timeout(5000));
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(metric(outcome, 'body_bytes')?.value).toBe(1024);
    const serverSide = sockets[0] as Socket;
    if (!serverSide.destroyed) await once(serverSide, 'close');
    expect(serverSide.destroyed).toBe(true);
  });
});

describe('http command: time', () => {
  it('times out waiting for a response that never comes', async () => {
    const { base } = await serve(() => undefined);
    const started = performance.now();
    const outcome = await run({ url: `${base}/slow` }, AbortSignal.timeout(200));
    const elapsed = performance.now() - started;
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for the response from ${base}/slow` });
    expect(metric(outcome, 'connect_time')).toBeDefined();
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(2000);
  });

  it('stops in the middle of the body when its signal aborts, and closes the connection', async () => {
    const { base, sockets } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('first part');
    });
    const controller = new AbortController();
    const outcome = await whileReading(() => controller.abort(), () => run({ url: base }, controller.signal));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(outcome.message).toMatch(new RegExp(`^timed out reading the body of ${base}/ \\((0|10) bytes so far\\)$`));
    expect(metric(outcome, 'status_code')?.value).toBe(200);
    const serverSide = sockets[0] as Socket;
    if (!serverSide.destroyed) await once(serverSide, 'close');
    expect(serverSide.destroyed).toBe(true);
  });

  it('reports timeout without connecting when the signal is already aborted', async () => {
    const { base, connections } = await serve(ok);
    const outcome = await run({ url: base }, AbortSignal.abort());
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out before sending the request to ${base}/` });
    expect(connections()).toBe(0);
  });

  it('reports slow-response as warn or crit at its thresholds, with them on total_time', async () => {
    const { base } = await serve(ok);
    const warn = await run({ url: base, responseWarnMs: 0, responseCritMs: '10s' });
    expect(warn).toMatchObject({ state: 'warn', reason: 'slow-response' });
    expect(warn.message).toMatch(/^200 OK from .* ms: response time at or above the warning threshold of 0 ms$/);
    expect(metric(warn, 'total_time')).toMatchObject({ warn: 0, crit: 10_000 });

    const crit = await run({ url: base, responseWarnMs: 0, responseCritMs: '0ms' });
    expect(crit).toMatchObject({ state: 'crit', reason: 'slow-response' });
    expect(crit.message).toContain('at or above the critical threshold of 0 ms');

    const fast = await run({ url: base, responseWarnMs: '10s' });
    expect(fast).toMatchObject({ state: 'ok', reason: 'ok' });
  });
});

describe('http command: connections', () => {
  it('opens a fresh connection per run by default', async () => {
    const { base, connections } = await serve(ok);
    await run({ url: base });
    await run({ url: base });
    expect(connections()).toBe(2);
  });

  it('reuses one connection between runs with keepAlive', async () => {
    const { base, connections } = await serve(ok);
    const attributes = parse({ url: base, keepAlive: true });
    const first = await http.run(attributes, ctx());
    const second = await http.run(attributes, ctx());
    expect(first.state).toBe('ok');
    expect(second.state).toBe('ok');
    expect(connections()).toBe(1);
    expect(metric(first, 'connect_time')).toBeDefined();
    // The second run connected to nothing: only its wait and transfer are measured.
    expect(metric(second, 'connect_time')).toBeUndefined();
    expect(metric(second, 'first_byte_time')).toBeDefined();
  });

  it('retries once on a new connection when the server closed the kept-alive one as it was reused', async () => {
    let requests = 0;
    const { base, connections } = await serve((req, res) => {
      requests++;
      // The second request arrives on the reused connection: the server drops it without answering.
      if (requests === 2) req.socket.destroy();
      else res.end('fine');
    });
    const attributes = parse({ url: base, keepAlive: true });
    expect((await http.run(attributes, ctx())).state).toBe('ok');
    const second = await http.run(attributes, ctx());
    expect(second).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(requests).toBe(3);
    expect(connections()).toBe(2);
  });
});

describe('http command: HTTPS', () => {
  it('is ok with a certificate from the CA in caFile, and reports its remaining days', async () => {
    const { base } = await serve(ok, certs.leaf);
    const outcome = await run({ url: `${base}/`, caFile });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^200 OK from ${base}/ in [\\d.]+ ms$`));
    expect(metricNames(outcome)).toEqual(['status_code', 'total_time', 'connect_time', 'tls_time', 'first_byte_time', 'transfer_time', 'body_bytes', 'cert_days_remaining']);
    const days = metric(outcome, 'cert_days_remaining');
    expect(days).toMatchObject({ unit: 'd', warn: 14, crit: 7 });
    expect(days?.value).toBeGreaterThan(364);
    expect(days?.value).toBeLessThanOrEqual(365);
  });

  it('reports tls-error for a self-signed certificate, and ok with tlsVerify false', async () => {
    const { base } = await serve(ok, certs.selfSigned);
    const outcome = await run({ url: base });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(outcome.message).toBe(`TLS handshake with ${base.slice('https://'.length)} failed: DEPTH_ZERO_SELF_SIGNED_CERT (self-signed certificate)`);
    expect(metric(outcome, 'connect_time')).toBeDefined();

    const unverified = await run({ url: base, tlsVerify: false });
    expect(unverified).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(metric(unverified, 'cert_days_remaining')?.value).toBeGreaterThan(364);
  });

  it('reports tls-error for a certificate of another host name, naming caFile', async () => {
    const { base } = await serve(ok, certs.otherHost);
    const outcome = await run({ url: base, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(outcome.message).toMatch(/^TLS handshake with 127\.0\.0\.1:\d+ failed: ERR_TLS_CERT_ALTNAME_INVALID \(.*127\.0\.0\.1.*\); trusting the CAs in /);
    expect(outcome.message).toContain(caFile);
  });

  it('reports tls-error when the server does not speak TLS', async () => {
    const { port } = await serve(ok);
    const outcome = await run({ url: `https://127.0.0.1:${port}/` });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'tls-error' });
  });

  it('reports cert-expiring: crit under certCritDays, warn under certWarnDays', async () => {
    const { base } = await serve(ok, certs.expiring);
    const crit = await run({ url: base, caFile, certCritDays: 7 });
    expect(crit).toMatchObject({ state: 'crit', reason: 'cert-expiring' });
    expect(crit.message).toMatch(/^200 OK from .* ms: certificate of 127\.0\.0\.1:\d+ expires in 3\.0 days \(\d{4}-\d\d-\d\dT[\d:.]+Z\), under the critical threshold of 7 days$/);
    expect(metric(crit, 'cert_days_remaining')).toMatchObject({ warn: 14, crit: 7 });
    expect(metric(crit, 'cert_days_remaining')?.value).toBeCloseTo(3, 1);

    const warn = await run({ url: base, caFile, certWarnDays: 5, certCritDays: 2 });
    expect(warn).toMatchObject({ state: 'warn', reason: 'cert-expiring' });
    expect(warn.message).toContain('under the warning threshold of 5 days');

    expect((await run({ url: base, caFile, certWarnDays: 2, certCritDays: 1 })).state).toBe('ok');
  });

  it('gives the worse of a certificate and a slow response, mentioning both', async () => {
    const { base } = await serve(ok, certs.expiring);
    const outcome = await run({ url: base, caFile, certWarnDays: 5, certCritDays: 1, responseCritMs: 0 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'slow-response' });
    expect(outcome.message).toMatch(/: certificate of .* under the warning threshold of 5 days; response time at or above the critical threshold of 0 ms$/);
  });

  it('checks the certificate of an HTTPS hop reached by a redirect from HTTP', async () => {
    const secure = await serve(ok, certs.expiring);
    const { base } = await serve((_req, res) => res.writeHead(301, { location: `${secure.base}/` }).end());
    const outcome = await run({ url: base, followRedirects: 1, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'cert-expiring' });
    expect(metric(outcome, 'tls_time')).toBeDefined();
  });

  it('reuses a TLS connection with keepAlive and still reports the certificate', async () => {
    const { base, connections } = await serve(ok, certs.leaf);
    const attributes = parse({ url: base, caFile, keepAlive: true });
    await http.run(attributes, ctx());
    const second = await http.run(attributes, ctx());
    expect(second.state).toBe('ok');
    expect(connections()).toBe(1);
    expect(metric(second, 'tls_time')).toBeUndefined();
    expect(metric(second, 'cert_days_remaining')?.value).toBeGreaterThan(364);
  });

  it('reports the certificate of every new keep-alive connection (no resumed TLS sessions without one)', async () => {
    const { base, connections } = await serve(ok, certs.leaf);
    const server = servers.at(-1) as Server;
    const attributes = parse({ url: base, caFile, keepAlive: true });
    expect(metric(await http.run(attributes, ctx()), 'cert_days_remaining')).toBeDefined();
    server.closeAllConnections();
    const second = await http.run(attributes, ctx());
    expect(second.state).toBe('ok');
    expect(connections()).toBe(2);
    expect(metric(second, 'tls_time')).toBeDefined();
    expect(metric(second, 'cert_days_remaining')?.value).toBeGreaterThan(364);
  });
});

describe('http command: attributes', () => {
  it('accepts the documented example', () => {
    const value = parse({ url: 'https://example.org/health', method: 'GET', expectStatus: [200, '3xx'], bodyMatches: 'ok', certWarnDays: 14, certCritDays: 7 });
    expect(value.target).toEqual({
      protocol: 'https:',
      hostname: 'example.org',
      port: 443,
      path: '/health',
      origin: 'https://example.org',
      display: 'https://example.org/health',
      host: 'example.org',
    });
    expect(value.expectStatus).toEqual({ display: '200, 3xx', codes: [200], classes: [3] });
    expect(value.bodyMatches).toEqual(/ok/);
    expect(value).toMatchObject({ method: 'GET', certWarnDays: 14, certCritDays: 7, keepBody: true });
  });

  it('fills in its defaults', () => {
    const value = parse({ url: 'http://127.0.0.1:8080/' });
    expect(value).toMatchObject({
      method: 'GET',
      expectStatus: { display: '2xx, 3xx' },
      followRedirects: 0,
      tlsVerify: true,
      keepAlive: false,
      certWarnDays: 14,
      certCritDays: 7,
      maxBodyBytes: 1_048_576,
      keepBody: false,
      headers: { 'user-agent': `vigil/${version}` },
    });
    expect(value.target).toMatchObject({ hostname: '127.0.0.1', port: 8080, host: '127.0.0.1:8080' });
    // Redirects followed: a redirect is no longer an answer.
    expect(parse({ url: 'http://a.example/', followRedirects: 3 }).expectStatus).toEqual({ display: '2xx', codes: [], classes: [2] });
    // A threshold given alone moves the other's default out of its way.
    expect(parse({ url: 'https://a.example/', certCritDays: 30 })).toMatchObject({ certWarnDays: 30, certCritDays: 30 });
    expect(parse({ url: 'https://a.example/', certWarnDays: 3 })).toMatchObject({ certWarnDays: 3, certCritDays: 3 });
  });

  it('parses to plain data: the same attributes compare equal', () => {
    const raw = { url: 'https://example.org/', headerMatches: { 'x-a': '^b' }, jsonPath: 'a[0]', jsonEquals: { b: [1] }, caFile };
    expect(isDeepStrictEqual(parse(raw), parse(raw))).toBe(true);
    expect(isDeepStrictEqual(parse(raw), parse({ ...raw, jsonEquals: { b: [2] } }))).toBe(false);
  });

  it('strips the brackets of an IPv6 address', () => {
    expect(parse({ url: 'http://[::1]:8080/x' }).target).toMatchObject({ hostname: '::1', port: 8080, host: '[::1]:8080' });
  });

  it('rejects a URL that is not http or https', () => {
    expect(http.parse({ url: 'not a url' })).toEqual({ ok: false, issues: [{ path: ['url'], message: 'expected an http:// or https:// URL, got "not a url"' }] });
    expect(http.parse({ url: 'ftp://example.org/' })).toEqual({ ok: false, issues: [{ path: ['url'], message: 'expected an http:// or https:// URL, got "ftp://example.org/"' }] });
    expect(http.parse({})).toEqual({ ok: false, issues: [{ path: ['url'], message: 'expected an http:// or https:// URL, got nothing' }] });
  });

  it('rejects a status pattern that is no status, at its place in the list', () => {
    expect(http.parse({ url: 'http://a.example/', expectStatus: [200, '7xx'] })).toEqual({
      ok: false,
      issues: [{ path: ['expectStatus', 1], message: 'expected a status code 100–599 or a class 1xx–5xx, got "7xx"' }],
    });
    expect(http.parse({ url: 'http://a.example/', expectStatus: 99 })).toMatchObject({ ok: false, issues: [{ path: ['expectStatus'] }] });
    expect(http.parse({ url: 'http://a.example/', expectStatus: [] })).toMatchObject({ ok: false, issues: [{ path: ['expectStatus'] }] });
  });

  it('rejects an invalid regular expression at load time', () => {
    expect(http.parse({ url: 'http://a.example/', bodyMatches: '(' })).toEqual({
      ok: false,
      issues: [{ path: ['bodyMatches'], message: 'expected a valid regular expression (Unterminated group), got "("' }],
    });
    expect(http.parse({ url: 'http://a.example/', headerMatches: { 'content-type': '[' } })).toEqual({
      ok: false,
      issues: [{ path: ['headerMatches', 'content-type'], message: 'expected a valid regular expression (Unterminated character class), got "["' }],
    });
  });

  it('reads caFile at load time, naming a file that is missing or not PEM', () => {
    const missing = join(dir, 'missing.pem');
    expect(http.parse({ url: 'https://a.example/', caFile: missing })).toEqual({
      ok: false,
      issues: [{ path: ['caFile'], message: `expected a readable PEM file of CA certificates (cannot read ${missing}: ENOENT), got ${JSON.stringify(missing)}` }],
    });
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(http.parse({ url: 'https://a.example/', caFile: notPem })).toEqual({
      ok: false,
      issues: [{ path: ['caFile'], message: `expected a readable PEM file of CA certificates (${notPem}: no certificate in it), got ${JSON.stringify(notPem)}` }],
    });
    expect(parse({ url: 'https://a.example/', caFile }).ca?.toString()).toBe(certs.ca.cert);
  });

  it('rejects a JSON path it cannot read, and jsonEquals without one', () => {
    expect(http.parse({ url: 'http://a.example/', jsonPath: 'a..b' })).toEqual({
      ok: false,
      issues: [{ path: ['jsonPath'], message: 'expected a path like status, data.items[0].name or $["a key"], got "a..b"' }],
    });
    expect(http.parse({ url: 'http://a.example/', jsonEquals: 'up' })).toEqual({
      ok: false,
      issues: [{ path: ['jsonPath'], message: 'expected a path like status or data.items[0].name, to compare with jsonEquals, got nothing' }],
    });
    expect(parse({ url: 'http://a.example/', jsonPath: '$.a["b.c"][2]' }).json).toEqual({ path: '$.a["b.c"][2]', segments: ['a', 'b.c', 2] });
  });

  it('rejects TLS settings for an http URL that cannot reach TLS', () => {
    expect(http.parse({ url: 'http://a.example/', caFile, certWarnDays: 20 })).toEqual({
      ok: false,
      issues: [
        { path: ['caFile'], message: `expected only with an https:// url (or with followRedirects, which may lead to one), got ${JSON.stringify(caFile)}` },
        { path: ['certWarnDays'], message: 'expected only with an https:// url (or with followRedirects, which may lead to one), got 20' },
      ],
    });
    expect(http.parse({ url: 'http://a.example/', followRedirects: 1, tlsVerify: false }).ok).toBe(true);
  });

  it('rejects thresholds the wrong way round', () => {
    expect(http.parse({ url: 'https://a.example/', responseWarnMs: '2s', responseCritMs: '1s' })).toMatchObject({
      ok: false,
      issues: [{ path: ['responseWarnMs'], message: 'expected a duration no longer than responseCritMs (1000ms), got "2s"' }],
    });
    expect(http.parse({ url: 'https://a.example/', certWarnDays: 3, certCritDays: 7 })).toMatchObject({
      ok: false,
      issues: [{ path: ['certWarnDays'], message: 'expected at least certCritDays (7), got 3' }],
    });
  });

  it('rejects bad headers, methods and unknown keys', () => {
    expect(http.parse({ url: 'http://a.example/', headers: { 'Bad Name': 'x' } })).toEqual({
      ok: false,
      issues: [{ path: ['headers', 'Bad Name'], message: "expected a key that is a header name (letters, digits and !#$%&'*+-.^_`|~), got \"x\"" }],
    });
    expect(http.parse({ url: 'http://a.example/', headers: { 'X-A': 'line\r\nbreak' } })).toMatchObject({ ok: false, issues: [{ path: ['headers', 'X-A'] }] });
    expect(http.parse({ url: 'http://a.example/', method: 'GE T' })).toMatchObject({ ok: false, issues: [{ path: ['method'] }] });
    expect(http.parse({ url: 'http://a.example/', timeout: '5s' })).toEqual({ ok: false, issues: [{ path: ['timeout'], message: 'unknown key' }] });
    expect(http.parse({ url: 'http://a.example/', maxBodyBytes: 0 })).toMatchObject({ ok: false, issues: [{ path: ['maxBodyBytes'] }] });
  });

  it('describes its attributes in JSON Schema', () => {
    expect(http.attributesJsonSchema).toMatchObject({ type: 'object', required: ['url'], additionalProperties: false });
  });
});
