import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCommand } from '../../src/commands/command.js';
import { defineHandler } from '../../src/handlers/handler.js';
import { configJsonSchema, loadConfig, parseConfig, type LoadConfigOptions } from '../../src/server/config.js';
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

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, text: string): Promise<string> {
  const file = join(dir, name);
  await mkdir(resolve(file, '..'), { recursive: true });
  await writeFile(file, text);
  return file;
}

/** The formatted issues of the ValidationError `promise` rejects with. */
async function issuesOf(promise: Promise<unknown>): Promise<string[]> {
  const error: unknown = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  expect(error).toBeInstanceOf(ValidationError);
  return (error as ValidationError).issues.map(formatIssue);
}

describe('loadConfig', () => {
  it('applies defaults, parses durations and freezes the result', async () => {
    const file = await writeConfig(
      'valid/vigil.yaml',
      `
server: { port: 0, concurrency: 16, stopTimeout: 2s }
queue: { type: memory }
defaults: { retryInterval: 5s, handlers: [quiet-log, prometheus] }
handlers:
  quiet-log: { type: log, level: warn }
checks:
  - id: db-port
    command: fake
    interval: 30s
    attributes: { host: db.internal, port: 5432 }
    metadata: { team: storage }
  - id: fast
    command: fake
    interval: 5s
    attributes: { port: 80 }
    handlers: [log]
  - id: one-shot
    command: noop
    interval: once
    timeout: 1m
    pool: premium
    suppressed: true
  - id: plain
    command: noop
    timeout: 250
    maxAttempts: 5
    recoverAfter: 2
`,
    );
    const config = await loadConfig(file, builtins);

    expect(config.file).toBe(file);
    expect(config.server).toEqual({
      host: '127.0.0.1',
      port: 0,
      concurrency: 16,
      dataDir: resolve(process.cwd(), 'data'),
      apiToken: null,
      stopTimeoutMs: 2000,
      handlerTimeoutMs: 5000,
      stateSaveIntervalMs: 30_000,
    });
    expect(config.queue).toEqual({ type: 'memory' });
    expect(config.defaults).toEqual({
      intervalMs: 60_000,
      timeoutMs: 10_000,
      retryIntervalMs: 5000,
      maxAttempts: 3,
      recoverAfter: 1,
      handlers: ['quiet-log', 'prometheus'],
    });
    // The configured handler first, then handler types used by name, created with their default options.
    expect(config.handlers).toEqual([
      { name: 'quiet-log', type: 'log', options: { level: 'warn' } },
      { name: 'prometheus', type: 'prometheus', options: {} },
      { name: 'log', type: 'log', options: { level: 'info' } },
    ]);

    const [dbPort, fast, oneShot, plain] = config.checks;
    expect(dbPort).toEqual({
      id: 'db-port',
      command: 'fake',
      attributes: { host: 'db.internal', port: 5432 },
      intervalMs: 30_000,
      timeoutMs: 10_000,
      retryIntervalMs: 5000,
      maxAttempts: 3,
      recoverAfter: 1,
      handlers: ['quiet-log', 'prometheus'],
      pool: null,
      metadata: { team: 'storage' },
      suppressed: false,
    });
    // The inherited 10 s timeout gives way to the 5 s interval; attributes get the command's defaults.
    expect(fast).toMatchObject({ intervalMs: 5000, timeoutMs: 5000, handlers: ['log'], attributes: { host: '127.0.0.1', port: 80 } });
    expect(oneShot).toMatchObject({ intervalMs: null, timeoutMs: 60_000, pool: 'premium', suppressed: true, attributes: {} });
    expect(plain).toMatchObject({ intervalMs: 60_000, timeoutMs: 250, maxAttempts: 5, recoverAfter: 2 });

    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(Object.isFrozen(config.checks)).toBe(true);
    expect(Object.isFrozen(dbPort)).toBe(true);
    expect(Object.isFrozen(dbPort?.attributes)).toBe(true);
    expect(Object.isFrozen(dbPort?.metadata)).toBe(true);
    expect(Object.isFrozen(config.handlers[0]?.options)).toBe(true);
    expect(() => {
      (config.checks as unknown as unknown[]).push({});
    }).toThrow(TypeError);
    expect(() => (config.commands as Map<string, unknown>).set('x', {})).toThrow(TypeError);
    expect([...config.commands.keys()]).toEqual(['fake', 'noop']);
    expect([...config.handlerTypes.keys()]).toEqual(['log', 'prometheus', 'webhook']);
  });

  it('reads an empty file as a config with no checks', async () => {
    const config = await loadConfig(await writeConfig('empty.yaml', '# nothing yet\n'), builtins);
    expect(config.checks).toEqual([]);
    expect(config.server.port).toBe(9470);
    expect(config.handlers.map((handler) => handler.name)).toEqual(['log', 'prometheus']);
  });

  it('reports a missing file as a ValidationError naming it', async () => {
    const file = join(dir, 'nowhere.yaml');
    const error: unknown = await loadConfig(file, builtins).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toBe(`invalid config ${file}:\n  file not found: ${file}`);
  });

  it('reports a YAML syntax error with its line and column', async () => {
    const file = await writeConfig('broken.yaml', 'server:\n  port: 9470\nchecks: [\n  - id: x\n');
    const error: unknown = await loadConfig(file, builtins).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(ValidationError);
    const { message, issues } = error as ValidationError;
    expect(message.startsWith(`invalid config ${file}:\n`)).toBe(true);
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]?.message).toMatch(/^YAML syntax error at line [34], column \d+: /);
  });

  it('reports a duplicate key as a YAML error at its line', async () => {
    const file = await writeConfig('duplicate-key.yaml', 'server:\n  port: 1\n  port: 2\n');
    const issues = await issuesOf(loadConfig(file, builtins));
    expect(issues).toEqual([expect.stringMatching(/^YAML syntax error at line 3, column 3: .*unique/)]);
  });
});

