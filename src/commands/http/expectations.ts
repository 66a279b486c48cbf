import type { IncomingHttpHeaders } from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { compileRegex } from '../../core/regex-literal.js';
import { validRegex } from '../../validation/schema-types.js';

/**
 * What the `http` command expects of a response — status, headers, body — compiled at load time into
 * plain data (numbers, strings, Buffers, RegExps), and the checks that hold a response against it.
 */

/** What `expectStatus` became at load time: exact codes and classes (`2` for `2xx`). */
export interface StatusExpectation {
  /** How the list reads in messages, as written: `200, 3xx`. */
  readonly display: string;
  readonly codes: readonly number[];
  /** Hundreds digit of each class pattern: `[2, 3]` for `2xx, 3xx`. */
  readonly classes: readonly number[];
}

/** A substring the body must contain, as bytes, so a run compares bytes without decoding the body. */
export interface BodyNeedle {
  /** `"ok"`: the text, quoted, for messages. */
  readonly display: string;
  readonly needle: Buffer;
}

/** A value in a JSON body that must exist (`jsonPath`) and, when `expected` is set, equal it (`jsonEquals`). */
export interface JsonExpectation {
  /** The path as written: `data.items[0].name`. */
  readonly path: string;
  /** Keys (strings) and array indexes (numbers), from the document's root. */
  readonly segments: readonly (string | number)[];
  /** Wrapped, so that `jsonEquals: null` differs from no `jsonEquals`. */
  readonly expected?: { readonly value: unknown };
}

/** A response header that must be present and match `regex`. */
export interface HeaderExpectation {
  /** Lower-cased, as Node gives response headers. */
  readonly name: string;
  readonly regex: RegExp;
}

/** The body and header expectations of a check, as `findMismatch` reads them. */
export interface ResponseExpectations {
  readonly headerMatches?: readonly HeaderExpectation[];
  readonly bodyContains?: BodyNeedle;
  readonly bodyMatches?: RegExp;
  readonly json?: JsonExpectation;
}

/** How many characters of a body or header value a mismatch message quotes. */
const QUOTE_CHARS = 80;

/** Whether `status` is one of the expected codes or in one of the expected classes. */
export function statusMatches(expectation: StatusExpectation, status: number): boolean {
  return expectation.classes.includes(Math.floor(status / 100)) || expectation.codes.includes(status);
}

type StatusPattern = { readonly code: number } | { readonly class: number };

const STATUS_CODE = /^[1-5]\d\d$/;
const STATUS_CLASS = /^([1-5])xx$/i;
const statusError = 'expected a status code 100–599 or a class 1xx–5xx';

const statusPattern = z.union([z.number(), z.string()], { error: statusError }).transform((value, ctx): StatusPattern => {
  const text = String(value).trim();
  if (STATUS_CODE.test(text)) return { code: Number(text) };
  const byClass = STATUS_CLASS.exec(text);
  if (byClass !== null) return { class: Number(byClass[1]) };
  ctx.addIssue({ code: 'custom', message: statusError, input: value });
  return z.NEVER;
});

function toStatusExpectation(patterns: readonly StatusPattern[]): StatusExpectation {
  const codes: number[] = [];
  const classes: number[] = [];
  for (const pattern of patterns) {
    if ('code' in pattern) codes.push(pattern.code);
    else classes.push(pattern.class);
  }
  return { display: patterns.map((pattern) => ('code' in pattern ? String(pattern.code) : `${pattern.class}xx`)).join(', '), codes, classes };
}

/** `expectStatus`: a list like `[200, 3xx]`, or one code or class on its own. */
export const statusExpectation = z.union([
  statusPattern.transform((pattern) => toStatusExpectation([pattern])),
  z.array(statusPattern, { error: `${statusError}, or a list of them` }).min(1, { error: 'expected at least one status code or class' }).transform(toStatusExpectation),
]);

/** Statuses accepted when `expectStatus` is not given: a redirect is a fine answer unless redirects are followed. */
export function defaultStatusExpectation(followRedirects: number): StatusExpectation {
  return followRedirects > 0 ? { display: '2xx', codes: [], classes: [2] } : { display: '2xx, 3xx', codes: [], classes: [2, 3] };
}

/** A regular expression source string compiled once at load time (no flags: `test` keeps no state). */
export function compilePattern(source: string, ctx: z.RefinementCtx<string>): RegExp {
  return validRegex(compileRegex(source), source, ctx);
}

/** `bodyContains` as the bytes a run looks for. */
export function toNeedle(text: string): BodyNeedle {
  return { display: JSON.stringify(text), needle: Buffer.from(text, 'utf8') };
}

