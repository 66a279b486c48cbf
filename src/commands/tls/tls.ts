import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { hostPort } from '../../core/host-port.js';
import { gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome } from '../../results/result.js';
import { nonEmptyString, port } from '../../validation/schema-types.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from '../command.js';
import { checkCertDays, tlsFields, toTlsSettings } from '../tls-attributes.js';
import { Connection, ConnectionEnded, socketFailure } from './connection.js';
import { handshake, minProtocolField, DEFAULT_MIN_PROTOCOL, type TlsVerification } from './session.js';
import { DEFAULT_PORTS, goodbye, negotiateStarttls, StarttlsProtocols, StarttlsRefused, type StarttlsProtocol } from './starttls.js';
import { describeSession, handshakeProblem, round, sessionMetrics, sessionProblems, worstProblem } from './verdict.js';

const attributes = z
  .strictObject({
    /** Host name or IP address to connect to. */
    host: nonEmptyString('a host name or IP address'),
    /** TCP port; default 443, or the protocol's with `starttls` (smtp 25, imap 143, pop3 110, ftp 21, postgres 5432). */
    port: port().optional(),
    /** Speak this protocol's plain-text upgrade before the handshake: smtp, imap, pop3, ftp or postgres. */
    starttls: z.enum(StarttlsProtocols, { error: `expected one of ${StarttlsProtocols.join(', ')}` }).optional(),
    ...tlsFields,
    /** The oldest protocol accepted (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3); default TLSv1.2. */
    minProtocol: minProtocolField,
  })
  .superRefine(checkCertDays)
  .transform(
    (value): TlsAttributes => ({
      host: value.host,
      port: value.port ?? DEFAULT_PORTS[value.starttls ?? 'tls'],
      ...(value.starttls === undefined ? {} : { starttls: value.starttls }),
      tls: { ...toTlsSettings(value), minProtocol: value.minProtocol ?? DEFAULT_MIN_PROTOCOL },
    }),
  );

/** The `tls` command's attributes after parsing: the port worked out, the CA file read, the defaults applied. */
export interface TlsAttributes {
  readonly host: string;
  readonly port: number;
  readonly starttls?: StarttlsProtocol;
  readonly tls: TlsVerification;
}

/**
 * `tls`: connects to `host:port`, speaks `starttls`'s plain-text upgrade first if asked, runs the TLS
 * handshake and judges what it showed: the chain (trusted by the system's CAs or `caFile`), the name
 * (`servername`, default the host), the dates and days left of every certificate of the chain (the
 * soonest-expiring counts, an intermediate too), and the protocol against `minProtocol`. The message
 * names the protocol, cipher, subject, issuer and days left.
 *
 * Reasons: `ok`; the TLS verdicts `expired`, `not-yet-valid`, `untrusted`, `name-mismatch`,
 * `protocol-too-old`, `expiring` (warn under `certWarnDays`, crit under `certCritDays`) and
 * `handshake-failed` (see `verdict.ts`); `starttls-refused` (the server did not agree to the upgrade,
 * or answered something else); `refused`, `dns`, `timeout`, `connection-error`. All but `expiring`
 * warnings are crit.
 *
 * Metrics: `connect_time` (ms, name resolution included), `starttls_time` (ms, the plain-text dialogue),
 * `handshake_time` (ms), `cert_days_remaining` (d, the soonest of the chain, with the thresholds).
 */
export function tlsCommand(): Command<TlsAttributes> {
  return defineCommand({ name: 'tls', attributes, run: runTls });
}

/** What a run measured so far, for the outcome of a failure as much as of a success. */
interface TlsRun {
  stage: 'connecting' | 'starttls' | 'handshake';
  connectMs?: number;
  starttlsMs?: number;
}

async function runTls(attrs: TlsAttributes, ctx: CommandContext): Promise<CommandOutcome> {
  const conn = new Connection();
  const stopListening = listenForAbort(ctx, conn.abort);
  if (stopListening === null) {
    conn.destroy();
    return { state: 'crit', reason: 'timeout', message: `timed out before connecting to ${where(attrs)}` };
  }
  const run: TlsRun = { stage: 'connecting' };
  try {
    return await probe(attrs, conn, run);
  } catch (error) {
    return failed(attrs, conn, run, error);
  } finally {
    stopListening();
    conn.destroy();
  }
}

async function probe(attrs: TlsAttributes, conn: Connection, run: TlsRun): Promise<CommandOutcome> {
  const startedAt = performance.now();
  await conn.connect(attrs.host, attrs.port);
  const connectedAt = performance.now();
  run.connectMs = connectedAt - startedAt;
  if (attrs.starttls !== undefined) {
    run.stage = 'starttls';
    await negotiateStarttls(conn, attrs.starttls, hostname());
    run.starttlsMs = performance.now() - connectedAt;
  }
  run.stage = 'handshake';
  const session = await handshake(conn, attrs.host, attrs.tls);
  const problems = sessionProblems(session, attrs.tls);
  const worst = worstProblem(problems);
  const summary = `${where(attrs)}: ${describeSession(session)}`;
  const metrics = [...runMetrics(run), ...sessionMetrics(session, attrs.tls)];
  await conn.end(goodbye(attrs.starttls));
  if (worst === undefined) return { state: 'ok', reason: 'ok', message: summary, metrics };
  return { state: worst.state, reason: worst.reason, message: `${problems.map((problem) => problem.text).join('; ')}; ${summary}`, metrics };
}

function failed(attrs: TlsAttributes, conn: Connection, run: TlsRun, error: unknown): CommandOutcome {
  const target = where(attrs);
  const metrics = runMetrics(run);
  if (error instanceof ConnectionEnded && error.kind === 'aborted') {
    return { state: 'crit', reason: 'timeout', message: `timed out ${conn.doing} ${target}`, metrics };
  }
  // A dialogue that closed, babbled or flooded did not lead to TLS either; nor did clear text after the agreement.
  if (error instanceof StarttlsRefused || (error instanceof ConnectionEnded && (run.stage === 'starttls' || error.kind === 'stray-data'))) {
    return { state: 'crit', reason: 'starttls-refused', message: `${target} did not switch to TLS: ${error.message}`, metrics };
  }
  if (run.stage === 'handshake') {
    const problem = handshakeProblem(error, attrs.tls);
    return { state: problem.state, reason: problem.reason, message: `${target} ${problem.text}`, metrics };
  }
  return socketFailure(error, conn, target, attrs.host, metrics);
}

function runMetrics(run: TlsRun): Metric[] {
  const metrics: Metric[] = [];
  if (run.connectMs !== undefined) metrics.push(gauge('connect_time', round(run.connectMs), 'ms'));
  if (run.starttlsMs !== undefined) metrics.push(gauge('starttls_time', round(run.starttlsMs), 'ms'));
  return metrics;
}

/** `mail.example.org:25 (STARTTLS smtp)` or `example.org:443`. */
function where(attrs: TlsAttributes): string {
  const target = hostPort(attrs.host, attrs.port);
  return attrs.starttls === undefined ? target : `${target} (STARTTLS ${attrs.starttls})`;
}
