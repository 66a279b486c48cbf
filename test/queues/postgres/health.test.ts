import { describe, expect, it } from 'vitest';
import { DatabaseHealth, MAX_BACKOFF_MS } from '../../../src/queues/postgres/health.js';
import { silentLogger } from '../../helpers/logger.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const away = (): Error => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });

describe('DatabaseHealth', () => {
  it('backs off on its clock, doubling from 250 ms up to MAX_BACKOFF_MS, and ends the backoff on the first success', () => {
    const clock = new ManualClock();
    const told: string[] = [];
    let recoveries = 0;
    const health = new DatabaseHealth({ clock, logger: silentLogger(), onError: (_error, { operation }) => told.push(operation), onRecovered: () => recoveries++ });
    expect(health.waiting(clock.now())).toBe(false);

    expect(health.failed(away(), 'claim')).toBe(true);
    expect(health.healthy).toBe(false);
    expect(health.retryAt).toBe(clock.now() + 250);
    expect(health.waiting(clock.now() + 249)).toBe(true);
    expect(health.waiting(clock.now() + 250)).toBe(false);
    const backoffs = [health.backoffMs];
    for (let i = 0; i < 7; i++) {
      health.failed(away(), 'complete');
      backoffs.push(health.backoffMs);
    }
    expect(backoffs).toEqual([250, 500, 1_000, 2_000, 4_000, 8_000, MAX_BACKOFF_MS, MAX_BACKOFF_MS]);
    // One outage, told once.
    expect(told).toEqual(['claim']);

    health.recovered();
    health.recovered();
    expect(recoveries).toBe(1);
    expect(health.healthy).toBe(true);
    expect(health.backoffMs).toBe(0);
    expect(health.waiting(clock.now())).toBe(false);
  });

  it('leaves failures that are not the database being away to the caller', () => {
    const health = new DatabaseHealth({ clock: new ManualClock(), logger: silentLogger() });
    expect(health.failed(Object.assign(new Error('syntax error at or near "SELEC"'), { code: '42601' }), 'claim')).toBe(false);
    expect(health.healthy).toBe(true);
    expect(health.backoffMs).toBe(0);
  });
});
