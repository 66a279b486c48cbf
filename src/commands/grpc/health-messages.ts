/**
 * The two messages of `grpc.health.v1.Health/Check`, encoded by hand (protobuf wire format):
 *
 * ```proto
 * message HealthCheckRequest { string service = 1; }
 * message HealthCheckResponse { ServingStatus status = 1; }
 * enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
 * ```
 *
 * Two fields do not need a .proto file loaded at run time, a protobuf library, or its reflection on
 * every message: a request is encoded once, when the attributes are parsed, and a response is one varint.
 */

/** The method's path, as it goes on the wire. */
export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/** `ServingStatus` by number. */
export const ServingStatuses = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;
export type ServingStatus = (typeof ServingStatuses)[number];

/** What a response said: the status number (an unknown enum value stays a number), or why it could not be read. */
export type HealthCheckResponse = { readonly status: number } | { readonly malformed: string };

const EMPTY = Buffer.alloc(0);
/** Field 1, wire type 2 (length-delimited): `(1 << 3) | 2`. */
const SERVICE_KEY = 0x0a;
/** Field 1, wire type 0 (varint): `(1 << 3) | 0`. */
const STATUS_KEY = 0x08;

/** A HealthCheckRequest for `service` (`""`, the server as a whole, encodes as no bytes at all). */
export function encodeHealthCheckRequest(service: string): Buffer {
  if (service === '') return EMPTY;
  const name = Buffer.from(service, 'utf8');
  const length = varint(name.length);
  return Buffer.concat([Buffer.from([SERVICE_KEY]), length, name]);
}

/** The service name of a HealthCheckRequest (what a health server reads); throws on bytes that are not one. */
export function decodeHealthCheckRequest(bytes: Buffer): string {
  let service = '';
  readFields(bytes, (key, value) => {
    if (key === SERVICE_KEY && Buffer.isBuffer(value)) service = value.toString('utf8');
  });
  return service;
}

/** A HealthCheckResponse with `status` (a ServingStatus number). */
export function encodeHealthCheckResponse(status: number): Buffer {
  return status === 0 ? EMPTY : Buffer.concat([Buffer.from([STATUS_KEY]), varint(status)]);
}

/**
 * Reads a HealthCheckResponse. Never throws (grpc-js would turn a throw into an INTERNAL status that
 * hides what arrived): bytes that are not a response come back as `malformed`. Unknown fields are
 * skipped, and the last `status` wins, as protobuf readers do.
 */
export function decodeHealthCheckResponse(bytes: Buffer): HealthCheckResponse {
  let status = 0;
  try {
    readFields(bytes, (key, value) => {
      if (key === STATUS_KEY && typeof value === 'number') status = value;
    });
  } catch (error) {
    return { malformed: (error as Error).message };
  }
  return { status };
}

/** The name of a ServingStatus number: `SERVING`, or `status 7` for a value this enum does not have. */
export function servingStatusName(status: number): string {
  return ServingStatuses[status] ?? `status ${status}`;
}

/** Calls `onField(key, value)` for each field: a number for varints, the bytes for length-delimited fields. */
function readFields(bytes: Buffer, onField: (key: number, value: number | Buffer) => void): void {
  let offset = 0;
  while (offset < bytes.length) {
    const key = readVarint(bytes, offset);
    offset = key.next;
    switch (key.value & 7) {
      case 0: {
        const value = readVarint(bytes, offset);
        offset = value.next;
        onField(key.value, value.value);
        break;
      }
      case 1:
        offset += 8;
        break;
      case 2: {
        const length = readVarint(bytes, offset);
        const end = length.next + length.value;
        if (end > bytes.length) throw new Error(`a field of ${length.value} bytes where ${bytes.length - length.next} remain`);
        onField(key.value, bytes.subarray(length.next, end));
        offset = end;
        break;
      }
      case 5:
        offset += 4;
        break;
      default:
        throw new Error(`wire type ${key.value & 7} at byte ${offset}`);
    }
    if (offset > bytes.length) throw new Error(`a field that runs past the ${bytes.length} bytes of the message`);
  }
}

/** A base-128 varint at `offset`: at most 10 bytes; values past 2^53 lose precision (no field here has them). */
function readVarint(bytes: Buffer, offset: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = offset; i < bytes.length && i < offset + 10; i++) {
    const byte = bytes[i] as number;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return { value, next: i + 1 };
    scale *= 128;
  }
  throw new Error(`a varint cut short at byte ${offset}`);
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}
