import { z } from 'zod';
import type { IncidentEventType } from '../results/incident.js';
import type { Metric } from '../results/metric.js';
import { defineHandler, type Handler, type Outcome } from './handler.js';

const LogLevels = ['trace', 'debug', 'info', 'warn', 'error'] as const;
type LogLevel = (typeof LogLevels)[number];

const options = z.strictObject({
  /** Level of the lines for OK runs; default `info`. Non-OK runs log at `warn` (or this level when it is `error`). */
  level: z.enum(LogLevels).default('info'),
  /** Log only runs whose state or state type changed, and incident events; default `false`. */
  onlyChanges: z.boolean().default(false),
});

export type LogHandlerOptions = z.output<typeof options>;

const INCIDENT_LEVEL: Record<IncidentEventType, LogLevel> = {
  open: 'warn',
  update: 'warn',
  resolve: 'info',
  acknowledge: 'info',
};

/** Writes one line per outcome through the run's child logger (`checkId` is already bound there). */
export const logHandlerType = defineHandler({ type: 'log', options, create });

function create(name: string, { level, onlyChanges }: LogHandlerOptions): Handler {
  // A problem is never logged less loudly than a success.
  const problemLevel: LogLevel = LogLevels.indexOf(level) > LogLevels.indexOf('warn') ? level : 'warn';
  return {
    name,
    process(outcome) {
      const { result, state, incident, logger } = outcome;
      const lineLevel = incident !== null ? INCIDENT_LEVEL[incident.type] : result.state === 'ok' ? level : problemLevel;
      // Up to 10k runs a second go through here: decide before building anything.
      if (!logger.isLevelEnabled(lineLevel)) return;
      if (onlyChanges && incident === null && !changed(outcome)) return;
      const fields =
        incident === null
          ? {
              state: result.state,
              reason: result.reason,
              durationMs: result.durationMs,
              stateType: state.stateType,
              attempt: state.attempt,
              metrics: compactMetrics(result.metrics),
            }
          : {
              state: result.state,
              reason: result.reason,
              durationMs: result.durationMs,
              stateType: state.stateType,
              attempt: state.attempt,
              metrics: compactMetrics(result.metrics),
              incident: incident.incident.id,
              incidentEvent: incident.type,
            };
      logger[lineLevel](fields, result.message);
    },
  };
}

/** Whether the run's state or state type differs from the check's before it. */
function changed({ result, state, previous }: Outcome): boolean {
  // Before the first run the check counts as HARD OK, so a first OK run is no change.
  const previousState = previous.lastResult?.state ?? previous.hardState;
  return previousState !== result.state || previous.stateType !== state.stateType;
}

function compactMetrics(metrics: readonly Metric[]): Record<string, number> {
  const compact: Record<string, number> = {};
  for (const metric of metrics) compact[metric.name] = metric.value;
  return compact;
}
