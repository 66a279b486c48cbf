import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import type { CommandOutcome } from '../../results/result.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from '../command.js';
import { httpAttributes, type HttpAttributes, type HttpTarget } from './attributes.js';
import { findMismatch, statusMatches } from './expectations.js';
import {
  abortedBeforeSending,
  answered,
  badRedirect,
  bodyMismatch,
  failed,
  REDIRECT_STATUSES,
  timedOut,
  unexpectedStatus,
  type CertSeen,
  type Phase,
  type RunRecord,
} from './outcome.js';
import { nextHop, type Hop } from './redirect.js';

export type { HttpAttributes, HttpTarget } from './attributes.js';

/** What the `http` command is built with besides its attributes. */
export interface HttpCommandOptions {
  /** Resolves host names instead of the system resolver (`dns.lookup`): a caching resolver, or a test's. */
  readonly lookup?: LookupFunction;
}

/**
 * `http`: requests `url` (HTTP or HTTPS) and checks the status, headers and body against what is
 * expected, the response time against its thresholds and, over HTTPS, the certificate's remaining days.
 *
 * Each run opens a fresh connection unless `keepAlive` is set; then it goes through a keep-alive agent
 * that belongs to this command object (one per `httpCommand()` call), so its connections are reused.
 *
 * Metrics (ms unless said): `status_code`, `total_time`, and each phase that was measured — `dns_time`
 * (no lookup for an IP address or a reused connection), `connect_time`, `tls_time`, `first_byte_time`
 * (request sent to response headers), `transfer_time` (headers to the end of the body read) — plus
 * `body_bytes` (B, at most `maxBodyBytes`), `cert_days_remaining` (d, HTTPS; the soonest of the hops)
 * and `redirects` (with `followRedirects`). The phases are durations of their own and, over the hops
 * of a redirect chain, add up to about `total_time`.
 *
 * Reasons: `ok`, `connection-error`, `timeout`, `dns`, `unexpected-status`, `body-mismatch`,
 * `tls-error`, `cert-expiring`, `slow-response`.
 */
export function httpCommand(options: HttpCommandOptions = {}): Command<HttpAttributes> {
  const agents = new KeepAliveAgents();
  const { lookup } = options;
  return defineCommand({ name: 'http', attributes: httpAttributes, run: (attrs, ctx) => runHttp(attrs, ctx, agents, lookup) });
}

/** The keep-alive agents of one command object, made on first use. */
class KeepAliveAgents {
  #http: HttpAgent | undefined;
  #https: HttpsAgent | undefined;

