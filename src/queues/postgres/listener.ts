import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import type { ReportError } from './errors.js';
import { MAX_BACKOFF_MS, type DatabaseHealth } from './health.js';

/**
 * How the instances sharing a schema tell each other of changes: a write NOTIFYs `{ from, id }` (one
 * check) or `{ from, all }` (a config sync) on the schema's channel, in the writing transaction; every
 * other instance LISTENs on one connection of its own and reads those checks again. Notifications are
 * a shortcut, not the truth: a lost connection is reopened with backoff and followed by a full
 * comparison, and a periodic comparison catches what came without a notification.
 */

/** The NOTIFY channel of a schema: short and free of quoting trouble whatever the schema is called. */
export function notifyChannel(schema: string): string {
  return `vigil_${createHash('sha256').update(schema).digest('hex').slice(0, 24)}`;
}

/** What changed: one check, or (`all`) any number of them. */
export interface ChangeNotice {
  readonly id?: string;
  readonly all?: boolean;
}

/** Tells the other instances of a change, in `client`'s transaction (delivered at its COMMIT). */
export async function notify(client: pg.ClientBase, channel: string, from: string, notice: ChangeNotice): Promise<void> {
  await client.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify({ from, ...notice })]);
}

/** A few ms gathers the notifications of one burst into one query. */
const RELOAD_GATHER_MS = 5;

export interface ListenerOptions {
  /** The pool the listening connection is taken from (and given back to on `stop`). */
  readonly pool: pg.Pool;
  /** From `notifyChannel`. */
  readonly channel: string;
  /** This instance's id: its own notifications are ignored. */
  readonly instanceId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told when a reload fails because the database is away (the periodic refresh catches up). */
  readonly health: DatabaseHealth;
  readonly report: ReportError;
  /** How often every check is compared with the table, in ms. */
  readonly refreshIntervalMs: number;
  /** Reads these checks again (another instance changed them, or a completion learnt they did). */
  readonly reload: (ids: readonly string[]) => Promise<void>;
  /** Compares every check with the table. */
  readonly refresh: () => Promise<void>;
  /** A lost connection was reopened and everything compared: due times may have moved meanwhile. */
  readonly onReconnected: () => void;
}

/**
 * The receiving side: one LISTEN connection, reopened with backoff (100 ms doubling up to
 * `MAX_BACKOFF_MS`) when lost; reloads of the checks notifications name, gathered per burst; and the
 * periodic comparison of every check with the table.
 */
export class Listener {
  readonly #pool: pg.Pool;
  readonly #channel: string;
  readonly #me: string;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #health: DatabaseHealth;
  readonly #report: ReportError;
  readonly #refreshIntervalMs: number;
  readonly #reload: (ids: readonly string[]) => Promise<void>;
  readonly #refresh: () => Promise<void>;
  readonly #onReconnected: () => void;

  #running = false;
  #client: pg.PoolClient | null = null;
  #listenTimer: unknown = null;
  #listenBackoffMs = 0;
  #reloadTimer: unknown = null;
  readonly #reloadIds = new Set<string>();
  #reloadAll = false;
  #refreshTimer: unknown = null;

  constructor(options: ListenerOptions) {
    this.#pool = options.pool;
    this.#channel = options.channel;
    this.#me = options.instanceId;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#health = options.health;
    this.#report = options.report;
    this.#refreshIntervalMs = options.refreshIntervalMs;
    this.#reload = options.reload;
    this.#refresh = options.refresh;
    this.#onReconnected = options.onReconnected;
  }

  /** Holds a LISTEN connection. */
  get connected(): boolean {
    return this.#client !== null;
  }

  /** Listens, then compares with the table every `refreshIntervalMs`. Rejects when no connection could listen. */
  async start(): Promise<void> {
    this.#running = true;
    await this.#listen();
    this.#armRefresh();
  }

