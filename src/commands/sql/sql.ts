import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { compileRegexLiteral } from '../../core/regex-literal.js';
import { isMapping } from '../../core/values.js';
import { gauge } from '../../results/metric.js';
import type { CommandOutcome } from '../../results/result.js';
import { describeValue } from '../../validation/issues.js';
import { integer, nonEmptyString } from '../../validation/schema-types.js';
import { defineCommand, listenForAbort, type Command, type CommandContext, type ParseResult } from '../command.js';
import { parseConnectionUrl, redactUrlText, scrub, TlsModes, URL_EXPECTED, type SqlProtocol, type SqlTarget, type TlsMode } from './connection-url.js';
import { ignore, type SqlDriver, type SqlFailure, type SqlParam } from './driver.js';
import { judge, type Judgement, type RowCount, type ValueMatcher } from './judgement.js';
import { mysqlDriver } from './mysql-driver.js';
import { postgresDriver } from './postgres-driver.js';

/** The `sql` command's attributes after parsing: the URL parsed, `expectRows` as bounds, `expect` compiled. */
export interface SqlAttributes extends Judgement {
  /** The server, user and database, from `url`. */
  readonly target: SqlTarget;
  readonly query: string;
  /** Bound to `$1`, `$2`, … (PostgreSQL) or `?` (MySQL) in order. */
  readonly params?: readonly SqlParam[];
  /** From `tls`, else the URL's `sslmode`, else `disable`. */
  readonly tls: TlsMode;
}

const DRIVERS: Readonly<Record<SqlProtocol, SqlDriver>> = { postgres: postgresDriver, mysql: mysqlDriver };

const paramError = 'expected a string, number, boolean or null to bind';
const rowCountError = 'expected a number of rows, or { min, max }';
const expectError = 'expected a value the first column must equal (text, a number or true/false), or a regular expression written /pattern/flags';
const thresholdError = 'expected a number';

const attributes = z
  .strictObject({
    /**
     * `postgres://`, `postgresql://`, `mysql://` or `mariadb://user:password@host:port/database`, with
     * `?sslmode=` as the only query parameter. It holds a password: write it as `${ENV}` in the config.
     */
    url: z.string({ error: URL_EXPECTED }).transform((text, ctx): SqlTarget => {
      const target = parseConnectionUrl(text);
      if ('error' in target) {
        ctx.addIssue({ code: 'custom', message: target.error, input: text });
        return z.NEVER;
      }
      return target;
    }),
    /** The query; its first column of its first row is what `warn`, `crit` and `expect` judge. */
    query: nonEmptyString('a query (a non-empty string)'),
    /** Values for the query's placeholders, bound by the server, never spliced into the text. */
    params: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()], { error: paramError }), { error: 'expected a list of values to bind' }).optional(),
    /** `disable`, `require`, `verify-ca` or `verify-full`; default the URL's `sslmode`, else `disable`. */
    tls: z.enum(TlsModes, { error: `expected one of ${TlsModes.join(', ')}` }).optional(),
    /** First value at or above which the result is `warn`. */
    warn: z.number({ error: thresholdError }).optional(),
    /** First value at or above which the result is `crit`. */
    crit: z.number({ error: thresholdError }).optional(),
    /** First value at or below which the result is `warn`. */
    warnBelow: z.number({ error: thresholdError }).optional(),
    /** First value at or below which the result is `crit`. */
    critBelow: z.number({ error: thresholdError }).optional(),
    /** How many rows the query must return: a number, or `{ min, max }` (either may be left out). */
    expectRows: z.union([integer(0), z.strictObject({ min: integer(0).optional(), max: integer(0).optional() })], { error: rowCountError }).optional(),
    /** What the first value must be: text it equals, `/regex/flags` its text matches, a number, true or false. */
    expect: z.union([z.string(), z.number(), z.boolean()], { error: expectError }).optional(),
  })
  .transform((value, ctx): SqlAttributes => {
    const { url: target, query, params, warn, crit, warnBelow, critBelow } = value;
    const tls = value.tls ?? target.sslmode ?? 'disable';
    if (value.tls !== undefined && target.sslmode !== undefined && value.tls !== target.sslmode) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: `expected the same mode as the URL's sslmode (${target.sslmode}), or no tls` });
    }
    if (warn !== undefined && crit !== undefined && warn > crit) {
      ctx.addIssue({ code: 'custom', path: ['warn'], message: `expected a number no greater than crit (${crit})` });
    }
    if (warnBelow !== undefined && critBelow !== undefined && warnBelow < critBelow) {
      ctx.addIssue({ code: 'custom', path: ['warnBelow'], message: `expected a number no less than critBelow (${critBelow})` });
    }
    const lowest = warn ?? crit;
    const highest = warnBelow ?? critBelow;
    if (lowest !== undefined && highest !== undefined && highest >= lowest) {
      ctx.addIssue({ code: 'custom', path: [warnBelow === undefined ? 'critBelow' : 'warnBelow'], message: `expected a number below ${warn === undefined ? 'crit' : 'warn'} (${lowest}): no value can be too low and too high at once` });
    }
    if (value.expect !== undefined && (lowest !== undefined || highest !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['expect'], message: 'expected either expect or thresholds (warn, crit, warnBelow, critBelow), not both: they judge the same value' });
    }
    const expectRows = toRowCount(value.expectRows, ctx);
    const expect = toMatcher(value.expect, ctx);
    return {
      target,
      query,
      ...(params === undefined || params.length === 0 ? {} : { params }),
      tls,
      ...(warn === undefined ? {} : { warn }),
      ...(crit === undefined ? {} : { crit }),
      ...(warnBelow === undefined ? {} : { warnBelow }),
      ...(critBelow === undefined ? {} : { critBelow }),
      ...(expectRows === undefined ? {} : { expectRows }),
      ...(expect === undefined ? {} : { expect }),
    };
  });

