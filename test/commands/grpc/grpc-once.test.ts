import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'vitest';
import { type CliResult } from '../../helpers/cli.js';
import { TestHealthServer } from './health-server.js';
import { expectLine, NUM, runOnce } from '../../helpers/once.js';

/**
 * `vigil once ID` for a grpc check, through the built CLI as an operator or Nagios runs it, against a
 * health server the test starts on 127.0.0.1: the printed line and the Nagios exit code.
 */

let dir: string;
let health: TestHealthServer;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-once-grpc-'));
  health = await TestHealthServer.start({ services: { '': 1, 'app.Orders': 2 } });
});
afterEach(async () => {
  health.close();
  await rm(dir, { recursive: true, force: true });
});

function once(id: string, attributes: Record<string, unknown>): Promise<CliResult> {
  return runOnce(dir, { id, command: 'grpc', attributes });
}


describe('vigil once: grpc', () => {
  it('prints OK serving with the response time and exits 0 for a SERVING server', async () => {
    const result = await once('api', { host: '127.0.0.1', port: health.port });
    expectLine(result, `api OK serving: 127\\.0\\.0\\.1:${health.port} is SERVING, answered in ${NUM} ms \\| response_time=${NUM}ms`, 0);
  });

  it('prints CRIT not-serving and exits 2 for a NOT_SERVING service', async () => {
    const result = await once('orders', { host: '127.0.0.1', port: health.port, service: 'app.Orders' });
    expectLine(result, `orders CRIT not-serving: service app\\.Orders at 127\\.0\\.0\\.1:${health.port} is NOT_SERVING, answered in ${NUM} ms \\| response_time=${NUM}ms`, 2);
  });
});
