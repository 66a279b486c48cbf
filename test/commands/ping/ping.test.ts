import { describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { pingCommand, type PingAttributes } from '../../../src/commands/ping/ping.js';
import type { PingEngine, PingReply, PingStatistics, PingTarget } from '../../../src/commands/ping/ping-engine.js';
import type { Metric } from '../../../src/results/metric.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';

const logger = silentLogger();

function ctx(signal: AbortSignal = AbortSignal.timeout(10_000)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + 10_000, logger, previous: null };
}

/** An engine that answers every run with `reply` and remembers what it was asked. */
function cannedEngine(reply: PingReply): PingEngine & { targets: PingTarget[] } {
  const targets: PingTarget[] = [];
  return {
    name: 'canned',
    targets,
    ping(target) {
      targets.push(target);
      return Promise.resolve(reply);
    },
  };
}

function stats(overrides: Partial<PingStatistics> = {}): PingStatistics {
  return { kind: 'reply', sent: 5, received: 5, rttMinMs: 10, rttAvgMs: 20, rttMaxMs: 30, jitterMs: 5, ...overrides };
}

function parse(raw: unknown): PingAttributes {
  const parsed = pingCommand(cannedEngine(stats())).parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

async function runWith(reply: PingReply, raw: Record<string, unknown> = {}): Promise<CommandOutcome> {
  const command = pingCommand(cannedEngine(reply));
  return command.run(parse({ host: 'gw.example.com', ...raw }), ctx());
}

function metric(outcome: CommandOutcome, name: string): Metric | undefined {
  return outcome.metrics?.find((m) => m.name === name);
}

describe('ping command: against loopback with the real engine', () => {
  it('reports ok for 127.0.0.1 with every metric', async () => {
    const ping = pingCommand();
    const outcome = await ping.run(parse({ host: '127.0.0.1', count: 2, rttCritMs: '5s' }), ctx());
    expect(outcome.state).toBe('ok');
    expect(outcome.reason).toBe('ok');
    expect(outcome.message).toMatch(/^127\.0\.0\.1: 2\/2 replies, 0% loss, rtt min\/avg\/max [\d.]+\/[\d.]+\/[\d.]+ ms, jitter [\d.]+ ms$/);
    expect(outcome.metrics?.map((m) => m.name)).toEqual(['packet_loss', 'rtt_min', 'rtt_avg', 'rtt_max', 'jitter']);
    expect(metric(outcome, 'packet_loss')).toEqual({ name: 'packet_loss', value: 0, unit: '%', kind: 'gauge', warn: 20, crit: 60 });
    expect(metric(outcome, 'rtt_avg')).toMatchObject({ unit: 'ms', crit: 5000 });
    expect(metric(outcome, 'rtt_avg')?.value).toBeLessThan(5000);
  });

  it('reports ok for ::1 over IPv6', async () => {
    const outcome = await pingCommand().run(parse({ host: '::1', count: 1, ipVersion: 6 }), ctx());
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(/^::1: 1\/1 replies, 0% loss/);
  });

  it('reports dns for a name that does not resolve', async () => {
    const outcome = await pingCommand().run(parse({ host: 'nonexistent.invalid', count: 1 }), ctx());
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('dns');
    expect(outcome.message).toMatch(/^cannot resolve host nonexistent\.invalid \(.+\)$/);
  });

  it('reports timeout when its signal aborts mid-run, promptly', async () => {
    const started = performance.now();
    // 100 packets take about 20 s: the 300 ms signal ends the run.
    const outcome = await pingCommand().run(parse({ host: '127.0.0.1', count: 100 }), ctx(AbortSignal.timeout(300)));
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: 'timed out pinging 127.0.0.1' });
    expect(performance.now() - started).toBeLessThan(3000);
  });
});

