import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../src/commands/command.js';
import { tcpCommand, type TcpAttributes } from '../../src/commands/tcp.js';
import type { CommandOutcome } from '../../src/results/result.js';
import { silentLogger } from '../helpers/logger.js';

/**
 * A name the resolver rejects on this machine without asking any server (a label may be at most 63
 * characters), so the test sends no DNS query off the machine.
 */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;

const tcp = tcpCommand();
const logger = silentLogger();

function ctx(signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 5000, logger, previous: null };
}

function parse(raw: unknown): TcpAttributes {
  const parsed = tcp.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return tcp.run(parse(raw), ctx(signal));
}

const servers: Server[] = [];
const sockets = new Set<Socket>();

/** A server on 127.0.0.1 and a free port; its connections are ended by `afterEach`. */
async function listen(onConnection: (socket: Socket) => void = () => undefined): Promise<number> {
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

function connectTime(outcome: CommandOutcome) {
  return outcome.metrics?.find((metric) => metric.name === 'connect_time');
}

describe('tcp command: running', () => {
  it('reports ok with the connect time when the port accepts connections', async () => {
    const port = await listen();
    const outcome = await run({ host: '127.0.0.1', port });
    expect(outcome.state).toBe('ok');
    expect(outcome.reason).toBe('ok');
    expect(outcome.message).toMatch(new RegExp(`^connected to 127\\.0\\.0\\.1:${port} in \\d+(\\.\\d)? ms$`));
    const metric = connectTime(outcome);
    expect(metric).toMatchObject({ name: 'connect_time', unit: 'ms', kind: 'gauge' });
    expect(metric?.value).toBeGreaterThanOrEqual(0);
    expect(metric?.value).toBeLessThan(5000);
    expect(metric).not.toHaveProperty('warn');
  });

  it('reports refused for a port nothing listens on', async () => {
    const port = await listen();
    const server = servers.pop() as Server;
    await new Promise((resolve) => server.close(resolve));
    const outcome = await run({ host: '127.0.0.1', port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'refused', message: `connection refused by 127.0.0.1:${port}` });
    expect(outcome.metrics ?? []).toEqual([]);
  });

  it('reports dns for a host name that cannot be resolved, without waiting long', async () => {
    const started = performance.now();
    const outcome = await run({ host: UNRESOLVABLE, port: 80 });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('dns');
    expect(outcome.message).toBe(`cannot resolve host ${UNRESOLVABLE} (ENOTFOUND)`);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('times out waiting for the banner from a silent server, and returns promptly on abort', async () => {
    const port = await listen();
    const started = performance.now();
    const outcome = await run({ host: '127.0.0.1', port, expect: 'SSH-' }, AbortSignal.timeout(200));
    const elapsed = performance.now() - started;
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('timeout');
    expect(outcome.message).toBe(`timed out waiting for the banner from 127.0.0.1:${port}: expected "SSH-", got nothing`);
    expect(connectTime(outcome)).toBeDefined();
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(2000);
  });

  it('aborts when its signal fires mid-read, and closes the connection', async () => {
    const controller = new AbortController();
    let serverSide: Socket | undefined;
    const port = await listen((socket) => {
      serverSide = socket;
      // The client is connected once it has sent this: abort only then, so the run is reading.
      socket.once('data', () => controller.abort());
    });
    const outcome = await run({ host: '127.0.0.1', port, send: 'HELLO\r\n', expect: 'never' }, controller.signal);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(outcome.message).toContain('waiting for the banner');
    // The command destroyed its socket: the server sees the connection end.
    await once(serverSide as Socket, 'close');
    expect(serverSide?.destroyed).toBe(true);
  });

  it('reports timeout without connecting when the signal is already aborted', async () => {
    let connections = 0;
    const port = await listen(() => connections++);
    const outcome = await run({ host: '127.0.0.1', port }, AbortSignal.abort());
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out before connecting to 127.0.0.1:${port}` });
    expect(connections).toBe(0);
  });

  it('reports unexpected-response, quoting what arrived, when the banner is wrong', async () => {
    const port = await listen((socket) => socket.end('220 mail.example.com ESMTP\r\n'));
    const outcome = await run({ host: '127.0.0.1', port, expect: 'SSH-' });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('unexpected-response');
    expect(outcome.message).toBe(`expected "SSH-" from 127.0.0.1:${port}, got "220 mail.example.com ESMTP\\r\\n" (connection closed)`);
    expect(connectTime(outcome)).toBeDefined();
  });

  it('quotes only the first 80 characters of a long wrong response', async () => {
    const port = await listen((socket) => socket.end('x'.repeat(500)));
    const outcome = await run({ host: '127.0.0.1', port, expect: 'y' });
    expect(outcome.reason).toBe('unexpected-response');
    expect(outcome.message).toContain(`got "${'x'.repeat(80)}"…`);
    expect(outcome.message).not.toContain('x'.repeat(81));
  });

  it('stops reading at readBytes rather than waiting for the server to close', async () => {
    const port = await listen((socket) => socket.write('0123456789abcdefghij'));
    const outcome = await run({ host: '127.0.0.1', port, expect: 'xyz', readBytes: 10 }, AbortSignal.timeout(5000));
    expect(outcome.reason).toBe('unexpected-response');
    expect(outcome.message).toContain('got "0123456789" (read 10 bytes)');
  });

  it('sends its text and matches the answer', async () => {
    const requests: string[] = [];
    const port = await listen((socket) => {
      socket.setEncoding('utf8');
      socket.on('data', (text: string) => {
        requests.push(text);
        if (text.includes('PING\r\n')) socket.write('+PONG\r\n');
      });
    });
    const outcome = await run({ host: '127.0.0.1', port, send: 'PING\r\n', expect: '+PONG' });
    expect(outcome.state).toBe('ok');
    expect(outcome.message).toMatch(new RegExp(`^connected to 127\\.0\\.0\\.1:${port} in .* ms, response matched "\\+PONG"$`));
    expect(requests.join('')).toBe('PING\r\n');
  });

  it('sends its text without expect and is ok once it is sent', async () => {
    let received!: Promise<string>;
    const port = await listen((socket) => {
      socket.setEncoding('utf8');
      received = new Promise((resolve) => {
        let text = '';
        socket.on('data', (chunk: string) => (text += chunk));
        socket.on('end', () => resolve(text));
      });
    });
    const outcome = await run({ host: '127.0.0.1', port, send: 'QUIT\r\n' });
    expect(outcome.state).toBe('ok');
    expect(await received).toBe('QUIT\r\n');
  });

  it('matches a banner that arrives in pieces', async () => {
    const port = await listen((socket) => {
      socket.write('SSH-2.0-Open');
      // A gap between the pieces, so the client most likely reads them apart; the expected text spans both.
      setTimeout(() => socket.write('SSH_9.6\r\n'), 20);
    });
    const outcome = await run({ host: '127.0.0.1', port, expect: 'OpenSSH' });
    expect(outcome.state).toBe('ok');
  });

  it('matches a regular expression written /pattern/flags', async () => {
    const port = await listen((socket) => socket.write('ssh-2.0-OpenSSH_9.6\r\n'));
    const attributes = parse({ host: '127.0.0.1', port, expect: '/^SSH-2\\.0-\\w+_\\d/i' });
    const outcome = await tcp.run(attributes, ctx());
    expect(outcome.state).toBe('ok');
    expect(outcome.message).toContain('response matched /^SSH-2\\.0-\\w+_\\d/i');
    // The same parsed attributes on a second run: no state kept in the expression.
    expect((await tcp.run(attributes, ctx())).state).toBe('ok');
  });

  it('reports unexpected-response when a regular expression does not match', async () => {
    const port = await listen((socket) => socket.end('SSH-1.99-old\r\n'));
    const outcome = await run({ host: '127.0.0.1', port, expect: '/^SSH-2\\.0-/' });
    expect(outcome.reason).toBe('unexpected-response');
    expect(outcome.message).toContain('expected /^SSH-2\\.0-/');
  });

  it('reports slow-connect as warn or crit at its thresholds, with them on the metric', async () => {
    const port = await listen();
    const warn = await run({ host: '127.0.0.1', port, connectWarnMs: 0, connectCritMs: '10s' });
    expect(warn.state).toBe('warn');
    expect(warn.reason).toBe('slow-connect');
    expect(warn.message).toContain('at or above the warning threshold of 0 ms');
    expect(connectTime(warn)).toMatchObject({ warn: 0, crit: 10_000 });

    const crit = await run({ host: '127.0.0.1', port, connectWarnMs: 0, connectCritMs: '0ms' });
    expect(crit).toMatchObject({ state: 'crit', reason: 'slow-connect' });

    const fast = await run({ host: '127.0.0.1', port, connectWarnMs: '10s' });
    expect(fast).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(connectTime(fast)).toMatchObject({ warn: 10_000 });
  });

  it('reports connection-error with the code for other socket errors', async () => {
    // The server resets the connection while the command waits for a banner.
    const port = await listen((socket) => socket.resetAndDestroy());
    const outcome = await run({ host: '127.0.0.1', port, expect: 'SSH-' });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('connection-error');
    expect(outcome.message).toContain('ECONNRESET');
  });
});

describe('tcp command: attributes', () => {
  it('accepts the full set, with durations in ms and readBytes defaulting to 4096', () => {
    const value = parse({ host: 'db.example.com', port: 5432, send: 'x', expect: 'y', connectWarnMs: '250ms', connectCritMs: '2s' });
    expect(value).toMatchObject({ host: 'db.example.com', port: 5432, send: 'x', readBytes: 4096, connectWarnMs: 250, connectCritMs: 2000 });
    expect(value.expect?.display).toBe('"y"');
  });

  it('says what a port should be and what it got', () => {
    expect(tcp.parse({ host: 'a', port: 'http' })).toEqual({
      ok: false,
      issues: [{ path: ['port'], message: 'expected an integer 1–65535, got "http"' }],
    });
    expect(tcp.parse({ host: 'a', port: 70000 })).toMatchObject({ ok: false, issues: [{ path: ['port'] }] });
  });

  it('requires a host', () => {
    expect(tcp.parse({ port: 22 })).toEqual({ ok: false, issues: [{ path: ['host'], message: 'expected a host name or IP address, got nothing' }] });
    expect(tcp.parse({ host: '', port: 22 })).toMatchObject({ ok: false, issues: [{ path: ['host'] }] });
  });

  it('rejects unknown keys', () => {
    expect(tcp.parse({ host: 'a', port: 22, timeout: '5s' })).toEqual({ ok: false, issues: [{ path: ['timeout'], message: 'unknown key' }] });
  });

  it('rejects an invalid regular expression at load time', () => {
    const parsed = tcp.parse({ host: 'a', port: 22, expect: '/(/' });
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.issues).toEqual([{ path: ['expect'], message: 'expected a valid regular expression (Unterminated group), got "/(/"' }]);
  });

  it('rejects a warning threshold above the critical one, and bad durations', () => {
    expect(tcp.parse({ host: 'a', port: 22, connectWarnMs: '2s', connectCritMs: '1s' })).toMatchObject({
      ok: false,
      issues: [{ path: ['connectWarnMs'], message: 'expected a duration no longer than connectCritMs (1000ms), got "2s"' }],
    });
    expect(tcp.parse({ host: 'a', port: 22, connectCritMs: 'soon' })).toMatchObject({ ok: false, issues: [{ path: ['connectCritMs'] }] });
    expect(tcp.parse({ host: 'a', port: 22, readBytes: 0 })).toMatchObject({ ok: false, issues: [{ path: ['readBytes'] }] });
  });

  it('describes its attributes in JSON Schema', () => {
    expect(tcp.attributesJsonSchema).toMatchObject({ type: 'object', required: ['host', 'port'], additionalProperties: false });
  });
});
