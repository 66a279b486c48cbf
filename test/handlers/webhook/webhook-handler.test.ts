import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type CheckSpec, type CheckState } from '../../../src/checks/check.js';
import type { AlertmanagerAlert } from '../../../src/handlers/webhook/alertmanager-payload.js';
import type { HandlerContext, Outcome } from '../../../src/handlers/handler.js';
import { MAX_CONCURRENT, webhookHandler, webhookHandlerType, type WebhookHandler, type WebhookPayload } from '../../../src/handlers/webhook/webhook-handler.js';
import type { Incident, IncidentEvent, IncidentEventType } from '../../../src/results/incident.js';
import { gauge } from '../../../src/results/metric.js';
import type { Result, State } from '../../../src/results/result.js';
import type { Clock } from '../../../src/core/clock.js';
import { checkSpec } from '../../helpers/checks.js';
import { capturingLogger, silentLogger } from '../../helpers/logger.js';

const T0 = 1_700_000_000_000;
const ctx: HandlerContext = { signal: new AbortController().signal };

/** Time the test moves by hand: timers fire only in `advance`. */
class ManualClock implements Clock {
  #now = T0;
  #nextId = 1;
  readonly #timers = new Map<number, { at: number; delayMs: number; callback: () => void }>();

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, delayMs: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + delayMs, delayMs, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Delays of the timers not yet fired or cleared, in the order they were set. */
  get pendingDelays(): number[] {
    return [...this.#timers.values()].map((timer) => timer.delayMs);
  }

  /** Moves time on by `ms`, firing the timers that fall due, earliest first. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= until && (next === undefined || entry[1].at < next[1].at)) next = entry;
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].callback();
    }
    this.#now = until;
  }
}

interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

type Reply = number | { status: number; headers?: Record<string, string>; body?: string } | 'hold';

/** A webhook receiver on 127.0.0.1: records every request and answers from a script (then 200). */
class Receiver {
  readonly requests: ReceivedRequest[] = [];
  readonly replies: Reply[] = [];
  readonly #held: ServerResponse[] = [];
  readonly #server: Server;
  url = '';

  constructor() {
    this.#server = createServer((request, response) => this.#onRequest(request, response));
  }

  async listen(): Promise<this> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  /** Answers every held request with 200. */
  release(): void {
    for (const response of this.#held.splice(0)) response.writeHead(200).end();
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #onRequest(request: IncomingMessage, response: ServerResponse): void {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      this.requests.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      const reply = this.replies.shift() ?? 200;
      if (reply === 'hold') {
        this.#held.push(response);
        return;
      }
      const { status, headers = {}, body = '' } = typeof reply === 'number' ? { status: reply } : reply;
      response.writeHead(status, headers).end(body);
    });
  }
}

const receivers: Receiver[] = [];
const handlers: WebhookHandler[] = [];

async function receiver(...replies: Reply[]): Promise<Receiver> {
  const created = new Receiver();
  created.replies.push(...replies);
  receivers.push(await created.listen());
  return created;
}

afterEach(async () => {
  for (const server of receivers) server.release();
  await Promise.all(handlers.splice(0).map((handler) => handler.close()));
  await Promise.all(receivers.splice(0).map((server) => server.close()));
});

interface Setup {
  readonly handler: WebhookHandler;
  readonly clock: ManualClock;
  readonly registry: Registry;
}

function setup(options: Record<string, unknown>, deps: { logger?: Logger; random?: () => number } = {}): Setup {
  const parsed = webhookHandlerType.parseOptions(options);
  if (!parsed.ok) throw new Error(`unexpected option issues: ${JSON.stringify(parsed.issues)}`);
  const clock = new ManualClock();
  const registry = new Registry();
  const handler = webhookHandler('hook', parsed.value, { logger: deps.logger ?? silentLogger(), registry, clock, random: deps.random ?? (() => 1) });
  handlers.push(handler);
  return { handler, clock, registry };
}

async function deliveries(registry: Registry, result: 'delivered' | 'failed' | 'dropped'): Promise<number> {
  const metric = registry.getSingleMetric('vigil_webhook_deliveries_total');
  const values = (await metric?.get())?.values ?? [];
  return values.find((value) => value.labels.result === result && value.labels.handler === 'hook')?.value ?? Number.NaN;
}

const spec: CheckSpec = checkSpec({ id: 'web', command: 'tcp', metadata: { team: 'ops', 'runbook-url': 'https://wiki/web', priority: 1 } });

function result(state: State, overrides: Partial<Result> = {}): Result {
  return {
    state,
    reason: state === 'ok' ? 'ok' : 'refused',
    message: state === 'ok' ? 'connected in 3 ms' : 'connection refused',
    metrics: [gauge('connect_time', 3, 'ms')],
    startedAt: T0,
    durationMs: 3,
    ...overrides,
  };
}

function incident(overrides: Partial<Incident> = {}): Incident {
  return {
    id: `web:${T0}`,
    checkId: 'web',
    openedAt: T0,
    updatedAt: T0,
    resolvedAt: null,
    state: 'crit',
    worstState: 'crit',
    reason: 'refused',
    acknowledgedAt: null,
    externalId: null,
    ...overrides,
  };
}

interface OutcomeOptions {
  readonly check?: CheckSpec;
  readonly result?: Result;
  readonly event?: IncidentEvent | null;
  /** The incident open after the outcome; defaults to the event's unless it resolved. */
  readonly open?: Incident | null;
  readonly previous?: Partial<CheckState>;
}

function outcome({ check = spec, result: run = result('crit'), event = null, open, previous = {} }: OutcomeOptions = {}): Outcome {
  const openIncident = open !== undefined ? open : event !== null && event.type !== 'resolve' ? event.incident : null;
  const before: CheckState = { ...initialCheckState, ...previous };
  return {
    check,
    result: run,
    previous: before,
    state: { ...before, hardState: run.state, lastResult: run, incident: openIncident },
    incident: event,
    logger: silentLogger(),
  };
}

function event(type: IncidentEventType, overrides: Partial<Incident> = {}): IncidentEvent {
  const extra: Partial<Incident> =
    type === 'resolve' ? { resolvedAt: T0 + 60_000, updatedAt: T0 + 60_000 } : type === 'acknowledge' ? { acknowledgedAt: T0 + 30_000, updatedAt: T0 + 30_000 } : {};
  return { type, incident: incident({ ...extra, ...overrides }) };
}

function send(handler: WebhookHandler, value: Outcome): void {
  handler.process(value, ctx);
}

function payloadOf(request: ReceivedRequest | undefined): WebhookPayload {
  if (request === undefined) throw new Error('expected a request, got none');
  return JSON.parse(request.body) as WebhookPayload;
}

function alertsOf(request: ReceivedRequest | undefined): AlertmanagerAlert[] {
  if (request === undefined) throw new Error('expected a request, got none');
  return JSON.parse(request.body) as AlertmanagerAlert[];
}

describe('webhook handler options', () => {
  it('has defaults for everything but the url', () => {
    expect(webhookHandlerType.parseOptions({ url: 'https://hooks.example/vigil' })).toEqual({
      ok: true,
      value: { url: 'https://hooks.example/vigil', format: 'json', headers: {}, timeout: 5_000, retries: 3, backoff: 1_000, events: ['open', 'update', 'resolve', 'acknowledge'] },
    });
  });

  it('reads durations, headers, a secret and an event list', () => {
    const parsed = webhookHandlerType.parseOptions({
      url: 'http://127.0.0.1:9093',
      format: 'alertmanager',
      headers: { Authorization: 'Bearer t0ken' },
      secret: 's3cret',
      timeout: '2s',
      retries: 0,
      backoff: '250ms',
      events: ['open', 'resolve'],
    });
    expect(parsed).toEqual({
      ok: true,
      value: { url: 'http://127.0.0.1:9093', format: 'alertmanager', headers: { Authorization: 'Bearer t0ken' }, secret: 's3cret', timeout: 2_000, retries: 0, backoff: 250, events: ['open', 'resolve'] },
    });
  });

  it('says what it expected for each bad option', () => {
    const parsed = webhookHandlerType.parseOptions({
      url: 'ftp://files.example/',
      format: 'xml',
      headers: { 'X-Ok': 'two\nlines' },
      secret: '',
      timeout: 'soon',
      retries: 11,
      backoff: '2m',
      events: ['opened'],
      verbose: true,
    });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    const byPath = Object.fromEntries(parsed.issues.map((issue) => [issue.path.join('.'), issue.message]));
    expect(byPath).toEqual({
      url: 'expected an http:// or https:// URL, got "ftp://files.example/"',
      format: 'expected json or alertmanager, got "xml"',
      'headers.X-Ok': 'expected a header value on one line, got "two\\nlines"',
      secret: 'expected a secret (a non-empty string), got ""',
      timeout: 'expected a duration like 30s, 5m, 250ms or milliseconds (at least 1ms), got "soon"',
      retries: 'expected an integer 0–10, got 11',
      backoff: 'expected a duration of at most 1m, got "2m"',
      'events.0': 'expected one of open, update, resolve, acknowledge, got "opened"',
      verbose: 'unknown key',
    });
  });

  it('names the header name that is not one', () => {
    const parsed = webhookHandlerType.parseOptions({ url: 'http://127.0.0.1:1', headers: { 'Bad Name': 'x' } });
    expect(parsed).toEqual({
      ok: false,
      issues: [{ path: ['headers'], message: 'expected header names of letters, digits and !#$%&\'*+.^_`|~- ("Bad Name" is not one), got an object' }],
    });
  });

  it('needs a url and at least one event', () => {
    const parsed = webhookHandlerType.parseOptions({ events: [] });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.issues).toEqual([
      { path: ['url'], message: 'expected an http:// or https:// URL, got nothing' },
      { path: ['events'], message: 'expected at least one of open, update, resolve, acknowledge, got an array' },
    ]);
  });
});

