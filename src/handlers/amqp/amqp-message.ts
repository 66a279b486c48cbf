import { readFileSync } from 'node:fs';
import type { SocketOptions } from 'amqplib';
import { z } from 'zod';
import type { CheckSpec, CheckState, StateType } from '../../checks/check.js';
import { MetricKinds } from '../../results/metric.js';
import { States, type Result, type State } from '../../results/result.js';
import { duration, nonEmptyString } from '../../validation/schema-types.js';
import { formatIssue, fromZodError } from '../../validation/issues.js';

/**
 * The AMQP wire contract between a vigil that publishes (the `amqp` handler) and one that subscribes
 * (`server/amqp-ingest.ts`): the JSON messages, their parser, the queue arguments both sides declare
 * the results queue with (so whichever starts first creates it as the other expects), and the
 * connection settings both take from the config.
 *
 * Times are epoch milliseconds, as in the webhook payload.
 */

/** `content_type` of every message. */
export const MESSAGE_CONTENT_TYPE = 'application/json';
/** AMQP `type` property of each kind of message. */
export const MessageTypes = { result: 'vigil.result', summary: 'vigil.summary' } as const;
/** A body longer than this (bytes) is not a vigil message: it is rejected unread. */
export const MAX_MESSAGE_BYTES = 1_048_576;

/** One check's Result as it ran, with the check's state after it (`kind: 'result'`). */
export interface ResultMessage {
  readonly kind: 'result';
  /** Who sent it: the publishing vigil's `source` option (default its host name). */
  readonly source: string;
  readonly check: { readonly id: string; readonly command: string; readonly metadata: Readonly<Record<string, unknown>> };
  readonly result: Result;
  /** The check's state after this Result: its confirmed state, and whether a change is being confirmed. */
  readonly state: { readonly hardState: State; readonly stateType: StateType };
  /** When the publisher built the message. */
  readonly sentAt: number;
}

/** One check in a summary: where it stands now. */
export interface SummaryEntry {
  readonly id: string;
  readonly command: string;
  /** The check's confirmed (HARD) state. */
  readonly state: State;
  /** `soft` while a change away from `state` is being confirmed. */
  readonly stateType: StateType;
  /** When the check entered `state`; `null` when it has been in it since vigil began watching. */
  readonly since: number | null;
  /** When the last Result started. */
  readonly lastResultAt: number;
  /** The last Result's reason and message. */
  readonly reason: string;
  readonly message: string;
}

/** Every check the publisher knows, periodically (`kind: 'summary'`); `timestamp` is fresh every time. */
export interface SummaryMessage {
  readonly kind: 'summary';
  readonly source: string;
  readonly timestamp: number;
  readonly checks: readonly SummaryEntry[];
}

export type AmqpMessage = ResultMessage | SummaryMessage;

/** The result message of one outcome. */
export function resultMessage(source: string, check: CheckSpec, result: Result, state: CheckState, sentAt: number): ResultMessage {
  return {
    kind: 'result',
    source,
    check: { id: check.id, command: check.command, metadata: check.metadata },
    result: finiteMetrics(result),
    state: { hardState: state.hardState, stateType: state.stateType },
    sentAt,
  };
}

/** A check's summary entry; `null` while it has no Result yet. */
export function summaryEntry(check: CheckSpec, state: CheckState): SummaryEntry | null {
  const last = state.lastResult;
  if (last === null) return null;
  return {
    id: check.id,
    command: check.command,
    state: state.hardState,
    stateType: state.stateType,
    since: state.lastHardChangeAt,
    lastResultAt: last.startedAt,
    reason: last.reason,
    message: last.message,
  };
}

/** The JSON bytes of a message. */
export function encodeMessage(message: AmqpMessage): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}

// JSON has no NaN or Infinity (they would arrive as null and make the whole message malformed).
function finiteMetrics(result: Result): Result {
  if (result.metrics.every((metric) => Number.isFinite(metric.value))) return result;
  return { ...result, metrics: result.metrics.filter((metric) => Number.isFinite(metric.value)) };
}

// Unknown keys are dropped rather than refused: a newer publisher may send more than this one knows.
const finite = (what: string) => z.number({ error: `expected ${what}` });
const timestamp = z.number({ error: 'expected epoch milliseconds (a number)' }).nonnegative({ error: 'expected epoch milliseconds (a number ≥ 0)' });
const text = (what: string) => z.string({ error: `expected ${what} (a string)` });
const STATE_ERROR = `expected one of ${States.join(', ')}`;
const state = z.enum(States, { error: STATE_ERROR });
const stateType = z.enum(['soft', 'hard'], { error: 'expected soft or hard' });

const metric = z.object(
  {
    name: nonEmptyString('a metric name'),
    value: finite('a finite number'),
    unit: text('a unit'),
    kind: z.enum(MetricKinds, { error: `expected ${MetricKinds.join(' or ')}` }),
    warn: finite('a finite number').optional(),
    crit: finite('a finite number').optional(),
  },
  { error: 'expected a metric { name, value, unit, kind }' },
);

const result = z.object(
  {
    state,
    reason: nonEmptyString('a reason code'),
    message: text('a message'),
    metrics: z.array(metric, { error: 'expected a list of metrics' }),
    startedAt: timestamp,
    durationMs: z.number({ error: 'expected milliseconds (a number ≥ 0)' }).nonnegative({ error: 'expected milliseconds (a number ≥ 0)' }),
  },
  { error: 'expected a result { state, reason, message, metrics, startedAt, durationMs }' },
);

const source = nonEmptyString('the sender (a non-empty string)').max(200, { error: 'expected at most 200 characters' });
const checkId = nonEmptyString('a check id').max(200, { error: 'expected a check id of at most 200 characters' });

