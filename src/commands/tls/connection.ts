import { Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { DNS_ERROR_CODES, errorCode, errorMessage } from '../../core/errors.js';
import type { Metric } from '../../results/metric.js';
import type { CommandOutcome } from '../../results/result.js';

/**
 * One TCP connection that a probe talks over as a dialogue: write a line, await the reply. Every wait
 * rejects when the connection fails (the socket's error: `ECONNREFUSED`, `ENOTFOUND`, …), closes, or is
 * aborted, and every read is bounded, so a server that says too much or nothing is an outcome rather than
 * a hang. `upgrade` turns the connection into TLS in place (after STARTTLS, or at once); `destroy` closes
 * whatever sockets it holds, whichever path the run took.
 */

/** Why a wait ended without what it waited for. */
export const EndKinds = ['closed', 'aborted', 'too-long', 'stray-data', 'malformed'] as const;
export type EndKind = (typeof EndKinds)[number];

/** A wait that ended without its answer, for a reason other than a socket error (those reject as they are). */
export class ConnectionEnded extends Error {
  readonly kind: EndKind;

  constructor(kind: EndKind, message: string) {
    super(message);
    this.name = 'ConnectionEnded';
    this.kind = kind;
  }
}

/** A numbered reply (SMTP, FTP): its code and the text of each of its lines. */
export interface Reply {
  readonly code: number;
  /** Each line's text after the code and its separator. */
  readonly lines: readonly string[];
}

/** The longest line read: RFC 5321 allows 512 bytes a reply line; IMAP greetings with capabilities run longer. */
const MAX_LINE_BYTES = 4096;
/** The most lines of one numbered reply (an EHLO lists a few dozen extensions at most). */
const MAX_REPLY_LINES = 100;
/** The most bytes held unread: more than any reply a probe waits for, so a server that floods is cut off. */
const MAX_BUFFERED_BYTES = 65_536;
/** How much of a line a message quotes. */
const QUOTE_CHARS = 80;
const REPLY_LINE = /^(\d{3})(?:([ -])(.*))?$/s;

interface Waiter {
  ready(): boolean;
  resolve(): void;
  reject(error: Error): void;
}

export class Connection {
  #socket: Socket | TLSSocket;
  /** The TCP socket under a TLS one, kept to destroy it too. */
  #raw: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #connected = false;
  #secure = false;
  #finished = false;
  /** The first failure: later waits reject with it at once. */
  #failure: Error | undefined;
  #waiter: Waiter | undefined;
  #doing = 'connecting to';

  constructor() {
    this.#raw = this.#socket = new Socket();
    this.#listen(this.#raw);
  }

  /** What the connection is doing, for a timeout's message: `connecting to`, `waiting for the banner from`, `in the TLS handshake with`. */
  get doing(): string {
    return this.#doing;
  }

  /** Whether the connection is TLS now. */
  get secure(): boolean {
    return this.#secure;
  }

  /** Connects to `host:port` (name resolution included); rejects with the socket's error. */
  async connect(host: string, port: number): Promise<void> {
    this.#doing = 'connecting to';
    this.#raw.once('connect', this.#onConnect);
    this.#raw.connect({ host, port });
    await this.#wait(() => this.#connected);
  }

  /** Sends `data` as it is. */
  write(data: string | Buffer): void {
    if (this.#failure === undefined) this.#socket.write(data);
  }

  /** The next line, without its CR LF; `what` (`the banner`, `the reply to EHLO`) says what is awaited, for messages. */
  async readLine(what: string): Promise<string> {
    this.#doing = `waiting for ${what} from`;
    let end = -1;
    await this.#wait(() => {
      end = this.#buffer.indexOf(0x0a);
      if (end < 0 && this.#buffer.length > MAX_LINE_BYTES) throw new ConnectionEnded('too-long', `${what} is longer than ${MAX_LINE_BYTES} bytes without a line break`);
      return end >= 0;
    });
    const line = this.#buffer.subarray(0, end > 0 && this.#buffer[end - 1] === 0x0d ? end - 1 : end).toString('utf8');
    this.#buffer = this.#buffer.subarray(end + 1);
    return line;
  }

  /**
   * The next numbered reply: `250 ok`, or `250-…` lines up to a `250 …` one. As FTP allows (RFC 959),
   * the lines between the first and the last need not start with the code. A first line that is not
   * numbered rejects as `malformed`.
   */
  async readReply(what: string): Promise<Reply> {
    const first = await this.readLine(what);
    const parsed = REPLY_LINE.exec(first);
    if (parsed === null) throw new ConnectionEnded('malformed', `expected a numbered reply as ${what}, got ${quote(first)}`);
    const code = parsed[1] as string;
    const lines = [parsed[3] ?? ''];
    if (parsed[2] !== '-') return { code: Number(code), lines };
    for (;;) {
      if (lines.length >= MAX_REPLY_LINES) throw new ConnectionEnded('too-long', `${what} runs over ${MAX_REPLY_LINES} lines`);
      const line = await this.readLine(what);
      const next = REPLY_LINE.exec(line);
      if (next?.[1] !== code) {
        lines.push(line);
        continue;
      }
      lines.push(next[3] ?? '');
      if (next[2] !== '-') return { code: Number(code), lines };
    }
  }

  /** Writes `line` and CR LF, and reads the numbered reply to it; `command` names it in messages (a password is never shown). */
  async command(line: string, command: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.readReply(`the reply to ${command}`);
  }

  /** The next `count` bytes. */
  async readBytes(count: number, what: string): Promise<Buffer> {
    this.#doing = `waiting for ${what} from`;
    await this.#wait(() => this.#buffer.length >= count);
    const bytes = this.#buffer.subarray(0, count);
    this.#buffer = this.#buffer.subarray(count);
    return bytes;
  }

  /**
   * Starts TLS on the connection and waits for the handshake. Refuses when the server sent more than
   * the reply that agreed to it: bytes sent in clear ahead of the handshake would be read as if they
   * had come over TLS (the STARTTLS injection of CVE-2011-0411).
   */
  async upgrade(options: ConnectionOptions): Promise<TLSSocket> {
    if (this.#buffer.length > 0) {
      throw new ConnectionEnded('stray-data', `the server sent ${quote(this.#buffer.toString('utf8'))} after agreeing to TLS, before the handshake`);
    }
    this.#doing = 'in the TLS handshake with';
    this.#raw.removeListener('data', this.#onData);
    this.#raw.removeListener('end', this.#onEnd);
    const secure = tlsConnect({ ...options, socket: this.#raw });
    this.#socket = secure;
    this.#listen(secure);
    secure.once('secureConnect', this.#onSecureConnect);
    await this.#wait(() => this.#secure);
    return secure;
  }

  /**
   * Ends the connection politely: writes `goodbye` (`QUIT\r\n`) if given and waits until it is handed
   * to the system or the connection fails or is aborted. Never rejects: the run's outcome is known.
   */
  async end(goodbye?: string | Buffer): Promise<void> {
    if (this.#failure !== undefined) return;
    this.#socket.once('finish', this.#onFinish);
    if (goodbye === undefined) this.#socket.end();
    else this.#socket.end(goodbye);
    try {
      await this.#wait(() => this.#finished);
    } catch {
      // Closed or aborted while saying goodbye: nothing left to do.
    }
  }

  /** Stops the connection: the wait under way rejects as `aborted`. For the run's abort listener. */
  readonly abort = (): void => {
    this.#fail(new ConnectionEnded('aborted', 'aborted'));
    this.destroy();
  };

  /** Closes the sockets at once; safe to call on any path, more than once. */
  destroy(): void {
    this.#socket.destroy();
    this.#raw.destroy();
  }

  #listen(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('error', this.#onError);
    socket.once('end', this.#onEnd);
    socket.once('close', this.#onClose);
  }

  /** Resolves once `ready()` is true (checked now and after every event); rejects with the connection's failure. */
  #wait(ready: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiter = { ready, resolve, reject };
      this.#wake();
    });
  }

  #wake(): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    let ready: boolean;
    try {
      ready = waiter.ready();
    } catch (error) {
      this.#waiter = undefined;
      waiter.reject(error as Error);
      return;
    }
    // What arrived before the connection ended is still read: a server may reply and close at once.
    if (ready) {
      this.#waiter = undefined;
      waiter.resolve();
    } else if (this.#failure !== undefined) {
      this.#waiter = undefined;
      waiter.reject(this.#failure);
    }
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    this.#wake();
  }

  readonly #onConnect = (): void => {
    this.#connected = true;
    this.#wake();
  };

  readonly #onSecureConnect = (): void => {
    this.#secure = true;
    this.#wake();
  };

  readonly #onFinish = (): void => {
    this.#finished = true;
    this.#wake();
  };

  readonly #onData = (chunk: Buffer): void => {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    if (this.#buffer.length > MAX_BUFFERED_BYTES) {
      this.#fail(new ConnectionEnded('too-long', `the server sent more than ${MAX_BUFFERED_BYTES} bytes unread`));
      this.destroy();
      return;
    }
    this.#wake();
  };

  readonly #onError = (error: Error): void => {
    this.#fail(error);
  };

  readonly #onEnd = (): void => {
    this.#fail(new ConnectionEnded('closed', 'the server closed the connection'));
  };

  readonly #onClose = (): void => {
    this.#fail(new ConnectionEnded('closed', 'the connection closed'));
  };
}

