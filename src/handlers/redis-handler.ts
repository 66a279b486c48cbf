import { Redis, type ChainableCommander } from 'ioredis';
import { z } from 'zod';
import { systemClock, type Clock } from '../core/clock.js';
import { duration, nonEmptyString } from '../validation/schema-types.js';
import { defineHandler, type Handler, type HandlerDeps, type Outcome } from './handler.js';
import { registeredCounter as counter } from '../metrics/registered-metrics.js';

/** Check states one pipeline writes at most; the rest go out in the next one, right after. */
export const MAX_BATCH = 5_000;
/** Delay before a failed write is tried again while the connection still looks up, milliseconds. */
export const RETRY_DELAY_MS = 1_000;
/** Time `close()` gives the last flush and the goodbye to Redis by default, milliseconds. */
export const CLOSE_TIMEOUT_MS = 5_000;
/** A connection that has commands waiting and hears nothing for this long is dropped and made again, milliseconds. */
export const SOCKET_TIMEOUT_MS = 30_000;

const URL_ERROR = 'expected a redis:// or rediss:// URL';

const options = z.strictObject({
  /** Redis to write to: `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS. Default `redis://127.0.0.1:6379`. */
  url: z.string({ error: URL_ERROR }).refine(isRedisUrl, { error: URL_ERROR }).default('redis://127.0.0.1:6379'),
  /** Prefix of the per-check hash keys (`<keyPrefix><check id>`); default `vigil:check:`. */
  keyPrefix: nonEmptyString('a key prefix (a non-empty string)').default('vigil:check:'),
  /** How long a check's hash (and the index) outlives its last write; at least 1 s. Default 10 m. */
  ttl: duration(1000).prefault('10m'),
  /** Sorted set of check ids scored by their last result time (epoch ms); default `vigil:checks`. */
  indexKey: nonEmptyString('a key name (a non-empty string)').default('vigil:checks'),
});

export type RedisHandlerOptions = z.output<typeof options>;

/**
 * `redis`: keeps each check's current state in Redis, for dashboards and proxies that read health
 * without asking vigil.
 *
 * One hash per check, `<keyPrefix><check id>`, with the fields `state` (the last result's), `stateType`
 * (`soft` while a change is being confirmed), `hardState`, `since` (ISO time of the last HARD change; ''
 * before the first one vigil saw), `lastResultAt` (ISO time the last run ended), `message`, `reason`,
 * `incident` (the open incident's id or '') and `command`. Every write sets all fields and the key's
 * TTL, so a check (or a whole vigil) that stops reporting ages out after `ttl`. `indexKey` is a sorted
 * set of check ids scored by their last result time in epoch milliseconds; members older than `ttl`
 * are trimmed on each write and the set itself expires `ttl` after the last one.
 *
 * `process` only records the outcome and returns; outcomes of one event-loop turn go out together in
 * one pipeline. While Redis is away (or a write is in flight) only the latest outcome per check is
 * kept, so memory stays at one entry per check however long the outage, and the newest state of every
 * check is written once Redis is back. ioredis reconnects with backoff; its own offline queue is off.
 */
export const redisHandlerType = defineHandler({
  type: 'redis',
  options,
  create: (name, parsed, deps) => redisHandler(name, parsed, deps),
});

/** A redis handler, with ways to flush on demand. */
export interface RedisHandler extends Handler {
  /** Records the outcome (replacing an unwritten one of the same check) and returns at once. */
  process(outcome: Outcome): void;
  /** Deletes the check's hash and index entry (in the next pipeline). */
  checkRemoved(checkId: string): void;
  /**
   * Writes what is waiting now (after the write in flight); while Redis is not connected, first waits
   * for it until `signal` aborts. Resolves once written or failed (what failed stays waiting, to be
   * written on reconnection). After `close()`, waits for the close.
   */
  flush(signal?: AbortSignal): Promise<void>;
  /** Writes what is waiting, waiting for Redis to come back if need be (bounded by the close timeout), then quits. Idempotent. */
  close(): Promise<void>;
  /** Checks whose latest state (or removal) is not written yet. */
  readonly pending: number;
}

export interface RedisHandlerDeps extends HandlerDeps {
  /** `now` for trimming the index and the retry timer; default real time. */
  readonly clock?: Clock;
  /** Time `close()` gives the last flush and the goodbye, milliseconds; default 5 s. */
  readonly closeTimeoutMs?: number;
}

/** A check's latest outcome to write, or `null` for a removed check whose key is to be deleted. */
type Entry = Outcome | null;

