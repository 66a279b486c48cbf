import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Metric } from '../results/metric.js';
import { z } from 'zod';
import { stateCode, States, type State } from '../results/result.js';
import { defineHandler, type Handler } from './handler.js';

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
 */
export const prometheusHandlerType = defineHandler({
  type: 'prometheus',
  options: z.strictObject({}),
  create(name, _options, { registry }): Handler {
    return prometheusHandler(name, registry);
  },
});

/** The series of one check, kept so that a run allocates no label objects and removal knows the command. */
interface CheckSeries {
  readonly command: string;
  readonly up: Gauge.Internal<string>;
  readonly state: Gauge.Internal<string>;
  readonly duration: Histogram.Internal<string>;
  readonly lastDuration: Gauge.Internal<string>;
  readonly lastRun: Gauge.Internal<string>;
  readonly attempts: Gauge.Internal<string>;
  readonly runs: Readonly<Record<State, Counter.Internal>>;
  /** Result Metrics seen for the check, by name: their series, and a counter's last cumulative value. */
  readonly values: Map<string, { readonly kind: Metric['kind']; series: Gauge.Internal<string> | Counter.Internal; last: number }>;
}

function prometheusHandler(name: string, registry: Registry): Handler {
  const up = gauge(registry, 'vigil_check_up', 'Whether the last run of the check was ok or warn (1) or not (0).', ['check']);
  const state = gauge(registry, 'vigil_check_state', 'State of the last run of the check: 0 ok, 1 warn, 2 crit, 3 unknown.', ['check']);
  const duration = histogram(registry, 'vigil_check_duration_seconds', 'Durations of check runs, in seconds, by command.', ['command']);
  const lastDuration = gauge(registry, 'vigil_check_last_duration_seconds', 'Duration of the last run of the check, in seconds.', ['check']);
  const lastRun = gauge(registry, 'vigil_check_last_run_timestamp_seconds', 'When the last run of the check started, in Unix seconds.', ['check']);
  const attempts = gauge(registry, 'vigil_check_attempts', 'Consecutive non-OK results while a problem of the check is being confirmed.', ['check']);
  const runs = counter(registry, 'vigil_check_runs_total', 'Runs of the check, by state.', ['check', 'command', 'state']);
  const metricGauge = gauge(registry, 'vigil_check_metric', 'A value the last run of the check measured, by metric name.', ['check', 'metric']);
  const metricCounter = counter(registry, 'vigil_check_metric_total', 'A cumulative count the check reports, by metric name.', ['check', 'metric']);

  const series = new Map<string, CheckSeries>();

  function seriesOf(checkId: string, command: string): CheckSeries {
    const known = series.get(checkId);
    if (known?.command === command) return known;
    // A check whose command changed would otherwise keep its old command's series forever.
    if (known !== undefined) removeCommandSeries(checkId, known.command);
    const created: CheckSeries = {
      command,
      up: up.labels(checkId),
      state: state.labels(checkId),
      duration: duration.labels(command),
      lastDuration: lastDuration.labels(checkId),
      lastRun: lastRun.labels(checkId),
      attempts: attempts.labels(checkId),
      runs: {
        ok: runs.labels(checkId, command, 'ok'),
        warn: runs.labels(checkId, command, 'warn'),
        crit: runs.labels(checkId, command, 'crit'),
        unknown: runs.labels(checkId, command, 'unknown'),
      },
      values: new Map(),
    };
    // Every state starts at 0, so that `increase()` sees a check's first crit run.
    for (const stateName of States) created.runs[stateName].inc(0);
    series.set(checkId, created);
    return created;
  }

  function removeCommandSeries(checkId: string, command: string): void {
    for (const stateName of States) runs.remove(checkId, command, stateName);
  }

  function record(checkSeries: CheckSeries, checkId: string, metric: Metric): void {
    let known = checkSeries.values.get(metric.name);
    if (known?.kind !== metric.kind) {
      if (known) removeValue(checkId, metric.name, known.kind);
      const series = metric.kind === 'counter' ? metricCounter.labels(checkId, metric.name) : metricGauge.labels(checkId, metric.name);
      known = { kind: metric.kind, series, last: 0 };
      checkSeries.values.set(metric.name, known);
    }
    if (metric.kind === 'gauge') {
      (known.series as Gauge.Internal<string>).set(metric.value);
      return;
    }
    if (metric.value < known.last) {
      // The source restarted its count: start the series over, which Prometheus reads as a reset.
      metricCounter.remove(checkId, metric.name);
      known.series = metricCounter.labels(checkId, metric.name);
      known.last = 0;
    }
    known.series.inc(metric.value - known.last);
    known.last = metric.value;
  }

  function removeValue(checkId: string, name: string, kind: Metric['kind']): void {
    if (kind === 'counter') metricCounter.remove(checkId, name);
    else metricGauge.remove(checkId, name);
  }

  return {
    name,
    process({ check, result, state: checkState, incident }) {
      // An acknowledgement carries the last run's Result again; it is not a run.
      if (incident?.type === 'acknowledge') return;
      const checkSeries = seriesOf(check.id, check.command);
      checkSeries.up.set(result.state === 'ok' || result.state === 'warn' ? 1 : 0);
      checkSeries.state.set(stateCode(result.state));
      checkSeries.duration.observe(result.durationMs / 1000);
      checkSeries.lastDuration.set(result.durationMs / 1000);
      checkSeries.lastRun.set(result.startedAt / 1000);
      checkSeries.attempts.set(checkState.attempt);
      checkSeries.runs[result.state].inc();
      for (const metric of result.metrics) if (Number.isFinite(metric.value)) record(checkSeries, check.id, metric);
    },
    checkRemoved(checkId) {
      const known = series.get(checkId);
      up.remove(checkId);
      state.remove(checkId);
      lastRun.remove(checkId);
      attempts.remove(checkId);
      lastDuration.remove(checkId);
      if (known !== undefined) {
        removeCommandSeries(checkId, known.command);
        for (const [name, value] of known.values) removeValue(checkId, name, value.kind);
      }
      series.delete(checkId);
    },
  };
}

