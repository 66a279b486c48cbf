import { generate } from 'selfsigned';
import { testCertificates, type KeyAndCert, type TestCertificates } from '../../helpers/tls.js';

/**
 * The certificates the `tls` and `smtp` tests serve: those of test/helpers/tls.ts (a CA, a valid leaf,
 * one expiring in 3 days, one for another name, a self-signed one) and those with dates or a chain of
 * their own. All for 127.0.0.1 and localhost unless said, signed by the shared CA unless said.
 */
export interface TlsTestCertificates extends TestCertificates {
  /** Ended a day ago. */
  readonly expired: KeyAndCert;
  /** Valid from 10 days from now. */
  readonly notYetValid: KeyAndCert;
  /** A CA signed by `ca`, expiring in 5 days. */
  readonly intermediate: KeyAndCert;
  /** Signed by `intermediate`, valid for a year; `cert` is the leaf alone (`chain` adds the intermediate). */
  readonly chained: KeyAndCert & { readonly chain: string };
}

const DAY_MS = 86_400_000;
let made: Promise<TlsTestCertificates> | undefined;

/** Made once per test file. */
export function tlsTestCertificates(): Promise<TlsTestCertificates> {
  return (made ??= makeCertificates());
}

async function makeCertificates(): Promise<TlsTestCertificates> {
  const shared = await testCertificates();
  const now = Date.now();
  const [expired, notYetValid, intermediate] = await Promise.all([
    issue('expired.test', { from: now - 10 * DAY_MS, to: now - DAY_MS, ca: shared.ca }),
    issue('early.test', { from: now + 10 * DAY_MS, to: now + 375 * DAY_MS, ca: shared.ca }),
    issue('vigil test intermediate', { from: now - 3_600_000, to: now + 5 * DAY_MS, ca: shared.ca, isCa: true }),
  ]);
  const leaf = await issue('chained.test', { from: now - 3_600_000, to: now + 365 * DAY_MS, ca: intermediate });
  return { ...shared, expired, notYetValid, intermediate, chained: { ...leaf, chain: `${leaf.cert.trim()}\n${intermediate.cert.trim()}\n` } };
}

interface IssueOptions {
  /** Epoch milliseconds. */
  readonly from: number;
  /** Epoch milliseconds. */
  readonly to: number;
  readonly ca: KeyAndCert;
  /** A CA certificate (no names), rather than a server's for 127.0.0.1 and localhost. */
  readonly isCa?: boolean;
}

async function issue(commonName: string, options: IssueOptions): Promise<KeyAndCert> {
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: new Date(options.from),
    notAfterDate: new Date(options.to),
    ca: { key: options.ca.key, cert: options.ca.cert },
    extensions: options.isCa
      ? [
          { name: 'basicConstraints', cA: true, critical: true },
          { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
        ]
      : [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          {
            name: 'subjectAltName',
            altNames: [
              { type: 7, ip: '127.0.0.1' },
              { type: 2, value: 'localhost' },
            ],
          },
        ],
  });
  return { key: pems.private, cert: pems.cert };
}
