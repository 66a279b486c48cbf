import { createHmac, randomUUID } from 'node:crypto';
import { Counter } from 'prom-client';
import { z } from 'zod';
import type { CheckSpec } from '../../checks/check.js';
import { IncidentEventTypes, type Incident, type IncidentEvent, type IncidentEventType } from '../../results/incident.js';
import type { Result } from '../../results/result.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { errorMessage } from '../../core/errors.js';
import { duration, integer, nonEmptyString } from '../../validation/schema-types.js';
import { version } from '../../core/version.js';
import {
  alertAnnotations,
  alertLabels,
  alertsUrl,
  firingAlert,
  labelsKey,
  resolvedAlert,
  type AlertmanagerAlert,
} from './alertmanager-payload.js';
import { defineHandler, type Handler, type HandlerContext, type HandlerDeps, type Outcome } from '../handler.js';
import { registeredCounter as counter, registeredGauge as gauge } from '../../metrics/registered-metrics.js';
import { HTTP_TOKEN } from '../../core/http-token.js';

/** `json`: vigil's own payload to any URL; `alertmanager`: Alertmanager's `/api/v2/alerts` format. */
export const WebhookFormats = ['json', 'alertmanager'] as const;
export type WebhookFormat = (typeof WebhookFormats)[number];

/** The header that carries the HMAC-SHA256 of the raw body when `secret` is set: `sha256=<hex>`. */
export const SIGNATURE_HEADER = 'x-vigil-signature';

/** Upper bound of one backoff delay, whatever `backoff`, `retries` or a `Retry-After` header say. */
export const MAX_BACKOFF_MS = 60_000;
/** Deliveries one handler keeps queued or in flight; beyond that new ones are dropped (and counted). */
export const MAX_PENDING = 1_000;
/** Requests one handler has in flight at once, so that a storm of incidents cannot flood the receiver. */
export const MAX_CONCURRENT = 8;
/** Alertmanager mode: least time between two sends of the same check's firing alert. */
export const RESEND_INTERVAL_MS = 60_000;

const HEADER_VALUE = /^[^\r\n\0]*$/;
const URL_ERROR = 'expected an http:// or https:// URL';
const EVENT_ERROR = `expected one of ${IncidentEventTypes.join(', ')}`;

const options = z.strictObject({
  /** Where to POST; in `alertmanager` format the Alertmanager base URL (`http://alertmanager:9093`). */
  url: z.string({ error: URL_ERROR }).refine(isHttpUrl, { error: URL_ERROR }),
  /** Payload format; default `json`. */
  format: z.enum(WebhookFormats, { error: `expected ${WebhookFormats.join(' or ')}` }).default('json'),
  /** Extra request headers (an `Authorization` for the receiver, …); names compare case-insensitively. */
  headers: z
    .record(z.string(), z.string({ error: 'expected a header value (a string)' }).regex(HEADER_VALUE, { error: 'expected a header value on one line' }), {
      error: 'expected a mapping of header names to values',
    })
    .superRefine((headers, ctx) => {
      for (const name of Object.keys(headers)) {
        if (HTTP_TOKEN.test(name)) continue;
        // The issue sits on the mapping: one on the key's path would quote its value as what was found.
        ctx.addIssue({ code: 'custom', message: `expected header names of letters, digits and !#$%&'*+.^_\`|~- (${JSON.stringify(name)} is not one)` });
      }
    })
    .default({}),
  /** When set, each request carries `X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the raw body>`. */
  secret: nonEmptyString('a secret (a non-empty string)').optional(),
  /** Time one attempt may take, response body included; default 5 s. */
  timeout: duration(1).prefault('5s'),
  /** Further attempts after a failed one; default 3. */
  retries: integer(0, 10).default(3),
  /** Delay before the first retry, doubled for each further one (with jitter, at most 1 min); default 1 s. */
  backoff: duration(1)
    .refine((ms) => ms <= MAX_BACKOFF_MS, { error: 'expected a duration of at most 1m' })
    .prefault('1s'),
  /** The incident events to send; default all four. */
  events: z
    .array(z.enum(IncidentEventTypes, { error: EVENT_ERROR }), { error: `expected a list of ${IncidentEventTypes.join(', ')}` })
    .min(1, { error: `expected at least one of ${IncidentEventTypes.join(', ')}` })
    .default([...IncidentEventTypes]),
});

export type WebhookHandlerOptions = z.output<typeof options>;