describe('parseConfig problems', () => {
  it('reports every problem at once, each with its path, what was expected and what was found', async () => {
    const raw = {
      server: { port: 70000, colour: 'blue' },
      queue: { type: 'postgres' },
      defaults: { interval: 'soon' },
      handlers: {
        'quiet-log': { type: 'log', level: 'loud' },
        pager: { type: 'pagerduty' },
      },
      extra: true,
      checks: [
        { id: 'a', command: 'fake', attributes: { port: 1 }, colour: 'red' },
        { id: 'b', command: 'htp' },
        { id: 'db-port', command: 'fake', attributes: { port: 5432 } },
        { id: 'web', command: 'fake', attributes: { host: 'example.com', port: 'http' } },
        { id: 'c', command: 'noop', handlers: ['log', 'pagr', 'log'] },
        { id: 'db-port', command: 'noop' },
        { id: 'd', command: 'noop', interval: 'soon', retryInterval: true },
        { id: 'e', command: 'noop', interval: '30s', timeout: '1m' },
        { id: 'bad id!', command: 'noop', maxAttempts: 0, suppressed: 'yes', attributes: [] },
        'just a string',
      ],
    };
    const error: unknown = await parseConfig(raw, { ...builtins, file: 'config/vigil.yaml', baseDir: dir }).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message.split('\n')[0]).toBe('invalid config config/vigil.yaml:');
    expect((error as ValidationError).issues.map(formatIssue)).toEqual([
      'extra: unknown key',
      'server.port: expected an integer 0–65535, got 70000',
      'server.colour: unknown key',
      'queue.type: expected "memory", got "postgres"',
      'defaults.interval: expected a duration like 30s, 5m, 250ms, milliseconds, or once, got "soon"',
      'handlers.quiet-log.level: expected one of "info"|"warn", got "loud"',
      'handlers.pager.type: unknown handler type "pagerduty"; known types: log, prometheus, webhook',
      'checks[0].colour: unknown key',
      'checks[1].command: unknown command "htp"; known commands: fake, noop',
      'checks[3].attributes.port: expected an integer 1–65535, got "http"',
      'checks[4].handlers[1]: unknown handler "pagr"; known handlers: log, pager, prometheus, quiet-log, webhook',
      'checks[4].handlers[2]: duplicate handler "log"',
      'checks[5].id: duplicate id "db-port" (first at checks[2])',
      'checks[6].interval: expected a duration like 30s, 5m, 250ms, milliseconds, or once, got "soon"',
      'checks[6].retryInterval: expected a duration like 30s, 5m, 250ms or milliseconds (at least 1ms), got true',
      'checks[7].timeout: expected at most the interval (30s), got "1m"',
      'checks[8].id: expected an id of at most 200 letters, digits and _ . : - starting with a letter or digit, got "bad id!"',
      'checks[8].attributes: expected a mapping, got an array',
      'checks[8].maxAttempts: expected an integer ≥ 1, got 0',
      'checks[8].suppressed: expected true or false, got "yes"',
      'checks[9]: expected a mapping, got "just a string"',
    ]);
  });

  it('rejects an id over 200 characters and a timeout above the default interval', async () => {
    const raw = {
      defaults: { interval: '10s' },
      checks: [
        { id: 'x'.repeat(201), command: 'noop' },
        { id: 'slow', command: 'noop', timeout: '20s' },
      ],
    };
    const issues = await issuesOf(parseConfig(raw, { ...builtins, baseDir: dir }));
    expect(issues).toEqual([
      expect.stringMatching(/^checks\[0\]\.id: expected an id of at most 200 .*, got "x+\.\.\."$/),
      'checks[1].timeout: expected at most the default interval (10s), got "20s"',
    ]);
  });

  it('checks the default handlers and the options of handler types used by name', async () => {
    const raw = { defaults: { handlers: ['log', 'nope'] }, checks: [{ id: 'a', command: 'noop', handlers: ['webhook'] }] };
    const issues = await issuesOf(parseConfig(raw, { ...builtins, baseDir: dir }));
    expect(issues).toEqual([
      'defaults.handlers[1]: unknown handler "nope"; known handlers: log, prometheus, webhook',
      'checks[0].handlers[0]: handler type "webhook" needs options (url: expected a URL, got nothing): configure a handler for it under handlers',
    ]);
  });

  it('rejects a top level that is not a mapping', async () => {
    const issues = await issuesOf(parseConfig(['a'], { ...builtins, baseDir: dir }));
    expect(issues).toEqual(['expected a mapping with server, queue, defaults, handlers, plugins and checks, got an array']);
  });
});

