import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess, type BackgroundProcess } from './processes.js';

/** Where Debian's `snmpd` package puts the agent; `SNMPD` overrides it. */
const SNMPD = process.env.SNMPD ?? '/usr/sbin/snmpd';
/** A private enterprise subtree the test agent serves from `values`. */
export const TEST_OIDS = '1.3.6.1.4.1.99999';
/** sysUpTime's subtree: served from `values` too, so a test can make the agent look restarted. */
export const SYS_UP_TIME = '1.3.6.1.2.1.1.3';

/** Value types as snmpd's `pass_persist` protocol spells them. */
export type SnmpdType = 'integer' | 'gauge' | 'counter' | 'counter64' | 'timeticks' | 'string' | 'octet' | 'objectid' | 'ipaddress';

/** What the agent answers, by OID without a leading dot: `{ '1.3.6.1.4.1.99999.1.0': ['counter', 42] }`. */
export type SnmpdValues = Readonly<Record<string, readonly [SnmpdType, string | number | bigint]>>;

/** An SNMPv3 user, as snmpd's `createUser` and `rouser` take it. */
export interface SnmpdUser {
  readonly name: string;
  /** `MD5`, `SHA`, `SHA-256`, …; none for a noAuthNoPriv user. */
  readonly authProtocol?: string;
  readonly authKey?: string;
  /** `DES`, `AES`; none for an authNoPriv user. */
  readonly privProtocol?: string;
  readonly privKey?: string;
}

export interface SnmpdOptions {
  /** v2c read-only communities, for 127.0.0.1; default `public`. */
  readonly communities?: readonly string[];
  readonly users?: readonly SnmpdUser[];
  /** The values under `TEST_OIDS`, `SYS_UP_TIME` and `subtrees`; sysUpTime.0 counts from the start when not given. */
  readonly values?: SnmpdValues;
  /** Further subtrees served from `values` instead of snmpd's own MIB modules (e.g. ifHighSpeed's column). */
  readonly subtrees?: readonly string[];
}

/**
 * The `pass_persist` program: answers snmpd's `get` and `getnext` from a JSON file of values that it
 * reads on every request, so that a test changes what the agent says by rewriting the file.
 */
const AGENT_SCRIPT = String.raw`'use strict';
const { readFileSync } = require('node:fs');
const file = process.argv[2];
const startedAt = Date.now();
const arcs = (oid) => oid.split('.').filter((arc) => arc !== '').map(Number);
const compare = (a, b) => {
  const x = arcs(a);
  const y = arcs(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};
let command = null;
let buffer = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffer += chunk;
  let newline;
  while ((newline = buffer.indexOf('\n')) >= 0) {
    const line = buffer.slice(0, newline).trim();
    buffer = buffer.slice(newline + 1);
    if (command === null) {
      if (line === 'PING') process.stdout.write('PONG\n');
      else if (line !== '') command = line;
      continue;
    }
    const asked = line;
    const current = command;
    command = null;
    if (current === 'set') { process.stdout.write('not-writable\n'); continue; }
    const values = JSON.parse(readFileSync(file, 'utf8'));
    if (!('1.3.6.1.2.1.1.3.0' in values)) values['1.3.6.1.2.1.1.3.0'] = ['timeticks', String(Math.floor((Date.now() - startedAt) / 10))];
    const oids = Object.keys(values).sort(compare);
    const found = current === 'get' ? oids.find((oid) => compare(oid, asked) === 0) : oids.find((oid) => compare(oid, asked) > 0);
    if (found === undefined) { process.stdout.write('NONE\n'); continue; }
    const [type, value] = values[found];
    process.stdout.write('.' + found + '\n' + type + '\n' + value + '\n');
  }
});
`;

/**
 * A real net-snmp agent (Debian's `snmpd`) on a free UDP port of 127.0.0.1, with a config the test
 * gives it: v2c communities, v3 users, and values it serves from a file the test can rewrite. Fails,
 * naming the package, when snmpd is not installed. Stop it in `afterEach`/`afterAll`.
 */
export class Snmpd {
  readonly host = '127.0.0.1';
  readonly port: number;
  readonly #dir: string;
  readonly #process: BackgroundProcess;

