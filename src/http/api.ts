import swagger from '@fastify/swagger';
import type { FastifyError, FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Logger } from 'pino';
import type { Check, CheckSpec } from '../checks/check.js';
import type { ParseResult } from '../commands/command.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import type { Incident } from '../results/incident.js';
import type { HistorySource } from '../results/result-history.js';
import type { Result } from '../results/result.js';
import { bearerTokenChecker } from './api-auth.js';
import {
  API_BODY_LIMIT_BYTES,
  checkEntryJsonSchema,
  checkIdParams,
  errorResponses,
  incidentIdParams,
  incidentsQuery,
  resultsQuery,
  sharedSchemas,
} from './api-schemas.js';
import { isMapping } from '../core/values.js';
import type { Server } from '../server/server.js';
import { describeValue, formatIssue, formatPath } from '../validation/issues.js';
import { version } from '../core/version.js';

/** Where the API's routes live. */
export const API_PREFIX = '/api/v1';

export interface ApiDeps {
  /** Acknowledges incidents and runs checks now. */
  readonly server: Server;
  /** The checks the API lists, creates, replaces and removes (the server's queue). */
  readonly checks: CheckRegistry;
  /** Recent results per check and resolved incidents: in memory, or from the shared database. */
  readonly history: HistorySource;
  /** Validates one check entry like the config file does; issue paths relative to the entry. */
  parseCheck(raw: unknown): ParseResult<CheckSpec>;
  /** Bearer token mutations need (`server.apiToken`); null refuses every mutation (403). */
  readonly apiToken: string | null;
  /** Reads need the token too. */
  readonly protectReads: boolean;
  readonly logger: Logger;
  /** The URL a push check's job pings, shown as its `pingUrl`; `undefined` for other checks. */
  pingUrlOf?(check: Check): string | undefined;
}

/**
 * Adds the JSON API under `/api/v1`: checks (list, show, create or replace, remove, run now, recent results),
 * incidents (list, acknowledge) and `/openapi.json`. Mutations need `Authorization: Bearer <apiToken>`;
 * reads too with `protectReads`. Checks whose command has an `apiRefusal` (`exec`) cannot be created,
 * changed or removed here. Errors answer
 * `{ error, details }` through the endpoint's error handler; an invalid check entry answers 422 with
 * `details` listing each problem `{ path, message }`.
 *
 * The routes sit in their own fastify context: their JSON-only body parsing, error wording and OpenAPI
 * document do not reach the endpoint's other routes.
 */
export async function registerApiRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  await app.register((api) => apiRoutes(api, deps), { prefix: API_PREFIX });
}

class ApiError extends Error {
  readonly statusCode: number;

  constructor(statusCode: number, message: string) {
    super(message);
    this.name = 'ApiError';
    this.statusCode = statusCode;
  }
}

