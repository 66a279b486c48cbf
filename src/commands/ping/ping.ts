import { isIP } from 'node:net';
import { z } from 'zod';
import { gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome } from '../../results/result.js';
import { duration, integer } from '../../validation/schema-types.js';
import { defineCommand, type Command, type CommandContext } from '../command.js';
import { processPingEngine, type PingEngine, type PingStatistics } from './ping-engine.js';
import { formatMsPrecisely } from '../../core/format.js';

const DEFAULT_LOSS_WARN = 20;
const DEFAULT_LOSS_CRIT = 60;
/** iputils' limit for IPv4 (65535 less the IP and ICMP headers); IPv6 allows a little more but this is plenty. */
const MAX_PACKET_SIZE = 65_507;
/** Below this iputils has no room for the timestamp and reports no round-trip times. */
const MIN_PACKET_SIZE = 16;
const MAX_PACKET_TIMEOUT_MS = 60_000;

const hostError = 'expected a host name or IP address';
/** Not empty, no whitespace, and no leading `-` that ping could take for an option. */
const HOST = /^[^\s-]\S*$/;
const percentError = 'expected a percentage 0–100';
// `abort` so that an out-of-range value is not also compared with the other threshold.
const percent = () => z.number({ error: percentError }).min(0, { error: percentError, abort: true }).max(100, { error: percentError, abort: true });

const fields = z.strictObject({
  /** Host name or IP address to ping. */
  host: z.string({ error: hostError }).regex(HOST, { error: hostError }),
  /** Echo requests per run, 1–100; default 3. */
  count: integer(1, 100).default(3),
  /** ICMP payload per request in bytes, 16–65507; default 56 (64-byte ICMP packets). */
  packetSize: integer(MIN_PACKET_SIZE, MAX_PACKET_SIZE).default(56),
  /** How long to wait for a reply once the last request is out, 1ms–60s; default 1s. */
  packetTimeout: duration(1).default(1000),
  /** IP version, 4 or 6; default: the system chooses. */
  ipVersion: z.literal([4, 6], { error: 'expected 4 or 6' }).optional(),
  /** Packet loss (%) at or above which the result is `warn`; default 20. */
  lossWarn: percent().optional().meta({ default: DEFAULT_LOSS_WARN }),
  /** Packet loss (%) at or above which the result is `crit`; default 60. 100 % loss is always `crit` (`unreachable`). */
  lossCrit: percent().optional().meta({ default: DEFAULT_LOSS_CRIT }),
  /** Average round trip (ms) at or above which the result is `warn`. */
  rttWarnMs: duration().optional(),
  /** Average round trip (ms) at or above which the result is `crit`. */
  rttCritMs: duration().optional(),
  /** Jitter (mean deviation of the round trips, ms) at or above which the result is `warn`. */
  jitterWarnMs: duration().optional(),
  /** Jitter (mean deviation of the round trips, ms) at or above which the result is `crit`. */
  jitterCritMs: duration().optional(),
});

type Fields = z.output<typeof fields>;

const attributes = fields
  .superRefine((value, ctx) => {
    // The loss defaults are applied after this check (the `meta` defaults only document them), so a
    // message can say when the other side of the comparison is a default.
    const lossCrit = value.lossCrit ?? DEFAULT_LOSS_CRIT;
    const lossWarn = value.lossWarn ?? DEFAULT_LOSS_WARN;
    if (lossWarn > lossCrit) {
      const [path, other] = value.lossWarn === undefined
        ? ['lossCrit', `lossWarn (${lossWarn}%, its default)`]
        : ['lossWarn', `lossCrit (${lossCrit}%${value.lossCrit === undefined ? ', its default' : ''})`];
      const relation = path === 'lossWarn' ? 'no higher than' : 'no lower than';
      ctx.addIssue({ code: 'custom', path: [path], message: `expected a percentage ${relation} ${other}` });
    }
    if (value.rttWarnMs !== undefined && value.rttCritMs !== undefined && value.rttWarnMs > value.rttCritMs) {
      ctx.addIssue({ code: 'custom', path: ['rttWarnMs'], message: `expected a duration no longer than rttCritMs (${value.rttCritMs}ms)` });
    }
    if (value.jitterWarnMs !== undefined && value.jitterCritMs !== undefined && value.jitterWarnMs > value.jitterCritMs) {
      ctx.addIssue({ code: 'custom', path: ['jitterWarnMs'], message: `expected a duration no longer than jitterCritMs (${value.jitterCritMs}ms)` });
    }
    if (value.packetTimeout > MAX_PACKET_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['packetTimeout'], message: `expected a duration of at most ${MAX_PACKET_TIMEOUT_MS / 1000}s` });
    }
    const literal = isIP(value.host);
    if (value.ipVersion !== undefined && literal !== 0 && literal !== value.ipVersion) {
      ctx.addIssue({ code: 'custom', path: ['ipVersion'], message: `expected ${literal} or nothing for the IPv${literal} address ${value.host}` });
    }
  })
  .transform(toAttributes);

