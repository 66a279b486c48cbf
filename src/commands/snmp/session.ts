import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns';
import snmp, { type Session, type User, type Varbind } from 'net-snmp';
import { DNS_ERROR_CODES, errorCode, errorMessage } from '../../core/errors.js';
import { listenForAbort, type CommandContext } from '../command.js';
import type { AuthProtocolName, PrivProtocolName, SecurityLevel, SnmpAttributes, SnmpSecurity } from './attributes.js';

/** What one run asks the agent. */
export type SnmpRequest =
  /** One GET of these objects, in one PDU. */
  | { readonly kind: 'get'; readonly oids: readonly string[] }
  /** GETBULKs through the subtree under `oid`. */
  | { readonly kind: 'walk'; readonly oid: string };

/** Why a request got no usable answer; each is also the run's reason code. */
export type SnmpFailureReason = 'timeout' | 'unreachable' | 'dns' | 'auth-failed' | 'snmp-error';

/** What the agent answered, or why it did not. `detail` never holds a secret. */
export type SnmpAnswer =
  /** `truncated`: the walk stopped at `MAX_WALK_VALUES`. */
  | { readonly kind: 'answer'; readonly varbinds: readonly Varbind[]; readonly truncated: boolean }
  | { readonly kind: 'failed'; readonly reason: SnmpFailureReason; readonly detail: string };

/** The most values a walk collects: a check judges a table's column, not a whole MIB. */
export const MAX_WALK_VALUES = 10_000;
/** The `detail` of a `timeout` when the run was aborted before anything was sent. */
export const NOTHING_SENT = 'timed out before sending a request';
/** Values asked for in each GETBULK of a walk (net-snmp's default). */
const MAX_REPETITIONS = 20;

const SECURITY_LEVELS: Readonly<Record<SecurityLevel, snmp.SecurityLevel>> = {
  noAuthNoPriv: snmp.SecurityLevel.noAuthNoPriv,
  authNoPriv: snmp.SecurityLevel.authNoPriv,
  authPriv: snmp.SecurityLevel.authPriv,
};
const AUTH_PROTOCOLS: Readonly<Record<AuthProtocolName, snmp.AuthProtocols>> = {
  md5: snmp.AuthProtocols.md5,
  sha: snmp.AuthProtocols.sha,
  sha224: snmp.AuthProtocols.sha224,
  sha256: snmp.AuthProtocols.sha256,
  sha384: snmp.AuthProtocols.sha384,
  sha512: snmp.AuthProtocols.sha512,
};
const PRIV_PROTOCOLS: Readonly<Record<PrivProtocolName, snmp.PrivProtocols>> = {
  des: snmp.PrivProtocols.des,
  aes: snmp.PrivProtocols.aes,
  aes256b: snmp.PrivProtocols.aes256b,
  aes256r: snmp.PrivProtocols.aes256r,
};
/** ICMP errors a connected UDP socket reports: nothing answers SNMP at that address. */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);
const UNREACHABLE_WHY: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'port unreachable: nothing listens for SNMP there',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host down',
  ENETDOWN: 'network down',
};
/** net-snmp's ResponseInvalidCode values (its typings lack some). */
const RESPONSE_INVALID = { couldNotDecrypt: 4, authFailure: 5, communityNoMatch: 10, notInTimeWindow: 14 } as const;

/**
 * Sends `request` to the agent and waits for the answer, until the run is aborted. Every path closes
 * the socket and the session. A target that does not answer is an answer (`failed`), never a throw.
 */
export async function query(attrs: SnmpAttributes, request: SnmpRequest, ctx: CommandContext): Promise<SnmpAnswer> {
  const exchange = new Exchange(attrs, request, ctx.deadline);
  const stopListening = listenForAbort(ctx, exchange.onAbort);
  if (stopListening === null) return { kind: 'failed', reason: 'timeout', detail: NOTHING_SENT };
  try {
    exchange.start();
    return await exchange.outcome;
  } finally {
    stopListening();
    exchange.close();
  }
}

/** One run's name lookup, socket and session; settles once, with the first outcome. */
class Exchange {
  readonly outcome: Promise<SnmpAnswer>;
  readonly #attrs: SnmpAttributes;
  readonly #request: SnmpRequest;
  readonly #deadline: number;
  #resolve!: (answer: SnmpAnswer) => void;
  #settled = false;
  #closed = false;
  #socket: Socket | undefined;
  #session: Session | undefined;

