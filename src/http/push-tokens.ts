import { createHmac, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CheckSpec } from '../checks/check.js';
import type { PingReceiver } from '../commands/command.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import { nowOf, type Clock } from '../core/clock.js';

/** The file in the data dir that holds the push secret: 64 hex characters (32 random bytes) and a newline. */
export function pushSecretPath(dataDir: string): string {
  return join(dataDir, 'push-secret');
}

const SECRET_BYTES = 32;
const SECRET_TEXT = /^[0-9a-f]{64}$/i;

/**
 * The secret push tokens are derived from: read from `<dataDir>/push-secret`, or made (32 random bytes,
 * mode 0600) when the file does not exist yet. Creation is atomic and exclusive, so two processes
 * starting at once agree on one secret. Throws when the file exists but is not a secret: a new one would
 * change every derived ping URL, which is the operator's call (delete the file), not vigil's.
 * Warns through `logger` when the file is readable by others than its owner.
 */
export async function loadPushSecret(dataDir: string, logger?: Logger): Promise<Buffer> {
  const file = pushSecretPath(dataDir);
  let text = await readIfExists(file);
  if (text === null) {
    await createSecret(dataDir, file);
    text = (await readIfExists(file)) ?? '';
  }
  const hex = text.trim();
  if (!SECRET_TEXT.test(hex)) {
    throw new Error(
      `push secret ${file} is not 64 hex characters (${SECRET_BYTES} bytes); restore it from a backup, or delete it to make a new one (every derived ping URL then changes)`,
    );
  }
  if (logger) {
    const { mode } = await stat(file);
    if ((mode & 0o077) !== 0) logger.warn({ file, mode: `0${(mode & 0o777).toString(8)}` }, `push secret ${file} is readable by others than its owner; chmod 600 it`);
  }
  return Buffer.from(hex, 'hex');
}

async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Writes a new secret to a temporary file, then links it into place: whoever links first wins. */
async function createSecret(dataDir: string, file: string): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${randomBytes(SECRET_BYTES).toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await unlink(temporary);
  }
}

/** The token vigil derives for a push check without one: HMAC-SHA256(secret, check id), base64url (43 characters). */
export function derivePushToken(checkId: string, secret: Buffer): string {
  return createHmac('sha256', secret).update(checkId).digest('base64url');
}

/** A ping-fed check's token: the one its attributes set (`pings.token`), or the one derived from its id. */
export function tokenFor(check: Pick<CheckSpec, 'id' | 'attributes'>, secret: Buffer, pings: PingReceiver<unknown>): string {
  return pings.token(check.attributes) ?? derivePushToken(check.id, secret);
}

/** The first characters of a token: enough to tell tokens apart in a log, too few to use one. */
export function redactToken(token: string): string {
  return `${token.slice(0, 4)}…`;
}

/** What a token stands for: a push check, nothing, or (a configuration mistake) several checks. */
export type PushTokenLookup =
  | { readonly kind: 'found'; readonly checkId: string }
  | { readonly kind: 'unknown' }
  /** Two or more push checks were given the same token; a ping cannot tell which one it is for. */
  | { readonly kind: 'ambiguous'; readonly checkIds: readonly string[] };

export interface PushTokensOptions {
  /** The server's checks; only those whose command takes pings have tokens. */
  readonly checks: CheckRegistry;
  /** The `pings` of the command named `command` (`Command.pings`), or `undefined` for a command that takes none. */
  readonly pingsOf: (command: string) => PingReceiver<unknown> | undefined;
  /** From `loadPushSecret`. */
  readonly secret: Buffer;
  /** Where ambiguous tokens are reported. */
  readonly logger?: Logger;
  /**
   * An unknown token rebuilds the index at most this often (ms), so a flood of made-up tokens costs one
   * pass over the checks per interval, not one per request; default 1 000. `invalidate()` lifts it once.
   */
  readonly missRebuildIntervalMs?: number;
  /** Tells the time; default `systemClock`. */
  readonly clock?: Clock;
}

interface Entry {
  readonly checkId: string;
  /** The spec the token was computed from: a different spec object under the id means the entry is stale. */
  readonly spec: CheckSpec;
}

type Slot = Entry | { readonly ambiguous: readonly string[] };

