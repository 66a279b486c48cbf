/** Checks on plain values as YAML and JSON produce them. */

/** Whether `value` is a plain mapping (an object that is not an array), as YAML and JSON produce them. */
export function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** What kind of value this is, for a message about a file or row of the wrong shape: `null`, `an array`, or its `typeof`. */
export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
