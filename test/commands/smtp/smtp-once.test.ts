import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CliResult } from '../../helpers/cli.js';
import { tlsTestCertificates, type TlsTestCertificates } from '../tls/certificates.js';
import { expectLine, NUM, runOnce } from '../../helpers/once.js';

/**
 * `vigil once` for an `smtp` check, through the built CLI: STARTTLS, AUTH with a password from the
 * environment (`${…}` in the config), and a recipient the server rejects.
 */

const PASSWORD = 'once upon a password';
let certs: TlsTestCertificates;
let dir: string;
let server: SMTPServer | undefined;

beforeAll(async () => {
  certs = await tlsTestCertificates();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-smtp-once-'));
});
afterEach(async () => {
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** smtp-server on 127.0.0.1 with STARTTLS, AUTH for `vigil` with PASSWORD, rejecting recipients at nobody@. */
async function startSmtp(): Promise<number> {
  server = new SMTPServer({
    key: certs.leaf.key,
    cert: certs.leaf.cert,
    logger: false,
    disableReverseLookup: true,
    closeTimeout: 1,
    onAuth(auth, _session, callback) {
      if (auth.username === 'vigil' && auth.password === PASSWORD) callback(null, { user: 'vigil' });
      else callback(new Error('Invalid username or password'));
    },
    onRcptTo(address, _session, callback) {
      callback(address.address.startsWith('nobody@') ? Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }) : null);
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return (server.server.address() as AddressInfo).port;
}

/** Writes a config with one `smtp` check whose password is `${VIGIL_TEST_SMTP_PASSWORD}`, and runs `vigil once` on it. */
async function once(id: string, attributes: Record<string, unknown>): Promise<CliResult> {
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, certs.ca.cert);
  const check = { id, command: 'smtp', attributes: { caFile, starttls: true, username: 'vigil', password: '${VIGIL_TEST_SMTP_PASSWORD}', ...attributes } };
  const result = await runOnce(dir, check, { VIGIL_TEST_SMTP_PASSWORD: PASSWORD });
  expect(result.stdout).not.toContain(PASSWORD);
  return result;
}


describe('vigil once: smtp', () => {
  it('prints OK with the dialogue and its timings and exits 0 after STARTTLS, AUTH and a probe', async () => {
    const port = await startSmtp();
    const result = await once('mx', { host: '127.0.0.1', port, mailFrom: 'probe@vigil.test', rcptTo: 'postmaster@example.test' });
    expectLine(
      result,
      `mx OK ok: 127\\.0\\.0\\.1:${port} answered in ${NUM} ms: banner "220 \\S+ ESMTP" in ${NUM} ms; STARTTLS TLSv1\\.3 .*; authenticated as vigil \\(PLAIN\\); ` +
        `sender <probe@vigil\\.test> accepted; recipient <postmaster@example\\.test> accepted ` +
        `\\| connect_time=${NUM}ms banner_time=${NUM}ms response_time=${NUM}ms handshake_time=${NUM}ms cert_days_remaining=${NUM}d;14;7`,
      0,
    );
  });

  it('prints CRIT recipient-rejected and exits 2 for a recipient the server refuses', async () => {
    const port = await startSmtp();
    const result = await once('mx', { host: '127.0.0.1', port, mailFrom: 'probe@vigil.test', rcptTo: 'nobody@example.test' });
    expectLine(
      result,
      `mx CRIT recipient-rejected: 127\\.0\\.0\\.1:${port} rejected RCPT TO <nobody@example\\.test>: "550 5\\.1\\.1 no such user" ` +
        `\\| connect_time=${NUM}ms banner_time=${NUM}ms handshake_time=${NUM}ms cert_days_remaining=${NUM}d;14;7`,
      2,
    );
  });
});
