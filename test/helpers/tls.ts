import { generate } from 'selfsigned';

/** A private key and its certificate, PEM: what `https.createServer({ key, cert })` takes. */
export interface KeyAndCert {
  readonly key: string;
  readonly cert: string;
}

/** Certificates for HTTPS servers on 127.0.0.1, all made at once the first time a test asks. */
export interface TestCertificates {
  /** A CA certificate (and key); a `caFile` with `ca.cert` makes the leaves below verify. */
  readonly ca: KeyAndCert;
  /** For 127.0.0.1 and localhost, signed by `ca`, valid for a year. */
  readonly leaf: KeyAndCert;
  /** For 127.0.0.1 and localhost, signed by `ca`, expiring in 3 days. */
  readonly expiring: KeyAndCert;
  /** Signed by `ca` for `other.test` only: a host name mismatch on 127.0.0.1. */
  readonly otherHost: KeyAndCert;
  /** For 127.0.0.1 and localhost, signed by its own key, valid for a year. */
  readonly selfSigned: KeyAndCert;
}

const DAY_MS = 86_400_000;
let made: Promise<TestCertificates> | undefined;

/** The test certificates, made once per test file (EC P-256 keys: a few milliseconds each). */
export function testCertificates(): Promise<TestCertificates> {
  return (made ??= makeCertificates());
}

async function makeCertificates(): Promise<TestCertificates> {
  const ca = await certificate('vigil test CA', {
    days: 30,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const [leaf, expiring, otherHost, selfSigned] = await Promise.all([
    certificate('localhost', { days: 365, ca, names: ['localhost', '127.0.0.1'] }),
    certificate('localhost', { days: 3, ca, names: ['localhost', '127.0.0.1'] }),
    certificate('other.test', { days: 365, ca, names: ['other.test'] }),
    certificate('localhost', { days: 365, names: ['localhost', '127.0.0.1'] }),
  ]);
  return { ca, leaf, expiring, otherHost, selfSigned };
}

interface CertificateOptions {
  /** Validity from now; it started an hour ago, so that no clock difference makes it "not yet valid". */
  readonly days: number;
  /** Signed by this CA; self-signed without it. */
  readonly ca?: KeyAndCert;
  /** Subject alternative names: IPv4 addresses or DNS names. */
  readonly names?: readonly string[];
  readonly extensions?: NonNullable<Parameters<typeof generate>[1]>['extensions'];
}

async function certificate(commonName: string, options: CertificateOptions): Promise<KeyAndCert> {
  const now = Date.now();
  const altNames = (options.names ?? []).map((name) => (/^\d+\.\d+\.\d+\.\d+$/.test(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name }));
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 3_600_000),
    notAfterDate: new Date(now + options.days * DAY_MS),
    ...(options.ca === undefined ? {} : { ca: { key: options.ca.key, cert: options.ca.cert } }),
    extensions: options.extensions ?? [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}
