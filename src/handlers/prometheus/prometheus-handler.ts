import type { Registry } from 'prom-client';
import { z } from 'zod';
import { defineHandler, type Handler } from '../handler.js';
import { checkSeriesOn } from './prometheus-series.js';

/**
 * Exposes each check's last run on the server's registry (`/metrics`), labelled `check` by check id:
 *
 * - `vigil_check_up{check}`: 1 while the last run was ok or warn, else 0
 * - `vigil_check_state{check}`: Nagios code of the last run's state (0 ok, 1 warn, 2 crit, 3 unknown)
 * - `vigil_check_duration_seconds{command}`: histogram of run durations, by command
 * - `vigil_check_last_duration_seconds{check}`: duration of the last run
 * - `vigil_check_last_run_timestamp_seconds{check}`: when the last run started, Unix seconds
 * - `vigil_check_attempts{check}`: consecutive non-OK results while a problem is being confirmed
 * - `vigil_check_runs_total{check,command,state}`: runs by state
 * - `vigil_check_metric{check,metric}`: every gauge Metric of the last run (`connect_time`, `rtt_avg`, …)
 * - `vigil_check_metric_total{check,metric}`: every counter Metric (cumulative values; a value below the
 *   previous one is a reset of the series)
 *
 * A run only updates numbers kept for its check; the samples are built when `/metrics` is scraped. Every
 * `prometheus` handler on one registry shares the same series, and a removed check loses all of its own.
 */
export const prometheusHandlerType = defineHandler({
  type: 'prometheus',
  options: z.strictObject({}),
  create(name, _options, { registry }): Handler {
    return prometheusHandler(name, registry);
  },
});

function prometheusHandler(name: string, registry: Registry): Handler {
  const series = checkSeriesOn(registry);
  return {
    name,
    process({ check, result, state, incident }) {
      // An acknowledgement carries the last run's Result again; it is not a run.
      if (incident?.type === 'acknowledge') return;
      series.recordRun(check.id, check.command, result, state.attempt);
    },
    checkRemoved(checkId) {
      series.remove(checkId);
    },
  };
}
