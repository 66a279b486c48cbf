import type pg from 'pg';
import type { Logger } from 'pino';

/**
 * Runs `work` in a transaction on one connection of `pool`: COMMIT when it resolves, ROLLBACK when it
 * rejects (a connection whose ROLLBACK failed is destroyed, not returned to the pool). The
 * connection's own errors meanwhile are logged, not left to crash the process.
 */
export async function inTransaction<T>(pool: pg.Pool, logger: Logger, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const onError = (error: Error): void => logger.debug({ err: error }, 'a PostgreSQL connection failed during a transaction');
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: unknown) => {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    });
    throw error;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
