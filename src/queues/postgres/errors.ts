/**
 * What the PostgreSQL queue refuses or gives up, and which database failures are worth trying again.
 */
import { CompletionRefusedError } from '../queue.js';

/**
 * A completion refused because the check's lease is no longer this instance's (it expired and another
 * instance claimed the check, or the row changed hands otherwise). The server must not run the outcome's
 * `process` hooks: the other instance's run is the one that counts.
 */
export class LeaseLostError extends CompletionRefusedError {
  override readonly name = 'LeaseLostError';
  constructor(checkId: string, detail: string) {
    super(checkId, `lease of check "${checkId}" was lost before its run completed: ${detail}; the result is discarded`);
  }
}

/** A completion given up: the buffer of completions waiting for the database was full, or the queue closed. */
export class CompletionDroppedError extends CompletionRefusedError {
  override readonly name = 'CompletionDroppedError';
  constructor(checkId: string, reason: string) {
    super(checkId, `completion of check "${checkId}" was dropped: ${reason}`);
  }
}

/**
 * Errors that mean the database is away or busy for now (connection lost, server shutting down,
 * too many connections, a deadlock or serialization failure): worth trying again. Errors with another
 * SQLSTATE (a bad statement, a constraint) are not.
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    return code.startsWith('08') || code.startsWith('53') || code.startsWith('57P') || code === '40001' || code === '40P01';
  }
  // Node's socket errors (ECONNREFUSED, ECONNRESET, …) and pg's own ("Connection terminated unexpectedly",
  // "timeout exceeded when trying to connect", "Client has encountered a connection error and is not queryable").
  if (typeof code === 'string' && code.startsWith('E')) return true;
  return /connection|terminated|timeout exceeded|not queryable/i.test(error.message);
}

/** The `onError` option: told about every failure the queue handles itself, besides the log. */
export type QueueErrorListener = (error: unknown, context: { readonly operation: string; readonly checkId?: string }) => void;

/** How a part of the queue reports a failure it handled: logged as an error and passed to `onError`. */
export type ReportError = (error: unknown, operation: string, checkId?: string) => void;
