import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { tlsCommand, type TlsAttributes } from '../../../src/commands/tls/tls.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { freePort } from '../../helpers/processes.js';
import { tlsTestCertificates, type TlsTestCertificates } from './certificates.js';
import { TestServers } from './servers.js';

/** A name the resolver rejects without asking any server (a label may be at most 63 characters). */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
const DATE = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
const NUM = String.raw`\d+(?:\.\d+)?`;

const tls = tlsCommand();
const logger = silentLogger();
const servers = new TestServers();
let certs: TlsTestCertificates;
let dir: string;
let caFile: string;

beforeAll(async () => {
  certs = await tlsTestCertificates();
  dir = mkdtempSync(join(tmpdir(), 'vigil-tls-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, certs.ca.cert);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => servers.close());

function ctx(signal: AbortSignal = AbortSignal.timeout(5000)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 5000, logger, previous: null };
}

function parse(raw: unknown): TlsAttributes {
  const parsed = tls.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: unknown): string[] {
  const parsed = tls.parse(raw);
  if (parsed.ok) throw new Error('expected issues');
  return parsed.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return tls.run(parse({ host: '127.0.0.1', ...raw }), ctx(signal));
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((candidate) => candidate.name === name);
}

describe('tls command: attributes', () => {
  it('defaults the port to 443, or to the STARTTLS protocol’s, and the thresholds like http’s', () => {
    expect(parse({ host: 'example.org' })).toEqual({
      host: 'example.org',
      port: 443,
      tls: { tlsVerify: true, certWarnDays: 14, certCritDays: 7, minProtocol: 'TLSv1.2' },
    });
    const ports = ['smtp', 'imap', 'pop3', 'ftp', 'postgres'].map((starttls) => parse({ host: 'example.org', starttls }).port);
    expect(ports).toEqual([25, 143, 110, 21, 5432]);
    expect(parse({ host: 'example.org', certWarnDays: 3 }).tls).toMatchObject({ certWarnDays: 3, certCritDays: 3 });
  });

  it('reads caFile at load time and names what is wrong, with paths', () => {
    expect(parse({ host: 'example.org', caFile }).tls).toMatchObject({ caFile, ca: Buffer.from(certs.ca.cert) });
    expect(issues({ host: 'example.org', caFile: join(dir, 'missing.pem') })).toEqual([
      `caFile: expected a readable PEM file of CA certificates (cannot read ${join(dir, 'missing.pem')}: ENOENT), got "${join(dir, 'missing.pem')}"`,
    ]);
    expect(issues({ host: '', port: 0, starttls: 'smtps', minProtocol: 'SSLv3', certWarnDays: 2, certCritDays: 5, extra: 1 })).toEqual([
      'host: expected a host name or IP address, got ""',
      'port: expected an integer 1–65535, got 0',
      'starttls: expected one of smtp, imap, pop3, ftp, postgres, got "smtps"',
      'minProtocol: expected one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3, got "SSLv3"',
      'extra: unknown key',
    ]);
    expect(issues({ host: 'example.org', certWarnDays: 2, certCritDays: 5 })).toEqual(['certWarnDays: expected at least certCritDays (5), got 2']);
  });
});

describe('tls command: certificates', () => {
  it('is ok for a valid certificate from caFile, naming protocol, cipher, subject, issuer and days left', async () => {
    const port = await servers.tls(certs.leaf);
    const outcome = await run({ port, caFile });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(
      new RegExp(
        `^127\\.0\\.0\\.1:${port}: TLSv1\\.3 TLS_\\w+ in ${NUM} ms, CN=localhost issued by CN=vigil test CA, expires in 36\\d\\.\\d days \\(${DATE}\\); ` +
          // The test CA (the root of the chain, from caFile) expires first: it counts as much as the leaf.
          `soonest to expire in the chain: root certificate CN=vigil test CA, expires in 30\\.0 days \\(${DATE}\\)$`,
      ),
    );
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['connect_time', 'handshake_time', 'cert_days_remaining']);
    expect(metric(outcome, 'cert_days_remaining')).toMatchObject({ unit: 'd', warn: 14, crit: 7 });
    expect(metric(outcome, 'cert_days_remaining')?.value).toBeCloseTo(30, 1);
  });

  it('reports expired for a certificate past its end date', async () => {
    const port = await servers.tls(certs.expired);
    const outcome = await run({ port, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'expired' });
    expect(outcome.message).toMatch(new RegExp(`^certificate CN=expired\\.test expired 1\\.0 days ago \\(${DATE}\\); 127\\.0\\.0\\.1:${port}: TLSv1\\.3 `));
    expect(metric(outcome, 'cert_days_remaining')?.value).toBeCloseTo(-1, 1);
  });

  it('reports not-yet-valid for a certificate before its start date', async () => {
    const port = await servers.tls(certs.notYetValid);
    const outcome = await run({ port, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'not-yet-valid' });
    expect(outcome.message).toMatch(new RegExp(`^certificate CN=early\\.test is not valid until ${DATE} \\(in 10\\.0 days\\); `));
  });

  it('reports name-mismatch for a certificate of another name, and ok when servername is that name', async () => {
    const port = await servers.tls(certs.otherHost);
    const outcome = await run({ port, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'name-mismatch' });
    expect(outcome.message).toMatch(/^certificate is for DNS:other\.test, not 127\.0\.0\.1; /);
    expect((await run({ port, caFile, servername: 'other.test' })).state).toBe('ok');
  });

  it('reports untrusted for a self-signed certificate, and judges only the dates with tlsVerify false', async () => {
    const port = await servers.tls(certs.selfSigned);
    const outcome = await run({ port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'untrusted' });
    expect(outcome.message).toMatch(/^certificate chain not trusted: the certificate is self-signed \(DEPTH_ZERO_SELF_SIGNED_CERT\); /);
    expect(await run({ port, tlsVerify: false })).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('reports untrusted for an unknown CA (the system’s CAs) and for a chain missing its intermediate', async () => {
    const port = await servers.tls(certs.chained);
    const outcome = await run({ port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'untrusted' });
    expect(outcome.message).toMatch(/^certificate chain not trusted: the chain leads to a CA that is not trusted \(UNABLE_TO_GET_ISSUER_CERT_LOCALLY\); /);

    const leafAlone = await servers.tls({ key: certs.chained.key, cert: certs.chained.cert });
    const missing = await run({ port: leafAlone, caFile });
    expect(missing).toMatchObject({ state: 'crit', reason: 'untrusted' });
    expect(missing.message).toMatch(
      new RegExp(
        `^certificate chain not trusted: the issuer of the certificate is neither trusted nor sent \\(an unknown CA, or an intermediate missing from the chain\\) \\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\\); trusting the CAs in ${caFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; `,
      ),
    );
  });

  it('counts the soonest-expiring certificate of the chain: an intermediate expiring before the leaf', async () => {
    const port = await servers.tls(certs.chained);
    const outcome = await run({ port, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'expiring' });
    expect(outcome.message).toMatch(
      new RegExp(
        `^intermediate certificate CN=vigil test intermediate expires in 5\\.0 days \\(${DATE}\\), under the critical threshold of 7 days; ` +
          `127\\.0\\.0\\.1:${port}: TLSv1\\.3 \\S+ in ${NUM} ms, CN=chained\\.test issued by CN=vigil test intermediate, expires in 36\\d\\.\\d days \\(${DATE}\\); ` +
          `soonest to expire in the chain: intermediate certificate CN=vigil test intermediate, expires in 5\\.0 days \\(${DATE}\\)$`,
      ),
    );
    expect(metric(outcome, 'cert_days_remaining')?.value).toBeCloseTo(5, 1);
  });

  it('reports expiring: crit under certCritDays, warn under certWarnDays, ok above both', async () => {
    const port = await servers.tls(certs.expiring);
    const crit = await run({ port, caFile });
    expect(crit).toMatchObject({ state: 'crit', reason: 'expiring' });
    expect(crit.message).toMatch(new RegExp(`^certificate CN=localhost expires in 3\\.0 days \\(${DATE}\\), under the critical threshold of 7 days; `));
    const warn = await run({ port, caFile, certWarnDays: 5, certCritDays: 2 });
    expect(warn).toMatchObject({ state: 'warn', reason: 'expiring' });
    expect(warn.message).toContain('under the warning threshold of 5 days; ');
    expect(metric(warn, 'cert_days_remaining')).toMatchObject({ warn: 5, crit: 2 });
    expect((await run({ port, caFile, certWarnDays: 2, certCritDays: 1 })).state).toBe('ok');
  });

  it('names every problem, the worst giving the reason', async () => {
    const port = await servers.tls(certs.otherHost);
    const outcome = await run({ port, certWarnDays: 400, certCritDays: 1 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'untrusted' });
    expect(outcome.message).toMatch(/^certificate chain not trusted: .*; certificate is for DNS:other\.test, not 127\.0\.0\.1; certificate CN=other\.test expires in .* under the warning threshold of 400 days; /);
  });
});

describe('tls command: protocols', () => {
  it('reports protocol-too-old when the negotiated protocol is older than minProtocol', async () => {
    const port = await servers.tls(certs.leaf, { maxVersion: 'TLSv1.2' });
    const outcome = await run({ port, caFile, minProtocol: 'TLSv1.3' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'protocol-too-old' });
    expect(outcome.message).toMatch(new RegExp(`^negotiated TLSv1\\.2, older than minProtocol TLSv1\\.3; 127\\.0\\.0\\.1:${port}: TLSv1\\.2 ECDHE-`));
    expect((await run({ port, caFile })).state).toBe('ok');
  });

  it('reports protocol-too-old when the server offers nothing as new as minProtocol, and ok when minProtocol allows it', async () => {
    // TLSv1.1 needs OpenSSL's security level 0 on both sides.
    const port = await servers.tls(certs.leaf, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    const outcome = await run({ port, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'protocol-too-old' });
    expect(outcome.message).toBe(`127.0.0.1:${port} offers no protocol at or above TLSv1.2 (ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: tlsv1 alert protocol version)`);
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['connect_time']);
    const allowed = await run({ port, caFile, minProtocol: 'TLSv1' });
    expect(allowed).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(allowed.message).toContain(': TLSv1.1 ');
  });

  it('reports handshake-failed when the port does not speak TLS', async () => {
    const port = await servers.plain((socket) => socket.end('220 plain text here\r\n'));
    const outcome = await run({ port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'handshake-failed' });
    expect(outcome.message).toBe(`127.0.0.1:${port} TLS handshake failed: ERR_SSL_WRONG_VERSION_NUMBER (wrong version number)`);
  });
});

describe('tls command: connecting', () => {
  it('reports refused for a port nothing listens on', async () => {
    const port = await freePort();
    expect(await run({ port })).toEqual({ state: 'crit', reason: 'refused', message: `connection refused by 127.0.0.1:${port}`, metrics: [] });
  });

  it('reports dns for a host name that cannot be resolved', async () => {
    const outcome = await run({ host: UNRESOLVABLE, port: 443 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'dns', message: `cannot resolve host ${UNRESOLVABLE} (ENOTFOUND)` });
  });

  it('reports timeout in the handshake with a server that never answers, and closes the connection', async () => {
    let serverSide: Socket | undefined;
    const port = await servers.plain((socket) => {
      serverSide = socket;
      // Reading, the server sees the client close.
      socket.resume();
    });
    const outcome = await run({ port }, AbortSignal.timeout(200));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out in the TLS handshake with 127.0.0.1:${port}` });
    expect(metric(outcome, 'connect_time')).toBeDefined();
    if (!(serverSide as Socket).destroyed) await once(serverSide as Socket, 'close');
    expect(serverSide?.destroyed).toBe(true);
  });

  it('reports timeout without connecting when the run is aborted already', async () => {
    let connections = 0;
    const port = await servers.plain(() => connections++);
    const outcome = await run({ port }, AbortSignal.abort());
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: `timed out before connecting to 127.0.0.1:${port}` });
    expect(connections).toBe(0);
  });
});

describe('tls command: STARTTLS', () => {
  it.each(['smtp', 'imap', 'pop3', 'ftp', 'postgres'] as const)('upgrades %s and judges the certificate', async (protocol) => {
    const server = await servers.starttls(protocol, certs.leaf);
    const outcome = await run({ port: server.port, starttls: protocol, caFile });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${server.port} \\(STARTTLS ${protocol}\\): TLSv1\\.3 \\S+ in ${NUM} ms, CN=localhost issued by CN=vigil test CA, `));
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['connect_time', 'starttls_time', 'handshake_time', 'cert_days_remaining']);
    const [session] = server.sessions;
    const said = { smtp: [`EHLO ${hostname()}`, 'STARTTLS'], imap: ['V1 STARTTLS'], pop3: ['STLS'], ftp: ['AUTH TLS'], postgres: ['0000000804d2162f'] };
    expect(session?.plain).toEqual(said[protocol]);
    // Over TLS, the client says goodbye as the protocol does (a PostgreSQL client just closes).
    const goodbye = { smtp: 'QUIT\r\n', imap: 'V2 LOGOUT\r\n', pop3: 'QUIT\r\n', ftp: 'QUIT\r\n', postgres: '' };
    expect(await session?.secure).toBe(goodbye[protocol]);
  });

  it.each([
    ['smtp', 'the server does not offer STARTTLS (EHLO lists SIZE)'],
    ['imap', 'STARTTLS was answered "V1 BAD STARTTLS not available"'],
    ['pop3', 'STLS was answered "-ERR not available"'],
    ['ftp', 'AUTH TLS was answered "530 not available"'],
    ['postgres', 'the server does not accept SSL (it answered N to the SSLRequest; is ssl off?)'],
  ] as const)('reports starttls-refused when the %s server refuses', async (protocol, why) => {
    const server = await servers.starttls(protocol, certs.leaf, { refuse: true });
    const outcome = await run({ port: server.port, starttls: protocol, caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'starttls-refused', message: `127.0.0.1:${server.port} (STARTTLS ${protocol}) did not switch to TLS: ${why}` });
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['connect_time']);
  });

  it('refuses a server that sends more in clear after agreeing, before the handshake', async () => {
    const server = await servers.starttls('smtp', certs.leaf, { strayData: '250 injected\r\n' });
    const outcome = await run({ port: server.port, starttls: 'smtp', caFile });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'starttls-refused' });
    expect(outcome.message).toBe(`127.0.0.1:${server.port} (STARTTLS smtp) did not switch to TLS: the server sent "250 injected\\r\\n" after agreeing to TLS, before the handshake`);
  });

  it('reports starttls-refused for a server that is not of the protocol, or closes, or floods', async () => {
    const http = await servers.plain((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    expect((await run({ port: http, starttls: 'smtp' })).message).toBe(
      `127.0.0.1:${http} (STARTTLS smtp) did not switch to TLS: expected a numbered reply as the banner, got "HTTP/1.1 400 Bad Request"`,
    );
    const closing = await servers.plain((socket) => socket.end());
    expect(await run({ port: closing, starttls: 'pop3' })).toMatchObject({
      reason: 'starttls-refused',
      message: `127.0.0.1:${closing} (STARTTLS pop3) did not switch to TLS: the server closed the connection`,
    });
    const flood = await servers.plain((socket) => socket.write('x'.repeat(5000)));
    expect((await run({ port: flood, starttls: 'imap' })).message).toBe(
      `127.0.0.1:${flood} (STARTTLS imap) did not switch to TLS: the greeting is longer than 4096 bytes without a line break`,
    );
  });

  it('reports connection-error for a connection reset in the dialogue', async () => {
    const port = await servers.plain((socket) => {
      socket.write('220 fake.test ESMTP\r\n');
      socket.once('data', () => socket.resetAndDestroy());
    });
    const outcome = await run({ port, starttls: 'smtp' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'connection-error' });
    expect(outcome.message).toMatch(new RegExp(`^ECONNRESET waiting for the reply to EHLO from 127\\.0\\.0\\.1:${port} \\(STARTTLS smtp\\) \\(`));
  });

  it('reports timeout waiting for a reply in the dialogue, saying which', async () => {
    const server = await servers.starttls('smtp', certs.leaf, { mute: true });
    const outcome = await run({ port: server.port, starttls: 'smtp' }, AbortSignal.timeout(200));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for the reply to EHLO from 127.0.0.1:${server.port} (STARTTLS smtp)` });
  });
});
