import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type CheckSpec, type CheckState } from '../../src/checks/check.js';
import type { AnyCommand } from '../../src/commands/command.js';
import { pushCommand } from '../../src/commands/push.js';
import { tcpCommand } from '../../src/commands/tcp.js';
import { amqpHandler, amqpHandlerType, type AmqpHandler, type AmqpHandlerOptions } from '../../src/handlers/amqp/amqp-handler.js';
import { encodeMessage, parseAmqpMessage, type ResultMessage, type SummaryMessage } from '../../src/handlers/amqp/amqp-message.js';
import type { Handler, Outcome } from '../../src/handlers/handler.js';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import type { Incident } from '../../src/results/incident.js';
import { gauge } from '../../src/results/metric.js';
import { toResult, type State } from '../../src/results/result.js';
import { amqpIngestSettings, startAmqpIngest, type AmqpIngest, type AmqpIngestOptions } from '../../src/ingest/amqp-ingest.js';
import { Server } from '../../src/server/server.js';
import { checkSpec } from '../helpers/checks.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';
import { testCertificates } from '../helpers/tls.js';
import { AMQP_URL, brokerProxy, closeConnection, connectionsNamed, requireManagementApi, requireRabbitMq, uniqueName, type BrokerProxy } from './helpers.js';

/**
 * The amqp handler (publisher) and the amqp ingest (subscriber) against the machine's RabbitMQ. The two-vigil
 * tests compose each vigil as daemon.ts does (a TrackedMemoryQueue, a Server with its commands and handlers)
 * and wire the ingest into the outer one directly, as the daemon will from `ingest: { amqp: … }`.
 */

const EVENT_TIMEOUT_MS = 20_000;
const WAIT = { timeout: EVENT_TIMEOUT_MS, interval: 20 };

// ---------------------------------------------------------------------------------------------------------
// Parsing, without a broker