/**
 * The `ping` command's attributes after parsing: durations in milliseconds, loss defaults applied.
 * Shaped as a PingTarget, so a run hands them to its engine as they are.
 */
export interface PingAttributes {
  readonly host: string;
  readonly count: number;
  readonly packetSize: number;
  readonly packetTimeoutMs: number;
  readonly ipVersion?: 4 | 6;
  readonly lossWarn: number;
  readonly lossCrit: number;
  readonly rttWarnMs?: number;
  readonly rttCritMs?: number;
  readonly jitterWarnMs?: number;
  readonly jitterCritMs?: number;
}

/** Leaves out the thresholds that are not set, so equal configs give deeply equal attributes. */
function toAttributes(value: Fields): PingAttributes {
  return {
    host: value.host,
    count: value.count,
    packetSize: value.packetSize,
    packetTimeoutMs: value.packetTimeout,
    ...(value.ipVersion === undefined ? {} : { ipVersion: value.ipVersion }),
    lossWarn: value.lossWarn ?? DEFAULT_LOSS_WARN,
    lossCrit: value.lossCrit ?? DEFAULT_LOSS_CRIT,
    ...(value.rttWarnMs === undefined ? {} : { rttWarnMs: value.rttWarnMs }),
    ...(value.rttCritMs === undefined ? {} : { rttCritMs: value.rttCritMs }),
    ...(value.jitterWarnMs === undefined ? {} : { jitterWarnMs: value.jitterWarnMs }),
    ...(value.jitterCritMs === undefined ? {} : { jitterCritMs: value.jitterCritMs }),
  };
}

/**
 * `ping`: sends `count` ICMP echo requests to `host` through `engine` and reports round-trip times,
 * jitter and packet loss against their thresholds; the worst state wins. Reasons: `ok`, `unreachable`
 * (nothing came back), `packet-loss-high`, `latency-high` (average round trip), `jitter-high`, `dns`,
 * `timeout` (aborted), `ping-error` (`crit` when ping says the network or host is unreachable, otherwise
 * `unknown`: ping could not run, which says nothing about the host).
 */
export function pingCommand(engine: PingEngine = processPingEngine()): Command<PingAttributes> {
  return defineCommand({ name: 'ping', attributes, run: (attrs, ctx) => runPing(engine, attrs, ctx) });
}

/** ping's messages that say the host cannot be reached from here, which is about the target, not about ping. */
const UNREACHABLE_ERROR = /Network is unreachable|No route to host|Host is unreachable|Destination \w+ Unreachable/i;

async function runPing(engine: PingEngine, attrs: PingAttributes, { signal }: CommandContext): Promise<CommandOutcome> {
  if (signal.aborted) return { state: 'crit', reason: 'timeout', message: `timed out before pinging ${attrs.host}` };
  let reply;
  try {
    reply = await engine.ping(attrs, signal);
  } catch (error) {
    if (signal.aborted) return { state: 'crit', reason: 'timeout', message: `timed out pinging ${attrs.host}` };
    throw error;
  }
  switch (reply.kind) {
    case 'dns':
      return { state: 'crit', reason: 'dns', message: `cannot resolve host ${attrs.host} (${reply.message})` };
    case 'error':
      return {
        state: UNREACHABLE_ERROR.test(reply.message) ? 'crit' : 'unknown',
        reason: 'ping-error',
        message: `pinging ${attrs.host} failed: ${reply.message}`,
      };
    case 'reply':
      return judge(attrs, reply);
  }
}

/** One threshold a run crossed. */
interface Crossing {
  readonly state: 'warn' | 'crit';
  readonly reason: string;
  readonly text: string;
}

