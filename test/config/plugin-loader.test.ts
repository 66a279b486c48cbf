import { writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/config.js';
import { fakeBuiltins, issuesOf, useConfigDir } from '../helpers/config-fixtures.js';

const { dir, writeConfig } = useConfigDir('vigil-plugins-');




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
    const root = join(dir(), 'with-plugins');
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
    const issues = await issuesOf(loadConfig(file, fakeBuiltins));
    expect(issues).toEqual(['checks[1].attributes.text: expected a string, got nothing']);

    await writeFile(file, `plugins: [./plugins/echo.mjs, ${JSON.stringify(fromCwd)}]\nhandlers: { audit: { file: x.log } }\nchecks: [{ id: shout, command: echo, attributes: { text: hello }, handlers: [audit] }]\n`);
    const config = await loadConfig(file, fakeBuiltins);
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
    const base = join(dir(), 'bad-plugins');
    await writeConfig('bad-plugins/incomplete.mjs', `export const commands = [{ name: 'half' }];\nexport const handlers = 'audit';\n`);
    await writeConfig('bad-plugins/clash.mjs', `export const commands = [{ name: 'fake', parse: () => ({ ok: true, value: {} }), run: async () => ({}) }];\n`);
    await writeConfig('bad-plugins/nothing.mjs', `export const helper = 1;\n`);
    await writeConfig('bad-plugins/throws.mjs', `throw new Error('boom');\n`);
    const raw = { plugins: ['./incomplete.mjs', './clash.mjs', './nothing.mjs', './missing.mjs', './throws.mjs', 7] };
    const issues = await issuesOf(parseConfig(raw, { ...fakeBuiltins, baseDir: base }));
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
    const issues = await issuesOf(parseConfig({ plugins: ['./echo.mjs', './echo-again.mjs'] }, { ...fakeBuiltins, baseDir: join(dir(), 'twice') }));
    expect(issues).toEqual(['plugins[1]: commands[0]: command "echo" is already defined by plugins[0]']);
  });
});