describe('${ENV} substitution', () => {
  const options = (env: Record<string, string | undefined>) => ({ ...builtins, env, baseDir: dir });

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
      const config = await parseConfig({ server: { host: '${VIGIL_TEST_CONFIG_HOST}' } }, { ...withoutEnv, baseDir: dir });
      expect(config.server.host).toBe('from-process-env');
    } finally {
      delete process.env.VIGIL_TEST_CONFIG_HOST;
    }
  });
});

describe('plugins', () => {
  const pluginSource = `
export const commands = [{
  name: 'echo',
  parse(raw) {
    return typeof raw.text === 'string'
      ? { ok: true, value: { text: raw.text.toUpperCase() } }
      : { ok: false, issues: [{ path: ['text'], message: 'expected a string, got nothing' }] };
  },
  async run(attributes) { return { state: 'ok', reason: 'ok', message: attributes.text }; },
}];
`;
  const handlerPluginSource = `
export default {
  handlers: [{
    type: 'audit',
    parseOptions: (raw) => ({ ok: true, value: { file: raw.file ?? 'audit.log' } }),
    create: (name) => ({ name }),
  }],
};
`;

  it('loads commands and handler types, relative to the config file and then to the working directory', async () => {
    const root = join(dir, 'with-plugins');
    await writeConfig('with-plugins/config/plugins/echo.mjs', pluginSource);
    await writeConfig('with-plugins/audit.mjs', handlerPluginSource);
    // Not under the config's directory, so only the working directory finds it.
    const fromCwd = relative(process.cwd(), join(root, 'audit.mjs'));
    const file = await writeConfig(
      'with-plugins/config/vigil.yaml',
      `
plugins: [./plugins/echo.mjs, ${JSON.stringify(fromCwd)}]
handlers: { audit: { file: x.log } }
checks:
  - { id: shout, command: echo, attributes: { text: hello }, handlers: [audit, log] }
  - { id: quiet, command: echo }
`,
    );
    const issues = await issuesOf(loadConfig(file, builtins));
    expect(issues).toEqual(['checks[1].attributes.text: expected a string, got nothing']);

    await writeFile(file, `plugins: [./plugins/echo.mjs, ${JSON.stringify(fromCwd)}]\nhandlers: { audit: { file: x.log } }\nchecks: [{ id: shout, command: echo, attributes: { text: hello }, handlers: [audit] }]\n`);
    const config = await loadConfig(file, builtins);
    expect(config.checks[0]).toMatchObject({ id: 'shout', command: 'echo', attributes: { text: 'HELLO' }, handlers: ['audit'] });
    expect(config.commands.get('echo')?.name).toBe('echo');
    expect([...config.commands.keys()]).toEqual(['fake', 'noop', 'echo']);
    expect([...config.handlerTypes.keys()]).toEqual(['log', 'prometheus', 'webhook', 'audit']);
    expect(config.handlers).toEqual([
      { name: 'audit', type: 'audit', options: { file: 'x.log' } },
      { name: 'log', type: 'log', options: { level: 'info' } },
      { name: 'prometheus', type: 'prometheus', options: {} },
    ]);
  });

  it('reports bad exports, clashing names and missing files at plugins[i]', async () => {
    const base = join(dir, 'bad-plugins');
    await writeConfig('bad-plugins/incomplete.mjs', `export const commands = [{ name: 'half' }];\nexport const handlers = 'audit';\n`);
    await writeConfig('bad-plugins/clash.mjs', `export const commands = [{ name: 'fake', parse: () => ({ ok: true, value: {} }), run: async () => ({}) }];\n`);
    await writeConfig('bad-plugins/nothing.mjs', `export const helper = 1;\n`);
    await writeConfig('bad-plugins/throws.mjs', `throw new Error('boom');\n`);
    const raw = { plugins: ['./incomplete.mjs', './clash.mjs', './nothing.mjs', './missing.mjs', './throws.mjs', 7] };
    const issues = await issuesOf(parseConfig(raw, { ...builtins, baseDir: base }));
    expect(issues).toEqual([
      'plugins[5]: expected a path to an ES module, got 7',
      'plugins[0]: commands[0]: expected a command (name, parse(), run()), got an object without parse(), run()',
      'plugins[0]: export handlers: expected a list of handler types, got "audit"',
      'plugins[1]: commands[0]: command "fake" is already defined by a built-in command',
      'plugins[2]: expected a module exporting commands (a list of commands) and/or handlers (a list of handler types), got exports helper',
      `plugins[3]: file not found: tried ${join(base, 'missing.mjs')} and ${resolve('missing.mjs')}`,
      expect.stringMatching(/^plugins\[4\]: cannot load .*throws\.mjs: boom$/),
    ]);
  });

  it('rejects a name defined by two plugins', async () => {
    await writeConfig('twice/echo.mjs', pluginSource);
    await writeConfig('twice/echo-again.mjs', pluginSource);
    const issues = await issuesOf(parseConfig({ plugins: ['./echo.mjs', './echo-again.mjs'] }, { ...builtins, baseDir: join(dir, 'twice') }));
    expect(issues).toEqual(['plugins[1]: commands[0]: command "echo" is already defined by plugins[0]']);
  });
});

