import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { execCommand, type ExecAttributes } from '../../../src/commands/exec/exec.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { capturingLogger, silentLogger } from '../../helpers/logger.js';

const PLUGINS = '/usr/lib/nagios/plugins';
const SH = '/bin/sh';
const NODE = process.execPath;

const exec = execCommand({ killGraceMs: 200 });
const logger = silentLogger();

function ctx(signal: AbortSignal = AbortSignal.timeout(10_000), log = logger): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 10_000, logger: log, previous: null };
}

function parse(raw: unknown): ExecAttributes {
  const parsed = exec.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function run(raw: Record<string, unknown>, signal?: AbortSignal): Promise<CommandOutcome> {
  return exec.run(parse(raw), ctx(signal));
}

function issues(raw: unknown) {
  const parsed = exec.parse(raw);
  if (parsed.ok) throw new Error(`expected issues, got ${JSON.stringify(parsed.value)}`);
  return parsed.issues;
}

const servers: Server[] = [];
const sockets = new Set<Socket>();
const dirs: string[] = [];
const pidsToReap: number[] = [];

function track(server: Server): Server {
  servers.push(server);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  return server;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-exec-'));
  dirs.push(dir);
  return dir;
}

/** Whether a process runs: it exists and is not a zombie (an orphan's zombie waits for an init that may not reap). */
function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Waits until the plugin wrote `count` pids, one a line, into `file`. */
async function pidsIn(file: string, count: number): Promise<number[]> {
  return vi.waitFor(
    () => {
      const pids = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : [];
      if (pids.length < count) throw new Error(`${pids.length} of ${count} pids written so far`);
      pidsToReap.push(...pids);
      return pids;
    },
    { timeout: 5000, interval: 10 },
  );
}

async function expectGone(pids: readonly number[]): Promise<void> {
  await vi.waitFor(() => expect(pids.filter(alive)).toEqual([]), { timeout: 5000, interval: 20 });
}

afterEach(async () => {
  for (const pid of pidsToReap.splice(0)) {
    try {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      // Gone between the look and the kill.
    }
  }
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('exec command: real plugins', () => {
  it('maps check_dummy exit codes 0–3 to ok/warn/crit/unknown with the plugin text', async () => {
    const expected = [
      ['0', 'ok', 'ok', 'OK: all good'],
      ['1', 'warn', 'plugin', 'WARNING: all good'],
      ['2', 'crit', 'plugin', 'CRITICAL: all good'],
      ['3', 'unknown', 'plugin', 'UNKNOWN: all good'],
    ] as const;
    for (const [code, state, reason, message] of expected) {
      const outcome = await run({ argv: [`${PLUGINS}/check_dummy`, code, 'all good'] });
      expect(outcome, code).toEqual({ state, reason, message, metrics: [] });
    }
  });

  it('reports the plugin\'s own unknown for arguments it refuses', async () => {
    const outcome = await run({ argv: [`${PLUGINS}/check_dummy`, '5'] });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'plugin', message: 'UNKNOWN: Status 5 is not a supported error state' });
  });

  it('runs check_tcp against a local server: ok with its time metric', async () => {
    const port = await listen(track(createServer()));
    const outcome = await run({ argv: [`${PLUGINS}/check_tcp`, '-H', '127.0.0.1', '-p', String(port), '-t', '5'] });
    expect(outcome.state).toBe('ok');
    expect(outcome.reason).toBe('ok');
    expect(outcome.message).toMatch(new RegExp(`^TCP OK - [\\d.]+ second response time on 127\\.0\\.0\\.1 port ${port}$`));
    expect(outcome.metrics).toHaveLength(1);
    expect(outcome.metrics?.[0]).toMatchObject({ name: 'time', unit: 's', kind: 'gauge' });
    expect(outcome.metrics?.[0]?.value).toBeGreaterThanOrEqual(0);
    expect(outcome.metrics?.[0]?.value).toBeLessThan(5);
  });

  it('runs check_tcp against a closed port: crit from the plugin', async () => {
    const server = createServer();
    const port = await listen(server);
    await new Promise((resolve) => server.close(resolve));
    const outcome = await run({ argv: [`${PLUGINS}/check_tcp`, '-H', '127.0.0.1', '-p', String(port), '-t', '5'] });
    expect(outcome).toEqual({
      state: 'crit',
      reason: 'plugin',
      message: `connect to address 127.0.0.1 and port ${port}: Connection refused`,
      metrics: [],
    });
  });

  it('runs check_http against a local server: ok with time and size, crit on a 503', async () => {
    let status = 200;
    const body = 'hello from vigil\n';
    const server = track(createHttpServer((_request, response) => response.writeHead(status, { 'content-type': 'text/plain' }).end(body)));
    const port = await listen(server);
    const argv = [`${PLUGINS}/check_http`, '-I', '127.0.0.1', '-p', String(port), '-u', '/health', '-t', '5'];

    const ok = await run({ argv });
    expect(ok.state).toBe('ok');
    expect(ok.reason).toBe('ok');
    expect(ok.message).toMatch(/^HTTP OK: HTTP\/1\.1 200 OK - \d+ bytes in [\d.]+ second response time$/);
    const [time, size] = ok.metrics ?? [];
    expect(time).toMatchObject({ name: 'time', unit: 's', kind: 'gauge' });
    expect(time?.value).toBeLessThan(5);
    expect(size).toMatchObject({ name: 'size', unit: 'B', kind: 'gauge' });
    expect(size?.value).toBeGreaterThan(body.length);

    status = 503;
    const crit = await run({ argv });
    expect(crit.state).toBe('crit');
    expect(crit.reason).toBe('plugin');
    expect(crit.message).toContain('503 Service Unavailable');
  });

  it('runs the documented check_disk example and reads its perfdata', async () => {
    const outcome = await run({ argv: [`${PLUGINS}/check_disk`, '-w', '20%', '-c', '10%', '-p', '/'] });
    // The state depends on this machine's disk; the plugin answering and its perfdata do not.
    expect(['ok', 'warn', 'crit']).toContain(outcome.state);
    expect(outcome.reason).toBe(outcome.state === 'ok' ? 'ok' : 'plugin');
    expect(outcome.message).toMatch(/^DISK (OK|WARNING|CRITICAL)/);
    expect(outcome.metrics?.[0]).toMatchObject({ name: 'root', unit: 'B', kind: 'gauge' });
    expect(outcome.metrics?.[0]?.warn).toBeGreaterThan(0);
    expect(outcome.metrics?.[0]?.crit).toBeGreaterThan(outcome.metrics?.[0]?.warn ?? Infinity);
  });
});

describe('exec command: exit codes, output and errors', () => {
  it('reports other exit codes as plugin-error with the code and the text', async () => {
    const outcome = await run({ argv: [SH, '-c', 'echo "boom | x=1"; exit 7'] });
    expect(outcome).toEqual({
      state: 'unknown',
      reason: 'plugin-error',
      message: 'sh exited with code 7, expected 0–3: boom',
      metrics: [{ name: 'x', value: 1, unit: '', kind: 'gauge' }],
    });
  });

  it('reports a plugin killed by a signal as plugin-error naming the signal', async () => {
    const outcome = await run({ argv: [SH, '-c', 'echo dying; kill -USR1 $$'] });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'plugin-error', message: 'sh was killed by SIGUSR1: dying' });
  });

  it('says so when a plugin prints nothing, and falls back on the last line of standard error', async () => {
    expect(await run({ argv: [SH, '-c', 'exit 2'] })).toMatchObject({ state: 'crit', reason: 'plugin', message: 'sh exited with code 2 and printed nothing' });

    const { logger: log, lines } = capturingLogger();
    const attrs = parse({ argv: [SH, '-c', 'echo "Traceback (most recent call last):" >&2; echo "ValueError: bad" >&2; exit 3'] });
    const outcome = await exec.run(attrs, ctx(undefined, log));
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'plugin', message: 'stderr: ValueError: bad' });
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'plugin wrote to standard error', stderr: 'Traceback (most recent call last):\nValueError: bad' }));
  });

  it('reads long output: the message from the first line, perfdata from every part', async () => {
    const script = `process.stdout.write("OK main line | a=1;2;3\\nlong one\\nlong two | b=4ms\\nc=5c\\n")`;
    expect(await run({ argv: [NODE, '-e', script] })).toEqual({
      state: 'ok',
      reason: 'ok',
      message: 'OK main line',
      metrics: [
        { name: 'a', value: 1, unit: '', kind: 'gauge', warn: 2, crit: 3 },
        { name: 'b', value: 4, unit: 'ms', kind: 'gauge' },
        { name: 'c', value: 5, unit: 'c', kind: 'counter' },
      ],
    });
  });

  it('keeps maxOutputBytes of output, drains the rest so the plugin finishes, and notes the cut', async () => {
    // 300 KB is far beyond a pipe's buffer: a reader that stopped reading would leave the plugin blocked.
    const script = `process.stdout.write("OK first | a=1\\n" + "x".repeat(300000) + "| b=2\\n")`;
    const outcome = await run({ argv: [NODE, '-e', script], maxOutputBytes: 1000 });
    expect(outcome).toEqual({
      state: 'ok',
      reason: 'ok',
      message: 'OK first (output truncated to 1000 bytes)',
      metrics: [{ name: 'a', value: 1, unit: '', kind: 'gauge' }],
    });
  });

  it('keeps no perfdata from a cut line, which could hold a cut number', async () => {
    const script = `process.stdout.write("OK " + "y".repeat(50) + " | size=123456789B")`;
    const outcome = await run({ argv: [NODE, '-e', script], maxOutputBytes: 70 });
    expect(outcome).toEqual({ state: 'ok', reason: 'ok', message: `OK ${'y'.repeat(50)} (output truncated to 70 bytes)`, metrics: [] });
  });

  it('reports spawn-error when the program went away or lost its permission after loading', async () => {
    const dir = tempDir();
    const plugin = join(dir, 'check_gone');
    writeFileSync(plugin, '#!/bin/sh\necho OK\n', { mode: 0o755 });
    const attrs = parse({ argv: [plugin] });
    expect(await exec.run(attrs, ctx())).toMatchObject({ state: 'ok', message: 'OK' });

    chmodSync(plugin, 0o644);
    expect(await exec.run(attrs, ctx())).toEqual({ state: 'unknown', reason: 'spawn-error', message: `cannot start ${plugin}: EACCES (permission denied)` });

    unlinkSync(plugin);
    expect(await exec.run(attrs, ctx())).toEqual({ state: 'unknown', reason: 'spawn-error', message: `cannot start ${plugin}: ENOENT (no such file or directory)` });
  });

  it('reports spawn-error naming the working directory when it went away', async () => {
    const dir = tempDir();
    const attrs = parse({ argv: [SH, '-c', 'pwd'], cwd: dir });
    rmSync(dir, { recursive: true });
    expect(await exec.run(attrs, ctx())).toMatchObject({ state: 'unknown', reason: 'spawn-error', message: `cannot start ${SH} in ${dir}: ENOENT (no such file or directory)` });
  });
});