  for(protocol: HttpTarget['protocol']): HttpAgent {
    // No TLS session cache: a resumed session carries no peer certificate, and every new connection
    // should show the certificate it was given.
    if (protocol === 'https:') return (this.#https ??= new HttpsAgent({ keepAlive: true, maxCachedSessions: 0 }));
    return (this.#http ??= new HttpAgent({ keepAlive: true }));
  }
}

const DAY_MS = 86_400_000;
const EMPTY = Buffer.alloc(0);

async function runHttp(attrs: HttpAttributes, ctx: CommandContext, agents: KeepAliveAgents, lookup: LookupFunction | undefined): Promise<CommandOutcome> {
  const run = new HttpRun(attrs, agents, lookup);
  // The run destroys its request when aborted: the request is not given the signal as well.
  const stopListening = listenForAbort(ctx, run.onAbort);
  if (stopListening === null) return abortedBeforeSending(attrs);
  try {
    run.send();
    return await run.outcome;
  } finally {
    stopListening();
    run.destroy();
  }
}

/**
 * The run an emitter (request, response, socket) works for. Node calls listeners with `this` set to the
 * emitter, so the listeners below are module-level functions that find their run here: a run allocates
 * no listener closures, and an event from an earlier hop (a redirect, a retry) is told apart from the
 * current one by comparing the emitter with the run's.
 */
const RUN = Symbol('http run');
/** On a TLS socket: when its peer's certificate expires, epoch milliseconds. */
const VALID_TO = Symbol('certificate valid to');
type Tagged<T> = T & { [RUN]?: HttpRun | undefined; [VALID_TO]?: number };

/** One run: its hops (the request and any redirects), their timings, and the outcome it settles once. */
class HttpRun implements RunRecord, Hop {
  readonly attrs: HttpAttributes;
  readonly agents: KeepAliveAgents;
  readonly lookup: LookupFunction | undefined;
  readonly outcome: Promise<CommandOutcome>;
  #resolve!: (outcome: CommandOutcome) => void;
  settled = false;
  /** The response ended and was read whole: its connection is clean (and, with keep-alive, back in the pool). */
  complete = false;

  // The hop under way.
  target: HttpTarget;
  method: string;
  headers: Readonly<Record<string, string>>;
  body: Buffer | undefined;
  redirects = 0;
  /** A reused keep-alive connection that the server had closed is retried once, on a new one. */
  retried = false;
  req: Tagged<ClientRequest> | undefined;
  res: Tagged<IncomingMessage> | undefined;
  phase: Phase = 'connecting';

  // performance.now() marks of the hop under way.
  readonly startedAt = performance.now();
  hopStartedAt = 0;
  lookupAt: number | undefined;
  connectAt: number | undefined;
  secureAt: number | undefined;
  responseAt = 0;
  hopTimed = false;

  // Phase durations (ms) summed over the hops; undefined where never measured.
  dnsMs: number | undefined;
  connectMs: number | undefined;
  tlsMs: number | undefined;
  firstByteMs: number | undefined;
  transferMs: number | undefined;
  totalMs: number | undefined;

  status = 0;
  statusMessage = '';
  chunks: Buffer[] = [];
  bodyBytes = 0;
  truncated = false;
  cert: CertSeen | undefined;

  constructor(attrs: HttpAttributes, agents: KeepAliveAgents, lookup: LookupFunction | undefined) {
    this.attrs = attrs;
    this.agents = agents;
    this.lookup = lookup;
    this.target = attrs.target;
    this.method = attrs.method;
    this.headers = attrs.headers;
    this.body = attrs.body;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Sends the hop under way. */
  send(): void {
    const { target, attrs } = this;
    const https = target.protocol === 'https:';
    const options: RequestOptions = {
      hostname: target.hostname,
      port: target.port,
      path: target.path,
      method: this.method,
      headers: this.headers,
      agent: attrs.keepAlive ? this.agents.for(target.protocol) : false,
    };
    if (target.auth !== undefined) options.auth = target.auth;
    if (this.lookup !== undefined) options.lookup = this.lookup;
    if (https) {
      options.rejectUnauthorized = attrs.tlsVerify;
      if (attrs.ca !== undefined) options.ca = attrs.ca;
    }
    this.hopStartedAt = performance.now();
    this.lookupAt = this.connectAt = this.secureAt = undefined;
    this.hopTimed = false;
    this.phase = 'connecting';
    this.res = undefined;
    const req: Tagged<ClientRequest> = (https ? httpsRequest : httpRequest)(options);
    req[RUN] = this;
    this.req = req;
    req.on('socket', onSocket);
    req.on('response', onResponse);
    req.on('error', onRequestError);
    req.end(this.body);
  }

  /** Adds the hop's connection phases (and, once it responded, its wait for the first byte) to the totals. */
  timeHop(respondedAt: number | undefined): void {
    if (this.hopTimed) return;
    this.hopTimed = true;
    const { hopStartedAt, lookupAt, connectAt, secureAt } = this;
    if (lookupAt !== undefined) this.dnsMs = (this.dnsMs ?? 0) + (lookupAt - hopStartedAt);
    if (connectAt !== undefined) this.connectMs = (this.connectMs ?? 0) + (connectAt - (lookupAt ?? hopStartedAt));
    if (secureAt !== undefined && connectAt !== undefined) this.tlsMs = (this.tlsMs ?? 0) + (secureAt - connectAt);
    if (respondedAt !== undefined) this.firstByteMs = (this.firstByteMs ?? 0) + (respondedAt - (secureAt ?? connectAt ?? hopStartedAt));
  }

  responded(res: Tagged<IncomingMessage>): void {
    const now = performance.now();
    res[RUN] = this;
    res.on('error', onResponseError);
    this.res = res;
    this.timeHop(now);
    this.responseAt = now;
    this.status = res.statusCode ?? 0;
    this.statusMessage = res.statusMessage ?? '';
    if (this.target.protocol === 'https:') this.noteCertificate(res.socket as Tagged<TLSSocket>);
    const { location } = res.headers;
    if (location !== undefined && REDIRECT_STATUSES.has(this.status) && this.redirects < this.attrs.followRedirects) {
      this.follow(res, location);
      return;
    }
    if (!statusMatches(this.attrs.expectStatus, this.status)) {
      this.totalMs = now - this.startedAt;
      this.settle(unexpectedStatus(this, location));
      return;
    }
    this.phase = 'reading';
    res.on('data', onData);
    res.once('end', onEnd);
  }

  noteCertificate(socket: Tagged<TLSSocket>): void {
    // Node gives a connection's peer certificate once (a second getPeerX509Certificate() is undefined):
    // a kept-alive connection keeps what its first run read.
    let validTo = socket[VALID_TO];
    if (validTo === undefined) {
      const certificate = socket.getPeerX509Certificate();
      if (certificate === undefined) return;
      validTo = socket[VALID_TO] = Date.parse(certificate.validTo);
    }
    const days = (validTo - Date.now()) / DAY_MS;
    if (this.cert === undefined || days < this.cert.days) this.cert = { host: this.target.host, days, validTo };
  }

  /** Follows a redirect: the next hop replaces the one under way. */
  follow(res: IncomingMessage, location: string): void {
    // A kept-alive connection goes back to the pool once the redirect's body is drained; another is closed.
    if (this.attrs.keepAlive) res.resume();
    else res.destroy();
    const next = nextHop(this, this.status, location);
    if (next === undefined) {
      this.totalMs = performance.now() - this.startedAt;
      this.settle(badRedirect(this, location));
      return;
    }
    this.target = next.target;
    this.method = next.method;
    this.headers = next.headers;
    this.body = next.body;
    this.redirects++;
    this.send();
  }

  received(chunk: Buffer): void {
    const room = this.attrs.maxBodyBytes - this.bodyBytes;
    if (chunk.length > room) {
      // Read no more than maxBodyBytes: what is kept is judged, and the rest is never read.
      if (room > 0 && this.attrs.keepBody) this.chunks.push(chunk.subarray(0, room));
      this.bodyBytes += room;
      this.truncated = true;
      this.finish();
      return;
    }
    this.bodyBytes += chunk.length;
    if (this.attrs.keepBody) this.chunks.push(chunk);
  }

  /** The body ended or reached maxBodyBytes: judge the response. */
  finish(): void {
    const now = performance.now();
    this.transferMs = now - this.responseAt;
    this.totalMs = now - this.startedAt;
    this.complete = !this.truncated;
    const { attrs, chunks } = this;
    if (attrs.keepBody || attrs.headerMatches !== undefined) {
      const body = chunks.length === 0 ? EMPTY : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.bodyBytes);
      const mismatch = findMismatch(attrs, (this.res as IncomingMessage).headers, body, this.truncated);
      if (mismatch !== undefined) {
        this.settle(bodyMismatch(this, mismatch));
        return;
      }
    }
    this.settle(answered(this));
  }

  settle(outcome: CommandOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolve(outcome);
  }

  /** The request or the response failed; the phases of the hop so far count. */
  fail(error: NodeJS.ErrnoException): void {
    this.timeHop(undefined);
    this.settle(failed(this, error));
  }

  /** The run was aborted: report where it was, and drop its connection. */
  readonly onAbort = (): void => {
    if (this.settled) return;
    this.timeHop(undefined);
    this.settle(timedOut(this));
    this.destroy();
  };

  /** Closes the connection unless the response was read whole (a kept-alive one then returns to its pool). */
  destroy(): void {
    if (!this.complete) this.req?.destroy();
  }
}

function onSocket(this: Tagged<ClientRequest>, socket: Tagged<Socket>): void {
  const run = this[RUN];
  if (run?.req !== this) return;
  if (this.reusedSocket) {
    run.phase = 'waiting';
    return;
  }
  socket[RUN] = run;
  socket.once('lookup', onLookup);
  socket.once('connect', onConnect);
  if (run.target.protocol === 'https:') socket.once('secureConnect', onSecureConnect);
}

function onLookup(this: Tagged<Socket>, error: Error | null): void {
  const run = this[RUN];
  if (run !== undefined && error === null) run.lookupAt = performance.now();
}

function onConnect(this: Tagged<Socket>): void {
  const run = this[RUN];
  // An IP address is not looked up: the listener would otherwise stay on a pooled socket.
  this.removeListener('lookup', onLookup);
  if (run === undefined) return;
  run.connectAt = performance.now();
  if (run.target.protocol === 'https:') {
    run.phase = 'tls';
  } else {
    run.phase = 'waiting';
    this[RUN] = undefined;
  }
}

function onSecureConnect(this: Tagged<Socket>): void {
  const run = this[RUN];
  this[RUN] = undefined;
  if (run === undefined) return;
  run.secureAt = performance.now();
  run.phase = 'waiting';
}

function onResponse(this: Tagged<ClientRequest>, res: Tagged<IncomingMessage>): void {
  const run = this[RUN];
  if (run?.req !== this || run.settled) return;
  run.responded(res);
}

function onData(this: Tagged<IncomingMessage>, chunk: Buffer): void {
  const run = this[RUN];
  if (run?.res === this && !run.settled) run.received(chunk);
}

function onEnd(this: Tagged<IncomingMessage>): void {
  const run = this[RUN];
  if (run?.res === this && !run.settled) run.finish();
}

function onResponseError(this: Tagged<IncomingMessage>, error: NodeJS.ErrnoException): void {
  const run = this[RUN];
  if (run?.res === this && !run.settled) run.fail(error);
}

function onRequestError(this: Tagged<ClientRequest>, error: NodeJS.ErrnoException): void {
  const run = this[RUN];
  if (run?.req !== this || run.settled) return;
  // A server may close an idle keep-alive connection just as it is reused: that is no outage, so retry once.
  if (this.reusedSocket && run.res === undefined && !run.retried && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
    run.retried = true;
    run.send();
    return;
  }
  run.fail(error);
}
