import { z } from 'zod';
import { describeValue, type Issue } from '../../validation/issues.js';
import { integer, nonEmptyString, port } from '../../validation/schema-types.js';
import type { ParseResult } from '../command.js';

/** How the value read is judged: against thresholds, as a per-second rate, or against expected values. */
export const SnmpModes = ['gauge', 'counter', 'status'] as const;
export type SnmpMode = (typeof SnmpModes)[number];

/** Which side of `warn`/`crit` is bad: `above` (at or above them), or `below` (at or below them). */
export const ThresholdDirections = ['above', 'below'] as const;
export type ThresholdDirection = (typeof ThresholdDirections)[number];

/** SNMPv3 security levels (RFC 3414), spelled as snmpd and net-snmp spell them. */
export const SecurityLevels = ['noAuthNoPriv', 'authNoPriv', 'authPriv'] as const;
export type SecurityLevel = (typeof SecurityLevels)[number];

/** SNMPv3 authentication protocols; `sha` is SHA-1. */
export const AuthProtocolNames = ['md5', 'sha', 'sha224', 'sha256', 'sha384', 'sha512'] as const;
export type AuthProtocolName = (typeof AuthProtocolNames)[number];

/** SNMPv3 privacy protocols; `aes` is AES-128, `aes256b`/`aes256r` the Blumenthal and Reeder AES-256 key localizations. */
export const PrivProtocolNames = ['des', 'aes', 'aes256b', 'aes256r'] as const;
export type PrivProtocolName = (typeof PrivProtocolNames)[number];

/** How to reach the agent and prove who asks. Holds secrets: never put it in a message or a log line. */
export type SnmpSecurity =
  | { readonly version: '2c'; readonly community: string }
  | {
      readonly version: '3';
      readonly user: string;
      readonly level: SecurityLevel;
      /** Set from `authNoPriv` up. */
      readonly authProtocol?: AuthProtocolName;
      readonly authKey?: string;
      /** Set for `authPriv`. */
      readonly privProtocol?: PrivProtocolName;
      readonly privKey?: string;
    };

/** The interface speed a counter's rate is compared with: read from the agent, or fixed. */
export type SpeedSource =
  /** `bitsPerUnit`: 1 for ifSpeed (bits/s), 1,000,000 for ifHighSpeed (Mb/s). */
  | { readonly oid: string; readonly bitsPerUnit: number }
  | { readonly bps: number };

/** The `snmp` command's attributes after parsing: OIDs without a leading dot, the security settings in one place. */
export interface SnmpAttributes {
  readonly host: string;
  /** UDP port; default 161. */
  readonly port: number;
  readonly security: SnmpSecurity;
  /** The object read (`walk` false) or the root of the subtree walked (`walk` true). */
  readonly oid: string;
  readonly walk: boolean;
  readonly mode: SnmpMode;
  /** The value (gauge) or rate (counter), after `scale`, at which the result is `warn`. */
  readonly warn?: number;
  /** The value (gauge) or rate (counter), after `scale`, at which the result is `crit`. */
  readonly crit?: number;
  readonly direction: ThresholdDirection;
  /** Counter: the percentage of the interface's speed at which the result is `warn`. */
  readonly warnPercent?: number;
  /** Counter: the percentage of the interface's speed at which the result is `crit`. */
  readonly critPercent?: number;
  /** Counter: where the interface's speed comes from, for `utilization`. */
  readonly speed?: SpeedSource;
  /** Status: the values accepted, as text (`1`, `up`). */
  readonly expect?: readonly string[];
  /** Unit of the value, or of what the counter counts (`B`, `%`, `C`); default none. */
  readonly unit: string;
  /** Factor applied to the value (gauge) or the rate (counter) before thresholds; default 1. */
  readonly scale: number;
  /** Requests sent again when unanswered; default 1. The check's timeout is shared among the tries. */
  readonly retries: number;
}

/** Minimum length of a v3 pass phrase: RFC 3414 §11.2 asks for 8, and snmpd refuses shorter ones. */
const MIN_KEY_LENGTH = 8;
const MAX_RETRIES = 10;
/** The OID of ifHighSpeed (IF-MIB), whose values are in Mb/s where ifSpeed's are in bits/s. */
const IF_HIGH_SPEED = '1.3.6.1.2.1.31.1.1.1.15.';
const BITS_PER_UNIT = { bps: 1, Mbps: 1_000_000 } as const;
const SpeedUnits = ['bps', 'Mbps'] as const;
/** snmpd's spellings (`SHA-256`, `AES-256`; `AES-256-C`, Cisco's, localizes keys the Reeder way). */
const AUTH_ALIASES: Readonly<Record<string, AuthProtocolName>> = { sha1: 'sha', 'sha-1': 'sha', 'sha-224': 'sha224', 'sha-256': 'sha256', 'sha-384': 'sha384', 'sha-512': 'sha512' };
const PRIV_ALIASES: Readonly<Record<string, PrivProtocolName>> = { aes128: 'aes', 'aes-128': 'aes', 'aes-256': 'aes256b', 'aes-256-c': 'aes256r' };
/** The keys whose values are secrets: their issues never quote what was found. */
const SECRET_KEYS: ReadonlySet<string> = new Set(['community', 'authKey', 'privKey']);
/** The keys only SNMPv3 knows. */
const V3_KEYS = ['user', 'securityLevel', 'authProtocol', 'authKey', 'privProtocol', 'privKey'] as const;

