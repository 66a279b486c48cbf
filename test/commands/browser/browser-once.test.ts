import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../../helpers/cli.js';
import { pollUntil } from '../../helpers/processes.js';

/**
 * `vigil once` on a browser check, through the built CLI: the printed line, the Nagios exit code, and
 * no Chromium left behind once vigil has exited (its browser process does not keep vigil running, and
 * is killed with it).
 */

/** A number as perfdata and messages print it. */
const NUM = String.raw`\d+(?:\.\d+)?`;

let server: Server;
let base: string;
let dir: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    if (req.url === '/down') {
      res.statusCode = 503;
      res.end('<h1>Down for maintenance</h1>');
    } else {
      res.end('<h1>Shop</h1><a id="cart" href="/cart">cart</a>');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(async (context) => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-browser-once-'));
  context.onTestFinished(() => rm(dir, { recursive: true, force: true }));
});

/**
 * Runs `vigil once shop` on a config with one browser check. Chromium inherits vigil's environment,
 * so a marker variable finds the processes this run started; `TMPDIR` shows whether the browser's
 * profile directory was removed.
 */
async function onceShop(attributes: Record<string, unknown>): Promise<CliResult & { readonly marker: string; readonly tmp: string }> {
  const file = join(dir, 'vigil.json.yaml');
  const config = {
    server: { host: '127.0.0.1', port: 0, dataDir: join(dir, 'data') },
    checks: [{ id: 'shop', command: 'browser', timeout: '30s', attributes }],
  };
  await writeFile(file, JSON.stringify(config, null, 2));
  const marker = randomUUID();
  const tmp = join(dir, 'tmp');
  await mkdir(tmp);
  const result = await runCli(['once', 'shop', '-c', file], { env: { VIGIL_BROWSER_TEST_RUN: marker, TMPDIR: tmp } });
  return { ...result, marker, tmp };
}

/** Pids of live processes (zombies are dead) whose environment holds `VIGIL_BROWSER_TEST_RUN=marker`. */
async function liveProcessesMarked(marker: string): Promise<number[]> {
  const needle = `VIGIL_BROWSER_TEST_RUN=${marker}`;
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const environ = await readFile(`/proc/${entry}/environ`, 'utf8');
      if (environ.split('\0').includes(needle)) pids.push(Number(entry));
    } catch {
      // The process ended while it was read.
    }
  }
  return pids;
}

/** Waits until no process of the run is alive (SIGKILL takes a moment to land); fails after 10 s naming them. */
async function expectNoneLeft(marker: string): Promise<void> {
  await pollUntil(async () => ((await liveProcessesMarked(marker)).length === 0 ? true : undefined), `the Chromium processes of vigil once to end`, 10_000, 100);
  expect(await liveProcessesMarked(marker)).toEqual([]);
}

describe('vigil once: browser', () => {
  it('prints OK with the load time and steps, exits 0, and leaves no Chromium or profile behind', async () => {
    const result = await onceShop({ url: `${base}/`, steps: [{ click: '#cart' }, { waitFor: 'h1' }] });
    expect(result.stdout).toMatch(
      new RegExp(
        `^shop OK ok: 200 OK from ${base.replace(/\./g, '\\.')}/ loaded in ${NUM} ms, 2 of 2 steps done \\| status_code=200 load_time=${NUM}ms dom_content_loaded=${NUM}ms console_errors=0 failed_requests=0 steps_run=2\\n$`,
      ),
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    await expectNoneLeft(result.marker);
    expect((await readdir(result.tmp)).filter((name) => name.startsWith('playwright'))).toEqual([]);
  });

  it('prints CRIT unexpected-status and exits 2 for a page that is down, with a screenshot in the data dir', async () => {
    const result = await onceShop({ url: `${base}/down` });
    const screenshots = join(dir, 'data', 'screenshots');
    expect(result.stdout).toMatch(
      new RegExp(
        `^shop CRIT unexpected-status: expected status 2xx, got 503 Service Unavailable from ${base.replace(/\./g, '\\.')}/down loaded in ${NUM} ms; screenshot ${screenshots.replace(/\./g, '\\.')}/shop-\\d{8}T\\d{9}Z\\.png \\| status_code=503 `,
      ),
    );
    expect((await readdir(screenshots)).filter((name) => name.startsWith('shop-') && name.endsWith('.png'))).toHaveLength(1);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(2);
    await expectNoneLeft(result.marker);
  });

  it('prints UNKNOWN browser-unavailable and exits 3 when no Chromium can be found', async () => {
    const result = await onceShop({ url: `${base}/`, executablePath: join(dir, 'no-chromium') });
    expect(result.stdout).toBe(
      `shop UNKNOWN browser-unavailable: cannot run the Chromium of executablePath ${join(dir, 'no-chromium')}: expected an existing executable file (no such file)\n`,
    );
    expect(result.code).toBe(3);
  });
});
