import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/config.js';
import { formatIssue, ValidationError } from '../../src/validation/issues.js';
import { fakeBuiltins, issuesOf, useConfigDir } from '../helpers/config-fixtures.js';

const { dir, writeConfig } = useConfigDir('vigil-config-');




describe('queue in the config', () => {
  const parse = (queue: unknown) => parseConfig({ queue }, { ...fakeBuiltins, baseDir: '.' });

  it('defaults to the memory queue, and reads a postgres queue with its defaults', async () => {
    expect((await parse(undefined)).queue).toEqual({ type: 'memory' });
    expect((await parse({})).queue).toEqual({ type: 'memory' });
    expect((await parse({ type: 'postgres', url: 'postgres://vigil@db/vigil' })).queue).toEqual({
      type: 'postgres',
      url: 'postgres://vigil@db/vigil',
      schema: 'vigil',
      migrate: true,
      poolSize: 10,
      pollIntervalMs: 2000,
      leaseFactor: 2,
      leaseMarginMs: 1000,
      heartbeatIntervalMs: 5000,
    });
  });

  it('names what is wrong with a queue', async () => {
    expect(await issuesOf(parse({ type: 'redis' }))).toEqual(['queue.type: expected type memory or postgres, got "redis"']);
    expect(await issuesOf(parse({ type: 'memory', url: 'x' }))).toEqual(['queue.url: unknown key']);
  });
});

describe('pools in the config', () => {
  const parse = (server: Record<string, unknown>, checks: unknown[] = []) =>
    parseConfig({ server, checks }, { ...fakeBuiltins, baseDir: '.' });

  it('defaults to a default pool (85 %), an exec pool (10 %) and a browser pool (5 %) when none are configured', async () => {
    const config = await parse({});
    expect(config.server.pools.map((pool) => [pool.name, pool.ratio, pool.shared])).toEqual([['default', 0.85, false], ['exec', 0.1, false], ['browser', 0.05, false]]);
    expect(config.server.poolRouting).toEqual({ fallback: 'default', byCommand: { exec: 'exec', browser: 'browser' } });
  });

  it('routes exec to a configured pool named exec, and honours defaultPool and commandPools', async () => {
    const withExec = await parse({ pools: [{ name: 'net', ratio: 0.8 }, { name: 'exec', ratio: 0.2 }] });
    expect(withExec.server.poolRouting).toEqual({ fallback: 'net', byCommand: { exec: 'exec' } });
    const explicit = await parse({ pools: [{ name: 'a', ratio: 0.5 }, { name: 'b', ratio: 0.5 }], defaultPool: 'b', commandPools: { fake: 'a' } });
    expect(explicit.server.poolRouting).toEqual({ fallback: 'b', byCommand: { fake: 'a' } });
  });

  it('reports duplicate names, ratios over 1, unknown pool references and misplaced routing', async () => {
    const problems = await issuesOf(
      parse(
        { pools: [{ name: 'a', ratio: 0.7 }, { name: 'a', ratio: 0.6 }, { name: 'c', ratio: 0 }], defaultPool: 'z', commandPools: { fake: 'y' } },
        [{ id: 'x', command: 'fake', pool: 'nope', attributes: { port: 1 } }],
      ),
    );
    expect(problems).toEqual(expect.arrayContaining([
      'server.pools[2].ratio: expected a share of concurrency above 0 and at most 1, got 0',
    ]));
    const second = await issuesOf(
      parse({ pools: [{ name: 'a', ratio: 0.7 }, { name: 'a', ratio: 0.6 }], defaultPool: 'z', commandPools: { fake: 'y' } }, [{ id: 'x', command: 'fake', pool: 'nope', attributes: { port: 1 } }]),
    );
    expect(second).toEqual([
      'server.pools[1].name: duplicate pool name "a"',
      'server.pools: expected ratios adding up to at most 1, got 1.3',
      'server.defaultPool: unknown pool "z"; known pools: a',
      'server.commandPools.fake: unknown pool "y"; known pools: a',
      'checks[0].pool: unknown pool "nope"; known pools: a',
    ]);
    expect(await issuesOf(parse({ defaultPool: 'a' }))).toEqual(['server.defaultPool: expected server.pools to be configured first']);
  });
});