/** The body of a `json` webhook: one incident event. Times are epoch milliseconds. */
export interface WebhookPayload {
  readonly event: IncidentEventType;
  readonly check: { readonly id: string; readonly command: string; readonly metadata: Readonly<Record<string, unknown>> };
  readonly incident: Incident;
  /** The run that caused the event (for `acknowledge`, the check's last run). */
  readonly result: Result;
  /** When vigil queued the delivery; the same on every retry, so the signed body stays the same. */
  readonly sentAt: number;
}

/**
 * POSTs incident events to a URL, as vigil's JSON payload or as Alertmanager alerts.
 *
 * Deliveries run in the background: `process` only queues them, so retries with backoff are not cut
 * short by the handler timeout and never hold a check's outcome up. Each check's deliveries go out in
 * order (an `open` still being retried is never overtaken by its `resolve`); different checks' go out
 * concurrently, at most `MAX_CONCURRENT` at a time. A delivery that fails after its retries is logged
 * at `error` and counted in `vigil_webhook_deliveries_total{result="failed"}`.
 */
export const webhookHandlerType = defineHandler({
  type: 'webhook',
  options,
  create: (name, parsed, deps) => webhookHandler(name, parsed, deps),
});

/** A webhook handler, with a way to wait for its queue. */
export interface WebhookHandler extends Handler {
  /** Queues the outcome's delivery, if it makes one, and returns at once. */
  process(outcome: Outcome, ctx: HandlerContext): void;
  /** Alertmanager mode: resolves the alert of a removed check whose incident was open. */
  checkRemoved(checkId: string): void;
  /**
   * Retries waiting for their backoff make one last attempt at once, queued deliveries one attempt each;
   * what is still going after one attempt `timeout` is abandoned (counted `dropped`). Idempotent.
   */
  close(): Promise<void>;
  /** Resolves once every queued delivery has been delivered or given up. */
  idle(): Promise<void>;
  /** Deliveries queued or in flight. */
  readonly pending: number;
}

export interface WebhookHandlerDeps extends HandlerDeps {
  /** Timers and `now` for backoff, attempt timeouts and resend throttling; default real time. */
  readonly clock?: Clock;
  /** Source of the backoff jitter, in [0, 1); default `Math.random`. */
  readonly random?: () => number;
}

type DeliveryEvent = IncidentEventType | 'refresh' | 'removed';
type DeliveryResult = 'delivered' | 'failed' | 'dropped';
const DeliveryResults: readonly DeliveryResult[] = ['delivered', 'failed', 'dropped'];

interface Delivery {
  /** `X-Vigil-Delivery`: the same on every attempt, so that a receiver can drop duplicates. */
  readonly id: string;
  readonly checkId: string;
  event: DeliveryEvent;
  /** The JSON payload, or the Alertmanager alert list (merged with later ones while it waits). */
  payload: WebhookPayload | AlertmanagerAlert[];
  started: boolean;
}

type Attempt = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly retryable: boolean; readonly error: Error; readonly retryAfterMs?: number };

/** What an Alertmanager-mode handler last sent for a check's open incident. */
interface FiringAlert {
  readonly labels: Readonly<Record<string, string>>;
  readonly key: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly startsAt: number;
  readonly sentAt: number;
}

