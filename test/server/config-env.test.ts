import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCommand } from '../../src/commands/command.js';
import { defineHandler } from '../../src/handlers/handler.js';
import { parseConfig, type LoadConfigOptions } from '../../src/server/config.js';
import { nonEmptyString, port } from '../../src/server/schema-types.js';
import { formatIssue, ValidationError } from '../../src/server/validation.js';

const fakeCommand = defineCommand({
  name: 'fake',
  attributes: z.strictObject({ host: nonEmptyString('a host').default('127.0.0.1'), port: port() }),
  run: () => Promise.resolve({ state: 'ok', reason: 'ok', message: 'fine' }),
});
const noopCommand = defineCommand({
  name: 'noop',
  attributes: z.strictObject({}),
  run: () => Promise.resolve({ state: 'ok', reason: 'ok', message: 'nothing to do' }),
});
const create = (name: string) => ({ name });
const logType = defineHandler({ type: 'log', options: z.strictObject({ level: z.enum(['info', 'warn']).default('info') }), create });
const prometheusType = defineHandler({ type: 'prometheus', options: z.strictObject({}), create });
const webhookType = defineHandler({ type: 'webhook', options: z.strictObject({ url: nonEmptyString('a URL') }), create });

const builtins: LoadConfigOptions = {
  env: {},
  commands: [fakeCommand, noopCommand],
  handlerTypes: [logType, prometheusType, webhookType],
};

// No plugins here, so the directory they would be found in does not matter.
const baseDir = process.cwd();


/** The formatted issues of the ValidationError `promise` rejects with. */
async function issuesOf(promise: Promise<unknown>): Promise<string[]> {
  const error: unknown = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  expect(error).toBeInstanceOf(ValidationError);
  return (error as ValidationError).issues.map(formatIssue);
}

describe('${ENV} substitution', () => {
  const options = (env: Record<string, string | undefined>) => ({ ...builtins, env, baseDir });

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
      const { env: _, ...withoutEnv } = builtins;
      const config = await parseConfig({ server: { host: '${VIGIL_TEST_CONFIG_HOST}' } }, { ...withoutEnv, baseDir });
      expect(config.server.host).toBe('from-process-env');
    } finally {
      delete process.env.VIGIL_TEST_CONFIG_HOST;
    }
  });
});
