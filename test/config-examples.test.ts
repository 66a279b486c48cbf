import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { builtinCommands, builtinHandlerTypes } from '../src/plugins/builtins.js';
import { initialCheckState } from '../src/checks/check.js';
import type { Outcome } from '../src/handlers/handler.js';
import { Registry } from 'prom-client';
import { loadConfig } from '../src/config/config.js';
import { toResult } from '../src/results/result.js';
import { silentLogger } from './helpers/logger.js';

/** The shipped example config and the custom command and handler it loads through `plugins:`. */
describe('config/vigil.yaml and config/examples', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-examples-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const load = () => loadConfig('config/vigil.yaml', { env: {}, commands: builtinCommands(), handlerTypes: builtinHandlerTypes() });

  it('loads the example plugins: the load-average command runs and validates its attributes', async () => {
    const config = await load();
    expect(config.checks.map((check) => check.id)).toEqual(['vigil-port', 'postgres-port', 'load']);
    const command = config.commands.get('load-average');
    expect(command).toBeDefined();
    const load1 = config.checks.find((check) => check.id === 'load');
    const outcome = await command!.run(load1!.attributes, {
      checkId: 'load',
      signal: new AbortController().signal,
      deadline: Date.now() + 1000,
      logger: silentLogger(),
      previous: null,
    });
    expect(['ok', 'warn', 'crit']).toContain(outcome.state);
    expect(outcome.metrics?.[0]).toMatchObject({ name: 'load1', warn: 4, crit: 8 });
    expect(command!.parse({ warn: 9, crit: 2, extra: 1 })).toEqual({
      ok: false,
      issues: [
        { path: ['extra'], message: 'unknown key' },
      ],
    });
    expect(command!.parse({ warn: 9, crit: 2 })).toEqual({ ok: false, issues: [{ path: ['warn'], message: 'expected warn ≤ crit (2), got 9' }] });
  });

  it('loads the example jsonl handler, which appends state changes to its file', async () => {
    const config = await load();
    const type = config.handlerTypes.get('jsonl');
    expect(type).toBeDefined();
    const file = join(dir, 'changes.jsonl');
    const parsed = type!.parseOptions({ file });
    if (!parsed.ok) throw new Error('the jsonl options should parse');
    const handler = type!.create('changes', parsed.value, { logger: silentLogger(), registry: new Registry() });
    const spec = config.checks.find((check) => check.id === 'postgres-port')!;
    const result = toResult({ state: 'crit', reason: 'refused', message: 'connection refused' }, Date.now(), 1);
    const down: Outcome = {
      check: spec,
      result,
      previous: initialCheckState,
      state: { ...initialCheckState, stateType: 'soft', attempt: 1, lastResult: result },
      incident: null,
      logger: silentLogger(),
    };
    const same: Outcome = { ...down, previous: down.state };
    await handler.process?.(down, { signal: new AbortController().signal });
    await handler.process?.(same, { signal: new AbortController().signal });
    const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ check: 'postgres-port', state: 'crit', stateType: 'soft', reason: 'refused' });
    expect(type!.parseOptions({})).toMatchObject({ ok: false, issues: [{ path: ['file'] }] });
  });

  it('substitutes VIGIL_HOST into server.host', async () => {
    const config = await loadConfig('config/vigil.yaml', { env: { VIGIL_HOST: '0.0.0.0' }, commands: builtinCommands(), handlerTypes: builtinHandlerTypes() });
    expect(config.server.host).toBe('0.0.0.0');
    expect((await load()).server.host).toBe('127.0.0.1');
  });
});
