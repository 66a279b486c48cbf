import type { ClientRequest, IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { STATUS_CODES } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { WebSocket, type ClientOptions, type RawData } from 'ws';
import { DNS_ERROR_CODES, errorCode } from '../../core/errors.js';
import { formatMs } from '../../core/format.js';
import { gauge, type Metric } from '../../results/metric.js';
import { severity, type CommandOutcome, type State } from '../../results/result.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from '../command.js';
import { certDaysMetric, certProblem, daysLeft, isTlsErrorCode, trusting } from '../tls-attributes.js';
import { webSocketAttributes, type ReplyMatcher, type WebSocketAttributes } from './attributes.js';

export type { WebSocketAttributes } from './attributes.js';

/**
 * `websocket`: opens a WebSocket (`ws://` or `wss://`, with `headers` and a `subprotocol` the server must
 * choose), optionally sends a text message and waits for a reply that contains or matches `expect`, and
 * closes it (a close frame, then the socket; the run waits for that at most a second). Each run opens a
 * connection of its own; permessage-deflate is not offered and redirects are not followed.
 *
 * Messages from the server are matched as they come: the first that matches is the reply (a server may
 * greet first). When none matched, the result is `unexpected-reply` (quoting the last one) if any came,
 * else `closed` or `timeout`.
 *
 * Metrics (ms unless said): `connect_time` (name resolution, connection, TLS and the handshake),
 * `reply_time` (from the message sent, or from the connection being open, to the reply; with
 * `expect`), `cert_days_remaining` (d, wss).
 *
 * Reasons: `ok`; `crit`: `refused`, `dns`, `tls-error`, `handshake-failed` (an answer other than 101
 * Switching Protocols, whose status the message gives, or a handshake ws refuses),
 * `subprotocol-mismatch` (the server chose another subprotocol, or none), `unexpected-reply`, `closed`
 * (the server closed before the reply, or before the message could be sent), `connection-error` (any
 * other failure, with its code), `timeout`; `warn` or `crit`: `slow-connect`, `slow-reply`,
 * `cert-expiring` (the worst one wins; on a tie, the certificate).
 */
export function webSocketCommand(): Command<WebSocketAttributes> {
  return defineCommand({ name: 'websocket', attributes: webSocketAttributes, run: runWebSocket });
}

/** The largest message read: a probe reads a reply, not a stream. Larger ones fail the run. */
const MAX_MESSAGE_BYTES = 1_048_576;
/** How long the closing handshake may take once the run is over. */
const CLOSE_TIMEOUT_MS = 1000;
/** How much of a message a result quotes. */
const QUOTE_CHARS = 80;

/**
 * Options ws takes that @types/ws 8.18 does not declare: `closeTimeout` (ws 8.19) and `servername`,
 * which ws passes on to `tls.connect`.
 */
type Options = ClientOptions & { closeTimeout?: number; servername?: string };

async function runWebSocket(attrs: WebSocketAttributes, ctx: CommandContext): Promise<CommandOutcome> {
  const run = new WebSocketRun(attrs);
  const stopListening = listenForAbort(ctx, run.onAbort);
  if (stopListening === null) return { state: 'crit', reason: 'timeout', message: `timed out before connecting to ${attrs.display}` };
  try {
    run.start();
    return await run.outcome;
  } finally {
    await run.close();
    stopListening();
  }
}

type Phase = 'connecting' | 'sending' | 'waiting';

/** One run: its WebSocket, what it measured, and the outcome it settles once. */
class WebSocketRun {
  readonly attrs: WebSocketAttributes;
  readonly outcome: Promise<CommandOutcome>;
  #resolve!: (outcome: CommandOutcome) => void;
  settled = false;
  ws: WebSocket | undefined;
  phase: Phase = 'connecting';
  startedAt = 0;
  /** From the start to the open connection. */
  connectMs: number | undefined;
  /** When the message was handed to the socket (or, without `send`, the connection opened), for `reply_time`. */
  waitingSince = 0;
  replyMs: number | undefined;
  /** The handshake's 101 answer arrived: ws may still refuse it (a subprotocol, a bad accept key). */
  upgraded = false;
  /** What the server put in `Sec-WebSocket-Protocol`. */
  chosenSubprotocol: string | undefined;
  /** Epoch ms when the server's certificate expires (wss). */
  certValidTo: number | undefined;
  messages = 0;
  lastMessage: string | undefined;
  /** The run is over and the socket is closing: the run waits for this. */
  #closed: Promise<void> | undefined;

  constructor(attrs: WebSocketAttributes) {
    this.attrs = attrs;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  start(): void {
    const { attrs } = this;
    const options: Options = {
      headers: attrs.headers,
      perMessageDeflate: false,
      followRedirects: false,
      maxPayload: MAX_MESSAGE_BYTES,
      closeTimeout: CLOSE_TIMEOUT_MS,
    };
    const tls = attrs.tlsSettings;
    if (tls !== undefined) {
      options.rejectUnauthorized = tls.tlsVerify;
      if (tls.ca !== undefined) options.ca = tls.ca;
      if (tls.servername !== undefined) options.servername = tls.servername;
    }
    this.startedAt = performance.now();
    const ws = new WebSocket(attrs.url, attrs.subprotocol === undefined ? [] : [attrs.subprotocol], options);
    this.ws = ws;
    ws.on('upgrade', this.#onUpgrade);
    ws.on('unexpected-response', this.#onUnexpectedResponse);
    ws.on('open', this.#onOpen);
    ws.on('message', this.#onMessage);
    ws.on('close', this.#onClose);
    ws.on('error', this.#onError);
  }

  settle(outcome: CommandOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolve(outcome);
  }

  readonly #onUpgrade = (res: IncomingMessage): void => {
    this.upgraded = true;
    const chosen = res.headers['sec-websocket-protocol'];
    this.chosenSubprotocol = Array.isArray(chosen) ? chosen.join(', ') : chosen;
    if (this.attrs.secure) {
      const certificate = (res.socket as TLSSocket).getPeerX509Certificate();
      if (certificate !== undefined) this.certValidTo = Date.parse(certificate.validTo);
    }
  };

  readonly #onUnexpectedResponse = (_req: ClientRequest, res: IncomingMessage): void => {
    this.connectMs = elapsedMs(this.startedAt);
    const status = res.statusCode ?? 0;
    const text = res.statusMessage || STATUS_CODES[status] || '';
    this.settle({
      state: 'crit',
      reason: 'handshake-failed',
      message: `${this.attrs.display} answered the handshake with ${status}${text === '' ? '' : ` ${text}`} instead of 101 Switching Protocols`,
      metrics: [gauge('status_code', status)],
    });
    // ws leaves the request to this listener: ending the socket ends it.
    this.ws?.terminate();
  };

  readonly #onOpen = (): void => {
    this.connectMs = elapsedMs(this.startedAt);
    const { send, expect } = this.attrs;
    if (send === undefined) {
      if (expect === undefined) this.settle(done(this));
      else {
        this.phase = 'waiting';
        this.waitingSince = performance.now();
      }
      return;
    }
    this.phase = 'sending';
    this.waitingSince = performance.now();
    (this.ws as WebSocket).send(send, this.#onSent);
  };

  readonly #onSent = (error?: Error | null): void => {
    // A send that fails closes the socket too: `close` or `error` says why. ws passes null on success.
    if ((error !== undefined && error !== null) || this.settled) return;
    if (this.attrs.expect === undefined) this.settle(done(this));
    else this.phase = 'waiting';
  };

  readonly #onMessage = (data: RawData): void => {
    if (this.settled || this.attrs.expect === undefined) return;
    // A reply may be read before the callback of the write that asked for it runs.
    if (this.phase === 'sending') this.phase = 'waiting';
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
    this.messages++;
    this.lastMessage = text;
    if (matches(this.attrs.expect, text)) {
      this.replyMs = elapsedMs(this.waitingSince);
      this.settle(done(this));
    }
  };

  readonly #onClose = (code: number, reason: Buffer): void => {
    if (this.settled) return;
    if (this.connectMs === undefined) {
      // ws reports a failed handshake with an error first; this is the fallback.
      this.settle({ state: 'crit', reason: 'closed', message: `${this.attrs.display} closed the connection during the handshake` });
      return;
    }
    const why = code === 1005 ? 'without a close code' : `with code ${code}${reason.length === 0 ? '' : ` ${quote(reason.toString('utf8'))}`}`;
    if (this.messages > 0) {
      this.settle(unexpectedReply(this, `then the server closed the connection ${why}`));
      return;
    }
    const before = this.phase === 'sending' ? 'before the message was sent' : 'before the reply';
    this.settle({ state: 'crit', reason: 'closed', message: `${this.attrs.display} closed the connection ${why} ${before}`, metrics: metrics(this) });
  };

  readonly #onError = (error: Error): void => {
    if (this.settled) return;
    this.settle(failed(this, error));
  };

  /** The run was aborted: say where it was (unless it was over) and drop the connection, a closing one too. */
  readonly onAbort = (): void => {
    if (!this.settled) this.settle(timedOut(this));
    this.ws?.terminate();
  };

  /**
   * Ends the connection: an open one with a close frame (the socket is destroyed when the server
   * answers, after CLOSE_TIMEOUT_MS, or at the abort), any other at once. Resolves once it is closed.
   */
  close(): Promise<void> {
    return (this.#closed ??= new Promise<void>((resolve) => {
      const { ws } = this;
      if (ws === undefined || ws.readyState === WebSocket.CLOSED) {
        resolve();
        return;
      }
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    }));
  }
}

