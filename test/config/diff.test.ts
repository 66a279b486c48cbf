import { describe, expect, it } from 'vitest';
import type { CheckSpec } from '../../src/checks/check.js';
import { builtinCommands, builtinHandlerTypes } from '../../src/plugins/builtins.js';
import { parseConfig } from '../../src/config/config.js';
import { diffChecks } from '../../src/config/diff.js';

function spec(id: string, overrides: Partial<CheckSpec> = {}): CheckSpec {
  return {
    id,
    command: 'tcp',
    attributes: { host: '127.0.0.1', port: 5432, options: { tls: false } },
    intervalMs: 60_000,
    timeoutMs: 10_000,
    retryIntervalMs: 15_000,
    maxAttempts: 3,
    recoverAfter: 1,
    handlers: ['log', 'prometheus'],
    pool: null,
    metadata: { team: 'storage' },
    suppressed: false,
    ...overrides,
  };
}

describe('diffChecks', () => {
  it('sorts checks into added, removed, changed and unchanged by id', () => {
    const current = [spec('a'), spec('b'), spec('c'), spec('d')];
    const next = [spec('e'), spec('c', { intervalMs: 30_000 }), spec('a'), spec('f')];
    const diff = diffChecks(current, next);
    expect(diff.added.map((check) => check.id)).toEqual(['e', 'f']);
    expect(diff.removed).toEqual(['b', 'd']);
    expect(diff.changed).toEqual([spec('c', { intervalMs: 30_000 })]);
    expect(diff.unchanged).toEqual(['a']);
  });

  it('compares specs deeply, not by identity', () => {
    const current = [spec('same'), spec('attrs'), spec('meta'), spec('handlers')];
    const next = [
      spec('same'),
      spec('attrs', { attributes: { host: '127.0.0.1', port: 5432, options: { tls: true } } }),
      spec('meta', { metadata: { team: 'web' } }),
      spec('handlers', { handlers: ['prometheus', 'log'] }),
    ];
    const diff = diffChecks(current, next);
    expect(diff.unchanged).toEqual(['same']);
    expect(diff.changed.map((check) => check.id)).toEqual(['attrs', 'meta', 'handlers']);
    expect(diff.added).toEqual([]);
    expect(diff.removed).toEqual([]);
  });

  it('treats a change of one-shot to periodic as a change, and empty inputs as nothing to do', () => {
    expect(diffChecks([spec('x', { intervalMs: null })], [spec('x')]).changed.map((check) => check.id)).toEqual(['x']);
    expect(diffChecks([], [])).toEqual({ added: [], removed: [], changed: [], unchanged: [] });
    expect(diffChecks([spec('x')], []).removed).toEqual(['x']);
  });

  it('sees a reparsed tcp check with `expect` (substring or regex) as unchanged', async () => {
    const raw = {
      checks: [
        { id: 'smtp', command: 'tcp', attributes: { host: '127.0.0.1', port: 25, expect: '220 ' } },
        { id: 'ssh', command: 'tcp', attributes: { host: '127.0.0.1', port: 22, expect: '/^SSH-2\\.0-/i' } },
      ],
    };
    const load = () => parseConfig(raw, { baseDir: '.', commands: builtinCommands(), handlerTypes: builtinHandlerTypes() });
    const [running, reloaded] = [await load(), await load()];
    expect(diffChecks(running.checks, reloaded.checks).unchanged).toEqual(['smtp', 'ssh']);
    const edited = await parseConfig(
      { checks: [raw.checks[0], { ...raw.checks[1], attributes: { ...raw.checks[1]?.attributes, expect: '/^SSH-1/' } }] },
      { baseDir: '.', commands: builtinCommands(), handlerTypes: builtinHandlerTypes() },
    );
    expect(diffChecks(running.checks, edited.checks)).toMatchObject({ unchanged: ['smtp'], changed: [{ id: 'ssh' }] });
  });
});
