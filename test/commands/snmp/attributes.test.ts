import { describe, expect, it } from 'vitest';
import { snmpCommand, type SnmpAttributes } from '../../../src/commands/snmp/snmp.js';
import type { Issue } from '../../../src/validation/issues.js';

const snmp = snmpCommand();
const BASE = { host: '192.0.2.1', oid: '1.3.6.1.2.1.1.3.0' };

function parse(raw: Record<string, unknown>): SnmpAttributes {
  const parsed = snmp.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issues(raw: Record<string, unknown>): readonly Issue[] {
  const parsed = snmp.parse(raw);
  if (parsed.ok) throw new Error(`expected issues, got ${JSON.stringify(parsed.value)}`);
  return parsed.issues;
}

describe('snmp attributes: defaults and normal forms', () => {
  it('defaults to v2c with community public on port 161, gauge mode, one retry', () => {
    expect(parse(BASE)).toEqual({
      host: '192.0.2.1',
      port: 161,
      security: { version: '2c', community: 'public' },
      oid: '1.3.6.1.2.1.1.3.0',
      walk: false,
      mode: 'gauge',
      direction: 'above',
      unit: '',
      scale: 1,
      retries: 1,
    });
  });

  it('drops a leading dot from OIDs and marks a walk', () => {
    expect(parse({ host: 'h', walk: '.1.3.6.1.2.1.2.2.1.8' })).toMatchObject({ oid: '1.3.6.1.2.1.2.2.1.8', walk: true });
  });

  it('derives the v3 security level from the keys, with SHA and AES by default, in any case', () => {
    expect(parse({ ...BASE, version: 3, user: 'mon', authKey: 'authpass123', privKey: 'privpass123' }).security).toEqual({
      version: '3',
      user: 'mon',
      level: 'authPriv',
      authProtocol: 'sha',
      authKey: 'authpass123',
      privProtocol: 'aes',
      privKey: 'privpass123',
    });
    expect(parse({ ...BASE, version: '3', user: 'mon', authProtocol: 'SHA-256', authKey: 'authpass123' }).security).toEqual({
      version: '3',
      user: 'mon',
      level: 'authNoPriv',
      authProtocol: 'sha256',
      authKey: 'authpass123',
    });
    expect(parse({ ...BASE, version: 3, user: 'mon', authKey: 'authpass123', privKey: 'privpass123', privProtocol: 'AES-256-C' }).security).toMatchObject({ privProtocol: 'aes256r' });
    expect(parse({ ...BASE, version: 3, user: 'guest' }).security).toEqual({ version: '3', user: 'guest', level: 'noAuthNoPriv' });
  });

  it('takes a numeric community (a whole ${VAR} is read as a scalar) as its text', () => {
    expect(parse({ ...BASE, community: 12345 }).security).toEqual({ version: '2c', community: '12345' });
  });

  it('reads ifHighSpeed in Mb/s and other speed OIDs in bits/s', () => {
    const counter = { host: 'h', oid: '1.3.6.1.2.1.31.1.1.1.6.2', mode: 'counter' };
    expect(parse({ ...counter, speedOid: '1.3.6.1.2.1.31.1.1.1.15.2' }).speed).toEqual({ oid: '1.3.6.1.2.1.31.1.1.1.15.2', bitsPerUnit: 1_000_000 });
    expect(parse({ ...counter, speedOid: '1.3.6.1.2.1.2.2.1.5.2' }).speed).toEqual({ oid: '1.3.6.1.2.1.2.2.1.5.2', bitsPerUnit: 1 });
    expect(parse({ ...counter, speedOid: '1.3.6.1.4.1.9.9.1', speedUnit: 'Mbps' }).speed).toEqual({ oid: '1.3.6.1.4.1.9.9.1', bitsPerUnit: 1_000_000 });
    expect(parse({ ...counter, speedBps: 1e9, warnPercent: 80 })).toMatchObject({ speed: { bps: 1e9 }, warnPercent: 80 });
  });

  it('takes one expected value or a list, as text', () => {
    expect(parse({ ...BASE, mode: 'status', expect: 1 }).expect).toEqual(['1']);
    expect(parse({ ...BASE, mode: 'status', expect: [1, 'up'] }).expect).toEqual(['1', 'up']);
  });
});

describe('snmp attributes: problems, with their paths', () => {
  it('wants a host, and exactly one of oid and walk', () => {
    expect(issues({ oid: '1.3.6.1' })).toEqual([{ path: ['host'], message: 'expected a host name or IP address, got nothing' }]);
    expect(issues({ host: 'h' })).toEqual([{ path: ['oid'], message: 'expected either `oid` (one object) or `walk` (a subtree), not both or neither, got nothing' }]);
    expect(issues({ host: 'h', oid: '1.3.6.1', walk: '1.3.6.1' }).map((issue) => issue.path)).toEqual([['walk']]);
  });

  it('refuses OIDs that are not numeric or that BER cannot encode', () => {
    for (const oid of ['sysUpTime.0', '1', '3.1.2', '1.40.1', '1.3.6.1.4294967296', '1..3']) {
      expect(issues({ host: 'h', oid })).toEqual([{ path: ['oid'], message: `expected a numeric OID such as 1.3.6.1.2.1.1.3.0, got ${JSON.stringify(oid)}` }]);
    }
  });

  it('refuses unknown keys, versions and protocols', () => {
    expect(issues({ ...BASE, timeoutMs: 5 })).toEqual([{ path: ['timeoutMs'], message: 'unknown key' }]);
    expect(issues({ ...BASE, version: 1 })).toEqual([{ path: ['version'], message: 'expected 2c or 3, got 1' }]);
    expect(issues({ ...BASE, version: 3, user: 'u', authKey: 'authpass123', authProtocol: 'sha3' })).toEqual([
      { path: ['authProtocol'], message: 'expected one of md5, sha, sha224, sha256, sha384, sha512, got "sha3"' },
    ]);
  });

  it('keeps v2c and v3 settings apart', () => {
    expect(issues({ ...BASE, user: 'u' })).toEqual([{ path: ['user'], message: 'expected it only with version 3 (version 2c authenticates with `community`), got "u"' }]);
    expect(issues({ ...BASE, version: 3, community: 'public', user: 'u' }).map((issue) => issue.path)).toEqual([['community']]);
    expect(issues({ ...BASE, version: 3 })).toEqual([{ path: ['user'], message: 'expected a user name with version 3, got nothing' }]);
  });

  it('checks the security level against the keys', () => {
    expect(issues({ ...BASE, version: 3, user: 'u', securityLevel: 'authPriv', authKey: 'authpass123' }).map((issue) => issue.path)).toEqual([['privKey']]);
    expect(issues({ ...BASE, version: 3, user: 'u', securityLevel: 'noAuthNoPriv', authKey: 'authpass123' }).map((issue) => issue.path)).toEqual([['authKey']]);
    expect(issues({ ...BASE, version: 3, user: 'u', privProtocol: 'des' }).map((issue) => issue.path)).toEqual([['privProtocol']]);
  });

  it('checks the options of each mode', () => {
    expect(issues({ ...BASE, mode: 'status' }).map((issue) => issue.path)).toEqual([['expect']]);
    expect(issues({ ...BASE, mode: 'status', expect: 1, warn: 3 }).map((issue) => issue.path)).toEqual([['warn']]);
    expect(issues({ ...BASE, expect: 1 }).map((issue) => issue.path)).toEqual([['expect']]);
    expect(issues({ host: 'h', walk: '1.3.6.1', mode: 'counter' }).map((issue) => issue.path)).toEqual([['walk']]);
    expect(issues({ ...BASE, speedBps: 1000 }).map((issue) => issue.path)).toEqual([['speedBps']]);
    expect(issues({ ...BASE, mode: 'counter', warnPercent: 80 }).map((issue) => issue.path)).toEqual([['warnPercent']]);
    expect(issues({ ...BASE, mode: 'counter', speedBps: 1000, speedOid: '1.3.6.1.2.1.2.2.1.5.1' }).map((issue) => issue.path)).toEqual([['speedBps']]);
  });

  it('wants warn reached before crit, on the bad side', () => {
    expect(issues({ ...BASE, warn: 90, crit: 80 })).toEqual([{ path: ['crit'], message: 'expected a critical threshold at or above the warning one (90) with direction above, got 80' }]);
    expect(issues({ ...BASE, warn: 10, crit: 20, direction: 'below' })).toEqual([{ path: ['crit'], message: 'expected a critical threshold at or below the warning one (10) with direction below, got 20' }]);
    expect(parse({ ...BASE, warn: 20, crit: 10, direction: 'below' })).toMatchObject({ warn: 20, crit: 10, direction: 'below' });
  });
});

describe('snmp attributes: secrets stay out of issues', () => {
  it('says how long a too-short key was, never what it was', () => {
    const found = issues({ ...BASE, version: 3, user: 'u', authKey: 'hunter2', privKey: 's3cr' });
    expect(found).toEqual([
      { path: ['authKey'], message: 'expected an authentication pass phrase of at least 8 characters, got 7 characters (not shown)' },
      { path: ['privKey'], message: 'expected a privacy pass phrase of at least 8 characters, got 4 characters (not shown)' },
    ]);
  });

  it('does not quote a community that is out of place', () => {
    const [issue] = issues({ ...BASE, version: 3, user: 'u', community: 'topsecret' });
    expect(issue).toEqual({ path: ['community'], message: 'expected no community with version 3 (it authenticates with `user` and keys), got 9 characters (not shown)' });
    expect(JSON.stringify(issues({ ...BASE, community: '' }))).toContain('got 0 characters (not shown)');
  });
});