function matches(matcher: ReplyMatcher, text: string): boolean {
  return 'needle' in matcher ? text.includes(matcher.needle) : matcher.regex.test(text);
}

/** Connected, and sent or answered as asked: ok, or slow, or a certificate near its end. */
function done(run: WebSocketRun): CommandOutcome {
  const { attrs } = run;
  const { connectWarnMs, connectCritMs, replyWarnMs, replyCritMs, tlsSettings } = attrs;
  const connectMs = run.connectMs as number;
  let message = `connected to ${attrs.display} in ${formatMs(connectMs)} ms`;
  if (run.chosenSubprotocol !== undefined) message += ` (subprotocol ${run.chosenSubprotocol})`;
  if (attrs.expect !== undefined) message += `, reply matched ${attrs.expect.display} in ${formatMs(run.replyMs as number)} ms`;
  else if (attrs.send !== undefined) message += ', message sent';

  const problems: { state: State; reason: string; text: string }[] = [];
  if (run.certValidTo !== undefined && tlsSettings !== undefined) {
    const cert = certProblem(tlsSettings, attrs.host, run.certValidTo, daysLeft(run.certValidTo, Date.now()));
    if (cert !== undefined) problems.push({ ...cert, reason: 'cert-expiring' });
  }
  const slow = (ms: number | undefined, warnMs: number | undefined, critMs: number | undefined, reason: string, what: string): void => {
    if (ms === undefined) return;
    if (critMs !== undefined && ms >= critMs) problems.push({ state: 'crit', reason, text: `${what} at or above the critical threshold of ${critMs} ms` });
    else if (warnMs !== undefined && ms >= warnMs) problems.push({ state: 'warn', reason, text: `${what} at or above the warning threshold of ${warnMs} ms` });
  };
  slow(connectMs, connectWarnMs, connectCritMs, 'slow-connect', 'connect time');
  slow(run.replyMs, replyWarnMs, replyCritMs, 'slow-reply', 'reply time');
  if (problems.length === 0) return { state: 'ok', reason: 'ok', message, metrics: metrics(run) };
  const worst = problems.reduce((a, b) => (severity(b.state) > severity(a.state) ? b : a));
  return { state: worst.state, reason: worst.reason, message: `${message}: ${problems.map((problem) => problem.text).join('; ')}`, metrics: metrics(run) };
}