const OID_TEXT = /^\.?(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))+$/;
const MAX_ARC = 4_294_967_295;
const oidError = 'expected a numeric OID such as 1.3.6.1.2.1.1.3.0';

/** A numeric OID, written with or without a leading dot; kept without it, as net-snmp writes them. */
function oid() {
  return z.string({ error: oidError }).transform((text, ctx) => {
    const trimmed = text.trim();
    const arcs = OID_TEXT.test(trimmed) ? trimmed.replace(/^\./, '').split('.').map(Number) : [];
    // BER packs the first two arcs into one byte sequence: the first is 0, 1 or 2, and under 0 and 1 the second is below 40.
    const [first = 3, second = 0] = arcs;
    if (first > 2 || (first < 2 && second >= 40) || arcs.some((arc) => arc > MAX_ARC)) {
      ctx.addIssue({ code: 'custom', message: oidError, input: text });
      return z.NEVER;
    }
    return arcs.join('.');
  });
}

/**
 * One of `names`, in any case (`SHA`, `sha`): operators copy them from snmpd's config, which writes them
 * upper-case. `aliases` map other common spellings (`sha1`, `aes128`).
 */
function choice<const T extends readonly string[]>(names: T, aliases: Readonly<Record<string, T[number]>> = {}) {
  const error = `expected one of ${names.join(', ')}`;
  return z.string({ error }).transform((text, ctx): T[number] => {
    const lower = text.toLowerCase();
    const found = names.find((name) => name.toLowerCase() === lower) ?? aliases[lower];
    if (found === undefined) {
      ctx.addIssue({ code: 'custom', message: error, input: text });
      return z.NEVER;
    }
    return found;
  });
}

/**
 * A secret as text. A whole `${VAR}` is read as a scalar, so a numeric community arrives as a number:
 * it is taken back as its text rather than refused with an issue that would have to show it.
 */
function secret(what: string, minLength = 1) {
  const error = `expected ${what}${minLength > 1 ? ` of at least ${minLength} characters` : ''}`;
  return z.union([z.string(), z.number(), z.boolean()], { error }).transform((value, ctx) => {
    const text = String(value);
    if (text.length < minLength) {
      ctx.addIssue({ code: 'custom', message: error, input: '' });
      return z.NEVER;
    }
    return text;
  });
}

const threshold = (what: string) => z.number({ error: `expected a number (${what})` }).refine(Number.isFinite, { error: `expected a finite number (${what})` });
const percent = () => z.number({ error: 'expected a percentage 0–100 or more' }).min(0, { error: 'expected a percentage 0–100 or more' });
const scalarText = z.union([z.string(), z.number()], { error: 'expected a value (a number or a string)' }).transform(String);

