import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../helpers/logger.js';
import { freePort, pollUntil, startProcess, type BackgroundProcess } from '../helpers/processes.js';

/**
 * vigil's exposition as Prometheus' own tools read it: `promtool check metrics` finds nothing to say,
 * and a real Prometheus server scraping vigil on 127.0.0.1 answers `vigil_check_up` through its API.
 * Needs Debian's `prometheus` package (promtool and prometheus), which .ci/run installs.
 */
describe('Prometheus reads vigil', () => {
  let dir: string;
  let target: NetServer;
  let daemon: Daemon;
  let prometheus: BackgroundProcess | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-prometheus-'));
    target = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const { port } = target.address() as AddressInfo;
    const config = join(dir, 'vigil.yaml');
    await writeFile(
      config,
      [
        `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, 'data'))} }`,
        'checks:',
        `  - { id: target, command: tcp, interval: 1s, attributes: { host: 127.0.0.1, port: ${port} } }`,
        `  - { id: nothing-there, command: tcp, interval: 1s, maxAttempts: 1, attributes: { host: 127.0.0.1, port: 1 } }`,
      ].join('\n'),
    );
    daemon = await startDaemon({ configFile: config, logger: silentLogger() });
  });

  afterAll(async () => {
    await prometheus?.stop();
    await daemon.stop();
    await new Promise<void>((resolve) => target.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('passes promtool check metrics', async () => {
    const exposition = await pollUntil(async () => {
      const text = await (await fetch(`${daemon.url}/metrics`)).text();
      return text.includes('vigil_check_metric{check="target",metric="connect_time"}') && text.includes('check="nothing-there"') ? text : undefined;
    }, 'both checks on /metrics');
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
    expect(promtool.error, 'promtool is missing: install Debian\'s prometheus package').toBeUndefined();
    expect(`${promtool.stdout}${promtool.stderr}`).toBe('');
    expect(promtool.status).toBe(0);
  });

  it('is scraped by a real Prometheus, which answers vigil_check_up', async () => {
    const port = await freePort();
    const vigilAddress = new URL(daemon.url).host;
    const configFile = join(dir, 'prometheus.yml');
    await writeFile(configFile, `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: vigil\n    static_configs: [{ targets: ['${vigilAddress}'] }]\n`);
    prometheus = startProcess(
      'prometheus',
      [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      'prometheus',
    );
    type Sample = { metric: Record<string, string>; value: [number, string] };
    const query = (expression: string) => async (): Promise<Sample[] | undefined> => {
      const response = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expression)}`);
      const body = (await response.json()) as { data: { result: Sample[] } };
      return body.data.result.length > 0 ? body.data.result : undefined;
    };
    const up = await pollUntil(query('vigil_check_up'), `vigil_check_up through Prometheus (its output: ${prometheus.output()})`, 60_000);
    const byCheck: Record<string, string> = Object.fromEntries(up.map((sample) => [sample.metric.check ?? '', sample.value[1]]));
    expect(byCheck).toMatchObject({ target: '1', 'nothing-there': '0' });
    expect(up[0]?.metric.job).toBe('vigil');
  });
});
