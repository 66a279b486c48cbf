import { hostname } from 'node:os';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type Options, type RecoveringChannelModel } from 'amqplib';
import { z } from 'zod';
import type { CheckSpec, CheckState } from '../../checks/check.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { duration, integer, nonEmptyString } from '../../validation/schema-types.js';
import {
  amqpUrl,
  caFile,
  defaultDeadLetterQueue,
  encodeMessage,
  MESSAGE_CONTENT_TYPE,
  MessageTypes,
  queueArguments,
  reconnectDelays,
  redactUrl,
  resultMessage,
  socketOptions,
  summaryEntry,
  type SummaryEntry,
} from './amqp-message.js';
import { defineHandler, type Handler, type HandlerDeps, type Outcome } from '../handler.js';
import { registeredCounter as counter, registeredGauge as gauge } from '../../metrics/registered-metrics.js';

/** `results`: one message per outcome; `summary`: every `summaryInterval`, one message with every check. */
export const AmqpModes = ['results', 'summary'] as const;
export type AmqpMode = (typeof AmqpModes)[number];

export const ExchangeTypes = ['topic', 'direct', 'fanout', 'headers'] as const;

/** Placeholders a routing key may use, by mode: a summary is about no check in particular. */
const PLACEHOLDERS: Record<AmqpMode, readonly string[]> = {
  results: ['check', 'command', 'state', 'source'],
  summary: ['source'],
};
const DEFAULT_ROUTING_KEY: Record<AmqpMode, string> = { results: 'vigil.result.{check}', summary: 'vigil.summary.{source}' };
const PLACEHOLDER = /\{([^{}]*)\}/g;

/** A routing key template compiled at load time: literal text and placeholders, in order. Plain data. */
export type RoutingKeyTemplate = readonly (string | { readonly field: string })[];

function compileTemplate(template: string): RoutingKeyTemplate {
  const parts: (string | { field: string })[] = [];
  let at = 0;
  for (const match of template.matchAll(PLACEHOLDER)) {
    if (match.index > at) parts.push(template.slice(at, match.index));
    parts.push({ field: match[1] as string });
    at = match.index + match[0].length;
  }
  if (at < template.length) parts.push(template.slice(at));
  return parts;
}

