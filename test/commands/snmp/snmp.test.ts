import { createSocket } from 'node:dgram';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../../src/commands/command.js';
import { snmpCommand, type SnmpAttributes } from '../../../src/commands/snmp/snmp.js';
import { clockWith } from '../../../src/core/clock.js';
import type { Metric } from '../../../src/results/metric.js';
import { toResult, type CommandOutcome, type Result } from '../../../src/results/result.js';
import { silentLogger } from '../../helpers/logger.js';
import { pollUntil } from '../../helpers/processes.js';
import { freeUdpPort, Snmpd, SYS_UP_TIME, TEST_OIDS, type SnmpdValues } from '../../helpers/snmpd.js';

/**
 * The snmp command against a real snmpd, whose values under TEST_OIDS (and sysUpTime) the tests set.
 * Counter runs take their time from a clock the test sets, so rates are exact.
 */

const AUTH_KEY = 'auth-pass-phrase';
const PRIV_KEY = 'priv-pass-phrase';
const COMMUNITY = 'c0mmunity-secret';
const UNRESOLVABLE = `${'a'.repeat(64)}.invalid`;
const IF_HIGH_SPEED = '1.3.6.1.2.1.31.1.1.1.15';
const UPTIME = `${SYS_UP_TIME}.0`;
const T0 = 1_700_000_000_000;

const oid = (suffix: string): string => `${TEST_OIDS}.${suffix}`;
const logger = silentLogger();
let agent: Snmpd;
let now = T0;
const snmp = snmpCommand({ clock: clockWith(() => now) });

beforeAll(async () => {
  agent = await Snmpd.start({
    communities: [COMMUNITY],
    users: [
      { name: 'private', authProtocol: 'SHA', authKey: AUTH_KEY, privProtocol: 'AES', privKey: PRIV_KEY },
      { name: 'signed', authProtocol: 'SHA-256', authKey: AUTH_KEY },
      { name: 'open' },
    ],
    subtrees: [IF_HIGH_SPEED],
  });
});
afterAll(async () => {
  await agent?.stop();
});
beforeEach(() => {
  now = T0;
});

/** A context whose signal aborts at its deadline, as the server's does. */
function ctx(previous: Result | null = null, timeoutMs = 5000, signal: AbortSignal = AbortSignal.timeout(timeoutMs)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + timeoutMs, logger, previous };
}

