import { hostname } from 'node:os';
import { connect, type Channel, type ChannelModel, type ConsumeMessage, type RecoveringChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import type { Check, CheckSpec } from '../checks/check.js';
import type { PingReceiver } from '../commands/command.js';
import { PushMetrics } from '../commands/push.js';
import {
  amqpUrl,
  caFile,
  defaultDeadLetterQueue,
  parseAmqpMessage,
  queueArguments,
  reconnectDelays,
  redactUrl,
  socketOptions,
  type ResultMessage,
  type SummaryMessage,
} from '../handlers/amqp/amqp-message.js';
import { ExchangeTypes } from '../handlers/amqp/amqp-handler.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import type { Metric } from '../results/metric.js';
import type { CommandOutcome, State } from '../results/result.js';
import { systemClock, type Clock } from '../core/clock.js';
import { duration, integer, nonEmptyString } from '../validation/schema-types.js';
import type { Server } from '../server/server.js';

const ID_PLACEHOLDERS = ['check', 'source'];
const PLACEHOLDER = /\{([^{}]*)\}/g;

/**
 * The ingest's settings as the config gives them (`ingest: { amqp: … }`): parse with this schema, then
 * pass the value with the collaborators to `startAmqpIngest`.
 */
export const amqpIngestSettings = z
  .strictObject({
    /** The broker: `amqp://user:password@host:5672/vhost`, or `amqps://` for TLS. */
    url: amqpUrl(),
    /** CA certificate (PEM) that signed the broker's certificate, for `amqps://`; default the system's. */
    caFile: caFile().optional(),
    /** The queue consumed, declared (durable) if missing; default `vigil-results`. */
    queue: nonEmptyString('a queue name').default('vigil-results'),
    /** Exchange the queue is bound to, declared (durable) if missing; `''` binds nothing. Default `vigil`. */
    exchange: z.string({ error: 'expected an exchange name (a string; empty to bind nothing)' }).default('vigil'),
    /** Type the exchange is declared with; default `topic` (as the amqp handler's). */
    exchangeType: z.enum(ExchangeTypes, { error: `expected one of ${ExchangeTypes.join(', ')}` }).default('topic'),
    /** Binding key of the queue on the exchange; default `#` (everything). */
    bindingKey: z.string({ error: 'expected a binding key (a string)' }).default('#'),
    /** Where rejected (malformed) messages go: an exchange, `''` (default) for the default exchange. */
    deadLetterExchange: z.string({ error: 'expected an exchange name (a string; empty for the default exchange)' }).default(''),
    /** The dead-letter queue, declared (durable) if missing; default `<queue>.dead-letter`. */
    deadLetterQueue: nonEmptyString('a queue name').optional(),
    /** Create a check (with `makeCheck`) for results of checks not known here; default false (they are dropped). */
    createUnknown: z.boolean({ error: 'expected true or false' }).default(false),
    /** The local check id of a message's check: `{check}` (its id there) and `{source}` filled in; default `{check}`. */
    checkId: nonEmptyString('a check id template')
      .default('{check}')
      .superRefine((template, ctx) => {
        for (const match of template.matchAll(PLACEHOLDER)) {
          if (!ID_PLACEHOLDERS.includes(match[1] as string)) ctx.addIssue({ code: 'custom', message: `expected placeholders {check} and {source}, got {${match[1]}}` });
        }
      }),
    /** Messages delivered and not yet acknowledged at once; default 100. */
    prefetch: integer(1, 65_535).default(100),
    /** How long `stop` waits for messages being applied; default 5 s. */
    stopTimeout: duration().prefault('5s'),
    ...reconnectDelays,
  })
  .superRefine((value, ctx) => {
    if (value.maxReconnectDelay < value.reconnectDelay) {
      ctx.addIssue({ code: 'custom', path: ['maxReconnectDelay'], message: `expected at least reconnectDelay (${value.reconnectDelay}ms)` });
    }
  })
  .transform((value) => ({ ...value, deadLetterQueue: value.deadLetterQueue ?? defaultDeadLetterQueue(value.queue) }));

/** `amqpIngestSettings` after parsing: durations in ms, the CA file read, the dead-letter queue named. */
export type AmqpIngestSettings = z.output<typeof amqpIngestSettings>;

/** What a message says about the check it is about: what `makeCheck` builds a local check from. */
export interface IngestedCheck {
  /** The publishing vigil (`source`). */
  readonly source: string;
  /** The check's id at the publisher. */
  readonly id: string;
  readonly command: string;
  /** The check's metadata at the publisher; `{}` from a summary. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

export interface AmqpIngestOptions extends AmqpIngestSettings {
  /** Applies each result as a passive result (`submit`). */
  readonly server: Pick<Server, 'submit' | 'command'>;
  /** Where the matching checks are found, created and rescheduled. */
  readonly checks: CheckRegistry;
  /**
   * With `createUnknown`, the spec of a check to create for `id` (a `push` check, so that silence is
   * noticed); `undefined` to create none (the message is dropped).
   */
  readonly makeCheck?: (id: string, seen: IngestedCheck) => CheckSpec | undefined;
  readonly logger: Logger;
  /** Where `vigil_amqp_ingest_messages_total` goes; none when absent. */
  readonly registry?: Registry;
  /** Consumer tag, shown in the broker's management UI; default `vigil-ingest-<host>-<pid>`. */
  readonly consumerTag?: string;
  /** `now` for ping times and reschedules; default real time. */
  readonly clock?: Clock;
}

/** Counts since start, by what became of each message. */
export interface AmqpIngestStats {
  /** Messages delivered. */
  readonly received: number;
  /** Results (a summary counts each check it carried) applied to a check. */
  readonly applied: number;
  /** Results not newer than the last one applied to their check (a redelivery after a lost ack): acknowledged and skipped. */
  readonly duplicates: number;
  /** Results for checks not known here (and not created): acknowledged and dropped. */
  readonly unknown: number;
  /** Malformed messages, rejected to the dead-letter queue. */
  readonly malformed: number;
  /** Messages whose applying failed unexpectedly, rejected to the dead-letter queue. */
  readonly failed: number;
  /** Checks created for results of unknown checks. */
  readonly created: number;
  /** Times the consumer started (1 after the first connection; each reconnect adds one). */
  readonly connections: number;
}

export interface AmqpIngest extends AsyncDisposable {
  /** Whether the consumer is up now. */
  readonly consuming: boolean;
  readonly stats: AmqpIngestStats;
  /** Stops consuming, waits up to `stopTimeout` for messages being applied, closes the connection. Idempotent. */
  stop(): Promise<void>;
}

/** At most this many unknown check ids are warned about by name; later ones go to debug. */
const MAX_WARNED_IDS = 1_000;
const PUSH_METRIC_NAMES: ReadonlySet<string> = new Set(Object.values(PushMetrics));

type Disposition = 'applied' | 'duplicate' | 'unknown';

/**
 * Consumes the results another vigil publishes through the `amqp` handler and applies each to the
 * matching check here, as a passive result (`server.submit`), so that its state machine, incidents and
 * handlers work as if the check had run here.
 *
 * - A result message applies its Result to the check `checkId` names; a summary applies each entry whose
 *   last result is newer than what its check last got (its confirmed state, reason and message).
 * - A message is acknowledged only once its results are applied. Results not newer than the last one
 *   applied to the check (a message delivered again after a lost acknowledgement) are skipped.
 * - Unknown checks: with `createUnknown`, the check `makeCheck` builds is added first; otherwise the
 *   message is acknowledged and dropped (logged once per check id).
 * - `push` checks (the kind `makeCheck` should build) get the result with the push timestamps, as a
 *   success ping (ok) or a failure ping (not ok) at the time the result finished; and each message moves
 *   the check's own run to `period + grace` from now, so that its run (which judges the pings) only
 *   happens when the publisher has gone silent, then reports `heartbeat-missed`.
 * - A malformed message (not JSON, not the shape of `handlers/amqp-message.ts`) is rejected
 *   (`nack`, not requeued) to the dead-letter queue, with a warning naming what was wrong; the consumer
 *   goes on.
 * - The queue (with its dead-letter arguments), the dead-letter queue and, when `exchange` is set, the
 *   exchange and binding are declared on every connection. A lost connection is retried with backoff.
 */
export function startAmqpIngest(options: AmqpIngestOptions): AmqpIngest {
  const { server, checks, makeCheck, queue, deadLetterQueue, deadLetterExchange, createUnknown } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger.child({ component: 'amqp-ingest', queue, broker: redactUrl(options.url) });
  const consumerTag = options.consumerTag ?? `vigil-ingest-${hostname()}-${process.pid}`;
  const idTemplate = options.checkId;
  const idIsCheck = idTemplate === '{check}';

  const series = ingestCounter(options.registry);
  const count = (result: 'applied' | 'duplicate' | 'unknown-check' | 'malformed' | 'failed', by = 1): void => {
    series?.labels(queue, result).inc(by);
  };
  let received = 0;
  let applied = 0;
  let duplicates = 0;
  let unknown = 0;
  let malformed = 0;
  let failed = 0;
  let created = 0;
  let connections = 0;

  /** Per local check id, the newest result applied: older ones are duplicates. */
  const newest = new Map<string, { readonly startedAt: number; readonly sentAt: number }>();
  const warnedUnknown = new Set<string>();
  const inFlight = new Set<Promise<void>>();
  let channel: Channel | null = null;
  let stopping = false;
  let stopped: Promise<void> | null = null;

  const model: Promise<RecoveringChannelModel> = connect(options.url, {
    ...socketOptions({ ca: options.caFile, connectionName: `vigil ${hostname()} amqp ingest ${queue}` }),
    recovery: { initialDelay: options.reconnectDelay, maxDelay: options.maxReconnectDelay, waitForConnect: false, setup },
  });
  void model.then(
    (recovering) => {
      recovering.on('connect', () => logger.info({ consumerTag }, `consuming queue ${queue}`));
      recovering.on('disconnect', (err: Error) => logger.warn({ err }, 'lost the connection to the broker; reconnecting'));
      recovering.on('connect-failed', (err: Error) => logger.warn({ err }, `cannot connect to the broker: ${err.message}`));
      recovering.on('reconnect-scheduled', ({ attempt, delay }: { attempt: number; delay: number }) => logger.debug({ attempt, delayMs: delay }, 'reconnecting'));
      // An 'error' event without a listener would throw; the close that follows reconnects.
      recovering.on('error', (err: Error) => logger.debug({ err }, 'connection error'));
    },
    (err: unknown) => logger.error({ err }, 'cannot start the broker connection'),
  );

  /** Runs on every new connection, before it counts as up: declarations, then the consumer. */
  async function setup(connection: ChannelModel): Promise<void> {
    const ch = await connection.createChannel();
    ch.on('error', (err: Error) => logger.warn({ err }, `channel error: ${err.message}`));
    await ch.prefetch(options.prefetch);
    if (deadLetterExchange !== '') await ch.assertExchange(deadLetterExchange, 'direct', { durable: true });
    await ch.assertQueue(deadLetterQueue, { durable: true });
    if (deadLetterExchange !== '') await ch.bindQueue(deadLetterQueue, deadLetterExchange, deadLetterQueue);
    await ch.assertQueue(queue, { durable: true, arguments: queueArguments({ exchange: deadLetterExchange, queue: deadLetterQueue }) });
    if (options.exchange !== '') {
      await ch.assertExchange(options.exchange, options.exchangeType, { durable: true });
      await ch.bindQueue(queue, options.exchange, options.bindingKey);
    }
    ch.on('close', () => {
      if (channel !== ch) return;
      channel = null;
      // The channel went alone (the connection is up): close the connection so the recovery rebuilds both.
      if (!stopping) connection.close().catch(() => undefined);
    });
    await ch.consume(
      queue,
      (message) => {
        if (message !== null) return deliver(ch, message);
        // The broker cancelled the consumer (the queue was deleted): a new connection declares it again.
        logger.warn(`the broker cancelled the consumer of queue ${queue} (deleted?); reconnecting`);
        if (!stopping) connection.close().catch(() => undefined);
      },
      { noAck: false, consumerTag },
    );
    channel = ch;
    connections++;
  }

  function deliver(ch: Channel, message: ConsumeMessage): void {
    received++;
    const parsed = parseAmqpMessage(message.content);
    if (!parsed.ok) {
      malformed++;
      count('malformed');
      logger.warn(
        { deadLetterQueue, routingKey: message.fields.routingKey, exchange: message.fields.exchange, problem: parsed.problem },
        `malformed message rejected to dead-letter queue ${deadLetterQueue}: ${parsed.problem}`,
      );
      settle(ch, message, false);
      return;
    }
    const body = parsed.message;
    // Synchronous up to each `submit`: messages of one check are applied in the order they arrived.
    const work = body.kind === 'result' ? applyResult(body) : applySummary(body);
    const tracked = work.then(
      () => settle(ch, message, true),
      (err: unknown) => {
        failed++;
        count('failed');
        logger.error({ err, routingKey: message.fields.routingKey }, `applying an ingested message failed; rejected to dead-letter queue ${deadLetterQueue}`);
        settle(ch, message, false);
      },
    );
    inFlight.add(tracked);
    void tracked.finally(() => inFlight.delete(tracked));
  }

  /** Acknowledges, or rejects without requeueing (to the dead-letter queue). */
  function settle(ch: Channel, message: ConsumeMessage, ok: boolean): void {
    try {
      if (ok) ch.ack(message);
      else ch.nack(message, false, false);
    } catch (err) {
      // The channel closed meanwhile: the broker delivers the message again (then skipped as a duplicate).
      logger.debug({ err }, 'cannot settle a message: its channel closed');
    }
  }

  async function applyResult(message: ResultMessage): Promise<void> {
    const { result, source } = message;
    const id = localId(source, message.check.id);
    const disposition = apply(id, { source, ...message.check }, result.startedAt, message.sentAt, {
      outcome: { state: result.state, reason: result.reason, message: result.message, metrics: result.metrics },
      finishedAt: result.startedAt + result.durationMs,
      durationMs: result.durationMs,
    });
    tally(typeof disposition === 'string' ? disposition : await disposition);
  }

  async function applySummary(message: SummaryMessage): Promise<void> {
    const { source } = message;
    const pending: Promise<Disposition>[] = [];
    for (const entry of message.checks) {
      const id = localId(source, entry.id);
      const disposition = apply(id, { source, id: entry.id, command: entry.command, metadata: {} }, entry.lastResultAt, Number.POSITIVE_INFINITY, {
        outcome: { state: entry.state, reason: entry.reason, message: entry.message },
        finishedAt: entry.lastResultAt,
        durationMs: 0,
      });
      if (typeof disposition === 'string') tally(disposition);
      else pending.push(disposition);
    }
    for (const disposition of await Promise.all(pending)) tally(disposition);
  }

  function tally(disposition: Disposition): void {
    if (disposition === 'applied') applied++;
    else if (disposition === 'duplicate') duplicates++;
    else unknown++;
    count(disposition === 'unknown' ? 'unknown-check' : disposition);
  }

  /**
   * Applies one result to the local check `id`. Synchronous until `submit` is called; returns what became
   * of it, as a promise when it was submitted. `sentAt` breaks ties between results started in the same
   * millisecond (a summary's entries pass Infinity: never newer than an equal start).
   */
  function apply(
    id: string,
    seen: IngestedCheck,
    startedAt: number,
    sentAt: number,
    arrived: { readonly outcome: CommandOutcome; readonly finishedAt: number; readonly durationMs: number },
  ): Disposition | Promise<Disposition> {
    const check = checks.get(id) ?? create(id, seen);
    if (check === undefined) return 'unknown';
    const last = newest.get(id);
    if (last !== undefined && (startedAt < last.startedAt || (startedAt === last.startedAt && (sentAt <= last.sentAt || sentAt === Number.POSITIVE_INFINITY)))) return 'duplicate';
    newest.set(id, { startedAt, sentAt });
    const now = clock.now();
    const pings = server.command(check.spec.command)?.pings;
    const outcome = pings === undefined ? arrived.outcome : asPing(pings, check, arrived.outcome, Math.min(now, arrived.finishedAt));
    const submitted = server.submit(id, outcome, { startedAt, durationMs: arrived.durationMs });
    // A ping-fed check's own run judges silence: not before the next result is overdue.
    if (pings !== undefined) checks.reschedule(id, now + pings.quietAfterMs(check.spec.attributes));
    return submitted.then(() => 'applied' as const);
  }

  function create(id: string, seen: IngestedCheck): Check | undefined {
    const spec = createUnknown ? makeCheck?.(id, seen) : undefined;
    if (spec === undefined) {
      const why = createUnknown ? 'makeCheck made no check for it' : 'createUnknown is off';
      if (warnedUnknown.size < MAX_WARNED_IDS && !warnedUnknown.has(id)) {
        warnedUnknown.add(id);
        logger.warn({ checkId: id, source: seen.source }, `results for unknown check ${id} are dropped (${why}); warned once per check`);
      } else {
        logger.debug({ checkId: id, source: seen.source }, `result for unknown check ${id} dropped`);
      }
      return undefined;
    }
    if (spec.id !== id) throw new Error(`Expected makeCheck to make a check with id "${id}", got "${spec.id}"`);
    const check = checks.add(spec);
    created++;
    warnedUnknown.delete(id);
    logger.info({ checkId: id, source: seen.source, command: spec.command }, `created check ${id} for results from ${seen.source}`);
    return check;
  }

  function localId(source: string, checkId: string): string {
    if (idIsCheck) return checkId;
    return idTemplate.replace(PLACEHOLDER, (_match, field: string) => (field === 'source' ? source : checkId));
  }

  async function stopNow(): Promise<void> {
    stopping = true;
    const ch = channel;
    channel = null;
    if (ch !== null) {
      try {
        await ch.cancel(consumerTag);
      } catch (err) {
        logger.debug({ err }, 'cancelling the consumer failed');
      }
    }
    if (inFlight.size > 0) {
      let timer: unknown = null;
      const timedOut = await Promise.race([
        Promise.all(inFlight).then(() => false),
        new Promise<boolean>((resolve) => {
          timer = clock.setTimeout(() => resolve(true), options.stopTimeout);
        }),
      ]);
      clock.clearTimeout(timer);
      // Unacknowledged messages go back to the queue when the connection closes.
      if (timedOut) logger.warn({ inFlight: inFlight.size }, 'stopping: messages still being applied are left to the broker to deliver again');
    }
    try {
      await (await model).close();
    } catch (err) {
      logger.debug({ err }, 'closing the broker connection failed');
    }
    logger.info({ received, applied }, 'amqp ingest stopped');
  }

  return {
    get consuming() {
      return channel !== null;
    },
    get stats() {
      return { received, applied, duplicates, unknown, malformed, failed, created, connections };
    },
    stop() {
      stopped ??= stopNow();
      return stopped;
    },
    [Symbol.asyncDispose]() {
      return this.stop();
    },
  };
}

/**
 * The result as a ping-fed check (`push`) takes it: the state, reason and message of the result, its
 * metrics, and what a success ping (ok) or a failure ping (not ok) at `at` adds, so that the check's
 * own run keeps the state (a failure stands until a success) and judges the silence from the last success.
 */
function asPing(pings: PingReceiver<unknown>, check: Check, outcome: CommandOutcome, at: number): CommandOutcome {
  const state: State = outcome.state;
  const ping = pings.apply(check.spec.attributes, check.state.lastResult, { kind: state === 'ok' ? 'success' : 'fail', at });
  const own = (outcome.metrics ?? []).filter((metric) => !PUSH_METRIC_NAMES.has(metric.name));
  const metrics: Metric[] = [...own, ...(ping.metrics ?? [])];
  return { state, reason: outcome.reason, message: outcome.message, metrics };
}

function ingestCounter(registry: Registry | undefined): Counter | undefined {
  if (registry === undefined) return undefined;
  const name = 'vigil_amqp_ingest_messages_total';
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  if (existing !== undefined) throw new Error(`Expected metric \`${name}\` on the registry to be a counter, got another kind of metric`);
  return new Counter({
    name,
    help: 'Ingested results by what became of them: applied, duplicate (skipped), unknown-check (dropped), malformed or failed (dead-lettered).',
    labelNames: ['queue', 'result'],
    registers: [registry],
  });
}
