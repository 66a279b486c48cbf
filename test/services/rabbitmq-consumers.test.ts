import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Channel, ChannelModel } from 'amqplib';
import { connect } from 'amqplib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../src/commands/command.js';
import { consumersMetric, rabbitmqConsumersCommand, type RabbitmqConsumersAttributes } from '../../src/commands/rabbitmq-consumers.js';
import type { CommandOutcome } from '../../src/results/result.js';
import { silentLogger } from '../helpers/logger.js';
import { AMQP_URL, management, MANAGEMENT_PASSWORD, MANAGEMENT_URL, MANAGEMENT_USER, requireManagementApi, requireRabbitMq, uniqueName } from './helpers.js';

const command = rabbitmqConsumersCommand();
const logger = silentLogger();
/** The management API lists a new consumer after its next statistics round (5 s by default). */
const STATS_WAIT = { timeout: 20_000, interval: 250 };

function parse(raw: unknown): RabbitmqConsumersAttributes {
  const parsed = command.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

function issuesOf(raw: unknown): string[] {
  const parsed = command.parse(raw);
  if (parsed.ok) throw new Error('expected issues, got none');
  return parsed.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

function run(raw: Record<string, unknown>, signal: AbortSignal = AbortSignal.timeout(5_000)): Promise<CommandOutcome> {
  const ctx: CommandContext = { checkId: 'consumers', signal, deadline: Date.now() + 5_000, logger, previous: null };
  return command.run(parse({ managementUrl: MANAGEMENT_URL, username: MANAGEMENT_USER, password: MANAGEMENT_PASSWORD, ...raw }), ctx);
}

function metric(outcome: CommandOutcome, name: string): number | undefined {
  return outcome.metrics?.find((item) => item.name === name)?.value;
}

describe('rabbitmq-consumers: attributes', () => {
  it('fills in the defaults and builds the queue path with the vhost and queue URL-encoded', () => {
    const attrs = parse({ queues: [{ name: 'orders.v2', listeners: ['^billing-'] }] });
    expect(attrs.target).toMatchObject({ protocol: 'http:', hostname: '127.0.0.1', port: 15672, basePath: '' });
    expect(attrs.username).toBe('guest');
    expect(attrs.vhost).toBe('/');
    expect(attrs.authorization).toBe(`Basic ${Buffer.from('guest:guest').toString('base64')}`);
    expect(attrs.queues[0]?.path).toMatch(/^\/api\/queues\/%2F\/orders\.v2\?columns=/);
    expect(attrs.queues[0]?.metric).toBe('consumers_orders_v2');
    expect(attrs.queues[0]?.listeners[0]?.regex.test('billing-7')).toBe(true);
  });

  it('keeps a path prefix of the management URL and encodes an unusual vhost', () => {
    const attrs = parse({ managementUrl: 'https://mq.example:8443/rabbitmq/', vhost: 'team a/prod', queues: [{ name: 'jobs#1' }] });
    expect(attrs.target).toMatchObject({ protocol: 'https:', port: 8443, basePath: '/rabbitmq' });
    expect(attrs.queues[0]?.path.startsWith('/rabbitmq/api/queues/team%20a%2Fprod/jobs%231?')).toBe(true);
    expect(attrs.queues[0]?.listeners).toEqual([]);
  });

  it('accepts /pattern/flags and drops flags that would keep state between runs', () => {
    const regex = parse({ queues: [{ name: 'q', listeners: ['/^Worker-/ig'] }] }).queues[0]?.listeners[0]?.regex;
    expect(regex?.flags).toBe('i');
    expect(regex?.test('worker-1')).toBe(true);
  });

  it('reports unknown keys, bad regular expressions, a bad URL and no queues, with their paths', () => {
    expect(issuesOf({ queues: [{ name: 'q', listeners: ['('] }], extra: 1 })).toEqual([
      expect.stringMatching(/^queues\.0\.listeners\.0: expected a valid regular expression/),
      'extra: unknown key',
    ]);
    expect(issuesOf({ managementUrl: 'amqp://127.0.0.1', queues: [{ name: 'q' }] })).toEqual([expect.stringMatching(/^managementUrl: expected the management API base URL/)]);
    expect(issuesOf({ queues: [] })).toEqual(['queues: expected at least one queue, got an array']);
    expect(issuesOf({ queues: [{ name: 'q', listener: ['x'] }] })).toEqual(['queues.0.listener: unknown key']);
  });

  it('refuses two queues that would report under the same metric name', () => {
    expect(issuesOf({ queues: [{ name: 'a.b' }, { name: 'a_b' }] })).toEqual([`queues.1.name: expected a queue name that gives its own metric name ("a.b" gives ${consumersMetric('a.b')} too), got "a_b"`]);
    expect(issuesOf({ queues: [{ name: 'a' }, { name: 'a' }] })).toEqual(['queues.1.name: expected each queue once (this one is listed before), got "a"']);
  });
});

describe('rabbitmq-consumers: against the real RabbitMQ', () => {
  let connection: ChannelModel;
  let channel: Channel;
  const queues: string[] = [];
  const vhosts: string[] = [];
  const servers: Server[] = [];

  /** Settles once the broker and its management API answered; each test awaits it, so each fails without them. */
  let ready: Promise<void>;

  beforeAll(() => {
    ready = (async () => {
      await requireManagementApi();
      connection = await requireRabbitMq();
      channel = await connection.createChannel();
      channel.on('error', () => undefined);
    })();
    ready.catch(() => undefined);
  });

  beforeEach(async () => {
    await ready;
  });

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  });

  afterAll(async () => {
    if (connection !== undefined) {
      // A channel of its own: a failed test may have closed the shared one.
      const cleaner = await connection.createChannel();
      for (const queue of queues) await cleaner.deleteQueue(queue);
      await connection.close();
    }
    for (const vhost of vhosts) await management(`/api/vhosts/${encodeURIComponent(vhost)}`, { method: 'DELETE' });
  });

  async function declare(options: { singleActive?: boolean } = {}): Promise<string> {
    const name = uniqueName('vigil-test-consumers');
    await channel.assertQueue(name, { durable: false, ...(options.singleActive ? { arguments: { 'x-single-active-consumer': true } } : {}) });
    queues.push(name);
    return name;
  }

  it('is ok when every listener has an active consumer, and counts consumers; names the one that was cancelled', async () => {
    const orders = await declare();
    const audit = await declare();
    await channel.consume(orders, () => undefined, { consumerTag: `billing-1-${orders}` });
    await channel.consume(orders, () => undefined, { consumerTag: `shipping-1-${orders}` });
    const auditTag = `audit-1-${audit}`;
    await channel.consume(audit, () => undefined, { consumerTag: auditTag });
    const attrs = { queues: [{ name: orders, listeners: ['^billing-', '^shipping-'] }, { name: audit, listeners: ['^audit-'] }] };

    const ok = await vi.waitFor(async () => {
      const outcome = await run(attrs);
      expect(outcome.state).toBe('ok');
      return outcome;
    }, STATS_WAIT);
    expect(ok.reason).toBe('ok');
    expect(ok.message).toBe(`all listeners up: ${orders} (2 consumers), ${audit} (1 consumer)`);
    expect(metric(ok, consumersMetric(orders))).toBe(2);
    expect(metric(ok, consumersMetric(audit))).toBe(1);

    await channel.cancel(auditTag);
    const missing = await vi.waitFor(async () => {
      const outcome = await run(attrs);
      expect(outcome.state).toBe('crit');
      return outcome;
    }, STATS_WAIT);
    expect(missing.reason).toBe('listener-missing');
    expect(missing.message).toBe(`queue ${audit} misses listener ^audit- (no consumer); 1 of 2 queues ok`);
    expect(metric(missing, consumersMetric(audit))).toBe(0);
    expect(metric(missing, consumersMetric(orders))).toBe(2);
  });

  it('does not count a consumer that is waiting (a standby of a single-active-consumer queue) as up', async () => {
    const queue = await declare({ singleActive: true });
    await channel.consume(queue, () => undefined, { consumerTag: `primary-${queue}` });
    await channel.consume(queue, () => undefined, { consumerTag: `standby-${queue}` });
    const outcome = await vi.waitFor(async () => {
      const seen = await run({ queues: [{ name: queue, listeners: ['^primary-', '^standby-'] }] });
      expect(metric(seen, consumersMetric(queue))).toBe(2);
      return seen;
    }, STATS_WAIT);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'listener-missing', message: `queue ${queue} misses listener ^standby- (standby-${queue} is waiting)` });
  });

  it('reports a queue that does not exist as queue-missing', async () => {
    const present = await declare();
    const absent = uniqueName('vigil-test-absent');
    const outcome = await run({ queues: [{ name: absent, listeners: ['^x'] }, { name: present }] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'queue-missing', message: `queue ${absent} not found in vhost /; 1 of 2 queues ok` });
    expect(metric(outcome, consumersMetric(absent))).toBeUndefined();
    expect(metric(outcome, consumersMetric(present))).toBe(0);
  });

  it('finds queues in a vhost whose name needs encoding', async () => {
    const vhost = `${uniqueName('vigil-test')}/team a`;
    expect((await management(`/api/vhosts/${encodeURIComponent(vhost)}`, { method: 'PUT', body: {} })).status).toBe(201);
    vhosts.push(vhost);
    const permissions = await management(`/api/permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(MANAGEMENT_USER)}`, {
      method: 'PUT',
      body: { configure: '.*', write: '.*', read: '.*' },
    });
    expect([201, 204]).toContain(permissions.status);
    const url = new URL(AMQP_URL);
    url.pathname = `/${encodeURIComponent(vhost)}`;
    const inVhost = await connect(url.toString());
    try {
      const ch = await inVhost.createChannel();
      await ch.assertQueue('jobs', { durable: false });
      await ch.consume('jobs', () => undefined, { consumerTag: 'worker-1' });
      const outcome = await vi.waitFor(async () => {
        const seen = await run({ vhost, queues: [{ name: 'jobs', listeners: ['^worker-\\d+$'] }] });
        expect(seen.state).toBe('ok');
        return seen;
      }, STATS_WAIT);
      expect(outcome.message).toBe('all listeners up: jobs (1 consumer)');
      // The same queue name in the default vhost does not exist.
      expect(await run({ queues: [{ name: 'jobs' }] })).toMatchObject({ state: 'crit', reason: 'queue-missing', message: 'queue jobs not found in vhost /' });
    } finally {
      await inVhost.close();
    }
  });

  it('reports refused credentials as unauthorized (unknown), once for all queues', async () => {
    const queue = await declare();
    const outcome = await run({ password: 'not-the-password', queues: [{ name: queue }, { name: 'other' }] });
    expect(outcome).toMatchObject({
      state: 'unknown',
      reason: 'unauthorized',
      message: `the RabbitMQ management API at ${MANAGEMENT_URL} refused the credentials of user ${MANAGEMENT_USER} (HTTP 401)`,
    });
    expect(outcome.metrics).toEqual([]);
  });

  it('reports a management API that nothing listens on as unreachable', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const outcome = await run({ managementUrl: `http://127.0.0.1:${port}`, queues: [{ name: 'q', listeners: ['^a'] }] });
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('unreachable');
    expect(outcome.message).toMatch(new RegExp(`^cannot reach the RabbitMQ management API at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  });

  it('reports an API that does not answer within the check time as timeout, and an aborted run at once', async () => {
    const server = createServer(() => undefined);
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const outcome = await run({ managementUrl: `http://127.0.0.1:${port}`, queues: [{ name: 'q' }] }, AbortSignal.timeout(200));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `no answer from the RabbitMQ management API at http://127.0.0.1:${port} within the check's timeout` });
    const aborted = await run({ managementUrl: `http://127.0.0.1:${port}`, queues: [{ name: 'q' }] }, AbortSignal.abort());
    expect(aborted).toMatchObject({ state: 'crit', reason: 'timeout' });
  });

  it('reports an answer that is not the management API as bad-response', async () => {
    const server = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>'));
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const outcome = await run({ managementUrl: `http://127.0.0.1:${port}`, queues: [{ name: 'q' }] });
    expect(outcome).toMatchObject({ state: 'unknown', reason: 'bad-response', message: `expected the management API's JSON with consumer_details for queue q, got "<html>login</html>"` });
  });
});