  /**
   * Stops listening, reloading and refreshing. `destroy`: the connection is closed (as a crash would)
   * rather than UNLISTENed and given back.
   */
  stop(destroy: boolean): void {
    this.#running = false;
    for (const handle of [this.#refreshTimer, this.#reloadTimer, this.#listenTimer]) if (handle !== null) this.#clock.clearTimeout(handle);
    this.#refreshTimer = this.#reloadTimer = this.#listenTimer = null;
    const client = this.#client;
    this.#client = null;
    if (!client) return;
    this.#detach(client);
    if (destroy) client.release(true);
    else {
      client
        .query(`UNLISTEN ${pg.escapeIdentifier(this.#channel)}`)
        .then(() => client.release(), () => client.release(true));
    }
  }

  /** Opens the LISTEN connection again if it is lost (after its backoff); for when the database is back. */
  reconnect(): void {
    if (!this.#client) this.#scheduleListen();
  }

  /** Reads `id` again (with whatever else a notification named meanwhile) a few ms from now. */
  reloadSoon(id?: string): void {
    if (id !== undefined) this.#reloadIds.add(id);
    if (this.#reloadTimer !== null || !this.#running) return;
    this.#reloadTimer = this.#clock.setTimeout(this.#reloadNow, RELOAD_GATHER_MS);
  }

  async #listen(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      client.on('notification', this.#onNotification);
      client.on('error', this.#onLost);
      client.on('end', this.#onLost);
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#channel)}`);
    } catch (error) {
      this.#detach(client);
      client.release(true);
      throw error;
    }
    this.#client = client;
    this.#listenBackoffMs = 0;
  }

  #detach(client: pg.PoolClient): void {
    client.off('notification', this.#onNotification);
    client.off('error', this.#onLost);
    client.off('end', this.#onLost);
    // A connection that dies after being let go must still not crash the process.
    client.on('error', () => undefined);
  }

  readonly #onLost = (error?: Error): void => {
    const client = this.#client;
    if (!client) return;
    this.#client = null;
    this.#detach(client);
    client.release(true);
    if (!this.#running) return;
    this.#logger.warn({ err: error }, 'the PostgreSQL LISTEN connection was lost; reconnecting');
    this.#scheduleListen();
  };

  #scheduleListen(): void {
    if (this.#listenTimer !== null || !this.#running) return;
    this.#listenBackoffMs = Math.min(MAX_BACKOFF_MS, Math.max(100, this.#listenBackoffMs * 2));
    this.#listenTimer = this.#clock.setTimeout(() => {
      this.#listenTimer = null;
      if (!this.#running || this.#client) return;
      this.#listen()
        // Notifications sent while nobody listened are lost: compare everything once.
        .then(() => this.#refresh())
        .then(() => this.#onReconnected())
        .catch((error: unknown) => {
          this.#logger.debug({ err: error }, 'reconnecting the PostgreSQL LISTEN connection failed; trying again');
          this.#scheduleListen();
        });
    }, this.#listenBackoffMs);
  }

  readonly #onNotification = (message: pg.Notification): void => {
    if (message.channel !== this.#channel || message.payload === undefined) return;
    let payload: { from?: unknown; id?: unknown; all?: unknown };
    try {
      payload = JSON.parse(message.payload) as typeof payload;
    } catch {
      return;
    }
    if (payload.from === this.#me) return;
    if (payload.all === true) this.#reloadAll = true;
    else if (typeof payload.id === 'string') this.#reloadIds.add(payload.id);
    else return;
    this.reloadSoon();
  };

  readonly #reloadNow = (): void => {
    this.#reloadTimer = null;
    const all = this.#reloadAll;
    const ids = [...this.#reloadIds];
    this.#reloadAll = false;
    this.#reloadIds.clear();
    const work = all ? this.#refresh() : this.#reload(ids);
    work.catch((error: unknown) => {
      // The periodic refresh catches up.
      if (!this.#health.failed(error, 'reload')) this.#report(error, 'reload');
    });
  };

  /** A re-armed timeout rather than an interval: the Clock has none, and a stop clears it the same way. */
  #armRefresh(): void {
    this.#refreshTimer = this.#clock.setTimeout(() => {
      this.#refreshTimer = null;
      if (!this.#running) return;
      this.#armRefresh();
      this.#refresh().catch((error: unknown) => {
        if (!this.#health.failed(error, 'refresh')) this.#report(error, 'refresh');
      });
    }, this.#refreshIntervalMs);
  }
}
