import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type ServerOptions, type WebSocket } from 'ws';
import type { CommandContext } from '../../../src/commands/command.js';
import { webSocketCommand, type WebSocketAttributes } from '../../../src/commands/websocket/websocket.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { freePort } from '../../helpers/processes.js';
import { testCertificates, type KeyAndCert, type TestCertificates } from '../../helpers/tls.js';

/** Rejected by the resolver on this machine without a query leaving it (a label may have at most 63 characters). */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
const NUM = String.raw`\d+(?:\.\d+)?`;

const websocket = webSocketCommand();
const logger = silentLogger();

function ctx(signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 'w', signal, deadline: Date.now() + 5000, logger, previous: null };
}

function parse(raw: unknown): WebSocketAttributes {
  const parsed = websocket.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: unknown): string[] {
  const parsed = websocket.parse(raw);
  if (parsed.ok) throw new Error(`expected issues for ${JSON.stringify(raw)}`);
  return parsed.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return websocket.run(parse(raw), ctx(signal));
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
}

/** A WebSocket server on 127.0.0.1 (wss with `tls`), and what it saw. */
interface TestServer {
  readonly url: string;
  /** The handshake requests, in order. */
  readonly requests: IncomingMessage[];
  /** The server side of each connection, in order. */
  readonly clients: WebSocket[];
  /** Messages received from clients. */
  readonly received: string[];
  /** The close code of each connection that closed (1006: ended without a close frame). */
  readonly closes: number[];
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(server: HttpServer): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

/** Starts a server whose connections `onConnection` handles (default: echo every message). */
async function wsServer(onConnection: (ws: WebSocket) => void = echo, options: { tls?: KeyAndCert; ws?: ServerOptions } = {}): Promise<TestServer> {
  const http = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }) : createHttpServer();
  const wss = new WebSocketServer({ ...options.ws, server: http });
  const server: TestServer = { url: '', requests: [], clients: [], received: [], closes: [] };
  wss.on('connection', (ws, request) => {
    server.requests.push(request);
    server.clients.push(ws);
    ws.on('message', (data: Buffer) => server.received.push(data.toString()));
    ws.on('close', (code: number) => server.closes.push(code));
    onConnection(ws);
  });
  const port = await listen(http);
  cleanups.push(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  return Object.assign(server, { url: `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}` });
}

function echo(ws: WebSocket): void {
  ws.on('message', (data: Buffer) => ws.send(data.toString()));
}