/** Builds a webhook handler; `webhookHandlerType` is the way in from the config. */
export function webhookHandler(name: string, settings: WebhookHandlerOptions, deps: WebhookHandlerDeps): WebhookHandler {
  const { format, retries, secret } = settings;
  const timeoutMs = settings.timeout;
  const backoffMs = settings.backoff;
  const events = new Set<IncidentEventType>(settings.events);
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const logger = deps.logger.child({ handler: name });
  const target = format === 'alertmanager' ? alertsUrl(settings.url) : settings.url;
  // Paths and queries of webhook URLs often hold the token (Slack, Teams): logs get the origin only.
  const origin = new URL(target).origin;
  const baseHeaders: Record<string, string> = { 'content-type': 'application/json', 'user-agent': `vigil/${version}` };
  for (const [header, value] of Object.entries(settings.headers)) baseHeaders[header.toLowerCase()] = value;

  const deliveries = counter(deps.registry, 'vigil_webhook_deliveries_total', 'Webhook deliveries by result: delivered, failed after its retries, or dropped (queue full, vigil stopping).', ['handler', 'result']);
  const pendingGauge = gauge(deps.registry, 'vigil_webhook_pending', 'Webhook deliveries queued or in flight.', ['handler']);
  const results = Object.fromEntries(DeliveryResults.map((result) => [result, deliveries.labels(name, result)])) as Record<DeliveryResult, Counter.Internal>;
  for (const result of DeliveryResults) results[result].inc(0);
  const pendingSeries = pendingGauge.labels(name);
  pendingSeries.set(0);

  /** Per check, its deliveries in order; the first is the one being sent. */
  const lanes = new Map<string, Delivery[]>();
  const drains = new Set<Promise<void>>();
  let pending = 0;
  /** Alertmanager mode: the firing alert last sent per check with an open incident. */
  const firing = new Map<string, FiringAlert>();

  let closing = false;
  let closed: Promise<void> | null = null;
  // Aborted when `close` has waited long enough: requests in flight and waiting ones are abandoned.
  const abandon = new AbortController();
  const sleepers = new Set<() => void>();
  let active = 0;
  const waiting: ((acquired: boolean) => void)[] = [];
  abandon.signal.addEventListener('abort', () => {
    for (const wake of waiting.splice(0)) wake(false);
  }, { once: true });

  function enqueue(checkId: string, event: DeliveryEvent, payload: WebhookPayload | AlertmanagerAlert[]): void {
    if (closing) return drop(checkId, event, 'the handler is closing');
    const lane = lanes.get(checkId);
    const last = lane?.[lane.length - 1];
    // Alertmanager keeps state, not events: a send still waiting its turn can take the newer alerts along.
    if (format === 'alertmanager' && last !== undefined && !last.started) {
      last.payload = mergeAlerts(last.payload as AlertmanagerAlert[], payload as AlertmanagerAlert[]);
      last.event = event;
      return;
    }
    if (pending >= MAX_PENDING) return drop(checkId, event, `${MAX_PENDING} deliveries are already pending`);
    const delivery: Delivery = { id: randomUUID(), checkId, event, payload, started: false };
    pending++;
    pendingSeries.set(pending);
    if (lane !== undefined) {
      lane.push(delivery);
      return;
    }
    const created = [delivery];
    lanes.set(checkId, created);
    const drain = drainLane(checkId, created);
    drains.add(drain);
    void drain.finally(() => drains.delete(drain));
  }

  function drop(checkId: string, event: DeliveryEvent, why: string): void {
    results.dropped.inc();
    logger.warn({ checkId, event, target: origin }, `webhook delivery dropped: ${why}`);
  }

  async function drainLane(checkId: string, lane: Delivery[]): Promise<void> {
    try {
      for (let delivery = lane[0]; delivery !== undefined; delivery = lane[0]) {
        delivery.started = true;
        try {
          await deliver(delivery);
        } catch (error) {
          // A bug, not a receiver's failure: the lane goes on with the next delivery.
          results.failed.inc();
          logger.error({ err: error, checkId, event: delivery.event }, 'webhook delivery failed unexpectedly');
        }
        lane.shift();
        pending--;
        pendingSeries.set(pending);
      }
    } finally {
      lanes.delete(checkId);
    }
  }

  /** Sends one delivery with its retries. Never rejects. */
  async function deliver(delivery: Delivery): Promise<void> {
    const body = JSON.stringify(delivery.payload);
    const headers: Record<string, string> = { ...baseHeaders, 'x-vigil-event': delivery.event, 'x-vigil-delivery': delivery.id };
    if (secret !== undefined) headers[SIGNATURE_HEADER] = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    const fields = { checkId: delivery.checkId, event: delivery.event, delivery: delivery.id, target: origin };
    for (let attempt = 1; ; attempt++) {
      if (!(await acquire())) {
        results.dropped.inc();
        logger.warn({ ...fields, attempts: attempt - 1 }, 'webhook delivery dropped: the handler closed before it could be sent');
        return;
      }
      let outcome: Attempt;
      try {
        outcome = await post(body, headers);
      } finally {
        release();
      }
      if (outcome.ok) {
        results.delivered.inc();
        logger.debug({ ...fields, attempts: attempt, status: outcome.status }, 'webhook delivered');
        return;
      }
      if (abandon.signal.aborted) {
        results.dropped.inc();
        logger.warn({ ...fields, attempts: attempt, err: outcome.error }, 'webhook delivery dropped: the handler closed while it was being sent');
        return;
      }
      // Once closing, a delivery gets the attempt it was waiting for and no more.
      if (attempt > retries || !outcome.retryable || closing) {
        results.failed.inc();
        logger.error({ ...fields, attempts: attempt, err: outcome.error }, 'webhook delivery failed; giving up');
        return;
      }
      const delayMs = backoffDelay(attempt, outcome.retryAfterMs);
      logger.warn({ ...fields, attempt, delayMs, err: outcome.error }, 'webhook delivery failed; retrying');
      await sleep(delayMs);
    }
  }

  /** Exponential (`backoff` × 2^(attempt−1)), capped, with equal jitter: half fixed, half random. */
  function backoffDelay(attempt: number, retryAfterMs: number | undefined): number {
    const exponential = Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** (attempt - 1));
    const jittered = Math.round(exponential / 2 + (random() * exponential) / 2);
    return Math.min(MAX_BACKOFF_MS, Math.max(jittered, retryAfterMs ?? 0));
  }

  /** Waits on the clock; `close` cuts it short. */
  function sleep(ms: number): Promise<void> {
    if (closing) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clock.clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = clock.setTimeout(wake, ms);
      sleepers.add(wake);
    });
  }

  /** A request slot; false when the handler was abandoned while waiting for one. */
  function acquire(): Promise<boolean> {
    if (abandon.signal.aborted) return Promise.resolve(false);
    if (active < MAX_CONCURRENT) {
      active++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => waiting.push(resolve));
  }

  function release(): void {
    const next = waiting.shift();
    // The slot passes straight to the next waiter.
    if (next !== undefined) next(true);
    else active--;
  }

  /** One attempt: a 2xx answer within `timeout` is a success; any other outcome says whether to retry. */
  async function post(body: string, headers: Record<string, string>): Promise<Attempt> {
    const controller = new AbortController();
    const onAbandon = (): void => controller.abort(new Error('abandoned: the handler closed'));
    if (abandon.signal.aborted) onAbandon();
    abandon.signal.addEventListener('abort', onAbandon, { once: true });
    let timedOut = false;
    const timer = clock.setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`no response within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      const response = await fetch(target, { method: 'POST', headers, body, signal: controller.signal, redirect: 'manual' });
      const { status } = response;
      if (status >= 200 && status < 300) {
        // Reading the (small) answer lets the connection be reused.
        await readCapped(response, 65_536);
        return { ok: true, status };
      }
      const text = (await readCapped(response, 512)).replace(/\s+/g, ' ').trim();
      const error = new Error(
        `expected a 2xx response from ${origin}, got ${status}${response.statusText ? ` ${response.statusText}` : ''}` +
          `${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}${text ? `: ${text}` : ''}`,
      );
      // Other 4xx answers say the request itself is wrong: sending it again would get the same.
      const retryable = status >= 500 || status === 429 || status === 408;
      const retryAfterMs = retryAfter(response.headers.get('retry-after'), clock.now());
      return retryAfterMs === undefined ? { ok: false, retryable, error } : { ok: false, retryable, error, retryAfterMs };
    } catch (error) {
      if (controller.signal.aborted) {
        const reason = controller.signal.reason as Error;
        return { ok: false, retryable: timedOut, error: new Error(`POST to ${origin}: ${reason.message}`) };
      }
      return { ok: false, retryable: true, error: new Error(`POST to ${origin} failed: ${causeOf(error)}`) };
    } finally {
      clock.clearTimeout(timer);
      abandon.signal.removeEventListener('abort', onAbandon);
    }
  }

  function jsonOutcome(outcome: Outcome, event: IncidentEvent): void {
    const { check, result } = outcome;
    const payload: WebhookPayload = {
      event: event.type,
      check: { id: check.id, command: check.command, metadata: check.metadata },
      incident: event.incident,
      result,
      sentAt: clock.now(),
    };
    enqueue(check.id, event.type, payload);
  }

  function alertmanagerOutcome(outcome: Outcome): void {
    const { check, state, incident: event } = outcome;
    if (event !== null) {
      if (event.type === 'resolve') {
        const sent = firing.get(check.id);
        firing.delete(check.id);
        if (events.has('resolve')) resolve(outcome, event.incident, sent);
      } else if (events.has(event.type)) {
        fire(outcome, event.incident, event.type);
      }
      return;
    }
    if (state.incident !== null) {
      // Alertmanager resolves an alert at its `endsAt`: while the incident lasts, send it again now
      // and then (on the check's runs, at most once per RESEND_INTERVAL_MS) to keep it firing.
      const sent = firing.get(check.id);
      if (sent === undefined ? !events.has('open') : clock.now() - sent.sentAt < RESEND_INTERVAL_MS) return;
      fire(outcome, state.incident, 'refresh');
    } else if (firing.size > 0) {
      // The incident went away without a resolve (the check's state was reset): clear its alert too.
      const sent = firing.get(check.id);
      if (sent === undefined) return;
      firing.delete(check.id);
      enqueue(check.id, 'resolve', [resolvedAlert(sent.labels, sent.annotations, sent.startsAt, clock.now())]);
    }
  }

  function fire(outcome: Outcome, incident: Incident, event: DeliveryEvent): void {
    const { check, result } = outcome;
    const now = clock.now();
    const labels = alertLabels(check, incident.state);
    const key = labelsKey(labels);
    const annotations = alertAnnotations(result, incident);
    const alerts = [firingAlert(labels, annotations, incident.openedAt, now + firingFor(check))];
    const sent = firing.get(check.id);
    // New labels (another severity, changed metadata) make another alert: resolve the one sent before.
    if (sent !== undefined && sent.key !== key) alerts.push(resolvedAlert(sent.labels, sent.annotations, sent.startsAt, now));
    firing.set(check.id, { labels, key, annotations, startsAt: incident.openedAt, sentAt: now });
    enqueue(check.id, event, alerts);
  }

  function resolve(outcome: Outcome, incident: Incident, sent: FiringAlert | undefined): void {
    const { check, result } = outcome;
    // The labels Alertmanager has are the ones last sent; after a restart, the incident's own.
    const labels = sent?.labels ?? alertLabels(check, incident.state);
    const alert = resolvedAlert(labels, alertAnnotations(result, incident), incident.openedAt, incident.resolvedAt ?? clock.now());
    enqueue(check.id, 'resolve', [alert]);
  }

  return {
    name,
    process(outcome) {
      if (format === 'alertmanager') return alertmanagerOutcome(outcome);
      const event = outcome.incident;
      if (event !== null && events.has(event.type)) jsonOutcome(outcome, event);
    },
    checkRemoved(checkId) {
      const sent = firing.get(checkId);
      if (sent === undefined) return;
      firing.delete(checkId);
      enqueue(checkId, 'removed', [resolvedAlert(sent.labels, sent.annotations, sent.startsAt, clock.now())]);
    },
    idle,
    get pending() {
      return pending;
    },
    close() {
      closed ??= closeNow();
      return closed;
    },
  };

  async function idle(): Promise<void> {
    // A delivery may queue another check's while this waits; every round waits for real work.
    while (drains.size > 0) await Promise.all(drains);
  }

  // The server waits for `process` hooks and then closes handlers: this is where queued events go out.
  async function closeNow(): Promise<void> {
    closing = true;
    for (const wake of [...sleepers]) wake();
    const deadline = clock.setTimeout(() => abandon.abort(), timeoutMs);
    try {
      await idle();
    } finally {
      clock.clearTimeout(deadline);
    }
  }
}

/**
 * How long a firing alert stays firing without being sent again: four resend intervals (or four check
 * intervals, for checks that run less often) and the run's timeout, as Prometheus gives its alerts four
 * evaluation intervals. If vigil stops sending, Alertmanager resolves the alert after that.
 */
function firingFor(check: CheckSpec): number {
  return 4 * Math.max(RESEND_INTERVAL_MS, check.intervalMs ?? 0) + check.timeoutMs;
}

/** Later alerts replace earlier ones with the same labels. */
function mergeAlerts(earlier: readonly AlertmanagerAlert[], later: readonly AlertmanagerAlert[]): AlertmanagerAlert[] {
  const byLabels = new Map<string, AlertmanagerAlert>();
  for (const alert of [...earlier, ...later]) byLabels.set(labelsKey(alert.labels), alert);
  return [...byLabels.values()];
}

function isHttpUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

/** `Retry-After` in ms: delta seconds or an HTTP date; `undefined` when absent or unreadable. */
function retryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (value.trim() !== '' && Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** fetch reports network errors as `TypeError: fetch failed` with the socket's error as `cause`. */
function causeOf(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string' && !cause.message.includes(code) ? `${code} ${cause.message}` : cause.message;
  }
  return errorMessage(error);
}

/** Up to `maxBytes` of the body as text; the rest is not read. */
async function readCapped(response: Response, maxBytes: number): Promise<string> {
  if (response.body === null) return '';
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < maxBytes) {
      const { done, value } = await reader.read();
      if (done) return Buffer.concat(chunks).toString('utf8');
      chunks.push(value);
      size += value.byteLength;
    }
    await reader.cancel();
    return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
  } finally {
    reader.releaseLock();
  }
}