describe('exec command: environment and working directory', () => {
  it('gives the plugin PATH, LANG=C and its env, and nothing else of the daemon', async () => {
    const secret = 'VIGIL_EXEC_TEST_SECRET';
    process.env[secret] = 'must not leak';
    try {
      const outcome = await run({ argv: [NODE, '-e', 'process.stdout.write(JSON.stringify(process.env))'], env: { FOO: 'bar baz', EMPTY: '' } });
      expect(outcome.state).toBe('ok');
      expect(JSON.parse(outcome.message)).toEqual({ PATH: process.env['PATH'], LANG: 'C', FOO: 'bar baz', EMPTY: '' });
    } finally {
      delete process.env[secret];
    }
  });

  it('lets env override LANG and PATH, and looks the program up on that PATH', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'check_here'), '#!/bin/sh\necho "LANG=$LANG PATH=$PATH"\n', { mode: 0o755 });
    const attrs = parse({ argv: ['check_here'], env: { PATH: `/nonexistent:${dir}`, LANG: 'C.UTF-8' } });
    expect(attrs.argv).toEqual([join(dir, 'check_here')]);
    expect(await exec.run(attrs, ctx())).toMatchObject({ state: 'ok', message: `LANG=C.UTF-8 PATH=/nonexistent:${dir}` });
  });

  it('runs in cwd when given, else in the daemon\'s working directory', async () => {
    const dir = tempDir();
    expect((await run({ argv: [SH, '-c', 'pwd -P'], cwd: dir })).message).toBe(realpathSync(dir));
    expect((await run({ argv: [SH, '-c', 'pwd -P'] })).message).toBe(realpathSync(process.cwd()));
  });
});