/**
 * The index token → push check. Lookups are O(1): a hit is confirmed against the registry's current
 * spec object (a replaced spec, a removed check, makes it stale and rebuilds the index). A miss rebuilds
 * only when `invalidate()` was called since the last build (call it after a config reload or an API
 * change to checks) or the last build is older than `missRebuildIntervalMs`; a check added without an
 * `invalidate()` is found at the latest that long after it was added.
 */
export class PushTokens {
  readonly #checks: CheckRegistry;
  readonly #pingsOf: (command: string) => PingReceiver<unknown> | undefined;
  readonly #secret: Buffer;
  readonly #logger: Logger | undefined;
  readonly #missRebuildIntervalMs: number;
  readonly #now: () => number;
  /** Tokens by spec object: derived tokens cost an HMAC, computed once per spec. */
  readonly #tokens = new WeakMap<CheckSpec, string>();
  #index = new Map<string, Slot>();
  #builtAt = Number.NEGATIVE_INFINITY;
  #dirty = true;
  #reported = '';

  constructor(options: PushTokensOptions) {
    this.#checks = options.checks;
    this.#pingsOf = options.pingsOf;
    this.#secret = options.secret;
    this.#logger = options.logger;
    this.#missRebuildIntervalMs = options.missRebuildIntervalMs ?? 1_000;
    this.#now = nowOf(options.clock);
  }

  /** The push check a ping's token stands for. */
  lookup(token: string): PushTokenLookup {
    const first = this.#find(token);
    if (first !== 'stale' && first.kind !== 'unknown') return first;
    if (first === 'stale' || this.#dirty || this.#now() - this.#builtAt >= this.#missRebuildIntervalMs) {
      this.#rebuild();
      const second = this.#find(token);
      return second === 'stale' ? { kind: 'unknown' } : second;
    }
    return first;
  }

  /** A ping-fed check's token (for showing its ping URL); `undefined` for an unknown check or one whose command takes no pings. */
  tokenOf(checkId: string): string | undefined {
    const spec = this.#checks.get(checkId)?.spec;
    const pings = spec && this.#pingsOf(spec.command);
    return spec && pings ? this.#tokenOf(spec, pings) : undefined;
  }

  /** Checks changed: the next lookup that misses rebuilds the index whatever the time. */
  invalidate(): void {
    this.#dirty = true;
  }

  #find(token: string): PushTokenLookup | 'stale' {
    const slot = this.#index.get(token);
    if (slot === undefined) return { kind: 'unknown' };
    if ('ambiguous' in slot) return { kind: 'ambiguous', checkIds: slot.ambiguous };
    return this.#checks.get(slot.checkId)?.spec === slot.spec ? { kind: 'found', checkId: slot.checkId } : 'stale';
  }

  #rebuild(): void {
    const index = new Map<string, Slot>();
    for (const { spec } of this.#checks.list()) {
      const pings = this.#pingsOf(spec.command);
      if (pings === undefined) continue;
      const token = this.#tokenOf(spec, pings);
      const taken = index.get(token);
      if (taken === undefined) index.set(token, { checkId: spec.id, spec });
      else index.set(token, { ambiguous: 'ambiguous' in taken ? [...taken.ambiguous, spec.id] : [taken.checkId, spec.id] });
    }
    this.#reportAmbiguous(index);
    this.#index = index;
    this.#builtAt = this.#now();
    this.#dirty = false;
  }

  /** Logs shared tokens once per change, not on every rebuild. */
  #reportAmbiguous(index: ReadonlyMap<string, Slot>): void {
    const shared: [string, readonly string[]][] = [];
    for (const [token, slot] of index) if ('ambiguous' in slot) shared.push([token, slot.ambiguous]);
    const key = shared.map(([, ids]) => ids.join('\n')).join('\n\n');
    if (key === this.#reported) return;
    this.#reported = key;
    for (const [token, checkIds] of shared) {
      this.#logger?.error({ checkIds, token: redactToken(token) }, `push checks ${checkIds.join(', ')} share one token; their pings are refused until each has its own`);
    }
  }

  #tokenOf(spec: CheckSpec, pings: PingReceiver<unknown>): string {
    let token = this.#tokens.get(spec);
    if (token === undefined) {
      token = tokenFor(spec, this.#secret, pings);
      this.#tokens.set(spec, token);
    }
    return token;
  }
}
