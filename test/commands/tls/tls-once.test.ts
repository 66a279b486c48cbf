import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, it } from 'vitest';
import { type CliResult } from '../../helpers/cli.js';
import { tlsTestCertificates, type TlsTestCertificates } from './certificates.js';
import { TestServers } from './servers.js';
import { expectLine, NUM, runOnce } from '../../helpers/once.js';

/**
 * `vigil once` for a `tls` check, through the built CLI as an operator or Nagios runs it: the printed
 * line (`ID STATE reason: message | perfdata`) and the Nagios exit code.
 */

const DATE = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
const servers = new TestServers();
let certs: TlsTestCertificates;
let dir: string;

beforeAll(async () => {
  certs = await tlsTestCertificates();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-tls-once-'));
});
afterEach(async () => {
  await servers.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes a config with one `tls` check `id` and runs `vigil once id` on it. */
function once(id: string, attributes: Record<string, unknown>): Promise<CliResult> {
  return runOnce(dir, { id, command: 'tls', attributes });
}

async function caFile(): Promise<string> {
  const file = join(dir, 'ca.pem');
  await writeFile(file, certs.ca.cert);
  return file;
}


describe('vigil once: tls', () => {
  it('prints OK with protocol, certificate and days left and exits 0 for a valid certificate after STARTTLS', async () => {
    const server = await servers.starttls('smtp', certs.leaf);
    const result = await once('mail-tls', { host: '127.0.0.1', port: server.port, starttls: 'smtp', caFile: await caFile(), certWarnDays: 20, certCritDays: 10 });
    expectLine(
      result,
      `mail-tls OK ok: 127\\.0\\.0\\.1:${server.port} \\(STARTTLS smtp\\): TLSv1\\.3 \\S+ in ${NUM} ms, CN=localhost issued by CN=vigil test CA, expires in 36\\d\\.\\d days \\(${DATE}\\); ` +
        `soonest to expire in the chain: root certificate CN=vigil test CA, expires in 30\\.0 days \\(${DATE}\\) ` +
        `\\| connect_time=${NUM}ms starttls_time=${NUM}ms handshake_time=${NUM}ms cert_days_remaining=${NUM}d;20;10`,
      0,
    );
  });

  it('prints CRIT untrusted and exits 2 for a self-signed certificate', async () => {
    const port = await servers.tls(certs.selfSigned);
    const result = await once('web-tls', { host: '127.0.0.1', port });
    expectLine(
      result,
      `web-tls CRIT untrusted: certificate chain not trusted: the certificate is self-signed \\(DEPTH_ZERO_SELF_SIGNED_CERT\\); 127\\.0\\.0\\.1:${port}: TLSv1\\.3 .* ` +
        `\\| connect_time=${NUM}ms handshake_time=${NUM}ms cert_days_remaining=${NUM}d;14;7`,
      2,
    );
  });

  it('prints WARN expiring and exits 1 for a certificate under the warning threshold', async () => {
    const port = await servers.tls(certs.expiring);
    const result = await once('web-tls', { host: '127.0.0.1', port, caFile: await caFile(), certWarnDays: 5, certCritDays: 2 });
    expectLine(result, `web-tls WARN expiring: certificate CN=localhost expires in 3\\.0 days \\(${DATE}\\), under the warning threshold of 5 days; .* cert_days_remaining=${NUM}d;5;2`, 1);
  });
});
