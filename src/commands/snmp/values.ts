import snmp, { type Varbind } from 'net-snmp';
import type { CounterWidth } from './counter.js';

/** One value an agent returned, in the forms the modes judge it by. */
export interface SnmpValue {
  /** The SMI type's name: `Integer`, `OctetString`, `Counter32`, `Counter64`, … */
  readonly type: string;
  /** As messages show it and `expect` compares it: a number's digits, a string's text, a binary string's hex. */
  readonly text: string;
  /** The value as a number, when it is one (a string of digits counts); a Counter64 beyond 2^53 is rounded. */
  readonly number?: number;
  /** The exact value and width of a Counter32 or Counter64. */
  readonly counter?: { readonly value: bigint; readonly width: CounterWidth };
}

/** What a varbind carries instead of a value when the agent has none: the SMI exception's reason code. */
export type VarbindException = 'no-such-object' | 'no-such-instance' | 'end-of-mib-view';

/** SMI type numbers (RFC 2578, RFC 3416) as net-snmp gives them. */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'Boolean'],
  [2, 'Integer'],
  [3, 'BitString'],
  [4, 'OctetString'],
  [5, 'Null'],
  [6, 'OID'],
  [64, 'IpAddress'],
  [65, 'Counter32'],
  [66, 'Gauge32'],
  [67, 'TimeTicks'],
  [68, 'Opaque'],
  [70, 'Counter64'],
]);
const EXCEPTIONS: ReadonlyMap<number, VarbindException> = new Map([
  [128, 'no-such-object'],
  [129, 'no-such-instance'],
  [130, 'end-of-mib-view'],
]);
/** A decimal number written as text, as UCD-SNMP's laLoad (`0.15`) and many vendor MIBs give them. */
const DECIMAL = /^[+-]?\d+(?:\.\d+)?$/;
/** Printable text: no control characters other than tab, CR and LF. */
const PRINTABLE = /^[^\p{Cc}]*$/u;

/** The exception a varbind carries instead of a value, or `undefined` when it has a value. */
export function varbindException(varbind: Varbind): VarbindException | undefined {
  return varbind.type === undefined ? undefined : EXCEPTIONS.get(varbind.type);
}

/** Reads a varbind that has a value (see `varbindException`). */
export function readValue(varbind: Varbind): SnmpValue {
  const type = TYPE_NAMES.get(varbind.type ?? -1) ?? `type ${String(varbind.type)}`;
  const { value } = varbind;
  if (varbind.type === snmp.ObjectType.Counter64) {
    const exact = toBigInt(value);
    return { type, text: exact.toString(), number: Number(exact), counter: { value: exact, width: 64 } };
  }
  if (typeof value === 'number') {
    return varbind.type === snmp.ObjectType.Counter32 ? { type, text: String(value), number: value, counter: { value: BigInt(value), width: 32 } } : { type, text: String(value), number: value };
  }
  if (typeof value === 'bigint') return { type, text: value.toString(), number: Number(value) };
  if (Buffer.isBuffer(value)) {
    const text = bufferText(value);
    return DECIMAL.test(text.trim()) ? { type, text, number: Number(text.trim()) } : { type, text };
  }
  if (typeof value === 'boolean') return { type, text: String(value) };
  return { type, text: value === null || value === undefined ? '' : String(value) };
}

/** A value for a message: `2`, `"eth0"`, `Counter64 184467440737`: strings quoted so that empty and spaced ones show. */
export function showValue(value: SnmpValue): string {
  return value.type === 'OctetString' && value.number === undefined ? JSON.stringify(value.text) : value.text;
}

/** net-snmp reads a Counter64 as its big-endian bytes (the typings say bigint; accept both). */
function toBigInt(value: Varbind['value']): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(value);
  if (Buffer.isBuffer(value)) return value.length === 0 ? 0n : BigInt(`0x${value.toString('hex')}`);
  return 0n;
}

/** UTF-8 text when the bytes are printable UTF-8, otherwise hex octets (`00:1a:2b`, as for a MAC address). */
function bufferText(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  if (!text.includes('\uFFFD') && PRINTABLE.test(text.replace(/[\t\r\n]/g, ''))) return text;
  return [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}