describe('loadConfig', () => {
  it('applies defaults, parses durations and freezes the result', async () => {
    const file = await writeConfig(
      'valid/vigil.yaml',
      `
server:
  port: 0
  concurrency: 16
  stopTimeout: 2s
  pools: [{ name: premium, ratio: 0.6 }, { name: basic, ratio: 0.3 }, { name: overflow, ratio: 0.1, shared: true }]
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
    const config = await loadConfig(file, fakeBuiltins);

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
      pools: [
        { name: 'premium', ratio: 0.6, shared: false },
        { name: 'basic', ratio: 0.3, shared: false },
        { name: 'overflow', ratio: 0.1, shared: true },
      ],
      // Checks that name no pool go to the first shared pool; no pool is named exec, so exec has no default.
      poolRouting: { fallback: 'overflow', byCommand: {} },
      safeMode: true,
      protectReads: false,
      exitOnPathChange: false,
      pathCheckIntervalMs: 5000,
      heapGrowthPercent: 30,
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
    const config = await loadConfig(await writeConfig('empty.yaml', '# nothing yet\n'), fakeBuiltins);
    expect(config.checks).toEqual([]);
    expect(config.server.port).toBe(9470);
    expect(config.handlers.map((handler) => handler.name)).toEqual(['log', 'prometheus']);
  });

  it('reports a missing file as a ValidationError naming it', async () => {
    const file = join(dir(), 'nowhere.yaml');
    const error: unknown = await loadConfig(file, fakeBuiltins).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toBe(`invalid config ${file}:\n  file not found: ${file}`);
  });

  it('reports a YAML syntax error with its line and column', async () => {
    const file = await writeConfig('broken.yaml', 'server:\n  port: 9470\nchecks: [\n  - id: x\n');
    const error: unknown = await loadConfig(file, fakeBuiltins).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(ValidationError);
    const { message, issues } = error as ValidationError;
    expect(message.startsWith(`invalid config ${file}:\n`)).toBe(true);
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]?.message).toMatch(/^YAML syntax error at line [34], column \d+: /);
  });

  it('reports a duplicate key as a YAML error at its line', async () => {
    const file = await writeConfig('duplicate-key.yaml', 'server:\n  port: 1\n  port: 2\n');
    const issues = await issuesOf(loadConfig(file, fakeBuiltins));
    expect(issues).toEqual([expect.stringMatching(/^YAML syntax error at line 3, column 3: .*unique/)]);
  });
});

describe('parseConfig problems', () => {
  it('reports every problem at once, each with its path, what was expected and what was found', async () => {
    const raw = {
      server: { port: 70000, colour: 'blue', heapGrowthPercent: -5 },
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
    const error: unknown = await parseConfig(raw, { ...fakeBuiltins, file: 'config/vigil.yaml', baseDir: dir() }).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message.split('\n')[0]).toBe('invalid config config/vigil.yaml:');
    expect((error as ValidationError).issues.map(formatIssue)).toEqual([
      'extra: unknown key',
      'server.port: expected an integer 0–65535, got 70000',
      'server.heapGrowthPercent: expected an integer 0–1000, got -5',
      'server.colour: unknown key',
      'queue.url: expected a postgres:// connection URL, got nothing',
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
    const issues = await issuesOf(parseConfig(raw, { ...fakeBuiltins, baseDir: dir() }));
    expect(issues).toEqual([
      expect.stringMatching(/^checks\[0\]\.id: expected an id of at most 200 .*, got "x+\.\.\."$/),
      'checks[1].timeout: expected at most the default interval (10s), got "20s"',
    ]);
  });

  it('checks the default handlers and the options of handler types used by name', async () => {
    const raw = { defaults: { handlers: ['log', 'nope'] }, checks: [{ id: 'a', command: 'noop', handlers: ['webhook'] }] };
    const issues = await issuesOf(parseConfig(raw, { ...fakeBuiltins, baseDir: dir() }));
    expect(issues).toEqual([
      'defaults.handlers[1]: unknown handler "nope"; known handlers: log, prometheus, webhook',
      'checks[0].handlers[0]: handler type "webhook" needs options (url: expected a URL, got nothing): configure a handler for it under handlers',
    ]);
  });

  it('rejects a top level that is not a mapping', async () => {
    const issues = await issuesOf(parseConfig(['a'], { ...fakeBuiltins, baseDir: dir() }));
    expect(issues).toEqual(['expected a mapping with server, queue, defaults, handlers, plugins and checks, got an array']);
  });
});