const resultSchema = z.object({
  kind: z.literal('result'),
  source,
  check: z.object(
    {
      id: checkId,
      command: nonEmptyString('a command name'),
      metadata: z.record(z.string(), z.unknown(), { error: 'expected a mapping' }).default({}),
    },
    { error: 'expected a check { id, command, metadata }' },
  ),
  result,
  state: z.object({ hardState: state, stateType }, { error: 'expected a state { hardState, stateType }' }),
  sentAt: timestamp,
});

const summarySchema = z.object({
  kind: z.literal('summary'),
  source,
  timestamp,
  checks: z.array(
    z.object(
      {
        id: checkId,
        command: nonEmptyString('a command name'),
        state,
        stateType,
        since: timestamp.nullable(),
        lastResultAt: timestamp,
        reason: nonEmptyString('a reason code'),
        message: text('a message'),
      },
      { error: 'expected a check { id, command, state, stateType, since, lastResultAt, reason, message }' },
    ),
    { error: 'expected a list of checks' },
  ),
});

/** A parsed message, or what is wrong with the body (one line, for the log and the dead-letter reason). */
export type ParsedMessage = { readonly ok: true; readonly message: AmqpMessage } | { readonly ok: false; readonly problem: string };

/** At most this many of a body's problems are named. */
const MAX_PROBLEMS = 3;

/** Reads a message body: JSON, then the shape of its `kind`. Never throws. */
export function parseAmqpMessage(body: Buffer): ParsedMessage {
  if (body.length > MAX_MESSAGE_BYTES) return { ok: false, problem: `expected a body of at most ${MAX_MESSAGE_BYTES} bytes, got ${body.length}` };
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch (error) {
    return { ok: false, problem: `expected JSON, got ${preview(body)} (${(error as Error).message})` };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { ok: false, problem: `expected a JSON object, got ${Array.isArray(data) ? 'an array' : preview(body)}` };
  }
  const kind = (data as { kind?: unknown }).kind;
  const schema = kind === 'result' ? resultSchema : kind === 'summary' ? summarySchema : undefined;
  if (schema === undefined) return { ok: false, problem: `kind: expected "result" or "summary", got ${kind === undefined ? 'nothing' : JSON.stringify(kind)}` };
  const parsed = schema.safeParse(data);
  if (parsed.success) return { ok: true, message: parsed.data as AmqpMessage };
  const issues = fromZodError(parsed.error, data);
  const named = issues.slice(0, MAX_PROBLEMS).map(formatIssue).join('; ');
  return { ok: false, problem: issues.length > MAX_PROBLEMS ? `${named}; and ${issues.length - MAX_PROBLEMS} more` : named };
}

function preview(body: Buffer): string {
  const text = body.subarray(0, 61).toString('utf8');
  return text.length > 60 ? `${JSON.stringify(text.slice(0, 60))}…` : JSON.stringify(text);
}

// ---------------------------------------------------------------------------------------------------------
// Topology

/** Where an ingest queue's rejected messages go. */
export interface DeadLetter {
  /** The exchange; `''` is the default exchange, which routes straight to the queue by its name. */
  readonly exchange: string;
  readonly queue: string;
}

/** The dead-letter queue of a results queue when none is configured. */
export function defaultDeadLetterQueue(queue: string): string {
  return `${queue}.dead-letter`;
}

/**
 * The arguments the results queue is declared with, by the publisher and by the ingest alike: RabbitMQ
 * refuses a second declaration whose arguments differ (406 PRECONDITION_FAILED).
 */
export function queueArguments(deadLetter: DeadLetter): Record<string, string> {
  return { 'x-dead-letter-exchange': deadLetter.exchange, 'x-dead-letter-routing-key': deadLetter.queue };
}

// ---------------------------------------------------------------------------------------------------------
// Connection settings

const URL_ERROR = 'expected an amqp:// or amqps:// URL (amqp://user:password@host:5672/vhost)';

function isAmqpUrl(value: string): boolean {
  try {
    const { protocol, hostname } = new URL(value);
    return (protocol === 'amqp:' || protocol === 'amqps:') && hostname !== '';
  } catch {
    return false;
  }
}

/** The broker URL: `amqp://` or `amqps://`, credentials and vhost in it (`${ENV}` works there). */
export const amqpUrl = () => z.string({ error: URL_ERROR }).refine(isAmqpUrl, { error: URL_ERROR });

/** A CA certificate file (PEM), read at load time so a missing file is a config error. */
export const caFile = () =>
  nonEmptyString('a path to a CA certificate file (PEM)').transform((path, ctx) => {
    try {
      return { path, pem: readFileSync(path) };
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: `expected a readable CA certificate file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, input: path });
      return z.NEVER;
    }
  });

/** Reconnect backoff: the first delay, doubled (with jitter) up to the second. */
export const reconnectDelays = {
  /** Delay before the first reconnect; default 500 ms. */
  reconnectDelay: duration(10).prefault('500ms'),
  /** Longest delay between reconnects; default 30 s. */
  maxReconnectDelay: duration(10).prefault('30s'),
};

/** The broker URL as it may be logged: without its password. */
export function redactUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

/** What `connect` needs besides the URL: TLS trust, the connection's name in the management UI, backoff. */
export function socketOptions(settings: { readonly ca?: { readonly pem: Buffer } | undefined; readonly connectionName: string }): SocketOptions {
  const options: SocketOptions = { clientProperties: { connection_name: settings.connectionName } };
  if (settings.ca !== undefined) options.ca = [settings.ca.pem];
  return options;
}
