import { isScalar, parseDocument } from 'yaml';
import type { Issue } from '../validation/issues.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_REFERENCE = /\$\$\{|\$\{([^}]*)(\}?)/g;
const WHOLE_REFERENCE = /^\$\{[^}]*\}$/;

/**
 * A copy of `value` with `${VAR}` and `${VAR:-default}` substituted in every string (`$${` for a literal `${`);
 * a string that is one whole reference is read as a scalar. Problems go to `issues` at `path`, and such a
 * string is kept as it was. `ancestors` are the objects being copied around `value`, to refuse a cycle.
 */
export function substituteEnv(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
  path: (string | number)[],
  issues: Issue[],
  ancestors: object[],
): unknown {
  if (typeof value === 'string') return substituteString(value, env, path, issues);
  if (value === null || typeof value !== 'object') return value;
  if (ancestors.includes(value)) {
    issues.push({ path, message: 'expected a value, got an alias to itself (a circular structure)' });
    return null;
  }
  const inside = [...ancestors, value];
  if (Array.isArray(value)) return value.map((item: unknown, i) => substituteEnv(item, env, [...path, i], issues, inside));
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substituteEnv(item, env, [...path, key], issues, inside)]));
}

function substituteString(text: string, env: Readonly<Record<string, string | undefined>>, path: (string | number)[], issues: Issue[]): unknown {
  if (!text.includes('${')) return text;
  let failed = false;
  const fail = (message: string): void => {
    failed = true;
    issues.push({ path, message });
  };
  const result = text.replace(ENV_REFERENCE, (match: string, body: string | undefined, close: string | undefined) => {
    if (match === '$${') return '${';
    if (body === undefined || close !== '}') {
      fail(`expected \${VAR} or \${VAR:-default} (or $\${ for a literal \${), got an unterminated ${JSON.stringify(match)}`);
      return match;
    }
    const separator = body.indexOf(':-');
    const name = separator === -1 ? body : body.slice(0, separator);
    if (!ENV_NAME.test(name)) {
      fail(`expected \${VAR} or \${VAR:-default} (or $\${ for a literal \${), got ${JSON.stringify(match)}`);
      return match;
    }
    const found = env[name];
    if (separator !== -1) return found === undefined || found === '' ? body.slice(separator + 2) : found;
    if (found !== undefined) return found;
    fail(`environment variable ${name} is not set`);
    return match;
  });
  if (failed) return text;
  return WHOLE_REFERENCE.test(text) ? readScalar(result) : result;
}

/**
 * `8080` → 8080, `true` → true, `null` → null; anything else (including a YAML string) stays the text it
 * was. Only a value written exactly as YAML would write it back becomes one: a secret like `007`, `1e5`
 * or `0x1F` stays the text it is (as a number it would lose its characters), and an empty variable
 * stays "" rather than null.
 */
function readScalar(text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0 || !isScalar(doc.contents)) return text;
  const value = doc.contents.value;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value) === text ? value : text;
  return text;
}