const options = z
  .strictObject({
    /** The broker: `amqp://user:password@host:5672/vhost`, or `amqps://` for TLS. */
    url: amqpUrl(),
    /** CA certificate (PEM) that signed the broker's certificate, for `amqps://`; default the system's. */
    caFile: caFile().optional(),
    /** Exchange published to, declared (durable) if missing; default `vigil`. */
    exchange: nonEmptyString('an exchange name').default('vigil'),
    /** Type the exchange is declared with; default `topic`. */
    exchangeType: z.enum(ExchangeTypes, { error: `expected one of ${ExchangeTypes.join(', ')}` }).default('topic'),
    /**
     * Routing key, with `{check}`, `{command}`, `{state}` and `{source}` filled in (summary mode: `{source}`
     * only); default `vigil.result.{check}`, in summary mode `vigil.summary.{source}`.
     */
    routingKey: z.string({ error: 'expected a routing key template (a string)' }).max(255, { error: 'expected at most 255 characters' }).optional(),
    /**
     * A queue to declare (durable) and bind to the exchange, so that messages published before the
     * subscriber first starts wait there; it is declared with the same dead-letter arguments as the ingest
     * declares it, so either side may create it.
     */
    queue: nonEmptyString('a queue name').optional(),
    /** Binding key of `queue`; default `#` (everything). */
    binding: z.string({ error: 'expected a binding key (a string)' }).optional(),
    /** Dead-letter exchange of `queue`, as the ingest has it; default `''` (the default exchange). */
    deadLetterExchange: z.string({ error: 'expected an exchange name (a string; empty for the default exchange)' }).default(''),
    /** Dead-letter queue of `queue`, as the ingest has it; default `<queue>.dead-letter`. */
    deadLetterQueue: nonEmptyString('a queue name').optional(),
    /** What is published; default `results`. */
    mode: z.enum(AmqpModes, { error: `expected ${AmqpModes.join(' or ')}` }).default('results'),
    /** Summary mode: time between summaries; default 1 min. */
    summaryInterval: duration(100).optional(),
    /** This vigil's name in messages (`source`); default the host name. */
    source: nonEmptyString('a name for this vigil').max(200, { error: 'expected at most 200 characters' }).optional(),
    /** Messages kept while the broker is away or has not confirmed them; beyond, the oldest is dropped. Default 10 000. */
    bufferSize: integer(1, 10_000_000).default(10_000),
    /** Publisher confirms: a message leaves the buffer when the broker has it; default true. */
    confirm: z.boolean({ error: 'expected true or false' }).default(true),
    /** How long `close` waits for the buffer to empty; default 3 s (below the default handler timeout). */
    closeTimeout: duration().prefault('3s'),
    ...reconnectDelays,
  })
  .superRefine((value, ctx) => {
    if (value.queue === undefined) {
      for (const key of ['binding', 'deadLetterQueue'] as const) {
        if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'expected `queue` to be set too: it applies to the queue' });
      }
    }
    if (value.mode !== 'summary' && value.summaryInterval !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['summaryInterval'], message: 'expected `mode: summary`: results mode publishes each result as it comes' });
    }
    if (value.maxReconnectDelay < value.reconnectDelay) {
      ctx.addIssue({ code: 'custom', path: ['maxReconnectDelay'], message: `expected at least reconnectDelay (${value.reconnectDelay}ms)` });
    }
    const allowed = PLACEHOLDERS[value.mode];
    for (const match of (value.routingKey ?? '').matchAll(PLACEHOLDER)) {
      if (!allowed.includes(match[1] as string)) {
        ctx.addIssue({ code: 'custom', path: ['routingKey'], message: `expected placeholders ${allowed.map((name) => `{${name}}`).join(', ')} in ${value.mode} mode, got {${match[1]}}` });
      }
    }
  })
  .transform((value) => ({
    ...value,
    routingKey: compileTemplate(value.routingKey ?? DEFAULT_ROUTING_KEY[value.mode]),
    summaryInterval: value.summaryInterval ?? 60_000,
    binding: value.binding ?? '#',
    deadLetterQueue: value.deadLetterQueue ?? (value.queue === undefined ? undefined : defaultDeadLetterQueue(value.queue)),
  }));

export type AmqpHandlerOptions = z.output<typeof options>;

/**
 * Publishes check outcomes as JSON to a RabbitMQ (AMQP 0-9-1) exchange, for a vigil on the other side of
 * the broker to ingest (`server/amqp-ingest.ts`) or any other consumer to read; the format is
 * `handlers/amqp-message.ts`.
 *
 * `results` mode publishes each Result; `summary` mode publishes, every `summaryInterval`, the state of
 * every check that has sent this handler an outcome since it started (the handler keeps each check's
 * latest state; a removed check leaves the summary).
 *
 * Publishing never holds a check up: `process` puts the message in a bounded buffer and returns. The
 * buffer is sent in order whenever a channel is up; with `confirm` a message leaves it only once the
 * broker confirmed it, so a connection lost mid-way resends what was not confirmed (a subscriber may see
 * a message twice, never miss one) — the ingest drops such duplicates. While the broker is away the
 * connection is retried with exponential backoff (`reconnectDelay` doubling up to `maxReconnectDelay`,
 * with jitter) and messages wait; a full buffer drops its oldest message, counted in
 * `vigil_amqp_dropped_total{handler}`. The exchange (and `queue`, with its binding) is declared on every
 * connection, so whichever of publisher and subscriber starts first creates it. Messages are persistent
 * and `mandatory`: one no queue is bound for is logged (at most once a minute).
 */
export const amqpHandlerType = defineHandler({ type: 'amqp', options, create: (name, parsed, deps) => amqpHandler(name, parsed, deps) });

/** Counters since the handler was created. */
export interface AmqpHandlerStats {
  /** Messages the broker confirmed (without `confirm`: written to the channel). */
  readonly published: number;
  /** Messages dropped: the buffer was full, or `close` ran out of time. */
  readonly dropped: number;
  /** Messages waiting in the buffer (not yet sent, or sent and not yet confirmed). */
  readonly buffered: number;
  /** Connections made (1 after the first; each reconnect adds one). */
  readonly connections: number;
}

