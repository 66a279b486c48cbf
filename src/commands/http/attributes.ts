import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { resolve } from 'node:path';
import { z } from 'zod';
import { version } from '../../core/version.js';
import { duration, integer, nonEmptyString } from '../../validation/schema-types.js';
import {
  compilePattern,
  defaultStatusExpectation,
  parseJsonPath,
  statusExpectation,
  toNeedle,
  type BodyNeedle,
  type HeaderExpectation,
  type JsonExpectation,
  type StatusExpectation,
} from './expectations.js';
import { HTTP_TOKEN } from '../../core/http-token.js';

/** Where one request goes: the parts of its URL that `http.request` takes, worked out once. */
export interface HttpTarget {
  readonly protocol: 'http:' | 'https:';
  /** Without the brackets of an IPv6 address. */
  readonly hostname: string;
  readonly port: number;
  /** Path and query: `/health?full=1`. */
  readonly path: string;
  /** `user:password` from the URL, decoded, for basic authentication. */
  readonly auth?: string;
  /** `https://example.org:8443`: a redirect elsewhere drops credentials. */
  readonly origin: string;
  /** The URL without credentials or fragment: what messages show, and the base of a relative redirect. */
  readonly display: string;
  /** `example.org:8443`, or `example.org` on the default port: what connection messages show. */
  readonly host: string;
}

/** The `http` command's attributes after parsing: durations in ms, patterns compiled, the CA file read. */
export interface HttpAttributes {
  readonly target: HttpTarget;
  /** Upper-cased; default `GET`. */
  readonly method: string;
  /** What is sent: `headers` as written, plus `User-Agent: vigil/<version>` and `Content-Length` unless given. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  readonly expectStatus: StatusExpectation;
  readonly bodyContains?: BodyNeedle;
  readonly bodyMatches?: RegExp;
  readonly json?: JsonExpectation;
  readonly headerMatches?: readonly HeaderExpectation[];
  /** Most redirects followed; 0 (the default) follows none. */
  readonly followRedirects: number;
  /** Verify the server's certificate chain and host name; default true. */
  readonly tlsVerify: boolean;
  /** The contents of `caFile`: the CAs trusted instead of the system's. */
  readonly ca?: Buffer;
  /** `caFile`, resolved to an absolute path. */
  readonly caFile?: string;
  /** Reuse connections through the command's keep-alive agent; default false (a fresh connection per run). */
  readonly keepAlive: boolean;
  /** Total time (ms) at or above which the result is `warn` (`slow-response`). */
  readonly responseWarnMs?: number;
  /** Total time (ms) at or above which the result is `crit` (`slow-response`). */
  readonly responseCritMs?: number;
  /** Days of certificate validity under which the result is `warn` (`cert-expiring`); default 14. */
  readonly certWarnDays: number;
  /** Days of certificate validity under which the result is `crit` (`cert-expiring`); default 7. */
  readonly certCritDays: number;
  /** Most body bytes read; default 1 MiB. */
  readonly maxBodyBytes: number;
  /** Whether the body's bytes are kept for `bodyContains`/`bodyMatches`/`jsonPath`, or only counted. */
  readonly keepBody: boolean;
}

/** The default of `maxBodyBytes`. */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;
/** The largest `maxBodyBytes`: a check reads a health page, not a download. */
const MAX_BODY_BYTES = 64 * 1_048_576;
const DEFAULT_CERT_WARN_DAYS = 14;
const DEFAULT_CERT_CRIT_DAYS = 7;
const USER_AGENT = `vigil/${version}`;

const urlError = 'expected an http:// or https:// URL';
/** An RFC 9110 token: what a method name may be made of. */

/** Works out a request's target from a URL; `undefined` when it is not http or https. */
export function toTarget(url: URL): HttpTarget | undefined {
  const { protocol } = url;
  if ((protocol !== 'http:' && protocol !== 'https:') || url.hostname === '') return undefined;
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (protocol === 'https:' ? 443 : 80) : Number(url.port);
  const auth = url.username === '' && url.password === '' ? undefined : `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  const path = `${url.pathname}${url.search}`;
  return {
    protocol,
    hostname,
    port,
    path,
    ...(auth === undefined ? {} : { auth }),
    origin: url.origin,
    display: `${url.origin}${path}`,
    host: url.host,
  };
}

const url = z.string({ error: urlError }).transform((text, ctx): HttpTarget => {
  let target: HttpTarget | undefined;
  try {
    target = toTarget(new URL(text));
  } catch {
    target = undefined;
  }
  if (target === undefined) {
    ctx.addIssue({ code: 'custom', message: urlError, input: text });
    return z.NEVER;
  }
  return target;
});

// The issue sits at the header's path (which shows its name); what follows `got` is its value.
const HEADER_NAME_ERROR = "expected a key that is a header name (letters, digits and !#$%&'*+-.^_`|~)";

