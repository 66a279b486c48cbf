import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as connectTcp, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { connect, type ChannelModel } from 'amqplib';

/**
 * Connect-or-fail helpers for the tests that need the machine's RabbitMQ (`npm run test:services`). A
 * server that is not there makes the test fail with a message naming it and how to start it: these
 * tests are never skipped.
 */

/** The broker the tests use: `AMQP_URL`, default the machine's RabbitMQ as guest. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** Its management API: `RABBITMQ_MANAGEMENT_URL`, default the local one. */
export const MANAGEMENT_URL = process.env.RABBITMQ_MANAGEMENT_URL ?? 'http://127.0.0.1:15672';
/** Management API credentials: `RABBITMQ_USER` / `RABBITMQ_PASSWORD`, default guest/guest. */
export const MANAGEMENT_USER = process.env.RABBITMQ_USER ?? 'guest';
export const MANAGEMENT_PASSWORD = process.env.RABBITMQ_PASSWORD ?? 'guest';

const START_BROKER = 'start it with `rabbitmq-server -detached` (or `systemctl start rabbitmq-server`), or point AMQP_URL at one';
const ENABLE_MANAGEMENT = 'enable it with `rabbitmq-plugins enable rabbitmq_management` (the broker must be running), or point RABBITMQ_MANAGEMENT_URL at one';

/** A connection to the test broker; throws, naming the broker and how to start it, when it is not there. */
export async function requireRabbitMq(): Promise<ChannelModel> {
  try {
    const connection = await connect(AMQP_URL, { timeout: 5_000 });
    connection.on('error', () => undefined);
    return connection;
  } catch (error) {
    throw new Error(`These tests need RabbitMQ at ${redact(AMQP_URL)}, which is not reachable (${explain(error)}): ${START_BROKER}.`, { cause: error });
  }
}

/** Throws, naming the management API and how to enable it, when it does not answer as the test user. */
export async function requireManagementApi(): Promise<void> {
  let response: Response;
  try {
    response = await management('/api/overview');
  } catch (error) {
    throw new Error(`These tests need RabbitMQ's management API at ${MANAGEMENT_URL}, which is not reachable (${explain(error)}): ${ENABLE_MANAGEMENT}.`, { cause: error });
  }
  if (response.status !== 200) {
    throw new Error(`These tests need RabbitMQ's management API at ${MANAGEMENT_URL} as user ${MANAGEMENT_USER}, which answered HTTP ${response.status}: check RABBITMQ_USER/RABBITMQ_PASSWORD.`);
  }
}

/** A request to the management API as the test user, answered within 10 s. */
export function management(path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Basic ${Buffer.from(`${MANAGEMENT_USER}:${MANAGEMENT_PASSWORD}`).toString('base64')}` };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${MANAGEMENT_URL}${path}`, {
    method: init.method ?? 'GET',
    headers,
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    signal: AbortSignal.timeout(10_000),
  });
}

/** A name no other test run uses: `<prefix>-<8 hex>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The broker's names of the connections whose client gave `connection_name` this value. */
export async function connectionsNamed(connectionName: string): Promise<string[]> {
  const response = await management('/api/connections?columns=name,client_properties.connection_name');
  if (response.status !== 200) throw new Error(`Expected the connection list from ${MANAGEMENT_URL}, got HTTP ${response.status}`);
  const connections = (await response.json()) as { name: string; client_properties?: { connection_name?: string } }[];
  return connections.filter((connection) => connection.client_properties?.connection_name === connectionName).map((connection) => connection.name);
}

/** Closes a connection from the broker's side (`DELETE /api/connections/{name}`), as an operator would. */
export async function closeConnection(name: string): Promise<void> {
  const response = await fetch(`${MANAGEMENT_URL}/api/connections/${encodeURIComponent(name)}`, {
    method: 'DELETE',
    headers: {
      authorization: `Basic ${Buffer.from(`${MANAGEMENT_USER}:${MANAGEMENT_PASSWORD}`).toString('base64')}`,
      'x-reason': 'vigil test: connection cut',
    },
    signal: AbortSignal.timeout(10_000),
  });
  if (response.status !== 204 && response.status !== 404) throw new Error(`Expected 204 closing connection ${name}, got HTTP ${response.status}`);
}

/**
 * A TCP proxy on 127.0.0.1 (port 0) to the broker: `down()` cuts every connection and refuses new ones
 * (the broker is "away"), `up()` lets them through again. With `tls`, clients speak amqps:// to it.
 */
export interface BrokerProxy {
  /** `amqp://guest:guest@127.0.0.1:<port>` (`amqps://` with `tls`) with the credentials of AMQP_URL. */
  readonly url: string;
  down(): void;
  up(): void;
  close(): Promise<void>;
}

export async function brokerProxy(options: { tls?: { key: string; cert: string } } = {}): Promise<BrokerProxy> {
  const broker = new URL(AMQP_URL);
  const brokerPort = Number(broker.port === '' ? 5672 : broker.port);
  const sockets = new Set<Socket>();
  let accepting = true;
  const onClient = (client: Socket): void => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (!accepting) {
      client.destroy();
      return;
    }
    const upstream = connectTcp({ host: broker.hostname, port: brokerPort });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => undefined);
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  };
  // With `tls`, the proxy ends TLS (amqps://) and speaks plain AMQP to the broker, as a TLS-terminating balancer does.
  const server: Server = options.tls === undefined ? createServer(onClient) : createTlsServer({ key: options.tls.key, cert: options.tls.cert }, onClient);
  if (options.tls !== undefined) server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const url = new URL(AMQP_URL);
  if (options.tls !== undefined) url.protocol = 'amqps:';
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    down() {
      accepting = false;
      for (const socket of sockets) socket.destroy();
    },
    up() {
      accepting = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

function explain(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return explain(error.errors[0]);
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${explain(error.cause)}` : '';
  const message = error instanceof Error ? error.message : String(error);
  return code === undefined || message.includes(code) ? `${message}${cause}` : `${code} ${message}${cause}`;
}
