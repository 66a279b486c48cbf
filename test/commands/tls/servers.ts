import { once } from 'node:events';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, TLSSocket, type TlsOptions } from 'node:tls';
import type { StarttlsProtocol } from '../../../src/commands/tls/starttls.js';
import type { KeyAndCert } from '../../helpers/tls.js';

/**
 * Servers on 127.0.0.1 for the `tls` tests: TLS from the first byte, plain TCP, and a small fake server
 * per STARTTLS protocol that speaks the server side of the upgrade and records what the client said,
 * in clear and over TLS. `close()` ends them all, and every connection they accepted.
 */

/** One connection to a fake STARTTLS server. */
export interface FakeSession {
  /** The lines (or, for postgres, the hex of the bytes) the client sent in clear. */
  readonly plain: string[];
  /** What the client sent over TLS, once the connection closed; empty without an upgrade. */
  readonly secure: Promise<string>;
}

export interface FakeStarttlsServer {
  readonly port: number;
  readonly sessions: FakeSession[];
}

export interface FakeStarttlsOptions {
  /** Answer the request for TLS with the protocol's refusal (for smtp: an EHLO without STARTTLS). */
  readonly refuse?: boolean;
  /** Bytes sent in clear right after agreeing to TLS, before the handshake. */
  readonly strayData?: string;
  /** Greet, then answer nothing. */
  readonly mute?: boolean;
}

/** A server as the tests need it closed: every connection destroyed first. */
class Tracked {
  readonly sockets = new Set<Socket>();
  constructor(readonly server: Server) {}

  track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export class TestServers {
  #servers: Tracked[] = [];

  /** A TLS server presenting `cert` (its `chain` when given); resolves its port. */
  async tls(cert: KeyAndCert & { readonly chain?: string }, options: TlsOptions = {}): Promise<number> {
    const server = createTlsServer({ key: cert.key, cert: cert.chain ?? cert.cert, ...options });
    const tracked = new Tracked(server);
    server.on('secureConnection', (socket) => {
      tracked.track(socket);
      socket.resume();
    });
    server.on('connection', (socket: Socket) => tracked.track(socket));
    server.on('tlsClientError', () => undefined);
    return this.#listen(tracked);
  }

  /** A plain TCP server; `onConnection` gets each connection. */
  async plain(onConnection: (socket: Socket) => void = () => undefined): Promise<number> {
    const server = createNetServer();
    const tracked = new Tracked(server);
    server.on('connection', (socket) => {
      tracked.track(socket);
      onConnection(socket);
    });
    return this.#listen(tracked);
  }

  /** A fake server of `protocol` that upgrades to TLS with `cert` when asked. */
  async starttls(protocol: StarttlsProtocol, cert: KeyAndCert, options: FakeStarttlsOptions = {}): Promise<FakeStarttlsServer> {
    const sessions: FakeSession[] = [];
    const context = createSecureContext({ key: cert.key, cert: cert.cert });
    const port = await this.plain((socket) => {
      const plain: string[] = [];
      let upgraded: ((secure: TLSSocket) => void) | undefined;
      const secure = new Promise<string>((resolve) => {
        upgraded = (tlsSocket) => {
          upgraded = undefined;
          let text = '';
          tlsSocket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
          tlsSocket.on('error', () => undefined);
          tlsSocket.on('close', () => resolve(text));
        };
        socket.on('close', () => {
          if (upgraded !== undefined) resolve('');
        });
      });
      sessions.push({ plain, secure });
      const upgrade = (reply: string | Buffer): void => {
        socket.removeAllListeners('data');
        socket.write(options.strayData === undefined ? reply : Buffer.concat([Buffer.from(reply), Buffer.from(options.strayData)]));
        upgraded?.(new TLSSocket(socket, { isServer: true, secureContext: context }));
      };
      speak(protocol, socket, plain, options, upgrade);
    });
    return { port, sessions };
  }

  async close(): Promise<void> {
    await Promise.all(this.#servers.splice(0).map((tracked) => tracked.close()));
  }

  async #listen(tracked: Tracked): Promise<number> {
    this.#servers.push(tracked);
    tracked.server.listen(0, '127.0.0.1');
    await once(tracked.server, 'listening');
    return (tracked.server.address() as AddressInfo).port;
  }
}

/** What each protocol's server says first, and how it answers each line, up to the upgrade. */
function speak(protocol: StarttlsProtocol, socket: Socket, plain: string[], options: FakeStarttlsOptions, upgrade: (reply: string) => void): void {
  if (protocol === 'postgres') {
    socket.once('data', (chunk: Buffer) => {
      plain.push(chunk.toString('hex'));
      if (options.mute) return;
      if (options.refuse) socket.write('N');
      else upgrade('S');
    });
    return;
  }
  const greetings: Record<Exclude<StarttlsProtocol, 'postgres'>, string> = {
    smtp: '220 fake.test ESMTP ready\r\n',
    imap: '* OK [CAPABILITY IMAP4rev1 STARTTLS] fake.test ready\r\n',
    pop3: '+OK fake.test ready\r\n',
    // FTP's continuation lines need not repeat the code (RFC 959).
    ftp: '220-fake.test FTP\r\n  welcome, be nice\r\n220 ready\r\n',
  };
  socket.write(greetings[protocol]);
  let buffer = '';
  socket.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    let newline: number;
    while ((newline = buffer.indexOf('\r\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 2);
      plain.push(line);
      if (!options.mute) answer(protocol, line, socket, options, upgrade);
    }
  });
}

function answer(protocol: Exclude<StarttlsProtocol, 'postgres'>, line: string, socket: Socket, options: FakeStarttlsOptions, upgrade: (reply: string) => void): void {
  const command = line.toUpperCase();
  switch (protocol) {
    case 'smtp':
      if (command.startsWith('EHLO ')) socket.write(options.refuse ? '250-fake.test\r\n250 SIZE 1000000\r\n' : '250-fake.test\r\n250-SIZE 1000000\r\n250 STARTTLS\r\n');
      else if (command === 'STARTTLS') upgrade('220 2.0.0 go ahead\r\n');
      else socket.write('502 5.5.2 unknown command\r\n');
      return;
    case 'imap':
      if (command === 'V1 STARTTLS') {
        socket.write('* CAPABILITY IMAP4rev1 STARTTLS\r\n');
        if (options.refuse) socket.write('V1 BAD STARTTLS not available\r\n');
        else upgrade('V1 OK begin TLS now\r\n');
      } else socket.write(`${line.split(' ')[0] ?? '*'} BAD unknown command\r\n`);
      return;
    case 'pop3':
      if (command === 'STLS' && !options.refuse) upgrade('+OK begin TLS\r\n');
      else socket.write('-ERR not available\r\n');
      return;
    case 'ftp':
      if (command === 'AUTH TLS' && !options.refuse) upgrade('234 AUTH TLS ok\r\n');
      else socket.write('530 not available\r\n');
      return;
  }
}