function unexpectedReply(run: WebSocketRun, why: string): CommandOutcome {
  const expected = (run.attrs.expect as ReplyMatcher).display;
  const count = run.messages === 1 ? '1 message' : `${run.messages} messages`;
  return {
    state: 'crit',
    reason: 'unexpected-reply',
    message: `expected a reply matching ${expected} from ${run.attrs.display}, got ${quote(run.lastMessage ?? '')}${run.messages > 1 ? ` (the last of ${count})` : ''}; ${why}`,
    metrics: metrics(run),
  };
}

function timedOut(run: WebSocketRun): CommandOutcome {
  const { display, expect } = run.attrs;
  switch (run.phase) {
    case 'connecting':
      return { state: 'crit', reason: 'timeout', message: `timed out connecting to ${display}`, metrics: metrics(run) };
    case 'sending':
      return { state: 'crit', reason: 'timeout', message: `timed out sending to ${display}`, metrics: metrics(run) };
    case 'waiting':
      if (run.messages > 0) return unexpectedReply(run, 'none matched before the time ran out');
      return { state: 'crit', reason: 'timeout', message: `timed out waiting for a reply matching ${(expect as ReplyMatcher).display} from ${display}`, metrics: metrics(run) };
  }
}

/** An `error` event: a connection that could not be made, a handshake ws refused, or a broken connection. */
function failed(run: WebSocketRun, error: Error): CommandOutcome {
  const { attrs } = run;
  const code = errorCode(error);
  if (run.connectMs === undefined && run.upgraded) {
    // The server answered 101, and ws refused what it chose: judge by the headers, not ws's words.
    const asked = attrs.subprotocol;
    const chosen = run.chosenSubprotocol;
    if (asked !== chosen) {
      const message =
        asked === undefined
          ? `${attrs.display} chose the subprotocol ${chosen ?? ''}, which was not asked for`
          : `${attrs.display} chose ${chosen === undefined ? 'no subprotocol' : `the subprotocol ${chosen}`}, expected ${asked}`;
      return { state: 'crit', reason: 'subprotocol-mismatch', message, metrics: metrics(run) };
    }
    return { state: 'crit', reason: 'handshake-failed', message: `handshake with ${attrs.display} failed: ${error.message}`, metrics: metrics(run) };
  }
  if (code === 'ECONNREFUSED') return { state: 'crit', reason: 'refused', message: `connection refused by ${attrs.host}` };
  if (code !== undefined && DNS_ERROR_CODES.has(code)) return { state: 'crit', reason: 'dns', message: `cannot resolve host ${attrs.hostname} (${code})` };
  if (code !== undefined && isTlsErrorCode(code)) {
    const tls = attrs.tlsSettings;
    return { state: 'crit', reason: 'tls-error', message: `TLS handshake with ${attrs.host} failed: ${code} (${error.message})${tls === undefined ? '' : trusting(tls)}` };
  }
  if (code === 'ETIMEDOUT') return { state: 'crit', reason: 'timeout', message: `timed out connecting to ${attrs.display} (ETIMEDOUT)` };
  const when = run.connectMs === undefined ? 'connecting to' : 'connected to';
  return { state: 'crit', reason: 'connection-error', message: `${code ?? 'error'} ${when} ${attrs.display} (${error.message})`, metrics: metrics(run) };
}

function metrics(run: WebSocketRun): readonly Metric[] {
  const { attrs } = run;
  const list: Metric[] = [];
  if (run.connectMs !== undefined) list.push(gauge('connect_time', run.connectMs, 'ms', { warn: attrs.connectWarnMs, crit: attrs.connectCritMs }));
  if (run.replyMs !== undefined) list.push(gauge('reply_time', run.replyMs, 'ms', { warn: attrs.replyWarnMs, crit: attrs.replyCritMs }));
  if (run.certValidTo !== undefined && attrs.tlsSettings !== undefined) list.push(certDaysMetric(attrs.tlsSettings, daysLeft(run.certValidTo, Date.now())));
  return list;
}

/** The text in JSON quotes, its first QUOTE_CHARS characters and `…` when longer. */
function quote(text: string): string {
  return text.length > QUOTE_CHARS ? `${JSON.stringify(text.slice(0, QUOTE_CHARS))}…` : JSON.stringify(text);
}

function elapsedMs(since: number): number {
  return Math.round((performance.now() - since) * 1000) / 1000;
}
