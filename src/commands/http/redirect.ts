import { toTarget, type HttpTarget } from './attributes.js';

/** One request of a run: the first is the check's own, each redirect followed makes another. */
export interface Hop {
  readonly target: HttpTarget;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer | undefined;
}

/** Headers that carry credentials: not sent on to another origin. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'proxy-authorization']);
/** Headers that describe a request body: dropped when a redirect turns the request into a GET. */
const BODY_HEADERS: ReadonlySet<string> = new Set(['content-length', 'content-type', 'content-encoding', 'transfer-encoding']);

/**
 * The request a redirect (`status` with `location`) leads to, as browsers make it: 303 (and 301/302
 * after a POST) become a GET without a body, and credentials — in the URL or in headers — go only to
 * the origin they were given for. `undefined` when `location` is not an http or https URL.
 */
export function nextHop(hop: Hop, status: number, location: string): Hop | undefined {
  let next: HttpTarget | undefined;
  try {
    next = toTarget(new URL(location, hop.target.display));
  } catch {
    return undefined;
  }
  if (next === undefined) return undefined;
  const sameOrigin = next.origin === hop.target.origin;
  const toGet = status === 303 ? hop.method !== 'GET' && hop.method !== 'HEAD' : (status === 301 || status === 302) && hop.method === 'POST';
  let { headers } = hop;
  if (!sameOrigin || toGet) {
    const kept: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if ((!sameOrigin && CREDENTIAL_HEADERS.has(lower)) || (toGet && BODY_HEADERS.has(lower))) continue;
      kept[name] = value;
    }
    headers = kept;
  }
  // Credentials in the new URL win; the old URL's stay with its origin.
  const auth = next.auth ?? (sameOrigin ? hop.target.auth : undefined);
  const { auth: _given, ...rest } = next;
  return {
    target: auth === undefined ? rest : { ...rest, auth },
    method: toGet ? 'GET' : hop.method,
    headers,
    body: toGet ? undefined : hop.body,
  };
}