async function apiRoutes(api: FastifyInstance, deps: ApiDeps): Promise<void> {
  const { server, checks, history, logger } = deps;
  /** Why the command named `name` keeps its checks out of the API's hands (`Command.apiRefusal`), if it does. */
  const apiRefusal = (name: unknown): string | undefined => (typeof name === 'string' ? server.command(name)?.apiRefusal : undefined);

  await api.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'vigil API', version, description: 'Checks, their recent results and incidents. Times are ISO 8601; durations are milliseconds.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'server.apiToken' } } },
    },
    // Shared schemas appear under their own names in components.schemas, not as def-0, def-1, …
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  for (const schema of sharedSchemas) api.addSchema(schema);
  // Bodies are JSON only: fastify's default text/plain parser would hand a string to the handlers.
  api.removeContentTypeParser('text/plain');
  api.setErrorHandler(refineError);

  const checkToken = bearerTokenChecker(deps.apiToken);
  const requireToken: onRequestAsyncHookHandler = async (request, reply) => {
    const decision = checkToken(request.headers.authorization);
    if (decision.ok) return;
    if (decision.challenge !== undefined) void reply.header('www-authenticate', decision.challenge);
    throw new ApiError(decision.status, decision.details);
  };
  const bearer = [{ bearer: [] as string[] }];
  const write = { onRequest: requireToken, security: bearer, errors: [401, 403] } as const;
  const read = deps.protectReads ? write : { onRequest: [] as onRequestAsyncHookHandler[], security: [] as typeof bearer, errors: [] as number[] };

  /** The check, or a 404. */
  const known = (id: string): Check => {
    const check = checks.get(id);
    if (!check) throw new ApiError(404, `check ${JSON.stringify(id)} does not exist`);
    return check;
  };
  const view = (check: Check): CheckView => withPingUrl(checkView(check, checks.status(check.spec.id) ?? 'waiting'), check);
  const withPingUrl = (shown: CheckView, check: Check): CheckView => {
    const pingUrl = deps.pingUrlOf?.(check);
    return pingUrl === undefined ? shown : { ...shown, pingUrl };
  };

  api.get(
    '/checks',
    {
      onRequest: read.onRequest,
      schema: {
        summary: 'Every check with its state',
        tags: ['checks'],
        security: read.security,
        response: { 200: list('checks', 'Check#'), ...errorResponses(...read.errors) },
      },
    },
    () => ({ checks: checks.list().sort(byId).map(view) }),
  );

  api.get<{ Params: { id: string } }>(
    '/checks/:id',
    {
      onRequest: read.onRequest,
      schema: {
        summary: 'One check with its state',
        tags: ['checks'],
        security: read.security,
        params: checkIdParams,
        response: { 200: { $ref: 'Check#' }, ...errorResponses(400, 404, ...read.errors) },
      },
    },
    (request) => view(known(request.params.id)),
  );

  const checkEntryDoc = checkEntryJsonSchema();
  api.put<{ Params: { id: string } }>(
    '/checks/:id',
    {
      onRequest: write.onRequest,
      bodyLimit: API_BODY_LIMIT_BYTES,
      // The body is validated like a config entry (422 with every problem), not by fastify; the
      // document still shows its shape.
      config: { swaggerTransform: ({ schema, url }) => ({ schema: { ...schema, body: checkEntryDoc }, url }) },
      schema: {
        summary: 'Create (201) or replace (200) a check',
        description: 'The body is a check entry as in the config file. A replaced check keeps its state. Checks of commands the API may not manage (exec) are refused (403).',
        tags: ['checks'],
        security: write.security,
        params: checkIdParams,
        response: { 200: { $ref: 'Check#' }, 201: { $ref: 'Check#' }, ...errorResponses(400, 413, 415, 422, ...write.errors) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const body: unknown = request.body;
      if (body === undefined) throw new ApiError(400, 'expected a JSON body with the check entry (content-type: application/json)');
      const entry = isMapping(body) ? body : null;
      const existing = checks.get(id);
      const refusal = apiRefusal(entry?.command) ?? apiRefusal(existing?.spec.command);
      if (refusal !== undefined) throw new ApiError(403, refusal);
      if (entry && entry.id !== undefined && entry.id !== id) {
        const message = `expected ${JSON.stringify(id)} (the id in the URL) or no id, got ${describeValue(entry.id)}`;
        return reply.code(422).send(invalidEntry(id, [{ path: ['id'], message }]));
      }
      const parsed = deps.parseCheck(entry ? { ...entry, id } : body);
      if (!parsed.ok) return reply.code(422).send(invalidEntry(id, parsed.issues));
      const spec = parsed.value;
      if (existing) checks.update(spec);
      else checks.add(spec);
      logger.info({ checkId: id, command: spec.command }, existing ? 'check replaced through the API' : 'check created through the API');
      // A running check takes the new spec when its run ends: answer with the spec that was accepted.
      const accepted = { ...known(id), spec };
      const stored = withPingUrl(checkView(accepted, checks.status(id) ?? 'waiting'), accepted);
      if (existing) return stored;
      return reply.code(201).header('location', `${API_PREFIX}/checks/${encodeURIComponent(id)}`).send(stored);
    },
  );

  api.delete<{ Params: { id: string } }>(
    '/checks/:id',
    {
      onRequest: write.onRequest,
      schema: {
        summary: 'Remove a check (a running one finishes its run first)',
        tags: ['checks'],
        security: write.security,
        params: checkIdParams,
        response: { 204: { type: 'null', description: 'Removed' }, ...errorResponses(400, 404, ...write.errors) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const refusal = apiRefusal(known(id).spec.command);
      if (refusal !== undefined) throw new ApiError(403, refusal);
      checks.remove(id);
      history.forget(id);
      logger.info({ checkId: id }, 'check removed through the API');
      return reply.code(204).send();
    },
  );

  api.post<{ Params: { id: string } }>(
    '/checks/:id/run',
    {
      onRequest: write.onRequest,
      schema: {
        summary: 'Run a check now',
        description: '202: the check is due now and runs as soon as a slot is free; 409 while it is running.',
        tags: ['checks'],
        security: write.security,
        params: checkIdParams,
        response: { 202: { $ref: 'Check#' }, ...errorResponses(400, 404, 409, ...write.errors) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const check = known(id);
      if (!server.runNow(id)) throw new ApiError(409, `check ${JSON.stringify(id)} is running; run it again once it has finished`);
      logger.info({ checkId: id }, 'check run now through the API');
      return reply.code(202).send(view(check));
    },
  );

  api.get<{ Params: { id: string }; Querystring: { limit?: number } }>(
    '/checks/:id/results',
    {
      onRequest: read.onRequest,
      schema: {
        summary: 'Recent results of a check, newest first',
        tags: ['checks'],
        security: read.security,
        params: checkIdParams,
        querystring: resultsQuery,
        response: {
          200: { type: 'object', required: ['checkId', 'results'], properties: { checkId: { type: 'string' }, results: { type: 'array', items: { $ref: 'Result#' } } } },
          ...errorResponses(400, 404, ...read.errors),
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      known(id);
      const { limit } = request.query;
      const results = await (limit === undefined ? history.results(id) : history.results(id, limit));
      return { checkId: id, results: results.map(resultView) };
    },
  );

  api.get<{ Querystring: { state: 'open' | 'resolved' | 'all' } }>(
    '/incidents',
    {
      onRequest: read.onRequest,
      schema: {
        summary: 'Incidents: open ones (default), resolved ones (newest first), or all',
        tags: ['incidents'],
        security: read.security,
        querystring: incidentsQuery,
        response: { 200: list('incidents', 'Incident#'), ...errorResponses(400, ...read.errors) },
      },
    },
    async (request) => {
      const { state } = request.query;
      const incidents: Incident[] = [];
      if (state !== 'resolved') incidents.push(...openIncidents(checks));
      if (state !== 'open') incidents.push(...(await history.resolvedIncidents()));
      return { incidents: incidents.map(incidentView) };
    },
  );

  api.post<{ Params: { id: string } }>(
    '/incidents/:id/ack',
    {
      onRequest: write.onRequest,
      schema: {
        summary: 'Acknowledge an open incident',
        tags: ['incidents'],
        security: write.security,
        params: incidentIdParams,
        response: { 200: { $ref: 'Incident#' }, ...errorResponses(400, 404, 409, ...write.errors) },
      },
    },
    async (request) => {
      const { id } = request.params;
      const check = openIncidentCheck(checks, id);
      if (!check) {
        if ((await history.resolvedIncidents()).some((incident) => incident.id === id)) {
          throw new ApiError(409, `incident ${JSON.stringify(id)} is resolved; only open incidents can be acknowledged`);
        }
        throw new ApiError(404, `incident ${JSON.stringify(id)} does not exist or is no longer kept`);
      }
      const open = check.state.incident as Incident;
      if (open.acknowledgedAt !== null) {
        throw new ApiError(409, `incident ${JSON.stringify(id)} was already acknowledged at ${iso(open.acknowledgedAt)}`);
      }
      const acknowledged = await server.acknowledge(check.spec.id);
      // Resolved or acknowledged by someone else while the handlers ran.
      if (!acknowledged) throw new ApiError(409, `incident ${JSON.stringify(id)} is no longer open and unacknowledged`);
      logger.info({ checkId: check.spec.id, incidentId: id }, 'incident acknowledged through the API');
      return incidentView(acknowledged);
    },
  );

  api.get(
    '/openapi.json',
    { schema: { summary: 'This OpenAPI document', tags: ['meta'] } },
    () => api.swagger(),
  );
}

/**
 * Words fastify's own rejections like the rest of vigil's errors (what was expected, what arrived) and
 * hands them on to the endpoint's error handler, which shapes `{ error, details }` and logs.
 */
function refineError(error: FastifyError, request: FastifyRequest): never {
  if (error.validation && error.validationContext) throw new ApiError(400, describeValidation(error, request));
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    throw new ApiError(415, `expected a JSON body (content-type: application/json), got content-type ${describeValue(request.headers['content-type'])}`);
  }
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') throw new ApiError(413, `expected a body of at most ${API_BODY_LIMIT_BYTES} bytes`);
  throw error;
}

const PARTS: Record<string, { label: string; values: (request: FastifyRequest) => unknown }> = {
  params: { label: 'path parameter', values: (request) => request.params },
  querystring: { label: 'query parameter', values: (request) => request.query },
  body: { label: 'body field', values: (request) => request.body },
  headers: { label: 'header', values: (request) => request.headers },
};

/** `query parameter limit: expected an integer 1–1000: …, got "abc"`, from the schema's description. */
function describeValidation(error: FastifyError, request: FastifyRequest): string {
  const context = error.validationContext as string;
  const first = error.validation?.[0];
  const part = PARTS[context];
  if (!first || !part) return `${context}: ${error.message}`;
  const missing = (first.params as { missingProperty?: unknown }).missingProperty;
  const name = first.instancePath.slice(1).replaceAll('/', '.') || (typeof missing === 'string' ? missing : '');
  const schema = (request.routeOptions.schema as Record<string, { properties?: Record<string, { description?: string }> }> | undefined)?.[context];
  const expected = schema?.properties?.[name]?.description;
  if (name === '' || expected === undefined) return `${part.label}s: ${error.message}`;
  const values = part.values(request);
  const value = isMapping(values) ? values[name] : undefined;
  return `${part.label} ${name}: expected ${expected}, got ${describeValue(value)}`;
}

function invalidEntry(id: string, issues: readonly { path: readonly (string | number)[]; message: string }[]): { error: string; details: { path: string; message: string }[] } {
  const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
  return {
    error: `invalid check ${JSON.stringify(id)} (${count}): ${issues.map(formatIssue).join('; ')}`,
    details: issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message })),
  };
}

/** The check whose open incident has this id (`<checkId>:<openedAt>`). */
function openIncidentCheck(checks: CheckRegistry, incidentId: string): Check | undefined {
  const colon = incidentId.lastIndexOf(':');
  const check = colon > 0 ? checks.get(incidentId.slice(0, colon)) : undefined;
  return check?.state.incident?.id === incidentId ? check : undefined;
}

/** Open incidents, the most recently opened first. */
function openIncidents(checks: CheckRegistry): Incident[] {
  const open: Incident[] = [];
  for (const check of checks.list()) if (check.state.incident) open.push(check.state.incident);
  return open.sort((a, b) => b.openedAt - a.openedAt || a.id.localeCompare(b.id));
}

function list(key: string, ref: string): Record<string, unknown> {
  return { type: 'object', required: [key], properties: { [key]: { type: 'array', items: { $ref: ref } } } };
}

function byId(a: Check, b: Check): number {
  return a.spec.id < b.spec.id ? -1 : a.spec.id > b.spec.id ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// Views: what the API shows, times as ISO 8601.

type ResultView = Omit<Result, 'startedAt'> & { startedAt: string };

type IncidentView = Omit<Incident, 'openedAt' | 'updatedAt' | 'resolvedAt' | 'acknowledgedAt'> & {
  openedAt: string;
  updatedAt: string;
  resolvedAt: string | null;
  acknowledgedAt: string | null;
};

interface CheckView {
  pingUrl?: string;
  id: string;
  command: string;
  status: string;
  hardState: string;
  stateType: string;
  attempt: number;
  lastResult: ResultView | null;
  incident: IncidentView | null;
  nextDueAt: string | null;
  lastHardChangeAt: string | null;
  pool: string | null;
  metadata: Readonly<Record<string, unknown>>;
  suppressed: boolean;
  intervalMs: number | null;
  timeoutMs: number;
  retryIntervalMs: number;
  maxAttempts: number;
  recoverAfter: number;
  handlers: readonly string[];
}

function checkView(check: Check, status: 'waiting' | 'running' | 'done'): CheckView {
  const { spec, state } = check;
  return {
    id: spec.id,
    command: spec.command,
    status,
    hardState: state.hardState,
    stateType: state.stateType,
    attempt: state.attempt,
    lastResult: state.lastResult ? resultView(state.lastResult) : null,
    incident: state.incident ? incidentView(state.incident) : null,
    // While it runs, the due time it was claimed at is past and the next one not known yet.
    nextDueAt: status === 'waiting' ? iso(check.dueAt) : null,
    lastHardChangeAt: state.lastHardChangeAt === null ? null : iso(state.lastHardChangeAt),
    pool: spec.pool,
    metadata: spec.metadata,
    suppressed: spec.suppressed,
    intervalMs: spec.intervalMs,
    timeoutMs: spec.timeoutMs,
    retryIntervalMs: spec.retryIntervalMs,
    maxAttempts: spec.maxAttempts,
    recoverAfter: spec.recoverAfter,
    handlers: spec.handlers,
  };
}

function resultView(result: Result): ResultView {
  return { ...result, startedAt: iso(result.startedAt) };
}

function incidentView(incident: Incident): IncidentView {
  return {
    ...incident,
    openedAt: iso(incident.openedAt),
    updatedAt: iso(incident.updatedAt),
    resolvedAt: incident.resolvedAt === null ? null : iso(incident.resolvedAt),
    acknowledgedAt: incident.acknowledgedAt === null ? null : iso(incident.acknowledgedAt),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