  constructor(attrs: SnmpAttributes, request: SnmpRequest, deadline: number) {
    this.#attrs = attrs;
    this.#request = request;
    this.#deadline = deadline;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  readonly onAbort = (): void => {
    this.#settle({ kind: 'failed', reason: 'timeout', detail: 'no answer within the check timeout' });
  };

  start(): void {
    lookup(this.#attrs.host, (error, address, family) => {
      if (this.#settled) return;
      if (error !== null) {
        const code = errorCode(error) ?? 'unknown error';
        this.#settle({ kind: 'failed', reason: DNS_ERROR_CODES.has(code) ? 'dns' : 'unreachable', detail: `cannot resolve host ${this.#attrs.host} (${code})` });
        return;
      }
      this.#connect(address, family);
    });
  }

  /**
   * A connected socket, where net-snmp would send from an unconnected one: Linux reports an ICMP port
   * unreachable only to a connected UDP socket, so a closed port is `unreachable` at once rather than a
   * timeout at the end of the check's time.
   */
  #connect(address: string, family: number): void {
    const transport = family === 6 ? 'udp6' : 'udp4';
    const socket = createSocket(transport);
    this.#socket = socket;
    socket.on('error', (error) => this.#failed(error));
    socket.connect(this.#attrs.port, address, () => {
      if (!this.#settled) this.#send(address, transport, socket);
    });
  }

  #send(address: string, transport: 'udp4' | 'udp6', socket: Socket): void {
    const { security, port, retries } = this.#attrs;
    // The check's time, shared among the tries; the abort ends the run at its deadline whatever net-snmp waits.
    const timeout = Math.max(1, Math.floor((this.#deadline - Date.now()) / (retries + 1)));
    const options = { port, retries, timeout, backoff: 1, transport, dgramModule: connectedSocketModule(socket) };
    try {
      this.#session =
        security.version === '2c'
          ? snmp.createSession(address, security.community, { ...options, version: snmp.Version2c })
          : snmp.createV3Session(address, toUser(security), { ...options, version: snmp.Version3 });
      // net-snmp emits `error` for an answer it cannot parse: without a listener that would throw out of the socket's handler.
      this.#session.on('error', (error) => {
        if (!this.#settled) this.#settle({ kind: 'failed', reason: 'snmp-error', detail: `the answer is not valid SNMP (${hide(errorMessage(error), security)})` });
      });
      const request = this.#request;
      if (request.kind === 'get') {
        this.#session.get([...request.oids], (error, varbinds) => {
          if (error) this.#failed(error);
          else this.#settle({ kind: 'answer', varbinds: varbinds ?? [], truncated: false });
        });
      } else {
        const collected: Varbind[] = [];
        let truncated = false;
        this.#session.subtree(
          request.oid,
          MAX_REPETITIONS,
          (varbinds) => {
            collected.push(...varbinds);
            if (collected.length < MAX_WALK_VALUES) return;
            truncated = true;
            collected.length = MAX_WALK_VALUES;
            return true;
          },
          (error) => {
            if (error) this.#failed(error);
            else this.#settle({ kind: 'answer', varbinds: collected, truncated });
          },
        );
      }
    } catch (error) {
      this.#failed(error);
    }
  }

  #failed(error: unknown): void {
    if (this.#settled) return;
    this.#settle({ kind: 'failed', ...classify(error, this.#attrs.security) });
  }

  #settle(answer: SnmpAnswer): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(answer);
  }

  /** Closes the session (which closes its socket), or the socket alone when no session was made. Once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#session !== undefined) this.#session.close();
    else this.#socket?.close();
  }
}

/**
 * What net-snmp needs of Node's `dgram` (its `dgramModule` option) over an already connected socket:
 * its sends name the target, which a connected socket refuses, so they are sent without it.
 */