function toRowCount(raw: number | { min?: number | undefined; max?: number | undefined } | undefined, ctx: z.RefinementCtx): RowCount | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw === 'number') return { min: raw, max: raw };
  const { min = 0, max } = raw;
  if (raw.min === undefined && max === undefined) {
    ctx.addIssue({ code: 'custom', path: ['expectRows'], message: 'expected min, max or both' });
  } else if (max !== undefined && min > max) {
    ctx.addIssue({ code: 'custom', path: ['expectRows', 'min'], message: `expected a number no greater than max (${max})` });
  }
  return max === undefined ? { min } : { min, max };
}

function toMatcher(raw: string | number | boolean | undefined, ctx: z.RefinementCtx): ValueMatcher | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw === 'number') return { display: String(raw), number: raw };
  if (typeof raw === 'boolean') return { display: String(raw), boolean: raw };
  const regex = compileRegexLiteral(raw);
  if (regex === null) return { display: JSON.stringify(raw), text: raw };
  if ('error' in regex) {
    ctx.addIssue({ code: 'custom', path: ['expect'], message: `expected a valid regular expression (${regex.error})` });
    return undefined;
  }
  return { display: raw, regex };
}

/**
 * `sql`: connects to PostgreSQL (`postgres://`, `postgresql://`) or MySQL/MariaDB (`mysql://`,
 * `mariadb://`), runs `query` with `params` bound, and judges what it returns: the first value against
 * `warn`/`crit` (at or above) and `warnBelow`/`critBelow` (at or below), or against `expect`; the number
 * of rows against `expectRows`; or, with none of these, only that the query ran.
 *
 * Reasons: `ok`; `threshold` (warn or crit: the first value crossed one); `no-rows` (crit: none, where a
 * row or a value was expected); `unexpected-rows` (crit: the count is outside `expectRows`);
 * `unexpected-value` (crit: not what `expect` says, or not a number for the thresholds); `query-error`
 * (crit: the server refused the query, with its SQLSTATE and code); `auth-failed`, `refused`, `dns`,
 * `tls-error` (crit: connecting failed so); `timeout` (crit: the check's timeout, or the server's statement
 * timeout set from it, cut the run short); `connection-error` (crit: any other failure to connect, such as
 * an unknown database, or a connection lost during the query). Metrics: `connect_time` (ms, TCP, TLS,
 * login and session set-up), `query_time` (ms), `rows`, and `value` (the first value, when a number,
 * with `warn` and `crit`).
 *
 * Each run opens its own connection and closes it before it returns, on every path: `connect_time` then
 * measures what a client of the database meets, and a server that refuses new connections (full, or a
 * login revoked) is seen, which a kept connection would hide. The cost is a login per interval: 7 ms
 * (median) against a local PostgreSQL, most of it the server starting a backend, which a check's
 * interval of seconds makes negligible. The statement timeout is set on the server from
 * the run's deadline, so a query still running then is cancelled there, not only abandoned here.
 * The URL's user and password (and the URL itself) never reach a message or a config error.
 */
export function sqlCommand(): Command<SqlAttributes> {
  const command = defineCommand({ name: 'sql', attributes, run: runSql });
  return { ...command, parse: (raw) => withoutUrl(command.parse(raw), raw) };
}