/**
 * The outcome of a socket error on `conn` (to `where`, `host:port`): `refused`, `dns`, `timeout`
 * (`ETIMEDOUT`) or `connection-error`. Rethrows anything that is not a system error: a bug.
 */
export function socketFailure(error: unknown, conn: Connection, where: string, host: string, metrics: readonly Metric[]): CommandOutcome {
  const code = errorCode(error);
  if (code === undefined) throw error;
  if (code === 'ECONNREFUSED') return { state: 'crit', reason: 'refused', message: `connection refused by ${where}`, metrics };
  if (DNS_ERROR_CODES.has(code)) return { state: 'crit', reason: 'dns', message: `cannot resolve host ${host} (${code})`, metrics };
  if (code === 'ETIMEDOUT') return { state: 'crit', reason: 'timeout', message: `timed out ${conn.doing} ${where} (ETIMEDOUT)`, metrics };
  return { state: 'crit', reason: 'connection-error', message: `${code} ${conn.doing} ${where} (${errorMessage(error)})`, metrics };
}

/** A line as messages quote it: JSON, cut at 80 characters. */
export function quote(text: string): string {
  return text.length > QUOTE_CHARS ? `${JSON.stringify(text.slice(0, QUOTE_CHARS))}…` : JSON.stringify(text);
}

/** A reply as messages quote it: its code and first line, `"554 5.7.1 go away"`. */
export function quoteReply(reply: Reply): string {
  const first = reply.lines[0] ?? '';
  return quote(first === '' ? String(reply.code) : `${reply.code} ${first}`);
}