function connectedSocketModule(socket: Socket): { createSocket(): unknown } {
  const facade = {
    on(event: string, listener: (...args: unknown[]) => void) {
      socket.on(event, listener);
      return facade;
    },
    ref() {
      socket.ref();
      return facade;
    },
    unref() {
      socket.unref();
      return facade;
    },
    send(buffer: Buffer, offset: number, length: number, _port: number, _address: string, callback: (error: Error | null) => void) {
      socket.send(buffer, offset, length, callback);
    },
    close() {
      socket.close();
    },
  };
  return { createSocket: () => facade };
}

function toUser(security: Extract<SnmpSecurity, { version: '3' }>): User {
  return {
    name: security.user,
    level: SECURITY_LEVELS[security.level],
    ...(security.authProtocol === undefined ? {} : { authProtocol: AUTH_PROTOCOLS[security.authProtocol] }),
    ...(security.authKey === undefined ? {} : { authKey: security.authKey }),
    ...(security.privProtocol === undefined ? {} : { privProtocol: PRIV_PROTOCOLS[security.privProtocol] }),
    ...(security.privKey === undefined ? {} : { privKey: security.privKey }),
  };
}

/** Why net-snmp or the socket failed, in words that hold no secret (some of net-snmp's quote the community). */
function classify(error: unknown, security: SnmpSecurity): { reason: SnmpFailureReason; detail: string } {
  const code = errorCode(error);
  if (code !== undefined && UNREACHABLE_CODES.has(code)) return { reason: 'unreachable', detail: `${UNREACHABLE_WHY[code] ?? code} (${code})` };
  if (code !== undefined && DNS_ERROR_CODES.has(code)) return { reason: 'dns', detail: `cannot resolve the host (${code})` };
  const name = error instanceof Error ? error.name : '';
  if (name === 'RequestTimedOutError') return { reason: 'timeout', detail: 'no answer' };
  if (name === 'RequestFailedError') return { reason: 'snmp-error', detail: `the agent answered ${hide(errorMessage(error), security)}` };
  if (name === 'ResponseInvalidError') {
    const user = security.version === '3' ? `user ${JSON.stringify(security.user)}` : 'the community';
    switch ((error as { code?: unknown }).code) {
      case RESPONSE_INVALID.authFailure:
        return { reason: 'auth-failed', detail: authFailure(errorMessage(error), user) };
      case RESPONSE_INVALID.couldNotDecrypt:
        return { reason: 'auth-failed', detail: `could not decrypt the answer for ${user}: wrong privKey or privProtocol?` };
      case RESPONSE_INVALID.communityNoMatch:
        return { reason: 'snmp-error', detail: 'the answer carried another community than the request' };
      case RESPONSE_INVALID.notInTimeWindow:
        return { reason: 'auth-failed', detail: `the answer was outside the SNMPv3 time window for ${user}` };
      default:
        return { reason: 'snmp-error', detail: `the answer is not one net-snmp accepts (${hide(errorMessage(error), security)})` };
    }
  }
  return { reason: 'snmp-error', detail: hide(errorMessage(error), security) };
}

/** net-snmp's report names (RFC 3414 usmStats counters) in an operator's words. */
function authFailure(message: string, user: string): string {
  if (/unknown user/i.test(message)) return `${user} is unknown to the agent (usmStatsUnknownUserNames)`;
  if (/wrong digest|digest .* does not match/i.test(message)) return `wrong authKey or authProtocol for ${user} (usmStatsWrongDigests)`;
  if (/decryption/i.test(message)) return `the agent could not decrypt the request of ${user}: wrong privKey or privProtocol (usmStatsDecryptionErrors)`;
  if (/security level/i.test(message)) return `the agent does not accept this securityLevel for ${user} (usmStatsUnsupportedSecLevels)`;
  if (/time window/i.test(message)) return `the request was outside the SNMPv3 time window for ${user} (usmStatsNotInTimeWindows)`;
  if (/engine id/i.test(message)) return `the agent did not know the engine ID sent for ${user} (usmStatsUnknownEngineIDs)`;
  return `authentication failed for ${user}`;
}

/** `text` with every secret of `security` masked: the last guard on library text that reaches a message. */
function hide(text: string, security: SnmpSecurity): string {
  const secrets = security.version === '2c' ? [security.community] : [security.authKey, security.privKey];
  let hidden = text;
  for (const secret of secrets) if (secret !== undefined && secret !== '') hidden = hidden.split(secret).join('***');
  return hidden;
}
