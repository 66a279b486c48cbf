import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDaemon, type Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../helpers/logger.js';
import { AMQP_URL, management, requireManagementApi, requireRabbitMq } from './helpers.js';

/**
 * The inner/outer deployment as the README shows it, from config files through `startDaemon`: the inner
 * vigil publishes its results through the `amqp` handler, the outer one ingests them (`ingest.amqp`)
 * into push checks it creates, and opens the incident when the inner one's target goes down.
 */
describe('inner and outer vigil through RabbitMQ, from their config files', () => {
  const run = randomUUID().slice(0, 8);
  const exchange = `vigil-test-${run}`;
  const queue = `vigil-test-results-${run}`;
  let dir: string;
  let target: NetServer;
  let targetPort: number;
  const sockets = new Set<Socket>();
  const daemons: Daemon[] = [];

  beforeAll(async () => {
    const connection = await requireRabbitMq();
    await connection.close();
    await requireManagementApi();
    dir = await mkdtemp(join(tmpdir(), 'vigil-inner-outer-'));
    target = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.end();
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const daemon of daemons.reverse()) await daemon.stop();
    if (target.listening) await new Promise<void>((resolve) => target.close(() => resolve()));
    for (const name of [queue, `${queue}.dead-letter`]) await management(`/api/queues/%2F/${encodeURIComponent(name)}`, { method: 'DELETE' });
    await management(`/api/exchanges/%2F/${encodeURIComponent(exchange)}`, { method: 'DELETE' });
    await rm(dir, { recursive: true, force: true });
  });

  async function daemon(name: string, config: string): Promise<Daemon> {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, `server: { host: 127.0.0.1, port: 0, dataDir: ${JSON.stringify(join(dir, name))}, apiToken: token-for-${name} }\n${config}`);
    const started = await startDaemon({ configFile: file, logger: silentLogger() });
    daemons.push(started);
    return started;
  }

  it('opens the incident outside when a target inside goes down', async () => {
    await daemon(
      'inner',
      [
        'handlers:',
        `  uplink: { type: amqp, url: "${AMQP_URL}", exchange: ${exchange}, queue: ${queue}, source: dc-east }`,
        'defaults: { handlers: [uplink], maxAttempts: 1 }',
        'checks:',
        `  - { id: web, command: tcp, interval: 300ms, attributes: { host: 127.0.0.1, port: ${targetPort} } }`,
      ].join('\n'),
    );
    const outer = await daemon(
      'outer',
      [
        'ingest:',
        `  amqp: { url: "${AMQP_URL}", exchange: ${exchange}, queue: ${queue}, createUnknown: true, checkId: "{source}.{check}" }`,
        '  check: { interval: 1h, maxAttempts: 1, attributes: { period: 30s, grace: 1m } }',
        'checks: []',
      ].join('\n'),
    );

    // The first results create dc-east.web outside, ok.
    await vi.waitFor(() => expect(outer.queue.get('dc-east.web')?.state.lastResult?.state).toBe('ok'), { timeout: 20_000, interval: 100 });
    expect(outer.queue.get('dc-east.web')?.spec.command).toBe('push');

    // The target goes away: inside it is crit, outside an incident opens for it.
    await new Promise<void>((resolve) => {
      target.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    await vi.waitFor(() => expect(outer.queue.get('dc-east.web')?.state.incident).not.toBeNull(), { timeout: 20_000, interval: 100 });
    const incidents = (await (await fetch(`${outer.url}/api/v1/incidents?state=open`)).json()) as { incidents: { checkId: string; state: string }[] };
    expect(incidents.incidents).toMatchObject([{ checkId: 'dc-east.web', state: 'crit' }]);
  });
});