function parse(raw: Record<string, unknown>): SnmpAttributes {
  const parsed = snmp.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

/** Runs against the test agent with the v2c community unless `raw` says otherwise. */
async function run(raw: Record<string, unknown>, context: CommandContext = ctx()): Promise<CommandOutcome> {
  return snmp.run(parse({ host: agent.host, port: agent.port, community: COMMUNITY, ...raw }), context);
}

async function runV3(raw: Record<string, unknown>, context: CommandContext = ctx()): Promise<CommandOutcome> {
  return snmp.run(parse({ host: agent.host, port: agent.port, version: 3, ...raw }), context);
}

function metric(outcome: CommandOutcome, name: string): Metric | undefined {
  return outcome.metrics?.find((m) => m.name === name);
}

function names(outcome: CommandOutcome): string[] {
  return (outcome.metrics ?? []).map((m) => m.name);
}

const MS = String.raw`\d+(?:\.\d+)?`;
const where = (): string => `127\\.0\\.0\\.1:${agent.port}`;
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('snmp gauge', () => {
  it('reads a number, with its value and response time as metrics', async () => {
    await agent.setValues({ [oid('1.0')]: ['gauge', 42] });
    const outcome = await run({ oid: oid('1.0'), unit: '%', warn: 80, crit: 90 });
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(outcome.message).toMatch(new RegExp(`^${escape(oid('1.0'))} = 42% from ${where()} in ${MS} ms$`));
    expect(metric(outcome, 'value')).toEqual({ name: 'value', value: 42, unit: '%', kind: 'gauge', warn: 80, crit: 90 });
    expect(metric(outcome, 'response_time')).toMatchObject({ unit: 'ms', kind: 'gauge' });
  });

  it('is warn at the warning threshold and crit at the critical one', async () => {
    await agent.setValues({ [oid('1.0')]: ['integer', 80], [oid('2.0')]: ['integer', 95] });
    const warn = await run({ oid: oid('1.0'), unit: '%', warn: 80, crit: 90 });
    expect(warn).toMatchObject({ state: 'warn', reason: 'threshold' });
    expect(warn.message).toMatch(/ = 80% from .* ms, at or above the warning threshold of 80%$/);
    const crit = await run({ oid: oid('2.0'), unit: '%', warn: 80, crit: 90 });
    expect(crit).toMatchObject({ state: 'crit', reason: 'threshold' });
    expect(crit.message).toMatch(/, at or above the critical threshold of 90%$/);
  });

  it('judges low values as bad with direction below, leaving the thresholds off the metric', async () => {
    await agent.setValues({ [oid('1.0')]: ['gauge', 15] });
    const outcome = await run({ oid: oid('1.0'), warn: 30, crit: 10, direction: 'below', unit: '%' });
    expect(outcome).toMatchObject({ state: 'warn', reason: 'threshold' });
    expect(outcome.message).toMatch(/at or below the warning threshold of 30%$/);
    expect(metric(outcome, 'value')).toEqual({ name: 'value', value: 15, unit: '%', kind: 'gauge' });
  });

  it('reads a number written as a string, and scales it', async () => {
    await agent.setValues({ [oid('1.0')]: ['string', '0.15'], [oid('2.0')]: ['integer', 48_500] });
    expect(await run({ oid: oid('1.0'), warn: 1 })).toMatchObject({ state: 'ok', metrics: [{ name: 'value', value: 0.15 }, { name: 'response_time' }] });
    const scaled = await run({ oid: oid('2.0'), scale: 0.001, unit: 'C', crit: 45 });
    expect(scaled).toMatchObject({ state: 'crit', reason: 'threshold' });
    expect(scaled.message).toMatch(/ = 48\.5 C \(raw 48500\) from .*, at or above the critical threshold of 45 C$/);
  });

  it('is unknown unexpected-type for a value that is not a number', async () => {
    await agent.setValues({ [oid('1.0')]: ['string', 'eth0'] });
    const outcome = await run({ oid: oid('1.0') });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'unexpected-type' });
    expect(outcome.message).toBe(`expected a number at ${oid('1.0')} for mode gauge, got OctetString "eth0" from 127.0.0.1:${agent.port}`);
  });
});

describe('snmp status', () => {
  it('is ok when the value is the one expected, or one of them', async () => {
    await agent.setValues({ [oid('8.1')]: ['integer', 1], [oid('8.2')]: ['integer', 5], [oid('9.0')]: ['string', 'running'] });
    const up = await run({ oid: oid('8.1'), mode: 'status', expect: 1 });
    expect(up).toMatchObject({ state: 'ok', reason: 'ok', metrics: [{ name: 'value', value: 1 }, { name: 'response_time' }] });
    expect(up.message).toMatch(new RegExp(`^${escape(oid('8.1'))} = 1 from ${where()} in ${MS} ms, as expected$`));
    expect(await run({ oid: oid('8.2'), mode: 'status', expect: [1, 5] })).toMatchObject({ state: 'ok' });
    expect(await run({ oid: oid('9.0'), mode: 'status', expect: 'running' })).toMatchObject({ state: 'ok' });
  });

  it('is crit unexpected-status for another value', async () => {
    await agent.setValues({ [oid('8.1')]: ['integer', 2], [oid('9.0')]: ['string', 'stopped'] });
    const down = await run({ oid: oid('8.1'), mode: 'status', expect: 1 });
    expect(down).toMatchObject({ state: 'crit', reason: 'unexpected-status', message: `expected ${oid('8.1')} to be 1, got 2 from 127.0.0.1:${agent.port}` });
    const stopped = await run({ oid: oid('9.0'), mode: 'status', expect: ['running', 'starting'] });
    expect(stopped.message).toBe(`expected ${oid('9.0')} to be one of "running", "starting", got "stopped" from 127.0.0.1:${agent.port}`);
  });
});

