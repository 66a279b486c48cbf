import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { smtpCommand, type SmtpAttributes } from '../../../src/commands/smtp/smtp.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { freePort } from '../../helpers/processes.js';
import type { KeyAndCert } from '../../helpers/tls.js';
import { tlsTestCertificates, type TlsTestCertificates } from '../tls/certificates.js';
import { TestServers } from '../tls/servers.js';

const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
const NUM = String.raw`\d+(?:\.\d+)?`;
const USER = 'vigil';
const PASSWORD = 'correct horse battery staple';

const smtp = smtpCommand();
const logger = silentLogger();
const plainServers = new TestServers();
const smtpServers: SMTPServer[] = [];
let certs: TlsTestCertificates;
let dir: string;
let caFile: string;

beforeAll(async () => {
  certs = await tlsTestCertificates();
  dir = mkdtempSync(join(tmpdir(), 'vigil-smtp-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, certs.ca.cert);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await plainServers.close();
  await Promise.all(smtpServers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

/** What a test SMTP server saw: commands it was asked to judge, and whether a connection closed. */
interface Seen {
  readonly auth: { method: string; username: string | undefined; password: string | null | undefined }[];
  readonly helo: string[];
  readonly from: string[];
  readonly to: string[];
  data: number;
  /** Resolves when a client's connection has closed. */
  readonly closed: Promise<void>;
}

/**
 * A real SMTP server (smtp-server) on 127.0.0.1 with STARTTLS on `cert`, AUTH PLAIN and LOGIN accepting
 * USER with PASSWORD, every sender but `spam@` and every recipient but `nobody@`; `options` change it.
 */
async function startSmtp(options: SMTPServerOptions = {}, cert: KeyAndCert = certs.leaf): Promise<{ port: number; seen: Seen }> {
  let closed!: () => void;
  const seen: Seen = { auth: [], helo: [], from: [], to: [], data: 0, closed: new Promise<void>((resolve) => (closed = resolve)) };
  const server = new SMTPServer({
    key: cert.key,
    cert: cert.cert,
    logger: false,
    // No DNS: the tests reach nothing but 127.0.0.1.
    disableReverseLookup: true,
    authMethods: ['PLAIN', 'LOGIN'],
    closeTimeout: 1,
    onAuth(auth, _session, callback) {
      seen.auth.push({ method: auth.method, username: auth.username, password: auth.password });
      if (auth.username === USER && auth.password === PASSWORD) callback(null, { user: USER });
      else callback(new Error('Invalid username or password'));
    },
    onMailFrom(address, session, callback) {
      seen.helo.push(session.hostNameAppearsAs);
      seen.from.push(address.address);
      callback(address.address.startsWith('spam@') ? Object.assign(new Error('sender refused'), { responseCode: 550 }) : null);
    },
    onRcptTo(address, _session, callback) {
      seen.to.push(address.address);
      callback(address.address.startsWith('nobody@') ? Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }) : null);
    },
    onData(stream, _session, callback) {
      seen.data++;
      stream.resume();
      stream.on('end', () => callback());
    },
    onClose() {
      closed();
    },
    ...options,
  });
  server.on('error', () => undefined);
  smtpServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.server.address() as AddressInfo).port, seen };
}

function ctx(signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 5000, logger, previous: null };
}

function parse(raw: unknown): SmtpAttributes {
  const parsed = smtp.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: unknown): string[] {
  const parsed = smtp.parse(raw);
  if (parsed.ok) throw new Error('expected issues');
  return parsed.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return smtp.run(parse({ host: '127.0.0.1', ...raw }), ctx(signal));
}

function metricNames(outcome: CommandOutcome): string[] {
  return (outcome.metrics ?? []).map((metric) => metric.name);
}

