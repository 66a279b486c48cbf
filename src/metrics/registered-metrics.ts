import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * A handler's metric, shared by every handler of that type on the registry: the one registered under
 * that name already, else a new one. Throws, naming the metric, when the name holds another kind.
 */
export function registeredCounter(registry: Registry, name: string, help: string, labelNames: readonly string[]): Counter {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return new Counter({ name, help, labelNames, registers: [registry] });
  if (existing instanceof Counter) return existing;
  throw new Error(`Expected metric \`${name}\` on the registry to be a counter, got another kind of metric`);
}

/** Like registeredCounter, for a gauge. */
export function registeredGauge(registry: Registry, name: string, help: string, labelNames: readonly string[]): Gauge {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return new Gauge({ name, help, labelNames, registers: [registry] });
  if (existing instanceof Gauge) return existing;
  throw new Error(`Expected metric \`${name}\` on the registry to be a gauge, got another kind of metric`);
}
