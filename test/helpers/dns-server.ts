import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { AUTHORITATIVE_ANSWER, RECURSION_DESIRED, decode, encode, type Answer, type DecodedPacket, type Question } from 'dns-packet';

/** The records of one name. A name with `CNAME` is an alias: other types are answered from its target. */
export interface DnsRecords {
  readonly A?: readonly string[];
  readonly AAAA?: readonly string[];
  readonly CNAME?: string;
  readonly NS?: readonly string[];
  readonly MX?: readonly { readonly priority: number; readonly exchange: string }[];
  /** One entry per record; an array is one record sent in several character-strings. */
  readonly TXT?: readonly (string | readonly string[])[];
}

/** Records by name; names compare case-insensitively and without a trailing dot. */
export type DnsZone = Readonly<Record<string, DnsRecords>>;

/**
 * - `answer`: answers from the zone (NXDOMAIN for unknown names, an empty NOERROR for a known name without
 *   records of the type)
 * - `servfail` / `refused`: answers every query with that rcode
 * - `silent`: receives queries and never answers
 */
export type DnsServerMode = 'answer' | 'servfail' | 'refused' | 'silent';

export interface DnsServerOptions {
  readonly zone?: DnsZone;
  /** Default `answer`. */
  readonly mode?: DnsServerMode;
  /** Milliseconds to wait before sending each answer; default 0. */
  readonly delayMs?: number;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
/** Bounds CNAME chasing, so that a looping zone cannot hang the server. */
const MAX_CNAME_HOPS = 8;

/**
 * A small authoritative DNS server on 127.0.0.1, UDP, on a free port. `mode`, `delayMs` and `zone` can
 * be changed between queries. Close it in `afterEach`.
 */
export class TestDnsServer {
  readonly #socket: Socket;
  readonly #timers = new Set<NodeJS.Timeout>();
  #zone = new Map<string, DnsRecords>();
  #closed = false;
  mode: DnsServerMode;
  delayMs: number;
  /** Every question received, in order, as `name TYPE` (`example.org A`). */
  readonly queries: string[] = [];

  private constructor(socket: Socket, options: DnsServerOptions) {
    this.#socket = socket;
    this.mode = options.mode ?? 'answer';
    this.delayMs = options.delayMs ?? 0;
    this.zone = options.zone ?? {};
    socket.on('message', (message, remote) => this.#onMessage(message, remote));
  }

  /** Starts a server; resolves once it listens. */
  static async start(options: DnsServerOptions = {}): Promise<TestDnsServer> {
    const socket = createSocket('udp4');
    const server = new TestDnsServer(socket, options);
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    return server;
  }

  set zone(zone: DnsZone) {
    this.#zone = new Map(Object.entries(zone).map(([name, records]) => [normalize(name), records]));
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** `127.0.0.1:<port>`, as the `servers` attribute takes it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await new Promise<void>((resolve) => this.#socket.close(resolve));
  }

  #onMessage(message: Buffer, remote: RemoteInfo): void {
    let query: DecodedPacket;
    try {
      query = decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (question === undefined) return;
    this.queries.push(`${question.name} ${question.type}`);
    if (this.mode === 'silent') return;
    const reply = encode(this.#reply(query, question));
    if (this.delayMs <= 0) {
      this.#send(reply, remote);
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#send(reply, remote);
    }, this.delayMs);
    this.#timers.add(timer);
  }

  #send(reply: Buffer, remote: RemoteInfo): void {
    if (!this.#closed) this.#socket.send(reply, remote.port, remote.address);
  }

  #reply(query: DecodedPacket, question: Question): Parameters<typeof encode>[0] {
    const respond = (rcode: number, answers: Answer[] = []) => ({
      id: query.id ?? 0,
      type: 'response' as const,
      flags: AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & RECURSION_DESIRED) | rcode,
      questions: [question],
      answers,
    });
    if (this.mode === 'servfail') return respond(RCODE.SERVFAIL);
    if (this.mode === 'refused') return respond(RCODE.REFUSED);

    let name = question.name;
    let records = this.#zone.get(normalize(name));
    if (records === undefined) return respond(RCODE.NXDOMAIN);
    const answers: Answer[] = [];
    for (let hop = 0; records?.CNAME !== undefined && question.type !== 'CNAME' && hop < MAX_CNAME_HOPS; hop++) {
      answers.push({ type: 'CNAME', name, ttl: 60, data: records.CNAME });
      name = records.CNAME;
      records = this.#zone.get(normalize(name));
    }
    if (records !== undefined) answers.push(...recordsOf(records, question.type, name));
    return respond(RCODE.NOERROR, answers);
  }
}

function recordsOf(records: DnsRecords, type: string, name: string): Answer[] {
  const ttl = 60;
  switch (type) {
    case 'A':
      return (records.A ?? []).map((data) => ({ type: 'A', name, ttl, data }));
    case 'AAAA':
      return (records.AAAA ?? []).map((data) => ({ type: 'AAAA', name, ttl, data }));
    case 'CNAME':
      return records.CNAME === undefined ? [] : [{ type: 'CNAME', name, ttl, data: records.CNAME }];
    case 'NS':
      return (records.NS ?? []).map((data) => ({ type: 'NS', name, ttl, data }));
    case 'MX':
      return (records.MX ?? []).map(({ priority, exchange }) => ({ type: 'MX', name, ttl, data: { preference: priority, exchange } }));
    case 'TXT':
      return (records.TXT ?? []).map((data) => ({ type: 'TXT', name, ttl, data: typeof data === 'string' ? data : [...data] }));
    default:
      return [];
  }
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}
