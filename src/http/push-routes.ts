import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Ping } from '../commands/command.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import type { HttpErrorBody } from './endpoint.js';
import { redactToken, type PushTokens } from './push-tokens.js';
import type { Server } from '../server/server.js';
import { errorMessage } from '../core/errors.js';
import { nowOf, type Clock } from '../core/clock.js';

export interface PushRoutesOptions {
  /**
   * Applies each ping as a passive result (`submit`), made by the pinged check's command (its `pings`);
   * while it is `stopping`, pings get 503.
   */
  readonly server: Pick<Server, 'submit' | 'stopping' | 'command'>;
  /** Where the pinged check's attributes and previous Result are read. */
  readonly checks: CheckRegistry;
  readonly tokens: PushTokens;
  /** Pings are logged at debug, unknown tokens at info, failures at error; tokens only by their first 4 characters. */
  readonly logger: Logger;
  /**
   * Bytes of a ping's body kept for its message (of which the first non-blank line is used); the rest is
   * read and dropped, so a job that sends its whole output still counts as having pinged. Default 10 000.
   */
  readonly bodyLimitBytes?: number;
  /** Tells the time, the time a ping arrived; default `systemClock`. */
  readonly clock?: Clock;
}

/** A request body longer than this (bytes) is refused with 413 rather than read to its end. */
export const MAX_PING_REQUEST_BYTES = 1_048_576;
/** A ping's message is its body's first non-blank line, cut to this many characters. */
export const MAX_PING_MESSAGE_CHARS = 200;

type Variant = 'success' | 'start' | 'fail' | 'exit-code';
interface Params {
  readonly token: string;
  readonly exitCode?: string;
}
type PingRequest = FastifyRequest<{ Params: Params; Body: Buffer | undefined }>;

/**
 * Healthchecks-compatible ping routes, for GET, HEAD and POST: `/ping/:token` (success),
 * `/ping/:token/start`, `/ping/:token/fail`, `/ping/:token/:exitCode` (0 success, 1–255 failure). A ping
 * is applied at once through the server's state machine and handlers, and answered `200 OK` (text/plain,
 * as hc-ping.com does, so existing `curl -fsS` scripts work unchanged). Errors are JSON `{ error, details }`:
 * 404 unknown token, 409 a token shared by several checks, 400 a bad exit code, 413 a body over 1 MiB,
 * 503 while vigil stops. The token is never logged whole. Registers in its own fastify scope: its
 * catch-all body parser and error handler do not touch other routes.
 */
export async function registerPushRoutes(app: FastifyInstance, options: PushRoutesOptions): Promise<void> {
  const { server, checks, tokens, logger } = options;
  const bodyLimitBytes = options.bodyLimitBytes ?? 10_000;
  const now = nowOf(options.clock);
  if (!Number.isInteger(bodyLimitBytes) || bodyLimitBytes < 0 || bodyLimitBytes > MAX_PING_REQUEST_BYTES) {
    throw new TypeError(`Expected \`bodyLimitBytes\` to be an integer 0–${MAX_PING_REQUEST_BYTES}, got \`${String(options.bodyLimitBytes)}\``);
  }
  const queue = new PerKeyQueue();

  /** The check a token stands for, or the error answer that was sent. */
  function resolve(token: string, reply: FastifyReply): string | null {
    const found = tokens.lookup(token);
    if (found.kind === 'found') return found.checkId;
    if (found.kind === 'ambiguous') {
      void reply.code(409).send(errorBody(409, `this token belongs to ${found.checkIds.length} push checks; give each its own token`));
    } else {
      logger.info({ token: redactToken(token) }, 'ping for an unknown token');
      void reply.code(404).send(errorBody(404, 'no push check has this token'));
    }
    return null;
  }

  async function handle(variant: Variant, request: PingRequest, reply: FastifyReply): Promise<FastifyReply> {
    const { token, exitCode: rawCode } = request.params;
    let kind: Ping['kind'] = variant === 'exit-code' ? 'success' : variant;
    let exitCode: number | undefined;
    if (variant === 'exit-code') {
      exitCode = parseExitCode(rawCode ?? '');
      if (exitCode === undefined) {
        return reply.code(400).send(errorBody(400, `expected start, fail or an exit code 0–255 after the token, got ${JSON.stringify(rawCode)}`));
      }
      kind = exitCode === 0 ? 'success' : 'fail';
    }
    const checkId = resolve(token, reply);
    if (checkId === null) return reply;
    const text = pingText(request.body);
    const state = await queue.run(checkId, async () => {
      const check = checks.get(checkId);
      const pings = check && server.command(check.spec.command)?.pings;
      if (!check || !pings) return null;
      const ping: Ping = { kind, at: now(), text, ...(exitCode === undefined ? {} : { exitCode }) };
      const outcome = pings.apply(check.spec.attributes, check.state.lastResult, ping);
      await server.submit(checkId, outcome);
      return outcome.state;
    });
    if (state === null) return reply.code(404).send(errorBody(404, 'no push check has this token'));
    logger.debug({ checkId, ping: kind, exitCode, state, token: redactToken(token) }, 'ping received');
    return reply.code(200).type('text/plain; charset=utf-8').header('cache-control', 'no-store').send('OK');
  }

  await app.register((scope, _options, done) => {
    // Every body is text for the message, whatever its content type (curl -d sends a form type).
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request: FastifyRequest, payload: IncomingMessage, parsed: (error: Error | null, body?: Buffer) => void) => {
      readCapped(payload, bodyLimitBytes, parsed);
    });

    // Before the body is read: an unknown token or a stopping server costs no reading.
    scope.addHook('onRequest', async (request: FastifyRequest<{ Params: Params }>, reply) => {
      if (server.stopping) return reply.code(503).send(errorBody(503, 'vigil is stopping; the ping was not recorded'));
      const contentLength = Number(request.headers['content-length'] ?? 0);
      if (contentLength > MAX_PING_REQUEST_BYTES) return reply.code(413).send(errorBody(413, tooLarge()));
      if (resolve(request.params.token, reply) === null) return reply;
      return undefined;
    });

    scope.setErrorHandler((error, request, reply) => {
      const status = statusOf(error);
      const details = errorMessage(error);
      const url = redactUrl(request.url);
      if (status >= 500) logger.error({ err: error, method: request.method, url }, 'ping failed');
      else logger.debug({ method: request.method, url, status, details }, 'ping rejected');
      return reply.code(status).send(errorBody(status, details));
    });

    const route = (url: string, variant: Variant): void => {
      scope.route<{ Params: Params; Body: Buffer | undefined }>({
        method: ['GET', 'POST'],
        url,
        bodyLimit: MAX_PING_REQUEST_BYTES,
        handler: (request, reply) => handle(variant, request, reply),
      });
    };
    route('/ping/:token', 'success');
    route('/ping/:token/start', 'start');
    route('/ping/:token/fail', 'fail');
    route('/ping/:token/:exitCode', 'exit-code');
    done();
  });
}