let certs: TestCertificates;
let dir: string;
let caFile: string;
beforeAll(async () => {
  certs = await testCertificates();
  dir = mkdtempSync(join(tmpdir(), 'vigil-websocket-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, certs.ca.cert);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('websocket command: attributes', () => {
  it('takes a ws:// URL, shows it without credentials, and adds a User-Agent', () => {
    const attrs = parse({ url: 'ws://user:pa55@example.org:8080/live?x=1' });
    expect(attrs).toMatchObject({ display: 'ws://example.org:8080/live?x=1', secure: false, host: 'example.org:8080', hostname: 'example.org' });
    expect(attrs.headers['user-agent']).toMatch(/^vigil\//);
    expect(attrs).not.toHaveProperty('tlsSettings');
  });

  it('compiles expect: a substring, or a regular expression written /pattern/flags', () => {
    expect(parse({ url: 'ws://h/', expect: 'pong' }).expect).toEqual({ display: '"pong"', needle: 'pong' });
    const regex = parse({ url: 'ws://h/', expect: '/^PONG \\d+$/gi' }).expect;
    expect(regex).toEqual({ display: '/^PONG \\d+$/gi', regex: /^PONG \d+$/i });
  });

  it('reads the TLS settings for a wss:// URL', () => {
    expect(parse({ url: 'wss://h/', caFile, certWarnDays: 30 }).tlsSettings).toMatchObject({ tlsVerify: true, caFile, certWarnDays: 30, certCritDays: 7 });
  });

  it('reports each problem at its path', () => {
    expect(issues({ url: 'http://example.org/' })).toEqual(['url: expected a ws:// or wss:// URL without a #fragment, got "http://example.org/"']);
    expect(issues({ url: 'ws://h/#x', nope: true })).toEqual(['url: expected a ws:// or wss:// URL without a #fragment, got "ws://h/#x"', 'nope: unknown key']);
    expect(issues({ url: 'ws://h/', caFile, servername: 'x' })).toEqual([`caFile: expected only with a wss:// url, got ${JSON.stringify(caFile)}`, 'servername: expected only with a wss:// url, got "x"']);
    expect(issues({ url: 'ws://h/', expect: '/(/' })).toEqual(['expect: expected a valid regular expression (Unterminated group), got "/(/"']);
    expect(issues({ url: 'ws://h/', replyWarnMs: '1s' })).toEqual(['replyWarnMs: expected only with expect (a reply to time), got "1s"']);
    expect(issues({ url: 'ws://h/', connectWarnMs: '2s', connectCritMs: '1s' })).toEqual(['connectWarnMs: expected a duration no longer than connectCritMs (1000ms), got "2s"']);
    expect(issues({ url: 'ws://h/', subprotocol: 'two words' })).toEqual(['subprotocol: expected a subprotocol name (a token such as graphql-ws), got "two words"']);
  });

  it('refuses headers Node would refuse, without quoting a value', () => {
    const found = issues({ url: 'ws://h/', headers: { authorization: 'Bearer s3cr3t\r\nX: 1', 'bad name': 'v' } });
    expect(found).toEqual([
      'headers: expected the value of authorization without control characters such as line breaks, got an object',
      "headers: expected header names of letters, digits and !#$%&'*+-.^_`|~ (not \"bad name\"), got an object",
    ]);
    expect(found.join('\n')).not.toContain('s3cr3t');
  });
});

describe('websocket command: running against a ws server on 127.0.0.1', () => {
  it('reports ok with the connect time for a handshake alone, sending the headers', async () => {
    const server = await wsServer();
    const outcome = await run({ url: `${server.url}/live`, headers: { authorization: 'Bearer t0ken' } });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^connected to ${server.url.replace(/\./g, '\\.')}/live in ${NUM} ms$`));
    expect(outcome.message).not.toContain('t0ken');
    expect(metric(outcome, 'connect_time')).toMatchObject({ unit: 'ms', kind: 'gauge' });
    expect(metric(outcome, 'reply_time')).toBeUndefined();
    expect(server.requests[0]?.url).toBe('/live');
    expect(server.requests[0]?.headers).toMatchObject({ authorization: 'Bearer t0ken', 'user-agent': expect.stringMatching(/^vigil\//) as unknown });
  });

  it('sends a message and reports ok with the reply time when the reply contains expect', async () => {
    const server = await wsServer();
    const outcome = await run({ url: server.url, send: 'ping 42', expect: 'ping' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^connected to ws://127\\.0\\.0\\.1:\\d+/ in ${NUM} ms, reply matched "ping" in ${NUM} ms$`));
    expect(metric(outcome, 'reply_time')).toMatchObject({ unit: 'ms' });
    expect(server.received).toEqual(['ping 42']);
  });

  it('matches a regular expression with its flags, and skips a greeting that does not match', async () => {
    const server = await wsServer((ws) => {
      ws.send('{"type":"welcome"}');
      echo(ws);
    });
    const outcome = await run({ url: server.url, send: 'PONG 7', expect: '/^pong \\d+$/i' });
    expect(outcome.reason).toBe('ok');
    expect(outcome.message).toContain('reply matched /^pong \\d+$/i');
  });

  it('waits for a message without sending one when only expect is given', async () => {
    const server = await wsServer((ws) => ws.send('ready'));
    const outcome = await run({ url: server.url, expect: 'ready' });
    expect(outcome.reason).toBe('ok');
    expect(metric(outcome, 'reply_time')).toBeDefined();
    expect(server.received).toEqual([]);
  });

  it('reports ok once the message is sent when there is no expect', async () => {
    const server = await wsServer(() => undefined);
    const outcome = await run({ url: server.url, send: 'hello' });
    expect(outcome.reason).toBe('ok');
    expect(outcome.message).toMatch(/, message sent$/);
    await expect.poll(() => server.received).toEqual(['hello']);
  });

  it('reports unexpected-reply, quoting the last message, when the server answers otherwise and closes', async () => {
    const wrong = await wsServer((ws) => ws.on('message', () => (ws.send('x'.repeat(100)), ws.close(1000))));
    const unexpected = await run({ url: wrong.url, send: 'ping', expect: 'pong' });
    expect(unexpected).toMatchObject({ state: 'crit', reason: 'unexpected-reply' });
    expect(unexpected.message).toBe(`expected a reply matching "pong" from ${wrong.url}/, got "${'x'.repeat(80)}"…; then the server closed the connection with code 1000`);
  });

  it('reports unexpected-reply when messages came but none matched before the time ran out', async () => {
    // The client answers a ping after the messages before it: its pong says it has read both.
    const controller = new AbortController();
    const server = await wsServer((ws) => {
      ws.on('message', () => (ws.send('one'), ws.send('two'), ws.ping()));
      ws.on('pong', () => controller.abort());
    });
    const outcome = await run({ url: server.url, send: 'ping', expect: 'pong' }, controller.signal);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-reply' });
    expect(outcome.message).toBe(`expected a reply matching "pong" from ${server.url}/, got "two" (the last of 2 messages); none matched before the time ran out`);
  });

  it('reports closed, with the close code and reason, when the server closes before the reply', async () => {
    const server = await wsServer((ws) => ws.on('message', () => ws.close(1011, 'internal error')));
    const outcome = await run({ url: server.url, send: 'ping', expect: 'pong' });
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'closed',
      message: `${server.url}/ closed the connection with code 1011 "internal error" before the reply`,
    });
    expect(metric(outcome, 'connect_time')).toBeDefined();
  });

  it('reports timeout when no reply comes, and drops the connection', async () => {
    const controller = new AbortController();
    const server = await wsServer((ws) => ws.on('message', () => controller.abort()));
    const outcome = await run({ url: server.url, send: 'ping', expect: 'pong' }, controller.signal);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for a reply matching "pong" from ${server.url}/` });
    expect(metric(outcome, 'connect_time')).toBeDefined();
    // Aborted: the socket is destroyed without a closing handshake.
    await expect.poll(() => server.closes).toEqual([1006]);
  });

  it('reports timeout connecting to a server that never answers the handshake', async () => {
    const http = createHttpServer();
    http.on('upgrade', () => undefined);
    const port = await listen(http);
    const outcome = await run({ url: `ws://127.0.0.1:${port}/` }, AbortSignal.timeout(200));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out connecting to ws://127.0.0.1:${port}/` });
  });

  it('reports timeout without connecting when already aborted', async () => {
    const server = await wsServer();
    const outcome = await run({ url: server.url }, AbortSignal.abort());
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out before connecting to ${server.url}/` });
    expect(server.requests).toEqual([]);
  });

  it('reports refused for a port nothing listens on, and dns for a name that does not resolve', async () => {
    const port = await freePort();
    expect(await run({ url: `ws://127.0.0.1:${port}/` })).toMatchObject({ state: 'crit', reason: 'refused', message: `connection refused by 127.0.0.1:${port}` });
    expect(await run({ url: `ws://${UNRESOLVABLE}/` })).toMatchObject({ state: 'crit', reason: 'dns', message: `cannot resolve host ${UNRESOLVABLE} (ENOTFOUND)` });
  });

  it('reports handshake-failed with the status for an answer other than 101', async () => {
    const server = await wsServer(echo, { ws: { verifyClient: (_info: unknown, done: (ok: boolean, code?: number) => void) => done(false, 403) } });
    const outcome = await run({ url: `${server.url}/admin` });
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'handshake-failed',
      message: `${server.url}/admin answered the handshake with 403 Forbidden instead of 101 Switching Protocols`,
    });
    expect(metric(outcome, 'status_code')?.value).toBe(403);
    const http = createHttpServer((_request, response) => response.end('not a websocket'));
    const port = await listen(http);
    expect(await run({ url: `ws://127.0.0.1:${port}/` })).toMatchObject({ reason: 'handshake-failed', message: `ws://127.0.0.1:${port}/ answered the handshake with 200 OK instead of 101 Switching Protocols` });
  });

  it('reports subprotocol-mismatch when the server chooses another subprotocol or none', async () => {
    const agreeing = await wsServer(echo, { ws: { handleProtocols: (protocols: Set<string>) => (protocols.has('graphql-ws') ? 'graphql-ws' : false) } });
    const agreed = await run({ url: agreeing.url, subprotocol: 'graphql-ws' });
    expect(agreed.reason).toBe('ok');
    expect(agreed.message).toContain('(subprotocol graphql-ws)');
    expect(agreeing.requests[0]?.headers['sec-websocket-protocol']).toBe('graphql-ws');

    const none = await run({ url: agreeing.url, subprotocol: 'mqtt' });
    expect(none).toMatchObject({ state: 'crit', reason: 'subprotocol-mismatch', message: `${agreeing.url}/ chose no subprotocol, expected mqtt` });

    const other = await wsServer(echo, { ws: { handleProtocols: () => 'graphql-transport-ws' } });
    expect(await run({ url: other.url, subprotocol: 'graphql-ws' })).toMatchObject({
      reason: 'subprotocol-mismatch',
      message: `${other.url}/ chose the subprotocol graphql-transport-ws, expected graphql-ws`,
    });
  });

  it('reports slow-connect and slow-reply at or above their thresholds', async () => {
    const server = await wsServer();
    const slowConnect = await run({ url: server.url, connectWarnMs: 0 });
    expect(slowConnect).toMatchObject({ state: 'warn', reason: 'slow-connect' });
    expect(slowConnect.message).toMatch(/: connect time at or above the warning threshold of 0 ms$/);
    expect(metric(slowConnect, 'connect_time')).toMatchObject({ warn: 0 });
    const slowReply = await run({ url: server.url, send: 'a', expect: 'a', connectWarnMs: 0, replyCritMs: 0 });
    expect(slowReply).toMatchObject({ state: 'crit', reason: 'slow-reply' });
    expect(metric(slowReply, 'reply_time')).toMatchObject({ crit: 0 });
  });

  it('closes each connection with a close frame (1000) after a run', async () => {
    const server = await wsServer();
    expect((await run({ url: server.url, send: 'a', expect: 'a' })).reason).toBe('ok');
    expect((await run({ url: server.url })).reason).toBe('ok');
    await expect.poll(() => server.closes).toEqual([1000, 1000]);
    expect(server.clients).toHaveLength(2);
  });

  it('ends the connection, keeping its outcome, when the server never answers the close frame', async () => {
    // A bare server: the handshake, one text frame "pong" for the first frame it reads, then silence.
    const raw: Socket[] = [];
    const http = createHttpServer();
    http.on('upgrade', (request: IncomingMessage, socket: Socket) => {
      raw.push(socket);
      const accept = createHash('sha1').update(`${request.headers['sec-websocket-key'] as string}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.once('data', () => socket.write(Buffer.from([0x81, 4, ...Buffer.from('pong')])));
      // The http server's sockets are half-open ones: the client's end is seen, not followed.
      socket.on('end', () => socket.destroy());
    });
    const port = await listen(http);
    const outcome = await run({ url: `ws://127.0.0.1:${port}/`, send: 'ping', expect: 'pong' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    const socket = raw[0] as Socket;
    if (!socket.closed) await once(socket, 'close');
    expect(socket.closed).toBe(true);
  });
});

describe('websocket command: wss', () => {
  it('reports ok and the days left on the certificate with the test CA trusted', async () => {
    const server = await wsServer(echo, { tls: certs.leaf });
    const outcome = await run({ url: server.url, caFile, send: 'x', expect: 'x' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    const days = metric(outcome, 'cert_days_remaining');
    expect(days).toMatchObject({ unit: 'd', warn: 14, crit: 7 });
    expect(days?.value).toBeGreaterThan(360);
  });

  it('reports tls-error for a certificate from a CA it does not trust, unless tlsVerify is false', async () => {
    const server = await wsServer(echo, { tls: certs.leaf });
    const port = new URL(server.url).port;
    const untrusted = await run({ url: server.url });
    expect(untrusted).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(untrusted.message).toMatch(new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${port} failed: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY) \\(`));
    expect((await run({ url: server.url, tlsVerify: false })).reason).toBe('ok');
  });

  it('verifies the servername given instead of the host', async () => {
    const server = await wsServer(echo, { tls: certs.otherHost });
    expect((await run({ url: server.url, caFile, servername: 'other.test' })).reason).toBe('ok');
    const mismatch = await run({ url: server.url, caFile });
    expect(mismatch).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(mismatch.message).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(mismatch.message).toContain(`; trusting the CAs in ${caFile}`);
  });

  it('reports cert-expiring for a certificate inside the thresholds', async () => {
    const server = await wsServer(echo, { tls: certs.expiring });
    const outcome = await run({ url: server.url, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'cert-expiring' });
    expect(outcome.message).toMatch(/: certificate of 127\.0\.0\.1:\d+ expires in 3\.0 days \(\S+Z\), under the critical threshold of 7 days$/);
  });
});
