import { gauge, type Metric } from '../../results/metric.js';
import { severity, type CommandOutcome, type State } from '../../results/result.js';
import type { HttpAttributes, HttpTarget } from './attributes.js';
import { formatMs } from '../../core/format.js';
import { DNS_ERROR_CODES } from '../../core/errors.js';
import { isTlsErrorCode } from '../tls-attributes.js';

/**
 * How the `http` command words its outcomes: reasons, one-line messages and metrics, from what a run
 * measured. Kept apart from the connection mechanics in `http.ts`.
 */

/** What a run is doing: connecting, handshaking, waiting for the response headers, or reading the body. */
export type Phase = 'connecting' | 'tls' | 'waiting' | 'reading';

/** The certificate with the fewest days left among the HTTPS hops of a run. */
export interface CertSeen {
  /** `example.org` or `example.org:8443`. */
  readonly host: string;
  /** Days from now until it expires; negative once expired. */
  readonly days: number;
  /** Epoch milliseconds. */
  readonly validTo: number;
}

/** What a run has measured so far: everything its outcome is built from. */
export interface RunRecord {
  readonly attrs: HttpAttributes;
  /** The hop under way: after redirects, the last URL. */
  readonly target: HttpTarget;
  readonly phase: Phase;
  readonly redirects: number;
  /** 0 until a response arrived. */
  readonly status: number;
  readonly statusMessage: string;
  // Phase durations (ms) summed over the hops; undefined where never measured.
  readonly dnsMs: number | undefined;
  readonly connectMs: number | undefined;
  readonly tlsMs: number | undefined;
  readonly firstByteMs: number | undefined;
  readonly transferMs: number | undefined;
  /** From the start of the run to the last response's headers (unexpected status) or body (otherwise). */
  readonly totalMs: number | undefined;
  readonly bodyBytes: number;
  readonly cert: CertSeen | undefined;
}

export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** What a run was doing, for messages: `timed out waiting for the response from …`. */
const DOING: Readonly<Record<Phase, string>> = {
  connecting: 'connecting to',
  tls: 'in the TLS handshake with',
  waiting: 'waiting for the response from',
  reading: 'reading the body of',
};

export function abortedBeforeSending(attrs: HttpAttributes): CommandOutcome {
  return { state: 'crit', reason: 'timeout', message: `timed out before sending the request to ${attrs.target.display}` };
}

/** The signal aborted: where the run was. */
export function timedOut(run: RunRecord): CommandOutcome {
  const sofar = run.phase === 'reading' ? ` (${run.bodyBytes} bytes so far)` : '';
  return { state: 'crit', reason: 'timeout', message: `timed out ${DOING[run.phase]} ${run.target.display}${sofar}`, metrics: metrics(run) };
}

/** The request or response failed: a name that does not resolve, a TLS failure, or a broken connection. */
export function failed(run: RunRecord, error: NodeJS.ErrnoException): CommandOutcome {
  const code = error.code ?? 'unknown error';
  const { target } = run;
  if (DNS_ERROR_CODES.has(code)) return { state: 'crit', reason: 'dns', message: `cannot resolve host ${target.hostname} (${code})` };
  if (isTlsErrorCode(code)) {
    const trusting = run.attrs.caFile === undefined ? '' : `; trusting the CAs in ${run.attrs.caFile}`;
    return { state: 'crit', reason: 'tls-error', message: `TLS handshake with ${target.host} failed: ${code} (${error.message})${trusting}`, metrics: metrics(run) };
  }
  if (code === 'ETIMEDOUT') return { state: 'crit', reason: 'timeout', message: `timed out ${DOING[run.phase]} ${target.display} (ETIMEDOUT)`, metrics: metrics(run) };
  return { state: 'crit', reason: 'connection-error', message: `${code} ${DOING[run.phase]} ${target.display} (${error.message})`, metrics: metrics(run) };
}

/** A status outside `expectStatus`; `location` where it was a redirect that was not followed. */
export function unexpectedStatus(run: RunRecord, location: string | undefined): CommandOutcome {
  const { expectStatus, followRedirects } = run.attrs;
  let why = '';
  if (location !== undefined && REDIRECT_STATUSES.has(run.status)) {
    const limit = followRedirects === 0 ? 'followRedirects is 0' : `followRedirects is ${followRedirects}, all used`;
    why = `, a redirect to ${JSON.stringify(location)} (not followed: ${limit})`;
  }
  return { state: 'crit', reason: 'unexpected-status', message: `expected status ${expectStatus.display}, got ${summary(run)}${why}`, metrics: metrics(run) };
}

