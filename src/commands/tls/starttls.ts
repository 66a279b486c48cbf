import { quote, quoteReply, type Connection, type Reply } from './connection.js';

/**
 * The plain-text dialogues that turn a connection into TLS (STARTTLS and its cousins), client side, one
 * per protocol. Each reads what the server says first, asks for TLS, and stops where the next bytes are
 * the handshake; anything else the server answers is a `StarttlsRefused` quoting it. Every read is bounded
 * by the `Connection`.
 */

/** The protocols whose upgrade to TLS the `tls` command speaks. */
export const StarttlsProtocols = ['smtp', 'imap', 'pop3', 'ftp', 'postgres'] as const;
export type StarttlsProtocol = (typeof StarttlsProtocols)[number];

/** The port a protocol's upgrade is usually offered on; `tls` is TLS from the first byte (HTTPS). */
export const DEFAULT_PORTS: Readonly<Record<StarttlsProtocol | 'tls', number>> = { tls: 443, smtp: 25, imap: 143, pop3: 110, ftp: 21, postgres: 5432 };

/** The server did not agree to switch to TLS; the message says what it answered instead. */
export class StarttlsRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StarttlsRefused';
  }
}

/**
 * Speaks `protocol`'s upgrade on a connected `conn`, up to the handshake. `helo`: the name an SMTP
 * client gives in EHLO. Rejects with `StarttlsRefused`, or as the connection's waits reject.
 */
export async function negotiateStarttls(conn: Connection, protocol: StarttlsProtocol, helo: string): Promise<void> {
  switch (protocol) {
    case 'smtp':
      return smtp(conn, helo);
    case 'imap':
      return imap(conn);
    case 'pop3':
      return pop3(conn);
    case 'ftp':
      return ftp(conn);
    case 'postgres':
      return postgres(conn);
  }
}

/** What a client says before it closes, sent over TLS once the probe is done; `undefined`: just close. */
export function goodbye(protocol: StarttlsProtocol | undefined): string | undefined {
  switch (protocol) {
    case 'smtp':
    case 'pop3':
    case 'ftp':
      return 'QUIT\r\n';
    case 'imap':
      return 'V2 LOGOUT\r\n';
    // A PostgreSQL server expects a startup message after the handshake; closing is the polite thing.
    case 'postgres':
    case undefined:
      return undefined;
  }
}

/**
 * The extensions an EHLO reply lists (its lines after the first), by upper-case keyword, with their
 * parameters: `AUTH PLAIN LOGIN` → `AUTH` → `['PLAIN', 'LOGIN']`.
 */
export function smtpExtensions(ehlo: Reply): ReadonlyMap<string, readonly string[]> {
  const extensions = new Map<string, readonly string[]>();
  for (const line of ehlo.lines.slice(1)) {
    const [keyword, ...parameters] = line.trim().split(/\s+/);
    if (keyword !== undefined && keyword !== '') extensions.set(keyword.toUpperCase(), parameters.map((parameter) => parameter.toUpperCase()));
  }
  return extensions;
}

/** `STARTTLS, SIZE, AUTH` or `none`, for messages. */
export function listExtensions(extensions: ReadonlyMap<string, readonly string[]>): string {
  return extensions.size === 0 ? 'none' : [...extensions.keys()].join(', ');
}

async function smtp(conn: Connection, helo: string): Promise<void> {
  const banner = await conn.readReply('the banner');
  if (banner.code !== 220) throw new StarttlsRefused(`expected a 220 banner, got ${quoteReply(banner)}`);
  const ehlo = await conn.command(`EHLO ${helo}`, 'EHLO');
  if (ehlo.code !== 250) throw new StarttlsRefused(`EHLO was answered ${quoteReply(ehlo)}`);
  const extensions = smtpExtensions(ehlo);
  if (!extensions.has('STARTTLS')) throw new StarttlsRefused(`the server does not offer STARTTLS (EHLO lists ${listExtensions(extensions)})`);
  const reply = await conn.command('STARTTLS', 'STARTTLS');
  if (reply.code !== 220) throw new StarttlsRefused(`STARTTLS was answered ${quoteReply(reply)}`);
}

/** The most untagged lines read while waiting for the tagged answer to STARTTLS. */
const MAX_UNTAGGED_LINES = 100;

async function imap(conn: Connection): Promise<void> {
  const greeting = await conn.readLine('the greeting');
  if (!/^\* (?:OK|PREAUTH)\b/i.test(greeting)) throw new StarttlsRefused(`expected an IMAP greeting "* OK", got ${quote(greeting)}`);
  conn.write('V1 STARTTLS\r\n');
  for (let untagged = 0; untagged < MAX_UNTAGGED_LINES; untagged++) {
    const line = await conn.readLine('the reply to STARTTLS');
    if (/^V1 OK\b/i.test(line)) return;
    if (/^V1 /i.test(line)) throw new StarttlsRefused(`STARTTLS was answered ${quote(line)}`);
    if (!line.startsWith('* ')) throw new StarttlsRefused(`expected an IMAP reply to STARTTLS, got ${quote(line)}`);
  }
  throw new StarttlsRefused(`no answer to STARTTLS after ${MAX_UNTAGGED_LINES} untagged lines`);
}

async function pop3(conn: Connection): Promise<void> {
  const greeting = await conn.readLine('the greeting');
  if (!/^\+OK\b/.test(greeting)) throw new StarttlsRefused(`expected a POP3 greeting "+OK", got ${quote(greeting)}`);
  conn.write('STLS\r\n');
  const reply = await conn.readLine('the reply to STLS');
  if (!/^\+OK\b/.test(reply)) throw new StarttlsRefused(`STLS was answered ${quote(reply)}`);
}

async function ftp(conn: Connection): Promise<void> {
  const banner = await conn.readReply('the banner');
  if (banner.code !== 220) throw new StarttlsRefused(`expected a 220 banner, got ${quoteReply(banner)}`);
  const reply = await conn.command('AUTH TLS', 'AUTH TLS');
  if (reply.code !== 234) throw new StarttlsRefused(`AUTH TLS was answered ${quoteReply(reply)}`);
}

/** The SSLRequest: length 8, then the code 80877103 (1234 in the high half, 5679 in the low). */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

async function postgres(conn: Connection): Promise<void> {
  conn.write(SSL_REQUEST);
  const [answer] = await conn.readBytes(1, 'the answer to the SSLRequest');
  if (answer === 0x53) return; // 'S'
  if (answer === 0x4e) throw new StarttlsRefused('the server does not accept SSL (it answered N to the SSLRequest; is ssl off?)');
  // 'E': a server from before protocol 3 that sends an error; anything else is not PostgreSQL.
  throw new StarttlsRefused(`expected S or N in answer to the SSLRequest, got ${quote(String.fromCharCode(answer ?? 0))}`);
}