/** `0`–`255` as a number; `undefined` for anything else. */
function parseExitCode(text: string): number | undefined {
  if (!/^\d{1,3}$/.test(text)) return undefined;
  const code = Number(text);
  return code <= 255 ? code : undefined;
}

/**
 * Reads a body, keeping its first `keep` bytes and dropping the rest; past MAX_PING_REQUEST_BYTES it stops
 * listening and reports 413 (as fastify's own parser does, the server then discards what is left).
 */
function readCapped(payload: IncomingMessage, keep: number, done: (error: Error | null, body?: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let kept = 0;
  let received = 0;
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > MAX_PING_REQUEST_BYTES) {
      stop();
      done(Object.assign(new Error(tooLarge()), { statusCode: 413 }));
      return;
    }
    if (kept < keep) {
      const piece = chunk.length > keep - kept ? chunk.subarray(0, keep - kept) : chunk;
      chunks.push(piece);
      kept += piece.length;
    }
  };
  const onEnd = (): void => {
    stop();
    done(null, Buffer.concat(chunks, kept));
  };
  const onError = (error: Error): void => {
    stop();
    done(error);
  };
  function stop(): void {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
}

function tooLarge(): string {
  return `the ping body is larger than ${MAX_PING_REQUEST_BYTES} bytes; send the job's output tail instead`;
}

// Control characters would break the one-line message (and terminals reading the log).
// eslint-disable-next-line no-control-regex -- matching them is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

/** The first non-blank line of a body, trimmed, control characters blanked, at most MAX_PING_MESSAGE_CHARS. */
export function pingText(body: Buffer | undefined): string {
  if (body === undefined || body.length === 0) return '';
  const text = body.toString('utf8');
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const line = text.slice(start, end).replace(CONTROL, ' ').trim();
    if (line !== '') return line.length > MAX_PING_MESSAGE_CHARS ? `${line.slice(0, MAX_PING_MESSAGE_CHARS - 1)}…` : line;
    start = end + 1;
  }
  return '';
}

/** `/ping/abcd…/fail`: the URL with its token cut to the first 4 characters. */
function redactUrl(url: string): string {
  return url.replace(/^\/ping\/([^/?#]*)/, (_match, token: string) => `/ping/${redactToken(token)}`);
}

function errorBody(status: number, details: string): HttpErrorBody {
  return { error: (STATUS_CODES[status] ?? 'error').toLowerCase(), details };
}

function statusOf(error: unknown): number {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500;
}

/**
 * Runs work one at a time per key: two pings for one check arrive close together, and the second must
 * see the state the first left (a `start` then a success must measure the run time).
 */
class PerKeyQueue {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const next = previous.then(work);
    const tail = next.catch(() => undefined);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return next;
  }
}
