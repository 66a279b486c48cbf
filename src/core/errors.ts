/** Errors and their messages, the same way everywhere. */

/** The message of a thrown value (an `Error`'s message, anything else as a string), for logs and issues that quote it. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The `code` of a Node system error (`ECONNREFUSED`, `ENOTFOUND`, …), or `undefined`. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Codes by which Node's resolver says a name could not be resolved: a probe reports them as `dns`, not as a refused connection. */
export const DNS_ERROR_CODES: ReadonlySet<string> = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);
