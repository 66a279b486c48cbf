import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult } from '../../helpers/cli.js';
import { Snmpd, TEST_OIDS } from '../../helpers/snmpd.js';
import { expectLine, NUM, runOnce } from '../../helpers/once.js';

/**
 * `vigil once ID` for snmp checks, through the built CLI as an operator or Nagios runs it: the printed
 * line (`ID STATE reason: message | perfdata`), the Nagios exit code, and secrets taken from the
 * environment that appear nowhere in the output.
 */

const COMMUNITY = 'once-community-77';
const AUTH_KEY = 'once-auth-phrase';
const PRIV_KEY = 'once-priv-phrase';
const ENV = { SNMP_COMMUNITY: COMMUNITY, SNMP_AUTH_KEY: AUTH_KEY, SNMP_PRIV_KEY: PRIV_KEY };

let agent: Snmpd;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-snmp-once-'));
  agent = await Snmpd.start({
    communities: [COMMUNITY],
    users: [{ name: 'monitor', authProtocol: 'SHA', authKey: AUTH_KEY, privProtocol: 'AES', privKey: PRIV_KEY }],
    values: { [`${TEST_OIDS}.1.1`]: ['integer', 1], [`${TEST_OIDS}.1.2`]: ['integer', 2], [`${TEST_OIDS}.2.0`]: ['gauge', 93] },
  });
});
afterAll(async () => {
  await agent?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Writes a config with one check `id` and runs `vigil once id` on it, with the secrets in the environment. */
function once(id: string, attributes: Record<string, unknown>): Promise<CliResult> {
  return runOnce(dir, { id, command: 'snmp', attributes: { host: agent.host, port: agent.port, ...attributes } }, ENV);
}


const oid = (suffix: string): string => `${TEST_OIDS}.${suffix}`.replace(/\./g, '\\.');

describe('vigil once: snmp', () => {
  it('prints OK with the value and exits 0 for an interface that is up (v2c, community from the environment)', async () => {
    const result = await once('if-up', { community: '${SNMP_COMMUNITY}', oid: `${TEST_OIDS}.1.1`, mode: 'status', expect: 1 });
    expectLine(result, `if-up OK ok: ${oid('1.1')} = 1 from 127\\.0\\.0\\.1:${agent.port} in ${NUM} ms, as expected \\| value=1 response_time=${NUM}ms`, 0);
  });

  it('prints CRIT unexpected-status and exits 2 when a walked interface is down (v3 authPriv, keys from the environment)', async () => {
    const result = await once('ifs', { version: 3, user: 'monitor', authKey: '${SNMP_AUTH_KEY}', privKey: '${SNMP_PRIV_KEY}', walk: `${TEST_OIDS}.1`, mode: 'status', expect: 1 });
    expectLine(result, `ifs CRIT unexpected-status: expected every value under ${oid('1')} to be 1, 1 of 2 are not: \\.2 = 2 \\(127\\.0\\.0\\.1:${agent.port}\\) \\| count=2 response_time=${NUM}ms`, 2);
  });

  it('prints WARN threshold and exits 1 for a gauge at its warning threshold', async () => {
    const result = await once('disk', { community: '${SNMP_COMMUNITY}', oid: `${TEST_OIDS}.2.0`, unit: '%', warn: 90, crit: 95 });
    expectLine(result, `disk WARN threshold: ${oid('2.0')} = 93% from 127\\.0\\.0\\.1:${agent.port} in ${NUM} ms, at or above the warning threshold of 90% \\| value=93%;90;95 response_time=${NUM}ms`, 1);
  });

  it('prints UNKNOWN auth-failed and exits 3 for a wrong key, showing no key', async () => {
    const result = await once('bad-key', { version: 3, user: 'monitor', authKey: 'wrong-auth-phrase', privKey: '${SNMP_PRIV_KEY}', oid: `${TEST_OIDS}.2.0` });
    expectLine(
      result,
      `bad-key UNKNOWN auth-failed: SNMPv3 authentication with 127\\.0\\.0\\.1:${agent.port} failed: wrong authKey or authProtocol for user "monitor" \\(usmStatsWrongDigests\\) \\| response_time=${NUM}ms`,
      3,
    );
    expect(result.stdout).not.toContain('wrong-auth-phrase');
  });
});