describe('smtp command: attributes', () => {
  it('defaults the port to 25, or 465 with tls, and the TLS settings like the tls command', () => {
    expect(parse({ host: 'mx.example.org' })).toEqual({
      host: 'mx.example.org',
      port: 25,
      security: 'none',
      tls: { tlsVerify: true, certWarnDays: 14, certCritDays: 7, minProtocol: 'TLSv1.2' },
    });
    expect(parse({ host: 'mx.example.org', tls: true })).toMatchObject({ port: 465, security: 'tls' });
    expect(parse({ host: 'mx.example.org', starttls: true, username: 'u', password: 1234 })).toMatchObject({ security: 'starttls', auth: { username: 'u', password: '1234' } });
  });

  it('refuses what cannot work or would expose the password, with paths', () => {
    expect(issues({ host: 'mx.example.org', username: USER, password: PASSWORD })).toEqual([
      'username: expected starttls: true or tls: true with username: AUTH would send the password in clear, got "vigil"',
    ]);
    expect(issues({ host: 'mx.example.org', starttls: true, tls: true, password: PASSWORD, rcptTo: 'a@b.test' })).toEqual([
      'starttls: expected starttls or tls, not both (tls is TLS from the first byte), got true',
      'username: expected a username alongside password, got nothing',
      'mailFrom: expected a sender alongside rcptTo (RCPT TO follows MAIL FROM), got nothing',
    ]);
    expect(issues({ host: 'mx.example.org', caFile, certWarnDays: 3, helo: 'bad name', mailFrom: 'a b@c.test', password: { secret: PASSWORD } })).toEqual([
      'helo: expected a host name or an address literal like [192.0.2.1] for EHLO, got "bad name"',
      'password: expected a password (a string; write it as ${SMTP_PASSWORD} to take it from the environment), got an object',
      'mailFrom: expected a mail address (no spaces or angle brackets, at most 254 characters), got "a b@c.test"',
    ]);
    expect(issues({ host: 'mx.example.org', caFile, certWarnDays: 3 })).toEqual([
      `caFile: expected only with starttls: true or tls: true, got "${caFile}"`,
      'certWarnDays: expected only with starttls: true or tls: true, got 3',
    ]);
  });
});

