import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CheckRegistry } from '../checks/check-registry.js';
import type { Server } from '../server/server.js';

export interface ServerMetricsOptions {
  readonly registry: Registry;
  readonly server: Server;
  /** Where open incidents are counted from. */
  readonly checks: CheckRegistry;
}

/**
 * The scheduler's metrics about itself, on the registry `/metrics` serves:
 *
 * - `vigil_schedule_lag_seconds{pool}`: histogram of actual start − due time
 * - `vigil_checks{status}`: known checks, and those `running` or `waiting` for a pool slot
 * - `vigil_incidents_open`: checks with an open incident
 * - `vigil_handler_errors_total{handler}`: handler hooks that threw or timed out
 * - `vigil_pool_slots{pool}`, `vigil_pool_running{pool}`, `vigil_pool_waiting{pool}`,
 *   `vigil_pool_borrowed{pool}`: per pool, borrowed = its checks running in a shared pool's slots
 *
 * Gauges are read when scraped, so a scrape costs the loop nothing in between. Event-loop lag comes
 * with prom-client's default metrics (`nodejs_eventloop_lag_seconds`).
 */
export function registerServerMetrics({ registry, server, checks }: ServerMetricsOptions): void {
  const lag = new Histogram({
    name: 'vigil_schedule_lag_seconds',
    help: 'How late checks started after their due time, in seconds, by pool.',
    labelNames: ['pool'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60],
    registers: [registry],
  });
  server.on('check:start', ({ lagMs, pool }) => lag.observe({ pool }, lagMs / 1000));

  new Gauge({
    name: 'vigil_checks',
    help: 'Checks the instance knows (status="known"), and those running or waiting for a pool slot.',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      const stats = server.stats;
      this.set({ status: 'known' }, checks.list().length);
      this.set({ status: 'running' }, stats.running);
      this.set({ status: 'waiting' }, stats.waiting);
    },
  });

  new Gauge({
    name: 'vigil_incidents_open',
    help: 'Checks with an open incident.',
    registers: [registry],
    collect() {
      let open = 0;
      for (const check of checks.list()) if (check.state.incident !== null) open++;
      this.set(open);
    },
  });

  const handlerErrors = new Counter({
    name: 'vigil_handler_errors_total',
    help: 'Handler hooks that threw or timed out.',
    labelNames: ['handler'],
    registers: [registry],
  });
  server.on('error', ({ source }) => {
    const [kind, handler] = source.split(':');
    if (kind === 'handler' && handler !== undefined) handlerErrors.inc({ handler });
  });

  const pools = [
    ['vigil_pool_slots', 'Slots of the pool.', 'slots'],
    ['vigil_pool_running', 'Checks running in the pool\'s slots, its own and borrowed ones.', 'running'],
    ['vigil_pool_waiting', 'Checks of the pool waiting for a slot.', 'waiting'],
    ['vigil_pool_borrowed', 'Checks of the pool running in a shared pool\'s slots.', 'borrowed'],
  ] as const;
  for (const [name, help, field] of pools) {
    new Gauge({
      name,
      help,
      labelNames: ['pool'],
      registers: [registry],
      collect() {
        for (const stats of server.poolStats()) this.set({ pool: stats.name }, stats[field]);
      },
    });
  }
}
