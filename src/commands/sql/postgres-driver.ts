import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { errorCode } from '../../core/errors.js';
import type { TlsMode } from './connection-url.js';
import { closed, describeError, ignore, networkFailure, remainingMs, type QueryRows, type SqlDriver, type SqlFailure, type SqlParam, type SqlSession, type SqlSessionOptions } from './driver.js';

/** Every value as the server's text (what psql shows): `t`, `42`, `2024-05-01 12:00:00+00`, not JS Dates or booleans. */
const TEXT: pg.CustomTypesConfig = { getTypeParser: (() => (text: string) => text) as pg.CustomTypesConfig['getTypeParser'] };
/** SQLSTATE `query_canceled`: what the server says when `statement_timeout` cuts a statement short. */
const QUERY_CANCELED = '57014';

/** PostgreSQL through `pg`, one `pg.Client` per run. */
export const postgresDriver: SqlDriver = (options) => new PostgresSession(options);

function sslOptions(mode: TlsMode): false | ConnectionOptions {
  switch (mode) {
    case 'disable':
      return false;
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      return { rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { rejectUnauthorized: true };
  }
}

class PostgresSession implements SqlSession {
  readonly #client: pg.Client;
  readonly #tls: boolean;
  /** The TCP connection is up: with TLS, the SSLRequest and the handshake are under way until `#secured`. */
  #reached = false;
  #secured = false;
  /** Authenticated and ready for the query. */
  #ready = false;

  constructor({ target, tls, deadline, applicationName }: SqlSessionOptions) {
    // Sent in the startup message, so it costs no round trip: a query still running at the deadline is
    // cancelled by the server itself, even when the run's abort only closes the socket.
    const statementTimeoutMs = remainingMs(deadline);
    this.#tls = tls !== 'disable';
    this.#client = new pg.Client({
      host: target.host,
      port: target.port,
      user: target.user,
      password: target.password,
      database: target.database,
      ssl: sslOptions(tls),
      application_name: applicationName,
      ...(statementTimeoutMs === undefined ? {} : { statement_timeout: statementTimeoutMs }),
      types: TEXT,
    });
    // Unheard, an error of the connection (the server going away) would crash the process; connect and
    // query reject with it anyway.
    this.#client.on('error', ignore);
    const { connection } = this.#client;
    connection.once('connect', () => (this.#reached = true));
    // Emitted when pg starts the TLS handshake (on the socket it then swaps in), not when it is over.
    connection.once('sslconnect', () => connection.stream.once('secureConnect', () => (this.#secured = true)));
  }

  async connect(): Promise<void> {
    await this.#client.connect();
    this.#ready = true;
  }

  async query(sql: string, params: readonly SqlParam[] | undefined): Promise<QueryRows> {
    const result = await this.#client.query<unknown[]>({ text: sql, rowMode: 'array', ...(params === undefined ? {} : { values: [...params] }) });
    // Several statements without parameters go in one simple query and come back as one result each.
    const results: pg.QueryArrayResult<unknown[]>[] = Array.isArray(result) ? (result as pg.QueryArrayResult<unknown[]>[]) : [result];
    const first = results.find((each) => each.fields.length > 0);
    return first === undefined ? { columns: 0, rows: [] } : { columns: first.fields.length, rows: first.rows };
  }

  async close(): Promise<void> {
    if (this.#ready) {
      // Terminate, then wait for the server to close: pg destroys the socket itself when it is broken.
      await this.#client.end().catch(ignore);
      return;
    }
    this.destroy();
    await closed(this.#client.connection.stream);
  }

  destroy(): void {
    this.#client.connection.stream.destroy();
  }

  classify(error: unknown): SqlFailure {
    const network = networkFailure(error);
    if (network !== undefined) return network;
    const code = errorCode(error);
    if (error instanceof pg.DatabaseError) {
      const detail = `${error.message} (SQLSTATE ${code ?? 'unknown'})`;
      if (code === QUERY_CANCELED) return { reason: 'timeout', detail, statementTimeout: true };
      // FATAL after the login: the server ended the session (terminated, shutting down), not the query's fault.
      if (this.#ready) return { reason: error.severity === 'FATAL' || error.severity === 'PANIC' ? 'connection-error' : 'query-error', detail };
      // Class 28, invalid authorization: a wrong password (28P01), an unknown role, no pg_hba.conf entry (28000).
      return { reason: code?.startsWith('28') === true ? 'auth-failed' : 'connection-error', detail };
    }
    const detail = describeError(error, code);
    if (!this.#ready) {
      // Whatever fails between the TCP connection and the end of the handshake is TLS: a certificate
      // refused, a server that answers the SSLRequest with `N` ("does not support SSL connections").
      if (this.#tls && this.#reached && !this.#secured) return { reason: 'tls-error', detail };
      // pg's own words when the server asks for a password the URL does not have.
      if (/password/i.test(detail)) return { reason: 'auth-failed', detail };
    }
    return { reason: 'connection-error', detail };
  }
}
