import { bracketHost } from '../../core/host-port.js';

/**
 * The connection URL of the `sql` command, parsed once at load time, and the ways its secrets are kept
 * out of messages: the URL's user and password may be quoted by the drivers' errors, and the URL itself
 * by a config error.
 */

/** The two protocols `sql` speaks: PostgreSQL's, and MySQL's (which MariaDB speaks too). */
export const SqlProtocols = ['postgres', 'mysql'] as const;
export type SqlProtocol = (typeof SqlProtocols)[number];

/**
 * How the connection is encrypted, libpq's `sslmode` names: `disable` (plain TCP), `require` (TLS,
 * certificate not checked), `verify-ca` (TLS, certificate signed by a trusted CA), `verify-full` (and
 * issued for the host).
 */
export const TlsModes = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type TlsMode = (typeof TlsModes)[number];

/** What a connection URL says, parsed. Plain data, so a reloaded config with the same URL compares equal. */
export interface SqlTarget {
  readonly protocol: SqlProtocol;
  /** Host name or IP address (without brackets); or, starting with `/`, a Unix socket (PostgreSQL: its directory; MySQL: the socket file). */
  readonly host: string;
  /** Default 5432 (PostgreSQL) or 3306 (MySQL). */
  readonly port: number;
  /** Absent: the driver's default (PostgreSQL: `PGUSER` or the OS user). */
  readonly user?: string;
  /** Absent: none (PostgreSQL: `PGPASSWORD` or `~/.pgpass`). */
  readonly password?: string;
  /** Absent: the server's default for the user. */
  readonly database?: string;
  /** The URL's `sslmode` query parameter, when it has one. */
  readonly sslmode?: TlsMode;
  /** How messages name the server: the URL without its user, password and query (`postgres://db.example.org:5432/app`). */
  readonly display: string;
  /** Texts that must never appear in a message: the URL as written and its password, raw and decoded. */
  readonly secrets: readonly string[];
}

const SCHEMES: Readonly<Record<string, SqlProtocol>> = { 'postgres:': 'postgres', 'postgresql:': 'postgres', 'mysql:': 'mysql', 'mariadb:': 'mysql' };
const DEFAULT_PORTS: Readonly<Record<SqlProtocol, number>> = { postgres: 5432, mysql: 3306 };

/** The whole config error for a URL that is not one: it says what was expected, never what was found. */
export const URL_EXPECTED = 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL';

/** Parses a connection URL; `{ error }` says what is wrong with it without quoting it (it holds a password). */
export function parseConnectionUrl(text: string): SqlTarget | { readonly error: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { error: `${URL_EXPECTED} (user:password@host:port/database)` };
  }
  const protocol = SCHEMES[url.protocol];
  if (protocol === undefined) return { error: URL_EXPECTED };
  let host: string;
  let user: string;
  let password: string;
  let database: string;
  try {
    host = decodeURIComponent(url.hostname);
    user = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
    database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    return { error: `${URL_EXPECTED}, with its user, password, host and database percent-encoded (a % not followed by two hex digits)` };
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === '') return { error: `${URL_EXPECTED} with a host (postgres://host:5432/database)` };
  if (database.includes('/')) return { error: `${URL_EXPECTED} with at most one path segment, the database` };
  const port = url.port === '' ? DEFAULT_PORTS[protocol] : Number(url.port);
  if (port < 1) return { error: `${URL_EXPECTED} with a port 1–65535` };
  let sslmode: TlsMode | undefined;
  for (const [name, value] of url.searchParams) {
    if (name !== 'sslmode') return { error: `${URL_EXPECTED} without query parameters other than sslmode (${JSON.stringify(name)} is not one vigil reads)` };
    if (!(TlsModes as readonly string[]).includes(value)) return { error: `${URL_EXPECTED} whose sslmode is one of ${TlsModes.join(', ')}` };
    sslmode = value as TlsMode;
  }
  const where = host.startsWith('/') ? `[socket ${host}]` : `${bracketHost(host)}:${port}`;
  const scheme = url.protocol.slice(0, -1);
  return {
    protocol,
    host,
    port,
    ...(user === '' ? {} : { user }),
    ...(password === '' ? {} : { password }),
    ...(database === '' ? {} : { database }),
    ...(sslmode === undefined ? {} : { sslmode }),
    display: `${scheme}://${where}${database === '' ? '' : `/${database}`}`,
    secrets: [text, url.password, password].filter((secret) => secret !== ''),
  };
}

/**
 * A URL as a config error may show it: the user and password (everything before the last `@`) and the
 * query (`?password=…`) blanked, whether or not the text parses as a URL.
 */
export function redactUrlText(text: string): string {
  let shown = text;
  const query = shown.indexOf('?');
  if (query >= 0) shown = `${shown.slice(0, query)}?***`;
  const at = shown.lastIndexOf('@');
  if (at < 0) return shown;
  const slashes = shown.indexOf('//');
  const head = slashes >= 0 && slashes < at ? shown.slice(0, slashes + 2) : '';
  return `${head}***${shown.slice(at)}`;
}

/**
 * `text` with the target's secrets blanked: the URL and password wherever they appear, and the user where
 * a server quotes it (`"app"`, `'app'@'10.0.0.1'`), so that a Result never carries them.
 */
export function scrub(text: string, target: SqlTarget): string {
  let clean = text;
  for (const secret of target.secrets) clean = clean.split(secret).join('***');
  const { user } = target;
  if (user !== undefined) {
    for (const quoted of [`"${user}"`, `'${user}'`]) clean = clean.split(quoted).join(`${quoted[0] as string}***${quoted[0] as string}`);
  }
  return clean;
}