const fields = z.strictObject({
  /** Host name or IP address of the agent. */
  host: nonEmptyString('a host name or IP address'),
  /** UDP port; default 161. */
  port: port().default(161),
  /** `2c` (default) or `3`. */
  version: z.union([z.literal('2c'), z.literal('3'), z.literal(3)], { error: 'expected 2c or 3' }).default('2c'),
  /** v2c community; default `public`. Write `${SNMP_COMMUNITY}` to keep it out of the file. */
  community: secret('a community (a non-empty string)').optional(),
  /** v3 user name (required with version 3). */
  user: nonEmptyString('a user name').optional(),
  /** v3: `noAuthNoPriv`, `authNoPriv` or `authPriv`; default from the keys given. */
  securityLevel: choice(SecurityLevels).optional(),
  /** v3 authentication protocol, in any case and snmpd's spellings too (`SHA-256`); default `sha` when `authKey` is given. */
  authProtocol: choice(AuthProtocolNames, AUTH_ALIASES).optional(),
  /** v3 authentication pass phrase, at least 8 characters; write `${SNMP_AUTH_KEY}`. */
  authKey: secret('an authentication pass phrase', MIN_KEY_LENGTH).optional(),
  /** v3 privacy protocol, in any case and snmpd's spellings too (`AES`, `AES-256`); default `aes` when `privKey` is given. */
  privProtocol: choice(PrivProtocolNames, PRIV_ALIASES).optional(),
  /** v3 privacy pass phrase, at least 8 characters; write `${SNMP_PRIV_KEY}`. */
  privKey: secret('a privacy pass phrase', MIN_KEY_LENGTH).optional(),
  /** The object to GET. */
  oid: oid().optional(),
  /** The root of a subtree to WALK: every value under it is judged. */
  walk: oid().optional(),
  /** `gauge` (default), `counter` or `status`. */
  mode: choice(SnmpModes).default('gauge'),
  /** Warning threshold on the value (gauge) or rate per second (counter), after `scale`. */
  warn: threshold('the warning threshold').optional(),
  /** Critical threshold on the value (gauge) or rate per second (counter), after `scale`. */
  crit: threshold('the critical threshold').optional(),
  /** Which side of the thresholds is bad: `above` (default) or `below`. */
  direction: choice(ThresholdDirections).default('above'),
  /** Counter: warning threshold as a percentage of the interface's speed. */
  warnPercent: percent().optional(),
  /** Counter: critical threshold as a percentage of the interface's speed. */
  critPercent: percent().optional(),
  /** Counter: the OID of the interface's speed, read with the counter (ifSpeed `1.3.6.1.2.1.2.2.1.5.N`, ifHighSpeed `1.3.6.1.2.1.31.1.1.1.15.N`). */
  speedOid: oid().optional(),
  /** Counter: the unit of `speedOid`'s value, `bps` or `Mbps`; default `Mbps` for ifHighSpeed, `bps` otherwise. */
  speedUnit: z.enum(SpeedUnits, { error: `expected one of ${SpeedUnits.join(', ')}` }).optional(),
  /** Counter: a fixed interface speed in bits per second, instead of `speedOid`. */
  speedBps: z.number({ error: 'expected a speed in bits per second (a positive number)' }).positive({ error: 'expected a speed in bits per second (a positive number)' }).optional(),
  /** Status: the value, or list of values, accepted (`1`, `[1, 5]`, `"up"`). */
  expect: z.union([scalarText.transform((text) => [text]), z.array(scalarText, { error: 'expected a value or a list of values' }).min(1, { error: 'expected at least one value' })]).optional(),
  /** Unit of the value or of what the counter counts (`B`, `%`, `C`); default none. */
  unit: z.string({ error: 'expected a unit (a string)' }).default(''),
  /** Factor applied to the value or rate before thresholds (`8` for octets as bits, `0.001` for m°C); default 1. */
  scale: z
    .number({ error: 'expected a non-zero number' })
    .refine((value) => Number.isFinite(value) && value !== 0, { error: 'expected a non-zero number' })
    .default(1),
  /** Requests sent again when unanswered; default 1. */
  retries: integer(0, MAX_RETRIES).default(1),
});

type Fields = z.output<typeof fields>;

const schema = fields.transform((value, ctx): SnmpAttributes => {
  const issue = (path: string, message: string): void => ctx.addIssue({ code: 'custom', path: [path], message });
  const security = toSecurity(value, issue);
  const { mode, warn, crit, direction, warnPercent, critPercent } = value;

  if ((value.oid === undefined) === (value.walk === undefined)) {
    issue(value.oid === undefined ? 'oid' : 'walk', 'expected either `oid` (one object) or `walk` (a subtree), not both or neither');
  }
  if (mode === 'counter' && value.walk !== undefined) issue('walk', 'expected `oid` in counter mode: a rate is of one counter');
  if (mode === 'status') {
    if (value.expect === undefined) issue('expect', 'expected the accepted value or values in status mode');
    for (const key of ['warn', 'crit'] as const) if (value[key] !== undefined) issue(key, 'expected no threshold in status mode: use `expect`');
  } else if (value.expect !== undefined) {
    issue('expect', 'expected `expect` only in status mode');
  }
  if (mode !== 'counter') {
    for (const key of ['warnPercent', 'critPercent', 'speedOid', 'speedUnit', 'speedBps'] as const) {
      if (value[key] !== undefined) issue(key, 'expected it only in counter mode');
    }
  }
  checkOrder(warn, crit, direction, 'crit', issue);
  checkOrder(warnPercent, critPercent, direction, 'critPercent', issue);
  if (value.speedOid !== undefined && value.speedBps !== undefined) issue('speedBps', 'expected either `speedOid` or `speedBps`, not both');
  if (value.speedUnit !== undefined && value.speedOid === undefined) issue('speedUnit', 'expected `speedOid` alongside `speedUnit`');
  if ((warnPercent !== undefined || critPercent !== undefined) && value.speedOid === undefined && value.speedBps === undefined) {
    issue(warnPercent === undefined ? 'critPercent' : 'warnPercent', 'expected `speedOid` or `speedBps`: a percentage is of the interface speed');
  }

  let speed: SpeedSource | undefined;
  if (value.speedOid !== undefined) {
    const unit = value.speedUnit ?? (value.speedOid.startsWith(IF_HIGH_SPEED) ? 'Mbps' : 'bps');
    speed = { oid: value.speedOid, bitsPerUnit: BITS_PER_UNIT[unit] };
  } else if (value.speedBps !== undefined) {
    speed = { bps: value.speedBps };
  }
  return {
    host: value.host,
    port: value.port,
    security,
    oid: value.oid ?? value.walk ?? '',
    walk: value.walk !== undefined && value.oid === undefined,
    mode,
    ...(warn === undefined ? {} : { warn }),
    ...(crit === undefined ? {} : { crit }),
    direction,
    ...(warnPercent === undefined ? {} : { warnPercent }),
    ...(critPercent === undefined ? {} : { critPercent }),
    ...(speed === undefined ? {} : { speed }),
    ...(value.expect === undefined ? {} : { expect: value.expect }),
    unit: value.unit,
    scale: value.scale,
    retries: value.retries,
  };
});

