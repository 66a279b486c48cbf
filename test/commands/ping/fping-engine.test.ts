import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { fpingArguments, fpingPingEngine, fpingStatistics, parseFpingOutput, type FpingPingEngineOptions } from '../../../src/commands/ping/fping-engine.js';
import { pingCommand, type PingAttributes } from '../../../src/commands/ping/ping.js';
import type { PingEngine, PingReply, PingTarget } from '../../../src/commands/ping/ping-engine.js';
import { resolveProgram } from '../../../src/commands/executable.js';
import { defaultPingEngine } from '../../../src/commands/ping/ping-engine-choice.js';
import { capturingLogger, silentLogger } from '../../helpers/logger.js';
import { RATE_LIMITED_ECHO, SILENT_ECHO, useTestHosts } from '../../helpers/netns.js';
import { childrenNamed } from '../../helpers/processes.js';

/**
 * The fping engine against the real fping (Debian's fping 5.x, which these tests need on PATH):
 * loopback, test hosts in network namespaces of the test's own (root and iproute2, as for
 * ping-netns.test.ts), and a wrapper around fping that records each command line, so a test can see
 * how runs were batched.
 */

/**
 * A name the resolver rejects on this machine without asking any server (a label may be at most 63
 * characters), so the test sends no DNS query off the machine.
 */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;

const found = resolveProgram('fping', process.env.PATH ?? '');
const FPING = typeof found === 'string' ? found : null;

let dir: string;
/** Runs the real fping, after appending its arguments (one line a process) to `calls`. */
let recordingFping: string;
let calls: string;
/** Says what an fping without its ICMP socket says, and exits as it does. */
let socketlessFping: string;

