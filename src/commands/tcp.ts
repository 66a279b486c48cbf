import { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { gauge, type Metric } from '../results/metric.js';
import type { CommandOutcome } from '../results/result.js';
import { duration, integer, nonEmptyString, port, validRegex } from '../validation/schema-types.js';
import { compileRegexLiteral } from '../core/regex-literal.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from './command.js';
import { formatMs } from '../core/format.js';
import { DNS_ERROR_CODES } from '../core/errors.js';
import { hostPort } from '../core/host-port.js';

/**
 * What `expect` became at load time: the bytes of a substring, or a compiled regular expression. Plain
 * data, so a reloaded config with the same `expect` compares equal to the running one.
 */
export type ResponseMatcher =
  /** `display`: how to show it in messages, `"+OK"` or `/^SSH-2\.0-/i`. */
  | { readonly display: string; readonly needle: Buffer }
  | { readonly display: string; readonly regex: RegExp };

/** Whether the bytes received so far contain what was expected. */
function responseMatches(matcher: ResponseMatcher, received: Buffer): boolean {
  return 'needle' in matcher ? received.includes(matcher.needle) : matcher.regex.test(received.toString('utf8'));
}

/** The longest `readBytes` accepted: a probe reads a banner, not a payload. */
const MAX_READ_BYTES = 1_048_576;
/** How much of the received data an `unexpected-response` message quotes. */
const QUOTE_CHARS = 80;

const expectError = 'expected a non-empty substring, or a regular expression written /pattern/flags';

function toMatcher(text: string, ctx: z.RefinementCtx<string>): ResponseMatcher {
  const regex = compileRegexLiteral(text);
  if (regex === null) return { display: JSON.stringify(text), needle: Buffer.from(text, 'utf8') };
  return { display: text, regex: validRegex(regex, text, ctx) };
}

const attributes = z
  .strictObject({
    /** Host name or IP address to connect to. */
    host: nonEmptyString('a host name or IP address'),
    /** TCP port, 1–65535. */
    port: port(),
    /** Written once connected (e.g. `"PING\r\n"`); without `expect`, the run ends once it is sent. */
    send: z.string({ error: 'expected a string' }).optional(),
    /** Text the response must contain: a substring, or a regular expression written `/pattern/flags`. */
    expect: z.string({ error: expectError }).min(1, { error: expectError }).transform(toMatcher).optional(),
    /** Most bytes read while waiting for `expect`; default 4096. */
    readBytes: integer(1, MAX_READ_BYTES).default(4096),
    /** Connect time (ms, name resolution included) at or above which the result is `warn`. */
    connectWarnMs: duration().optional(),
    /** Connect time (ms, name resolution included) at or above which the result is `crit`. */
    connectCritMs: duration().optional(),
  })
  .superRefine((value, ctx) => {
    if (value.connectWarnMs !== undefined && value.connectCritMs !== undefined && value.connectWarnMs > value.connectCritMs) {
      ctx.addIssue({ code: 'custom', path: ['connectWarnMs'], message: `expected a duration no longer than connectCritMs (${value.connectCritMs}ms)` });
    }
  });

/** The `tcp` command's attributes after parsing: durations in milliseconds, `expect` compiled. */
export type TcpAttributes = z.output<typeof attributes>;

/**
 * `tcp`: connects to `host:port`, optionally sends `send` and waits for `expect`, and reports the
 * connect time. Reasons: `refused`, `timeout`, `dns`, `unexpected-response`, `connection-error`,
 * `slow-connect`.
 */
export function tcpCommand(): Command<TcpAttributes> {
  return defineCommand({ name: 'tcp', attributes, run: runTcp });
}

async function runTcp(attrs: TcpAttributes, ctx: CommandContext): Promise<CommandOutcome> {
  const probe = new TcpProbe(attrs);
  const stopListening = listenForAbort(ctx, probe.onAbort);
  if (stopListening === null) {
    probe.destroy();
    return { state: 'crit', reason: 'timeout', message: `timed out before connecting to ${target(attrs)}` };
  }
  try {
    probe.start();
    return await probe.outcome;
  } finally {
    stopListening();
    probe.destroy();
  }
}

/**
 * One run's socket and its state. The socket's listeners are the module-level functions below, which
 * Node calls with `this` set to the socket: a run allocates the socket, its promise and its abort
 * listener, and no other closures. It is destroyed by `runTcp`.
 */
class TcpProbe extends Socket {
  readonly attrs: TcpAttributes;
  /** Settles once, with the first outcome: later events of the run are ignored. */
  readonly outcome: Promise<CommandOutcome>;
  #resolve!: (outcome: CommandOutcome) => void;
  #settled = false;
  #startedAt = 0;
  /** Milliseconds from `connect()` to the connection being established; undefined until then. */
  connectMs: number | undefined;
  received: Buffer | undefined;
  phase: 'connecting' | 'sending' | 'reading' = 'connecting';

  constructor(attrs: TcpAttributes) {
    super();
    this.attrs = attrs;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  get settled(): boolean {
    return this.#settled;
  }

  start(): void {
    this.on('error', onError);
    this.once('connect', onConnect);
    if (this.attrs.expect !== undefined) {
      this.on('data', onData);
      this.once('end', onEnd);
    }
    this.#startedAt = performance.now();
    this.connect({ host: this.attrs.host, port: this.attrs.port });
  }

  markConnected(): void {
    this.connectMs = Math.round((performance.now() - this.#startedAt) * 1000) / 1000;
  }

  settle(outcome: CommandOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(outcome);
  }

  /** The run was aborted. */
  readonly onAbort = (): void => {
    this.settle(timedOut(this));
  };
}

function onConnect(this: TcpProbe): void {
  this.markConnected();
  const { send, expect } = this.attrs;
  if (expect !== undefined) {
    this.phase = 'reading';
    if (send !== undefined) this.write(send);
  } else if (send !== undefined) {
    // Without `expect` the run is over once the data has left: `finish` fires when it is flushed.
    this.phase = 'sending';
    this.once('finish', onSent);
    this.end(send);
  } else {
    this.settle(connected(this));
  }
}

function onSent(this: TcpProbe): void {
  this.settle(connected(this));
}

function onData(this: TcpProbe, chunk: Buffer): void {
  if (this.settled) return;
  const { readBytes, expect } = this.attrs;
  const held = this.received?.length ?? 0;
  const piece = chunk.length > readBytes - held ? chunk.subarray(0, readBytes - held) : chunk;
  this.received = this.received === undefined ? piece : Buffer.concat([this.received, piece], held + piece.length);
  if (responseMatches(expect as ResponseMatcher, this.received)) this.settle(connected(this));
  else if (this.received.length >= readBytes) this.settle(unexpected(this, `read ${readBytes} bytes`));
}

function onEnd(this: TcpProbe): void {
  this.settle(unexpected(this, 'connection closed'));
}

function onError(this: TcpProbe, error: NodeJS.ErrnoException): void {
  const code = error.code ?? 'unknown error';
  if (code === 'ECONNREFUSED') {
    this.settle({ state: 'crit', reason: 'refused', message: `connection refused by ${target(this.attrs)}` });
  } else if (DNS_ERROR_CODES.has(code)) {
    this.settle({ state: 'crit', reason: 'dns', message: `cannot resolve host ${this.attrs.host} (${code})` });
  } else if (code === 'ETIMEDOUT') {
    this.settle(timedOut(this));
  } else {
    const when = this.connectMs === undefined ? 'connection to' : 'connection with';
    this.settle({ state: 'crit', reason: 'connection-error', message: `${when} ${target(this.attrs)} failed: ${code} (${error.message})`, metrics: metrics(this) });
  }
}

/** Connected (and, where asked, sent or matched): ok, or `slow-connect` past a threshold. */
function connected(probe: TcpProbe): CommandOutcome {
  const { connectWarnMs, connectCritMs, expect } = probe.attrs;
  const ms = probe.connectMs as number;
  const base = `connected to ${target(probe.attrs)} in ${formatMs(ms)} ms`;
  const matched = expect === undefined ? '' : `, response matched ${expect.display}`;
  if (connectCritMs !== undefined && ms >= connectCritMs) {
    return { state: 'crit', reason: 'slow-connect', message: `${base}, at or above the critical threshold of ${connectCritMs} ms${matched}`, metrics: metrics(probe) };
  }
  if (connectWarnMs !== undefined && ms >= connectWarnMs) {
    return { state: 'warn', reason: 'slow-connect', message: `${base}, at or above the warning threshold of ${connectWarnMs} ms${matched}`, metrics: metrics(probe) };
  }
  return { state: 'ok', reason: 'ok', message: base + matched, metrics: metrics(probe) };
}

function unexpected(probe: TcpProbe, why: string): CommandOutcome {
  const expected = (probe.attrs.expect as ResponseMatcher).display;
  return {
    state: 'crit',
    reason: 'unexpected-response',
    message: `expected ${expected} from ${target(probe.attrs)}, got ${quote(probe.received)} (${why})`,
    metrics: metrics(probe),
  };
}

function timedOut(probe: TcpProbe): CommandOutcome {
  const where = target(probe.attrs);
  switch (probe.phase) {
    case 'connecting':
      return { state: 'crit', reason: 'timeout', message: `timed out connecting to ${where}` };
    case 'sending':
      return { state: 'crit', reason: 'timeout', message: `timed out sending to ${where}`, metrics: metrics(probe) };
    case 'reading':
      return {
        state: 'crit',
        reason: 'timeout',
        message: `timed out waiting for the banner from ${where}: expected ${(probe.attrs.expect as ResponseMatcher).display}, got ${quote(probe.received)}`,
        metrics: metrics(probe),
      };
  }
}

function metrics(probe: TcpProbe): readonly Metric[] {
  if (probe.connectMs === undefined) return [];
  const { connectWarnMs, connectCritMs } = probe.attrs;
  return [gauge('connect_time', probe.connectMs, 'ms', { warn: connectWarnMs, crit: connectCritMs })];
}

function target({ host, port }: TcpAttributes): string {
  return hostPort(host, port);
}

function quote(received: Buffer | undefined): string {
  if (received === undefined || received.length === 0) return 'nothing';
  const text = received.toString('utf8');
  return text.length > QUOTE_CHARS ? `${JSON.stringify(text.slice(0, QUOTE_CHARS))}…` : JSON.stringify(text);
}