function toSecurity(value: Fields, issue: (path: string, message: string) => void): SnmpSecurity {
  if (value.version === '2c') {
    for (const key of V3_KEYS) if (value[key] !== undefined) issue(key, 'expected it only with version 3 (version 2c authenticates with `community`)');
    return { version: '2c', community: value.community ?? 'public' };
  }
  if (value.community !== undefined) issue('community', 'expected no community with version 3 (it authenticates with `user` and keys)');
  if (value.user === undefined) issue('user', 'expected a user name with version 3');
  const { authKey, privKey } = value;
  const level = value.securityLevel ?? (privKey !== undefined ? 'authPriv' : authKey !== undefined ? 'authNoPriv' : 'noAuthNoPriv');
  const needsAuth = level !== 'noAuthNoPriv';
  const needsPriv = level === 'authPriv';
  if (needsAuth && authKey === undefined) issue('authKey', `expected an authentication pass phrase for securityLevel ${level}`);
  if (needsPriv && privKey === undefined) issue('privKey', 'expected a privacy pass phrase for securityLevel authPriv');
  for (const key of ['authKey', 'authProtocol'] as const) if (!needsAuth && value[key] !== undefined) issue(key, `expected no ${key} with securityLevel ${level}`);
  for (const key of ['privKey', 'privProtocol'] as const) if (!needsPriv && value[key] !== undefined) issue(key, `expected no ${key} with securityLevel ${level}`);
  return {
    version: '3',
    user: value.user ?? '',
    level,
    ...(needsAuth ? { authProtocol: value.authProtocol ?? 'sha', authKey: authKey ?? '' } : {}),
    ...(needsPriv ? { privProtocol: value.privProtocol ?? 'aes', privKey: privKey ?? '' } : {}),
  };
}

/** `warn` must be reached before `crit`: below it when high is bad, above it when low is bad. */
function checkOrder(warn: number | undefined, crit: number | undefined, direction: ThresholdDirection, critKey: string, issue: (path: string, message: string) => void): void {
  if (warn === undefined || crit === undefined) return;
  if (direction === 'above' && warn > crit) issue(critKey, `expected a critical threshold at or above the warning one (${warn}) with direction above`);
  if (direction === 'below' && warn < crit) issue(critKey, `expected a critical threshold at or below the warning one (${warn}) with direction below`);
}

/** The attributes' zod schema: what `defineCommand` parses with and derives the JSON Schema from. */
export const snmpAttributesSchema = schema;

/**
 * `parse`'s outcome with every issue about a secret saying what kind of value was found instead of
 * quoting it: a config error is printed and logged, and a community or key must not be.
 */
export function hideSecrets(result: ParseResult<SnmpAttributes>, raw: unknown): ParseResult<SnmpAttributes> {
  if (result.ok) return result;
  return { ok: false, issues: result.issues.map((issue) => hideSecret(issue, raw)) };
}

function hideSecret(issue: Issue, raw: unknown): Issue {
  const [key] = issue.path;
  if (issue.path.length !== 1 || typeof key !== 'string' || !SECRET_KEYS.has(key)) return issue;
  const found = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>)[key] : undefined;
  const expected = issue.message.replace(/, got [\s\S]*$/, '');
  return { path: issue.path, message: `${expected}, got ${describeSecret(found)}` };
}

/** What a secret was, without showing it: `5 characters (not shown)`, `a number (not shown)`, `nothing`. */
function describeSecret(value: unknown): string {
  if (typeof value === 'string') return `${value.length} character${value.length === 1 ? '' : 's'} (not shown)`;
  if (typeof value === 'number' || typeof value === 'boolean') return `a ${typeof value} (not shown)`;
  return describeValue(value);
}