describe('webhook handler, json format', () => {
  it('POSTs the event, the check, the incident and the last result, signed with the secret', async () => {
    const hook = await receiver();
    const { handler, registry } = setup({ url: `${hook.url}/hooks/vigil?token=abc`, secret: 's3cret', headers: { Authorization: 'Bearer t0ken' } });
    const run = result('crit');
    send(handler, outcome({ result: run, event: event('open') }));
    await handler.idle();

    expect(hook.requests).toHaveLength(1);
    const request = hook.requests[0] as ReceivedRequest;
    expect(request.method).toBe('POST');
    expect(request.url).toBe('/hooks/vigil?token=abc');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers.authorization).toBe('Bearer t0ken');
    expect(request.headers['x-vigil-event']).toBe('open');
    expect(request.headers['x-vigil-delivery']).toMatch(/^[0-9a-f-]{36}$/);
    expect(request.headers['user-agent']).toMatch(/^vigil\/\d+\.\d+\.\d+/);
    const expected = `sha256=${createHmac('sha256', 's3cret').update(request.body).digest('hex')}`;
    expect(request.headers['x-vigil-signature']).toBe(expected);

    expect(payloadOf(request)).toEqual({
      event: 'open',
      check: { id: 'web', command: 'tcp', metadata: { team: 'ops', 'runbook-url': 'https://wiki/web', priority: 1 } },
      incident: incident(),
      result: run,
      sentAt: T0,
    });
    expect(await deliveries(registry, 'delivered')).toBe(1);
    expect(handler.pending).toBe(0);
  });

  it('sends no signature without a secret, and lets headers override the content type', async () => {
    const hook = await receiver();
    const { handler } = setup({ url: hook.url, headers: { 'Content-Type': 'application/vnd.vigil+json' } });
    send(handler, outcome({ event: event('open') }));
    await handler.idle();
    expect(hook.requests[0]?.headers).not.toHaveProperty('x-vigil-signature');
    expect(hook.requests[0]?.headers['content-type']).toBe('application/vnd.vigil+json');
  });

  it('sends incident events only, not every run', async () => {
    const hook = await receiver();
    const { handler } = setup({ url: hook.url });
    const open = incident();
    send(handler, outcome({ result: result('crit') }));
    expect(handler.pending).toBe(0);
    send(handler, outcome({ result: result('crit'), open }));
    expect(handler.pending).toBe(0);
    send(handler, outcome({ result: result('crit'), event: event('open') }));
    await handler.idle();
    expect(hook.requests.map((request) => payloadOf(request).event)).toEqual(['open']);
  });

  it('sends the events it is configured for, each with its incident', async () => {
    const hook = await receiver();
    const { handler } = setup({ url: hook.url, events: ['resolve', 'acknowledge'] });
    send(handler, outcome({ event: event('open') }));
    send(handler, outcome({ result: result('unknown'), event: event('update', { state: 'unknown' }) }));
    send(handler, outcome({ result: result('ok'), event: event('resolve') }));
    send(handler, outcome({ event: event('acknowledge') }));
    await handler.idle();
    const payloads = hook.requests.map(payloadOf);
    expect(payloads.map((payload) => payload.event)).toEqual(['resolve', 'acknowledge']);
    expect(payloads[0]?.incident.resolvedAt).toBe(T0 + 60_000);
    expect(payloads[0]?.result.state).toBe('ok');
    expect(payloads[1]?.incident.acknowledgedAt).toBe(T0 + 30_000);
    expect(hook.requests[1]?.headers['x-vigil-event']).toBe('acknowledge');
  });

  it('retries after 5xx answers with exponential backoff, sending the same signed body', async () => {
    const hook = await receiver(500, 503, 200);
    const { handler, clock, registry } = setup({ url: hook.url, secret: 's3cret', backoff: '100ms', timeout: '5s' });
    send(handler, outcome({ event: event('open') }));

    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([100]));
    // Nothing goes out again before the backoff has passed.
    expect(hook.requests).toHaveLength(1);
    clock.advance(100);
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([200]));
    expect(hook.requests).toHaveLength(2);
    clock.advance(200);
    await handler.idle();

    expect(hook.requests).toHaveLength(3);
    const [first, ...others] = hook.requests as [ReceivedRequest, ...ReceivedRequest[]];
    for (const request of others) {
      expect(request.body).toBe(first.body);
      expect(request.headers['x-vigil-delivery']).toBe(first.headers['x-vigil-delivery']);
      expect(request.headers['x-vigil-signature']).toBe(first.headers['x-vigil-signature']);
    }
    expect(await deliveries(registry, 'delivered')).toBe(1);
    expect(await deliveries(registry, 'failed')).toBe(0);
  });

  it('jitters the backoff down to half the exponential delay', async () => {
    const hook = await receiver(500, 500, 200);
    const { handler, clock } = setup({ url: hook.url, backoff: '100ms' }, { random: () => 0 });
    send(handler, outcome({ event: event('open') }));
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([50]));
    clock.advance(50);
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([100]));
    clock.advance(100);
    await handler.idle();
    expect(hook.requests).toHaveLength(3);
  });

  it('caps the backoff at one minute', async () => {
    const hook = await receiver(500, 500, 500, 200);
    const { handler, clock } = setup({ url: hook.url, backoff: '40s' });
    send(handler, outcome({ event: event('open') }));
    for (const delayMs of [40_000, 60_000, 60_000]) {
      await vi.waitFor(() => expect(clock.pendingDelays).toEqual([delayMs]));
      clock.advance(delayMs);
    }
    await handler.idle();
    expect(hook.requests).toHaveLength(4);
  });

  it('gives up after its retries, logging an error and counting a failed delivery', async () => {
    const hook = await receiver(500, 500, { status: 500, body: 'database is down' });
    const { logger, lines } = capturingLogger('warn');
    const { handler, clock, registry } = setup({ url: `${hook.url}/secret-path`, retries: 2, backoff: '10ms' }, { logger });
    send(handler, outcome({ event: event('open') }));
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([10]));
    clock.advance(10);
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([20]));
    clock.advance(20);
    await handler.idle();

    expect(hook.requests).toHaveLength(3);
    expect(await deliveries(registry, 'failed')).toBe(1);
    expect(await deliveries(registry, 'delivered')).toBe(0);
    expect(handler.pending).toBe(0);
    const failure = lines.find((line) => line.msg === 'webhook delivery failed; giving up');
    expect(failure).toMatchObject({ handler: 'hook', checkId: 'web', event: 'open', attempts: 3, target: hook.url });
    expect((failure?.err as { message: string }).message).toBe(`expected a 2xx response from ${hook.url}, got 500 Internal Server Error: database is down`);
    expect(lines.filter((line) => line.msg === 'webhook delivery failed; retrying')).toHaveLength(2);
    // The URL's path may hold a token: only the origin is logged.
    expect(JSON.stringify(lines)).not.toContain('secret-path');
  });

  it('does not retry a 4xx answer other than 408 and 429', async () => {
    const hook = await receiver(404);
    const { handler, registry } = setup({ url: hook.url });
    send(handler, outcome({ event: event('open') }));
    await handler.idle();
    expect(hook.requests).toHaveLength(1);
    expect(await deliveries(registry, 'failed')).toBe(1);
  });

  it('waits as long as a Retry-After header asks, within the cap', async () => {
    const hook = await receiver({ status: 429, headers: { 'Retry-After': '7' } }, 200);
    const { handler, clock } = setup({ url: hook.url, backoff: '100ms' });
    send(handler, outcome({ event: event('open') }));
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([7_000]));
    clock.advance(7_000);
    await handler.idle();
    expect(hook.requests).toHaveLength(2);
  });

  it('abandons an attempt after its timeout and retries it', async () => {
    const hook = await receiver('hold', 200);
    const { logger, lines } = capturingLogger('warn');
    const { handler, clock, registry } = setup({ url: hook.url, timeout: '2s', backoff: '100ms' }, { logger });
    send(handler, outcome({ event: event('open') }));
    await vi.waitFor(() => expect(hook.requests).toHaveLength(1));
    expect(clock.pendingDelays).toEqual([2_000]);
    clock.advance(2_000);
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([100]));
    clock.advance(100);
    await handler.idle();
    expect(hook.requests).toHaveLength(2);
    expect(await deliveries(registry, 'delivered')).toBe(1);
    const retry = lines.find((line) => line.msg === 'webhook delivery failed; retrying');
    expect((retry?.err as { message: string }).message).toBe(`POST to ${hook.url}: no response within 2000 ms`);
  });

  it('reports a receiver that refuses connections', async () => {
    const closed = await receiver();
    const url = closed.url;
    await closed.close();
    receivers.splice(receivers.indexOf(closed), 1);
    const { logger, lines } = capturingLogger('warn');
    const { handler, registry } = setup({ url, retries: 0 }, { logger });
    send(handler, outcome({ event: event('open') }));
    await handler.idle();
    expect(await deliveries(registry, 'failed')).toBe(1);
    const failure = lines.find((line) => line.msg === 'webhook delivery failed; giving up');
    expect((failure?.err as { message: string }).message).toMatch(new RegExp(`^POST to ${url} failed: .*ECONNREFUSED`));
  });

  it('keeps a check’s events in order while other checks’ go ahead', async () => {
    const hook = await receiver(500);
    const { handler, clock } = setup({ url: hook.url, backoff: '100ms' });
    const db = checkSpec({ id: 'db', command: 'tcp' });
    send(handler, outcome({ event: event('open') }));
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([100]));
    // web's open waits for its retry: its resolve waits behind it, db's open does not.
    send(handler, outcome({ result: result('ok'), event: event('resolve') }));
    send(handler, outcome({ check: db, event: event('open', { id: `db:${T0}`, checkId: 'db' }) }));
    await vi.waitFor(() => expect(hook.requests).toHaveLength(2));
    expect(payloadOf(hook.requests[1]).check.id).toBe('db');
    expect(handler.pending).toBe(2);
    clock.advance(100);
    await handler.idle();
    expect(hook.requests.slice(2).map((request) => `${payloadOf(request).check.id} ${payloadOf(request).event}`)).toEqual(['web open', 'web resolve']);
  });

  it(`has at most ${MAX_CONCURRENT} requests in flight`, async () => {
    const checks = Array.from({ length: MAX_CONCURRENT + 2 }, (_, i) => checkSpec({ id: `c${i}`, command: 'tcp' }));
    const hook = await receiver(...checks.map((): Reply => 'hold'));
    const { handler } = setup({ url: hook.url });
    for (const check of checks) send(handler, outcome({ check, event: event('open', { checkId: check.id }) }));
    await vi.waitFor(() => expect(hook.requests.length).toBeGreaterThanOrEqual(MAX_CONCURRENT));
    expect(hook.requests).toHaveLength(MAX_CONCURRENT);
    expect(handler.pending).toBe(checks.length);
    hook.release();
    await vi.waitFor(() => expect(hook.requests).toHaveLength(checks.length));
    hook.release();
    await handler.idle();
    expect(handler.pending).toBe(0);
  });

  it('on close, makes a waiting retry at once and then gives up; later events are dropped', async () => {
    const hook = await receiver(500, 500);
    const { handler, clock, registry } = setup({ url: hook.url, backoff: '30s' });
    send(handler, outcome({ event: event('open') }));
    await vi.waitFor(() => expect(clock.pendingDelays).toEqual([30_000]));
    await handler.close();
    expect(hook.requests).toHaveLength(2);
    expect(await deliveries(registry, 'failed')).toBe(1);
    send(handler, outcome({ result: result('ok'), event: event('resolve') }));
    expect(handler.pending).toBe(0);
    expect(await deliveries(registry, 'dropped')).toBe(1);
  });

  it('on close, abandons what is still going after one attempt timeout', async () => {
    const checks = Array.from({ length: MAX_CONCURRENT + 2 }, (_, i) => checkSpec({ id: `c${i}`, command: 'tcp' }));
    const hook = await receiver(...checks.map((): Reply => 'hold'));
    const { handler, clock, registry } = setup({ url: hook.url, timeout: '3s' });
    for (const check of checks) send(handler, outcome({ check, event: event('open', { checkId: check.id }) }));
    await vi.waitFor(() => expect(hook.requests).toHaveLength(MAX_CONCURRENT));
    const closed = handler.close();
    clock.advance(3_000);
    await closed;
    expect(handler.pending).toBe(0);
    expect(await deliveries(registry, 'dropped')).toBe(checks.length);
    expect(await deliveries(registry, 'delivered')).toBe(0);
  });
});