const headers = z.record(z.string(), z.string({ error: 'expected a header value (a string)' }), { error: 'expected a mapping of header names to values' }).superRefine((value, ctx) => {
  for (const [name, text] of Object.entries(value)) {
    try {
      validateHeaderName(name);
    } catch {
      ctx.addIssue({ code: 'custom', path: [name], message: HEADER_NAME_ERROR });
      continue;
    }
    try {
      validateHeaderValue(name, text);
    } catch {
      ctx.addIssue({ code: 'custom', path: [name], message: 'expected a header value without control characters such as line breaks' });
    }
  }
});

const headerMatches = z
  .record(z.string(), z.string({ error: 'expected a regular expression (a string)' }).transform(compilePattern), {
    error: 'expected a mapping of header names to regular expressions',
  })
  .superRefine((value, ctx) => {
    for (const name of Object.keys(value)) {
      try {
        validateHeaderName(name);
      } catch {
        ctx.addIssue({ code: 'custom', path: [name], message: HEADER_NAME_ERROR });
      }
    }
  });

const caFileError = 'expected a readable PEM file of CA certificates';

/** Reads `caFile` at load time, so that a missing or unreadable file is a config error that names it. */
function readCaFile(path: string, ctx: z.RefinementCtx<string>): { readonly file: string; readonly ca: Buffer } {
  const file = resolve(path);
  let ca: Buffer;
  try {
    ca = readFileSync(file);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `${caFileError} (cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, input: path });
    return z.NEVER;
  }
  try {
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no certificate in it');
    new X509Certificate(ca);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `${caFileError} (${file}: ${(error as Error).message})`, input: path });
    return z.NEVER;
  }
  return { file, ca };
}

const fields = z.strictObject({
  /** The URL to request: `http://` or `https://`, with credentials for basic authentication if need be. */
  url,
  /** Request method; default `GET`. */
  method: z
    .string({ error: 'expected an HTTP method such as GET, HEAD or POST' })
    .regex(HTTP_TOKEN, { error: 'expected an HTTP method such as GET, HEAD or POST' })
    .transform((method) => method.toUpperCase())
    .default('GET'),
  /** Request headers, name → value. */
  headers: headers.optional(),
  /** Request body, sent as UTF-8. */
  body: z.string({ error: 'expected a string' }).optional(),
  /** Acceptable statuses: codes and classes, `[200, 3xx]`; default `[2xx, 3xx]`, or `[2xx]` when redirects are followed. */
  expectStatus: statusExpectation.optional(),
  /** Text the body must contain. */
  bodyContains: nonEmptyString().transform(toNeedle).optional(),
  /** A regular expression (source, no flags) the body must match. */
  bodyMatches: z.string({ error: 'expected a regular expression (a string)' }).transform(compilePattern).optional(),
  /** A path into a JSON body (`status`, `data.items[0].name`) that must exist, and equal `jsonEquals` if given. */
  jsonPath: z
    .string({ error: 'expected a path like status or data.items[0].name' })
    .transform((path, ctx) => ({ path, segments: parseJsonPath(path, ctx) }))
    .optional(),
  /** The JSON value expected at `jsonPath`. */
  jsonEquals: z.json({ error: 'expected a JSON value' }).optional(),
  /** Response headers that must match, name → regular expression. */
  headerMatches: headerMatches.optional(),
  /** Most redirects to follow; default 0 (none). */
  followRedirects: integer(0, 20).default(0),
  /** Verify the certificate chain and host name; default true. */
  tlsVerify: z.boolean({ error: 'expected true or false' }).optional(),
  /** A PEM file of CA certificates trusted instead of the system's; read at load time. */
  caFile: nonEmptyString('a path to a PEM file of CA certificates').transform(readCaFile).optional(),
  /** Reuse connections between runs; default false. */
  keepAlive: z.boolean({ error: 'expected true or false' }).default(false),
  /** Total time at or above which the result is `warn`. */
  responseWarnMs: duration().optional(),
  /** Total time at or above which the result is `crit`. */
  responseCritMs: duration().optional(),
  /** Days of certificate validity under which the result is `warn`; default 14. */
  certWarnDays: integer(0, 3650).optional(),
  /** Days of certificate validity under which the result is `crit`; default 7. */
  certCritDays: integer(0, 3650).optional(),
  /** Most body bytes read; default 1 MiB. */
  maxBodyBytes: integer(1, MAX_BODY_BYTES).default(DEFAULT_MAX_BODY_BYTES),
});

