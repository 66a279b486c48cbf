import { createHash, timingSafeEqual } from 'node:crypto';

/** Whether a request may go on, and if not, what to answer. */
export type AuthDecision =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** 401 without a valid token; 403 when no token is configured, so nothing can pass. */
      readonly status: 401 | 403;
      /** One line for the error answer; never contains what the client sent. */
      readonly details: string;
      /** The `WWW-Authenticate` header of a 401. */
      readonly challenge?: string;
    };

/**
 * A checker of `Authorization: Bearer <token>` headers against the configured API token (`server.apiToken`).
 * Tokens are compared as SHA-256 digests with `timingSafeEqual`: equal lengths, so neither the token's
 * content nor its length leaks through timing. With `token` null every request is refused (403).
 */
export function bearerTokenChecker(token: string | null): (authorization: string | undefined) => AuthDecision {
  if (token === null) {
    const refused: AuthDecision = {
      ok: false,
      status: 403,
      details: 'the API token is not configured (server.apiToken), so this request is refused; set it to use the API',
    };
    return () => refused;
  }
  const expected = digest(token);
  return (authorization) => {
    if (authorization === undefined || authorization.trim() === '') {
      return { ok: false, status: 401, details: 'missing API token: send the header Authorization: Bearer <token>', challenge: 'Bearer realm="vigil"' };
    }
    const match = BEARER.exec(authorization);
    if (!match) {
      // Name the scheme that arrived, never the credentials after it.
      const scheme = /^\S+/.exec(authorization.trim())?.[0] ?? '';
      const got = scheme.length <= 20 && /^[A-Za-z-]+$/.test(scheme) ? `a ${scheme} authorization` : 'something else';
      return { ok: false, status: 401, details: `expected the header Authorization: Bearer <token>, got ${got}`, challenge: 'Bearer realm="vigil"' };
    }
    if (!timingSafeEqual(digest(match[1] as string), expected)) {
      return { ok: false, status: 401, details: 'invalid API token', challenge: 'Bearer realm="vigil", error="invalid_token"' };
    }
    return ALLOWED;
  };
}

const BEARER = /^\s*Bearer\s+(\S+)\s*$/i;
const ALLOWED: AuthDecision = { ok: true };

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
