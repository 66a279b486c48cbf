import type { Duplex } from 'node:stream';
import { DNS_ERROR_CODES, errorCode } from '../../core/errors.js';
import type { SqlTarget, TlsMode } from './connection-url.js';
import { errorMessage } from '../../core/errors.js';

/** A value bound to a query's placeholder (`$1` on PostgreSQL, `?` on MySQL): never spliced into its text. */
export type SqlParam = string | number | boolean | null;

/** What one query returned: its first result set with columns, each row as an array in column order. */
export interface QueryRows {
  /** Columns of the result set; 0 for a statement that returns none (`UPDATE`, `SET`). */
  readonly columns: number;
  /** Values as the driver gives them: text for PostgreSQL (as psql shows it), numbers, text or Buffers for MySQL. */
  readonly rows: readonly (readonly unknown[])[];
}

/** Settings of one run's connection. */
export interface SqlSessionOptions {
  readonly target: SqlTarget;
  readonly tls: TlsMode;
  /** Epoch milliseconds by which the run must be over: the server's statement timeout is what is left of it. */
  readonly deadline: number;
  /** How the session names itself to the server (PostgreSQL's `application_name`, MySQL's `program_name`). */
  readonly applicationName: string;
}

/**
 * One connection, for one run: `connect`, then `query` once, then `close` (or `destroy`, at once, from an
 * abort). The run races every promise against its abort, so none of them needs a signal.
 */
export interface SqlSession {
  /** Connects, authenticates and sets the session's statement timeout from the deadline. */
  connect(): Promise<void>;
  query(sql: string, params: readonly SqlParam[] | undefined): Promise<QueryRows>;
  /** Says goodbye to the server and resolves once the socket is closed; a broken connection is destroyed. Never rejects. */
  close(): Promise<void>;
  /** Drops the connection now. */
  destroy(): void;
  /** Why `connect` or `query` failed, from what they rejected with. */
  classify(error: unknown): SqlFailure;
}

/** A failure's reason code and what to say about it, before the target's secrets are scrubbed from it. */
export interface SqlFailure {
  readonly reason: 'refused' | 'dns' | 'timeout' | 'tls-error' | 'auth-failed' | 'query-error' | 'connection-error';
  /** The driver's or server's words, with the code: `28P01 password authentication failed for user "app"`. */
  readonly detail: string;
  /** For `timeout`: the server cancelled the statement at the statement timeout (rather than the run's abort). */
  readonly statementTimeout?: true;
}

/** Opens the session of one run; it connects once `connect` is called. */
export type SqlDriver = (options: SqlSessionOptions) => SqlSession;

/** The longest timeout a server or Node timer takes, in ms (PostgreSQL's `statement_timeout` is an int32 too). */
const MAX_TIMEOUT_MS = 2_147_483_647;

/** What is left until the deadline in whole ms, at least 1; `undefined` when there is no finite deadline. */
export function remainingMs(deadline: number): number | undefined {
  if (!Number.isFinite(deadline)) return undefined;
  return Math.min(MAX_TIMEOUT_MS, Math.max(1, Math.ceil(deadline - Date.now())));
}

/**
 * The failures that happen below the database protocol, the same for both drivers: a refused connection,
 * a name that does not resolve, a TCP timeout; `undefined` for anything else. A refused connection to a
 * name with several addresses is an AggregateError whose `code` is that of its first error.
 */
export function networkFailure(error: unknown): SqlFailure | undefined {
  const code = errorCode(error) ?? errorCode((error as { errors?: unknown[] } | null)?.errors?.[0]);
  if (code === undefined) return undefined;
  // ENOENT: no Unix socket at that path, which is what a refused TCP connection is for a socket.
  if (code === 'ECONNREFUSED' || code === 'ENOENT') return { reason: 'refused', detail: code };
  if (DNS_ERROR_CODES.has(code)) return { reason: 'dns', detail: code };
  if (code === 'ETIMEDOUT') return { reason: 'timeout', detail: code };
  return undefined;
}

/** One line for an error: its code (when its message does not hold it already) and message. */
export function describeError(error: unknown, code: string | undefined): string {
  const message = errorMessage(error);
  if (code === undefined || code === '' || message.includes(code)) return message;
  return message === '' ? code : `${code} ${message}`;
}

/** Resolves once `stream` has closed (at once when it has already). */
export function closed(stream: Duplex): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

export function ignore(): void {}