describe('ping command: outcomes', () => {
  it('hands its parsed attributes to the engine as the target', async () => {
    const engine = cannedEngine(stats());
    await pingCommand(engine).run(parse({ host: '::1', count: 7, packetSize: 100, packetTimeout: '250ms', ipVersion: 6 }), ctx());
    expect(engine.targets).toHaveLength(1);
    expect(engine.targets[0]).toMatchObject({ host: '::1', count: 7, packetSize: 100, packetTimeoutMs: 250, ipVersion: 6 });
  });

  it('is ok when nothing crosses a threshold, with thresholds on the metrics', async () => {
    const outcome = await runWith(stats(), { rttWarnMs: 100, rttCritMs: 300, jitterWarnMs: '10ms' });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: 'gw.example.com: 5/5 replies, 0% loss, rtt min/avg/max 10.0/20.0/30.0 ms, jitter 5.00 ms' });
    expect(outcome.metrics).toEqual([
      { name: 'packet_loss', value: 0, unit: '%', kind: 'gauge', warn: 20, crit: 60 },
      { name: 'rtt_min', value: 10, unit: 'ms', kind: 'gauge' },
      { name: 'rtt_avg', value: 20, unit: 'ms', kind: 'gauge', warn: 100, crit: 300 },
      { name: 'rtt_max', value: 30, unit: 'ms', kind: 'gauge' },
      { name: 'jitter', value: 5, unit: 'ms', kind: 'gauge', warn: 10 },
    ]);
  });

  it('reports unreachable at 100 % loss, whatever the thresholds', async () => {
    const none = stats({ received: 0, rttMinMs: null, rttAvgMs: null, rttMaxMs: null, jitterMs: null });
    const outcome = await runWith(none, { lossWarn: 100, lossCrit: 100 });
    expect(outcome).toEqual({
      state: 'crit',
      reason: 'unreachable',
      message: 'gw.example.com is unreachable: 0/5 replies (100% loss)',
      metrics: [{ name: 'packet_loss', value: 100, unit: '%', kind: 'gauge', warn: 100, crit: 100 }],
    });
  });

  it('warns at 40 % loss and goes critical at 60 %', async () => {
    const warn = await runWith(stats({ received: 3 }));
    expect(warn.state).toBe('warn');
    expect(warn.reason).toBe('packet-loss-high');
    expect(warn.message).toBe('gw.example.com: packet loss 40% at or above the warning threshold of 20%; 3/5 replies, 40% loss, rtt min/avg/max 10.0/20.0/30.0 ms, jitter 5.00 ms');
    expect(metric(warn, 'packet_loss')?.value).toBe(40);

    const crit = await runWith(stats({ received: 2 }));
    expect(crit).toMatchObject({ state: 'crit', reason: 'packet-loss-high' });
    expect(crit.message).toContain('packet loss 60% at or above the critical threshold of 60%');
  });

  it('rounds loss that does not divide evenly in metrics and messages', async () => {
    const outcome = await runWith(stats({ sent: 3, received: 2 }));
    expect(metric(outcome, 'packet_loss')?.value).toBe(33.333);
    expect(outcome.message).toContain('packet loss 33.3% at or above the warning threshold of 20%');
  });

  it('reports latency-high on the average round trip over the critical threshold', async () => {
    const outcome = await runWith(stats({ rttMinMs: 250, rttAvgMs: 350.4, rttMaxMs: 500 }), { rttWarnMs: 100, rttCritMs: 300 });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('latency-high');
    expect(outcome.message).toBe('gw.example.com: average rtt 350 ms at or above the critical threshold of 300 ms; 5/5 replies, 0% loss, rtt min/avg/max 250/350/500 ms, jitter 5.00 ms');

    const warn = await runWith(stats({ rttAvgMs: 150 }), { rttWarnMs: 100, rttCritMs: 300 });
    expect(warn).toMatchObject({ state: 'warn', reason: 'latency-high' });
    expect(warn.message).toContain('average rtt 150 ms at or above the warning threshold of 100 ms');
  });

  it('reports jitter-high over the warning threshold', async () => {
    const outcome = await runWith(stats({ jitterMs: 12.5 }), { jitterWarnMs: 10, jitterCritMs: '50ms' });
    expect(outcome).toMatchObject({ state: 'warn', reason: 'jitter-high' });
    expect(outcome.message).toContain('jitter 12.5 ms at or above the warning threshold of 10 ms');
    expect(metric(outcome, 'jitter')).toEqual({ name: 'jitter', value: 12.5, unit: 'ms', kind: 'gauge', warn: 10, crit: 50 });
  });

  it('lets the worst state win, naming every threshold crossed, worst first', async () => {
    // Loss warns, jitter is critical: jitter decides, and the message names both.
    const outcome = await runWith(stats({ received: 4, jitterMs: 80 }), { jitterWarnMs: 10, jitterCritMs: 50 });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('jitter-high');
    expect(outcome.message).toBe(
      'gw.example.com: jitter 80.0 ms at or above the critical threshold of 50 ms, packet loss 20% at or above the warning threshold of 20%; 4/5 replies, 20% loss, rtt min/avg/max 10.0/20.0/30.0 ms, jitter 80.0 ms',
    );

    // All three at the same state: loss outranks latency, latency outranks jitter.
    const tie = await runWith(stats({ received: 4, rttAvgMs: 150, jitterMs: 20 }), { rttWarnMs: 100, jitterWarnMs: 10 });
    expect(tie.state).toBe('warn');
    expect(tie.reason).toBe('packet-loss-high');
    expect(tie.message).toMatch(/^gw\.example\.com: packet loss 20% .*, average rtt 150 ms .*, jitter 20\.0 ms at or above the warning threshold of 10 ms; /);
  });

  it('reports dns, and ping-error as crit when ping says the network is unreachable, unknown otherwise', async () => {
    expect(await runWith({ kind: 'dns', message: 'Name or service not known' })).toEqual({
      state: 'crit',
      reason: 'dns',
      message: 'cannot resolve host gw.example.com (Name or service not known)',
    });
    expect(await runWith({ kind: 'error', message: 'ping: connect: Network is unreachable' })).toEqual({
      state: 'crit',
      reason: 'ping-error',
      message: 'pinging gw.example.com failed: ping: connect: Network is unreachable',
    });
    expect(await runWith({ kind: 'error', message: 'ping: socket: Operation not permitted' })).toEqual({
      state: 'unknown',
      reason: 'ping-error',
      message: 'pinging gw.example.com failed: ping: socket: Operation not permitted',
    });
  });

  it('reports timeout without asking the engine when the signal is already aborted', async () => {
    const engine = cannedEngine(stats());
    const outcome = await pingCommand(engine).run(parse({ host: 'gw.example.com' }), ctx(AbortSignal.abort()));
    expect(outcome).toEqual({ state: 'crit', reason: 'timeout', message: 'timed out before pinging gw.example.com' });
    expect(engine.targets).toEqual([]);
  });

  it('reports timeout when the engine rejects because the signal aborted, and rethrows other failures', async () => {
    const controller = new AbortController();
    const waiting: PingEngine = {
      name: 'waits-for-abort',
      ping: (_target, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })),
    };
    const running = pingCommand(waiting).run(parse({ host: 'gw.example.com' }), ctx(controller.signal));
    controller.abort();
    expect(await running).toEqual({ state: 'crit', reason: 'timeout', message: 'timed out pinging gw.example.com' });

    const broken: PingEngine = { name: 'broken', ping: () => Promise.reject(new Error('engine bug')) };
    await expect(pingCommand(broken).run(parse({ host: 'gw.example.com' }), ctx())).rejects.toThrow('engine bug');
  });
});