  private constructor(dir: string, port: number, child: BackgroundProcess) {
    this.#dir = dir;
    this.port = port;
    this.#process = child;
  }

  static async start(options: SnmpdOptions = {}): Promise<Snmpd> {
    if (!existsSync(SNMPD)) {
      throw new Error(`snmpd not found at ${SNMPD}: the SNMP tests need a real agent; install Debian's snmpd package (apt-get install snmpd), or set SNMPD to its path`);
    }
    const dir = await mkdtemp(join(tmpdir(), 'vigil-snmpd-'));
    try {
      await mkdir(join(dir, 'persist'));
      await writeFile(join(dir, 'agent.cjs'), AGENT_SCRIPT);
      await writeValues(dir, options.values ?? {});
      await writeFile(join(dir, 'snmpd.conf'), config(dir, options));
      // The port is free when chosen, and another program may take it before snmpd binds: try again then.
      for (let attempt = 1; ; attempt++) {
        const port = await freeUdpPort();
        const child = startProcess(SNMPD, ['-f', '-Lo', '-C', '-m', '', '-I', '-smux', '-c', join(dir, 'snmpd.conf'), `--persistentDir=${join(dir, 'persist')}`, `udp:127.0.0.1:${port}`], 'snmpd');
        const started = await ready(child);
        if (started) return new Snmpd(dir, port, child);
        await child.stop();
        if (attempt >= 3 || !child.output().includes('Error opening specified endpoint')) throw new Error(`snmpd did not start: ${child.output()}`);
      }
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Replaces the values the agent serves; the next request sees them. */
  async setValues(values: SnmpdValues): Promise<void> {
    await writeValues(this.#dir, values);
  }

  /** What snmpd printed, for failure messages. */
  output(): string {
    return this.#process.output();
  }

  async stop(): Promise<void> {
    await this.#process.stop();
    await rm(this.#dir, { recursive: true, force: true });
  }
}

function config(dir: string, options: SnmpdOptions): string {
  const agent = `${process.execPath} ${join(dir, 'agent.cjs')} ${join(dir, 'values.json')}`;
  const lines = (options.communities ?? ['public']).map((community) => `rocommunity ${community} 127.0.0.1`);
  for (const user of options.users ?? []) {
    const auth = user.authProtocol === undefined ? '' : ` ${user.authProtocol} "${user.authKey ?? ''}"`;
    const priv = user.privProtocol === undefined ? '' : ` ${user.privProtocol} "${user.privKey ?? ''}"`;
    lines.push(`createUser ${user.name}${auth}${priv}`, `rouser ${user.name} ${user.privProtocol !== undefined ? 'priv' : user.authProtocol !== undefined ? 'auth' : 'noauth'}`);
  }
  // Priority 1 puts these ahead of snmpd's own modules (sysUpTime is the system group's).
  for (const subtree of [TEST_OIDS, SYS_UP_TIME, ...(options.subtrees ?? [])]) lines.push(`pass_persist -p 1 .${subtree} ${agent}`);
  return `${lines.join('\n')}\n`;
}

async function writeValues(dir: string, values: SnmpdValues): Promise<void> {
  const file = join(dir, 'values.json');
  const text = JSON.stringify(Object.fromEntries(Object.entries(values).map(([oid, [type, value]]) => [oid, [type, String(value)]])));
  // A rename, so that the agent never reads a half-written file.
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

/** Resolves true once snmpd says it runs, false when it exits first; rejects after 15 s. */
function ready(child: BackgroundProcess): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`snmpd did not start within 15 s: ${child.output()}`));
    }, 15_000);
    const onData = (): void => {
      if (!child.output().includes('NET-SNMP version')) return;
      cleanup();
      resolve(true);
    };
    const onClose = (): void => {
      cleanup();
      resolve(false);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.child.stdout?.off('data', onData);
      child.child.off('close', onClose);
    };
    child.child.stdout?.on('data', onData);
    child.child.once('close', onClose);
    onData();
  });
}

/** A UDP port free on 127.0.0.1 right now: for snmpd, or for a test that needs a port where nothing answers. */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}
