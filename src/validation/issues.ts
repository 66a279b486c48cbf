import type { z } from 'zod';

/** One problem with some input: where it is and what was wrong. */
export interface Issue {
  /** Path from the root of the input, e.g. `['checks', 3, 'attributes', 'port']`. */
  readonly path: readonly (string | number)[];
  /** What was expected and what was found: `expected an integer 1–65535, got "http"`. */
  readonly message: string;
}

/** Bad input, with every problem found in it. */
export class ValidationError extends Error {
  readonly issues: readonly Issue[];

  constructor(issues: readonly Issue[], what = 'invalid input') {
    super(`${what}:\n${issues.map((issue) => `  ${formatIssue(issue)}`).join('\n')}`);
    this.name = 'ValidationError';
    this.issues = issues;
  }
}

/** `checks[3].attributes.port: expected …` */
export function formatIssue(issue: Issue): string {
  return issue.path.length === 0 ? issue.message : `${formatPath(issue.path)}: ${issue.message}`;
}

export function formatPath(path: readonly (string | number)[]): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(part)) text += text === '' ? part : `.${part}`;
    else text += `[${JSON.stringify(part)}]`;
  }
  return text;
}

/** Prefixes every issue's path, to place a nested validation inside the whole input. */
export function prefixIssues(prefix: readonly (string | number)[], issues: readonly Issue[]): Issue[] {
  return issues.map((issue) => ({ path: [...prefix, ...issue.path], message: issue.message }));
}

/** Describes a found value for an error message: `"http"`, `-3`, `an array`, `nothing`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (typeof value === 'symbol') return value.toString();
  return 'a function';
}

/** Turns zod's issues into ours, each saying what was expected and what was found. */
export function fromZodError(error: z.ZodError, input: unknown): Issue[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the branch that got furthest rather than one line per branch; but when every branch failed
      // at the union itself, the union's own message (if it was given one) says best what was expected.
      const best = issue.errors.reduce((a, b) => (deepest(b) > deepest(a) ? b : a));
      if (deepest(best) > 0 || issue.message === 'Invalid input') {
        return best.flatMap((inner) => toIssue({ ...inner, path: [...issue.path, ...inner.path] }, input));
      }
    }
    return toIssue(issue, input);
  });
}

function deepest(issues: readonly z.core.$ZodIssue[]): number {
  return Math.max(...issues.map((issue) => issue.path.length));
}

function toIssue(issue: z.core.$ZodIssue, input: unknown): Issue[] {
  const path = issue.path.filter((part): part is string | number => typeof part !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path: [...path, key], message: 'unknown key' }));
  }
  // zod's defaults read "Invalid input: expected number, received string"; ours say what was found.
  const expected = issue.message.replace(/^Invalid (input|option): /, '').replace(/, received \w+$/, '');
  return [{ path, message: `${expected}, got ${describeValue(valueAt(input, path))}` }];
}

function valueAt(input: unknown, path: readonly (string | number)[]): unknown {
  let value = input;
  for (const part of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string | number, unknown>)[part];
  }
  return value;
}
