import type { Duplex } from 'node:stream';
import type { Connection, ConnectionOptions, FieldPacket, QueryError, QueryResult, SslOptions } from 'mysql2';
import type { TlsMode } from './connection-url.js';
import { closed, describeError, ignore, networkFailure, remainingMs, type QueryRows, type SqlDriver, type SqlFailure, type SqlParam, type SqlSession, type SqlSessionOptions } from './driver.js';
import { errorMessage } from '../../core/errors.js';

type Mysql2 = typeof import('mysql2');

/** mysql2 takes a tenth of a second to load: only a vigil with a MySQL check pays for it, once. */
let loading: Promise<Mysql2> | undefined;
function loadMysql2(): Promise<Mysql2> {
  return (loading ??= import('mysql2'));
}

/**
 * Server errors (`errno`) that say the user may not log in: 1044 not on that database, 1045 access
 * denied, 1251 an authentication plugin the client lacks, 1698 no password given, 1820 and 1862 a
 * password that must be changed first, 3118 (MySQL) and 4151 (MariaDB) a locked account.
 */
const AUTH_ERRNOS: ReadonlySet<number> = new Set([1044, 1045, 1251, 1698, 1820, 1862, 3118, 4151]);
/** The statement ran out of its time: 1969 ER_STATEMENT_TIMEOUT (MariaDB's max_statement_time), 3024 ER_QUERY_TIMEOUT (MySQL's max_execution_time). */
const STATEMENT_TIMEOUT_ERRNOS: ReadonlySet<number> = new Set([1969, 3024]);

/** MySQL and MariaDB through `mysql2`, one connection per run. */
export const mysqlDriver: SqlDriver = (options) => new MysqlSession(options);

function sslOptions(mode: TlsMode): SslOptions | undefined {
  switch (mode) {
    case 'disable':
      return undefined;
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      return { rejectUnauthorized: true, verifyIdentity: false };
    case 'verify-full':
      return { rejectUnauthorized: true, verifyIdentity: true };
  }
}

/** The socket under a mysql2 connection, which its types leave out: the TLS socket once upgraded. */
function streamOf(connection: Connection): Duplex {
  return (connection as unknown as { stream: Duplex }).stream;
}

class MysqlSession implements SqlSession {
  readonly #options: SqlSessionOptions;
  #connection: Connection | undefined;
  #destroyed = false;
  /** The TCP connection is up: with TLS asked for, the handshake is under way until `#ready`. */
  #reached = false;
  /** Authenticated, and the statement timeout set. */
  #ready = false;

  constructor(options: SqlSessionOptions) {
    this.#options = options;
  }