/** The registry's metric of that name when another handler registered it already, else a new one. */
function gauge(registry: Registry, name: string, help: string, labelNames: readonly string[]): Gauge {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return new Gauge({ name, help, labelNames, registers: [registry] });
  if (existing instanceof Gauge && hasLabels(existing, labelNames)) return existing;
  throw new Error(`Expected metric \`${name}\` on the registry to be a gauge labelled ${labelNames.join(', ')}, got ${describeMetric(existing)}`);
}

function histogram(registry: Registry, name: string, help: string, labelNames: readonly string[]): Histogram {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) {
    return new Histogram({ name, help, labelNames, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] });
  }
  if (existing instanceof Histogram && hasLabels(existing, labelNames)) return existing;
  throw new Error(`Expected metric \`${name}\` on the registry to be a histogram labelled ${labelNames.join(', ')}, got ${describeMetric(existing)}`);
}

function counter(registry: Registry, name: string, help: string, labelNames: readonly string[]): Counter {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return new Counter({ name, help, labelNames, registers: [registry] });
  if (existing instanceof Counter && hasLabels(existing, labelNames)) return existing;
  throw new Error(`Expected metric \`${name}\` on the registry to be a counter labelled ${labelNames.join(', ')}, got ${describeMetric(existing)}`);
}

// prom-client keeps the label names on the instance but leaves them out of its typings.
function labelNamesOf(metric: object): readonly string[] {
  return (metric as { labelNames?: readonly string[] }).labelNames ?? [];
}

function hasLabels(metric: object, labelNames: readonly string[]): boolean {
  const actual = labelNamesOf(metric);
  return actual.length === labelNames.length && labelNames.every((label) => actual.includes(label));
}

function describeMetric(metric: object): string {
  const type = (metric as { type?: string }).type ?? 'metric';
  const labels = labelNamesOf(metric);
  return `a ${type} labelled ${labels.length === 0 ? '(none)' : labels.join(', ')}`;
}
