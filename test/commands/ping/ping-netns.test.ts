import { describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { pingCommand, type PingAttributes } from '../../../src/commands/ping/ping.js';
import type { CommandOutcome } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { createTestHost, RATE_LIMITED_ECHO, SILENT_ECHO, testNamespacesLeft, useTestHosts } from '../../helpers/netns.js';

/**
 * The real `ping` command (the real iputils engine) against a host in a network namespace of the
 * test's own, whose ICMP behaviour the test sets through the namespace's sysctls. Needs root and
 * iproute2; without them these tests fail and say so.
 */

const logger = silentLogger();
const ping = pingCommand();

const testHost = useTestHosts();

function parse(raw: Record<string, unknown>): PingAttributes {
  const parsed = ping.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function ctx(): CommandContext {
  return { checkId: 'netns', signal: AbortSignal.timeout(15_000), deadline: Date.now() + 15_000, logger, previous: null };
}

function run(raw: Record<string, unknown>): Promise<CommandOutcome> {
  return ping.run(parse(raw), ctx());
}

function lossOf(outcome: CommandOutcome): number | undefined {
  return outcome.metrics?.find((metric) => metric.name === 'packet_loss')?.value;
}

describe('ping command: against a test host in a network namespace', () => {
  it('reports ok for a host that answers', async () => {
    const host = await testHost();
    const outcome = await run({ host: host.address, count: 3 });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^${escape(host.address)}: 3/3 replies, 0% loss, rtt min/avg/max [\\d.]+/[\\d.]+/[\\d.]+ ms, jitter [\\d.]+ ms$`));
    expect(lossOf(outcome)).toBe(0);
  });

  it('reports unreachable when the host ignores echo requests, and ok again once it answers', async () => {
    const host = await testHost({ sysctls: SILENT_ECHO });
    const silent = await run({ host: host.address, count: 3, packetTimeout: '300ms' });
    expect(silent).toMatchObject({ state: 'crit', reason: 'unreachable', message: `${host.address} is unreachable: 0/3 replies (100% loss)` });
    expect(silent.metrics).toEqual([{ name: 'packet_loss', value: 100, unit: '%', kind: 'gauge', warn: 20, crit: 60 }]);

    await host.setSysctl('net.ipv4.icmp_echo_ignore_all', 0);
    const answering = await run({ host: host.address, count: 3 });
    expect(answering).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('reports packet-loss-high as warn when the host rate-limits its replies below the critical threshold', async () => {
    const host = await testHost({ sysctls: RATE_LIMITED_ECHO });
    // Any partial loss of 5 packets (20–80 %) is at or above 1 % and below 99 %.
    const outcome = await run({ host: host.address, count: 5, packetTimeout: '300ms', lossWarn: 1, lossCrit: 99 });
    const loss = lossOf(outcome);
    expect(loss).toBeGreaterThan(0);
    expect(loss).toBeLessThan(100);
    expect(outcome).toMatchObject({ state: 'warn', reason: 'packet-loss-high' });
    expect(outcome.message).toMatch(
      new RegExp(`^${escape(host.address)}: packet loss \\d+% at or above the warning threshold of 1%; [1-4]/5 replies, \\d+% loss, rtt min/avg/max `),
    );
  });

  it('reports packet-loss-high as crit when the loss reaches the critical threshold', async () => {
    const host = await testHost({ sysctls: RATE_LIMITED_ECHO });
    // Any partial loss of 5 packets is at least 20 %.
    const outcome = await run({ host: host.address, count: 5, packetTimeout: '300ms', lossWarn: 1, lossCrit: 20 });
    const loss = lossOf(outcome);
    expect(loss).toBeGreaterThanOrEqual(20);
    expect(loss).toBeLessThan(100);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'packet-loss-high' });
    expect(outcome.message).toMatch(new RegExp(`^${escape(host.address)}: packet loss \\d+% at or above the critical threshold of 20%; [1-4]/5 replies`));
  });

  it('keeps loopback answering while a test host drops everything', async () => {
    // The namespace's sysctls are its own: the machine's loopback is not affected.
    await testHost({ sysctls: SILENT_ECHO });
    const outcome = await run({ host: '127.0.0.1', count: 2 });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
  });
});

describe('test hosts', () => {
  it('gives each host its own namespace and subnet, and removes them on destroy', async () => {
    const first = await testHost();
    const second = await testHost();
    expect(first.name).toMatch(new RegExp(`^vigil-test-${process.pid}-\\d+$`));
    expect(second.name).not.toBe(first.name);
    expect(first.address).toMatch(/^10\.213\.\d+\.2$/);
    expect(second.address.split('.')[2]).not.toBe(first.address.split('.')[2]);
    expect(await testNamespacesLeft()).toEqual(expect.arrayContaining([first.name, second.name]));

    await first.destroy();
    await first.destroy();
    expect(await testNamespacesLeft()).not.toContain(first.name);
    expect(await testNamespacesLeft()).toContain(second.name);
    await expect(first.setSysctl('net.ipv4.icmp_echo_ignore_all', 1)).rejects.toThrow(/was destroyed/);
  });

  it('refuses a sysctl name that is not one', async () => {
    const host = await testHost();
    await expect(host.setSysctl('../../etc/passwd', 1)).rejects.toThrow(/expected a sysctl name/);
  });

  it('removes what it made when a step fails', async () => {
    const before = await testNamespacesLeft();
    await expect(createTestHost({ sysctls: { 'net.ipv4.no_such_sysctl': 1 } })).rejects.toThrow(/no_such_sysctl/);
    expect(await testNamespacesLeft()).toEqual(before);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