beforeAll(async () => {
  if (FPING === null) throw new Error('these tests need fping on PATH: apt-get install fping');
  dir = await mkdtemp(join(tmpdir(), 'vigil-fping-'));
  calls = join(dir, 'calls');
  recordingFping = join(dir, 'recording-fping');
  await writeFile(recordingFping, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${calls}'\nexec '${FPING}' "$@"\n`);
  socketlessFping = join(dir, 'fping');
  await writeFile(socketlessFping, "#!/bin/sh\necho \"$0: can't create socket (must run as root?)\" >&2\nexit 4\n");
  await writeFile(join(dir, 'plain'), 'not a program\n');
  await Promise.all([chmod(recordingFping, 0o755), chmod(socketlessFping, 0o755)]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await rm(calls, { force: true });
});

/** The command lines the recording fping was started with, one a process. */
async function fpingCalls(): Promise<string[]> {
  const text = await readFile(calls, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line !== '');
}

function recording(options: FpingPingEngineOptions = {}): PingEngine {
  return fpingPingEngine({ executable: recordingFping, ...options });
}

function target(host: string, overrides: Partial<PingTarget> = {}): PingTarget {
  return { host, count: 2, packetSize: 56, packetTimeoutMs: 1000, ...overrides };
}

function signal(): AbortSignal {
  return AbortSignal.timeout(15_000);
}


function expectAnswered(reply: PingReply, sent: number): void {
  expect(reply).toMatchObject({ kind: 'reply', sent, received: sent });
  if (reply.kind !== 'reply') throw new Error('unreachable');
  const { rttMinMs, rttAvgMs, rttMaxMs, jitterMs } = reply;
  expect(rttMinMs).toBeGreaterThanOrEqual(0);
  expect(rttAvgMs).toBeGreaterThanOrEqual(rttMinMs as number);
  expect(rttMaxMs).toBeGreaterThanOrEqual(rttAvgMs as number);
  expect(rttMaxMs).toBeLessThan(1000);
  expect(jitterMs).toBeGreaterThanOrEqual(0);
}

describe('fping engine: against loopback', () => {
  it('pings 127.0.0.1 and reports counts and round-trip statistics', async () => {
    const engine = fpingPingEngine();
    expect(engine.name).toBe('fping');
    expectAnswered(await engine.ping(target('127.0.0.1'), signal()), 2);
  });

  it('pings ::1 over IPv6, and 127.0.0.1 with -4 and another packet size', async () => {
    const engine = recording();
    const [v6, v4] = await Promise.all([
      engine.ping(target('::1', { count: 1, ipVersion: 6 }), signal()),
      engine.ping(target('127.0.0.1', { count: 1, ipVersion: 4, packetSize: 1400 }), signal()),
    ]);
    expectAnswered(v6, 1);
    expectAnswered(v4, 1);
    // Different settings, different processes.
    expect((await fpingCalls()).sort()).toEqual(['-C 1 -p 200 -i 1 -b 1400 -t 1000 -4 -- 127.0.0.1', '-C 1 -p 200 -i 1 -b 56 -t 1000 -6 -- ::1']);
  });

  it('answers each run of a batch from one fping process', async () => {
    const engine = recording();
    const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '::1'];
    const replies = await Promise.all(hosts.map((host) => engine.ping(target(host), signal())));
    for (const reply of replies) expectAnswered(reply, 2);
    expect(await fpingCalls()).toEqual([`-C 2 -p 200 -i 1 -b 56 -t 1000 -- ${hosts.join(' ')}`]);
  });

  it('pings a host asked for twice in one batch once, and answers both runs', async () => {
    const engine = recording();
    const [first, other, second] = await Promise.all([
      engine.ping(target('127.0.0.1'), signal()),
      engine.ping(target('127.0.0.2'), signal()),
      engine.ping(target('127.0.0.1'), signal()),
    ]);
    expectAnswered(first, 2);
    expectAnswered(other, 2);
    expect(second).toBe(first);
    expect(await fpingCalls()).toEqual(['-C 2 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.1 127.0.0.2']);
  });

  it('starts a full batch at once and puts further hosts in the next', async () => {
    // A window longer than the test's timeout: only filling up starts these batches.
    const engine = recording({ maxHostsPerProcess: 2, batchWindowMs: 60_000 });
    const replies = await Promise.all(['127.0.0.1', '127.0.0.2', '127.0.0.1', '127.0.0.3'].map((host) => engine.ping(target(host, { count: 1 }), signal())));
    for (const reply of replies) expectAnswered(reply, 1);
    expect(await fpingCalls()).toEqual(['-C 1 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.1 127.0.0.2', '-C 1 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.1 127.0.0.3']);
  });

  it('reports dns for a name that does not resolve, while the rest of the batch is answered', async () => {
    const engine = recording();
    const [unknown, known] = await Promise.all([engine.ping(target(UNRESOLVABLE), signal()), engine.ping(target('127.0.0.1'), signal())]);
    expect(unknown.kind).toBe('dns');
    expect(unknown).toMatchObject({ message: expect.stringMatching(/^(Name or service not known|Temporary failure in name resolution|No address associated with hostname)$/) as unknown });
    expectAnswered(known, 2);
    expect(await fpingCalls()).toHaveLength(1);
  });

  it('reports dns for an address of the other family than the one asked for', async () => {
    const reply = await fpingPingEngine().ping(target('::1', { ipVersion: 4 }), signal());
    expect(reply).toEqual({ kind: 'dns', message: 'Address family for hostname not supported' });
  });

  it('reports fping refusing the settings as an error for every run of the batch', async () => {
    const engine = fpingPingEngine();
    const replies = await Promise.all(['127.0.0.1', '127.0.0.2'].map((host) => engine.ping(target(host, { packetSize: 65_507 }), signal())));
    for (const reply of replies) expect(reply).toEqual({ kind: 'error', message: expect.stringMatching(/^fping: data size 65507 not valid/) as unknown });
  });

  it('reports an error for every run when the program cannot be run', async () => {
    const engine = fpingPingEngine({ executable: '/nonexistent/fping' });
    const replies = await Promise.all([engine.ping(target('127.0.0.1'), signal()), engine.ping(target('127.0.0.2'), signal())]);
    const failure = { kind: 'error', message: 'cannot run /nonexistent/fping: spawn /nonexistent/fping ENOENT' };
    expect(replies).toEqual([failure, failure]);
  });

  it('reports an error when a host is one fping cannot be given (a NUL byte), without a process', async () => {
    const reply = await recording().ping(target('127.0.0.1\0'), signal());
    expect(reply).toMatchObject({ kind: 'error', message: expect.stringMatching(/^cannot run .*null bytes/) as unknown });
    expect(await fpingCalls()).toEqual([]);
  });
});

describe('fping engine: abort', () => {
  it('rejects at once without starting fping when the signal is already aborted', async () => {
    const reason = new Error('already over');
    await expect(recording().ping(target('127.0.0.1'), AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(await fpingCalls()).toEqual([]);
  });

  it('rejects a run aborted while its batch collects, and starts no process for a batch that emptied', async () => {
    const engine = recording({ batchWindowMs: 100 });
    const controller = new AbortController();
    const running = engine.ping(target('127.0.0.1'), controller.signal);
    const reason = new Error('gone before the window closed');
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
    // A later run makes a batch of its own: only it went out.
    expectAnswered(await engine.ping(target('127.0.0.2', { count: 1 }), signal()), 1);
    expect(await fpingCalls()).toEqual(['-C 1 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.2']);
  });

  it('rejects an aborted run at once while the other runs of its batch complete', async () => {
    const engine = fpingPingEngine();
    const controller = new AbortController();
    // 5 requests take about 800 ms: the abort comes while they go out.
    const aborted = engine.ping(target('127.0.0.1', { count: 5 }), controller.signal);
    const settled = aborted.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    const others = Promise.all([engine.ping(target('127.0.0.2', { count: 5 }), signal()), engine.ping(target('127.0.0.1', { count: 5 }), signal())]);
    await vi.waitFor(() => expect(childrenNamed('fping')).toHaveLength(1), { timeout: 5000, interval: 10 });
    const reason = new Error('deadline');
    controller.abort(reason);
    expect(await settled).toBe(reason);
    // Rejected without waiting for the batch: its process still runs, and goes on for the others,
    // each of which gets all 5 of its requests answered.
    expect(childrenNamed('fping')).toHaveLength(1);
    const [other, same] = await others;
    expectAnswered(other, 5);
    expectAnswered(same, 5);
  });

  it('kills fping when every run of its batch aborted; the last rejects once the process is gone', async () => {
    expect(childrenNamed('fping')).toEqual([]);
    const engine = fpingPingEngine();
    const first = new AbortController();
    const last = new AbortController();
    // 100 requests at 200 ms would take 20 s: only the aborts end this batch in time.
    const runs = [engine.ping(target('127.0.0.1', { count: 100 }), first.signal), engine.ping(target('127.0.0.2', { count: 100 }), last.signal)];
    const [firstSettled, lastSettled] = runs.map((run) =>
      run.then(
        () => 'resolved',
        (error: unknown) => error,
      ),
    );
    await vi.waitFor(() => expect(childrenNamed('fping')).toHaveLength(1), { timeout: 5000, interval: 10 });
    const started = performance.now();
    const firstReason = new Error('first deadline');
    first.abort(firstReason);
    expect(await firstSettled).toBe(firstReason);
    expect(childrenNamed('fping')).toHaveLength(1);
    const lastReason = new Error('last deadline');
    last.abort(lastReason);
    expect(await lastSettled).toBe(lastReason);
    expect(performance.now() - started).toBeLessThan(2000);
    // Settled on `close`: the child has exited and been reaped, so it is no longer in /proc.
    expect(childrenNamed('fping')).toEqual([]);
  });
});

describe('fping engine: against test hosts in network namespaces', () => {
  const testHost = useTestHosts();

  it('reports no replies from a host that ignores echo requests and partial loss from one that rate-limits, in one batch with loopback', async () => {
    const silent = await testHost({ sysctls: SILENT_ECHO });
    const limited = await testHost({ sysctls: RATE_LIMITED_ECHO });
    const engine = recording();
    const settings = { count: 5, packetTimeoutMs: 300 };
    const [none, some, loopback] = await Promise.all([
      engine.ping(target(silent.address, settings), signal()),
      engine.ping(target(limited.address, settings), signal()),
      engine.ping(target('127.0.0.1', settings), signal()),
    ]);
    expect(none).toEqual({ kind: 'reply', sent: 5, received: 0, rttMinMs: null, rttAvgMs: null, rttMaxMs: null, jitterMs: null });
    expect(some).toMatchObject({ kind: 'reply', sent: 5 });
    if (some.kind !== 'reply') throw new Error('unreachable');
    expect(some.received).toBeGreaterThan(0);
    expect(some.received).toBeLessThan(5);
    expectAnswered(loopback, 5);
    expect(await fpingCalls()).toHaveLength(1);
  });

  it('gives the ping command the same outcomes as the process engine for those hosts', async () => {
    const silent = await testHost({ sysctls: SILENT_ECHO });
    const limited = await testHost({ sysctls: RATE_LIMITED_ECHO });
    const ping = pingCommand(fpingPingEngine());
    const [unreachable, lossy] = await Promise.all([
      ping.run(parse(ping, { host: silent.address, count: 3, packetTimeout: '300ms' }), ctx()),
      ping.run(parse(ping, { host: limited.address, count: 5, packetTimeout: '300ms', lossWarn: 1, lossCrit: 99 }), ctx()),
    ]);
    expect(unreachable).toMatchObject({ state: 'crit', reason: 'unreachable', message: `${silent.address} is unreachable: 0/3 replies (100% loss)` });
    expect(lossy).toMatchObject({ state: 'warn', reason: 'packet-loss-high' });
    expect(lossy.message).toMatch(/; [1-4]\/5 replies, \d+% loss, rtt min\/avg\/max [\d.]+\/[\d.]+\/[\d.]+ ms, jitter [\d.]+ ms$/);
  });
});

describe('ping command with the fping engine', () => {
  it('reports ok for 127.0.0.1 with every metric', async () => {
    const ping = pingCommand(fpingPingEngine());
    const outcome = await ping.run(parse(ping, { host: '127.0.0.1', count: 2 }), ctx());
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/^127\.0\.0\.1: 2\/2 replies, 0% loss, rtt min\/avg\/max [\d.]+\/[\d.]+\/[\d.]+ ms, jitter [\d.]+ ms$/);
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['packet_loss', 'rtt_min', 'rtt_avg', 'rtt_max', 'jitter']);
  });

  it('reports timeout promptly when its signal aborts mid-run', async () => {
    const ping = pingCommand(fpingPingEngine());
    const started = performance.now();
    const outcome = await ping.run(parse(ping, { host: '127.0.0.1', count: 100 }), ctx(AbortSignal.timeout(300)));
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: 'timed out pinging 127.0.0.1' });
    expect(performance.now() - started).toBeLessThan(3000);
  });
});

