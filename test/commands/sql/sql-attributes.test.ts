import { describe, expect, it } from 'vitest';
import { sqlCommand, type SqlAttributes } from '../../../src/commands/sql/sql.js';

/** Attributes of the `sql` command as the config gives them: checked at load time, with paths, and never quoting the URL's password. */

const command = sqlCommand();
const URL = 'postgres://app:hunter2@db.example.org:5433/shop';

function parse(raw: Record<string, unknown>): SqlAttributes {
  const parsed = command.parse({ url: URL, query: 'SELECT 1', ...raw });
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: Record<string, unknown>) {
  const parsed = command.parse(raw);
  if (parsed.ok) throw new Error('expected issues, got none');
  return parsed.issues;
}

describe('sql attributes', () => {
  it('parses the URL into the server, the user and the database, and names the server without the credentials', () => {
    const { target, tls } = parse({});
    expect(target).toMatchObject({ protocol: 'postgres', host: 'db.example.org', port: 5433, user: 'app', password: 'hunter2', database: 'shop', display: 'postgres://db.example.org:5433/shop' });
    expect(tls).toBe('disable');
  });

  it('chooses the protocol by the scheme, with its default port', () => {
    expect(parse({ url: 'postgresql://db/app' }).target).toMatchObject({ protocol: 'postgres', port: 5432, display: 'postgresql://db:5432/app' });
    expect(parse({ url: 'mysql://root:pw@db' }).target).toMatchObject({ protocol: 'mysql', port: 3306, display: 'mysql://db:3306' });
    expect(parse({ url: 'mariadb://[::1]:3307/app' }).target).toMatchObject({ protocol: 'mysql', host: '::1', port: 3307, display: 'mariadb://[::1]:3307/app' });
  });

  it('decodes percent-encoded parts and reads a socket path as the host', () => {
    const { target } = parse({ url: 'postgres://us%40r:p%2Fss@%2Fvar%2Frun%2Fpostgresql/my%20db' });
    expect(target).toMatchObject({ host: '/var/run/postgresql', user: 'us@r', password: 'p/ss', database: 'my db', display: 'postgres://[socket /var/run/postgresql]/my db' });
  });

  it('takes TLS from `tls` or the URL’s sslmode, and refuses the two disagreeing', () => {
    expect(parse({ tls: 'verify-full' }).tls).toBe('verify-full');
    expect(parse({ url: `${URL}?sslmode=require` }).tls).toBe('require');
    expect(parse({ url: `${URL}?sslmode=require`, tls: 'require' }).tls).toBe('require');
    expect(issues({ url: `${URL}?sslmode=require`, query: 'SELECT 1', tls: 'disable' })).toEqual([
      { path: ['tls'], message: "expected the same mode as the URL's sslmode (require), or no tls, got \"disable\"" },
    ]);
  });

  it('turns expectRows into bounds and compiles expect', () => {
    expect(parse({ expectRows: 0 }).expectRows).toEqual({ min: 0, max: 0 });
    expect(parse({ expectRows: { min: 1 } }).expectRows).toEqual({ min: 1 });
    expect(parse({ expectRows: { max: 5 } }).expectRows).toEqual({ min: 0, max: 5 });
    expect(parse({ expect: 'ok' }).expect).toEqual({ display: '"ok"', text: 'ok' });
    expect(parse({ expect: 42 }).expect).toEqual({ display: '42', number: 42 });
    expect(parse({ expect: true }).expect).toEqual({ display: 'true', boolean: true });
    const { expect: matcher } = parse({ expect: '/^up( |$)/i' });
    expect(matcher).toMatchObject({ display: '/^up( |$)/i' });
    expect(matcher !== undefined && 'regex' in matcher && matcher.regex.test('UP since 3 days')).toBe(true);
  });

  it('says where each problem is and what was expected', () => {
    expect(issues({ url: URL, query: '', params: [{}], warn: 'high', expectRows: -1, extra: 1 })).toEqual([
      { path: ['query'], message: 'expected a query (a non-empty string), got ""' },
      { path: ['params', 0], message: 'expected a string, number, boolean or null to bind, got an object' },
      { path: ['warn'], message: 'expected a number, got "high"' },
      { path: ['expectRows'], message: 'expected an integer ≥ 0, got -1' },
      { path: ['extra'], message: 'unknown key' },
    ]);
  });

  it('refuses thresholds in the wrong order, or judging the value twice', () => {
    expect(issues({ url: URL, query: 'SELECT 1', warn: 10, crit: 5 })).toEqual([{ path: ['warn'], message: 'expected a number no greater than crit (5), got 10' }]);
    expect(issues({ url: URL, query: 'SELECT 1', warnBelow: 1, critBelow: 5 })).toEqual([{ path: ['warnBelow'], message: 'expected a number no less than critBelow (5), got 1' }]);
    expect(issues({ url: URL, query: 'SELECT 1', warn: 10, warnBelow: 10 })).toEqual([
      { path: ['warnBelow'], message: 'expected a number below warn (10): no value can be too low and too high at once, got 10' },
    ]);
    expect(issues({ url: URL, query: 'SELECT 1', expect: 'ok', crit: 1 })).toEqual([
      { path: ['expect'], message: 'expected either expect or thresholds (warn, crit, warnBelow, critBelow), not both: they judge the same value, got "ok"' },
    ]);
    expect(issues({ url: URL, query: 'SELECT 1', expectRows: { min: 3, max: 1 } })).toEqual([{ path: ['expectRows', 'min'], message: 'expected a number no greater than max (1), got 3' }]);
    expect(issues({ url: URL, query: 'SELECT 1', expectRows: {} })).toEqual([{ path: ['expectRows'], message: 'expected min, max or both, got an object' }]);
    expect(issues({ url: URL, query: 'SELECT 1', expect: '/(/' })).toEqual([{ path: ['expect'], message: 'expected a valid regular expression (Unterminated group), got "/(/"' }]);
  });

  it('refuses a URL it cannot use without ever quoting its user or password', () => {
    const cases: [string, string][] = [
      ['http://app:hunter2@db.example.org/shop', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL, got "http://***@db.example.org/shop"'],
      ['postgres://app:hunter2@db.example.org:99999/shop', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL (user:password@host:port/database), got "postgres://***@db.example.org:99999/shop"'],
      ['postgres://app:hunter2@/shop', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL (user:password@host:port/database), got "postgres://***@/shop"'],
      ['postgres:///shop', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL with a host (postgres://host:5432/database), got "postgres:///shop"'],
      ['postgres://app:hunter2@db/shop?password=hunter2', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL without query parameters other than sslmode ("password" is not one vigil reads), got "postgres://***@db/shop?***"'],
      ['postgres://app:hunter2@db/shop?sslmode=prefer', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL whose sslmode is one of disable, require, verify-ca, verify-full, got "postgres://***@db/shop?***"'],
      ['app:hunter2@db', 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL, got "***@db"'],
    ];
    for (const [url, message] of cases) {
      const found = issues({ url, query: 'SELECT 1' });
      expect(found).toEqual([{ path: ['url'], message }]);
      expect(JSON.stringify(found)).not.toContain('hunter2');
      expect(JSON.stringify(found)).not.toContain('app:');
    }
    expect(issues({ query: 'SELECT 1' })).toEqual([{ path: ['url'], message: 'expected a postgres://, postgresql://, mysql:// or mariadb:// connection URL, got nothing' }]);
  });

  it('gives its attributes a JSON Schema for the config editor', () => {
    expect(command.attributesJsonSchema).toMatchObject({ type: 'object', required: ['url', 'query'], additionalProperties: false });
  });
});
