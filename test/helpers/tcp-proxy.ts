import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of one server, for partition tests: `pause()` holds every byte
 * both ways while connections stay open (a network that went silent: queries hang), `cut()` resets
 * every connection and refuses new ones (a network that fails fast), `heal()` undoes either.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #target: { readonly host: string; readonly port: number };
  readonly #pairs = new Set<Pair>();
  #paused = false;
  #cut = false;

  private constructor(server: Server, target: { host: string; port: number }) {
    this.#server = server;
    this.#target = target;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Listens on a free port of 127.0.0.1 and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = createServer();
    const proxy = new TcpProxy(server, target);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** For a connection URL: `postgres://user@127.0.0.1:${port}/db`. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Open client connections. */
  get connections(): number {
    return this.#pairs.size;
  }

  /** Holds every byte from now on, both ways, until `heal()`; new connections are accepted and held too. */
  pause(): void {
    this.#paused = true;
  }

  /** Resets every connection and refuses (resets) new ones until `heal()`. */
  cut(): void {
    this.#cut = true;
    for (const pair of this.#pairs) pair.destroy();
  }

  /** Forwards again: what was held is delivered, in order; new connections are accepted. */
  heal(): void {
    this.#cut = false;
    this.#paused = false;
    for (const pair of this.#pairs) pair.flush();
  }

  /** Resets every connection and stops listening. */
  async close(): Promise<void> {
    for (const pair of this.#pairs) pair.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.#target.port, this.#target.host);
    const pair = new Pair(client, upstream, () => this.#paused);
    this.#pairs.add(pair);
    pair.closed.then(() => this.#pairs.delete(pair), () => this.#pairs.delete(pair));
  }
}

/** One proxied connection: bytes forwarded both ways, or held while paused. */
class Pair {
  readonly closed: Promise<void>;
  readonly #client: Socket;
  readonly #upstream: Socket;
  readonly #paused: () => boolean;
  /** What arrived while paused, in order; `null` for the sender's end of stream. */
  readonly #held: { to: Socket; chunk: Buffer | null }[] = [];

  constructor(client: Socket, upstream: Socket, paused: () => boolean) {
    this.#client = client;
    this.#upstream = upstream;
    this.#paused = paused;
    this.closed = new Promise((resolve) => {
      let open = 2;
      const closed = (): void => {
        if (--open === 0) resolve();
      };
      client.once('close', closed);
      upstream.once('close', closed);
    });
    client.on('data', (chunk: Buffer) => this.#forward(upstream, chunk));
    upstream.on('data', (chunk: Buffer) => this.#forward(client, chunk));
    // Either side going away takes the other with it, as a real connection would.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('end', () => this.#forward(upstream, null));
    upstream.on('end', () => this.#forward(client, null));
  }

  /** Delivers what was held while paused. */
  flush(): void {
    for (const { to, chunk } of this.#held.splice(0)) deliver(to, chunk);
  }

  destroy(): void {
    this.#held.length = 0;
    this.#client.resetAndDestroy();
    this.#upstream.resetAndDestroy();
  }

  #forward(to: Socket, chunk: Buffer | null): void {
    if (this.#paused() || this.#held.length > 0) this.#held.push({ to, chunk });
    else deliver(to, chunk);
  }
}

function deliver(to: Socket, chunk: Buffer | null): void {
  if (to.destroyed) return;
  if (chunk === null) to.end();
  else to.write(chunk);
}
