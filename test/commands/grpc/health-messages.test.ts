import { describe, expect, it } from 'vitest';
import {
  decodeHealthCheckRequest,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  encodeHealthCheckResponse,
  servingStatusName,
} from '../../../src/commands/grpc/health-messages.js';

/** The expected bytes are the protobuf wire format worked out by hand (key = field << 3 | wire type). */
describe('grpc health messages', () => {
  it('encodes a request for the whole server as no bytes, and a named service as field 1', () => {
    expect(encodeHealthCheckRequest('')).toEqual(Buffer.alloc(0));
    expect(encodeHealthCheckRequest('app.Orders')).toEqual(Buffer.from([0x0a, 0x0a, ...Buffer.from('app.Orders')]));
  });

  it('encodes a length of 128 bytes or more as a varint of several bytes', () => {
    const name = 'x'.repeat(200);
    // 200 = 0b1_1001000: 0xc8 (low 7 bits with the continuation bit), then 0x01.
    expect(encodeHealthCheckRequest(name)).toEqual(Buffer.from([0x0a, 0xc8, 0x01, ...Buffer.from(name)]));
    expect(decodeHealthCheckRequest(encodeHealthCheckRequest(name))).toBe(name);
  });

  it('encodes a name in UTF-8, its length in bytes', () => {
    expect(encodeHealthCheckRequest('é')).toEqual(Buffer.from([0x0a, 0x02, 0xc3, 0xa9]));
  });

  it('decodes SERVING, NOT_SERVING and an empty response (UNKNOWN, the default)', () => {
    expect(decodeHealthCheckResponse(Buffer.from([0x08, 0x01]))).toEqual({ status: 1 });
    expect(decodeHealthCheckResponse(Buffer.from([0x08, 0x02]))).toEqual({ status: 2 });
    expect(decodeHealthCheckResponse(Buffer.alloc(0))).toEqual({ status: 0 });
    expect(encodeHealthCheckResponse(1)).toEqual(Buffer.from([0x08, 0x01]));
    expect(encodeHealthCheckResponse(0)).toEqual(Buffer.alloc(0));
  });

  it('skips fields it does not know, of every wire type, and keeps the last status', () => {
    const bytes = Buffer.from([
      0x12, 0x03, 0x61, 0x62, 0x63, // field 2, length-delimited "abc"
      0x08, 0x02, // status NOT_SERVING
      0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3, fixed64
      0x25, 1, 2, 3, 4, // field 4, fixed32
      0x28, 0x96, 0x01, // field 5, varint 150
      0x08, 0x01, // status SERVING: the last one wins
    ]);
    expect(decodeHealthCheckResponse(bytes)).toEqual({ status: 1 });
  });

  it('reports bytes that are not a response as malformed instead of throwing', () => {
    expect(decodeHealthCheckResponse(Buffer.from([0x08]))).toEqual({ malformed: 'a varint cut short at byte 1' });
    expect(decodeHealthCheckResponse(Buffer.from([0x12, 0x05, 0x61]))).toEqual({ malformed: 'a field of 5 bytes where 1 remain' });
    // '<' is 0x3c: field 7 with wire type 4 (the end of a group), which no proto3 message has.
    expect(decodeHealthCheckResponse(Buffer.from('<html>'))).toEqual({ malformed: 'wire type 4 at byte 1' });
  });

  it('names the statuses, and a number the enum does not have', () => {
    expect([0, 1, 2, 3].map(servingStatusName)).toEqual(['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN']);
    expect(servingStatusName(7)).toBe('status 7');
  });
});
