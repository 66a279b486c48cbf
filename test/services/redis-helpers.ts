import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/** The Redis the services suite uses: `REDIS_URL`, else the machine's own on 127.0.0.1:6379. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const START_HINT =
  'The services suite needs a Redis server: start one with ' +
  '`redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no` ' +
  '(or set REDIS_URL to one that runs).';

/**
 * A connection to the suite's Redis for the test itself (reading what handlers wrote, pausing or
 * killing clients). Rejects, naming Redis and how to start it, when none answers. Await it in
 * `beforeEach` rather than `beforeAll`: a failed `beforeAll` reports the file's tests as skipped, a
 * failed `beforeEach` fails each of them with this message.
 */
export async function connectRedis(): Promise<Redis> {
  const redis = new Redis(REDIS_URL, {
    lazyConnect: true,
    // A test wants an answer now, not a client that retries in the background.
    retryStrategy: () => null,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectionName: 'vigil-test-admin',
  });
  // The socket's error (ECONNREFUSED, …) says more than the rejection of `connect`.
  let socketError: Error | undefined;
  redis.on('error', (error: Error) => {
    socketError ??= error;
  });
  try {
    await redis.connect();
    const pong = await redis.ping();
    if (pong !== 'PONG') throw new Error(`expected PONG, got ${JSON.stringify(pong)}`);
  } catch (error) {
    redis.disconnect();
    const cause = socketError ?? error;
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`Redis is not reachable at ${REDIS_URL} (${why}). ${START_HINT}`, { cause: error });
  }
  return redis;
}

/** A key prefix of its own for one test run, so that runs never see each other's keys. */
export function uniquePrefix(): string {
  return `vigil-test:${process.pid}:${randomBytes(4).toString('hex')}:`;
}

/** Deletes every key that starts with `prefix` (SCAN, not KEYS: the server may hold others' keys). */
export async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  // Bounded: SCAN ends when the cursor returns to 0; the round cap guards against a server that misbehaves.
  for (let round = 0; round < 10_000; round++) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000);
    if (keys.length > 0) deleted += await redis.del(...keys);
    cursor = next;
    if (cursor === '0') return deleted;
  }
  throw new Error(`SCAN over ${prefix}* did not finish in 10 000 rounds`);
}

/** The id of the client connection whose name is `name` (CLIENT SETNAME), or `null` when none. */
export async function clientId(redis: Redis, name: string): Promise<string | null> {
  const list = (await redis.client('LIST')) as string;
  for (const line of list.split('\n')) {
    const fields = new Map(line.trim().split(' ').map((pair) => {
      const at = pair.indexOf('=');
      return [pair.slice(0, at), pair.slice(at + 1)] as const;
    }));
    if (fields.get('name') === name) return fields.get('id') ?? null;
  }
  return null;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
