import { validateHeaderValue } from 'node:http';
import { z } from 'zod';
import { HTTP_TOKEN } from '../../core/http-token.js';
import { compileRegexLiteral } from '../../core/regex-literal.js';
import { version } from '../../core/version.js';
import { duration, validRegex } from '../../validation/schema-types.js';
import { checkCertDays, TLS_ONLY, tlsFields, toTlsSettings, type TlsSettings } from '../tls-attributes.js';

/**
 * What `expect` became at load time: a substring, or a compiled regular expression. Plain data, so a
 * reloaded config with the same `expect` compares equal to the running one.
 */
export type ReplyMatcher =
  /** `display`: how messages show it, `"pong"` or `/^\{"ok":true/`. */
  { readonly display: string; readonly needle: string } | { readonly display: string; readonly regex: RegExp };

/** The `websocket` command's attributes after parsing: durations in ms, `expect` compiled, the CA file read. */
export interface WebSocketAttributes {
  /** The URL connected to, `ws://` or `wss://`, credentials included (sent as basic authentication). */
  readonly url: string;
  /** The URL without credentials: what messages show. */
  readonly display: string;
  readonly secure: boolean;
  /** `example.org:8443`, or `example.org` on the default port: what connection messages show. */
  readonly host: string;
  /** The host name or address alone, without brackets: what a name resolution message shows. */
  readonly hostname: string;
  /** Sent with the handshake: `headers` as written, plus `User-Agent: vigil/<version>` unless given. */
  readonly headers: Readonly<Record<string, string>>;
  /** The subprotocol asked for (`Sec-WebSocket-Protocol`); the server must choose it. */
  readonly subprotocol?: string;
  /** A text message sent once connected. */
  readonly send?: string;
  /** What a message from the server must contain or match to be the reply. */
  readonly expect?: ReplyMatcher;
  /** Only with a `wss://` URL. */
  readonly tlsSettings?: TlsSettings;
  /** Connect time (ms, handshake included) at or above which the result is `warn` (`slow-connect`). */
  readonly connectWarnMs?: number;
  /** The same, for `crit`. */
  readonly connectCritMs?: number;
  /** Reply time (ms, from sending to the reply) at or above which the result is `warn` (`slow-reply`). */
  readonly replyWarnMs?: number;
  /** The same, for `crit`. */
  readonly replyCritMs?: number;
}

const USER_AGENT = `vigil/${version}`;
const urlError = 'expected a ws:// or wss:// URL without a #fragment';

const url = z.string({ error: urlError }).transform((text, ctx) => {
  let parsed: URL | undefined;
  try {
    parsed = new URL(text);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') || parsed.hostname === '' || parsed.hash !== '') {
    ctx.addIssue({ code: 'custom', message: urlError, input: text });
    return z.NEVER;
  }
  return {
    href: parsed.href,
    display: `${parsed.protocol}//${parsed.host}${parsed.pathname}${parsed.search}`,
    secure: parsed.protocol === 'wss:',
    host: parsed.host,
    hostname: parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname,
  };
});

// Issues sit at `headers` itself and name the header: at a header's own path the message would quote
// its value (`got "Bearer …"`), and headers are where tokens go.
const headers = z
  .record(z.string(), z.string({ error: 'expected header values (strings)' }), { error: 'expected a mapping of header names to values' })
  .superRefine((value, ctx) => {
    for (const [name, text] of Object.entries(value)) {
      if (!HTTP_TOKEN.test(name)) {
        ctx.addIssue({ code: 'custom', message: `expected header names of letters, digits and !#$%&'*+-.^_\`|~ (not ${JSON.stringify(name)})` });
        continue;
      }
      try {
        validateHeaderValue(name, text);
      } catch {
        ctx.addIssue({ code: 'custom', message: `expected the value of ${name} without control characters such as line breaks` });
      }
    }
  });

const expectError = 'expected a non-empty substring, or a regular expression written /pattern/flags';