function handlerOptions(raw: Record<string, unknown>): AmqpHandlerOptions {
  const parsed = amqpHandlerType.parseOptions(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function handlerIssues(raw: Record<string, unknown>): string[] {
  const parsed = amqpHandlerType.parseOptions(raw);
  if (parsed.ok) throw new Error('expected issues, got none');
  return parsed.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

function resultBody(overrides: { id?: string; state?: State; startedAt?: number; sentAt?: number; source?: string } = {}): ResultMessage {
  const state = overrides.state ?? 'ok';
  const startedAt = overrides.startedAt ?? 1_700_000_000_000;
  return {
    kind: 'result',
    source: overrides.source ?? 'inner',
    check: { id: overrides.id ?? 'web', command: 'tcp', metadata: { team: 'ops' } },
    result: toResult({ state, reason: state === 'ok' ? 'ok' : 'refused', message: `${state} at ${startedAt}`, metrics: [gauge('connect_time', 1.5, 'ms')] }, startedAt, 3),
    state: { hardState: state, stateType: 'hard' },
    sentAt: overrides.sentAt ?? startedAt + 10,
  };
}

describe('amqp message format', () => {
  it('reads back what it writes, and drops metrics JSON cannot carry', () => {
    const body = resultBody();
    expect(parseAmqpMessage(encodeMessage(body))).toEqual({ ok: true, message: body });
    const summary: SummaryMessage = {
      kind: 'summary',
      source: 'inner',
      timestamp: 1_700_000_000_000,
      checks: [{ id: 'web', command: 'tcp', state: 'crit', stateType: 'hard', since: 1_699_999_000_000, lastResultAt: 1_699_999_990_000, reason: 'refused', message: 'down' }],
    };
    expect(parseAmqpMessage(encodeMessage(summary))).toEqual({ ok: true, message: summary });
  });

  it('says what is wrong with a body that is not a vigil message', () => {
    const problem = (body: string): string => {
      const parsed = parseAmqpMessage(Buffer.from(body));
      if (parsed.ok) throw new Error('expected a problem');
      return parsed.problem;
    };
    expect(problem('not json')).toMatch(/^expected JSON, got "not json" \(/);
    expect(problem('[1]')).toBe('expected a JSON object, got an array');
    expect(problem('{"kind":"alert"}')).toBe('kind: expected "result" or "summary", got "alert"');
    expect(problem('{}')).toBe('kind: expected "result" or "summary", got nothing');
    const wrong = { ...resultBody(), result: { ...resultBody().result, state: 'bad', durationMs: -1 } };
    expect(problem(JSON.stringify(wrong))).toBe('result.state: expected one of ok, warn, crit, unknown, got "bad"; result.durationMs: expected milliseconds (a number ≥ 0), got -1');
    expect(problem(JSON.stringify({ ...resultBody(), check: 'web' }))).toBe('check: expected a check { id, command, metadata }, got "web"');
    expect(problem(JSON.stringify({ kind: 'summary', source: 'inner', timestamp: 1, checks: [{ id: 'a' }] }))).toMatch(/^checks\[0\]\.command: expected a command name, got nothing; checks\[0\]\.state: .*; and \d+ more$/);
  });
});

describe('amqp handler options', () => {
  it('fills in the defaults and compiles the routing key', () => {
    const options = handlerOptions({ url: 'amqp://guest:guest@127.0.0.1:5672' });
    expect(options).toMatchObject({ exchange: 'vigil', exchangeType: 'topic', mode: 'results', bufferSize: 10_000, confirm: true, binding: '#', closeTimeout: 3000, reconnectDelay: 500, maxReconnectDelay: 30_000 });
    expect(options.routingKey).toEqual(['vigil.result.', { field: 'check' }]);
    expect(options.deadLetterQueue).toBeUndefined();
    expect(handlerOptions({ url: 'amqps://mq:5671', mode: 'summary' })).toMatchObject({ summaryInterval: 60_000, routingKey: ['vigil.summary.', { field: 'source' }] });
    expect(handlerOptions({ url: 'amqp://mq', queue: 'results' }).deadLetterQueue).toBe('results.dead-letter');
  });

  it('reports what is wrong, with paths', () => {
    expect(handlerIssues({ url: 'http://mq:5672' })).toEqual(['url: expected an amqp:// or amqps:// URL (amqp://user:password@host:5672/vhost), got "http://mq:5672"']);
    expect(handlerIssues({ url: 'amqp://mq', binding: 'a.#', mode: 'summary', routingKey: 'x.{check}' })).toEqual([
      'binding: expected `queue` to be set too: it applies to the queue, got "a.#"',
      'routingKey: expected placeholders {source} in summary mode, got {check}, got "x.{check}"',
    ]);
    expect(handlerIssues({ url: 'amqp://mq', summaryInterval: '10s', caFile: '/nonexistent/ca.pem', bufferSize: 0 })).toEqual([
      'caFile: expected a readable CA certificate file (ENOENT), got "/nonexistent/ca.pem"',
      'bufferSize: expected an integer 1–10000000, got 0',
    ]);
    expect(handlerIssues({ url: 'amqp://mq', summaryInterval: '10s' })).toEqual(['summaryInterval: expected `mode: summary`: results mode publishes each result as it comes, got "10s"']);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Against the broker

/** One vigil as daemon.ts composes it: a TrackedMemoryQueue and a Server over it. */
interface Vigil {
  readonly pool: TrackedMemoryQueue;
  readonly server: Server;
}

function vigil(commands: AnyCommand[], handlers: Handler[], logger: Logger = silentLogger()): Vigil {
  const pool = new TrackedMemoryQueue();
  const server = new Server({ queue: pool, commands, handlers, logger, stopTimeoutMs: 2_000 });
  return { pool, server };
}

/** A TCP service on 127.0.0.1 that can go down (connections refused) and come back on the same port. */
interface Target {
  readonly port: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

async function tcpTarget(): Promise<Target> {
  const sockets = new Set<Socket>();
  let server: NetServer | null = null;
  let port = 0;
  const listen = async (): Promise<void> => {
    const next = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.end();
    });
    next.listen(port, '127.0.0.1');
    await once(next, 'listening');
    port = (next.address() as AddressInfo).port;
    server = next;
  };
  const stop = async (): Promise<void> => {
    const current = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    if (current) await new Promise((resolve) => current.close(resolve));
  };
  await listen();
  return { port, down: stop, up: listen, close: stop };
}

type IncidentPayload = { readonly check: CheckSpec; readonly incident: Incident };

/** The next incident event `name` for which `accept` holds; rejects after EVENT_TIMEOUT_MS. */
function nextEvent(server: Server, name: 'incident:open' | 'incident:resolve', accept: (payload: IncidentPayload) => boolean): Promise<IncidentPayload> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      server.off(name, listener);
      reject(new Error(`no ${name} event within ${EVENT_TIMEOUT_MS} ms`));
    }, EVENT_TIMEOUT_MS);
    const listener = (payload: IncidentPayload): void => {
      if (!accept(payload)) return;
      clearTimeout(timer);
      server.off(name, listener);
      resolve(payload);
    };
    server.on(name, listener);
  });
}

/** The outer vigil's push check for `id`, as the lead's `makeCheck` would build it: silence after period + grace. */
const push = pushCommand();
function makePushCheck(id: string): CheckSpec {
  const parsed = push.parse({ period: '1s', grace: '500ms' });
  if (!parsed.ok) throw new Error('bad push attributes');
  return checkSpec({ id, command: 'push', attributes: parsed.value, intervalMs: 1_000, timeoutMs: 1_000, retryIntervalMs: 1_000, maxAttempts: 1 });
}

function outcomeOf(id: string, n: number, state: State = 'ok'): Outcome {
  const result = toResult({ state, reason: state === 'ok' ? 'ok' : 'refused', message: `run ${n}`, metrics: [gauge('connect_time', n, 'ms')] }, 1_700_000_000_000 + n * 1_000, 5);
  const after: CheckState = { ...initialCheckState, lastResult: result, hardState: state, lastHardChangeAt: state === 'ok' ? null : result.startedAt };
  return { check: checkSpec({ id, command: 'tcp' }), result, state: after, previous: initialCheckState, incident: null, logger: silentLogger() };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return undefined;
  const { values } = await metric.get();
  return values.find((value) => Object.entries(labels).every(([key, expected]) => value.labels[key] === expected))?.value;
}

describe('amqp handler and ingest against the real RabbitMQ', () => {
  let admin: ChannelModel;
  let channel: Channel;
  /** Released after each test, last first. */
  let cleanups: (() => Promise<unknown>)[] = [];
  const later = (cleanup: () => Promise<unknown>): void => {
    cleanups.push(cleanup);
  };

  /** Settles once the broker and its management API answered; each test awaits it, so each fails without them. */
  let ready: Promise<void>;

  beforeAll(() => {
    ready = (async () => {
      await requireManagementApi();
      admin = await requireRabbitMq();
    })();
    ready.catch(() => undefined);
  });

  beforeEach(async () => {
    await ready;
    // One per test: a failed `get` (404) closes it.
    const opened = await admin.createChannel();
    opened.on('error', () => undefined);
    channel = opened;
    later(() => opened.close().catch(() => undefined));
  });

  afterEach(async () => {
    const pending = cleanups.reverse();
    cleanups = [];
    for (const cleanup of pending) await cleanup();
  });

  afterAll(async () => {
    await admin?.close();
  });

  /** Fresh exchange and queue names, deleted (with the dead-letter queue) after the test. */
  function topology(): { exchange: string; queue: string; deadLetterQueue: string } {
    const exchange = uniqueName('vigil-test-exchange');
    const queue = uniqueName('vigil-test-results');
    const deadLetterQueue = `${queue}.dead-letter`;
    later(async () => {
      // A channel of its own: a failed test may have closed the shared one (a 404 on `get`).
      const cleaner = await admin.createChannel();
      await cleaner.deleteQueue(queue);
      await cleaner.deleteQueue(deadLetterQueue);
      await cleaner.deleteExchange(exchange);
      await cleaner.close();
    });
    return { exchange, queue, deadLetterQueue };
  }

  function handler(raw: Record<string, unknown>, registry = new Registry(), logger: Logger = silentLogger()): AmqpHandler {
    const created = amqpHandler('amqp', handlerOptions({ url: AMQP_URL, reconnectDelay: '100ms', maxReconnectDelay: '1s', ...raw }), { logger, registry });
    later(() => created.close());
    return created;
  }

  function ingest(raw: Record<string, unknown>, rest: Omit<AmqpIngestOptions, keyof ReturnType<typeof amqpIngestSettings.parse>>): AmqpIngest {
    const settings = amqpIngestSettings.parse({ url: AMQP_URL, reconnectDelay: '100ms', maxReconnectDelay: '1s', ...raw });
    const started = startAmqpIngest({ ...settings, ...rest });
    later(() => started.stop());
    return started;
  }

  function start(instance: Vigil): Vigil {
    instance.server.start();
    later(() => instance.server.stop());
    return instance;
  }

  /** The inner vigil (a tcp check on `target` every 100 ms, published) and the outer one (ingesting). */
  async function deployment(options: { handler?: Record<string, unknown>; logger?: Logger } = {}) {
    const { exchange, queue, deadLetterQueue } = topology();
    const target = await tcpTarget();
    later(() => target.close());
    const registry = new Registry();
    const outer = start(vigil([pushCommand()], [], options.logger));
    const subscriber = ingest(
      { queue, exchange, createUnknown: true, checkId: '{source}.{check}' },
      { server: outer.server, checks: outer.pool, makeCheck: makePushCheck, logger: options.logger ?? silentLogger(), registry },
    );
    await vi.waitFor(() => expect(subscriber.consuming).toBe(true), WAIT);
    const publisher = handler({ exchange, source: 'inner', ...options.handler }, registry);
    const tcp = tcpCommand();
    const attributes = tcp.parse({ host: '127.0.0.1', port: target.port });
    if (!attributes.ok) throw new Error('bad tcp attributes');
    const inner = vigil([tcp], [publisher]);
    inner.pool.add(checkSpec({ id: 'web', command: 'tcp', attributes: attributes.value, intervalMs: 100, timeoutMs: 100, retryIntervalMs: 100, maxAttempts: 1, handlers: ['amqp'] }));
    let published = 0;
    inner.server.on('check:finish', () => published++);
    start(inner);
    return { inner, outer, publisher, subscriber, target, registry, queue, deadLetterQueue, exchange, published: () => published };
  }

  it('the outer vigil follows the inner one: ok, the target goes down (incident), comes back (resolved), the publisher goes silent (incident)', async () => {
    const { outer, inner, target } = await deployment();
    const id = 'inner.web';
    await vi.waitFor(() => expect(outer.pool.get(id)?.state.lastResult?.state).toBe('ok'), WAIT);
    const created = outer.pool.get(id);
    expect(created?.spec.command).toBe('push');
    expect(created?.state.lastResult?.message).toMatch(/^connected to 127\.0\.0\.1:\d+ in /);
    expect(created?.state.lastResult?.metrics.map((metric) => metric.name)).toEqual(expect.arrayContaining(['connect_time', 'last_success_timestamp', 'last_ping_timestamp']));

    const opened = nextEvent(outer.server, 'incident:open', (event) => event.check.id === id);
    await target.down();
    const open = await opened;
    expect(open.incident).toMatchObject({ checkId: id, state: 'crit', reason: 'refused' });
    expect(outer.pool.get(id)?.state.lastResult?.message).toBe(`connection refused by 127.0.0.1:${target.port}`);

    const resolved = nextEvent(outer.server, 'incident:resolve', (event) => event.check.id === id);
    await target.up();
    await resolved;
    expect(outer.pool.get(id)?.state.hardState).toBe('ok');

    // The publisher stops: after period + grace the outer push check's own run notices the silence.
    const silent = nextEvent(outer.server, 'incident:open', (event) => event.check.id === id);
    await inner.server.stop();
    const missed = await silent;
    expect(missed.incident.reason).toBe('heartbeat-missed');
  });

  it('both resume after the broker cuts their connections, and every result published is applied once', async () => {
    const { inner, outer, publisher, subscriber, published, registry, queue } = await deployment({ handler: { reconnectDelay: '1s', maxReconnectDelay: '2s' } });
    await vi.waitFor(() => expect(subscriber.stats.applied).toBeGreaterThanOrEqual(3), WAIT);

    const cut = async (connectionName: string): Promise<void> => {
      const names = await vi.waitFor(async () => {
        const found = await connectionsNamed(connectionName);
        expect(found.length).toBeGreaterThan(0);
        return found;
      }, WAIT);
      for (const name of names) await closeConnection(name);
    };
    // The names both give their connections (client property connection_name), as the management UI shows them.
    await cut('vigil inner amqp handler amqp');
    await cut(`vigil ${hostname()} amqp ingest ${queue}`);

    // While the publisher waits to reconnect (1 s), results pile up in its buffer.
    await vi.waitFor(() => expect(publisher.connected).toBe(false), WAIT);
    await vi.waitFor(() => expect(publisher.stats.buffered).toBeGreaterThanOrEqual(3), WAIT);
    await vi.waitFor(() => expect(publisher.stats.connections).toBeGreaterThanOrEqual(2), WAIT);
    const appliedBefore = subscriber.stats.applied;
    await vi.waitFor(() => expect(subscriber.stats.applied).toBeGreaterThan(appliedBefore + 3), WAIT);

    // The inner vigil stops (its handler flushes); the outer one then has every result, in order.
    await inner.server.stop();
    expect(publisher.stats).toMatchObject({ dropped: 0, buffered: 0, published: published() });
    expect(subscriber.stats.connections).toBeGreaterThanOrEqual(2);
    await vi.waitFor(() => expect(subscriber.stats.applied).toBe(published()), WAIT);
    expect(subscriber.stats.malformed + subscriber.stats.failed + subscriber.stats.unknown).toBe(0);
    expect(outer.pool.get('inner.web')?.state.lastResult?.startedAt).toBe(inner.pool.get('web')?.state.lastResult?.startedAt);
    expect(await metricValue(registry, 'vigil_amqp_dropped_total', { handler: 'amqp' })).toBe(0);
    expect(await metricValue(registry, 'vigil_amqp_ingest_messages_total', { result: 'applied' })).toBe(published());
  });

  it('rejects malformed messages to the dead-letter queue with a log line, and goes on consuming', async () => {
    const { queue, deadLetterQueue } = topology();
    const { logger, lines } = capturingLogger('info');
    const outer = start(vigil([pushCommand()], []));
    outer.pool.add(makePushCheck('inner.web'));
    const subscriber = ingest({ queue, exchange: '', checkId: '{source}.{check}' }, { server: outer.server, checks: outer.pool, logger });
    await vi.waitFor(() => expect(subscriber.consuming).toBe(true), WAIT);

    const notJson = Buffer.from('{"kind": "result", oops');
    const wrongShape = Buffer.from(JSON.stringify({ ...resultBody(), result: { ...resultBody().result, state: 'bad' } }));
    channel.sendToQueue(queue, notJson);
    channel.sendToQueue(queue, wrongShape);
    channel.sendToQueue(queue, encodeMessage(resultBody({ id: 'unknown-check' })));
    channel.sendToQueue(queue, encodeMessage(resultBody({ state: 'crit' })));
    await vi.waitFor(() => expect(subscriber.stats).toMatchObject({ received: 4, malformed: 2, unknown: 1, applied: 1 }), WAIT);
    expect(outer.pool.get('inner.web')?.state.lastResult).toMatchObject({ state: 'crit', reason: 'refused' });

    const dead: GetMessage[] = [];
    await vi.waitFor(async () => {
      const message = await channel.get(deadLetterQueue, { noAck: true });
      if (message !== false) dead.push(message);
      expect(dead).toHaveLength(2);
    }, WAIT);
    expect(dead.map((message) => message.content.toString())).toEqual([notJson.toString(), wrongShape.toString()]);
    const death = (dead[0]?.properties.headers?.['x-death'] as { reason: string; queue: string }[] | undefined)?.[0];
    expect(death).toMatchObject({ reason: 'rejected', queue });

    const warnings = lines.filter((line) => line.level === 40).map((line) => line.msg);
    expect(warnings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^malformed message rejected to dead-letter queue ${deadLetterQueue.replace(/[.]/g, '\\.')}: expected JSON, got `)),
        `malformed message rejected to dead-letter queue ${deadLetterQueue}: result.state: expected one of ok, warn, crit, unknown, got "bad"`,
        'results for unknown check inner.unknown-check are dropped (createUnknown is off); warned once per check',
      ]),
    );
  });

  it('skips a result delivered again, and applies a summary entry only when it is newer', async () => {
    const { queue } = topology();
    const outer = start(vigil([pushCommand()], []));
    const subscriber = ingest({ queue, exchange: '', createUnknown: true }, { server: outer.server, checks: outer.pool, makeCheck: makePushCheck, logger: silentLogger() });
    await vi.waitFor(() => expect(subscriber.consuming).toBe(true), WAIT);
    const first = resultBody({ startedAt: Date.now() - 1_000 });
    channel.sendToQueue(queue, encodeMessage(first));
    channel.sendToQueue(queue, encodeMessage(first));
    const summary = (lastResultAt: number, timestamp: number): SummaryMessage => ({
      kind: 'summary',
      source: 'inner',
      timestamp,
      checks: [{ id: 'web', command: 'tcp', state: 'warn', stateType: 'hard', since: lastResultAt, lastResultAt, reason: 'slow-connect', message: 'slow' }],
    });
    channel.sendToQueue(queue, encodeMessage(summary(first.result.startedAt + 500, Date.now())));
    channel.sendToQueue(queue, encodeMessage(summary(first.result.startedAt + 500, Date.now() + 1)));
    await vi.waitFor(() => expect(subscriber.stats).toMatchObject({ received: 4, applied: 2, duplicates: 2, created: 1 }), WAIT);
    expect(outer.pool.get('web')?.state.lastResult).toMatchObject({ state: 'warn', reason: 'slow-connect', message: 'slow', startedAt: first.result.startedAt + 500 });
  });

  it('keeps messages in a bounded buffer while the broker is away, drops the oldest, and sends the rest in order', async () => {
    const { exchange, queue } = topology();
    const proxy: BrokerProxy = await brokerProxy();
    later(() => proxy.close());
    const registry = new Registry();
    const publisher = handler({ url: proxy.url, exchange, queue, bufferSize: 5, closeTimeout: '300ms' }, registry);
    await vi.waitFor(() => expect(publisher.connected).toBe(true), WAIT);

    proxy.down();
    await vi.waitFor(() => expect(publisher.connected).toBe(false), WAIT);
    for (let n = 1; n <= 8; n++) publisher.process(outcomeOf('web', n, n % 2 === 0 ? 'crit' : 'ok'));
    expect(publisher.stats).toMatchObject({ buffered: 5, dropped: 3, published: 0 });
    expect(await metricValue(registry, 'vigil_amqp_dropped_total', { handler: 'amqp' })).toBe(3);
    expect(await metricValue(registry, 'vigil_amqp_buffered', { handler: 'amqp' })).toBe(5);

    proxy.up();
    await vi.waitFor(() => expect(publisher.stats).toMatchObject({ buffered: 0, published: 5 }), WAIT);
    const received: GetMessage[] = [];
    await vi.waitFor(async () => {
      const message = await channel.get(queue, { noAck: true });
      if (message !== false) received.push(message);
      expect(received).toHaveLength(5);
    }, WAIT);
    const bodies = received.map((message) => JSON.parse(message.content.toString()) as ResultMessage);
    expect(bodies.map((body) => body.result.message)).toEqual(['run 4', 'run 5', 'run 6', 'run 7', 'run 8']);
    expect(bodies[0]).toMatchObject({ kind: 'result', source: hostname(), check: { id: 'web', command: 'tcp' }, state: { hardState: 'crit', stateType: 'hard' } });
    expect(received[0]?.fields.routingKey).toBe('vigil.result.web');
    expect(received[0]?.properties).toMatchObject({ contentType: 'application/json', type: 'vigil.result', appId: 'vigil', deliveryMode: 2 });

    // Closing while the broker is away gives up after closeTimeout and counts what was left.
    proxy.down();
    await vi.waitFor(() => expect(publisher.connected).toBe(false), WAIT);
    publisher.process(outcomeOf('web', 9));
    publisher.process(outcomeOf('web', 10));
    const startedClosing = Date.now();
    await publisher.close();
    expect(Date.now() - startedClosing).toBeLessThan(2_000);
    expect(publisher.stats).toMatchObject({ buffered: 0, dropped: 5 });
    expect(await metricValue(registry, 'vigil_amqp_dropped_total', { handler: 'amqp' })).toBe(5);
  });

  it('publishes and ingests over amqps:// trusting the CA file given, and refuses a broker it cannot verify', async () => {
    const { exchange, queue } = topology();
    const certificates = await testCertificates();
    const dir = await mkdtemp(join(tmpdir(), 'vigil-amqp-tls-'));
    later(() => rm(dir, { recursive: true, force: true }));
    const caPath = join(dir, 'ca.pem');
    await writeFile(caPath, certificates.ca.cert);
    const proxy = await brokerProxy({ tls: certificates.leaf });
    later(() => proxy.close());
    expect(proxy.url.startsWith('amqps://')).toBe(true);

    const outer = start(vigil([pushCommand()], []));
    const subscriber = ingest({ url: proxy.url, caFile: caPath, queue, exchange, createUnknown: true }, { server: outer.server, checks: outer.pool, makeCheck: makePushCheck, logger: silentLogger() });
    await vi.waitFor(() => expect(subscriber.consuming).toBe(true), WAIT);
    const publisher = handler({ url: proxy.url, caFile: caPath, exchange });
    await vi.waitFor(() => expect(publisher.connected).toBe(true), WAIT);
    publisher.process(outcomeOf('web', 1, 'crit'));
    await vi.waitFor(() => expect(outer.pool.get('web')?.state.lastResult).toMatchObject({ state: 'crit', message: 'run 1' }), WAIT);

    const { logger, lines } = capturingLogger('warn');
    const untrusting = handler({ url: proxy.url, exchange }, new Registry(), logger);
    await vi.waitFor(() => expect(lines.map((line) => line.msg)).toContainEqual(expect.stringMatching(/^cannot connect to the broker: .*certificate/)), WAIT);
    expect(untrusting.connected).toBe(false);
  });

  it('summary mode publishes every check it has seen, with a fresh timestamp each time', async () => {
    const { exchange, queue } = topology();
    const publisher = handler({ exchange, queue, mode: 'summary', summaryInterval: '150ms', source: 'inner', binding: 'vigil.summary.#' });
    // The handler declares the queue once connected.
    await vi.waitFor(() => expect(publisher.connected).toBe(true), WAIT);
    publisher.process(outcomeOf('web', 1));
    publisher.process(outcomeOf('db', 2, 'crit'));
    publisher.process(outcomeOf('gone', 3));
    publisher.checkRemoved('gone');
    const received: GetMessage[] = [];
    await vi.waitFor(async () => {
      const message = await channel.get(queue, { noAck: true });
      if (message !== false) received.push(message);
      expect(received.length).toBeGreaterThanOrEqual(2);
    }, WAIT);
    const [first, second] = received.map((message) => JSON.parse(message.content.toString()) as SummaryMessage);
    expect(received[0]?.fields.routingKey).toBe('vigil.summary.inner');
    expect(first?.kind).toBe('summary');
    expect(second?.timestamp).toBeGreaterThan(first?.timestamp ?? Infinity);
    expect(first?.checks).toEqual([
      { id: 'web', command: 'tcp', state: 'ok', stateType: 'hard', since: null, lastResultAt: 1_700_000_001_000, reason: 'ok', message: 'run 1' },
      { id: 'db', command: 'tcp', state: 'crit', stateType: 'hard', since: 1_700_000_002_000, lastResultAt: 1_700_000_002_000, reason: 'refused', message: 'run 2' },
    ]);
  });
});
