/** Whether `value` is a plain mapping (an object that is not an array), as YAML and JSON produce them. */
export function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The message of a thrown value, for issues that quote it. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
