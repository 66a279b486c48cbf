import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { formatMs } from '../../core/format.js';
import { hostPort } from '../../core/host-port.js';
import { gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome, State } from '../../results/result.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from '../command.js';
import { Connection, ConnectionEnded, quoteReply, socketFailure, type Reply } from '../tls/connection.js';
import { handshake, type TlsSession } from '../tls/session.js';
import { listExtensions, smtpExtensions } from '../tls/starttls.js';
import { describeSession, handshakeProblem, round, sessionMetrics, sessionProblems, worstProblem, type TlsProblem } from '../tls/verdict.js';
import { smtpAttributes, type SmtpAttributes } from './attributes.js';

export type { SmtpAttributes } from './attributes.js';

/**
 * `smtp`: talks to a mail server as a client would, up to the point of sending mail and no further:
 * the banner (220), EHLO (`helo`, default this machine's host name), STARTTLS (`starttls: true`) or
 * TLS from the first byte (`tls: true`) verified as the `tls` command verifies, AUTH (`username`,
 * `password`; PLAIN or LOGIN, whichever the server offers, PLAIN first), and a probe of MAIL FROM
 * `mailFrom` and RCPT TO `rcptTo` that ends with RSET and QUIT: no DATA, nothing is sent.
 *
 * Reasons: `ok`; `bad-banner` (no 220 greeting: a 554, a closed connection, not SMTP), `ehlo-rejected`,
 * `starttls-unavailable` (not offered, or refused), the TLS verdicts of the `tls` command (`expired`,
 * `not-yet-valid`, `untrusted`, `name-mismatch`, `protocol-too-old`, `handshake-failed`, and
 * `expiring`, warn or crit), `auth-unavailable` (no PLAIN or LOGIN offered), `auth-failed`,
 * `sender-rejected`, `recipient-rejected`, `slow-response` (past `responseWarnMs`/`responseCritMs`),
 * `protocol-error` (a reply that is not SMTP), `connection-error` (closed or reset mid-dialogue),
 * `refused`, `dns`, `timeout`. All crit but the warnings of `expiring` and `slow-response`. A TLS
 * problem other than `expiring` ends the dialogue before AUTH: no password crosses an unverified
 * connection. The password never appears in a message.
 *
 * Metrics: `connect_time` (ms, name resolution included), `banner_time` (ms, from connected — or from
 * the handshake with `tls: true` — to the banner), `response_time` (ms, from the start to the last
 * reply before RSET and QUIT), and over TLS `handshake_time` (ms) and `cert_days_remaining` (d).
 */
export function smtpCommand(): Command<SmtpAttributes> {
  return defineCommand({ name: 'smtp', attributes: smtpAttributes, run: runSmtp });
}

/** Where a run is in the dialogue: what a failure there means. */
type Stage = 'connecting' | 'tls' | 'banner' | 'ehlo' | 'starttls' | 'auth' | 'mail' | 'rcpt';

/** What a run measured and learnt so far. */
interface SmtpRun {
  stage: Stage;
  readonly startedAt: number;
  connectMs?: number;
  bannerMs?: number;
  totalMs?: number;
  session?: TlsSession;
}

/** A dialogue that ended before its end: the outcome's state, reason and text. */
class DialogueFailed extends Error {
  constructor(
    readonly state: State,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'DialogueFailed';
  }
}

async function runSmtp(attrs: SmtpAttributes, ctx: CommandContext): Promise<CommandOutcome> {
  const conn = new Connection();
  const stopListening = listenForAbort(ctx, conn.abort);
  if (stopListening === null) {
    conn.destroy();
    return { state: 'crit', reason: 'timeout', message: `timed out before connecting to ${target(attrs)}` };
  }
  const run: SmtpRun = { stage: 'connecting', startedAt: performance.now() };
  try {
    return await dialogue(attrs, conn, run);
  } catch (error) {
    return failed(attrs, conn, run, error);
  } finally {
    stopListening();
    conn.destroy();
  }
}

