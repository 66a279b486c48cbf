import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { errorCode, errorMessage } from '../core/errors.js';
import { gauge, type Metric } from '../results/metric.js';
import type { State } from '../results/result.js';
import { integer } from '../validation/schema-types.js';

/**
 * The TLS attributes of the `grpc`, `websocket`, `tls` and `smtp` commands, worded as `http`'s
 * (`tlsVerify`, `caFile`, `servername`, `certWarnDays`, `certCritDays`), and how a certificate's
 * remaining days are judged.
 */

/** `caFile` after parsing: the file's absolute path (for messages) and its contents (for the TLS context). */
export interface CaFile {
  readonly file: string;
  readonly ca: Buffer;
}

const caFileError = 'expected a readable PEM file of CA certificates';

/** Reads `caFile` at load time, so that a missing or unreadable file is a config error that names it. */
function readCaFile(path: string, ctx: z.RefinementCtx<string>): CaFile {
  const file = resolve(path);
  let ca: Buffer;
  try {
    ca = readFileSync(file);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `${caFileError} (cannot read ${file}: ${errorCode(error) ?? errorMessage(error)})`, input: path });
    return z.NEVER;
  }
  try {
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no certificate in it');
    new X509Certificate(ca);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `${caFileError} (${file}: ${errorMessage(error)})`, input: path });
    return z.NEVER;
  }
  return { file, ca };
}

/** The schema fields; each command says when they apply (`tls: true`, a `wss://` URL). */
export const tlsFields = {
  /** Verify the certificate chain and host name; default true. */
  tlsVerify: z.boolean({ error: 'expected true or false' }).optional(),
  /** A PEM file of CA certificates trusted instead of the system's; read at load time. */
  caFile: z.string({ error: 'expected a path to a PEM file of CA certificates' }).min(1, { error: 'expected a path to a PEM file of CA certificates' }).transform(readCaFile).optional(),
  /** The name sent in SNI and verified against the certificate instead of the host's. */
  servername: z
    .string({ error: 'expected a host name' })
    .regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/, { error: 'expected a host name' })
    .optional(),
  /** Days of certificate validity under which the result is `warn`; default 14. */
  certWarnDays: integer(0, 3650).optional(),
  /** Days of certificate validity under which the result is `crit`; default 7. */
  certCritDays: integer(0, 3650).optional(),
};

/** The names of `tlsFields`: attributes that only make sense over TLS. */
export const TLS_ONLY = ['tlsVerify', 'caFile', 'servername', 'certWarnDays', 'certCritDays'] as const;

/** The TLS fields as parsed, before defaults. */
interface TlsFields {
  readonly tlsVerify?: boolean | undefined;
  readonly caFile?: CaFile | undefined;
  readonly servername?: string | undefined;
  readonly certWarnDays?: number | undefined;
  readonly certCritDays?: number | undefined;
}

/** The TLS settings of a run, after parsing. */
export interface TlsSettings {
  /** Default true. */
  readonly tlsVerify: boolean;
  readonly ca?: Buffer;
  /** `caFile`, resolved to an absolute path. */
  readonly caFile?: string;
  readonly servername?: string;
  /** Default 14 (or `certCritDays` when that is higher). */
  readonly certWarnDays: number;
  /** Default 7 (or `certWarnDays` when that is lower). */
  readonly certCritDays: number;
}

const DEFAULT_CERT_WARN_DAYS = 14;
const DEFAULT_CERT_CRIT_DAYS = 7;

/** An issue when `certWarnDays` is below `certCritDays`; for a `superRefine`. */
export function checkCertDays(value: TlsFields, ctx: z.RefinementCtx): void {
  const { certWarnDays, certCritDays } = value;
  if (certWarnDays !== undefined && certCritDays !== undefined && certWarnDays < certCritDays) {
    ctx.addIssue({ code: 'custom', path: ['certWarnDays'], message: `expected at least certCritDays (${certCritDays})` });
  }
}

/** The settings with their defaults; a threshold given alone moves the other's default out of its way. */
export function toTlsSettings(value: TlsFields): TlsSettings {
  const certCritDays = value.certCritDays ?? Math.min(DEFAULT_CERT_CRIT_DAYS, value.certWarnDays ?? DEFAULT_CERT_WARN_DAYS);
  const certWarnDays = value.certWarnDays ?? Math.max(DEFAULT_CERT_WARN_DAYS, certCritDays);
  return {
    tlsVerify: value.tlsVerify ?? true,
    ...(value.caFile === undefined ? {} : { ca: value.caFile.ca, caFile: value.caFile.file }),
    ...(value.servername === undefined ? {} : { servername: value.servername }),
    certWarnDays,
    certCritDays,
  };
}

/** OpenSSL's certificate verification failures, as Node names them in `error.code`. */
const CERT_ERRORS: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_CRL', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CRL_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID', 'CRL_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD', 'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED', 'INVALID_CA',
  'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
]);

/** Whether a Node error code says the TLS handshake failed (a certificate refused, a protocol error). */
export function isTlsErrorCode(code: string): boolean {
  return CERT_ERRORS.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code === 'EPROTO';
}

/** `; trusting the CAs in /etc/vigil/ca.pem` for a TLS failure's message, when `caFile` is set. */
export function trusting(tls: TlsSettings): string {
  return tls.caFile === undefined ? '' : `; trusting the CAs in ${tls.caFile}`;
}

const DAY_MS = 86_400_000;

/** A certificate that expires within `certWarnDays`: the state it makes and what to say. */
export interface CertProblem {
  readonly state: State;
  readonly text: string;
}

/** Days from `nowMs` until `validToMs` (epoch milliseconds); negative once expired. */
export function daysLeft(validToMs: number, nowMs: number): number {
  return (validToMs - nowMs) / DAY_MS;
}

/** Judges the days left on the certificate of `host` (`example.org:443`); `undefined` when there are enough. */
export function certProblem(tls: TlsSettings, host: string, validToMs: number, days: number): CertProblem | undefined {
  const { certWarnDays, certCritDays } = tls;
  if (days >= certWarnDays) return undefined;
  const state = days < certCritDays ? 'crit' : 'warn';
  const when = new Date(validToMs).toISOString();
  if (days < 0) return { state, text: `certificate of ${host} expired ${(-days).toFixed(1)} days ago (${when})` };
  const threshold = state === 'crit' ? `critical threshold of ${certCritDays}` : `warning threshold of ${certWarnDays}`;
  return { state, text: `certificate of ${host} expires in ${days.toFixed(1)} days (${when}), under the ${threshold} days` };
}

/** The `cert_days_remaining` metric (d), with the thresholds. */
export function certDaysMetric(tls: TlsSettings, days: number): Metric {
  return gauge('cert_days_remaining', Math.round(days * 100) / 100, 'd', { warn: tls.certWarnDays, crit: tls.certCritDays });
}
