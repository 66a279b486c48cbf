import { describe, expect, it } from 'vitest';
import { errorCode, errorMessage } from '../../src/core/errors.js';
import { formatDuration, formatElapsed, formatMs, formatMsPrecisely } from '../../src/core/format.js';
import { bracketHost, hostPort } from '../../src/core/host-port.js';
import { HTTP_TOKEN } from '../../src/core/http-token.js';
import { compileRegex, compileRegexLiteral, regexLiteral } from '../../src/core/regex-literal.js';
import { kindOf } from '../../src/core/values.js';

/** The one copy of each helper the layers share (they were copied per folder before). */
describe('core helpers', () => {
  it('formats milliseconds for messages, precisely for round trips, and as config durations', () => {
    expect([formatMs(4.24), formatMs(99.96), formatMs(250.4)]).toEqual(['4.2', '100.0', '250']);
    expect([formatMsPrecisely(0.0421), formatMsPrecisely(1.234), formatMsPrecisely(12.34), formatMsPrecisely(250.4)]).toEqual(['0.042', '1.23', '12.3', '250']);
    expect([formatDuration(30_000), formatDuration(300_000), formatDuration(86_400_000), formatDuration(1_500)]).toEqual(['30s', '5m', '1d', '1500ms']);
    expect([formatElapsed(250), formatElapsed(185_000), formatElapsed(90_000_000)]).toEqual(['250ms', '3m 5s', '1d 1h']);
  });

  it('compiles /pattern/flags literals, drops g and y, and says why a bad one is refused', () => {
    expect(regexLiteral('/^ok$/i')).toEqual({ source: '^ok$', flags: 'i' });
    expect(regexLiteral('plain text')).toBeNull();
    expect(compileRegexLiteral('plain text')).toBeNull();
    const compiled = compileRegexLiteral('/a+/gyi');
    expect(compiled).toBeInstanceOf(RegExp);
    expect((compiled as RegExp).flags).toBe('i');
    expect(compileRegex('(')).toEqual({ error: 'Unterminated group' });
    expect(compileRegexLiteral('/a/xq')).toEqual({ error: 'invalid flags xq' });
  });

  it('brackets IPv6 hosts before a port, and tells HTTP tokens from other header names', () => {
    expect([hostPort('127.0.0.1', 53), hostPort('::1', 53), bracketHost('example.org')]).toEqual(['127.0.0.1:53', '[::1]:53', 'example.org']);
    expect([HTTP_TOKEN.test('X-Api-Key'), HTTP_TOKEN.test('Bad Header'), HTTP_TOKEN.test('')]).toEqual([true, false, false]);
  });

  it('names errors and kinds of values the same way everywhere', () => {
    expect([errorMessage(new Error('boom')), errorMessage('plain'), errorMessage(42)]).toEqual(['boom', 'plain', '42']);
    expect([errorCode(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), errorCode(new Error('x')), errorCode(null)]).toEqual(['ECONNREFUSED', undefined, undefined]);
    expect([kindOf(null), kindOf([]), kindOf('x'), kindOf({})]).toEqual(['null', 'an array', 'string', 'object']);
  });
});
