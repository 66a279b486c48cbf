import { describe, expect, it } from 'vitest';
import * as vigil from '../src/index.js';
import { builtinCommands, builtinHandlerTypes } from '../src/plugins/builtins.js';

/** The public library API: what a plugin author or embedder needs, and not the engine's internals. */
describe('the public API (src/index.ts)', () => {
  it('exports a factory for every built-in command and handler type', () => {
    const exported = new Set(Object.values(vigil));
    const factories = Object.entries(vigil).filter(([name]) => name.endsWith('Command') && name !== 'defineCommand');
    const made = new Set(factories.map(([, factory]) => (factory as () => { name: string })().name));
    for (const command of builtinCommands()) expect(made, `command ${command.name}`).toContain(command.name);
    for (const type of builtinHandlerTypes()) expect(exported, `handler type ${type.type}`).toContain(type);
  });

  it('exports the contracts and the engine, not its internal steps', () => {
    for (const name of ['Server', 'defineCommand', 'defineHandler', 'listenForAbort', 'startDaemon', 'MemoryQueue', 'TrackedMemoryQueue', 'PostgresQueue', 'CompletionRefusedError', 'systemClock', 'z']) {
      expect(vigil, name).toHaveProperty(name);
    }
    for (const name of ['runCheck', 'transition', 'acknowledge', 'recentResults', 'PostgresInstances', 'startHeartbeat']) expect(vigil, name).not.toHaveProperty(name);
  });
});
