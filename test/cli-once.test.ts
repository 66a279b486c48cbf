import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type RequestListener } from 'node:http';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stableHash } from '../src/checks/schedule.js';
import type { Health } from '../src/core/health.js';
import type { CliResult } from './helpers/cli.js';
import { escapeRegex, expectLine, NUM, runOnce } from './helpers/once.js';
import { TestDnsServer } from './helpers/dns-server.js';
import { freePort as closedPort } from './helpers/processes.js';

/**
 * `vigil once ID` for every built-in command, through the built CLI as an operator or Nagios runs it:
 * one check per config against a target the test starts on 127.0.0.1, the printed line
 * (`ID STATE reason: message | perfdata`) and the Nagios exit code (0 ok, 1 warn, 2 crit, 3 unknown).
 */

let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-once-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

const CHECK_DUMMY = '/usr/lib/nagios/plugins/check_dummy';

/** Writes a config with one check `id` and runs `vigil once id` on it. */
function once(id: string, command: string, attributes: Record<string, unknown>): Promise<CliResult> {
  return runOnce(dir, { id, command, attributes });
}

/** A TCP server on 127.0.0.1 that greets every connection with `banner`. */
async function tcpServer(banner: string): Promise<number> {
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.end(banner);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

/** An HTTP server on 127.0.0.1 answering with `listener`; resolves its base URL. */
async function httpServer(listener: RequestListener): Promise<string> {
  const server = createHttpServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('vigil once: tcp', () => {
  it('prints OK with the connect time and exits 0 when the port answers as expected', async () => {
    const port = await tcpServer('SSH-2.0-test\r\n');
    const result = await once('ssh', 'tcp', { host: '127.0.0.1', port, expect: 'SSH-' });
    expectLine(result, `ssh OK ok: connected to 127\\.0\\.0\\.1:${port} in ${NUM} ms, response matched "SSH-" \\| connect_time=${NUM}ms`, 0);
  });

  it('prints CRIT refused and exits 2 when nothing listens', async () => {
    const port = await closedPort();
    const result = await once('closed', 'tcp', { host: '127.0.0.1', port });
    expectLine(result, `closed CRIT refused: connection refused by 127\\.0\\.0\\.1:${port}`, 2);
  });
});

describe('vigil once: http', () => {
  it('prints OK with the status and timings and exits 0 for a 200', async () => {
    const url = await httpServer((_request, response) => response.end('hello'));
    const result = await once('web', 'http', { url: `${url}/health`, bodyContains: 'hello' });
    expectLine(
      result,
      `web OK ok: 200 OK from ${escapeRegex(url)}/health in ${NUM} ms \\| status_code=200 total_time=${NUM}ms connect_time=${NUM}ms first_byte_time=${NUM}ms transfer_time=${NUM}ms body_bytes=5B`,
      0,
    );
  });

  it('prints CRIT unexpected-status and exits 2 for a 503', async () => {
    const url = await httpServer((_request, response) => {
      response.statusCode = 503;
      response.end('down for maintenance');
    });
    const result = await once('web', 'http', { url: `${url}/health` });
    // Whether the body's timings follow depends on how much of it had arrived when the status was judged.
    expectLine(
      result,
      `web CRIT unexpected-status: expected status 2xx, 3xx, got 503 Service Unavailable from ${escapeRegex(url)}/health in ${NUM} ms \\| status_code=503 total_time=${NUM}ms connect_time=${NUM}ms first_byte_time=${NUM}ms(?: \\S+)*`,
      2,
    );
  });
});

describe('vigil once: ping', () => {
  it('prints OK with loss, round trips and jitter and exits 0 for loopback', async () => {
    const result = await once('lo', 'ping', { host: '127.0.0.1', count: 2 });
    expectLine(
      result,
      `lo OK ok: 127\\.0\\.0\\.1: 2/2 replies, 0% loss, rtt min/avg/max ${NUM}/${NUM}/${NUM} ms, jitter ${NUM} ms \\| packet_loss=0%;20;60 rtt_min=${NUM}ms rtt_avg=${NUM}ms rtt_max=${NUM}ms jitter=${NUM}ms`,
      0,
    );
  });

  it('prints WARN latency-high and exits 1 when the round trip reaches the warning threshold', async () => {
    // Loopback cannot be made to lose packets without changing the machine (test/commands/ping-netns.test.ts
    // does that in a namespace); a 0 ms warning threshold is one every round trip reaches.
    const result = await once('lo', 'ping', { host: '127.0.0.1', count: 2, rttWarnMs: 0 });
    expectLine(
      result,
      `lo WARN latency-high: 127\\.0\\.0\\.1: average rtt ${NUM} ms at or above the warning threshold of 0 ms; 2/2 replies, 0% loss, rtt min/avg/max ${NUM}/${NUM}/${NUM} ms, jitter ${NUM} ms \\| packet_loss=0%;20;60 rtt_min=${NUM}ms rtt_avg=${NUM}ms;0 rtt_max=${NUM}ms jitter=${NUM}ms`,
      1,
    );
  });
});

describe('vigil once: exec', () => {
  it("prints OK with the plugin's text and exits 0 when the plugin exits 0", async () => {
    const result = await once('plugin', 'exec', { argv: [CHECK_DUMMY, '0', 'all good'] });
    expectLine(result, 'plugin OK ok: OK: all good', 0);
  });

  it("prints CRIT plugin with the plugin's text and exits 2 when the plugin exits 2", async () => {
    const result = await once('plugin', 'exec', { argv: [CHECK_DUMMY, '2', 'disk full'] });
    expectLine(result, 'plugin CRIT plugin: CRITICAL: disk full', 2);
  });
});

describe('vigil once: heartbeat-file', () => {
  async function heartbeat(ageSeconds: number): Promise<string> {
    const file = join(dir, 'worker.json');
    await writeFile(file, JSON.stringify({ timestamp: Date.now() / 1000 - ageSeconds, pid: 4242, beat: 7 }));
    return file;
  }

  it('prints OK with the age and exits 0 for a fresh heartbeat', async () => {
    const file = await heartbeat(0);
    const result = await once('worker', 'heartbeat-file', { file, warnAfter: '30s', critAfter: '1m' });
    expectLine(result, `worker OK ok: heartbeat ${escapeRegex(file)} is ${NUM} s old \\(pid 4242, beat 7\\) \\| age=${NUM}s;30;60 beat=7c`, 0);
  });

  it('prints CRIT heart-attack and exits 2 for a heartbeat older than critAfter', async () => {
    const file = await heartbeat(3600);
    const result = await once('worker', 'heartbeat-file', { file, warnAfter: '30s', critAfter: '1m' });
    expectLine(
      result,
      `worker CRIT heart-attack: heartbeat ${escapeRegex(file)} is 36\\d\\d s old \\(pid 4242, beat 7\\), at or above the critical threshold of 60 s \\| age=36\\d\\d(?:\\.\\d+)?s;30;60 beat=7c`,
      2,
    );
  });
});

describe('vigil once: heartbeat-dir', () => {
  it('prints OK with the heartbeats it attaches, and CRIT dir-missing for a missing directory', async () => {
    // `once` gives the command a registry of its own holding the check, so it attaches what it finds.
    const beats = join(dir, 'beats');
    await mkdir(beats);
    await writeFile(join(beats, 'worker.json'), JSON.stringify({ timestamp: Date.now() / 1000 }));
    const present = await once('workers', 'heartbeat-dir', { dir: beats, critAfter: '1m' });
    expectLine(present, `workers OK ok: 1 heartbeat attached from ${escapeRegex(beats)} \\(1 attached, 0 detached this run\\) \\| attached=1 attached_total=1c detached_total=0c`, 0);

    const missing = await once('workers', 'heartbeat-dir', { dir: join(dir, 'missing'), critAfter: '1m' });
    expectLine(missing, `workers CRIT dir-missing: heartbeat directory ${escapeRegex(join(dir, 'missing'))} is missing`, 2);
  });
});

describe('vigil once: dns', () => {
  let server: TestDnsServer;
  beforeEach(async () => {
    server = await TestDnsServer.start({ zone: { 'app.example.test': { A: ['192.0.2.10', '192.0.2.11'] } } });
    cleanups.push(() => server.close());
  });

  it('prints OK with the answers and exits 0 when the expected address is among them', async () => {
    const result = await once('app-a', 'dns', { name: 'app.example.test', servers: [server.address], expect: ['192.0.2.10'] });
    expectLine(result, `app-a OK ok: resolved app\\.example\\.test A at ${escapeRegex(server.address)} in ${NUM} ms: 192\\.0\\.2\\.10, 192\\.0\\.2\\.11 \\| response_time=${NUM}ms answers=2`, 0);
    expect(server.queries).toEqual(['app.example.test A']);
  });

  it('prints CRIT nxdomain and exits 2 for a name that does not exist', async () => {
    const result = await once('gone', 'dns', { name: 'gone.example.test', servers: [server.address] });
    expectLine(result, `gone CRIT nxdomain: gone\\.example\\.test does not exist \\(NXDOMAIN from ${escapeRegex(server.address)}\\) \\| response_time=${NUM}ms answers=0`, 2);
  });
});

describe('vigil once: push', () => {
  it('prints OK no-ping-yet and exits 0: once evaluates a push check before any ping', async () => {
    const before = Date.now();
    const result = await once('nightly', 'push', { period: '1d', grace: '1h' });
    const after = Date.now();
    expectLine(result, `nightly OK no-ping-yet: no ping yet; the first success is due by \\S+Z \\| watching_since_timestamp=${NUM}s`, 0);
    // Watching starts with this run, so the first success is due a period and a grace later.
    const dueBy = Date.parse(/due by (\S+) /.exec(result.stdout)?.[1] ?? '');
    const watchingSince = Math.round(Number(/watching_since_timestamp=([\d.]+)s/.exec(result.stdout)?.[1]) * 1000);
    expect(watchingSince).toBeGreaterThanOrEqual(before - 1);
    expect(watchingSince).toBeLessThanOrEqual(after + 1);
    expect(dueBy - watchingSince).toBe(25 * 3_600_000);
  });

  it('prints the problem and exits 3 for an invalid push check (a run without pings cannot fail)', async () => {
    // Without a previous Result `once` starts watching now, so no ping can be overdue yet: a check
    // `once` cannot load is the push check's only failure here.
    const result = await once('nightly', 'push', { period: '1d', token: 'short' });
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/checks\[0\]\.attributes\.token: expected a token of 16–128 characters/);
    expect(result.code).toBe(3);
  });
});

describe('vigil once: peer', () => {
  const health: Health = { status: 'ok', instanceId: 'vigil-b-1', epoch: 4, version: '0.1.0', uptimeSeconds: 120, checks: 12 };

  /** A tiny peer whose /healthz answers `status` with `body`; other paths 404. */
  function peer(status: number, body: unknown): Promise<string> {
    return httpServer((request, response) => {
      if (request.url !== '/healthz') {
        response.statusCode = 404;
        response.end();
        return;
      }
      response.statusCode = status;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(body));
    });
  }

  it('prints OK with its identity and exits 0 for a healthy peer', async () => {
    const url = await peer(200, health);
    const result = await once('vigil-b', 'peer', { url });
    expectLine(
      result,
      `vigil-b OK ok: peer ${escapeRegex(url)}/healthz is up: instance vigil-b-1 epoch 4, up 120 s, 12 checks, version 0\\.1\\.0 \\| uptime=120s checks=12 epoch=4 instance_hash=${stableHash('vigil-b-1')}`,
      0,
    );
  });

  it('prints CRIT unhealthy and exits 2 for a peer that is stopping', async () => {
    const url = await peer(503, { ...health, status: 'stopping' });
    const result = await once('vigil-b', 'peer', { url });
    expectLine(result, `vigil-b CRIT unhealthy: peer ${escapeRegex(url)}/healthz is stopping \\(HTTP 503\\) \\| epoch=4 instance_hash=${stableHash('vigil-b-1')}`, 2);
  });

  it('prints UNKNOWN bad-response and exits 3 when the URL answers but is not a vigil', async () => {
    const url = await peer(200, { hello: 'world' });
    const result = await once('vigil-b', 'peer', { url });
    expectLine(result, `vigil-b UNKNOWN bad-response: peer ${escapeRegex(url)}/healthz answered 200, but not a vigil health answer \\(expected JSON with status, instanceId, epoch, uptimeSeconds, checks\\)`, 3);
  });
});
