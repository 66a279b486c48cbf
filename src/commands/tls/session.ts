import { createHash, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { checkServerIdentity, rootCertificates, type ConnectionOptions, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { z } from 'zod';
import { errorCode, errorMessage } from '../../core/errors.js';
import type { TlsSettings } from '../tls-attributes.js';
import type { Connection } from './connection.js';

/**
 * The TLS handshake of a probe and what it showed: the protocol and cipher negotiated, the certificate
 * chain as far as it leads to a trusted root, OpenSSL's verdict on it and whether the certificate is
 * for the name asked. The probe never lets Node refuse the connection itself (`rejectUnauthorized:
 * false`): it reads everything first, and `verdict.ts` judges it, so an untrusted certificate still
 * shows its subject, issuer and days left.
 */

/** TLS versions, oldest first, as Node names them. */
export const TlsProtocols = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type TlsProtocol = (typeof TlsProtocols)[number];

/** The default of `minProtocol`: what Node itself accepts at least. */
export const DEFAULT_MIN_PROTOCOL: TlsProtocol = 'TLSv1.2';

/** The `minProtocol` attribute: the oldest protocol accepted; default TLSv1.2. */
export const minProtocolField = z.enum(TlsProtocols, { error: `expected one of ${TlsProtocols.join(', ')}` }).optional();

/** The TLS settings of a probe: `http`'s (shared with `grpc` and `websocket`) and the oldest protocol accepted. */
export interface TlsVerification extends TlsSettings {
  /** Default TLSv1.2. */
  readonly minProtocol: TlsProtocol;
}

/** Where a certificate stands in the chain. */
export type ChainRole = 'leaf' | 'intermediate' | 'root';

/** One certificate of the chain. */
export interface ChainCertificate {
  readonly role: ChainRole;
  /** `CN=localhost`, relative names joined with `, `. */
  readonly subject: string;
  readonly issuer: string;
  /** Epoch milliseconds. */
  readonly validFrom: number;
  /** Epoch milliseconds. */
  readonly validTo: number;
}

/** What a handshake showed. */
export interface TlsSession {
  /** Negotiated: `TLSv1.3`. */
  readonly protocol: string;
  /** Negotiated, OpenSSL's name: `TLS_AES_256_GCM_SHA384`. */
  readonly cipher: string;
  /** The leaf first, then its issuers up to a trusted root where one was found; empty when the server sent none. */
  readonly chain: readonly ChainCertificate[];
  /** OpenSSL's complaint about the chain (`DEPTH_ZERO_SELF_SIGNED_CERT`, …); undefined when it trusts it. */
  readonly chainError: string | undefined;
  /** The name verified and the names the leaf is for, when they do not match; undefined when they do. */
  readonly nameMismatch: { readonly name: string; readonly certifiedFor: string } | undefined;
  /** From the start of the handshake to its end. */
  readonly handshakeMs: number;
}

/** The oldest protocol the probe offers: one below a TLSv1.3 minimum, so that a TLSv1.2 server is seen and named. */
export function clientFloor(minProtocol: TlsProtocol): TlsProtocol {
  return minProtocol === 'TLSv1.3' ? 'TLSv1.2' : minProtocol;
}

/** Whether `protocol` (as negotiated) is older than `minProtocol`. */
export function isOlder(protocol: string, minProtocol: TlsProtocol): boolean {
  const rank = TlsProtocols.indexOf(protocol as TlsProtocol);
  return rank >= 0 && rank < TlsProtocols.indexOf(minProtocol);
}

/** Runs the TLS handshake on `conn` (connected, any STARTTLS done) and reads what it showed. */
export async function handshake(conn: Connection, host: string, verification: TlsVerification): Promise<TlsSession> {
  const startedAt = performance.now();
  const socket = await conn.upgrade(tlsOptions(host, verification));
  const handshakeMs = performance.now() - startedAt;
  return readSession(socket, verification.servername ?? host, verification, handshakeMs);
}

function tlsOptions(host: string, verification: TlsVerification): ConnectionOptions {
  const name = verification.servername ?? host;
  const floor = clientFloor(verification.minProtocol);
  return {
    // SNI carries names only (RFC 6066); Node warns when given an address.
    ...(isIP(name) === 0 ? { servername: name } : {}),
    // The probe judges the chain and the name itself, after reading them (see verdict.ts).
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
    ...(verification.ca === undefined ? {} : { ca: verification.ca }),
    minVersion: floor,
    // OpenSSL 3 offers TLSv1 and TLSv1.1 only at security level 0; asked for with an old minProtocol alone.
    ...(floor === 'TLSv1' || floor === 'TLSv1.1' ? { ciphers: 'DEFAULT:@SECLEVEL=0' } : {}),
  };
}

function readSession(socket: TLSSocket, name: string, verification: TlsVerification, handshakeMs: number): TlsSession {
  const peer = socket.getPeerCertificate(true);
  const chainError = socket.authorized ? undefined : describeAuthorizationError(socket.authorizationError);
  const chain = peer.raw === undefined ? [] : walkChain(peer, anchorsFor(verification.ca), chainError === undefined);
  let nameMismatch: TlsSession['nameMismatch'];
  if (peer.raw !== undefined && checkServerIdentity(name, peer) !== undefined) {
    nameMismatch = { name, certifiedFor: peer.subjectaltname ?? (peer.subject.CN === undefined ? 'no name' : `CN=${String(peer.subject.CN)}`) };
  }
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    cipher: socket.getCipher().name,
    chain,
    chainError,
    nameMismatch,
    handshakeMs,
  };
}

/** Node keeps OpenSSL's verification code (`CERT_HAS_EXPIRED`) as a string, although its types say Error. */
function describeAuthorizationError(error: unknown): string {
  if (typeof error === 'string') return error;
  return errorCode(error) ?? errorMessage(error);
}

/** The longest chain walked; real ones have three or four certificates. */
const MAX_CHAIN = 10;

/**
 * The chain from the leaf through the issuers Node found (those the server sent, then one from the
 * trusted store), stopping at the first certificate that is a trusted root or has a root's subject and
 * key. OpenSSL prefers the trusted root there, so a server that also sends a cross-signed copy of its
 * root (expiring sooner, or signed by an expired root) is judged by the root that verification used.
 *
 * When OpenSSL trusts the chain, every certificate on the path it verified is within its dates: one
 * found here that is not was off that path, and is left out rather than reported as expired.
 */
function walkChain(peer: DetailedPeerCertificate, anchors: Anchors, trusted: boolean): ChainCertificate[] {
  const certificates: X509Certificate[] = [];
  const seen = new Set<string>();
  let current: DetailedPeerCertificate | undefined = peer;
  while (current?.raw !== undefined && !seen.has(current.fingerprint256) && certificates.length < MAX_CHAIN) {
    seen.add(current.fingerprint256);
    const certificate = new X509Certificate(current.raw);
    const anchor = anchors.get(anchorKey(certificate));
    if (anchor !== undefined) {
      certificates.push(anchor);
      break;
    }
    certificates.push(certificate);
    current = current.issuerCertificate;
  }
  const now = Date.now();
  const chain = certificates.map((certificate, index) => toChainCertificate(certificate, index, certificates.length));
  return trusted ? chain.filter((certificate, index) => index === 0 || (certificate.validFrom <= now && now <= certificate.validTo)) : chain;
}

function toChainCertificate(certificate: X509Certificate, index: number, length: number): ChainCertificate {
  const subject = names(certificate.subject);
  const issuer = names(certificate.issuer);
  const role: ChainRole = index === 0 ? 'leaf' : index === length - 1 && subject === issuer ? 'root' : 'intermediate';
  return { role, subject, issuer, validFrom: Date.parse(certificate.validFrom), validTo: Date.parse(certificate.validTo) };
}

/** `C=US\nO=Example\nCN=R3` → `C=US, O=Example, CN=R3`. */
function names(distinguished: string): string {
  return distinguished.split('\n').join(', ');
}

/** Trusted roots by subject and public key. */
type Anchors = ReadonlyMap<string, X509Certificate>;

let systemAnchors: Anchors | undefined;
const fileAnchors = new WeakMap<Buffer, Anchors>();

/**
 * The roots of `caFile`'s contents, or Node's bundled ones (`tls.rootCertificates`), parsed once each.
 * Roots added through NODE_EXTRA_CA_CERTS or the system store are not among them: a chain to one of
 * them is walked as Node found it, which is what it was without this shortcut.
 */
function anchorsFor(ca: Buffer | undefined): Anchors {
  if (ca === undefined) return (systemAnchors ??= anchorMap(rootCertificates));
  let anchors = fileAnchors.get(ca);
  if (anchors === undefined) {
    anchors = anchorMap(ca.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []);
    fileAnchors.set(ca, anchors);
  }
  return anchors;
}

function anchorMap(pems: readonly string[]): Anchors {
  const anchors = new Map<string, X509Certificate>();
  for (const pem of pems) {
    try {
      const certificate = new X509Certificate(pem);
      anchors.set(anchorKey(certificate), certificate);
    } catch {
      // Not a certificate OpenSSL can read: it cannot be a root that verification used either.
    }
  }
  return anchors;
}

function anchorKey(certificate: X509Certificate): string {
  const key = certificate.publicKey.export({ type: 'spki', format: 'der' });
  return `${certificate.subject}\n${createHash('sha256').update(key).digest('base64')}`;
}