describe('fping engine: arguments', () => {
  it('builds fping arguments: count mode, 200 ms per host, 1 ms between packets, size, timeout in ms, then -- and the hosts', () => {
    expect(fpingArguments({ count: 5, packetSize: 100, packetTimeoutMs: 1500 }, ['127.0.0.1', 'gw.example.com'])).toEqual([
      '-C', '5', '-p', '200', '-i', '1', '-b', '100', '-t', '1500', '--', '127.0.0.1', 'gw.example.com',
    ]);
  });

  it('adds -4 or -6 only when an IP version is asked for', () => {
    expect(fpingArguments({ count: 1, packetSize: 56, packetTimeoutMs: 1000, ipVersion: 6 }, ['h']).slice(-3)).toEqual(['-6', '--', 'h']);
    expect(fpingArguments({ count: 1, packetSize: 56, packetTimeoutMs: 1000, ipVersion: 4 }, ['h']).slice(-3)).toEqual(['-4', '--', 'h']);
    const args = fpingArguments({ count: 1, packetSize: 56, packetTimeoutMs: 1000 }, ['h']);
    expect(args).not.toContain('-4');
    expect(args).not.toContain('-6');
  });
});

describe('fping engine: parsing fping output', () => {
  /** What fping 5.1 wrote on stderr for `-C 3 … 127.0.0.1 ::1 <unresolvable> 192.0.2.1` (stdout not read). */
  const captured = [
    `${UNRESOLVABLE}: Name or service not known`,
    'ICMP Host Unreachable from 10.0.0.1 for ICMP Echo sent to 192.0.2.1',
    '',
    '127.0.0.1    : 0.046 0.046 0.046',
    '::1          : 0.060 0.034 0.030',
    '192.0.2.1    : - - -',
    '',
  ].join('\n');

  it('reads each host its own line: round trips, losses, and the resolver\'s message', () => {
    const replies = parseFpingOutput(captured, ['127.0.0.1', '::1', UNRESOLVABLE, '192.0.2.1'], 2);
    expect(replies.get('127.0.0.1')).toEqual({ kind: 'reply', sent: 3, received: 3, rttMinMs: 0.046, rttAvgMs: 0.046, rttMaxMs: 0.046, jitterMs: 0 });
    expect(replies.get('::1')).toEqual({ kind: 'reply', sent: 3, received: 3, rttMinMs: 0.03, rttAvgMs: 0.041, rttMaxMs: 0.06, jitterMs: 0.013 });
    expect(replies.get(UNRESOLVABLE)).toEqual({ kind: 'dns', message: 'Name or service not known' });
    expect(replies.get('192.0.2.1')).toEqual({ kind: 'reply', sent: 3, received: 0, rttMinMs: null, rttAvgMs: null, rttMaxMs: null, jitterMs: null });
  });

  it('reads partial loss and fping\'s coarser digits for slower round trips', () => {
    const replies = parseFpingOutput('gw : 10.5 - 12.3 1.05e+03 -\n', ['gw'], 1);
    expect(replies.get('gw')).toMatchObject({ kind: 'reply', sent: 5, received: 3, rttMinMs: 10.5, rttMaxMs: 1050, rttAvgMs: 357.6 });
  });

  it('reads other messages about a host as its error, and a family mismatch as dns', () => {
    const stderr = '::1: Address family for hostname not supported\nh.example: some other trouble\n\n127.0.0.1 : 0.037 0.040\n';
    const replies = parseFpingOutput(stderr, ['127.0.0.1', '::1', 'h.example'], 2);
    expect(replies.get('::1')).toEqual({ kind: 'dns', message: 'Address family for hostname not supported' });
    expect(replies.get('h.example')).toEqual({ kind: 'error', message: 'some other trouble' });
    expect(replies.get('127.0.0.1')).toMatchObject({ kind: 'reply', received: 2 });
  });

  it('gives every host fping\'s own failure when it ran for none', () => {
    const replies = parseFpingOutput("fping: can't create socket (must run as root?)\n", ['a', 'b'], 4);
    expect([...replies.values()]).toEqual([
      { kind: 'error', message: "fping: can't create socket (must run as root?)" },
      { kind: 'error', message: "fping: can't create socket (must run as root?)" },
    ]);
  });

  it('says what the exit code or the signal was when there is nothing else', () => {
    expect(parseFpingOutput('', ['a'], 3).get('a')).toEqual({ kind: 'error', message: 'fping exited with code 3 without a result for a' });
    expect(parseFpingOutput('', ['a'], null, 'SIGSEGV').get('a')).toEqual({ kind: 'error', message: 'fping was killed by SIGSEGV' });
  });

  it('takes no line for a summary that is not one: another host\'s, or words after the colon', () => {
    const stderr = 'other : 0.1\na : duplicate for [0], 64 bytes, 0.05 ms\na : 0.2 -\n';
    const replies = parseFpingOutput(stderr, ['a'], 1);
    expect(replies.get('a')).toMatchObject({ kind: 'reply', sent: 2, received: 1, rttAvgMs: 0.2 });
  });

  it('computes min, mean, max and mean deviation as iputils does, to the microsecond', () => {
    // iputils for 1, 2, 3 ms: min/avg/max/mdev = 1.000/2.000/3.000/0.816
    expect(fpingStatistics([1, 2, 3])).toEqual({ kind: 'reply', sent: 3, received: 3, rttMinMs: 1, rttAvgMs: 2, rttMaxMs: 3, jitterMs: 0.816 });
    expect(fpingStatistics([0.1, 0.1, 0.1, null])).toMatchObject({ sent: 4, received: 3, jitterMs: 0 });
    expect(fpingStatistics([])).toEqual({ kind: 'reply', sent: 0, received: 0, rttMinMs: null, rttAvgMs: null, rttMaxMs: null, jitterMs: null });
  });
});