export interface AmqpHandler extends Handler {
  /** Buffers the outcome's message (results mode) or records the check's state (summary mode). */
  process(outcome: Outcome): void;
  checkRemoved(checkId: string): void;
  /** Waits up to `closeTimeout` for the buffer to be confirmed, drops the rest, closes the connection. Idempotent. */
  close(): Promise<void>;
  /** Whether a channel to the broker is open now. */
  readonly connected: boolean;
  readonly stats: AmqpHandlerStats;
}

export interface AmqpHandlerDeps extends HandlerDeps {
  /** Timers and `now` (the messages' times, the summary timer); default real time. */
  readonly clock?: Clock;
}

interface Entry {
  readonly seq: number;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly type: string;
  /** Sent on the current channel (and, with confirms, awaiting its confirm). */
  sent: boolean;
}

/** Least time between two warnings about the same kind of trouble (drops, unroutable messages). */
const WARN_INTERVAL_MS = 60_000;

/** Builds an amqp handler; `amqpHandlerType` is the way in from the config. */
export function amqpHandler(name: string, settings: AmqpHandlerOptions, deps: AmqpHandlerDeps): AmqpHandler {
  const { exchange, exchangeType, routingKey, mode, bufferSize, confirm } = settings;
  const clock = deps.clock ?? systemClock;
  const source = settings.source ?? hostname();
  const broker = redactUrl(settings.url);
  const logger = deps.logger.child({ handler: name, broker, exchange });

  const droppedTotal = counter(deps.registry, 'vigil_amqp_dropped_total', 'Messages an amqp handler dropped: its buffer was full while the broker was away, or it closed before they were confirmed.', ['handler']).labels(name);
  const publishedTotal = counter(deps.registry, 'vigil_amqp_published_total', 'Messages an amqp handler published (confirmed by the broker when confirms are on).', ['handler']).labels(name);
  const bufferedGauge = gauge(deps.registry, 'vigil_amqp_buffered', 'Messages an amqp handler holds: not yet sent, or not yet confirmed.', ['handler']).labels(name);
  droppedTotal.inc(0);
  publishedTotal.inc(0);
  bufferedGauge.set(0);

  /** Every message not yet confirmed, oldest first (a Map keeps insertion order and deletes in O(1)). */
  const buffer = new Map<number, Entry>();
  let nextSeq = 0;
  /** Entries not sent on the current channel; all of them lie ahead of `cursor`. */
  let unsent = 0;
  let cursor: IterableIterator<Entry> = buffer.values();
  let channel: Channel | ConfirmChannel | null = null;
  /** Counts channels, so that a late confirm callback of an old one is told apart. */
  let generation = 0;
  let waitingForDrain = false;
  let rewindTimer: unknown = null;
  let published = 0;
  let dropped = 0;
  let connections = 0;
  let lastDropWarning = -Infinity;
  let lastReturnWarning = -Infinity;
  let closing = false;
  let closed: Promise<void> | null = null;
  let onEmpty: (() => void) | null = null;

  const properties = (type: string): Options.Publish => ({
    contentType: MESSAGE_CONTENT_TYPE,
    type,
    appId: 'vigil',
    persistent: true,
    mandatory: true,
    timestamp: Math.floor(clock.now() / 1000),
  });

  const model: Promise<RecoveringChannelModel> = connect(settings.url, {
    ...socketOptions({ ca: settings.caFile, connectionName: `vigil ${source} amqp handler ${name}` }),
    recovery: { initialDelay: settings.reconnectDelay, maxDelay: settings.maxReconnectDelay, waitForConnect: false, setup },
  });
  void model.then(
    (recovering) => {
      recovering.on('connect', () => logger.info({ buffered: buffer.size }, 'connected to the broker'));
      recovering.on('disconnect', (err: Error) => logger.warn({ err, buffered: buffer.size }, 'lost the connection to the broker; reconnecting'));
      recovering.on('connect-failed', (err: Error) => logger.warn({ err, buffered: buffer.size }, `cannot connect to the broker: ${err.message}`));
      recovering.on('reconnect-scheduled', ({ attempt, delay }: { attempt: number; delay: number }) => logger.debug({ attempt, delayMs: delay }, 'reconnecting'));
      recovering.on('blocked', (reason: string) => logger.warn({ reason }, 'the broker blocked publishing (resource alarm); messages wait in the buffer'));
      recovering.on('unblocked', () => logger.info('the broker unblocked publishing'));
      // An 'error' event without a listener would throw; the close that follows reconnects.
      recovering.on('error', (err: Error) => logger.debug({ err }, 'connection error'));
    },
    (err: unknown) => logger.error({ err }, 'cannot start the broker connection'),
  );

  /** Runs on every new connection, before it counts as up: channel, exchange, queue, binding. */
  async function setup(connection: ChannelModel): Promise<void> {
    const ch = confirm ? await connection.createConfirmChannel() : await connection.createChannel();
    // A channel error (a declaration refused, …) closes the channel; the close listener below deals with it.
    ch.on('error', (err: Error) => logger.warn({ err }, `channel error: ${err.message}`));
    await ch.assertExchange(exchange, exchangeType, { durable: true });
    if (settings.queue !== undefined) {
      const deadLetter = { exchange: settings.deadLetterExchange, queue: settings.deadLetterQueue ?? defaultDeadLetterQueue(settings.queue) };
      await ch.assertQueue(settings.queue, { durable: true, arguments: queueArguments(deadLetter) });
      await ch.bindQueue(settings.queue, exchange, settings.binding);
    }
    const mine = ++generation;
    ch.on('close', () => {
      if (generation !== mine || channel === null) return;
      channel = null;
      rewind();
      // The channel went alone (the connection is up): close the connection so the recovery rebuilds both.
      if (!closing) connection.close().catch(() => undefined);
    });
    ch.on('drain', () => {
      if (generation !== mine) return;
      waitingForDrain = false;
      pump();
    });
    ch.on('return', (message: { fields: { routingKey: string } }) => {
      if (clock.now() - lastReturnWarning < WARN_INTERVAL_MS) return;
      lastReturnWarning = clock.now();
      logger.warn({ routingKey: message.fields.routingKey }, `no queue is bound to exchange ${exchange} for routing key ${message.fields.routingKey}: the message was not stored (warned at most once a minute)`);
    });
    channel = ch;
    connections++;
    waitingForDrain = false;
    rewind();
    pump();
  }

  /** Everything in the buffer goes out again, in order, on the current channel. */
  function rewind(): void {
    for (const entry of buffer.values()) entry.sent = false;
    unsent = buffer.size;
    cursor = buffer.values();
  }

  function enqueue(key: string, type: string, body: Buffer): void {
    if (closing) return drop(1, 'the handler is closing');
    while (buffer.size >= bufferSize) {
      const oldest = buffer.values().next().value as Entry;
      buffer.delete(oldest.seq);
      if (!oldest.sent) unsent--;
      drop(1, `the buffer holds ${bufferSize} messages`);
    }
    const entry: Entry = { seq: nextSeq++, routingKey: key, body, type, sent: false };
    buffer.set(entry.seq, entry);
    unsent++;
    bufferedGauge.set(buffer.size);
    pump();
  }

  function drop(count: number, why: string): void {
    dropped += count;
    droppedTotal.inc(count);
    if (clock.now() - lastDropWarning < WARN_INTERVAL_MS) return;
    lastDropWarning = clock.now();
    logger.warn({ dropped, buffered: buffer.size }, `amqp messages dropped: ${why} (warned at most once a minute; see vigil_amqp_dropped_total)`);
  }

  /** Sends what is unsent, in order, until the channel asks to wait for `drain`. */
  function pump(): void {
    const ch = channel;
    if (ch === null || waitingForDrain) return;
    const mine = generation;
    while (unsent > 0) {
      const step = cursor.next();
      if (step.done === true) {
        // Cannot happen while every unsent entry lies ahead of the cursor; recover rather than spin.
        rewind();
        continue;
      }
      const entry = step.value;
      if (entry.sent) continue;
      entry.sent = true;
      unsent--;
      let accepted: boolean;
      try {
        accepted = confirm
          ? (ch as ConfirmChannel).publish(exchange, entry.routingKey, entry.body, properties(entry.type), (err: unknown) => confirmed(entry, mine, err))
          : ch.publish(exchange, entry.routingKey, entry.body, properties(entry.type));
      } catch (err) {
        // The channel closed under us (its close event rewinds and reconnects).
        logger.debug({ err }, 'publish failed; the message waits for the next channel');
        rewind();
        return;
      }
      if (!confirm) settle(entry);
      if (!accepted) {
        waitingForDrain = true;
        return;
      }
    }
  }

  function confirmed(entry: Entry, mine: number, err: unknown): void {
    if (err === null || err === undefined) {
      settle(entry);
      return;
    }
    // A lost channel's unconfirmed messages are rewound by its close listener; a nack (the broker could
    // not take the message) is sent again after a pause, with everything after it.
    if (mine !== generation || !(err instanceof Error) || err.message !== 'message nacked' || rewindTimer !== null) return;
    logger.warn({ routingKey: entry.routingKey }, 'the broker refused a message (nack); sending again');
    rewindTimer = clock.setTimeout(() => {
      rewindTimer = null;
      if (mine !== generation || channel === null) return;
      rewind();
      pump();
    }, settings.reconnectDelay);
  }

  /** A message the broker has: out of the buffer. */
  function settle(entry: Entry): void {
    if (!buffer.delete(entry.seq)) return;
    // Confirmed after a rewind marked it for sending again: it need not go.
    if (!entry.sent) unsent--;
    published++;
    publishedTotal.inc();
    bufferedGauge.set(buffer.size);
    if (buffer.size === 0) onEmpty?.();
  }

  // Summary mode: each check's latest state.
  const latest = new Map<string, { readonly check: CheckSpec; readonly state: CheckState }>();
  let summaryTimer: unknown = null;
  function scheduleSummary(): void {
    summaryTimer = clock.setTimeout(() => {
      summaryTimer = null;
      publishSummary();
      if (!closing) scheduleSummary();
    }, settings.summaryInterval);
  }
  function publishSummary(): void {
    const checks: SummaryEntry[] = [];
    for (const { check, state } of latest.values()) {
      const entry = summaryEntry(check, state);
      if (entry !== null) checks.push(entry);
    }
    const message = { kind: 'summary' as const, source, timestamp: clock.now(), checks };
    enqueue(render(routingKey, { source }), MessageTypes.summary, encodeMessage(message));
  }
  if (mode === 'summary') scheduleSummary();

  async function closeNow(): Promise<void> {
    closing = true;
    if (summaryTimer !== null) clock.clearTimeout(summaryTimer);
    if (rewindTimer !== null) clock.clearTimeout(rewindTimer);
    if (buffer.size > 0) {
      let timer: unknown = null;
      await new Promise<void>((resolve) => {
        onEmpty = resolve;
        timer = clock.setTimeout(resolve, settings.closeTimeout);
      });
      clock.clearTimeout(timer);
      onEmpty = null;
    }
    if (buffer.size > 0) {
      const left = buffer.size;
      buffer.clear();
      unsent = 0;
      bufferedGauge.set(0);
      lastDropWarning = -Infinity;
      drop(left, `the handler closed before the broker confirmed them (closeTimeout ${settings.closeTimeout}ms)`);
    }
    channel = null;
    try {
      await (await model).close();
    } catch (err) {
      logger.debug({ err }, 'closing the broker connection failed');
    }
  }

  return {
    name,
    process(outcome) {
      const { check, result, state } = outcome;
      if (mode === 'summary') {
        latest.set(check.id, { check, state });
        return;
      }
      const key = render(routingKey, { check: check.id, command: check.command, state: result.state, source });
      enqueue(key, MessageTypes.result, encodeMessage(resultMessage(source, check, result, state, clock.now())));
    },
    checkRemoved(checkId) {
      latest.delete(checkId);
    },
    close() {
      closed ??= closeNow();
      return closed;
    },
    get connected() {
      return channel !== null;
    },
    get stats() {
      return { published, dropped, buffered: buffer.size, connections };
    },
  };
}

function render(template: RoutingKeyTemplate, values: Readonly<Record<string, string>>): string {
  let key = '';
  for (const part of template) key += typeof part === 'string' ? part : (values[part.field] ?? '');
  return key;
}

