import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TrackedMemoryQueue } from '../../src/queues/tracked-memory-queue.js';
import { registerServerMetrics } from '../../src/daemon/server-metrics.js';
import { Server } from '../../src/server/server.js';
import { checkSpec, scriptedCommand } from '../helpers/checks.js';
import { silentLogger } from '../helpers/logger.js';

const T0 = Date.UTC(2026, 0, 1);

describe('server metrics', () => {
  beforeEach(() => vi.useFakeTimers({ now: T0 }));
  afterEach(() => vi.useRealTimers());

  it('counts known checks, open incidents, handler errors and lag', async () => {
    const pool = new TrackedMemoryQueue();
    const command = scriptedCommand('seq', { down: ['crit'], up: ['ok'] });
    pool.add(checkSpec({ id: 'down', command: 'seq', handlers: ['broken'] }), { dueAt: T0 });
    pool.add(checkSpec({ id: 'up', command: 'seq', handlers: ['broken'] }), { dueAt: T0 + 500 });
    const server = new Server({
      queue: pool,
      commands: [command],
      handlers: [{ name: 'broken', process: () => Promise.reject(new Error('down')) }],
      logger: silentLogger(),
    });
    const registry = new Registry();
    registerServerMetrics({ registry, server, checks: pool });
    server.start();
    await vi.advanceTimersByTimeAsync(1_000);
    const text = await registry.metrics();
    await server.stop();

    expect(text).toContain('vigil_checks{status="known"} 2');
    expect(text).toContain('vigil_checks{status="running"} 0');
    expect(text).toContain('vigil_incidents_open 1');
    expect(text).toContain('vigil_handler_errors_total{handler="broken"} 2');
    expect(text).toContain('vigil_schedule_lag_seconds_count{pool="default"} 2');
    expect(text).toContain('vigil_pool_slots{pool="exec"} 26');
  });
});