describe('webhook handler, alertmanager format', () => {
  const firingUntil = T0 + 4 * 60_000 + spec.timeoutMs;

  it('POSTs one firing alert to <url>/api/v2/alerts on open', async () => {
    const am = await receiver();
    const { handler } = setup({ url: `${am.url}/alertmanager`, format: 'alertmanager' });
    send(handler, outcome({ event: event('open') }));
    await handler.idle();
    expect(am.requests[0]?.url).toBe('/alertmanager/api/v2/alerts');
    expect(alertsOf(am.requests[0])).toEqual([
      {
        labels: { alertname: 'VigilCheck', check: 'web', command: 'tcp', severity: 'critical', team: 'ops', runbook_url: 'https://wiki/web' },
        annotations: { summary: 'connection refused', reason: 'refused', incident: `web:${T0}` },
        startsAt: new Date(T0).toISOString(),
        endsAt: new Date(firingUntil).toISOString(),
      },
    ]);
  });

  it.each([
    ['warn', 'warning'],
    ['crit', 'critical'],
    ['unknown', 'critical'],
  ] as const)('labels a %s incident with severity %s', async (state, severity) => {
    const am = await receiver();
    const { handler } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ result: result(state), event: event('open', { state, worstState: state }) }));
    await handler.idle();
    expect(alertsOf(am.requests[0])[0]?.labels.severity).toBe(severity);
  });

  it('resolves the alert of the old severity when the severity changes', async () => {
    const am = await receiver();
    const { handler, clock } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ result: result('warn'), event: event('open', { state: 'warn', worstState: 'warn' }) }));
    clock.advance(10_000);
    send(handler, outcome({ result: result('crit'), event: event('update') }));
    await handler.idle();
    const alerts = alertsOf(am.requests[1]);
    expect(alerts.map((alert) => [alert.labels.severity, alert.endsAt])).toEqual([
      ['critical', new Date(firingUntil + 10_000).toISOString()],
      ['warning', new Date(T0 + 10_000).toISOString()],
    ]);
  });

  it('resolves with the labels it sent and endsAt at the resolution', async () => {
    const am = await receiver();
    const { handler } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ event: event('open') }));
    await handler.idle();
    // Metadata changed since: Alertmanager still knows the alert by the labels it was sent with.
    const changed = { ...spec, metadata: { team: 'dba' } };
    send(handler, outcome({ check: changed, result: result('ok'), event: event('resolve') }));
    await handler.idle();
    const [resolved] = alertsOf(am.requests[1]);
    expect(resolved?.labels).toEqual(alertsOf(am.requests[0])[0]?.labels);
    expect(resolved?.endsAt).toBe(new Date(T0 + 60_000).toISOString());
    expect(resolved?.annotations.summary).toBe('connected in 3 ms');
  });

  it('sends the alert again while the incident lasts, at most once a minute', async () => {
    const am = await receiver();
    const { handler, clock } = setup({ url: am.url, format: 'alertmanager' });
    const open = incident();
    send(handler, outcome({ event: event('open') }));
    clock.advance(30_000);
    send(handler, outcome({ open }));
    expect(handler.pending).toBe(1);
    clock.advance(30_000);
    send(handler, outcome({ open, result: result('crit', { message: 'still refused' }) }));
    expect(handler.pending).toBe(2);
    await handler.idle();
    const [refresh] = alertsOf(am.requests[1]);
    expect(refresh?.endsAt).toBe(new Date(firingUntil + 60_000).toISOString());
    expect(refresh?.annotations.summary).toBe('still refused');
    expect(am.requests[1]?.headers['x-vigil-event']).toBe('refresh');
  });

  it('sends an open incident’s alert on the first run it sees (after a restart)', async () => {
    const am = await receiver();
    const { handler } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ open: incident() }));
    await handler.idle();
    expect(alertsOf(am.requests[0])[0]?.labels.check).toBe('web');
  });

  it('marks an acknowledged alert', async () => {
    const am = await receiver();
    const { handler } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ event: event('acknowledge') }));
    await handler.idle();
    expect(alertsOf(am.requests[0])[0]?.annotations.acknowledged).toBe(new Date(T0 + 30_000).toISOString());
  });

  it('resolves the alert of a check that is removed with its incident open', async () => {
    const am = await receiver();
    const { handler, clock } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ event: event('open') }));
    clock.advance(5_000);
    handler.checkRemoved('web');
    await handler.idle();
    expect(alertsOf(am.requests[1])).toEqual([expect.objectContaining({ endsAt: new Date(T0 + 5_000).toISOString() })]);
  });

  it('sends a waiting check’s latest alerts only', async () => {
    const am = await receiver('hold');
    const { handler, clock } = setup({ url: am.url, format: 'alertmanager' });
    send(handler, outcome({ result: result('warn'), event: event('open', { state: 'warn' }) }));
    await vi.waitFor(() => expect(am.requests).toHaveLength(1));
    clock.advance(1_000);
    send(handler, outcome({ result: result('crit'), event: event('update') }));
    clock.advance(1_000);
    send(handler, outcome({ result: result('ok'), event: event('resolve', { resolvedAt: T0 + 2_000 }) }));
    expect(handler.pending).toBe(2);
    am.release();
    await handler.idle();
    expect(am.requests).toHaveLength(2);
    expect(alertsOf(am.requests[1]).map((alert) => [alert.labels.severity, alert.endsAt])).toEqual([
      ['critical', new Date(T0 + 2_000).toISOString()],
      ['warning', new Date(T0 + 1_000).toISOString()],
    ]);
  });
});