describe('configJsonSchema', () => {
  const schema = configJsonSchema([fakeCommand, noopCommand], [logType, prometheusType, webhookType]);
  const properties = schema.properties as Record<string, Record<string, unknown>>;

  it('types each command’s attributes through an if/then on the command name', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    const items = properties.checks?.items as Record<string, unknown>;
    expect(items.additionalProperties).toBe(false);
    expect(items.required).toEqual(['id', 'command']);
    const allOf = items.allOf as Record<string, Record<string, unknown>>[];
    const fake = allOf.find((entry) => JSON.stringify(entry.if) === JSON.stringify({ properties: { command: { const: 'fake' } }, required: ['command'] }));
    const { $schema: _, ...fakeAttributes } = fakeCommand.attributesJsonSchema ?? {};
    expect(fake?.then).toEqual({ properties: { attributes: fakeAttributes } });
    expect(fakeAttributes).toMatchObject({ properties: { port: { type: 'integer', minimum: 1, maximum: 65535 } }, required: ['port'] });
  });

  it('accepts durations as a pattern string or a number, and `once` for an interval', () => {
    const check = (properties.checks?.items as { properties: Record<string, Record<string, unknown>> }).properties;
    expect(check.timeout).toMatchObject({ type: ['string', 'number'], pattern: expect.any(String) as unknown });
    const pattern = new RegExp(check.timeout?.pattern as string);
    expect(['30s', '250ms', '1.5h', '1d'].every((text) => pattern.test(text))).toBe(true);
    expect(pattern.test('soon')).toBe(false);
    expect(JSON.stringify(check.interval)).toContain('"const":"once"');
    expect(properties.server).toMatchObject({ additionalProperties: false, properties: { port: { default: 9470 }, stopTimeout: { default: '10s' } } });
  });

  it('types handler entries by their type, defaulting the type to the entry name', () => {
    const handlers = properties.handlers as { properties: Record<string, unknown>; additionalProperties: Record<string, unknown> };
    expect(handlers.additionalProperties.required).toEqual(['type']);
    expect((schema.$defs as Record<string, unknown>)['handler-options-webhook']).toMatchObject({
      properties: { type: {}, url: { type: 'string', minLength: 1 } },
      required: ['url'],
      additionalProperties: false,
    });
    // An entry named like a type takes that type's options when it has no `type` of its own.
    expect(JSON.stringify(handlers.properties.webhook)).toContain('{"if":{"not":{"required":["type"]}},"then":{"$ref":"#/$defs/handler-options-webhook"}}');
    expect(JSON.stringify(handlers.additionalProperties)).toContain('"const":"webhook"');
  });
});
