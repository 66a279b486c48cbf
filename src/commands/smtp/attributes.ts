import { z } from 'zod';
import { duration, nonEmptyString, port } from '../../validation/schema-types.js';
import { checkCertDays, TLS_ONLY, tlsFields, toTlsSettings } from '../tls-attributes.js';
import { DEFAULT_MIN_PROTOCOL, minProtocolField, type TlsVerification } from '../tls/session.js';

/** How the `smtp` command's connection is secured: not at all, STARTTLS after EHLO, or TLS from the first byte (SMTPS). */
export type SmtpSecurity = 'none' | 'starttls' | 'tls';

/** The `smtp` command's attributes after parsing. */
export interface SmtpAttributes {
  readonly host: string;
  /** Default 25, or 465 with `tls: true`. */
  readonly port: number;
  readonly security: SmtpSecurity;
  /** How the TLS of `starttls` or `tls` is verified; defaults when neither is asked. */
  readonly tls: TlsVerification;
  /** The name given in EHLO; absent: this machine's host name, at run time. */
  readonly helo?: string;
  /** AUTH with these, over TLS only. */
  readonly auth?: { readonly username: string; readonly password: string };
  readonly mailFrom?: string;
  readonly rcptTo?: string;
  /** Total time (ms) at or above which the result is `warn` (`slow-response`). */
  readonly responseWarnMs?: number;
  /** Total time (ms) at or above which the result is `crit` (`slow-response`). */
  readonly responseCritMs?: number;
}

const HELO = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\]|\[IPv6:[0-9A-Fa-f:.]+\])$/;
const heloError = 'expected a host name or an address literal like [192.0.2.1] for EHLO';
/** An address as MAIL FROM and RCPT TO put it between angle brackets: no spaces, controls or brackets to break the command. */
const ADDRESS = /^[^\s<>\p{Cc}]{1,254}$/u;
const addressError = 'expected a mail address (no spaces or angle brackets, at most 254 characters)';
const passwordError = 'expected a password (a string; write it as ${SMTP_PASSWORD} to take it from the environment)';

const fields = z.strictObject({
  /** Host name or IP address of the mail server. */
  host: nonEmptyString('a host name or IP address'),
  /** TCP port; default 25, or 465 with `tls: true`. */
  port: port().optional(),
  /** Upgrade with STARTTLS after EHLO, then EHLO again; default false. */
  starttls: z.boolean({ error: 'expected true or false' }).optional(),
  /** TLS from the first byte (SMTPS, usually port 465); default false. */
  tls: z.boolean({ error: 'expected true or false' }).optional(),
  ...tlsFields,
  /** The oldest TLS protocol accepted; default TLSv1.2. */
  minProtocol: minProtocolField,
  /** The name given in EHLO; default this machine's host name. */
  helo: z.string({ error: heloError }).regex(HELO, { error: heloError }).optional(),
  /** AUTH as this user (PLAIN or LOGIN, as the server offers), over TLS only. */
  username: nonEmptyString('a user name').optional(),
  /**
   * The password for AUTH; take it from the environment (`${SMTP_PASSWORD}`). A whole reference is read
   * as a YAML scalar, so numbers and booleans are accepted and written back as text.
   */
  password: z
    .union([z.string(), z.number(), z.boolean()], { error: passwordError })
    .transform((value) => String(value))
    .refine((value) => value !== '', { error: passwordError })
    .optional(),
  /** Probe: MAIL FROM this address (then RSET, no mail is sent). */
  mailFrom: z.string({ error: addressError }).regex(ADDRESS, { error: addressError }).optional(),
  /** Probe: RCPT TO this address, after MAIL FROM `mailFrom`. */
  rcptTo: z.string({ error: addressError }).regex(ADDRESS, { error: addressError }).optional(),
  /** Total time at or above which the result is `warn`. */
  responseWarnMs: duration().optional(),
  /** Total time at or above which the result is `crit`. */
  responseCritMs: duration().optional(),
});

type Fields = z.output<typeof fields>;

function checkTogether(value: Fields, ctx: z.RefinementCtx<Fields>): void {
  checkCertDays(value, ctx);
  const secured = value.starttls === true || value.tls === true;
  if (value.starttls === true && value.tls === true) {
    ctx.addIssue({ code: 'custom', path: ['starttls'], message: 'expected starttls or tls, not both (tls is TLS from the first byte)' });
  }
  if (!secured) {
    for (const key of [...TLS_ONLY, 'minProtocol'] as const) {
      if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'expected only with starttls: true or tls: true' });
    }
  }
  if (value.username !== undefined && value.password === undefined) {
    ctx.addIssue({ code: 'custom', path: ['password'], message: 'expected a password alongside username' });
  }
  if (value.password !== undefined && value.username === undefined) {
    ctx.addIssue({ code: 'custom', path: ['username'], message: 'expected a username alongside password' });
  }
  if (value.username !== undefined && !secured) {
    ctx.addIssue({ code: 'custom', path: ['username'], message: 'expected starttls: true or tls: true with username: AUTH would send the password in clear' });
  }
  if (value.rcptTo !== undefined && value.mailFrom === undefined) {
    ctx.addIssue({ code: 'custom', path: ['mailFrom'], message: 'expected a sender alongside rcptTo (RCPT TO follows MAIL FROM)' });
  }
  const { responseWarnMs, responseCritMs } = value;
  if (responseWarnMs !== undefined && responseCritMs !== undefined && responseWarnMs > responseCritMs) {
    ctx.addIssue({ code: 'custom', path: ['responseWarnMs'], message: `expected a duration no longer than responseCritMs (${responseCritMs}ms)` });
  }
}

function toAttributes(value: Fields): SmtpAttributes {
  const security: SmtpSecurity = value.tls === true ? 'tls' : value.starttls === true ? 'starttls' : 'none';
  return {
    host: value.host,
    port: value.port ?? (security === 'tls' ? 465 : 25),
    security,
    tls: { ...toTlsSettings(value), minProtocol: value.minProtocol ?? DEFAULT_MIN_PROTOCOL },
    ...(value.helo === undefined ? {} : { helo: value.helo }),
    ...(value.username === undefined || value.password === undefined ? {} : { auth: { username: value.username, password: value.password } }),
    ...(value.mailFrom === undefined ? {} : { mailFrom: value.mailFrom }),
    ...(value.rcptTo === undefined ? {} : { rcptTo: value.rcptTo }),
    ...(value.responseWarnMs === undefined ? {} : { responseWarnMs: value.responseWarnMs }),
    ...(value.responseCritMs === undefined ? {} : { responseCritMs: value.responseCritMs }),
  };
}

/** The `smtp` command's attribute schema: validation, defaults, the CA file read. */
export const smtpAttributes = fields.superRefine(checkTogether).transform(toAttributes);
