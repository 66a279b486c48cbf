import { errorCode, errorMessage } from '../../core/errors.js';
import { formatMs } from '../../core/format.js';
import { gauge, type Metric } from '../../results/metric.js';
import { severity, type State } from '../../results/result.js';
import { daysLeft, trusting } from '../tls-attributes.js';
import { clientFloor, isOlder, type ChainCertificate, type TlsSession, type TlsVerification } from './session.js';

/**
 * How a TLS session (or a failed handshake) is judged and worded, for the `tls` command and for every
 * command that speaks TLS the same way (`smtp` with STARTTLS). The reasons, worst first:
 *
 * - `expired` (crit): a certificate of the chain is past its end date;
 * - `not-yet-valid` (crit): one is before its start date;
 * - `untrusted` (crit): the chain leads to no trusted root (self-signed, an unknown CA, a missing
 *   intermediate) — unless `tlsVerify` is false;
 * - `name-mismatch` (crit): the leaf is not for the name verified (`servername`, default the host) —
 *   unless `tlsVerify` is false;
 * - `protocol-too-old` (crit): the negotiated protocol is older than `minProtocol`, or the server offers
 *   none at or above it;
 * - `expiring`: the soonest-expiring certificate of the chain (an intermediate counts) has fewer than
 *   `certCritDays` (crit) or `certWarnDays` (warn) days left;
 * - `handshake-failed` (crit): the handshake itself failed (not TLS on that port, a reset, no common cipher).
 *
 * A session may have several problems: the message names them all, the worst gives state and reason.
 */

/** One problem, worded without the session summary that follows it. */
export interface TlsProblem {
  readonly state: State;
  readonly reason: string;
  readonly text: string;
}

/** The metric of the days left on the soonest-expiring certificate of the chain. */
export const CERT_DAYS_METRIC = 'cert_days_remaining';

/** What OpenSSL's verification codes mean, for messages; the rest are shown as the code alone. */
const CHAIN_ERRORS: ReadonlyMap<string, string> = new Map([
  ['DEPTH_ZERO_SELF_SIGNED_CERT', 'the certificate is self-signed'],
  ['SELF_SIGNED_CERT_IN_CHAIN', 'the chain ends in a self-signed root that is not trusted'],
  ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'the chain leads to a CA that is not trusted'],
  ['UNABLE_TO_GET_ISSUER_CERT', 'the chain leads to a CA that is not trusted'],
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'the issuer of the certificate is neither trusted nor sent (an unknown CA, or an intermediate missing from the chain)'],
  ['CERT_SIGNATURE_FAILURE', 'a signature in the chain does not verify'],
  ['CERT_REVOKED', 'a certificate of the chain is revoked'],
  ['INVALID_CA', 'an issuer in the chain is not a CA'],
  ['INVALID_PURPOSE', 'a certificate of the chain is not for TLS servers'],
]);