export function badRedirect(run: RunRecord, location: string): CommandOutcome {
  const message = `${summary(run)}: redirect to ${JSON.stringify(location)}, which is not an http:// or https:// URL`;
  return { state: 'crit', reason: 'unexpected-status', message, metrics: metrics(run) };
}

/** `mismatch` says what in the headers or body did not match (see `findMismatch`). */
export function bodyMismatch(run: RunRecord, mismatch: string): CommandOutcome {
  return { state: 'crit', reason: 'body-mismatch', message: `${mismatch}; ${summary(run)}`, metrics: metrics(run) };
}

/** A response that met its expectations: ok, or `cert-expiring` / `slow-response` past a threshold. */
export function answered(run: RunRecord): CommandOutcome {
  const { certWarnDays, certCritDays, responseWarnMs, responseCritMs } = run.attrs;
  const problems: { state: State; reason: string; text: string }[] = [];
  const { cert } = run;
  if (cert !== undefined && cert.days < certWarnDays) {
    const state = cert.days < certCritDays ? 'crit' : 'warn';
    const when = new Date(cert.validTo).toISOString();
    const threshold = state === 'crit' ? `critical threshold of ${certCritDays}` : `warning threshold of ${certWarnDays}`;
    const text =
      cert.days < 0
        ? `certificate of ${cert.host} expired ${(-cert.days).toFixed(1)} days ago (${when})`
        : `certificate of ${cert.host} expires in ${cert.days.toFixed(1)} days (${when}), under the ${threshold} days`;
    problems.push({ state, reason: 'cert-expiring', text });
  }
  const total = run.totalMs ?? 0;
  if (responseCritMs !== undefined && total >= responseCritMs) {
    problems.push({ state: 'crit', reason: 'slow-response', text: `response time at or above the critical threshold of ${responseCritMs} ms` });
  } else if (responseWarnMs !== undefined && total >= responseWarnMs) {
    problems.push({ state: 'warn', reason: 'slow-response', text: `response time at or above the warning threshold of ${responseWarnMs} ms` });
  }
  if (problems.length === 0) return { state: 'ok', reason: 'ok', message: summary(run), metrics: metrics(run) };
  // The worse problem gives the state and reason; on a tie the certificate, which needs someone to act.
  const worst = problems.reduce((a, b) => (severity(b.state) > severity(a.state) ? b : a));
  return { state: worst.state, reason: worst.reason, message: `${summary(run)}: ${problems.map((problem) => problem.text).join('; ')}`, metrics: metrics(run) };
}

/** `200 OK from https://example.org/health in 12.3 ms after 1 redirect` */
function summary(run: RunRecord): string {
  const line = run.statusMessage === '' ? String(run.status) : `${run.status} ${run.statusMessage}`;
  const after = run.redirects === 0 ? '' : ` after ${run.redirects} redirect${run.redirects === 1 ? '' : 's'}`;
  return `${line} from ${run.target.display} in ${formatMs(run.totalMs ?? 0)} ms${after}`;
}

function metrics(run: RunRecord): readonly Metric[] {
  const list: Metric[] = [];
  const { attrs } = run;
  if (run.status !== 0) list.push(gauge('status_code', run.status));
  if (run.totalMs !== undefined) list.push(gauge('total_time', round(run.totalMs), 'ms', { warn: attrs.responseWarnMs, crit: attrs.responseCritMs }));
  if (run.dnsMs !== undefined) list.push(gauge('dns_time', round(run.dnsMs), 'ms'));
  if (run.connectMs !== undefined) list.push(gauge('connect_time', round(run.connectMs), 'ms'));
  if (run.tlsMs !== undefined) list.push(gauge('tls_time', round(run.tlsMs), 'ms'));
  if (run.firstByteMs !== undefined) list.push(gauge('first_byte_time', round(run.firstByteMs), 'ms'));
  if (run.transferMs !== undefined) list.push(gauge('transfer_time', round(run.transferMs), 'ms'));
  if (run.phase === 'reading') list.push(gauge('body_bytes', run.bodyBytes, 'B'));
  if (run.cert !== undefined) {
    list.push(gauge('cert_days_remaining', Math.round(run.cert.days * 100) / 100, 'd', { warn: attrs.certWarnDays, crit: attrs.certCritDays }));
  }
  if (attrs.followRedirects > 0 && run.status !== 0) list.push(gauge('redirects', run.redirects));
  return list;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