async function dialogue(attrs: SmtpAttributes, conn: Connection, run: SmtpRun): Promise<CommandOutcome> {
  const where = target(attrs);
  const helo = attrs.helo ?? hostname();
  await conn.connect(attrs.host, attrs.port);
  let greetedFrom = performance.now();
  run.connectMs = greetedFrom - run.startedAt;
  if (attrs.security === 'tls') {
    await secure(attrs, conn, run);
    greetedFrom = performance.now();
  }

  run.stage = 'banner';
  const banner = await conn.readReply('the banner');
  run.bannerMs = performance.now() - greetedFrom;
  if (banner.code !== 220) throw new DialogueFailed('crit', 'bad-banner', `${where} greeted with ${quoteReply(banner)} instead of 220`);

  run.stage = 'ehlo';
  let extensions = await ehlo(conn, helo, where);
  if (attrs.security === 'starttls') {
    run.stage = 'starttls';
    if (!extensions.has('STARTTLS')) throw new DialogueFailed('crit', 'starttls-unavailable', `${where} does not offer STARTTLS (EHLO lists ${listExtensions(extensions)})`);
    const reply = await conn.command('STARTTLS', 'STARTTLS');
    if (reply.code !== 220) throw new DialogueFailed('crit', 'starttls-unavailable', `${where} answered STARTTLS with ${quoteReply(reply)}`);
    await secure(attrs, conn, run);
    // What EHLO said in clear is void once TLS is up (RFC 3207): ask again.
    run.stage = 'ehlo';
    extensions = await ehlo(conn, helo, where);
  }

  const done: string[] = [];
  if (attrs.auth !== undefined) {
    run.stage = 'auth';
    done.push(await authenticate(conn, attrs.auth, extensions, where));
  }
  if (attrs.mailFrom !== undefined) {
    run.stage = 'mail';
    const reply = await conn.command(`MAIL FROM:<${attrs.mailFrom}>`, 'MAIL FROM');
    if (reply.code !== 250) throw new DialogueFailed('crit', 'sender-rejected', `${where} rejected MAIL FROM <${attrs.mailFrom}>: ${quoteReply(reply)}`);
    done.push(`sender <${attrs.mailFrom}> accepted`);
  }
  if (attrs.rcptTo !== undefined) {
    run.stage = 'rcpt';
    const reply = await conn.command(`RCPT TO:<${attrs.rcptTo}>`, 'RCPT TO');
    if (reply.code !== 250 && reply.code !== 251) throw new DialogueFailed('crit', 'recipient-rejected', `${where} rejected RCPT TO <${attrs.rcptTo}>: ${quoteReply(reply)}`);
    done.push(`recipient <${attrs.rcptTo}> accepted`);
  }
  run.totalMs = performance.now() - run.startedAt;

  if (attrs.mailFrom !== undefined) {
    try {
      await conn.command('RSET', 'RSET');
    } catch {
      // The probe is over and judged: a server that cannot reset it changes nothing, QUIT ends it anyway.
    }
  }
  await conn.end('QUIT\r\n');
  return answered(attrs, run, banner, done);
}

/** EHLO, and the extensions its reply lists. */
async function ehlo(conn: Connection, helo: string, where: string): Promise<ReadonlyMap<string, readonly string[]>> {
  const reply = await conn.command(`EHLO ${helo}`, 'EHLO');
  if (reply.code !== 250) throw new DialogueFailed('crit', 'ehlo-rejected', `${where} rejected EHLO ${helo}: ${quoteReply(reply)}`);
  return smtpExtensions(reply);
}

/** The handshake, judged: any problem but `expiring` ends the dialogue before a password could follow. */
async function secure(attrs: SmtpAttributes, conn: Connection, run: SmtpRun): Promise<void> {
  run.stage = 'tls';
  const session = await handshake(conn, attrs.host, attrs.tls);
  run.session = session;
  const problems = sessionProblems(session, attrs.tls).filter((problem) => problem.reason !== 'expiring');
  const worst = worstProblem(problems);
  if (worst !== undefined) {
    throw new DialogueFailed(worst.state, worst.reason, `${problems.map((problem) => problem.text).join('; ')}; ${target(attrs)}: ${describeSession(session)}`);
  }
}

