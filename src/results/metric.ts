/** Whether a metric is a point-in-time value or a monotonically growing count. */
export const MetricKinds = ['gauge', 'counter'] as const;
export type MetricKind = (typeof MetricKinds)[number];

/** One measured value of a check run. */
export interface Metric {
  /** Stable name, snake_case (`connect_time`, `packet_loss`). */
  readonly name: string;
  readonly value: number;
  /** Unit of `value`: `ms`, `s`, `%`, `B`, `c` (count), … Empty when unitless. */
  readonly unit: string;
  /** Default `gauge`. */
  readonly kind: MetricKind;
  /** The value at or above which the command reported `warn`, when it has such a threshold. */
  readonly warn?: number;
  /** The value at or above which the command reported `crit`, when it has such a threshold. */
  readonly crit?: number;
}

/**
 * Builds a gauge metric, leaving out the thresholds that are not set. Written out case by case: a run
 * makes several and keeps them for an interval, and spreads would copy each one twice more.
 */
export function gauge(name: string, value: number, unit = '', thresholds?: { warn?: number | undefined; crit?: number | undefined }): Metric {
  const warn = thresholds?.warn;
  const crit = thresholds?.crit;
  if (warn === undefined) return crit === undefined ? { name, value, unit, kind: 'gauge' } : { name, value, unit, kind: 'gauge', crit };
  return crit === undefined ? { name, value, unit, kind: 'gauge', warn } : { name, value, unit, kind: 'gauge', warn, crit };
}

/** Builds a counter metric. */
export function counter(name: string, value: number, unit = 'c'): Metric {
  return { name, value, unit, kind: 'counter' };
}