/** Builds a `redis` handler; `redisHandlerType` is the way in from the config. */
export function redisHandler(name: string, settings: RedisHandlerOptions, deps: RedisHandlerDeps): RedisHandler {
  const { keyPrefix, indexKey, ttl } = settings;
  const clock = deps.clock ?? systemClock;
  const closeTimeoutMs = deps.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
  const logger = deps.logger.child({ handler: name });
  // The password never reaches a log line.
  const target = describeTarget(settings.url);

  const client = new Redis(settings.url, {
    // The latest-state map below is the offline queue: one entry per check, however long the outage.
    enableOfflineQueue: false,
    // A write in flight when the connection drops fails at once and goes back into that map, rather
    // than waiting in ioredis to be sent again after something newer.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    socketTimeout: SOCKET_TIMEOUT_MS,
    connectionName: `vigil:${name.replace(/[^\w.:-]/g, '_')}`,
  });

  const writes = counter(deps.registry, 'vigil_redis_writes_total', 'Check states (and removals) redis handlers wrote.', ['handler']).labels(name);
  const errors = counter(
    deps.registry,
    'vigil_redis_errors_total',
    'Errors of redis handlers: failed connection attempts, lost connections, failed or refused writes.',
    ['handler'],
  ).labels(name);
  writes.inc(0);
  errors.inc(0);

  const pending = new Map<string, Entry>();
  let writing: Promise<void> | null = null;
  let scheduled = false;
  let retryTimer: unknown = null;
  /** Consecutive failures (connection errors and failed writes) since Redis was last reachable. */
  let failures = 0;
  /** Checks already warned about: their interval is longer than the TTL. */
  const warnedTtl = new Set<string>();
  let closing = false;
  let closed: Promise<void> | null = null;
  const abandon = new AbortController();

  client.on('error', (err: Error) => {
    errors.inc();
    trouble(err, 'cannot reach Redis');
  });
  client.on('ready', () => {
    if (failures > 0) logger.info({ target, pending: pending.size }, 'Redis reachable again; writing the latest state of each check');
    failures = 0;
    if (pending.size > 0 && !closing) schedule();
  });

  /** One warning per outage, not one per reconnection attempt; the rest at debug. */
  function trouble(err: unknown, what: string): void {
    failures++;
    const level = failures === 1 ? 'warn' : 'debug';
    logger[level]({ err, target, pending: pending.size, failures }, `${what} at ${target}; keeping the latest state of each check until it is written`);
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(onImmediate);
  }

  function onImmediate(): void {
    scheduled = false;
    if (writing === null && client.status === 'ready') void startWrite();
  }

  function startWrite(): Promise<void> {
    writing ??= write().finally(() => {
      writing = null;
      if (pending.size === 0 || closing) return;
      if (failures === 0) schedule();
      // After a failure, the next try waits for `ready` (a reconnection) or the retry timer.
      else if (retryTimer === null) retryTimer = clock.setTimeout(onRetryTimer, RETRY_DELAY_MS);
    });
    return writing;
  }

  function onRetryTimer(): void {
    retryTimer = null;
    if (!closing && pending.size > 0) schedule();
  }

  async function write(): Promise<void> {
    const batch = take();
    if (batch.size === 0) return;
    const pipeline = client.pipeline();
    // Index of each entry's HSET or DEL in the pipeline: its reply says whether the entry was written.
    const mains: number[] = [];
    let commands = 0;
    const scores: (number | string)[] = [];
    const removed: string[] = [];
    for (const [checkId, entry] of batch) {
      const key = keyPrefix + checkId;
      mains.push(commands);
      if (entry === null) {
        pipeline.del(key);
        commands++;
        removed.push(checkId);
        continue;
      }
      const { result, state } = entry;
      const endedAt = Math.round(result.startedAt + result.durationMs);
      pipeline.hset(
        key,
        'state', result.state,
        'stateType', state.stateType,
        'hardState', state.hardState,
        'since', state.lastHardChangeAt === null ? '' : new Date(state.lastHardChangeAt).toISOString(),
        'lastResultAt', new Date(endedAt).toISOString(),
        'message', result.message,
        'reason', result.reason,
        'incident', state.incident?.id ?? '',
        'command', entry.check.command,
      );
      pipeline.pexpire(key, ttl);
      commands += 2;
      scores.push(endedAt, checkId);
    }
    if (scores.length > 0) {
      pipeline.zadd(indexKey, ...scores);
      pipeline.zremrangebyscore(indexKey, '-inf', `(${clock.now() - ttl}`);
      pipeline.pexpire(indexKey, ttl);
    }
    if (removed.length > 0) pipeline.zrem(indexKey, ...removed);

    const replies = await exec(pipeline);
    const lost = replies.find(([err]) => err !== null && !isReplyError(err));
    if (lost !== undefined) {
      // The connection failed under the batch: none of it is known to be written. Entries that a newer
      // outcome replaced meanwhile stay replaced.
      for (const [checkId, entry] of batch) if (!pending.has(checkId)) pending.set(checkId, entry);
      errors.inc();
      trouble(lost[0], 'writing to Redis failed');
      return;
    }
    const refused = replies.filter(([err]) => err !== null);
    if (refused.length > 0) {
      // Redis answered with an error (a key of another type, out of memory, …): sending the same again
      // would get the same, and the check's next run writes anew.
      errors.inc();
      logger.error({ err: refused[0]?.[0], target, refused: refused.length, batch: batch.size }, 'Redis refused some check state writes; they are dropped');
    }
    let written = 0;
    for (const index of mains) if (replies[index]?.[0] === null) written++;
    writes.inc(written);
    failures = 0;
  }

  /** Moves up to MAX_BATCH entries out of `pending`, oldest first. */
  function take(): Map<string, Entry> {
    if (pending.size <= MAX_BATCH) {
      const all = new Map(pending);
      pending.clear();
      return all;
    }
    const batch = new Map<string, Entry>();
    for (const [checkId, entry] of pending) {
      if (batch.size === MAX_BATCH) break;
      batch.set(checkId, entry);
    }
    for (const checkId of batch.keys()) pending.delete(checkId);
    return batch;
  }

  async function exec(pipeline: ChainableCommander): Promise<[Error | null, unknown][]> {
    try {
      const replies = await pipeline.exec();
      if (replies !== null) return replies;
      return [[new Error('the pipeline was discarded'), null]];
    } catch (error) {
      return [[error instanceof Error ? error : new Error(String(error)), null]];
    }
  }

  async function closeNow(): Promise<void> {
    closing = true;
    if (retryTimer !== null) clock.clearTimeout(retryTimer);
    retryTimer = null;
    const deadline = clock.setTimeout(() => abandon.abort(), closeTimeoutMs);
    const gaveUp = new Promise<void>((resolve) => abandon.signal.addEventListener('abort', () => resolve(), { once: true }));
    try {
      await Promise.race([drain(), gaveUp]);
      if (pending.size > 0) logger.warn({ target, left: pending.size }, 'check states not written to Redis at shutdown are dropped (they age out there)');
      pending.clear();
      if (client.status === 'ready' && !abandon.signal.aborted) await Promise.race([client.quit().catch(() => undefined), gaveUp]);
    } finally {
      clock.clearTimeout(deadline);
      // Ends a connection that did not say goodbye in time, and any reconnection attempt.
      client.disconnect();
    }
  }

  /** Writes until nothing waits, waiting for Redis to come back if need be; a few rounds at most. */
  async function drain(): Promise<void> {
    for (let round = 0; round < 10 && !abandon.signal.aborted; round++) {
      await writing;
      if (pending.size === 0) return;
      if (client.status === 'ready') {
        await startWrite();
        continue;
      }
      if (!(await whenReady(abandon.signal))) return;
    }
  }

  /** Resolves true once the client is ready, false when `signal` aborts first. Connection errors do not end the wait. */
  function whenReady(signal: AbortSignal | undefined): Promise<boolean> {
    if (client.status === 'ready') return Promise.resolve(true);
    if (signal?.aborted === true) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ready: boolean): void => {
        client.off('ready', onReady);
        signal?.removeEventListener('abort', onAbort);
        resolve(ready);
      };
      const onReady = (): void => done(true);
      const onAbort = (): void => done(false);
      client.on('ready', onReady);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  return {
    name,
    process(outcome) {
      if (closing) return;
      const { check } = outcome;
      // A hash that expires between two runs would show the check as unknown most of the time.
      if (check.intervalMs !== null && check.intervalMs + check.timeoutMs > ttl && !warnedTtl.has(check.id)) {
        warnedTtl.add(check.id);
        logger.warn({ checkId: check.id, intervalMs: check.intervalMs, ttlMs: ttl }, "the check runs less often than the Redis handler's ttl: its state expires between runs; raise `ttl`");
      }
      pending.set(check.id, outcome);
      if (writing === null && client.status === 'ready') schedule();
    },
    checkRemoved(checkId) {
      warnedTtl.delete(checkId);
      if (closing) return;
      pending.set(checkId, null);
      if (writing === null && client.status === 'ready') schedule();
    },
    async flush(signal) {
      if (closed !== null) return closed;
      await writing;
      if (pending.size === 0 || !(await whenReady(signal))) return;
      await writing;
      if (pending.size > 0) await startWrite();
    },
    close() {
      closed ??= closeNow();
      return closed;
    },
    get pending() {
      return pending.size;
    },
  };
}

/** Redis answered the command with an error: the connection is fine, the command is not. */
function isReplyError(error: Error): boolean {
  return error.name === 'ReplyError';
}

function isRedisUrl(value: string): boolean {
  try {
    const { protocol, hostname } = new URL(value);
    return (protocol === 'redis:' || protocol === 'rediss:') && hostname !== '';
  } catch {
    return false;
  }
}

/** The URL without its password, for logs. */
function describeTarget(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

