/**
 * The body of `GET /healthz`: what a vigil says of itself, read by supervisors, `vigil status` and the
 * `peer` command of another vigil.
 */

/** What `GET /healthz` answers: HTTP 200 while `status` is `ok`, 503 while `stopping`. */
export interface Health {
  readonly status: 'ok' | 'stopping';
  /** This vigil instance's id. */
  readonly instanceId: string;
  /** Incremented on each start of the instance. */
  readonly epoch: number;
  /** vigil's version. */
  readonly version: string;
  /** Seconds since the instance started. */
  readonly uptimeSeconds: number;
  /** Number of checks the instance knows. */
  readonly checks: number;
  /**
   * How the `ping` command sends its packets: `fping` (batched fping processes) or `process` (one
   * iputils `ping` per run). Absent from the answers of vigil versions before it.
   */
  readonly pingEngine?: string;
  /** With a PostgreSQL queue: the instances sharing the database (this one included). */
  readonly peers?: readonly { readonly id: string; readonly epoch: number; readonly alive: boolean }[];
}