  async connect(): Promise<void> {
    const mysql = await loadMysql2();
    if (this.#destroyed) throw new Error('aborted before connecting');
    const { target, tls, deadline, applicationName } = this.#options;
    const ssl = sslOptions(tls);
    const config: ConnectionOptions = {
      ...(target.host.startsWith('/') ? { socketPath: target.host } : { host: target.host, port: target.port }),
      ...(target.user === undefined ? {} : { user: target.user }),
      ...(target.password === undefined ? {} : { password: target.password }),
      ...(target.database === undefined ? {} : { database: target.database }),
      ...(ssl === undefined ? {} : { ssl }),
      // mysql2 gives up after 10 s by default, which would cut short a check with a longer timeout.
      connectTimeout: remainingMs(deadline) ?? 2_147_483_647,
      // Values as text where a JS value would lose something: DATETIME in the server's words, BIGINT and DECIMAL exact.
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      jsonStrings: true,
      connectAttributes: { program_name: applicationName },
    };
    const connection = mysql.createConnection(config);
    this.#connection = connection;
    streamOf(connection).once('connect', () => (this.#reached = true));
    // Errors of the handshake come as an `error` event; later ones reach the query's callback, and the
    // listener left then keeps a stray one from crashing the process.
    let failed: (error: unknown) => void = ignore;
    connection.on('error', (error) => failed(error));
    const serverVersion = await new Promise<string>((resolve, reject) => {
      failed = reject;
      connection.once('connect', (handshake: { serverVersion?: unknown } | undefined) => resolve(typeof handshake?.serverVersion === 'string' ? handshake.serverVersion : ''));
    });
    failed = ignore;
    await this.#setStatementTimeout(connection, serverVersion);
    this.#ready = true;
  }

  /**
   * A statement still running at the deadline is stopped by the server (the run's abort only closes the
   * socket, which the server notices when it next writes): MariaDB's `max_statement_time` (seconds), or
   * MySQL's `max_execution_time` (ms, SELECT only). One round trip; a server that knows neither runs the
   * query without.
   */
  async #setStatementTimeout(connection: Connection, serverVersion: string): Promise<void> {
    const ms = remainingMs(this.#options.deadline);
    if (ms === undefined) return;
    const sql = /mariadb/i.test(serverVersion) ? `SET SESSION max_statement_time = ${(ms / 1000).toFixed(3)}` : `SET SESSION max_execution_time = ${ms}`;
    await new Promise<void>((resolve) => connection.query(sql, () => resolve()));
  }

  async query(sql: string, params: readonly SqlParam[] | undefined): Promise<QueryRows> {
    const connection = this.#connection as Connection;
    const [result, fields] = await new Promise<[QueryResult, FieldPacket[] | FieldPacket[][] | undefined]>((resolve, reject) => {
      const callback = (error: QueryError | null, rows: QueryResult, columns: FieldPacket[] | undefined): void => {
        if (error === null) resolve([rows, columns]);
        else reject(error);
      };
      // With parameters, a prepared statement: the values travel apart from the text, never quoted into it.
      if (params === undefined) connection.query({ sql, rowsAsArray: true }, callback);
      else connection.execute({ sql, rowsAsArray: true, values: [...params] }, callback);
    });
    return firstResultSet(result, fields);
  }

  async close(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) {
      this.#destroyed = true;
      return;
    }
    if (this.#ready) connection.end(ignore);
    else this.destroy();
    await closed(streamOf(connection));
  }

  destroy(): void {
    this.#destroyed = true;
    const connection = this.#connection;
    if (connection === undefined) return;
    // mysql2's destroy() only half-closes the socket; a server busy with the query would keep it open.
    connection.destroy();
    streamOf(connection).destroy();
  }

  classify(error: unknown): SqlFailure {
    const network = networkFailure(error);
    if (network !== undefined) return network;
    const { errno, sqlState, code } = error as { errno?: unknown; sqlState?: unknown; code?: unknown };
    // Only errors the server sent carry a SQLSTATE; mysql2's own (a closed socket, a failed TLS upgrade) do not.
    if (typeof sqlState === 'string') {
      // Below 1900 MySQL and MariaDB number errors alike; above, mysql2 names MariaDB's by MySQL's list (4151,
      // a locked account, as ER_BULK_PARSER_INCOMPLETE_ESCAPE_SEQUENCE), so only the number is sure.
      const name = typeof code === 'string' && typeof errno === 'number' && errno < 1900 ? code : `errno ${String(errno)}`;
      const detail = `${errorMessage(error)} (${name}, SQLSTATE ${sqlState})`;
      if (typeof errno === 'number' && STATEMENT_TIMEOUT_ERRNOS.has(errno)) return { reason: 'timeout', detail, statementTimeout: true };
      if (this.#ready) return { reason: 'query-error', detail };
      return { reason: typeof errno === 'number' && AUTH_ERRNOS.has(errno) ? 'auth-failed' : 'connection-error', detail };
    }
    const detail = describeError(error, typeof code === 'string' ? code : undefined);
    // Whatever fails between the TCP connection and the login, with TLS asked for, is TLS: a server
    // without it (HANDSHAKE_NO_SSL_SUPPORT), a certificate refused.
    if (!this.#ready && this.#options.tls !== 'disable' && this.#reached) return { reason: 'tls-error', detail };
    return { reason: 'connection-error', detail };
  }
}

/**
 * The first result set that has columns: a SELECT gives one; a CALL gives one per SELECT in the procedure
 * and a final status; an UPDATE gives only the status (no columns, no rows).
 */
function firstResultSet(result: QueryResult, fields: FieldPacket[] | FieldPacket[][] | undefined): QueryRows {
  if (!Array.isArray(fields) || fields.length === 0) return { columns: 0, rows: [] };
  if (!Array.isArray(fields[0])) return { columns: fields.length, rows: result as unknown as unknown[][] };
  const sets = result as unknown as unknown[];
  for (const [index, columns] of (fields as (FieldPacket[] | undefined)[]).entries()) {
    if (Array.isArray(columns) && columns.length > 0) return { columns: columns.length, rows: sets[index] as unknown[][] };
  }
  return { columns: 0, rows: [] };
}
