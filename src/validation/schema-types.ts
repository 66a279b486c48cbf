import { z } from 'zod';

/**
 * The vocabulary of config and attribute schemas: each type says in one phrase what it expects, so a
 * problem reads `expected an integer 1–65535, got "http"` whichever rule failed.
 */

export function integer(min: number, max: number = Number.MAX_SAFE_INTEGER): z.ZodNumber {
  const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `${min}–${max}`;
  const error = `expected an integer ${range}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

export function port(): z.ZodNumber {
  return integer(1, 65535);
}

export function nonEmptyString(what = 'a non-empty string'): z.ZodString {
  return z.string({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Parses `250ms`, `30s`, `5m`, `1h`, `1d` or a number of milliseconds; `undefined` when it is neither. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  if (typeof value !== 'string') return undefined;
  const match = DURATION.exec(value.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * (DURATION_UNITS[match[2] as string] as number));
}

/** A duration in milliseconds, written `30s`, `5m`, `250ms` or as milliseconds; at least `minMs`. */
export function duration(minMs = 0) {
  const error = `expected a duration like 30s, 5m, 250ms or milliseconds${minMs > 0 ? ` (at least ${minMs}ms)` : ''}`;
  return z
    .union([z.string(), z.number()], { error })
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined || ms < minMs) {
        ctx.addIssue({ code: 'custom', message: error, input: value });
        return z.NEVER;
      }
      return ms;
    });
}

/**
 * For a zod transform of a pattern compiled with core/regex-literal.ts: the RegExp, or an issue saying
 * why V8 refused it (`expected a valid regular expression (Unterminated group)`), quoting the input.
 */
export function validRegex(compiled: RegExp | { readonly error: string }, input: string, ctx: z.RefinementCtx<string>): RegExp {
  if (compiled instanceof RegExp) return compiled;
  ctx.addIssue({ code: 'custom', message: `expected a valid regular expression (${compiled.error})`, input });
  return z.NEVER;
}