/** A config error quotes what it found: for `url`, that is a password; it shows the URL redacted instead. */
function withoutUrl(parsed: ParseResult<SqlAttributes>, raw: unknown): ParseResult<SqlAttributes> {
  const url = isMapping(raw) ? raw['url'] : undefined;
  if (parsed.ok || typeof url !== 'string') return parsed;
  const found = describeValue(url);
  const redacted = describeValue(redactUrlText(url));
  return { ok: false, issues: parsed.issues.map(({ path, message }) => ({ path, message: message.split(found).join(redacted) })) };
}

async function runSql(attrs: SqlAttributes, ctx: CommandContext): Promise<CommandOutcome> {
  const { target } = attrs;
  const session = DRIVERS[target.protocol]({ target, tls: attrs.tls, deadline: ctx.deadline, applicationName: `vigil ${ctx.checkId}` });
  let aborted = false;
  let onAbort!: () => void;
  const abortedRun = new Promise<never>((_, reject) => {
    onAbort = () => {
      aborted = true;
      session.destroy();
      reject(new Error('aborted'));
    };
  });
  abortedRun.catch(ignore);
  const stopListening = listenForAbort(ctx, onAbort);
  if (stopListening === null) return { state: 'crit', reason: 'timeout', message: `timed out before connecting to ${target.display}` };
  const run: RunProgress = { startedAt: performance.now(), connectMs: undefined };
  try {
    await untilAborted(session.connect(), abortedRun);
    run.connectMs = elapsedMs(run.startedAt);
    const queryStartedAt = performance.now();
    const rows = await untilAborted(session.query(attrs.query, attrs.params), abortedRun);
    return withoutSecrets(judge(attrs, rows, target.display, { connectMs: run.connectMs, queryMs: elapsedMs(queryStartedAt) }), target);
  } catch (error) {
    if (aborted) return withoutSecrets(timedOut(attrs, run), target);
    return withoutSecrets(failed(attrs, session.classify(error), run), target);
  } finally {
    // Still listening: an abort while saying goodbye destroys the connection rather than waiting.
    await session.close();
    stopListening();
  }
}

/** `promise`, or the run's abort if it comes first; a rejection of `promise` after the abort is ignored. */
function untilAborted<T>(promise: Promise<T>, abortedRun: Promise<never>): Promise<T> {
  promise.catch(ignore);
  return Promise.race([promise, abortedRun]);
}

interface RunProgress {
  readonly startedAt: number;
  /** Set once connected. */
  connectMs: number | undefined;
}

function timedOut({ target }: SqlAttributes, run: RunProgress): CommandOutcome {
  if (run.connectMs === undefined) return { state: 'crit', reason: 'timeout', message: `timed out connecting to ${target.display}` };
  return { state: 'crit', reason: 'timeout', message: `timed out waiting for the query on ${target.display}`, metrics: [connectTime(run.connectMs)] };
}

function failed({ target, tls }: SqlAttributes, failure: SqlFailure, run: RunProgress): CommandOutcome {
  const { detail } = failure;
  const connected = run.connectMs === undefined ? {} : { metrics: [connectTime(run.connectMs)] };
  switch (failure.reason) {
    case 'refused':
      return { state: 'crit', reason: 'refused', message: `connection refused by ${target.display} (${detail})` };
    case 'dns':
      return { state: 'crit', reason: 'dns', message: `cannot resolve host ${target.host} (${detail})` };
    case 'timeout': {
      const message =
        failure.statementTimeout === true
          ? `the query on ${target.display} ran into the statement timeout vigil set from the check's timeout: ${detail}`
          : `timed out connecting to ${target.display} (${detail})`;
      return { state: 'crit', reason: 'timeout', message, ...connected };
    }
    case 'tls-error':
      return { state: 'crit', reason: 'tls-error', message: `TLS (${tls}) with ${target.display} failed: ${detail}` };
    case 'auth-failed':
      return { state: 'crit', reason: 'auth-failed', message: `authentication failed at ${target.display}: ${detail}` };
    case 'query-error':
      return { state: 'crit', reason: 'query-error', message: `query on ${target.display} failed: ${detail}`, ...connected };
    case 'connection-error': {
      const when = run.connectMs === undefined ? `cannot connect to ${target.display}` : `connection with ${target.display} failed during the query`;
      return { state: 'crit', reason: 'connection-error', message: `${when}: ${detail}`, ...connected };
    }
  }
}

/** The outcome with the URL's secrets scrubbed from its message: drivers and servers quote users, and a value could be anything. */
function withoutSecrets(outcome: CommandOutcome, target: SqlTarget): CommandOutcome {
  const message = scrub(outcome.message, target);
  return message === outcome.message ? outcome : { ...outcome, message };
}

function connectTime(ms: number) {
  return gauge('connect_time', ms, 'ms');
}

function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 1000) / 1000;
}