describe('exec command: timeouts and process groups', () => {
  it('on abort, reports timeout and kills the whole group, grandchildren included', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'pids');
    const controller = new AbortController();
    const running = run({ argv: [SH, '-c', `echo $$ > ${pidFile}; sleep 60 & echo $! >> ${pidFile}; sleep 60`] }, controller.signal);
    const pids = await pidsIn(pidFile, 2);
    expect(pids.every(alive)).toBe(true);

    const started = performance.now();
    controller.abort(new DOMException('timed out after 300 ms', 'TimeoutError'));
    const outcome = await running;
    expect(performance.now() - started).toBeLessThan(100);
    expect(outcome).toEqual({ state: 'unknown', reason: 'timeout', message: 'sh did not finish: timed out after 300 ms' });
    await expectGone(pids);
  });

  it('sends SIGKILL after the grace to a group that ignores SIGTERM', async () => {
    const patient = execCommand({ killGraceMs: 1000 });
    const dir = tempDir();
    const pidFile = join(dir, 'pids');
    const controller = new AbortController();
    const attrs = patient.parse({ argv: [SH, '-c', `trap "" TERM; echo $$ > ${pidFile}; sleep 60 & echo $! >> ${pidFile}; sleep 60`] });
    if (!attrs.ok) throw new Error('unexpected issues');
    const running = patient.run(attrs.value, ctx(controller.signal));
    const pids = await pidsIn(pidFile, 2);

    controller.abort();
    expect(await running).toMatchObject({ state: 'unknown', reason: 'timeout', message: 'sh did not finish: This operation was aborted' });
    // SIGTERM is ignored (and inherited as ignored by the sleeps): they outlive it, not the SIGKILL.
    expect(pids.filter(alive)).toEqual(pids);
    await expectGone(pids);
  });

  it('ends what a plugin left running in its group when it exits, instead of waiting for it', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'pids');
    const started = performance.now();
    // The background sleep holds the output pipe open: without ending it, the run would last 60 s.
    const outcome = await run({ argv: [SH, '-c', `sleep 60 & echo $! > ${pidFile}; echo "OK done"`] });
    expect(outcome).toMatchObject({ state: 'ok', message: 'OK done' });
    expect(performance.now() - started).toBeLessThan(5000);
    await expectGone(await pidsIn(pidFile, 1));
  });

  it('starts nothing when the signal is already aborted', async () => {
    const dir = tempDir();
    const marker = join(dir, 'started');
    const outcome = await run({ argv: [SH, '-c', `touch ${marker}`] }, AbortSignal.abort(new DOMException('the server is stopping', 'AbortError')));
    expect(outcome).toEqual({ state: 'unknown', reason: 'timeout', message: 'sh was not started: the server is stopping' });
    expect(existsSync(marker)).toBe(false);
  });

  it('keeps the answer of a plugin that exited when only an escaped child holds its output at the deadline', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'pids');
    const controller = new AbortController();
    const fifo = join(dir, 'ready');
    // setsid takes the background sleep out of the plugin's group, so the group kill at exit cannot reach
    // it; the plugin exits only once it has (the fifo), or the kill could come first.
    const script = [
      `echo $$ > ${pidFile}; mkfifo ${fifo}`,
      `setsid sh -c 'echo $$ >> ${pidFile}; echo ready > ${fifo}; exec sleep 60' &`,
      `read ready < ${fifo}; echo "WARNING: partial | a=1"; exit 1`,
    ].join('\n');
    const running = run({ argv: [SH, '-c', script] }, controller.signal);
    const [plugin, escaped] = (await pidsIn(pidFile, 2)) as [number, number];
    // The plugin has exited and been reaped (so the run saw its exit); the escaped sleep holds the pipe.
    await vi.waitFor(() => expect(existsSync(`/proc/${plugin}`)).toBe(false), { timeout: 5000, interval: 10 });
    expect(alive(escaped)).toBe(true);
    controller.abort();
    expect(await running).toMatchObject({ state: 'warn', reason: 'plugin', message: 'WARNING: partial' });
  });
});