/** AUTH PLAIN, or LOGIN where PLAIN is not offered; `authenticated as vigil (PLAIN)`. */
async function authenticate(conn: Connection, auth: NonNullable<SmtpAttributes['auth']>, extensions: ReadonlyMap<string, readonly string[]>, where: string): Promise<string> {
  const offered = extensions.get('AUTH');
  if (offered === undefined) throw new DialogueFailed('crit', 'auth-unavailable', `${where} offers no AUTH (EHLO lists ${listExtensions(extensions)})`);
  const { username, password } = auth;
  const refused = (mechanism: string, reply: Reply): DialogueFailed =>
    new DialogueFailed('crit', 'auth-failed', `${where} refused AUTH ${mechanism} as ${username}: ${quoteReply(reply)}`);
  if (offered.includes('PLAIN')) {
    const reply = await conn.command(`AUTH PLAIN ${base64(`\0${username}\0${password}`)}`, 'AUTH PLAIN');
    if (reply.code !== 235) throw refused('PLAIN', reply);
    return `authenticated as ${username} (PLAIN)`;
  }
  if (offered.includes('LOGIN')) {
    for (const [line, expected] of [['AUTH LOGIN', 334], [base64(username), 334], [base64(password), 235]] as const) {
      const reply = await conn.command(line, 'AUTH LOGIN');
      if (reply.code !== expected) throw refused('LOGIN', reply);
    }
    return `authenticated as ${username} (LOGIN)`;
  }
  throw new DialogueFailed('crit', 'auth-unavailable', `${where} offers neither AUTH PLAIN nor LOGIN (AUTH ${offered.join(' ')})`);
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/** The dialogue went through: ok, or `expiring` / `slow-response` past a threshold (the worse of them). */
function answered(attrs: SmtpAttributes, run: SmtpRun, banner: Reply, done: readonly string[]): CommandOutcome {
  const total = run.totalMs ?? 0;
  const parts = [`banner ${quoteReply(banner)} in ${formatMs(run.bannerMs ?? 0)} ms`];
  if (run.session !== undefined) parts.push(`${attrs.security === 'tls' ? 'TLS' : 'STARTTLS'} ${describeSession(run.session)}`);
  parts.push(...done);
  const summary = `${target(attrs)} answered in ${formatMs(total)} ms: ${parts.join('; ')}`;
  const problems: TlsProblem[] = run.session === undefined ? [] : sessionProblems(run.session, attrs.tls);
  const { responseWarnMs, responseCritMs } = attrs;
  if (responseCritMs !== undefined && total >= responseCritMs) {
    problems.push({ state: 'crit', reason: 'slow-response', text: `response time at or above the critical threshold of ${responseCritMs} ms` });
  } else if (responseWarnMs !== undefined && total >= responseWarnMs) {
    problems.push({ state: 'warn', reason: 'slow-response', text: `response time at or above the warning threshold of ${responseWarnMs} ms` });
  }
  const metrics = runMetrics(attrs, run);
  if (problems.length === 0) return { state: 'ok', reason: 'ok', message: summary, metrics };
  // The worse problem gives state and reason; on a tie the certificate (listed first), which needs someone to act.
  const worst = worstProblem(problems) as TlsProblem;
  return { state: worst.state, reason: worst.reason, message: `${problems.map((problem) => problem.text).join('; ')}; ${summary}`, metrics };
}

function failed(attrs: SmtpAttributes, conn: Connection, run: SmtpRun, error: unknown): CommandOutcome {
  const where = target(attrs);
  const metrics = runMetrics(attrs, run);
  if (error instanceof DialogueFailed) return { state: error.state, reason: error.reason, message: error.message, metrics };
  if (error instanceof ConnectionEnded) {
    switch (error.kind) {
      case 'aborted':
        return { state: 'crit', reason: 'timeout', message: `timed out ${conn.doing} ${where}`, metrics };
      case 'stray-data':
        return { state: 'crit', reason: 'starttls-unavailable', message: `${where}: ${error.message}`, metrics };
      case 'closed':
        if (run.stage === 'banner') return { state: 'crit', reason: 'bad-banner', message: `${where} closed the connection without a banner`, metrics };
        break;
      case 'malformed':
      case 'too-long':
        if (run.stage === 'banner') return { state: 'crit', reason: 'bad-banner', message: `${where} sent no SMTP banner: ${error.message}`, metrics };
        if (run.stage !== 'tls') return { state: 'crit', reason: 'protocol-error', message: `${where} does not speak SMTP: ${error.message}`, metrics };
        break;
    }
  }
  if (run.stage === 'tls') {
    const problem = handshakeProblem(error, attrs.tls);
    return { state: problem.state, reason: problem.reason, message: `${where} ${problem.text}`, metrics };
  }
  if (error instanceof ConnectionEnded) return { state: 'crit', reason: 'connection-error', message: `the connection closed while ${conn.doing} ${where}`, metrics };
  return socketFailure(error, conn, where, attrs.host, metrics);
}

function runMetrics(attrs: SmtpAttributes, run: SmtpRun): Metric[] {
  const metrics: Metric[] = [];
  if (run.connectMs !== undefined) metrics.push(gauge('connect_time', round(run.connectMs), 'ms'));
  if (run.bannerMs !== undefined) metrics.push(gauge('banner_time', round(run.bannerMs), 'ms'));
  if (run.totalMs !== undefined) metrics.push(gauge('response_time', round(run.totalMs), 'ms', { warn: attrs.responseWarnMs, crit: attrs.responseCritMs }));
  if (run.session !== undefined) metrics.push(...sessionMetrics(run.session, attrs.tls));
  return metrics;
}

function target(attrs: SmtpAttributes): string {
  return hostPort(attrs.host, attrs.port);
}
