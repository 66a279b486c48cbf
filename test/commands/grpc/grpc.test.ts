import { status } from '@grpc/grpc-js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { grpcCommand, type GrpcAttributes } from '../../../src/commands/grpc/grpc.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { freePort } from '../../helpers/processes.js';
import { testCertificates, type TestCertificates } from '../../helpers/tls.js';
import { ConnectionWatcher, TestHealthServer, type HealthServerOptions } from './health-server.js';

/** Rejected by the resolver on this machine without a query leaving it (a label may have at most 63 characters). */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
const NUM = String.raw`\d+(?:\.\d+)?`;

const grpc = grpcCommand();
const logger = silentLogger();

function ctx(signal: AbortSignal = AbortSignal.timeout(5000), deadline = Date.now() + 5000): CommandContext {
  return { checkId: 'g', signal, deadline, logger, previous: null };
}

function parse(raw: unknown): GrpcAttributes {
  const parsed = grpc.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: unknown): string[] {
  const parsed = grpc.parse(raw);
  if (parsed.ok) throw new Error(`expected issues for ${JSON.stringify(raw)}`);
  return parsed.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

function run(raw: Record<string, unknown>, context: CommandContext = ctx()): Promise<CommandOutcome> {
  return grpc.run(parse(raw), context);
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(options: HealthServerOptions = {}): Promise<TestHealthServer> {
  const started = await TestHealthServer.start(options);
  cleanups.push(() => started.close());
  return started;
}

let certs: TestCertificates;
let dir: string;
let caFile: string;
beforeAll(async () => {
  certs = await testCertificates();
  dir = mkdtempSync(join(tmpdir(), 'vigil-grpc-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, certs.ca.cert);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
}

describe('grpc command: attributes', () => {
  it('takes host and port, and defaults to the whole server over plaintext', () => {
    const attrs = parse({ host: 'localhost', port: 50051 });
    expect(attrs).toMatchObject({ host: 'localhost', port: 50051, target: 'localhost:50051', service: '', tls: false, metadata: [] });
    expect(attrs.request).toEqual(Buffer.alloc(0));
    expect(attrs).not.toHaveProperty('tlsSettings');
  });

  it('brackets an IPv6 address in the target', () => {
    expect(parse({ host: '::1', port: 50051 }).target).toBe('[::1]:50051');
    expect(parse({ host: '[::1]', port: 50051 }).target).toBe('[::1]:50051');
  });

  it('reads the TLS settings with their defaults, and the CA file at load time', () => {
    const attrs = parse({ host: 'localhost', port: 443, tls: true, caFile, servername: 'api.example.org' });
    expect(attrs.tlsSettings).toMatchObject({ tlsVerify: true, caFile, servername: 'api.example.org', certWarnDays: 14, certCritDays: 7 });
    expect(attrs.tlsSettings?.ca?.toString()).toBe(certs.ca.cert);
    expect(parse({ host: 'h', port: 1, tls: true, certCritDays: 20 }).tlsSettings).toMatchObject({ certWarnDays: 20, certCritDays: 20 });
  });

  it('lower-cases metadata keys', () => {
    expect(parse({ host: 'h', port: 1, metadata: { 'X-Team': 'payments' } }).metadata).toEqual([['x-team', 'payments']]);
  });

  it('reports each problem at its path', () => {
    expect(issues({ host: '', port: 70000, bogus: 1 })).toEqual([
      'host: expected a host name or IP address, got ""',
      'port: expected an integer 1–65535, got 70000',
      'bogus: unknown key',
    ]);
    expect(issues({ host: 'h', port: 1, caFile, tlsVerify: false })).toEqual(['tlsVerify: expected only with tls: true, got false', `caFile: expected only with tls: true, got ${JSON.stringify(caFile)}`]);
    expect(issues({ host: 'h', port: 1, responseWarnMs: '2s', responseCritMs: '1s' })).toEqual(['responseWarnMs: expected a duration no longer than responseCritMs (1000ms), got "2s"']);
    expect(issues({ host: 'h', port: 1, tls: true, certWarnDays: 3, certCritDays: 5 })).toEqual(['certWarnDays: expected at least certCritDays (5), got 3']);
    expect(issues({ host: 'h', port: 1, tls: true, caFile: join(dir, 'missing.pem') })[0]).toMatch(/^caFile: expected a readable PEM file of CA certificates \(cannot read .*missing\.pem: ENOENT\)/);
  });

  it('refuses metadata gRPC would refuse, without quoting a value', () => {
    const secret = 'Bearer s3cr3t\nX-Injected: 1';
    const found = issues({ host: 'h', port: 1, metadata: { authorization: secret, 'grpc-timeout': '1S', 'bad key': 'v', 'token-bin': 'AAAA' } });
    expect(found).toEqual([
      'metadata: expected printable ASCII in the value of "authorization" (no line breaks or other control characters), got an object',
      'metadata: expected keys that do not start with grpc-, which gRPC reserves (not "grpc-timeout"), got an object',
      'metadata: expected keys of letters, digits, -, _ and . (not "bad key"), got an object',
      'metadata: expected text keys: binary (-bin) metadata is not supported (not "token-bin"), got an object',
    ]);
    expect(found.join('\n')).not.toContain('s3cr3t');
  });
});

describe('grpc command: running against a health server on 127.0.0.1', () => {
  it('reports serving with the response time for a SERVING server', async () => {
    const health = await server();
    const outcome = await run({ host: '127.0.0.1', port: health.port });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'serving' });
    expect(outcome.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${health.port} is SERVING, answered in ${NUM} ms$`));
    expect(metric(outcome, 'response_time')).toMatchObject({ unit: 'ms', kind: 'gauge' });
    expect(health.calls).toEqual([{ service: '', metadata: expect.objectContaining({ 'user-agent': expect.stringMatching(/^vigil\/\S+ grpc-node-js\//) as unknown }) as unknown }]);
  });

  it('resolves a host name (localhost, from the hosts file)', async () => {
    const health = await server();
    const outcome = await run({ host: 'localhost', port: health.port });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'serving' });
    expect(outcome.message).toMatch(new RegExp(`^localhost:${health.port} is SERVING`));
  });

  it('asks about the named service and sends the metadata', async () => {
    const health = await server({ services: { '': 2, 'app.Orders': 1 } });
    const outcome = await run({ host: '127.0.0.1', port: health.port, service: 'app.Orders', metadata: { Authorization: 'Bearer t0ken', 'x-team': 'payments' } });
    expect(outcome.reason).toBe('serving');
    expect(outcome.message).toMatch(new RegExp(`^service app\\.Orders at 127\\.0\\.0\\.1:${health.port} is SERVING`));
    expect(outcome.message).not.toContain('t0ken');
    expect(health.calls[0]?.service).toBe('app.Orders');
    expect(health.calls[0]?.metadata).toMatchObject({ authorization: 'Bearer t0ken', 'x-team': 'payments' });
  });

  it('reports not-serving for NOT_SERVING and for UNKNOWN', async () => {
    const health = await server({ services: { '': 2, starting: 0 } });
    const down = await run({ host: '127.0.0.1', port: health.port });
    expect(down).toMatchObject({ state: 'crit', reason: 'not-serving' });
    expect(down.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${health.port} is NOT_SERVING, answered in ${NUM} ms$`));
    expect(metric(down, 'response_time')).toBeDefined();
    const unknown = await run({ host: '127.0.0.1', port: health.port, service: 'starting' });
    expect(unknown).toMatchObject({ state: 'crit', reason: 'not-serving' });
    expect(unknown.message).toContain('is UNKNOWN');
  });

  it('reports unknown-service when the server answers NOT_FOUND, or SERVICE_UNKNOWN', async () => {
    const health = await server({ services: { '': 1, gone: 3 } });
    const outcome = await run({ host: '127.0.0.1', port: health.port, service: 'app.Missing' });
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'unknown-service',
      message: `127.0.0.1:${health.port} does not know the service app.Missing (NOT_FOUND: unknown service)`,
    });
    const gone = await run({ host: '127.0.0.1', port: health.port, service: 'gone' });
    expect(gone).toMatchObject({ state: 'crit', reason: 'unknown-service' });
    expect(gone.message).toContain('is SERVICE_UNKNOWN');
  });

  it('reports unimplemented for a gRPC server without the health service', async () => {
    const health = await server({ withoutHealth: true });
    const outcome = await run({ host: '127.0.0.1', port: health.port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unimplemented' });
    expect(outcome.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${health.port} does not implement grpc\\.health\\.v1\\.Health \\(UNIMPLEMENTED`));
  });

  it('reports grpc-error, naming the status, for any other status', async () => {
    const health = await server({ services: { '': { error: status.PERMISSION_DENIED, details: 'not for you' } } });
    const outcome = await run({ host: '127.0.0.1', port: health.port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'grpc-error', message: `127.0.0.1:${health.port} answered PERMISSION_DENIED: not for you` });
  });

  it('reports unavailable when the server itself answers UNAVAILABLE', async () => {
    const health = await server({ services: { '': { error: status.UNAVAILABLE, details: 'draining' } } });
    const outcome = await run({ host: '127.0.0.1', port: health.port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unavailable', message: `127.0.0.1:${health.port} answered UNAVAILABLE: draining` });
  });

  it('reports bad-response for an answer that is not a HealthCheckResponse', async () => {
    const health = await server({ services: { '': { bytes: Buffer.from('<html>') } } });
    const outcome = await run({ host: '127.0.0.1', port: health.port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'bad-response' });
    expect(outcome.message).toBe(`127.0.0.1:${health.port} answered with bytes that are not a HealthCheckResponse (wire type 4 at byte 1)`);
  });

  it('reports unavailable for a port nothing listens on', async () => {
    const port = await freePort();
    const outcome = await run({ host: '127.0.0.1', port });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unavailable', message: `cannot connect to 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}` });
    expect(outcome.metrics ?? []).toEqual([]);
  });

  it('reports dns for a host name that does not resolve', async () => {
    const outcome = await run({ host: UNRESOLVABLE, port: 50051 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'dns' });
    expect(outcome.message).toBe(`cannot resolve host ${UNRESOLVABLE} (Name resolution failed for target dns:${UNRESOLVABLE}:50051)`);
  });

  it("reports timeout at the call's deadline (DEADLINE_EXCEEDED) for a server that never answers, which sees the call cancelled", async () => {
    const health = await server({ services: { '': 'hang' } });
    // A signal that never aborts: the deadline given to grpc-js ends the call.
    const outcome = await run({ host: '127.0.0.1', port: health.port }, ctx(new AbortController().signal, Date.now() + 300));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(outcome.message).toMatch(new RegExp(`^timed out (waiting for the answer from|connecting to) 127\\.0\\.0\\.1:${health.port} \\(DEADLINE_EXCEEDED after ${NUM} ms\\)$`));
    await expect.poll(() => health.cancelled).toBe(1);
  });

  it('reports timeout when aborted (the server stops) before the deadline', async () => {
    const health = await server({ services: { '': 'hang' } });
    const controller = new AbortController();
    const outcome = run({ host: '127.0.0.1', port: health.port }, ctx(controller.signal));
    await expect.poll(() => health.calls.length).toBe(1);
    controller.abort(new DOMException('stopping', 'AbortError'));
    expect(await outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out waiting for the answer from 127.0.0.1:${health.port}` });
  });

  it('reports timeout without connecting when already aborted', async () => {
    const health = await server();
    const outcome = await run({ host: '127.0.0.1', port: health.port }, ctx(AbortSignal.abort()));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out before connecting to 127.0.0.1:${health.port}` });
    expect(health.calls).toEqual([]);
  });

  it('reports slow-response at or above a threshold', async () => {
    const health = await server();
    const outcome = await run({ host: '127.0.0.1', port: health.port, responseWarnMs: 0 });
    expect(outcome).toMatchObject({ state: 'warn', reason: 'slow-response' });
    expect(outcome.message).toMatch(/is SERVING, answered in .* ms: response time at or above the warning threshold of 0 ms$/);
    expect(metric(outcome, 'response_time')).toMatchObject({ warn: 0 });
    const crit = await run({ host: '127.0.0.1', port: health.port, responseWarnMs: 0, responseCritMs: 0 });
    expect(crit).toMatchObject({ state: 'crit', reason: 'slow-response' });
  });

  it('opens a connection per run and closes it, on an answer and on an abort', async () => {
    const health = await server({ services: { '': 1, slow: 'hang' } });
    const watcher = await ConnectionWatcher.start(health.port);
    cleanups.push(() => watcher.close());
    expect((await run({ host: '127.0.0.1', port: watcher.port })).reason).toBe('serving');
    expect((await run({ host: '127.0.0.1', port: watcher.port })).reason).toBe('serving');
    expect((await run({ host: '127.0.0.1', port: watcher.port, service: 'slow' }, ctx(AbortSignal.timeout(200)))).reason).toBe('timeout');
    expect(watcher.connections).toHaveLength(3);
    await watcher.allClosed();
    expect(watcher.connections.every((socket) => socket.closed)).toBe(true);
  });
});

describe('grpc command: TLS', () => {
  it('reports serving and the days left on the certificate with the test CA trusted', async () => {
    const health = await server({ tls: certs.leaf });
    const outcome = await run({ host: '127.0.0.1', port: health.port, tls: true, caFile });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'serving' });
    const days = metric(outcome, 'cert_days_remaining');
    expect(days).toMatchObject({ unit: 'd', warn: 14, crit: 7 });
    expect(days?.value).toBeGreaterThan(360);
  });

  it('verifies against the servername when one is given', async () => {
    const health = await server({ tls: certs.otherHost });
    const trusted = await run({ host: '127.0.0.1', port: health.port, tls: true, caFile, servername: 'other.test' });
    expect(trusted.reason).toBe('serving');
    const mismatch = await run({ host: '127.0.0.1', port: health.port, tls: true, caFile });
    expect(mismatch).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(mismatch.message).toMatch(new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${health.port} failed: ERR_TLS_CERT_ALTNAME_INVALID: .*; trusting the CAs in ${caFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  });

  it('reports tls-error for a certificate from a CA it does not trust, unless tlsVerify is false', async () => {
    const health = await server({ tls: certs.leaf });
    const untrusted = await run({ host: '127.0.0.1', port: health.port, tls: true });
    expect(untrusted).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(untrusted.message).toMatch(new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${health.port} failed: (unable to verify the first certificate|unable to get local issuer certificate)$`));
    const unverified = await run({ host: '127.0.0.1', port: health.port, tls: true, tlsVerify: false });
    expect(unverified).toMatchObject({ state: 'ok', reason: 'serving' });
  });

  it('reports tls-error when the server speaks plaintext, and unavailable for plaintext to a TLS server', async () => {
    const plain = await server();
    const toPlain = await run({ host: '127.0.0.1', port: plain.port, tls: true });
    expect(toPlain).toMatchObject({ state: 'crit', reason: 'tls-error' });
    expect(toPlain.message).toMatch(/wrong version number/);
    const secure = await server({ tls: certs.leaf });
    const toSecure = await run({ host: '127.0.0.1', port: secure.port });
    expect(toSecure).toMatchObject({ state: 'crit', reason: 'unavailable' });
    expect(toSecure.message).toMatch(new RegExp(`^cannot connect to 127\\.0\\.0\\.1:${secure.port}: `));
  });

  it('reports cert-expiring for a certificate inside the thresholds', async () => {
    const health = await server({ tls: certs.expiring });
    const crit = await run({ host: '127.0.0.1', port: health.port, tls: true, caFile });
    expect(crit).toMatchObject({ state: 'crit', reason: 'cert-expiring' });
    expect(crit.message).toMatch(new RegExp(`is SERVING, answered in ${NUM} ms: certificate of 127\\.0\\.0\\.1:${health.port} expires in 3\\.0 days \\(\\S+Z\\), under the critical threshold of 7 days$`));
    const warn = await run({ host: '127.0.0.1', port: health.port, tls: true, caFile, certCritDays: 1 });
    expect(warn).toMatchObject({ state: 'warn', reason: 'cert-expiring' });
    expect(warn.message).toContain('under the warning threshold of 14 days');
  });
});
