import { Metadata, Server, ServerCredentials, status, type ServerUnaryCall, type sendUnaryData, type ServiceDefinition } from '@grpc/grpc-js';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { decodeHealthCheckRequest, encodeHealthCheckResponse, HEALTH_CHECK_PATH } from '../../../src/commands/grpc/health-messages.js';
import type { KeyAndCert } from '../../helpers/tls.js';

/**
 * A grpc-js server on 127.0.0.1 implementing `grpc.health.v1.Health/Check` as a real health server
 * does: a status per service name (`""` for the server as a whole), NOT_FOUND for a name it does not
 * know. An answer can also be a gRPC error, raw bytes, or `hang` (never answered).
 */

/** How the server answers for one service. */
export type HealthAnswer =
  /** A ServingStatus number: 1 SERVING, 2 NOT_SERVING, 0 UNKNOWN. */
  | number
  | { readonly error: number; readonly details: string }
  | { readonly bytes: Buffer }
  | 'hang';

export interface HealthServerOptions {
  /** Service name → answer; a name not in it gets NOT_FOUND. Default `{ '': 1 }`. */
  readonly services?: Readonly<Record<string, HealthAnswer>>;
  /** Serve TLS with this key and certificate; plaintext without. */
  readonly tls?: KeyAndCert;
  /** Register no health service at all (a gRPC server that does not implement it). */
  readonly withoutHealth?: boolean;
}

/** A call the server received. */
export interface ReceivedCall {
  readonly service: string;
  readonly metadata: Record<string, unknown>;
}

const healthService: ServiceDefinition = {
  Check: {
    path: HEALTH_CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: Buffer) => value,
    responseDeserialize: (bytes: Buffer) => bytes,
  },
};

/** Another service, so that a server without the health one still has something registered. */
const echoService: ServiceDefinition = {
  Echo: { ...(healthService.Check as ServiceDefinition[string]), path: '/test.Echo/Echo' },
};

/** What the server saw; shared by its handler and the TestHealthServer. */
interface Seen {
  readonly calls: ReceivedCall[];
  cancelled: number;
}

export class TestHealthServer {
  readonly port: number;
  readonly #seen: Seen;
  readonly #server: Server;

  private constructor(server: Server, port: number, seen: Seen) {
    this.#server = server;
    this.port = port;
    this.#seen = seen;
  }

  /** The calls received, in order. */
  get calls(): readonly ReceivedCall[] {
    return this.#seen.calls;
  }

  /** Calls cancelled by the client (a hanging call whose client gave up). */
  get cancelled(): number {
    return this.#seen.cancelled;
  }

  static async start(options: HealthServerOptions = {}): Promise<TestHealthServer> {
    const services = options.services ?? { '': 1 };
    const server = new Server();
    const seen: Seen = { calls: [], cancelled: 0 };
    const check = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>): void => {
      const service = decodeHealthCheckRequest(call.request);
      seen.calls.push({ service, metadata: call.metadata.getMap() });
      const answer = services[service];
      if (answer === undefined) callback({ code: status.NOT_FOUND, details: 'unknown service' });
      else if (answer === 'hang') call.on('cancelled', () => seen.cancelled++);
      else if (typeof answer === 'number') callback(null, encodeHealthCheckResponse(answer));
      else if ('bytes' in answer) callback(null, answer.bytes);
      else callback({ code: answer.error, details: answer.details, metadata: new Metadata() });
    };
    if (options.withoutHealth) server.addService(echoService, { Echo: check });
    else server.addService(healthService, { Check: check });
    const credentials = options.tls
      ? ServerCredentials.createSsl(null, [{ private_key: Buffer.from(options.tls.key), cert_chain: Buffer.from(options.tls.cert) }])
      : ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))));
    return new TestHealthServer(server, port, seen);
  }

  /** Ends every call and connection at once. */
  close(): void {
    this.#server.forceShutdown();
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of `port`, which sees each client connection, and when it closes:
 * what a run left open shows here.
 */
export class ConnectionWatcher {
  readonly port: number;
  /** The client connections, open and closed, in the order they came. */
  readonly connections: readonly Socket[];
  readonly #server: NetServer;

  private constructor(server: NetServer, connections: readonly Socket[]) {
    this.#server = server;
    this.connections = connections;
    this.port = (server.address() as AddressInfo).port;
  }

  static async start(targetPort: number): Promise<ConnectionWatcher> {
    const connections: Socket[] = [];
    const server = createServer((client) => {
      connections.push(client);
      const upstream = connect({ host: '127.0.0.1', port: targetPort });
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new ConnectionWatcher(server, connections);
  }

  /** Resolves once every connection so far has closed. */
  async allClosed(): Promise<void> {
    await Promise.all(this.connections.filter((socket) => !socket.closed).map((socket) => once(socket, 'close')));
  }

  close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
