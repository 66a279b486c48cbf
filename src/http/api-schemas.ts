import { z } from 'zod';
import { checkSchema } from '../config/config.js';

/**
 * JSON Schemas of the HTTP API (`/api/v1`): fastify validates requests and serializes answers with them,
 * and @fastify/swagger turns them into `/openapi.json`. Shared schemas are referenced by `$id` (`Check#`).
 * Times in answers are ISO 8601 strings; durations are milliseconds.
 */

/** Largest request body the API accepts, in bytes (64 KiB). */
export const API_BODY_LIMIT_BYTES = 64 * 1024;

/** Largest `limit` of `GET /checks/:id/results`. */
export const MAX_RESULTS_LIMIT = 1_000;

/** What a check id is, also the message when one does not match. */
const CHECK_ID = 'a check id: at most 200 letters, digits and _ . : - starting with a letter or digit';

const isoTime = { type: 'string', format: 'date-time' } as const;
const nullableIsoTime = { type: ['string', 'null'], format: 'date-time' } as const;
const state = { type: 'string', enum: ['ok', 'warn', 'crit', 'unknown'] } as const;

/** Path parameters of the `/checks/:id…` routes. */
export const checkIdParams = {
  type: 'object',
  required: ['id'],
  // `/` too: a heartbeat-dir's heartbeats are `<parent>/<file>` (sent encoded, `workers%2Fapi`).
  properties: { id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$', maxLength: 200, description: CHECK_ID } },
} as const;

/** Path parameters of `POST /incidents/:id/ack`. */
export const incidentIdParams = {
  type: 'object',
  required: ['id'],
  properties: {
    id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$', maxLength: 256, description: 'an incident id: <checkId>:<openedAt epoch ms>' },
  },
} as const;

/** Query of `GET /checks/:id/results`. */
export const resultsQuery = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_RESULTS_LIMIT, description: `an integer 1–${MAX_RESULTS_LIMIT}: how many results, newest first (default: all that are kept)` },
  },
} as const;

/** Query of `GET /incidents`. */
export const incidentsQuery = {
  type: 'object',
  properties: { state: { type: 'string', enum: ['open', 'resolved', 'all'], default: 'open', description: 'open, resolved or all' } },
} as const;

/** The shared schemas, each registered with `addSchema` and referenced as `<$id>#`. */
export const sharedSchemas = [
  {
    $id: 'Problem',
    type: 'object',
    description: 'One problem with a check entry',
    required: ['path', 'message'],
    properties: {
      path: { type: 'string', description: 'Where in the entry, e.g. `attributes.port`; empty for the entry itself' },
      message: { type: 'string', description: 'What was expected and what was found' },
    },
  },
  {
    $id: 'Error',
    type: 'object',
    description: 'Every error answer. For 422 `error` is a one-line summary and `details` lists each problem.',
    required: ['error', 'details'],
    properties: {
      error: { type: 'string', description: 'The HTTP status in words (`not found`, …); for 422 a one-line summary' },
      details: {
        description: 'What went wrong in one line; for 422 the list of problems',
        anyOf: [{ type: 'string' }, { type: 'array', items: { $ref: 'Problem#' } }],
      },
    },
  },
  {
    $id: 'Metric',
    type: 'object',
    required: ['name', 'value', 'unit', 'kind'],
    properties: {
      name: { type: 'string' },
      value: { type: 'number' },
      unit: { type: 'string', description: '`ms`, `s`, `%`, `B`, `c` (count), …; empty when unitless' },
      kind: { type: 'string', enum: ['gauge', 'counter'] },
      warn: { type: 'number', description: 'The warn threshold, when the command has one' },
      crit: { type: 'number', description: 'The crit threshold, when the command has one' },
    },
  },
  {
    $id: 'Result',
    type: 'object',
    description: 'The outcome of one run',
    required: ['state', 'reason', 'message', 'metrics', 'startedAt', 'durationMs'],
    properties: {
      state,
      reason: { type: 'string', description: 'Machine-readable cause, kebab-case' },
      message: { type: 'string' },
      metrics: { type: 'array', items: { $ref: 'Metric#' } },
      startedAt: isoTime,
      durationMs: { type: 'number' },
    },
  },
  {
    $id: 'Incident',
    type: 'object',
    description: 'An outage of one check',
    required: ['id', 'checkId', 'openedAt', 'updatedAt', 'resolvedAt', 'state', 'worstState', 'reason', 'acknowledgedAt', 'externalId'],
    properties: {
      id: { type: 'string', description: '<checkId>:<openedAt epoch ms>' },
      checkId: { type: 'string' },
      openedAt: isoTime,
      updatedAt: isoTime,
      resolvedAt: { ...nullableIsoTime, description: 'null while open' },
      state,
      worstState: state,
      reason: { type: 'string' },
      acknowledgedAt: { ...nullableIsoTime, description: 'null until acknowledged' },
      externalId: { type: ['string', 'null'], description: 'An id given by an outside system (a pager)' },
    },
  },
  {
    $id: 'Check',
    type: 'object',
    description: "A check with its runtime state (its command's attributes are not shown: they may hold secrets)",
    required: ['id', 'command', 'status', 'hardState', 'stateType', 'attempt', 'lastResult', 'incident', 'nextDueAt', 'pool', 'metadata', 'suppressed'],
    properties: {
      id: { type: 'string' },
      command: { type: 'string' },
      status: { type: 'string', enum: ['waiting', 'running', 'done'], description: 'done: a one-shot check that finished' },
      hardState: state,
      stateType: { type: 'string', enum: ['soft', 'hard'] },
      attempt: { type: 'integer', description: 'Consecutive non-OK results while confirming a problem' },
      lastResult: { anyOf: [{ $ref: 'Result#' }, { type: 'null' }] },
      incident: { description: 'The open incident', anyOf: [{ $ref: 'Incident#' }, { type: 'null' }] },
      nextDueAt: { ...nullableIsoTime, description: 'null while running and once a one-shot check is done' },
      lastHardChangeAt: nullableIsoTime,
      pool: { type: ['string', 'null'], description: "null: the server's default pool for its command" },
      metadata: { type: 'object', additionalProperties: true },
      suppressed: { type: 'boolean' },
      intervalMs: { type: ['integer', 'null'], description: 'null for a one-shot check' },
      timeoutMs: { type: 'integer' },
      retryIntervalMs: { type: 'integer' },
      maxAttempts: { type: 'integer' },
      recoverAfter: { type: 'integer' },
      handlers: { type: 'array', items: { type: 'string' } },
      pingUrl: { type: 'string', description: 'push checks: the URL their job pings (it holds the token)' },
    },
  },
] as const;

const error = { $ref: 'Error#' } as const;

/** Error answers by status, for a route's `response` schema. */
export function errorResponses(...statuses: number[]): Record<number, typeof error> {
  return Object.fromEntries(statuses.map((status) => [status, error]));
}

/** The shape of `PUT /checks/:id` bodies, for the OpenAPI document only (the API validates them like the config file). */
export function checkEntryJsonSchema(): Record<string, unknown> {
  const { $schema: _, required, ...rest } = z.toJSONSchema(checkSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...rest,
    description: "A check entry as in the config file's `checks:`; `id` may be left out (the URL's is used). `exec` checks are refused.",
    required: (required as string[] | undefined)?.filter((name) => name !== 'id') ?? ['command'],
  };
}
