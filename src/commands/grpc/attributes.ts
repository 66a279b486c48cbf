import { z } from 'zod';
import { hostPort } from '../../core/host-port.js';
import { duration, nonEmptyString, port } from '../../validation/schema-types.js';
import { encodeHealthCheckRequest } from './health-messages.js';
import { checkCertDays, TLS_ONLY, tlsFields, toTlsSettings, type TlsSettings } from '../tls-attributes.js';

/** The `grpc` command's attributes after parsing: the request encoded, durations in ms, the CA file read. */
export interface GrpcAttributes {
  readonly host: string;
  readonly port: number;
  /** `host:port` (an IPv6 address in brackets): the channel's target, and what messages show. */
  readonly target: string;
  /** The service asked about; `""` (the default) asks about the server as a whole. */
  readonly service: string;
  /** The HealthCheckRequest for `service`, encoded once. */
  readonly request: Buffer;
  /** Sent with the call, key → value, keys in lower case. */
  readonly metadata: readonly (readonly [string, string])[];
  /** Whether the channel uses TLS; default false (plaintext, h2c). */
  readonly tls: boolean;
  /** The TLS settings; only with `tls`. */
  readonly tlsSettings?: TlsSettings;
  /** Time from the start of the run (connection included) to the answer at or above which the result is `warn` (`slow-response`). */
  readonly responseWarnMs?: number;
  /** The same, for `crit`. */
  readonly responseCritMs?: number;
}

/** What grpc-js accepts as a metadata key (it lower-cases keys first). */
const METADATA_KEY = /^[0-9a-z_.-]+$/;
/** What grpc-js accepts as a text metadata value: printable ASCII. */
const METADATA_VALUE = /^[ -~]*$/;

// Issues sit at `metadata` itself and name the key: at a key's own path the message would quote its
// value (`got "Bearer …"`), and metadata values are where tokens go.
const metadata = z
  .record(z.string(), z.string(), { error: 'expected a mapping of metadata keys to text values' })
  .superRefine((value, ctx) => {
    for (const [key, text] of Object.entries(value)) {
      const lower = key.toLowerCase();
      const name = JSON.stringify(key);
      if (!METADATA_KEY.test(lower)) {
        ctx.addIssue({ code: 'custom', message: `expected keys of letters, digits, -, _ and . (not ${name})` });
      } else if (lower.startsWith('grpc-')) {
        ctx.addIssue({ code: 'custom', message: `expected keys that do not start with grpc-, which gRPC reserves (not ${name})` });
      } else if (lower.endsWith('-bin')) {
        ctx.addIssue({ code: 'custom', message: `expected text keys: binary (-bin) metadata is not supported (not ${name})` });
      } else if (!METADATA_VALUE.test(text)) {
        ctx.addIssue({ code: 'custom', message: `expected printable ASCII in the value of ${name} (no line breaks or other control characters)` });
      }
    }
  });

const fields = z.strictObject({
  /** Host name or IP address of the gRPC server. */
  host: nonEmptyString('a host name or IP address'),
  /** Its port, 1–65535. */
  port: port(),
  /** The service to ask about (`package.Service`); default `""`, the server as a whole. */
  service: z.string({ error: 'expected a service name (a string)' }).default(''),
  /** Connect with TLS; default false (plaintext). */
  tls: z.boolean({ error: 'expected true or false' }).default(false),
  ...tlsFields,
  /** Metadata sent with the call (headers), key → value. */
  metadata: metadata.optional(),
  /** Response time at or above which the result is `warn`. */
  responseWarnMs: duration().optional(),
  /** Response time at or above which the result is `crit`. */
  responseCritMs: duration().optional(),
});

type Fields = z.output<typeof fields>;

function checkTogether(value: Fields, ctx: z.RefinementCtx<Fields>): void {
  const { responseWarnMs, responseCritMs } = value;
  if (responseWarnMs !== undefined && responseCritMs !== undefined && responseWarnMs > responseCritMs) {
    ctx.addIssue({ code: 'custom', path: ['responseWarnMs'], message: `expected a duration no longer than responseCritMs (${responseCritMs}ms)` });
  }
  checkCertDays(value, ctx);
  // Without TLS these settings would silently do nothing.
  if (!value.tls) {
    for (const key of TLS_ONLY) {
      if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'expected only with tls: true' });
    }
  }
}

function toAttributes(value: Fields): GrpcAttributes {
  const host = value.host.startsWith('[') && value.host.endsWith(']') ? value.host.slice(1, -1) : value.host;
  return {
    host,
    port: value.port,
    target: hostPort(host, value.port),
    service: value.service,
    request: encodeHealthCheckRequest(value.service),
    metadata: Object.entries(value.metadata ?? {}).map(([key, text]) => [key.toLowerCase(), text] as const),
    tls: value.tls,
    ...(value.tls ? { tlsSettings: toTlsSettings(value) } : {}),
    ...(value.responseWarnMs === undefined ? {} : { responseWarnMs: value.responseWarnMs }),
    ...(value.responseCritMs === undefined ? {} : { responseCritMs: value.responseCritMs }),
  };
}

/** The `grpc` command's attribute schema: validation, defaults and the encoded request. */
export const grpcAttributes = fields.superRefine(checkTogether).transform(toAttributes);