type Fields = z.output<typeof fields>;

/** Attributes that only make sense for a TLS connection. */
const TLS_ONLY = ['tlsVerify', 'caFile', 'certWarnDays', 'certCritDays'] as const;

function checkTogether(value: Fields, ctx: z.RefinementCtx<Fields>): void {
  const { responseWarnMs, responseCritMs, certWarnDays, certCritDays } = value;
  if (responseWarnMs !== undefined && responseCritMs !== undefined && responseWarnMs > responseCritMs) {
    ctx.addIssue({ code: 'custom', path: ['responseWarnMs'], message: `expected a duration no longer than responseCritMs (${responseCritMs}ms)` });
  }
  if (certWarnDays !== undefined && certCritDays !== undefined && certWarnDays < certCritDays) {
    ctx.addIssue({ code: 'custom', path: ['certWarnDays'], message: `expected at least certCritDays (${certCritDays})` });
  }
  if (value.jsonEquals !== undefined && value.jsonPath === undefined) {
    ctx.addIssue({ code: 'custom', path: ['jsonPath'], message: 'expected a path like status or data.items[0].name, to compare with jsonEquals' });
  }
  // An http URL reaches TLS only through a redirect; without one these settings would silently do nothing.
  if (value.url.protocol === 'http:' && value.followRedirects === 0) {
    for (const key of TLS_ONLY) {
      if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'expected only with an https:// url (or with followRedirects, which may lead to one)' });
    }
  }
}

function toAttributes(value: Fields): HttpAttributes {
  const sent: Record<string, string> = { ...value.headers };
  const given = new Set(Object.keys(sent).map((name) => name.toLowerCase()));
  if (!given.has('user-agent')) sent['user-agent'] = USER_AGENT;
  const body = value.body === undefined ? undefined : Buffer.from(value.body, 'utf8');
  if (body !== undefined && !given.has('content-length') && !given.has('transfer-encoding')) sent['content-length'] = String(body.length);

  // A threshold given alone moves the other's default out of its way rather than making one unreachable.
  const certCritDays = value.certCritDays ?? Math.min(DEFAULT_CERT_CRIT_DAYS, value.certWarnDays ?? DEFAULT_CERT_WARN_DAYS);
  const certWarnDays = value.certWarnDays ?? Math.max(DEFAULT_CERT_WARN_DAYS, certCritDays);
  const json: JsonExpectation | undefined =
    value.jsonPath === undefined
      ? undefined
      : { path: value.jsonPath.path, segments: value.jsonPath.segments, ...(value.jsonEquals === undefined ? {} : { expected: { value: value.jsonEquals } }) };
  const headerMatchList =
    value.headerMatches === undefined ? undefined : Object.entries(value.headerMatches).map(([name, regex]) => ({ name: name.toLowerCase(), regex }));

  return {
    target: value.url,
    method: value.method,
    headers: sent,
    ...(body === undefined ? {} : { body }),
    expectStatus: value.expectStatus ?? defaultStatusExpectation(value.followRedirects),
    ...(value.bodyContains === undefined ? {} : { bodyContains: value.bodyContains }),
    ...(value.bodyMatches === undefined ? {} : { bodyMatches: value.bodyMatches }),
    ...(json === undefined ? {} : { json }),
    ...(headerMatchList === undefined ? {} : { headerMatches: headerMatchList }),
    followRedirects: value.followRedirects,
    tlsVerify: value.tlsVerify ?? true,
    ...(value.caFile === undefined ? {} : { ca: value.caFile.ca, caFile: value.caFile.file }),
    keepAlive: value.keepAlive,
    ...(value.responseWarnMs === undefined ? {} : { responseWarnMs: value.responseWarnMs }),
    ...(value.responseCritMs === undefined ? {} : { responseCritMs: value.responseCritMs }),
    certWarnDays,
    certCritDays,
    maxBodyBytes: value.maxBodyBytes,
    keepBody: value.bodyContains !== undefined || value.bodyMatches !== undefined || json !== undefined,
  };
}

/** The `http` command's attribute schema: validation, defaults and compilation. */
export const httpAttributes = fields.superRefine(checkTogether).transform(toAttributes);
