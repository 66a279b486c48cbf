import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { fakeBuiltins, issuesOf } from '../helpers/config-fixtures.js';

// No plugins here, so the directory they would be found in does not matter.
const baseDir = process.cwd();



describe('${ENV} substitution', () => {
  const options = (env: Record<string, string | undefined>) => ({ ...fakeBuiltins, env, baseDir });

  it('substitutes set variables and defaults, reads a whole reference as a scalar, and keeps $${ literal', async () => {
    const raw = {
      server: { host: '${HOST}', port: '${PORT}', apiToken: '${TOKEN:-dev-token}', dataDir: '${EMPTY:-/var/lib/vigil}' },
      checks: [
        {
          id: 'web-${SUFFIX}',
          command: 'fake',
          suppressed: '${MAINTENANCE}',
          attributes: { port: '${DB_PORT:-5432}' },
          metadata: { url: 'http://${HOST}:${PORT}/', literal: 'cost $${AMOUNT}', word: '${WORD}', nothing: '${NOTHING}' },
        },
      ],
    };
    const env = { HOST: 'db.internal', PORT: '8080', SUFFIX: 'eu', MAINTENANCE: 'true', EMPTY: '', WORD: 'yes', NOTHING: 'null' };
    const config = await parseConfig(raw, options(env));
    expect(config.server).toMatchObject({ host: 'db.internal', port: 8080, apiToken: 'dev-token', dataDir: '/var/lib/vigil' });
    expect(config.checks[0]).toMatchObject({
      id: 'web-eu',
      suppressed: true,
      attributes: { host: '127.0.0.1', port: 5432 },
      // Text around a reference keeps the result a string; YAML 1.2 reads `yes` as a string.
      metadata: { url: 'http://db.internal:8080/', literal: 'cost ${AMOUNT}', word: 'yes', nothing: null },
    });
  });

  it('keeps a whole reference as text unless it reads back exactly as the scalar it would become', async () => {
    const raw = { checks: [{ id: 'x', command: 'fake', attributes: { port: 1 }, metadata: { pin: '${PIN}', exp: '${EXP}', hex: '${HEX}', empty: '${EMPTY}', n: '${N}', yes: '${T}' } }] };
    const env = { PIN: '007', EXP: '1e5', HEX: '0x1F', EMPTY: '', N: '12.5', T: 'true' };
    const config = await parseConfig(raw, options(env));
    // Secrets such as a password `007` keep every character; numbers and booleans written plainly still become them.
    expect(config.checks[0]?.metadata).toEqual({ pin: '007', exp: '1e5', hex: '0x1F', empty: '', n: 12.5, yes: true });
  });

  it('reports an unset variable at its path, and not again as a shape error', async () => {
    const raw = { server: { apiToken: '${VIGIL_API_TOKEN}', port: '${PORT}' }, checks: [{ id: 'a', command: 'noop', pool: '${POOL' }] };
    const issues = await issuesOf(parseConfig(raw, options({})));
    expect(issues).toEqual([
      'server.apiToken: environment variable VIGIL_API_TOKEN is not set',
      'server.port: environment variable PORT is not set',
      'checks[0].pool: expected ${VAR} or ${VAR:-default} (or $${ for a literal ${), got an unterminated "${POOL"',
    ]);
  });

  it('reads the variables from process.env by default', async () => {
    process.env.VIGIL_TEST_CONFIG_HOST = 'from-process-env';
    try {
      const { env: _, ...withoutEnv } = fakeBuiltins;
      const config = await parseConfig({ server: { host: '${VIGIL_TEST_CONFIG_HOST}' } }, { ...withoutEnv, baseDir });
      expect(config.server.host).toBe('from-process-env');
    } finally {
      delete process.env.VIGIL_TEST_CONFIG_HOST;
    }
  });
});
