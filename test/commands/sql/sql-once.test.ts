import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult } from '../../helpers/cli.js';
import { startMariaDb, type TestMariaDb } from '../../helpers/mariadb.js';
import { serverUrl } from '../../helpers/postgres.js';
import { NUM, runOnce } from '../../helpers/once.js';

/**
 * `vigil once` on a `sql` check, through the built CLI as an operator runs it: the URL comes from the
 * environment through `${VIGIL_SQL_URL}`, and its password shows nowhere in what vigil prints.
 */

let dir: string;
let maria: TestMariaDb;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-sql-once-'));
  maria = await startMariaDb();
});
afterAll(async () => {
  await maria?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Writes a config with one `sql` check whose url is `${VIGIL_SQL_URL}`, and runs `vigil once` on it with `url` in that variable. */
function once(id: string, url: string, attributes: Record<string, unknown>): Promise<CliResult> {
  return runOnce(dir, { id, command: 'sql', attributes: { url: '${VIGIL_SQL_URL}', ...attributes } }, { VIGIL_SQL_URL: url });
}

describe('vigil once: sql', () => {
  it('prints OK with the value and the timings as perfdata for a PostgreSQL query, and exits 0', async () => {
    const url = await serverUrl();
    const result = await once('pg', url, { query: 'SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid()', warn: 5, crit: 10 });
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(new RegExp(`^pg OK ok: postgres(ql)?://[^ ]+: 1 row in ${NUM} ms, first value 1 \\| connect_time=${NUM}ms query_time=${NUM}ms rows=1 value=1;5;10\\n$`));
    expect(result.code).toBe(0);
  });

  it('prints CRIT auth-failed for a MariaDB login with a wrong password, and exits 2, showing no password', async () => {
    const password = `wrong-${maria.password}`;
    const result = await once('maria', `mariadb://${maria.user}:${password}@127.0.0.1:${maria.port}/test`, { query: 'SELECT 1' });
    expect(result.stdout).toBe(
      `maria CRIT auth-failed: authentication failed at mariadb://127.0.0.1:${maria.port}/test: Access denied for user '***'@'127.0.0.1' (using password: YES) (ER_ACCESS_DENIED_ERROR, SQLSTATE 28000)\n`,
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(2);
    expect(result.stdout + result.stderr).not.toContain(maria.password);
  });

  it('prints CRIT tls-error when TLS is required of a MariaDB without it, and exits 2', async () => {
    const result = await once('maria-tls', maria.url, { query: 'SELECT 1', tls: 'require' });
    expect(result.stdout).toBe(`maria-tls CRIT tls-error: TLS (require) with mysql://127.0.0.1:${maria.port}/test failed: HANDSHAKE_NO_SSL_SUPPORT Server does not support secure connection\n`);
    expect(result.code).toBe(2);
  });
});
