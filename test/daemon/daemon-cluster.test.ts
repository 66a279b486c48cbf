import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DaemonProcess } from '../helpers/cli.js';
import { testDatabase, type TestDatabase } from '../helpers/postgres.js';
import { slotProblems, storedSlotReports, storedStarts, type SlotReport } from '../../bench/slots.js';

/**
 * Several `vigil run` processes on one fresh PostgreSQL schema, configured as an operator would (60
 * tcp checks at 1 s, a `postgres-results` handler, the queue's defaults), judged by what the results
 * table holds: every check ran once in each slot of its grid, whatever started or stopped.
 */

const CHECKS = 60;

describe('vigil run × 3 on one PostgreSQL', () => {
  let dir: string;
  let database: TestDatabase;
  let targets: NetServer[];
  let daemons: DaemonProcess[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-cluster-'));
    database = await testDatabase('cluster_cli');
    daemons = [];
    // One target per check: checks of one target take turns (safe mode), which is not what this is about.
    targets = await Promise.all(
      Array.from({ length: CHECKS }, () => new Promise<NetServer>((resolve) => {
        const server = createServer((socket) => socket.end());
        server.listen(0, '127.0.0.1', () => resolve(server));
      })),
    );
  });
  afterEach(async () => {
    await stopAll();
    await Promise.all(targets.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    await database.drop();
    await rm(dir, { recursive: true, force: true });
  });

  async function config(name: string): Promise<string> {
    const file = join(dir, `${name}.yaml`);
    const checks = targets.map((server, i) => `  - { id: c${String(i).padStart(2, '0')}, command: tcp, interval: 1s, attributes: { host: 127.0.0.1, port: ${(server.address() as AddressInfo).port} } }`);
    await writeFile(
      file,
      [
        `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, name))} }`,
        `queue: { type: postgres, url: "${database.url}", schema: ${database.schema} }`,
        `handlers:\n  history: { type: postgres-results, url: "${database.url}", schema: ${database.schema}, flushInterval: 200ms }`,
        'defaults: { handlers: [history] }',
        `checks:\n${checks.join('\n')}`,
      ].join('\n'),
    );
    return file;
  }

  async function start(name: string): Promise<DaemonProcess> {
    const daemon = new DaemonProcess(['-c', await config(name)]);
    daemons.push(daemon);
    return daemon;
  }

  /** SIGTERM, as a service manager stops vigil; resolves its exit code. */
  async function stop(daemon: DaemonProcess): Promise<number | null> {
    daemon.kill('SIGTERM');
    const code = await daemon.exited;
    daemons = daemons.filter((other) => other !== daemon);
    return code;
  }

  async function stopAll(): Promise<void> {
    await Promise.all([...daemons].map((daemon) => stop(daemon)));
  }

  /** Waits until every check has `count` more stored results than `since` says it had. */
  async function runsMore(count: number, since = new Map<string, number[]>()): Promise<Map<string, number[]>> {
    return vi.waitFor(async () => {
      const starts = await storedStarts(database.pool, database.schema);
      expect(starts.size).toBe(CHECKS);
      for (const [id, list] of starts) expect(list.length, id).toBeGreaterThanOrEqual((since.get(id)?.length ?? 0) + count);
      return starts;
    }, { timeout: 30_000, interval: 200 });
  }

  /** Runs of each daemon, from its last log line (`stopped`, with the server's run count). */
  function runsOf(daemon: DaemonProcess): number {
    const line = daemon.lines.findLast((entry) => entry.msg === 'stopped');
    return typeof line?.runs === 'number' ? line.runs : 0;
  }

  function totals(reports: ReadonlyMap<string, SlotReport>): { runs: number; slots: number } {
    let runs = 0;
    let slots = 0;
    for (const report of reports.values()) {
      runs += report.runs;
      slots += report.slots;
    }
    return { runs, slots };
  }

  it('started 0.3 s apart, they run every check once per slot from its first run on', { timeout: 90_000 }, async () => {
    const started: DaemonProcess[] = [];
    for (const name of ['a', 'b', 'c']) {
      started.push(await start(name));
      // The start-up: three processes 0.3 s apart, not one after the other is ready.
      await delay(300);
    }
    await Promise.all(started.map((daemon) => daemon.waitForMessage('vigil started', {}, 30_000)));
    await runsMore(6);
    // One machine, one clock; the first claims after a start are late, and say so.
    const { url } = started[0]?.lines.find((line) => line.msg === 'vigil started') as { url: string };
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('vigil_queue_clock_offset_seconds 0\n');
    expect(metrics).toContain('vigil_queue_leases_lost_total 0\n');
    expect(metrics).toMatch(/^vigil_queue_late_claims_total \d+$/m);
    const stopped = await Promise.all(started.map((daemon) => stop(daemon)));
    expect(stopped).toEqual([0, 0, 0]);

    const reports = await storedSlotReports(database.pool, database.schema);
    expect(reports.size).toBe(CHECKS);
    expect(slotProblems(reports)).toEqual([]);
    const { runs, slots } = totals(reports);
    expect(runs / slots).toBe(1);
    // All three took part.
    for (const daemon of started) expect(runsOf(daemon)).toBeGreaterThan(0);
  });

  it('a rolling deploy (each stopped with SIGTERM and started again) misses no slot and runs none twice', { timeout: 120_000 }, async () => {
    const names = ['a', 'b', 'c'];
    const running = new Map<string, DaemonProcess>();
    for (const name of names) running.set(name, await start(name));
    await Promise.all([...running.values()].map((daemon) => daemon.waitForMessage('vigil started', {}, 30_000)));
    let seen = await runsMore(3);
    for (const name of names) {
      const old = running.get(name) as DaemonProcess;
      expect(await stop(old)).toBe(0);
      expect(runsOf(old)).toBeGreaterThan(0);
      const renewed = await start(name);
      running.set(name, renewed);
      await renewed.waitForMessage('vigil started', {}, 30_000);
      // The same instance again: its data dir keeps its id, its epoch goes up.
      expect(renewed.lines.find((line) => line.msg === 'vigil started')?.instanceId).toBe(old.lines.find((line) => line.msg === 'vigil started')?.instanceId);
      seen = await runsMore(2, seen);
    }
    await stopAll();

    const reports = await storedSlotReports(database.pool, database.schema);
    expect(reports.size).toBe(CHECKS);
    // Two instances run at every moment after the first runs, and one that stops gives back what it
    // holds: no slot may go without a run, none may have two.
    expect(slotProblems(reports)).toEqual([]);
    const { runs, slots } = totals(reports);
    expect(runs / slots).toBe(1);
    for (const daemon of running.values()) expect(runsOf(daemon)).toBeGreaterThan(0);
  });
});
