import { STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { fastify, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { expositionStream } from '../metrics/exposition.js';
import type { Health } from '../core/health.js';
import { hostPort } from '../core/host-port.js';
import { errorMessage } from '../core/errors.js';

export interface HttpEndpointOptions {
  /** Address to listen on, e.g. `127.0.0.1`, `0.0.0.0`, `::`. */
  readonly host: string;
  /** Port to listen on; 0 for any free port (read the chosen one from `HttpEndpoint.url`). */
  readonly port: number;
  /** The registry served on `GET /metrics` (never the global default one unless that is what is passed). */
  readonly registry: Registry;
  /** Called on every `GET /healthz`. */
  readonly health: () => Health | Promise<Health>;
  /** Where failed requests are logged; fastify's own request logging is off. */
  readonly logger: Logger;
  /** Adds further routes before the endpoint listens. */
  readonly routes?: (app: FastifyInstance) => void | Promise<void>;
}

export interface HttpEndpoint {
  /** Where the endpoint listens, e.g. `http://127.0.0.1:9470`. */
  readonly url: string;
  /** The fastify instance, listening; for `inject()` in tests and for introspection. */
  readonly app: FastifyInstance;
  /** Stops listening and waits for requests in flight; idempotent, returns the pending close. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The body of every error answer. */
export interface HttpErrorBody {
  /** The HTTP status in words: `not found`, `internal server error`, … */
  readonly error: string;
  /** What went wrong, in one line. */
  readonly details: string;
}

/**
 * Serves `/metrics` and `/healthz` (and the routes `options.routes` adds) on `host:port`.
 * Rejects, naming the address, when it cannot listen there (port in use, address not local, no permission).
 */
export async function startHttpEndpoint(options: HttpEndpointOptions): Promise<HttpEndpoint> {
  const { host, port, registry, health, logger, routes } = options;
  // Check ids may be 200 characters long (incident ids a few more); fastify's default cap is 100.
  const app = fastify({ logger: false, routerOptions: { maxParamLength: 256 } });

  // Streamed, and written in slices that leave the event loop to the checks (server/metrics-exposition.ts);
  // every scrape has its own stream, so concurrent scrapes are each answered in full. A metric failing
  // to collect still gets a 500 (it fails before the first chunk). A HEAD gets the headers without the work.
  app.get('/metrics', async (request, reply) => {
    const body = request.method === 'HEAD' ? Readable.from([]) : await expositionStream(registry);
    return reply.type(registry.contentType).header('cache-control', 'no-store').send(body);
  });

  app.get('/healthz', async (_request, reply) => {
    const current = await health();
    return reply
      .code(current.status === 'ok' ? 200 : 503)
      .header('cache-control', 'no-store')
      .send(current);
  });

  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(errorBody(404, `no route for ${request.method} ${request.url}`));
  });

  app.setErrorHandler((error, request, reply) => {
    const status = statusOf(error);
    const details = errorMessage(error);
    if (status >= 500) logger.error({ err: error, method: request.method, url: request.url }, 'HTTP request failed');
    else logger.debug({ method: request.method, url: request.url, status, details }, 'HTTP request rejected');
    return reply.code(status).send(errorBody(status, details));
  });

  try {
    if (routes !== undefined) await routes(app);
  } catch (error) {
    await app.close();
    throw error;
  }
  try {
    await app.listen({ host, port });
  } catch (error) {
    await app.close();
    throw new Error(`Cannot listen on ${hostPort(host, port)}: ${describeListenError(error)}`, { cause: error });
  }

  const address = app.server.address() as AddressInfo;
  const url = `http://${hostPort(address.address, address.port)}`;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= app.close());
  return { url, app, close, [Symbol.asyncDispose]: close };
}

function errorBody(status: number, details: string): HttpErrorBody {
  return { error: (STATUS_CODES[status] ?? 'error').toLowerCase(), details };
}

function statusOf(error: unknown): number {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500;
}


function describeListenError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return 'the address is already in use (EADDRINUSE); is another vigil or another program listening there?';
    case 'EADDRNOTAVAIL':
      return 'the address is not one of this machine’s (EADDRNOTAVAIL)';
    case 'EACCES':
      return 'permission denied (EACCES); ports below 1024 need privileges';
    case 'ENOTFOUND':
      return 'the host name does not resolve (ENOTFOUND)';
    default:
      return errorMessage(error);
  }
}
