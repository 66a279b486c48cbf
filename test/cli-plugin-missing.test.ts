import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonProcess, runCli } from './helpers/cli.js';

/**
 * An `exec` plugin missing on this host is a warning, not an error: `vigil validate` reports it with its
 * path (and fails with `--strict`), and `vigil run` starts, the check reporting `plugin-missing` until
 * the program appears, while the other checks run as usual.
 */

let dir: string;
const cleanups: (() => void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-plugin-missing-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(plugin: string): Promise<string> {
  const file = join(dir, 'vigil.json.yaml');
  const config = {
    server: { host: '127.0.0.1', port: 0, dataDir: join(dir, 'data'), stopTimeout: '1s' },
    checks: [
      { id: 'later', command: 'exec', interval: '1s', retryInterval: '1s', timeout: '900ms', attributes: { argv: [plugin, 'hello'] } },
      { id: 'here', command: 'exec', interval: '1s', timeout: '900ms', attributes: { argv: ['/bin/sh', '-c', 'echo "OK - here"'] } },
    ],
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

describe('a missing exec plugin', () => {
  it('is a warning with its path for vigil validate, and an error with --strict', async () => {
    const file = await writeConfig(join(dir, 'check_later'));
    const plain = await runCli(['validate', '-c', file]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(`${file}: valid, 2 checks (1 warning)\n`);
    expect(plain.stderr).toBe(
      `${file}: warning: checks[0].attributes.argv[0]: expected an existing executable file (no such file); the check reports plugin-missing until it appears\n`,
    );
    const strict = await runCli(['validate', '--strict', '-c', file]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toBe('');
    expect(strict.stderr).toContain('checks[0].attributes.argv[0]: expected an existing executable file (no such file)');
    expect(strict.stderr).toContain('invalid with --strict: 1 warning');
  });

  it('lets vigil run start: the check is unknown with reason plugin-missing until the file appears', async () => {
    const plugin = join(dir, 'check_later');
    const file = await writeConfig(plugin);
    const daemon = new DaemonProcess(['-c', file, '--log-level', 'debug']);
    cleanups.push(() => daemon.kill());
    await daemon.waitForMessage('vigil started');
    expect(daemon.lines.some((line) => line.path === 'checks[0].attributes.argv[0]' && String(line.msg).startsWith('config warning:'))).toBe(true);
    const missing = await daemon.waitFor((line) => line.checkId === 'later' && line.reason === 'plugin-missing');
    expect(missing).toMatchObject({ state: 'unknown', msg: 'check_later: expected an existing executable file (no such file)' });
    await daemon.waitFor((line) => line.checkId === 'here' && line.state === 'ok');

    await writeFile(plugin, '#!/bin/sh\necho "OK - $1"\n');
    await chmod(plugin, 0o755);
    const arrived = await daemon.waitFor((line) => line.checkId === 'later' && line.state === 'ok');
    expect(arrived).toMatchObject({ reason: 'ok', msg: 'OK - hello' });
  });
});
