import { initialCheckState, type CheckSpec, type CheckState } from '../../checks/check.js';
import { kindOf } from '../../core/values.js';

/**
 * The JSON forms the PostgreSQL queue stores: specs (whose parsed attributes may hold values JSON has no
 * form for), states, and the text of jsonb parameters.
 */

const TAG = '$vigil';

/**
 * A spec as JSON that keeps what commands' parsed attributes may hold: RegExps, Buffers and other
 * typed arrays, Dates, Maps, Sets, bigints, `undefined` and non-finite numbers are written as tagged
 * objects (`{ "$vigil": "regexp", … }`). A value it cannot represent (a class instance, a function) is
 * written as `{ "$vigil": "unsupported" }` and `lossless` is false: such a check must be stored with its
 * source entry, which is parsed again when the check is read back.
 */
export function encodeSpec(spec: CheckSpec): { json: Record<string, unknown>; lossless: boolean; problem?: string } {
  const problems: string[] = [];
  const json = encodeValue(spec, '', problems) as Record<string, unknown>;
  return problems.length === 0 ? { json, lossless: true } : { json, lossless: false, problem: problems.join(', ') };
}

/** The spec `encodeSpec` wrote. Throws when it holds an unsupported value (then the source entry must be parsed). */
export function decodeSpec(json: unknown): CheckSpec {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TypeError(`expected a stored spec object, got ${kindOf(json)}`);
  const spec = decodeValue(json) as Partial<CheckSpec>;
  if (typeof spec.id !== 'string' || typeof spec.command !== 'string' || typeof spec.timeoutMs !== 'number') {
    throw new TypeError('expected a stored spec with id, command and timeoutMs');
  }
  return spec as CheckSpec;
}

function encodeValue(value: unknown, path: string, problems: string[]): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : { [TAG]: 'number', value: String(value) };
    case 'bigint':
      return { [TAG]: 'bigint', value: value.toString() };
    case 'undefined':
      return { [TAG]: 'undefined' };
    case 'object': {
      if (value === null) return null;
      if (Array.isArray(value)) return value.map((item: unknown, i) => encodeValue(item, `${path}[${i}]`, problems));
      if (value instanceof RegExp) return { [TAG]: 'regexp', source: value.source, flags: value.flags };
      if (Buffer.isBuffer(value)) return { [TAG]: 'buffer', base64: value.toString('base64') };
      if (value instanceof Uint8Array) return { [TAG]: 'bytes', base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
      if (value instanceof Date) return { [TAG]: 'date', value: Number.isNaN(value.getTime()) ? null : value.toISOString() };
      if (value instanceof Map) return { [TAG]: 'map', entries: [...value].map(([k, v], i) => [encodeValue(k, `${path}<key ${i}>`, problems), encodeValue(v, `${path}<${i}>`, problems)]) };
      if (value instanceof Set) return { [TAG]: 'set', values: [...value].map((v, i) => encodeValue(v, `${path}<${i}>`, problems)) };
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto === Object.prototype || proto === null) {
        const out = Object.fromEntries(Object.entries(value).map(([key, item]) => [key, encodeValue(item, path === '' ? key : `${path}.${key}`, problems)]));
        return TAG in out ? { [TAG]: 'object', value: out } : out;
      }
      problems.push(`a ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'class instance'} at ${path || '(root)'}`);
      return { [TAG]: 'unsupported' };
    }
    default:
      problems.push(`a ${typeof value} at ${path || '(root)'}`);
      return { [TAG]: 'unsupported' };
  }
}

function decodeValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decodeValue);
  if (typeof value !== 'object' || value === null) return value;
  const record = value as Record<string, unknown>;
  const tag = record[TAG];
  if (typeof tag === 'string') {
    switch (tag) {
      case 'number':
        return Number(record.value);
      case 'bigint':
        return BigInt(String(record.value));
      case 'undefined':
        return undefined;
      case 'regexp':
        return new RegExp(String(record.source), String(record.flags));
      case 'buffer':
        return Buffer.from(String(record.base64), 'base64');
      case 'bytes':
        return new Uint8Array(Buffer.from(String(record.base64), 'base64'));
      case 'date':
        return new Date(typeof record.value === 'string' ? record.value : Number.NaN);
      case 'map':
        return new Map((record.entries as [unknown, unknown][]).map(([k, v]) => [decodeValue(k), decodeValue(v)]));
      case 'set':
        return new Set((record.values as unknown[]).map(decodeValue));
      case 'object':
        return decodeObject(record.value as Record<string, unknown>);
      case 'unsupported':
        throw new TypeError('the stored spec holds a value JSON cannot keep; its source entry must be parsed again');
      default:
        throw new TypeError(`the stored spec holds an unknown kind of value "${tag}" (written by a newer vigil?)`);
    }
  }
  return decodeObject(record);
}

function decodeObject(record: Record<string, unknown>): Record<string, unknown> {
  // fromEntries defines own properties, so a key like `__proto__` stays data.
  return Object.fromEntries(Object.entries(record).map(([key, item]) => [key, decodeValue(item)]));
}

/** A state read from the table; a row that does not hold one (hand-edited) starts over. */
export function decodeState(value: unknown): CheckState {
  if (typeof value === 'object' && value !== null && typeof (value as CheckState).hardState === 'string' && typeof (value as CheckState).stateType === 'string') {
    return value as CheckState;
  }
  return initialCheckState;
}

/** The JSON form of a value as the table would give it back. */
export function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

// PostgreSQL's jsonb refuses \u0000; an escaped backslash before "u0000" is text, not a NUL.
const NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u0000/g;

/** JSON text for a jsonb parameter: NaN and Infinity become null (as JSON.stringify does), NUL becomes U+FFFD. */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.includes('\\u0000') ? text.replace(NUL_ESCAPE, '$1\\ufffd') : text;
}