const jsonPathError = 'expected a path like status, data.items[0].name or $["a key"]';
/** One segment after the first: `.key`, `[3]`, `["key"]` or `['key']`. */
const JSON_PATH_SEGMENT = /\.([^.[\]'"]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\['([^']*)'\]/y;

/** Parses `jsonPath` into segments; a leading `$` (the root) is optional, `$` alone is the whole document. */
export function parseJsonPath(path: string, ctx: z.RefinementCtx<string>): readonly (string | number)[] {
  // Without `$`, a path starts with a key (`status`) or an index (`[0]`): read it as if `$.` preceded it.
  const rest = path.startsWith('$') ? path.slice(1) : path.startsWith('[') ? path : `.${path}`;
  const segments: (string | number)[] = [];
  let at = 0;
  while (at < rest.length) {
    JSON_PATH_SEGMENT.lastIndex = at;
    const match = JSON_PATH_SEGMENT.exec(rest);
    if (match === null) {
      ctx.addIssue({ code: 'custom', message: jsonPathError, input: path });
      return z.NEVER;
    }
    const [, key, index, quoted, singleQuoted] = match;
    if (key !== undefined) segments.push(key);
    else if (index !== undefined) segments.push(Number(index));
    else if (quoted !== undefined) segments.push(JSON.parse(quoted) as string);
    else segments.push(singleQuoted as string);
    at = JSON_PATH_SEGMENT.lastIndex;
  }
  return segments;
}

const MISSING = Symbol('missing');

/** The value at `segments` in a parsed JSON document, or `MISSING`. */
function valueAt(document: unknown, segments: readonly (string | number)[]): unknown {
  let value = document;
  for (const segment of segments) {
    if (typeof segment === 'number') {
      if (!Array.isArray(value) || segment >= value.length) return MISSING;
      value = value[segment];
    } else {
      if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, segment)) return MISSING;
      value = (value as Record<string, unknown>)[segment];
    }
  }
  return value;
}

/**
 * Holds a response against the expectations, cheapest first: headers, substring, regular expression,
 * JSON. Returns `undefined` when all hold, else what did not and what was found, in one line.
 * `body` is what was read: at most `maxBodyBytes`, `truncated` when there was more.
 */
export function findMismatch(expectations: ResponseExpectations, headers: IncomingHttpHeaders, body: Buffer, truncated: boolean): string | undefined {
  if (expectations.headerMatches !== undefined) {
    for (const { name, regex } of expectations.headerMatches) {
      const value = headers[name];
      if (value === undefined) return `header ${name} is missing, expected it to match /${regex.source}/`;
      const text = Array.isArray(value) ? value.join(', ') : value;
      if (!regex.test(text)) return `header ${name} does not match /${regex.source}/, got ${quote(text)}`;
    }
  }
  const cut = truncated ? ` (only the first ${body.length} bytes were read: maxBodyBytes)` : '';
  const { bodyContains, bodyMatches, json } = expectations;
  if (bodyContains !== undefined && !body.includes(bodyContains.needle)) {
    // Decode a little more than is quoted (enough for multi-byte characters), not a whole large body.
    return `body does not contain ${bodyContains.display}, got ${quoteBody(body.toString('utf8', 0, QUOTE_CHARS * 4))}${cut}`;
  }
  if (bodyMatches === undefined && json === undefined) return undefined;
  const text = body.toString('utf8');
  if (bodyMatches !== undefined && !bodyMatches.test(text)) {
    return `body does not match /${bodyMatches.source}/, got ${quoteBody(text)}${cut}`;
  }
  if (json === undefined) return undefined;
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    return `body is not JSON (${(error as Error).message}), got ${quoteBody(text)}${cut}`;
  }
  const found = valueAt(document, json.segments);
  if (found === MISSING) return `JSON body has nothing at ${json.path}`;
  if (json.expected !== undefined && !isDeepStrictEqual(found, json.expected.value)) {
    return `JSON at ${json.path} is ${clip(JSON.stringify(found))}, expected ${clip(JSON.stringify(json.expected.value))}`;
  }
  return undefined;
}

function quoteBody(text: string): string {
  return text.length === 0 ? 'an empty body' : quote(text);
}

/** `"text"` as a JSON string, cut at 80 characters with `…` after the closing quote. */
function quote(text: string): string {
  return text.length > QUOTE_CHARS ? `${JSON.stringify(text.slice(0, QUOTE_CHARS))}…` : JSON.stringify(text);
}

/** Text cut at 80 characters with `…`. */
function clip(text: string): string {
  return text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text;
}