describe('choosing the ping engine', () => {
  it('finds an executable by name on a path, or by its path, and nothing where there is none', () => {
    expect(FPING).toMatch(/\/fping$/);
    expect(resolveProgram('fping', `/nonexistent:${dir}`)).toBe(socketlessFping);
    expect(resolveProgram(recordingFping, '')).toBe(recordingFping);
    expect(resolveProgram('fping', '/nonexistent:/proc')).toEqual({ problem: 'expected a program: an absolute path or a name found on PATH (not found on PATH /nonexistent:/proc)', missing: true });
    expect(resolveProgram('plain', dir)).toHaveProperty('problem'); // there, but not executable
    expect(resolveProgram(join(dir, 'missing'), '')).toEqual({ problem: 'expected an existing executable file (no such file)', missing: true });
  });

  it('chooses fping when it is on the path and can ping, probing once with the first run', async () => {
    const { logger, lines } = capturingLogger();
    const engine = defaultPingEngine({ fping: recordingFping, logger });
    expect(engine.name).toBe('fping');
    expect(await fpingCalls()).toEqual([]); // no probe before a run asks for one
    const [first, second] = await Promise.all([engine.ping(target('127.0.0.1'), signal()), engine.ping(target('127.0.0.2'), signal())]);
    expectAnswered(first, 2);
    expectAnswered(second, 2);
    expectAnswered(await engine.ping(target('127.0.0.3', { count: 1 }), signal()), 1);
    expect(engine.name).toBe('fping');
    expect(await fpingCalls()).toEqual([
      '-C 1 -p 200 -i 1 -b 56 -t 1000 -4 -- 127.0.0.1',
      '-C 2 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.1 127.0.0.2',
      '-C 1 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.3',
    ]);
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'ping engine: fping', pingEngine: 'fping', fping: recordingFping }));
    expect(lines.filter((line) => line.level === 40)).toEqual([]);
  });

  it('chooses the process engine when no fping is on the path', async () => {
    const { logger, lines } = capturingLogger();
    const engine = defaultPingEngine({ path: '/nonexistent:/proc', logger });
    expect(engine.name).toBe('process');
    expectAnswered(await engine.ping(target('127.0.0.1', { count: 1 }), signal()), 1);
    expect(lines).toContainEqual(expect.objectContaining({ pingEngine: 'process', msg: 'ping engine: process (no fping executable found)' }));
  });

  it('falls back to the process engine, saying why, when the probe shows fping cannot ping', async () => {
    const { logger, lines } = capturingLogger();
    const engine = defaultPingEngine({ path: dir, logger });
    expect(engine.name).toBe('fping');
    // The run waits for the probe, then goes to iputils ping, as do all later ones.
    expectAnswered(await engine.ping(target('127.0.0.1', { count: 1 }), signal()), 1);
    expect(engine.name).toBe('process');
    expectAnswered(await engine.ping(target('127.0.0.1', { count: 1 }), signal()), 1);
    const warnings = lines.filter((line) => line.level === 40);
    expect(warnings).toEqual([
      expect.objectContaining({
        pingEngine: 'process',
        fping: socketlessFping,
        reason: `${socketlessFping}: can't create socket (must run as root?)`,
        msg: `fping cannot ping here (${socketlessFping}: can't create socket (must run as root?)); pinging with one ping process per run`,
      }),
    ]);
  });

  it('rejects a run aborted while it waits for the probe', async () => {
    const engine = defaultPingEngine({ fping: recordingFping, batching: { batchWindowMs: 200 } });
    const controller = new AbortController();
    const running = engine.ping(target('127.0.0.1'), controller.signal);
    const reason = new Error('deadline during the probe');
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
    // The probe went on; the next run waits for it and goes to fping.
    expectAnswered(await engine.ping(target('127.0.0.2', { count: 1 }), signal()), 1);
    expect(engine.name).toBe('fping');
    expect(await fpingCalls()).toEqual(['-C 1 -p 200 -i 1 -b 56 -t 1000 -4 -- 127.0.0.1', '-C 1 -p 200 -i 1 -b 56 -t 1000 -- 127.0.0.2']);
  });
});

function parse(command: ReturnType<typeof pingCommand>, raw: Record<string, unknown>): PingAttributes {
  const parsed = command.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function ctx(abort: AbortSignal = signal()): CommandContext {
  return { checkId: 'fping', signal: abort, deadline: Date.now() + 15_000, logger: silentLogger(), previous: null };
}