describe('snmp walk', () => {
  const statuses: SnmpdValues = { [oid('8.1')]: ['integer', 1], [oid('8.2')]: ['integer', 1], [oid('8.3')]: ['integer', 2], [oid('8.10')]: ['integer', 7], [oid('9.0')]: ['integer', 3] };

  it('judges every value under the subtree (and nothing after it) in status mode', async () => {
    await agent.setValues(statuses);
    const outcome = await run({ walk: oid('8'), mode: 'status', expect: 1 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-status', message: `expected every value under ${oid('8')} to be 1, 2 of 4 are not: .3 = 2, .10 = 7 (127.0.0.1:${agent.port})` });
    expect(metric(outcome, 'count')?.value).toBe(4);
    const accepted = await run({ walk: oid('8'), mode: 'status', expect: [1, 2, 7] });
    expect(accepted.state).toBe('ok');
    expect(accepted.message).toMatch(new RegExp(`^4 values under ${escape(oid('8'))} at ${where()} in ${MS} ms, all one of 1, 2, 7$`));
  });

  it('reports the worst value of a gauge walk, and every value past the threshold', async () => {
    await agent.setValues({ [oid('4.1')]: ['gauge', 40], [oid('4.2')]: ['gauge', 91], [oid('4.3')]: ['gauge', 97] });
    const crit = await run({ walk: oid('4'), unit: '%', warn: 80, crit: 90 });
    expect(crit).toMatchObject({ state: 'crit', reason: 'threshold', message: `2 of 3 values under ${oid('4')} at 127.0.0.1:${agent.port} at or above the critical threshold of 90%: .2 = 91%, .3 = 97%` });
    expect(metric(crit, 'value')).toEqual({ name: 'value', value: 97, unit: '%', kind: 'gauge', warn: 80, crit: 90 });
    const ok = await run({ walk: oid('4'), unit: '%', crit: 99 });
    expect(ok.message).toMatch(/, highest \.3 = 97%$/);
  });

  it('walks across several GETBULK rounds', async () => {
    const many: Record<string, [ 'integer', number ]> = {};
    for (let i = 1; i <= 45; i++) many[oid(`6.${i}`)] = ['integer', 1];
    await agent.setValues(many);
    const outcome = await run({ walk: oid('6'), mode: 'status', expect: 1 });
    expect(outcome.state).toBe('ok');
    expect(metric(outcome, 'count')?.value).toBe(45);
  });

  it('is crit no-such-object when the subtree is empty', async () => {
    await agent.setValues(statuses);
    const outcome = await run({ walk: oid('7'), mode: 'status', expect: 1 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'no-such-object', message: `nothing under ${oid('7')} at 127.0.0.1:${agent.port}` });
  });
});

describe('snmp counter', () => {
  /** One counter run at `at` (ms after T0) with the counter at `value`; resolves the Result the next run sees. */
  async function reading(raw: Record<string, unknown>, values: SnmpdValues, at: number, previous: Result | null = null): Promise<{ outcome: CommandOutcome; result: Result }> {
    await agent.setValues(values);
    now = T0 + at;
    const outcome = await run({ mode: 'counter', ...raw }, ctx(previous));
    return { outcome, result: toResult(outcome, now, 1) };
  }
  const c32 = (value: number, uptime = 100_000): SnmpdValues => ({ [oid('3.0')]: ['counter', value], [UPTIME]: ['timeticks', uptime] });
  const c64 = (value: bigint): SnmpdValues => ({ [oid('3.0')]: ['counter64', value], [UPTIME]: ['timeticks', 100_000] });

  it('reports no rate on the first reading, keeping the counter for the next run', async () => {
    const { outcome } = await reading({ oid: oid('3.0'), unit: 'B' }, c32(1000), 0);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'first-sample', message: `first reading of ${oid('3.0')} from 127.0.0.1:${agent.port}: Counter32 1000; the rate comes with the next run` });
    expect(names(outcome)).toEqual(['response_time', 'counter', 'sampled_at', 'agent_uptime']);
    expect(metric(outcome, 'counter')).toEqual({ name: 'counter', value: 1000, unit: 'B', kind: 'counter' });
    expect(metric(outcome, 'sampled_at')?.value).toBe(T0);
    expect(metric(outcome, 'agent_uptime')?.value).toBe(1000);
  });

  it('gives the rate per second from the previous reading', async () => {
    const first = await reading({ oid: oid('3.0'), unit: 'B' }, c32(1000), 0);
    const { outcome } = await reading({ oid: oid('3.0'), unit: 'B' }, c32(61_000, 106_000), 60_000, first.result);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: `${oid('3.0')} at 127.0.0.1:${agent.port}: 1000 B/s over 60 s` });
    expect(metric(outcome, 'rate')).toEqual({ name: 'rate', value: 1000, unit: 'B/s', kind: 'gauge' });
    expect(metric(outcome, 'counter')?.value).toBe(61_000);
  });

  it('applies thresholds to the scaled rate', async () => {
    const raw = { oid: oid('3.0'), unit: 'b', scale: 8, warn: 4000, crit: 8000 };
    const first = await reading(raw, c32(0), 0);
    const { outcome } = await reading(raw, c32(6_000), 10_000, first.result);
    expect(outcome).toMatchObject({ state: 'warn', reason: 'threshold', message: `${oid('3.0')} at 127.0.0.1:${agent.port}: 4800 b/s over 10 s, at or above the warning threshold of 4000 b/s` });
    expect(metric(outcome, 'rate')).toEqual({ name: 'rate', value: 4800, unit: 'b/s', kind: 'gauge', warn: 4000, crit: 8000 });
  });

  it('counts across a Counter32 wrap at 2^32', async () => {
    const first = await reading({ oid: oid('3.0') }, c32(4_294_967_000), 0);
    const { outcome } = await reading({ oid: oid('3.0') }, c32(704, 106_000), 10_000, first.result);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok', message: `${oid('3.0')} at 127.0.0.1:${agent.port}: 100/s over 10 s; the counter wrapped at 2^32` });
  });

  it('counts across a Counter64 wrap at 2^64, exactly', async () => {
    const near = 2n ** 64n - 1000n;
    const first = await reading({ oid: oid('3.0') }, c64(near), 0);
    expect(names(first.outcome)).toEqual(['response_time', 'counter', 'counter_high', 'counter_low', 'sampled_at', 'agent_uptime']);
    const { outcome } = await reading({ oid: oid('3.0') }, c64(3000n), 1000, first.result);
    expect(metric(outcome, 'rate')?.value).toBe(4000);
    expect(outcome.message).toMatch(/: 4000\/s over 1 s; the counter wrapped at 2\^64$/);
  });

  it('takes a counter that went back further than a wrap explains as a reset', async () => {
    const first = await reading({ oid: oid('3.0') }, c32(5_000_000), 0);
    const { outcome } = await reading({ oid: oid('3.0') }, c32(10, 106_000), 60_000, first.result);
    expect(outcome).toMatchObject({
      state: 'ok',
      reason: 'reset',
      message: `${oid('3.0')} at 127.0.0.1:${agent.port} was reset: the counter went back from 5000000 to 10, more than a wrap at 2^32 explains; the rate comes with the next run`,
    });
    expect(metric(outcome, 'rate')).toBeUndefined();
    expect(metric(outcome, 'counter')?.value).toBe(10);
  });

  it('takes an agent whose sysUpTime went back as restarted, whatever the counter did', async () => {
    const first = await reading({ oid: oid('3.0') }, c32(4_000_000_000, 900_000), 0);
    const { outcome } = await reading({ oid: oid('3.0') }, c32(20, 500), 60_000, first.result);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'reset' });
    expect(outcome.message).toContain('the agent restarted (sysUpTime went back from 2h 30m 0s to 5s)');
  });

  it('gives the utilization of an interface speed read from the agent, with percent thresholds', async () => {
    const raw = { oid: oid('3.0'), unit: 'B', speedOid: oid('5.1'), warnPercent: 50, critPercent: 90 };
    const values = (counter: number): SnmpdValues => ({ ...c32(counter), [oid('5.1')]: ['gauge', 10_000_000] });
    const first = await reading(raw, values(0), 0);
    const { outcome } = await reading(raw, values(750_000), 1000, first.result);
    expect(outcome).toMatchObject({ state: 'warn', reason: 'threshold', message: `${oid('3.0')} at 127.0.0.1:${agent.port}: 750000 B/s (60% of 10 Mb/s) over 1 s, at or above the warning threshold of 50% of the speed` });
    expect(metric(outcome, 'utilization')).toEqual({ name: 'utilization', value: 60, unit: '%', kind: 'gauge', warn: 50, crit: 90 });
  });

  it('reads ifHighSpeed in Mb/s', async () => {
    const raw = { oid: oid('3.0'), speedOid: `${IF_HIGH_SPEED}.1`, critPercent: 90 };
    const values = (counter: number): SnmpdValues => ({ ...c32(counter), [`${IF_HIGH_SPEED}.1`]: ['gauge', 1000] });
    const first = await reading(raw, values(0), 0);
    const { outcome } = await reading(raw, values(118_750_000), 1000, first.result);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'threshold' });
    expect(outcome.message).toContain('118750000/s (95% of 1 Gb/s) over 1 s, at or above the critical threshold of 90% of the speed');
  });

  it('takes a fixed speedBps, and refuses a wrap faster than the interface', async () => {
    const raw = { oid: oid('3.0'), speedBps: 8_000_000 };
    const first = await reading(raw, c32(3_000_000_000), 0);
    const { outcome } = await reading(raw, c32(1000), 60_000, first.result);
    expect(outcome).toMatchObject({ state: 'ok', reason: 'reset' });
    expect(outcome.message).toContain('and a wrap would mean more than the interface can carry');
  });

  it('is unknown no-speed when percent thresholds have no speed to work with, keeping the reading', async () => {
    const raw = { oid: oid('3.0'), speedOid: oid('5.1'), warnPercent: 50 };
    const values = (counter: number): SnmpdValues => ({ ...c32(counter), [oid('5.1')]: ['gauge', 0] });
    const first = await reading(raw, values(0), 0);
    const { outcome } = await reading(raw, values(100), 1000, first.result);
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'no-speed', message: `${oid('3.0')} at 127.0.0.1:${agent.port}: 100/s over 1 s; no interface speed to take a percentage of: ${oid('5.1')} is 0 (speed unknown)` });
    expect(metric(outcome, 'rate')?.value).toBe(100);
    expect(metric(outcome, 'counter')?.value).toBe(100);
  });

  it('is unknown unexpected-type for a value that is not a counter', async () => {
    await agent.setValues({ [oid('3.0')]: ['gauge', 5] });
    const outcome = await run({ oid: oid('3.0'), mode: 'counter' });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'unexpected-type', message: `expected a Counter32 or Counter64 at ${oid('3.0')} for mode counter, got Gauge32 5 from 127.0.0.1:${agent.port}` });
  });

  it('passes the previous reading on through a failed run, so the next rate spans the gap', async () => {
    const first = await reading({ oid: oid('3.0') }, c32(1000), 0);
    const closed = await freeUdpPort();
    now = T0 + 30_000;
    const failedRun = await snmp.run(parse({ host: '127.0.0.1', port: closed, oid: oid('3.0'), mode: 'counter' }), ctx(first.result));
    expect(failedRun).toMatchObject({ state: 'crit', reason: 'unreachable' });
    expect(metric(failedRun, 'counter')?.value).toBe(1000);
    const { outcome } = await reading({ oid: oid('3.0') }, c32(7000, 106_000), 60_000, toResult(failedRun, now, 1));
    expect(metric(outcome, 'rate')?.value).toBe(100);
  });
});