function toMatcher(text: string, ctx: z.RefinementCtx<string>): ReplyMatcher {
  const compiled = compileRegexLiteral(text);
  if (compiled === null) return { display: JSON.stringify(text), needle: text };
  return { display: text, regex: validRegex(compiled, text, ctx) };
}

const fields = z.strictObject({
  /** `ws://` or `wss://` URL; `user:password@` in it is sent as basic authentication. */
  url,
  /** Handshake request headers, name → value. */
  headers: headers.optional(),
  /** A subprotocol to ask for; the server must choose it. */
  subprotocol: z
    .string({ error: 'expected a subprotocol name (a token such as graphql-ws)' })
    .regex(HTTP_TOKEN, { error: 'expected a subprotocol name (a token such as graphql-ws)' })
    .optional(),
  /** A text message sent once connected. */
  send: z.string({ error: 'expected a string' }).optional(),
  /** Text a message must contain to be the reply: a substring, or a regular expression written `/pattern/flags`. */
  expect: z.string({ error: expectError }).min(1, { error: expectError }).transform(toMatcher).optional(),
  ...tlsFields,
  /** Connect time (handshake included) at or above which the result is `warn`. */
  connectWarnMs: duration().optional(),
  /** Connect time (handshake included) at or above which the result is `crit`. */
  connectCritMs: duration().optional(),
  /** Reply time at or above which the result is `warn`. */
  replyWarnMs: duration().optional(),
  /** Reply time at or above which the result is `crit`. */
  replyCritMs: duration().optional(),
});

type Fields = z.output<typeof fields>;

function checkTogether(value: Fields, ctx: z.RefinementCtx<Fields>): void {
  for (const [warn, crit] of [
    ['connectWarnMs', 'connectCritMs'],
    ['replyWarnMs', 'replyCritMs'],
  ] as const) {
    const warnMs = value[warn];
    const critMs = value[crit];
    if (warnMs !== undefined && critMs !== undefined && warnMs > critMs) {
      ctx.addIssue({ code: 'custom', path: [warn], message: `expected a duration no longer than ${crit} (${critMs}ms)` });
    }
  }
  if (value.expect === undefined) {
    for (const key of ['replyWarnMs', 'replyCritMs'] as const) {
      if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'expected only with expect (a reply to time)' });
    }
  }
  checkCertDays(value, ctx);
  // A ws:// URL never reaches TLS: these settings would silently do nothing.
  if (!value.url.secure) {
    for (const key of TLS_ONLY) {
      if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'expected only with a wss:// url' });
    }
  }
}

function toAttributes(value: Fields): WebSocketAttributes {
  const sent: Record<string, string> = { ...value.headers };
  if (!Object.keys(sent).some((name) => name.toLowerCase() === 'user-agent')) sent['user-agent'] = USER_AGENT;
  return {
    url: value.url.href,
    display: value.url.display,
    secure: value.url.secure,
    host: value.url.host,
    hostname: value.url.hostname,
    headers: sent,
    ...(value.subprotocol === undefined ? {} : { subprotocol: value.subprotocol }),
    ...(value.send === undefined ? {} : { send: value.send }),
    ...(value.expect === undefined ? {} : { expect: value.expect }),
    ...(value.url.secure ? { tlsSettings: toTlsSettings(value) } : {}),
    ...(value.connectWarnMs === undefined ? {} : { connectWarnMs: value.connectWarnMs }),
    ...(value.connectCritMs === undefined ? {} : { connectCritMs: value.connectCritMs }),
    ...(value.replyWarnMs === undefined ? {} : { replyWarnMs: value.replyWarnMs }),
    ...(value.replyCritMs === undefined ? {} : { replyCritMs: value.replyCritMs }),
  };
}

/** The `websocket` command's attribute schema: validation, defaults and compilation. */
export const webSocketAttributes = fields.superRefine(checkTogether).transform(toAttributes);
