import { describe, expect, it, vi } from 'vitest';
import { parsePingOutput, pingArguments, processPingEngine, type PingTarget } from '../../../src/commands/ping/ping-engine.js';
import { childrenNamed } from '../../helpers/processes.js';

/**
 * A name the resolver rejects on this machine without asking any server (a label may be at most 63
 * characters), so the test sends no DNS query off the machine.
 */
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;

const engine = processPingEngine();

function target(overrides: Partial<PingTarget> = {}): PingTarget {
  return { host: '127.0.0.1', count: 2, packetSize: 56, packetTimeoutMs: 1000, ...overrides };
}


describe('process ping engine: against loopback', () => {
  it('pings 127.0.0.1 and reports counts and round-trip statistics', async () => {
    const reply = await engine.ping(target(), AbortSignal.timeout(10_000));
    expect(engine.name).toBe('process');
    expect(reply).toMatchObject({ kind: 'reply', sent: 2, received: 2 });
    if (reply.kind !== 'reply') throw new Error('unreachable');
    const { rttMinMs, rttAvgMs, rttMaxMs, jitterMs } = reply;
    expect(rttMinMs).toBeGreaterThanOrEqual(0);
    expect(rttAvgMs).toBeGreaterThanOrEqual(rttMinMs as number);
    expect(rttMaxMs).toBeGreaterThanOrEqual(rttAvgMs as number);
    expect(rttMaxMs).toBeLessThan(1000);
    expect(jitterMs).toBeGreaterThanOrEqual(0);
  });

  it('pings ::1 over IPv6, and 127.0.0.1 with -4 and another packet size', async () => {
    expect(await engine.ping(target({ host: '::1', count: 1, ipVersion: 6 }), AbortSignal.timeout(10_000))).toMatchObject({ kind: 'reply', sent: 1, received: 1 });
    expect(await engine.ping(target({ count: 1, ipVersion: 4, packetSize: 1400 }), AbortSignal.timeout(10_000))).toMatchObject({ kind: 'reply', sent: 1, received: 1 });
  });

  it('reports dns for a name that does not resolve', async () => {
    const reply = await engine.ping(target({ host: UNRESOLVABLE }), AbortSignal.timeout(10_000));
    expect(reply.kind).toBe('dns');
    expect(reply).toMatchObject({ message: expect.stringMatching(/^(Name or service not known|Temporary failure in name resolution|No address associated with hostname)$/) as unknown });
  });

  it('kills ping when the signal aborts and rejects with its reason once the process is gone', async () => {
    expect(childrenNamed('ping')).toEqual([]);
    const controller = new AbortController();
    // 100 packets at 200 ms would take 20 s: only the abort ends this run in time.
    const running = engine.ping(target({ count: 100 }), controller.signal);
    const settled = running.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    await vi.waitFor(() => expect(childrenNamed('ping')).toHaveLength(1), { timeout: 5000, interval: 10 });
    const started = performance.now();
    const reason = new Error('deadline');
    controller.abort(reason);
    expect(await settled).toBe(reason);
    expect(performance.now() - started).toBeLessThan(2000);
    // Settled on `close`: the child has exited and been reaped, so it is no longer in /proc.
    expect(childrenNamed('ping')).toEqual([]);
  });

  it('rejects at once without starting ping when the signal is already aborted', async () => {
    const reason = new Error('already over');
    await expect(engine.ping(target(), AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(childrenNamed('ping')).toEqual([]);
  });

  it('reports an error when the ping program cannot be run', async () => {
    const missing = processPingEngine({ executable: '/nonexistent/ping' });
    expect(await missing.ping(target(), AbortSignal.timeout(5000))).toEqual({
      kind: 'error',
      message: 'cannot run /nonexistent/ping: spawn /nonexistent/ping ENOENT',
    });
  });

  it('reports an error, with the exit code, when the program ends without a summary or a message', async () => {
    const silent = processPingEngine({ executable: 'false' });
    expect(await silent.ping(target(), AbortSignal.timeout(5000))).toEqual({ kind: 'error', message: 'ping exited with code 1 without a summary' });
  });
});

describe('process ping engine: arguments', () => {
  it('builds iputils arguments: numeric, quiet, count, interval, size, timeout in seconds, then -- and the host', () => {
    expect(pingArguments(target({ count: 5, packetSize: 100, packetTimeoutMs: 1500 }))).toEqual([
      '-n', '-q', '-c', '5', '-i', '0.2', '-s', '100', '-W', '1.5', '--', '127.0.0.1',
    ]);
    expect(pingArguments(target({ packetTimeoutMs: 1 }))).toContain('0.001');
  });

  it('adds -4 or -6 only when an IP version is asked for', () => {
    expect(pingArguments(target({ host: 'gw.example.com', ipVersion: 6 })).slice(-3)).toEqual(['-6', '--', 'gw.example.com']);
    expect(pingArguments(target({ host: 'gw.example.com', ipVersion: 4 })).slice(-3)).toEqual(['-4', '--', 'gw.example.com']);
    const args = pingArguments(target({ host: 'gw.example.com' }));
    expect(args).not.toContain('-4');
    expect(args).not.toContain('-6');
  });
});

describe('process ping engine: parsing iputils output', () => {
  it('reads a full success', () => {
    const stdout = [
      'PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.',
      '',
      '--- 127.0.0.1 ping statistics ---',
      '3 packets transmitted, 3 received, 0% packet loss, time 410ms',
      'rtt min/avg/max/mdev = 0.035/0.108/0.223/0.082 ms',
      '',
    ].join('\n');
    expect(parsePingOutput(stdout, '', 0)).toEqual({ kind: 'reply', sent: 3, received: 3, rttMinMs: 0.035, rttAvgMs: 0.108, rttMaxMs: 0.223, jitterMs: 0.082 });
  });

  it('reads partial loss, duplicates and errors in the summary', () => {
    const partial = [
      'PING 192.0.2.10 (192.0.2.10) 56(84) bytes of data.',
      '',
      '--- 192.0.2.10 ping statistics ---',
      '5 packets transmitted, 3 received, 40% packet loss, time 4006ms',
      'rtt min/avg/max/mdev = 10.123/12.456/15.789/2.345 ms',
    ].join('\n');
    expect(parsePingOutput(partial, '', 0)).toEqual({ kind: 'reply', sent: 5, received: 3, rttMinMs: 10.123, rttAvgMs: 12.456, rttMaxMs: 15.789, jitterMs: 2.345 });

    const duplicates = '--- h ping statistics ---\n3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 2003ms\nrtt min/avg/max/mdev = 1.000/2.000/3.000/0.500 ms\n';
    expect(parsePingOutput(duplicates, '', 0)).toMatchObject({ sent: 3, received: 3, rttAvgMs: 2 });

    const newerLoss = '--- h ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\nrtt min/avg/max/mdev = 0.040/0.050/0.060/0.010 ms\n';
    expect(parsePingOutput(newerLoss, '', 0)).toMatchObject({ sent: 3, received: 2, jitterMs: 0.01 });
  });

  it('reads 100 % loss, with and without errors, as a reply with no round trips', () => {
    const lost = [
      'PING 127.0.0.1 (127.0.0.1) 70000(70028) bytes of data.',
      '',
      '--- 127.0.0.1 ping statistics ---',
      '2 packets transmitted, 0 received, 100% packet loss, time 1003ms',
      '',
    ].join('\n');
    const none = { kind: 'reply', sent: 2, received: 0, rttMinMs: null, rttAvgMs: null, rttMaxMs: null, jitterMs: null };
    expect(parsePingOutput(lost, '', 1)).toEqual(none);

    const errors = [
      'PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.',
      '',
      '--- 192.0.2.1 ping statistics ---',
      '2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1030ms',
      'pipe 2',
    ].join('\n');
    expect(parsePingOutput(errors, '', 1)).toEqual(none);
  });

  it('reads an unknown host and a failing resolver as dns', () => {
    expect(parsePingOutput('', 'ping: nonexistent.invalid: Name or service not known\n', 2)).toEqual({ kind: 'dns', message: 'Name or service not known' });
    expect(parsePingOutput('', 'ping: example.com: Temporary failure in name resolution\n', 2)).toEqual({ kind: 'dns', message: 'Temporary failure in name resolution' });
    expect(parsePingOutput('', 'ping: v4only.example: Address family for hostname not supported\n', 2)).toEqual({ kind: 'dns', message: 'Address family for hostname not supported' });
    expect(parsePingOutput('', 'ping: unknown host nonexistent.invalid\n', 2)).toEqual({ kind: 'dns', message: 'unknown host' });
  });

  it('reads other failures as errors with ping\'s first line', () => {
    expect(parsePingOutput('', 'ping: connect: Network is unreachable\n', 2)).toEqual({ kind: 'error', message: 'ping: connect: Network is unreachable' });
    expect(parsePingOutput('', 'ping: socket: Operation not permitted\nmore\n', 2)).toEqual({ kind: 'error', message: 'ping: socket: Operation not permitted' });
    expect(parsePingOutput('', '', null, 'SIGSEGV')).toEqual({ kind: 'error', message: 'ping was killed by SIGSEGV' });
  });

  it('prefers the summary to warnings on stderr', () => {
    const stdout = '--- 127.0.0.1 ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\nrtt min/avg/max/mdev = 0.024/0.024/0.024/0.000 ms\n';
    expect(parsePingOutput(stdout, 'ping: Warning: source address might be selected on device other than: eth0\n', 0)).toMatchObject({ kind: 'reply', received: 1 });
  });
});