describe('snmp failures', () => {
  it('is crit no-such-object for an OID the agent does not have', async () => {
    const outcome = await run({ oid: '1.3.6.1.4.1.99998.1.0' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'no-such-object', message: `no such object 1.3.6.1.4.1.99998.1.0 at 127.0.0.1:${agent.port}` });
  });

  it('is crit no-such-instance for an index the object does not have', async () => {
    await agent.setValues({ [oid('8.1')]: ['integer', 1] });
    const outcome = await run({ oid: oid('8.2'), mode: 'status', expect: 1 });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'no-such-instance', message: `no such instance ${oid('8.2')} at 127.0.0.1:${agent.port}: the object exists, this index does not` });
  });

  it('is crit timeout for a wrong community (the agent says nothing), which the message does not show', async () => {
    const outcome = await snmp.run(parse({ host: agent.host, port: agent.port, community: 'wrong-community', oid: UPTIME, retries: 0 }), ctx(null, 300));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(outcome.message).toMatch(new RegExp(`^no answer from ${where()} within ${MS} ms \\(an agent ignores a wrong community too\\)$`));
    expect(outcome.message).not.toContain('wrong-community');
  });

  it('is crit timeout, having sent nothing, when the run is aborted already', async () => {
    const outcome = await run({ oid: UPTIME }, ctx(null, 5000, AbortSignal.abort()));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out before querying 127.0.0.1:${agent.port}` });
  });

  it('is crit unreachable at once for a port where nothing listens', async () => {
    const port = await freeUdpPort();
    const outcome = await snmp.run(parse({ host: '127.0.0.1', port, oid: UPTIME }), ctx(null, 20_000));
    expect(outcome).toEqual({ state: 'crit', reason: 'unreachable', message: `127.0.0.1:${port} is unreachable: port unreachable: nothing listens for SNMP there (ECONNREFUSED)`, metrics: [] });
  });

  it('is crit dns for a host that cannot be resolved', async () => {
    const outcome = await snmp.run(parse({ host: UNRESOLVABLE, oid: UPTIME }), ctx());
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('dns');
    expect(outcome.message).toMatch(new RegExp(`^cannot resolve host ${UNRESOLVABLE}: cannot resolve host ${UNRESOLVABLE} \\((ENOTFOUND|EAI_\\w+)\\)$`));
  });

  it('is unknown snmp-error for an answer that is not SNMP', async () => {
    const server = createSocket('udp4');
    server.on('message', (_message, remote) => server.send('not an SNMP message', remote.port, remote.address));
    await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address();
      const outcome = await snmp.run(parse({ host: '127.0.0.1', port, community: COMMUNITY, oid: UPTIME }), ctx());
      expect(outcome).toMatchObject({ state: 'unknown', reason: 'snmp-error' });
      expect(outcome.message).toMatch(new RegExp(`^reading ${escape(UPTIME)} at 127\\.0\\.0\\.1:${port} failed: the answer is (not valid SNMP|not one net-snmp accepts) \\(.+\\)$`));
      expect(outcome.message).not.toContain(COMMUNITY);
    } finally {
      await new Promise<void>((resolve) => server.close(resolve));
    }
  });

  it('is unknown snmp-error for an error status, here authorizationError for a user below its security level', async () => {
    const outcome = await runV3({ oid: UPTIME, user: 'private', authKey: AUTH_KEY });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'snmp-error', message: `reading ${UPTIME} at 127.0.0.1:${agent.port} failed: the agent answered AuthorizationError` });
  });
});

describe('snmp v3', () => {
  it('reads with authPriv (SHA, AES), authNoPriv (SHA-256) and noAuthNoPriv', async () => {
    await agent.setValues({ [oid('8.1')]: ['integer', 1] });
    const status = { oid: oid('8.1'), mode: 'status', expect: 1 };
    expect(await runV3({ ...status, user: 'private', authKey: AUTH_KEY, privKey: PRIV_KEY })).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await runV3({ ...status, user: 'signed', authProtocol: 'SHA-256', authKey: AUTH_KEY })).toMatchObject({ state: 'ok', reason: 'ok' });
    expect(await runV3({ ...status, user: 'open' })).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('walks with authPriv', async () => {
    await agent.setValues({ [oid('8.1')]: ['integer', 1], [oid('8.2')]: ['integer', 1] });
    const outcome = await runV3({ walk: oid('8'), mode: 'status', expect: 1, user: 'private', authKey: AUTH_KEY, privKey: PRIV_KEY });
    expect(outcome).toMatchObject({ state: 'ok', metrics: [{ name: 'count', value: 2 }, { name: 'response_time' }] });
  });

  it('is unknown auth-failed for a wrong authKey, without showing a key', async () => {
    const outcome = await runV3({ oid: UPTIME, user: 'private', authKey: 'not-the-auth-key', privKey: PRIV_KEY });
    expect(outcome).toMatchObject({
      state: 'unknown',
      reason: 'auth-failed',
      message: `SNMPv3 authentication with 127.0.0.1:${agent.port} failed: wrong authKey or authProtocol for user "private" (usmStatsWrongDigests)`,
    });
    expect(outcome.message).not.toContain('not-the-auth-key');
    expect(outcome.message).not.toContain(PRIV_KEY);
  });

  it('is unknown auth-failed for a wrong authProtocol', async () => {
    const outcome = await runV3({ oid: UPTIME, user: 'signed', authProtocol: 'md5', authKey: AUTH_KEY });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'auth-failed' });
  });

  it('is unknown auth-failed for a user the agent does not know', async () => {
    const outcome = await runV3({ oid: UPTIME, user: 'stranger', authKey: AUTH_KEY });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'auth-failed', message: `SNMPv3 authentication with 127.0.0.1:${agent.port} failed: user "stranger" is unknown to the agent (usmStatsUnknownUserNames)` });
  });

  it('is crit timeout for a wrong privKey: snmpd drops what it cannot decrypt, and the message says so', async () => {
    const outcome = await runV3({ oid: UPTIME, user: 'private', authKey: AUTH_KEY, privKey: 'not-the-priv-key', retries: 0 }, ctx(null, 300));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(outcome.message).toMatch(/ \(an agent ignores a request it cannot decrypt too: check privKey and privProtocol\)$/);
    expect(outcome.message).not.toContain('not-the-priv-key');
  });
});

describe('snmp sessions', () => {
  /** This process's UDP sockets: its descriptors' socket inodes that the kernel's UDP tables list. */
  const udpHandles = (): number => {
    const udp = new Set<string>();
    for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const inode = line.trim().split(/\s+/)[9];
        if (inode !== undefined) udp.add(inode);
      }
    }
    let count = 0;
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
        if (inode !== undefined && udp.has(inode)) count++;
      } catch {
        // closed while the directory was read
      }
    }
    return count;
  };

  it('closes its socket after an answer, a timeout, an abort and an unreachable port', async () => {
    await agent.setValues({ [oid('8.1')]: ['integer', 1] });
    const before = udpHandles();
    const controller = new AbortController();
    const aborted = snmp.run(parse({ host: agent.host, port: agent.port, community: 'nobody-knows', oid: UPTIME }), ctx(null, 10_000, controller.signal));
    // The agent logs each request it receives: abort once this one has arrived.
    const received = agent.output().split('Connection from').length;
    await pollUntil(() => Promise.resolve(agent.output().split('Connection from').length > received ? true : undefined), 'the agent to receive the request', 5000, 10);
    const during = udpHandles();
    controller.abort();
    const outcomes = await Promise.all([
      run({ oid: oid('8.1') }),
      snmp.run(parse({ host: agent.host, port: agent.port, community: 'nobody-knows', oid: UPTIME, retries: 0 }), ctx(null, 200)),
      aborted,
      snmp.run(parse({ host: '127.0.0.1', port: await freeUdpPort(), oid: UPTIME }), ctx()),
    ]);
    expect(outcomes.map((outcome) => outcome.reason)).toEqual(['ok', 'timeout', 'timeout', 'unreachable']);
    expect(during).toBeGreaterThan(before);
    await pollUntil(() => Promise.resolve(udpHandles() <= before ? true : undefined), 'every snmp socket to close', 2000, 10);
    expect(udpHandles()).toBeLessThanOrEqual(before);
  });
});
