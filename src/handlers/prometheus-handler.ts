import { Counter, Gauge, type Registry } from 'prom-client';
import { z } from 'zod';
import { stateCode, States, type State } from '../results/result.js';
import { defineHandler, type Handler } from './handler.js';

/**
 * Exposes each check's last run on the server's registry (`/metrics`), labelled `check` by check id:
 *
 * - `vigil_check_up{check}`: 1 while the last run was ok or warn, else 0
 * - `vigil_check_state{check}`: Nagios code of the last run's state (0 ok, 1 warn, 2 crit, 3 unknown)
 * - `vigil_check_duration_seconds{check,command}`: duration of the last run
 * - `vigil_check_last_run_timestamp_seconds{check}`: when the last run started, Unix seconds
 * - `vigil_check_attempts{check}`: consecutive non-OK results while a problem is being confirmed
 * - `vigil_check_runs_total{check,command,state}`: runs by state
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
  readonly duration: Gauge.Internal<string>;
  readonly lastRun: Gauge.Internal<string>;
  readonly attempts: Gauge.Internal<string>;
  readonly runs: Readonly<Record<State, Counter.Internal>>;
}

function prometheusHandler(name: string, registry: Registry): Handler {
  const up = gauge(registry, 'vigil_check_up', 'Whether the last run of the check was ok or warn (1) or not (0).', ['check']);
  const state = gauge(registry, 'vigil_check_state', 'State of the last run of the check: 0 ok, 1 warn, 2 crit, 3 unknown.', ['check']);
  const duration = gauge(registry, 'vigil_check_duration_seconds', 'Duration of the last run of the check, in seconds.', ['check', 'command']);
  const lastRun = gauge(registry, 'vigil_check_last_run_timestamp_seconds', 'When the last run of the check started, in Unix seconds.', ['check']);
  const attempts = gauge(registry, 'vigil_check_attempts', 'Consecutive non-OK results while a problem of the check is being confirmed.', ['check']);
  const runs = counter(registry, 'vigil_check_runs_total', 'Runs of the check, by state.', ['check', 'command', 'state']);

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
      duration: duration.labels(checkId, command),
      lastRun: lastRun.labels(checkId),
      attempts: attempts.labels(checkId),
      runs: {
        ok: runs.labels(checkId, command, 'ok'),
        warn: runs.labels(checkId, command, 'warn'),
        crit: runs.labels(checkId, command, 'crit'),
        unknown: runs.labels(checkId, command, 'unknown'),
      },
    };
    // Every state starts at 0, so that `increase()` sees a check's first crit run.
    for (const stateName of States) created.runs[stateName].inc(0);
    series.set(checkId, created);
    return created;
  }

  function removeCommandSeries(checkId: string, command: string): void {
    duration.remove(checkId, command);
    for (const stateName of States) runs.remove(checkId, command, stateName);
  }

  return {
    name,
    process({ check, result, state: checkState, incident }) {
      // An acknowledgement carries the last run's Result again; it is not a run.
      if (incident?.type === 'acknowledge') return;
      const checkSeries = seriesOf(check.id, check.command);
      checkSeries.up.set(result.state === 'ok' || result.state === 'warn' ? 1 : 0);
      checkSeries.state.set(stateCode(result.state));
      checkSeries.duration.set(result.durationMs / 1000);
      checkSeries.lastRun.set(result.startedAt / 1000);
      checkSeries.attempts.set(checkState.attempt);
      checkSeries.runs[result.state].inc();
    },
    checkRemoved(checkId) {
      const known = series.get(checkId);
      up.remove(checkId);
      state.remove(checkId);
      lastRun.remove(checkId);
      attempts.remove(checkId);
      if (known !== undefined) removeCommandSeries(checkId, known.command);
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