describe('smtp command: dialogue', () => {
  it('is ok for a banner and EHLO in clear, giving this machine’s host name in EHLO', async () => {
    const { port, seen } = await startSmtp({ authOptional: true });
    const outcome = await run({ port, mailFrom: 'probe@vigil.test' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${port} answered in ${NUM} ms: banner "220 \\S+ ESMTP" in ${NUM} ms; sender <probe@vigil\\.test> accepted$`));
    expect(metricNames(outcome)).toEqual(['connect_time', 'banner_time', 'response_time']);
    expect(seen.helo).toEqual([hostname()]);
    await seen.closed;
  });

  it('upgrades with STARTTLS, authenticates with PLAIN, probes sender and recipient, and sends no mail', async () => {
    const { port, seen } = await startSmtp();
    const outcome = await run({ port, starttls: true, caFile, helo: 'probe.vigil.test', username: USER, password: PASSWORD, mailFrom: 'probe@vigil.test', rcptTo: 'postmaster@example.test' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(
      new RegExp(
        `^127\\.0\\.0\\.1:${port} answered in ${NUM} ms: banner "220 \\S+ ESMTP" in ${NUM} ms; ` +
          `STARTTLS TLSv1\\.3 \\S+ in ${NUM} ms, CN=localhost issued by CN=vigil test CA, expires in .*; ` +
          `authenticated as vigil \\(PLAIN\\); sender <probe@vigil\\.test> accepted; recipient <postmaster@example\\.test> accepted$`,
      ),
    );
    expect(outcome.message).not.toContain(PASSWORD);
    expect(metricNames(outcome)).toEqual(['connect_time', 'banner_time', 'response_time', 'handshake_time', 'cert_days_remaining']);
    expect(seen.auth).toEqual([{ method: 'PLAIN', username: USER, password: PASSWORD }]);
    expect(seen).toMatchObject({ helo: ['probe.vigil.test'], from: ['probe@vigil.test'], to: ['postmaster@example.test'], data: 0 });
    await seen.closed;
  });

  it('authenticates with LOGIN when the server offers no PLAIN', async () => {
    const { port, seen } = await startSmtp({ authMethods: ['LOGIN'] });
    const outcome = await run({ port, starttls: true, caFile, username: USER, password: PASSWORD });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/; authenticated as vigil \(LOGIN\)$/);
    expect(seen.auth).toEqual([{ method: 'LOGIN', username: USER, password: PASSWORD }]);
  });

  it('speaks TLS from the first byte with tls: true', async () => {
    const { port } = await startSmtp({ secure: true });
    const outcome = await run({ port, tls: true, caFile, username: USER, password: PASSWORD });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/: banner "220 \S+ ESMTP" in [\d.]+ ms; TLS TLSv1\.3 .*; authenticated as vigil \(PLAIN\)$/);
  });

  it('reports slow-response past its threshold', async () => {
    const { port } = await startSmtp();
    const outcome = await run({ port, responseCritMs: 0 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'slow-response' });
    expect(outcome.message).toMatch(new RegExp(`^response time at or above the critical threshold of 0 ms; 127\\.0\\.0\\.1:${port} answered in `));
    expect(outcome.metrics?.find((metric) => metric.name === 'response_time')).toMatchObject({ crit: 0 });
  });
});

describe('smtp command: failures', () => {
  it('reports bad-banner for a 554 greeting', async () => {
    const { port } = await startSmtp({
      onConnect(_session, callback) {
        callback(Object.assign(new Error('no service for you'), { responseCode: 554 }));
      },
    });
    const outcome = await run({ port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'bad-banner', message: `127.0.0.1:${port} greeted with "554 no service for you" instead of 220` });
    expect(metricNames(outcome)).toEqual(['connect_time', 'banner_time']);
  });

  it('reports bad-banner for a server that closes at once or is not SMTP', async () => {
    const closing = await plainServers.plain((socket) => socket.end());
    expect(await run({ port: closing })).toMatchObject({ reason: 'bad-banner', message: `127.0.0.1:${closing} closed the connection without a banner` });
    const ssh = await plainServers.plain((socket) => socket.write('SSH-2.0-OpenSSH_9.6\r\n'));
    expect(await run({ port: ssh })).toMatchObject({
      reason: 'bad-banner',
      message: `127.0.0.1:${ssh} sent no SMTP banner: expected a numbered reply as the banner, got "SSH-2.0-OpenSSH_9.6"`,
    });
  });

  it('reports ehlo-rejected, protocol-error and connection-error for what follows a good banner', async () => {
    const rejecting = await plainServers.plain((socket) => {
      socket.write('220 fake.test ESMTP\r\n');
      socket.once('data', () => socket.write('550 5.7.1 go away\r\n'));
    });
    expect(await run({ port: rejecting, helo: 'probe.vigil.test' })).toMatchObject({
      state: 'crit',
      reason: 'ehlo-rejected',
      message: `127.0.0.1:${rejecting} rejected EHLO probe.vigil.test: "550 5.7.1 go away"`,
    });
    const babbling = await plainServers.plain((socket) => {
      socket.write('220 fake.test ESMTP\r\n');
      socket.once('data', () => socket.write('hello there\r\n'));
    });
    expect(await run({ port: babbling })).toMatchObject({
      reason: 'protocol-error',
      message: `127.0.0.1:${babbling} does not speak SMTP: expected a numbered reply as the reply to EHLO, got "hello there"`,
    });
    const hanging = await plainServers.plain((socket) => {
      socket.write('220 fake.test ESMTP\r\n');
      socket.once('data', () => socket.end());
    });
    expect(await run({ port: hanging })).toMatchObject({
      reason: 'connection-error',
      message: `the connection closed while waiting for the reply to EHLO from 127.0.0.1:${hanging}`,
    });
  });

  it('reports starttls-unavailable when STARTTLS is not offered', async () => {
    const { port, seen } = await startSmtp({ hideSTARTTLS: true });
    const outcome = await run({ port, starttls: true, caFile, username: USER, password: PASSWORD });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'starttls-unavailable' });
    expect(outcome.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${port} does not offer STARTTLS \\(EHLO lists [A-Z0-9, -]+\\)$`));
    expect(seen.auth).toEqual([]);
  });

  it('reports starttls-unavailable when STARTTLS is refused, and handshake-failed when no TLS follows', async () => {
    /** 220, an EHLO that offers STARTTLS, then `afterStarttls` to STARTTLS. */
    const fake = (afterStarttls: string): Promise<number> =>
      plainServers.plain((socket) => {
        socket.write('220 fake.test ESMTP\r\n');
        socket.on('data', (chunk: Buffer) => socket.write(chunk.toString().startsWith('EHLO') ? '250-fake.test\r\n250 STARTTLS\r\n' : afterStarttls));
      });
    const refusing = await fake('454 4.7.0 TLS not available now\r\n');
    expect(await run({ port: refusing, starttls: true })).toMatchObject({
      state: 'crit',
      reason: 'starttls-unavailable',
      message: `127.0.0.1:${refusing} answered STARTTLS with "454 4.7.0 TLS not available now"`,
    });
    const plain = await fake('220 go ahead\r\n');
    const outcome = await run({ port: plain, starttls: true });
    // The probe's ClientHello is answered in clear: not TLS.
    expect(outcome).toMatchObject({ state: 'crit', reason: 'handshake-failed' });
    expect(outcome.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${plain} TLS handshake failed: ERR_SSL_`));
  });

  it.each([
    ['expired', 'expired', /^certificate CN=expired\.test expired 1\.0 days ago/],
    ['selfSigned', 'untrusted', /^certificate chain not trusted: the certificate is self-signed \(DEPTH_ZERO_SELF_SIGNED_CERT\); trusting the CAs in /],
    ['otherHost', 'name-mismatch', /^certificate is for DNS:other\.test, not 127\.0\.0\.1; 127\.0\.0\.1:\d+: TLSv1\.3 /],
  ] as const)('reports the TLS verdict for a %s certificate, before any password is sent', async (which, reason, message) => {
    const { port, seen } = await startSmtp({}, certs[which]);
    const outcome = await run({ port, starttls: true, caFile, username: USER, password: PASSWORD });
    expect(outcome).toMatchObject({ state: 'crit', reason });
    expect(outcome.message).toMatch(message);
    expect(metricNames(outcome)).toEqual(['connect_time', 'banner_time', 'handshake_time', 'cert_days_remaining']);
    expect(seen.auth).toEqual([]);
  });

  it('reports expiring after a dialogue that went through', async () => {
    const { port } = await startSmtp({}, certs.expiring);
    const outcome = await run({ port, starttls: true, caFile, certWarnDays: 5, certCritDays: 2 });
    expect(outcome).toMatchObject({ state: 'warn', reason: 'expiring' });
    expect(outcome.message).toMatch(new RegExp(`^certificate CN=localhost expires in 3\\.0 days \\(\\S+\\), under the warning threshold of 5 days; 127\\.0\\.0\\.1:${port} answered in `));
  });

  it('reports auth-failed for a wrong password, without showing it', async () => {
    const { port, seen } = await startSmtp();
    const outcome = await run({ port, starttls: true, caFile, username: USER, password: 'wrong password' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'auth-failed' });
    expect(outcome.message).toBe(`127.0.0.1:${port} refused AUTH PLAIN as vigil: "535 Invalid username or password"`);
    expect(seen.auth).toEqual([{ method: 'PLAIN', username: USER, password: 'wrong password' }]);

    const login = await startSmtp({ authMethods: ['LOGIN'] });
    const refused = await run({ port: login.port, starttls: true, caFile, username: USER, password: 'wrong password' });
    expect(refused).toMatchObject({ reason: 'auth-failed', message: `127.0.0.1:${login.port} refused AUTH LOGIN as vigil: "535 Invalid username or password"` });
  });

  it('reports auth-unavailable when neither PLAIN nor LOGIN is offered', async () => {
    const { port } = await startSmtp({ authMethods: ['XOAUTH2'] });
    const outcome = await run({ port, starttls: true, caFile, username: USER, password: PASSWORD });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'auth-unavailable', message: `127.0.0.1:${port} offers neither AUTH PLAIN nor LOGIN (AUTH XOAUTH2)` });
  });

  it('reports sender-rejected and recipient-rejected, quoting the server', async () => {
    const { port, seen } = await startSmtp({ authOptional: true });
    expect(await run({ port, mailFrom: 'spam@vigil.test' })).toMatchObject({
      state: 'crit',
      reason: 'sender-rejected',
      message: `127.0.0.1:${port} rejected MAIL FROM <spam@vigil.test>: "550 sender refused"`,
    });
    expect(await run({ port, mailFrom: 'probe@vigil.test', rcptTo: 'nobody@example.test' })).toMatchObject({
      state: 'crit',
      reason: 'recipient-rejected',
      message: `127.0.0.1:${port} rejected RCPT TO <nobody@example.test>: "550 5.1.1 no such user"`,
    });
    expect(seen.to).toEqual(['nobody@example.test']);
    expect(seen.data).toBe(0);
  });

  it('reports refused, dns and timeout', async () => {
    const closed = await freePort();
    expect(await run({ port: closed })).toEqual({ state: 'crit', reason: 'refused', message: `connection refused by 127.0.0.1:${closed}`, metrics: [] });
    expect(await run({ host: UNRESOLVABLE })).toMatchObject({ state: 'crit', reason: 'dns', message: `cannot resolve host ${UNRESOLVABLE} (ENOTFOUND)` });
    let serverSide: Socket | undefined;
    const silent = await plainServers.plain((socket) => {
      serverSide = socket;
      // Reading, the server sees the client close.
      socket.resume();
    });
    const outcome = await run({ port: silent }, AbortSignal.timeout(200));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for the banner from 127.0.0.1:${silent}` });
    expect(metricNames(outcome)).toEqual(['connect_time']);
    if (!(serverSide as Socket).destroyed) await once(serverSide as Socket, 'close');
    expect(serverSide?.destroyed).toBe(true);
    expect(await run({ port: silent }, AbortSignal.abort())).toEqual({ state: 'crit', reason: 'timeout', message: `timed out before connecting to 127.0.0.1:${silent}` });
  });
});