/** Statistics against thresholds: the worst crossing decides; at equal states loss outranks latency, latency jitter. */
function judge(attrs: PingAttributes, reply: PingStatistics): CommandOutcome {
  const { host, lossWarn, lossCrit } = attrs;
  const { sent, received } = reply;
  const loss = sent === 0 ? 100 : ((sent - received) / sent) * 100;
  const lossMetric = gauge('packet_loss', round3(loss), '%', { warn: lossWarn, crit: lossCrit });
  if (received === 0) {
    return { state: 'crit', reason: 'unreachable', message: `${host} is unreachable: 0/${sent} replies (100% loss)`, metrics: [lossMetric] };
  }

  const crossings: Crossing[] = [];
  const lossText = `packet loss ${formatPercent(loss)}%`;
  if (loss >= lossCrit) crossings.push({ state: 'crit', reason: 'packet-loss-high', text: `${lossText} at or above the critical threshold of ${lossCrit}%` });
  else if (loss >= lossWarn) crossings.push({ state: 'warn', reason: 'packet-loss-high', text: `${lossText} at or above the warning threshold of ${lossWarn}%` });

  const metrics: Metric[] = [lossMetric];
  const { rttMinMs, rttAvgMs, rttMaxMs, jitterMs } = reply;
  if (rttMinMs !== null && rttAvgMs !== null && rttMaxMs !== null) {
    metrics.push(
      gauge('rtt_min', rttMinMs, 'ms'),
      gauge('rtt_avg', rttAvgMs, 'ms', { warn: attrs.rttWarnMs, crit: attrs.rttCritMs }),
      gauge('rtt_max', rttMaxMs, 'ms'),
    );
    check(crossings, 'latency-high', `average rtt ${formatMsPrecisely(rttAvgMs)} ms`, rttAvgMs, attrs.rttWarnMs, attrs.rttCritMs);
  }
  if (jitterMs !== null) {
    metrics.push(gauge('jitter', jitterMs, 'ms', { warn: attrs.jitterWarnMs, crit: attrs.jitterCritMs }));
    check(crossings, 'jitter-high', `jitter ${formatMsPrecisely(jitterMs)} ms`, jitterMs, attrs.jitterWarnMs, attrs.jitterCritMs);
  }

  const stats = describe(reply, loss);
  if (crossings.length === 0) return { state: 'ok', reason: 'ok', message: `${host}: ${stats}`, metrics };
  // A stable sort keeps loss before latency before jitter within one state.
  crossings.sort((a, b) => (a.state === b.state ? 0 : a.state === 'crit' ? -1 : 1));
  const worst = crossings[0] as Crossing;
  return { state: worst.state, reason: worst.reason, message: `${host}: ${crossings.map((crossing) => crossing.text).join(', ')}; ${stats}`, metrics };
}

function check(crossings: Crossing[], reason: string, text: string, value: number, warn: number | undefined, crit: number | undefined): void {
  if (crit !== undefined && value >= crit) crossings.push({ state: 'crit', reason, text: `${text} at or above the critical threshold of ${crit} ms` });
  else if (warn !== undefined && value >= warn) crossings.push({ state: 'warn', reason, text: `${text} at or above the warning threshold of ${warn} ms` });
}

/** `3/3 replies, 0% loss, rtt min/avg/max 0.035/0.108/0.223 ms, jitter 0.082 ms` */
function describe(reply: PingStatistics, loss: number): string {
  const counts = `${reply.received}/${reply.sent} replies, ${formatPercent(loss)}% loss`;
  const { rttMinMs, rttAvgMs, rttMaxMs, jitterMs } = reply;
  const rtt = rttMinMs === null || rttAvgMs === null || rttMaxMs === null ? '' : `, rtt min/avg/max ${formatMsPrecisely(rttMinMs)}/${formatMsPrecisely(rttAvgMs)}/${formatMsPrecisely(rttMaxMs)} ms`;
  const jitter = jitterMs === null ? '' : `, jitter ${formatMsPrecisely(jitterMs)} ms`;
  return counts + rtt + jitter;
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function formatPercent(value: number): string {
  return String(Math.round(value * 10) / 10);
}

/** Loopback round trips are hundredths of a millisecond, WAN ones hundreds: keep about three significant digits. */