describe('ping command: attributes', () => {
  const ping = pingCommand(cannedEngine(stats()));

  it('keeps accepting the documented config example, with plain numbers as milliseconds', () => {
    expect(parse({ host: '10.0.0.1', count: 3, lossWarn: 20, lossCrit: 60, rttWarnMs: 100, rttCritMs: 300 })).toEqual({
      host: '10.0.0.1',
      count: 3,
      packetSize: 56,
      packetTimeoutMs: 1000,
      lossWarn: 20,
      lossCrit: 60,
      rttWarnMs: 100,
      rttCritMs: 300,
    });
  });

  it('applies the defaults and leaves unset options out', () => {
    expect(parse({ host: 'gw' })).toEqual({ host: 'gw', count: 3, packetSize: 56, packetTimeoutMs: 1000, lossWarn: 20, lossCrit: 60 });
    expect(parse({ host: 'gw', packetTimeout: '1.5s', jitterWarnMs: '5ms', jitterCritMs: 20, ipVersion: 4, lossWarn: 0.5 })).toMatchObject({
      packetTimeoutMs: 1500,
      jitterWarnMs: 5,
      jitterCritMs: 20,
      ipVersion: 4,
      lossWarn: 0.5,
    });
  });

  it('requires a host that cannot be read as an option', () => {
    expect(ping.parse({})).toEqual({ ok: false, issues: [{ path: ['host'], message: 'expected a host name or IP address, got nothing' }] });
    expect(ping.parse({ host: '-f' })).toEqual({ ok: false, issues: [{ path: ['host'], message: 'expected a host name or IP address, got "-f"' }] });
    expect(ping.parse({ host: '' })).toEqual({ ok: false, issues: [{ path: ['host'], message: 'expected a host name or IP address, got ""' }] });
    expect(ping.parse({ host: 'a b' })).toMatchObject({ ok: false, issues: [{ path: ['host'] }] });
    expect(ping.parse({ host: 42 })).toEqual({ ok: false, issues: [{ path: ['host'], message: 'expected a host name or IP address, got 42' }] });
  });

  it('says what count, packetSize, packetTimeout and ipVersion should be', () => {
    expect(ping.parse({ host: 'gw', count: 0 })).toEqual({ ok: false, issues: [{ path: ['count'], message: 'expected an integer 1–100, got 0' }] });
    expect(ping.parse({ host: 'gw', count: 101 })).toMatchObject({ ok: false, issues: [{ path: ['count'] }] });
    expect(ping.parse({ host: 'gw', packetSize: 8 })).toEqual({ ok: false, issues: [{ path: ['packetSize'], message: 'expected an integer 16–65507, got 8' }] });
    expect(ping.parse({ host: 'gw', packetTimeout: 0 })).toEqual({
      ok: false,
      issues: [{ path: ['packetTimeout'], message: 'expected a duration like 30s, 5m, 250ms or milliseconds (at least 1ms), got 0' }],
    });
    expect(ping.parse({ host: 'gw', packetTimeout: '2m' })).toEqual({ ok: false, issues: [{ path: ['packetTimeout'], message: 'expected a duration of at most 60s, got "2m"' }] });
    expect(ping.parse({ host: 'gw', ipVersion: 5 })).toEqual({ ok: false, issues: [{ path: ['ipVersion'], message: 'expected 4 or 6, got 5' }] });
    expect(ping.parse({ host: 'gw', ipVersion: '6' })).toMatchObject({ ok: false, issues: [{ path: ['ipVersion'] }] });
  });

  it('rejects an IP version that contradicts an address', () => {
    expect(ping.parse({ host: '::1', ipVersion: 4 })).toEqual({ ok: false, issues: [{ path: ['ipVersion'], message: 'expected 6 or nothing for the IPv6 address ::1, got 4' }] });
    expect(ping.parse({ host: '127.0.0.1', ipVersion: 6 })).toMatchObject({ ok: false, issues: [{ path: ['ipVersion'] }] });
  });

  it('says what a percentage should be', () => {
    expect(ping.parse({ host: 'gw', lossWarn: 120 })).toEqual({ ok: false, issues: [{ path: ['lossWarn'], message: 'expected a percentage 0–100, got 120' }] });
    expect(ping.parse({ host: 'gw', lossCrit: '50%' })).toEqual({ ok: false, issues: [{ path: ['lossCrit'], message: 'expected a percentage 0–100, got "50%"' }] });
    expect(ping.parse({ host: 'gw', lossCrit: -1 })).toEqual({ ok: false, issues: [{ path: ['lossCrit'], message: 'expected a percentage 0–100, got -1' }] });
  });

  it('rejects warning thresholds above critical ones, saying when the other side is a default', () => {
    expect(ping.parse({ host: 'gw', lossWarn: 50, lossCrit: 40 })).toEqual({
      ok: false,
      issues: [{ path: ['lossWarn'], message: 'expected a percentage no higher than lossCrit (40%), got 50' }],
    });
    expect(ping.parse({ host: 'gw', lossWarn: 70 })).toEqual({
      ok: false,
      issues: [{ path: ['lossWarn'], message: 'expected a percentage no higher than lossCrit (60%, its default), got 70' }],
    });
    expect(ping.parse({ host: 'gw', lossCrit: 10 })).toEqual({
      ok: false,
      issues: [{ path: ['lossCrit'], message: 'expected a percentage no lower than lossWarn (20%, its default), got 10' }],
    });
    expect(ping.parse({ host: 'gw', rttWarnMs: '2s', rttCritMs: 300 })).toEqual({
      ok: false,
      issues: [{ path: ['rttWarnMs'], message: 'expected a duration no longer than rttCritMs (300ms), got "2s"' }],
    });
    expect(ping.parse({ host: 'gw', jitterWarnMs: 30, jitterCritMs: '20ms' })).toEqual({
      ok: false,
      issues: [{ path: ['jitterWarnMs'], message: 'expected a duration no longer than jitterCritMs (20ms), got 30' }],
    });
  });

  it('reports a bad threshold once, not also as out of order', () => {
    expect(ping.parse({ host: 'gw', rttWarnMs: 'soon', rttCritMs: 1 })).toEqual({
      ok: false,
      issues: [{ path: ['rttWarnMs'], message: 'expected a duration like 30s, 5m, 250ms or milliseconds, got "soon"' }],
    });
  });

  it('rejects unknown keys, such as timeout (a setting of the check, not of ping)', () => {
    expect(ping.parse({ host: 'gw', timeout: '1s' })).toEqual({ ok: false, issues: [{ path: ['timeout'], message: 'unknown key' }] });
  });

  it('describes its attributes in JSON Schema, with the loss defaults', () => {
    expect(ping.attributesJsonSchema).toMatchObject({
      type: 'object',
      required: ['host'],
      additionalProperties: false,
      properties: { count: { default: 3 }, lossWarn: { default: 20 }, lossCrit: { default: 60 } },
    });
  });
});