/** Handshake failures by which a server says it offers no protocol as new as the probe asked for. */
const PROTOCOL_ERRORS: ReadonlySet<string> = new Set(['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'ERR_SSL_UNSUPPORTED_PROTOCOL', 'ERR_SSL_NO_PROTOCOLS_AVAILABLE']);

/** The problems of a session, worst first; empty when it is fine. */
export function sessionProblems(session: TlsSession, verification: TlsVerification): TlsProblem[] {
  const now = Date.now();
  const problems: TlsProblem[] = [];
  const { chain, chainError } = session;
  const expired = chain.filter((certificate) => certificate.validTo < now).sort((a, b) => a.validTo - b.validTo)[0];
  const early = chain.find((certificate) => certificate.validFrom > now);
  if (expired !== undefined) {
    const days = -daysLeft(expired.validTo, now);
    problems.push({ state: 'crit', reason: 'expired', text: `${describe(expired)} expired ${days.toFixed(1)} days ago (${iso(expired.validTo)})` });
  } else if (chainError === 'CERT_HAS_EXPIRED') {
    problems.push({ state: 'crit', reason: 'expired', text: 'a certificate of the chain has expired (CERT_HAS_EXPIRED)' });
  }
  if (early !== undefined) {
    const days = daysLeft(early.validFrom, now);
    problems.push({ state: 'crit', reason: 'not-yet-valid', text: `${describe(early)} is not valid until ${iso(early.validFrom)} (in ${days.toFixed(1)} days)` });
  } else if (chainError === 'CERT_NOT_YET_VALID') {
    problems.push({ state: 'crit', reason: 'not-yet-valid', text: 'a certificate of the chain is not valid yet (CERT_NOT_YET_VALID)' });
  }
  if (verification.tlsVerify) {
    if (chain.length === 0) {
      problems.push({ state: 'crit', reason: 'untrusted', text: 'the server sent no certificate' });
    } else if (chainError !== undefined && chainError !== 'CERT_HAS_EXPIRED' && chainError !== 'CERT_NOT_YET_VALID') {
      const why = CHAIN_ERRORS.get(chainError);
      problems.push({ state: 'crit', reason: 'untrusted', text: `certificate chain not trusted: ${why === undefined ? chainError : `${why} (${chainError})`}${trusting(verification)}` });
    }
    if (session.nameMismatch !== undefined) {
      const { name, certifiedFor } = session.nameMismatch;
      problems.push({ state: 'crit', reason: 'name-mismatch', text: `certificate is for ${certifiedFor}, not ${name}` });
    }
  }
  if (isOlder(session.protocol, verification.minProtocol)) {
    problems.push({ state: 'crit', reason: 'protocol-too-old', text: `negotiated ${session.protocol}, older than minProtocol ${verification.minProtocol}` });
  }
  const soonest = soonestExpiring(chain);
  if (expired === undefined && soonest !== undefined) {
    const days = daysLeft(soonest.validTo, now);
    const { certWarnDays, certCritDays } = verification;
    if (days < certWarnDays) {
      const state = days < certCritDays ? 'crit' : 'warn';
      const threshold = state === 'crit' ? `critical threshold of ${certCritDays}` : `warning threshold of ${certWarnDays}`;
      problems.push({ state, reason: 'expiring', text: `${describe(soonest)} expires in ${days.toFixed(1)} days (${iso(soonest.validTo)}), under the ${threshold} days` });
    }
  }
  return problems;
}

/** The problem of a handshake that failed: `protocol-too-old` when the server offers nothing new enough, else `handshake-failed`. */
export function handshakeProblem(error: unknown, verification: TlsVerification): TlsProblem {
  const code = errorCode(error);
  const why = opensslReason(errorMessage(error));
  if (code !== undefined && PROTOCOL_ERRORS.has(code)) {
    return { state: 'crit', reason: 'protocol-too-old', text: `offers no protocol at or above ${clientFloor(verification.minProtocol)} (${code}: ${why})` };
  }
  return { state: 'crit', reason: 'handshake-failed', text: `TLS handshake failed: ${code === undefined ? why : `${code} (${why})`}` };
}

/** The worst of the problems (the first of the worst): its state and reason are the outcome's. */
export function worstProblem(problems: readonly TlsProblem[]): TlsProblem | undefined {
  let worst: TlsProblem | undefined;
  for (const problem of problems) if (worst === undefined || severity(problem.state) > severity(worst.state)) worst = problem;
  return worst;
}

/**
 * `TLSv1.3 TLS_AES_256_GCM_SHA384 in 4.2 ms, CN=localhost issued by CN=vigil test CA, expires in 364.9
 * days (2027-12-07T23:02:17.000Z)`, and the soonest-expiring certificate of the chain when it is not the leaf.
 */
export function describeSession(session: TlsSession): string {
  const now = Date.now();
  const base = `${session.protocol} ${session.cipher} in ${formatMs(session.handshakeMs)} ms`;
  const [leaf] = session.chain;
  if (leaf === undefined) return `${base}, no certificate`;
  const text = `${base}, ${leaf.subject} issued by ${leaf.issuer}, ${validity(leaf, now)}`;
  const soonest = soonestExpiring(session.chain);
  return soonest === undefined || soonest === leaf ? text : `${text}; soonest to expire in the chain: ${describe(soonest)}, ${validity(soonest, now)}`;
}

/** `handshake_time` (ms) and `cert_days_remaining` (d, the soonest of the chain, with the thresholds). */
export function sessionMetrics(session: TlsSession, verification: TlsVerification): Metric[] {
  const metrics = [gauge('handshake_time', round(session.handshakeMs), 'ms')];
  const soonest = soonestExpiring(session.chain);
  if (soonest !== undefined) {
    const days = Math.round(daysLeft(soonest.validTo, Date.now()) * 100) / 100;
    metrics.push(gauge(CERT_DAYS_METRIC, days, 'd', { warn: verification.certWarnDays, crit: verification.certCritDays }));
  }
  return metrics;
}

/** Milliseconds as metrics carry them: to the microsecond. */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function soonestExpiring(chain: readonly ChainCertificate[]): ChainCertificate | undefined {
  let soonest: ChainCertificate | undefined;
  for (const certificate of chain) if (soonest === undefined || certificate.validTo < soonest.validTo) soonest = certificate;
  return soonest;
}

/** `certificate CN=localhost`, `intermediate certificate CN=R3`, `root certificate CN=ISRG Root X1`. */
function describe(certificate: ChainCertificate): string {
  return certificate.role === 'leaf' ? `certificate ${certificate.subject}` : `${certificate.role} certificate ${certificate.subject}`;
}

function validity(certificate: ChainCertificate, now: number): string {
  const days = daysLeft(certificate.validTo, now);
  return days < 0 ? `expired ${(-days).toFixed(1)} days ago (${iso(certificate.validTo)})` : `expires in ${days.toFixed(1)} days (${iso(certificate.validTo)})`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The reason in an OpenSSL error message (`…:error:0A00010B:SSL routines:ssl3_get_record:wrong version
 * number:../deps/…`), or the message as it is.
 */
function opensslReason(message: string): string {
  return /:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+)/.exec(message)?.[1] ?? message.trim();
}
