/*
 * The pieces of the Prometheus text exposition, written exactly as prom-client 15's Registry writes them
 * (lib/registry.js), so that a family written here and one the registry writes read the same byte for
 * byte: `/metrics` mixes both, and tests compare the whole with `registry.metrics()`.
 */

/** A metric or help text: backslashes and line feeds escaped (prom-client escapes no more there). */
export function escapeText(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value: as `escapeText`, and double quotes escaped. */
export function escapeLabelValue(value: string): string {
  return escapeText(value).replace(/"/g, '\\"');
}

/** `[\\\n"]`: a value holding none of these is its own escaped text. */
const NEEDS_ESCAPE = /[\\\n"]/;

/**
 * The escaped text of a label value, the very same string when there is nothing to escape (nearly always),
 * so that a cached escaped form costs no memory.
 */
export function labelValueText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? escapeLabelValue(value) : value;
}

/** A sample's value: `Nan`, `+Inf`, `-Inf` (prom-client's spelling), else JavaScript's shortest form. */
export function sampleValueText(value: number): string {
  if (Number.isFinite(value)) return `${value}`;
  if (Number.isNaN(value)) return 'Nan';
  return value < 0 ? '-Inf' : '+Inf';
}

/**
 * `,name="value"` for each label that is not one of `exclude`, in the object's order: the registry's
 * default labels as they follow a sample's own labels (prom-client drops a default label a sample has
 * itself, own or shared). A value that is no string is written as JavaScript would (prom-client's way).
 */
export function defaultLabelsText(labels: Readonly<Record<string, unknown>>, exclude: readonly string[]): string {
  let text = '';
  for (const [name, value] of Object.entries(labels)) {
    if (exclude.includes(name)) continue;
    text += `,${name}="${typeof value === 'string' ? escapeLabelValue(value) : String(value)}"`;
  }
  return text;
}

/** `# HELP` and `# TYPE` of a family, each line ended: `name` as exposed (escaped, renamed for OpenMetrics). */
export function familyHeader(name: string, help: string, type: string): string {
  return `# HELP ${name} ${escapeText(help)}\n# TYPE ${name} ${type}\n`;
}