describe('exec command: attributes', () => {
  it('accepts the documented example and fills in the defaults', () => {
    const argv = [`${PLUGINS}/check_disk`, '-w', '20%', '-c', '10%', '-p', '/'];
    expect(parse({ argv })).toEqual({ argv, env: { PATH: process.env['PATH'], LANG: 'C' }, maxOutputBytes: 65_536 });
  });

  it('resolves a program name on PATH to its absolute path at load time', () => {
    const { argv } = parse({ argv: ['sh', '-c', 'true'] });
    expect(argv[0]).toMatch(/^\/.*\/sh$/);
    expect(argv.slice(1)).toEqual(['-c', 'true']);
  });

  it('rejects a program that is not executable, is a directory or is relative', () => {
    const dir = tempDir();
    const notExecutable = join(dir, 'check_text');
    writeFileSync(notExecutable, 'just text\n', { mode: 0o644 });
    expect(issues({ argv: [notExecutable] })).toEqual([{ path: ['argv', 0], message: `expected an executable file (no execute permission), got ${JSON.stringify(notExecutable)}` }]);
    expect(issues({ argv: [dir] })).toEqual([{ path: ['argv', 0], message: `expected an executable file (this is a directory), got ${JSON.stringify(dir)}` }]);
    expect(issues({ argv: ['./check_x'] })).toEqual([
      { path: ['argv', 0], message: 'expected a program: an absolute path or a name found on PATH (a relative path is not resolved), got "./check_x"' },
    ]);
    expect(issues({ argv: [''] })).toEqual([{ path: ['argv', 0], message: 'expected a program: an absolute path or a name found on PATH, got ""' }]);
  });

  it('loads a check whose program is missing on this host, with a warning at argv[0] instead of an error', () => {
    const missing = exec.parse({ argv: ['/nonexistent/check_x', '-w', '1'] });
    expect(missing).toEqual({
      ok: true,
      value: { argv: ['/nonexistent/check_x', '-w', '1'], missing: 'expected an existing executable file (no such file)', env: { PATH: process.env['PATH'], LANG: 'C' }, maxOutputBytes: 65_536 },
      warnings: [{ path: ['argv', 0], message: 'expected an existing executable file (no such file); the check reports plugin-missing until it appears' }],
    });
    const notOnPath = exec.parse({ argv: ['check_nope_vigil', '-w'], env: { PATH: '/nonexistent:relative' } });
    expect(notOnPath.ok && notOnPath.warnings).toEqual([
      { path: ['argv', 0], message: 'expected a program: an absolute path or a name found on PATH (not found on PATH /nonexistent:relative); the check reports plugin-missing until it appears' },
    ]);
    // A present program loads without warnings.
    expect(exec.parse({ argv: [SH, '-c', 'true'] })).not.toHaveProperty('warnings');
  });

  it('reports plugin-missing while the program is missing, and runs it once it appears', async () => {
    const dir = tempDir();
    const plugin = join(dir, 'check_later');
    const attrs = parse({ argv: [plugin, 'arrived'] });
    expect(await exec.run(attrs, ctx())).toEqual({ state: 'unknown', reason: 'plugin-missing', message: 'check_later: expected an existing executable file (no such file)' });
    writeFileSync(plugin, '#!/bin/sh\necho "OK - $1"\nexit 0\n', { mode: 0o755 });
    expect(await exec.run(attrs, ctx())).toMatchObject({ state: 'ok', reason: 'ok', message: 'OK - arrived' });
  });

  it('requires argv to be a non-empty array of strings without NUL', () => {
    const message = 'expected a non-empty array of strings: the program, then its arguments';
    expect(issues({})).toEqual([{ path: ['argv'], message: `${message}, got nothing` }]);
    expect(issues({ argv: [] })).toEqual([{ path: ['argv'], message: `${message}, got an array` }]);
    expect(issues({ argv: '/bin/sh -c true' })).toEqual([{ path: ['argv'], message: `${message}, got "/bin/sh -c true"` }]);
    expect(issues({ argv: [SH, 5] })).toEqual([{ path: ['argv', 1], message: 'expected a string, got 5' }]);
    expect(issues({ argv: [SH, 'a\0b'] })).toMatchObject([{ path: ['argv', 1], message: expect.stringContaining('without NUL characters') as unknown }]);
  });

  it('checks env names and values', () => {
    expect(issues({ argv: [SH], env: { 'BAD-NAME': 'x' } })).toEqual([
      { path: ['env', 'BAD-NAME'], message: 'expected a key that is a variable name (letters, digits, _; not starting with a digit) for this value, got "x"' },
    ]);
    expect(issues({ argv: [SH], env: { PORT: 8080 } })).toEqual([{ path: ['env', 'PORT'], message: 'expected a string, got 8080' }]);
    expect(issues({ argv: [SH], env: ['A=1'] })).toMatchObject([{ path: ['env'] }]);
  });

  it('checks cwd: absolute, existing, a directory', () => {
    const dir = tempDir();
    const file = join(dir, 'file');
    writeFileSync(file, '');
    expect(issues({ argv: [SH], cwd: 'relative/dir' })).toEqual([{ path: ['cwd'], message: 'expected an absolute directory path, got "relative/dir"' }]);
    expect(issues({ argv: [SH], cwd: join(dir, 'missing') })).toEqual([
      { path: ['cwd'], message: `expected an existing directory (no such directory), got ${JSON.stringify(join(dir, 'missing'))}` },
    ]);
    expect(issues({ argv: [SH], cwd: file })).toEqual([{ path: ['cwd'], message: `expected a directory (this is not one), got ${JSON.stringify(file)}` }]);
    expect(parse({ argv: [SH], cwd: dir }).cwd).toBe(dir);
  });

  it('reports problems of argv and cwd together', () => {
    expect(issues({ argv: ['./x'], cwd: 'rel' }).map((issue) => issue.path)).toEqual([['argv', 0], ['cwd']]);
  });

  it('checks maxOutputBytes and rejects unknown keys', () => {
    expect(issues({ argv: [SH], maxOutputBytes: 0 })).toEqual([{ path: ['maxOutputBytes'], message: 'expected an integer 1–16777216, got 0' }]);
    expect(issues({ argv: [SH], timeout: '5s' })).toEqual([{ path: ['timeout'], message: 'unknown key' }]);
    expect(parse({ argv: [SH], maxOutputBytes: 1024 }).maxOutputBytes).toBe(1024);
  });

  it('describes its attributes in JSON Schema', () => {
    expect(exec.attributesJsonSchema).toMatchObject({ type: 'object', required: ['argv'], additionalProperties: false });
  });
});
