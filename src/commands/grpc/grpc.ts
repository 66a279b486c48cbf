import { Client, connectivityState, credentials as grpcCredentials, Metadata, status as GrpcStatus, type ChannelCredentials, type ChannelOptions, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { performance } from 'node:perf_hooks';
import { formatMs } from '../../core/format.js';
import { version } from '../../core/version.js';
import { gauge, type Metric } from '../../results/metric.js';
import { severity, type CommandOutcome } from '../../results/result.js';
import { defineCommand, listenForAbort, type Command, type CommandContext } from '../command.js';
import { grpcAttributes, type GrpcAttributes } from './attributes.js';
import { decodeHealthCheckResponse, HEALTH_CHECK_PATH, servingStatusName, type HealthCheckResponse } from './health-messages.js';
import { certDaysMetric, certProblem, daysLeft, isTlsErrorCode, trusting, type CertProblem } from '../tls-attributes.js';

export type { GrpcAttributes } from './attributes.js';

/**
 * `grpc`: asks a gRPC server the standard health question (`grpc.health.v1.Health/Check`, with
 * `service` or for the server as a whole) over plaintext or TLS, and judges the answer, the response
 * time and, over TLS, the days left on the server's certificate.
 *
 * Each run opens a channel of its own (with its own subchannel pool, so no connection is shared with
 * another run or kept between runs) and closes it before it returns, whatever happened: `response_time`
 * is what a client that connects now waits (name resolution, connection, TLS and the call), nothing is
 * left open between runs, and a server that restarted is seen at once rather than through a stale
 * connection. A channel cached per target would make a run about 3 times cheaper (on loopback, see
 * `npm run bench -- --only grpc`), but would measure only the call, hide a server that no longer
 * accepts connections, and need bounding and closing on reload and stop. Only the credentials (the TLS
 * context with its CAs) are kept, per parsed attributes. The channel ignores `grpc_proxy`/`http_proxy`,
 * as the `http` command does, and never retries the call. The two messages are encoded by hand
 * (`health-messages.ts`): no .proto file or protobuf library is loaded.
 *
 * Metrics: `response_time` (ms, when the server answered), `cert_days_remaining` (d, over TLS with
 * `tlsVerify`).
 *
 * Reasons: `serving` (ok); `crit`: `not-serving` (NOT_SERVING, or UNKNOWN), `unknown-service` (the server
 * answered NOT_FOUND, or SERVICE_UNKNOWN), `unimplemented` (the server has no health service),
 * `unavailable` (cannot connect, or the server answered UNAVAILABLE), `dns` (the host name does not
 * resolve), `tls-error` (the handshake failed: certificate refused, or not TLS on the other side),
 * `timeout` (deadline or abort), `bad-response` (an answer that is not a HealthCheckResponse),
 * `grpc-error` (any other status; the message names it, e.g. PERMISSION_DENIED); `warn` or `crit`:
 * `slow-response`, `cert-expiring` (the worse one wins; on a tie, the certificate).
 */
export function grpcCommand(): Command<GrpcAttributes> {
  const channels = new ChannelSettings();
  return defineCommand({ name: 'grpc', attributes: grpcAttributes, run: (attrs, ctx) => runGrpc(attrs, ctx, channels) });
}

/** Received messages larger than this fail the call: a HealthCheckResponse is a few bytes. */
const MAX_RECEIVE_BYTES = 64 * 1024;
/** How much of a status's details a message quotes. */
const DETAILS_CHARS = 200;

/** What every channel of a check's runs is made with, built on its first run: parsed attributes do not change. */
class ChannelSettings {
  readonly #byAttributes = new WeakMap<GrpcAttributes, { readonly credentials: ChannelCredentials; readonly options: ChannelOptions }>();

  for(attrs: GrpcAttributes): { readonly credentials: ChannelCredentials; readonly options: ChannelOptions } {
    let settings = this.#byAttributes.get(attrs);
    if (settings === undefined) {
      settings = { credentials: credentialsFor(attrs), options: optionsFor(attrs) };
      this.#byAttributes.set(attrs, settings);
    }
    return settings;
  }
}

function credentialsFor({ tls, tlsSettings }: GrpcAttributes): ChannelCredentials {
  if (!tls || tlsSettings === undefined) return grpcCredentials.createInsecure();
  return grpcCredentials.createSsl(tlsSettings.ca ?? null, null, null, { rejectUnauthorized: tlsSettings.tlsVerify });
}

function optionsFor({ tlsSettings }: GrpcAttributes): ChannelOptions {
  const options: ChannelOptions = {
    // A pool of its own: closing the channel closes its connection, which no other run shares.
    'grpc.use_local_subchannel_pool': 1,
    'grpc.enable_channelz': 0,
    'grpc.enable_retries': 0,
    'grpc.enable_http_proxy': 0,
    // No TXT lookup for a service config on every run: a health call needs none.
    'grpc.service_config_disable_resolution': 1,
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    'grpc.primary_user_agent': `vigil/${version}`,
  };
  if (tlsSettings?.servername !== undefined) options['grpc.ssl_target_name_override'] = tlsSettings.servername;
  return options;
}

async function runGrpc(attrs: GrpcAttributes, ctx: CommandContext, channels: ChannelSettings): Promise<CommandOutcome> {
  const run = new GrpcRun(attrs);
  const stopListening = listenForAbort(ctx, run.onAbort);
  if (stopListening === null) return { state: 'crit', reason: 'timeout', message: `timed out before connecting to ${attrs.target}` };
  let client: Client | undefined;
  try {
    const { credentials, options } = channels.for(attrs);
    // `dns:` spelled out: grpc-js would read a host named like one of its schemes (`unix`, `ipv4`) as that scheme.
    client = new Client(`dns:${attrs.target}`, credentials, options);
    run.start(client, ctx.deadline);
    return await run.outcome;
  } finally {
    stopListening();
    // A call still under way (an abort) is cancelled by onAbort; the channel closes its connection.
    client?.close();
  }
}

/** One run: its call, and the outcome it settles once (the call's answer or the abort, whichever is first). */
class GrpcRun {
  readonly attrs: GrpcAttributes;
  readonly outcome: Promise<CommandOutcome>;
  #resolve!: (outcome: CommandOutcome) => void;
  #settled = false;
  #client: Client | undefined;
  #call: ClientUnaryCall | undefined;
  #startedAt = 0;

  constructor(attrs: GrpcAttributes) {
    this.attrs = attrs;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  start(client: Client, deadline: number): void {
    this.#client = client;
    const metadata = new Metadata();
    for (const [key, value] of this.attrs.metadata) metadata.add(key, value);
    this.#startedAt = performance.now();
    this.#call = client.makeUnaryRequest(HEALTH_CHECK_PATH, identity, decodeHealthCheckResponse, this.attrs.request, metadata, { deadline }, this.#onAnswer);
  }

  readonly #onAnswer = (error: ServiceError | null, response?: HealthCheckResponse): void => {
    if (this.#settled) return;
    const ms = Math.round((performance.now() - this.#startedAt) * 1000) / 1000;
    if (error !== null) {
      this.settle(failed(this.attrs, error, ms, this.phase()));
      return;
    }
    const validTo = this.#call?.getAuthContext()?.sslPeerCertificate?.valid_to;
    this.settle(answered(this.attrs, response as HealthCheckResponse, ms, validTo === undefined ? undefined : Date.parse(validTo)));
  };

  settle(outcome: CommandOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(outcome);
  }

  /** Connected (the call is waiting for its answer) or still connecting, for a timeout's message. */
  phase(): 'connecting to' | 'waiting for the answer from' {
    const state = this.#client?.getChannel().getConnectivityState(false);
    return state === connectivityState.READY ? 'waiting for the answer from' : 'connecting to';
  }

  /** The run was aborted: report where it was, and cancel the call. */
  readonly onAbort = (): void => {
    if (this.#settled) return;
    this.settle({ state: 'crit', reason: 'timeout', message: `timed out ${this.phase()} ${this.attrs.target}` });
    this.#call?.cancel();
  };
}

function identity(request: Buffer): Buffer {
  return request;
}

/** `127.0.0.1:50051`, or `service app.Orders at 127.0.0.1:50051`. */
function subject({ service, target }: GrpcAttributes): string {
  return service === '' ? target : `service ${service} at ${target}`;
}

/** The server answered with a HealthCheckResponse. */
function answered(attrs: GrpcAttributes, response: HealthCheckResponse, ms: number, validToMs: number | undefined): CommandOutcome {
  const { responseWarnMs, responseCritMs, tlsSettings } = attrs;
  const days = validToMs === undefined ? undefined : daysLeft(validToMs, Date.now());
  const metrics: Metric[] = [gauge('response_time', ms, 'ms', { warn: responseWarnMs, crit: responseCritMs })];
  if (days !== undefined && tlsSettings !== undefined) metrics.push(certDaysMetric(tlsSettings, days));
  if ('malformed' in response) {
    return { state: 'crit', reason: 'bad-response', message: `${attrs.target} answered with bytes that are not a HealthCheckResponse (${response.malformed})`, metrics };
  }
  const name = servingStatusName(response.status);
  const base = `${subject(attrs)} is ${name}, answered in ${formatMs(ms)} ms`;
  if (name === 'SERVICE_UNKNOWN') return { state: 'crit', reason: 'unknown-service', message: base, metrics };
  if (name !== 'SERVING') return { state: 'crit', reason: 'not-serving', message: base, metrics };

  const problems: (CertProblem & { reason: string })[] = [];
  if (days !== undefined && validToMs !== undefined && tlsSettings !== undefined) {
    const cert = certProblem(tlsSettings, attrs.target, validToMs, days);
    if (cert !== undefined) problems.push({ ...cert, reason: 'cert-expiring' });
  }
  if (responseCritMs !== undefined && ms >= responseCritMs) {
    problems.push({ state: 'crit', reason: 'slow-response', text: `response time at or above the critical threshold of ${responseCritMs} ms` });
  } else if (responseWarnMs !== undefined && ms >= responseWarnMs) {
    problems.push({ state: 'warn', reason: 'slow-response', text: `response time at or above the warning threshold of ${responseWarnMs} ms` });
  }
  if (problems.length === 0) return { state: 'ok', reason: 'serving', message: base, metrics };
  const worst = problems.reduce((a, b) => (severity(b.state) > severity(a.state) ? b : a));
  return { state: worst.state, reason: worst.reason, message: `${base}: ${problems.map((problem) => problem.text).join('; ')}`, metrics };
}

/**
 * The call ended with a status other than OK. grpc-js reports a connection that could not be made as
 * UNAVAILABLE with the last connection error in its details (`No connection established. Last error:
 * Error: self-signed certificate. …`); those words are all it gives, so they are what tells a refused
 * connection, a name that does not resolve and a failed TLS handshake apart.
 */
function failed(attrs: GrpcAttributes, error: ServiceError, ms: number, phase: string): CommandOutcome {
  const { target } = attrs;
  const details = error.details ?? '';
  const statusName = GrpcStatus[error.code] ?? `status ${error.code}`;
  const answer = `${statusName}${details === '' ? '' : `: ${clip(details)}`}`;
  const metrics = [gauge('response_time', ms, 'ms', { warn: attrs.responseWarnMs, crit: attrs.responseCritMs })];
  switch (error.code) {
    case GrpcStatus.DEADLINE_EXCEEDED:
      return { state: 'crit', reason: 'timeout', message: `timed out ${phase} ${target} (DEADLINE_EXCEEDED after ${formatMs(ms)} ms)` };
    case GrpcStatus.NOT_FOUND:
      return { state: 'crit', reason: 'unknown-service', message: `${target} does not know ${attrs.service === '' ? 'the server-wide health status ("")' : `the service ${attrs.service}`} (${answer})`, metrics };
    case GrpcStatus.UNIMPLEMENTED:
      return { state: 'crit', reason: 'unimplemented', message: `${target} does not implement grpc.health.v1.Health (${answer})`, metrics };
    case GrpcStatus.UNAVAILABLE:
      return unavailable(attrs, details, metrics);
    default:
      return { state: 'crit', reason: 'grpc-error', message: `${target} answered ${answer}`, metrics };
  }
}

const NAME_RESOLUTION_FAILED = /^Name resolution failed/;
/** `…Last error: Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match …. Resolution note: …` */
const LAST_ERROR = /Last error: (?:[A-Za-z]*Error(?: \[([A-Z0-9_]+)\])?: )?(.*?)(?:\. Resolution note:.*)?$/s;
/** How OpenSSL and Node word handshake failures that come without a code. */
const TLS_WORDS = /certificate|SSL routines|\bTLS\b|handshake|alert/i;

function unavailable(attrs: GrpcAttributes, details: string, metrics: readonly Metric[]): CommandOutcome {
  const { target, host } = attrs;
  if (NAME_RESOLUTION_FAILED.test(details)) return { state: 'crit', reason: 'dns', message: `cannot resolve host ${host} (${clip(details)})` };
  const last = LAST_ERROR.exec(details);
  if (last === null) {
    // Not a connection failure: the server itself answered UNAVAILABLE (shutting down, overloaded).
    return { state: 'crit', reason: 'unavailable', message: `${target} answered UNAVAILABLE${details === '' ? '' : `: ${clip(details)}`}`, metrics };
  }
  const code = last[1];
  const text = clip((last[2] as string).trim());
  const why = code === undefined ? text : `${code}: ${text}`;
  if ((code !== undefined && isTlsErrorCode(code)) || (attrs.tls && TLS_WORDS.test(text))) {
    const tlsSettings = attrs.tlsSettings;
    return { state: 'crit', reason: 'tls-error', message: `TLS handshake with ${target} failed: ${why}${tlsSettings === undefined ? '' : trusting(tlsSettings)}` };
  }
  return { state: 'crit', reason: 'unavailable', message: `cannot connect to ${target}: ${why}` };
}

function clip(text: string): string {
  const line = text.replace(/\s+/g, ' ');
  return line.length > DETAILS_CHARS ? `${line.slice(0, DETAILS_CHARS)}…` : line;
}
