import { formatMs } from '../../core/format.js';
import { gauge, type Metric } from '../../results/metric.js';
import type { CommandOutcome } from '../../results/result.js';
import type { QueryRows } from './driver.js';

/** How many rows a query must return, inclusive; built from `expectRows: 3` or `{ min, max }`. */
export interface RowCount {
  readonly min: number;
  /** Absent: no upper bound. */
  readonly max?: number;
}

/**
 * What the first value of the first row must be, compiled at load time from `expect`: text it must
 * equal, a regular expression its text must match, a number it must equal, or a truth value. Plain data.
 */
export type ValueMatcher =
  /** `display`: how messages show the expectation: `"ok"`, `/^ok/i`, `42`, `true`. */
  | { readonly display: string; readonly text: string }
  | { readonly display: string; readonly regex: RegExp }
  | { readonly display: string; readonly number: number }
  | { readonly display: string; readonly boolean: boolean };

/** The parts of the attributes that judge the rows. */
export interface Judgement {
  /** First value (a number) at or above which the result is `warn`. */
  readonly warn?: number;
  /** First value at or above which the result is `crit`. */
  readonly crit?: number;
  /** First value at or below which the result is `warn`. */
  readonly warnBelow?: number;
  /** First value at or below which the result is `crit`. */
  readonly critBelow?: number;
  readonly expectRows?: RowCount;
  readonly expect?: ValueMatcher;
}

/** How long the run's two steps took, in ms. */
export interface Timing {
  readonly connectMs: number;
  readonly queryMs: number;
}

/** How much of a text value a message quotes. */
const QUOTE_CHARS = 80;
const NUMBER_TEXT = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?\s*$/i;
const TRUE_TEXT: ReadonlySet<string> = new Set(['t', 'true', '1']);
const FALSE_TEXT: ReadonlySet<string> = new Set(['f', 'false', '0']);

/**
 * A value's text, as the server wrote it where the driver kept it (all of PostgreSQL's; MySQL's dates,
 * decimals, big integers, JSON), `String` of the numbers MySQL sends as numbers, a Buffer (a BLOB,
 * a binary string) as UTF-8; `null` for SQL NULL.
 */
export function valueText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value) ?? '';
}

/** A value as a number, when it is one or is the text of one (`42`, `-0.5`, `1e3`); `undefined` otherwise. */
export function numericValue(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'string' || !NUMBER_TEXT.test(value)) return undefined;
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

function valueMatches(matcher: ValueMatcher, value: unknown): boolean {
  if ('number' in matcher) return numericValue(value) === matcher.number;
  const text = valueText(value);
  if (text === null) return false;
  if ('text' in matcher) return text === matcher.text;
  if ('regex' in matcher) return matcher.regex.test(text);
  // PostgreSQL's `t`/`f`, MySQL's 1/0 (it has no boolean type).
  return (matcher.boolean ? TRUE_TEXT : FALSE_TEXT).has(text.toLowerCase());
}

/** Judges what the query returned; `where` names the server, `metrics` are the run's timings. */
export function judge(judgement: Judgement, result: QueryRows, where: string, timing: Timing): CommandOutcome {
  const { rows } = result;
  const first: unknown = result.columns > 0 ? rows[0]?.[0] : undefined;
  const hasValue = result.columns > 0 && rows.length > 0;
  const number = hasValue ? numericValue(first) : undefined;
  const metrics = measured(judgement, timing, rows.length, number);
  const counted = `${rowsText(rows.length)} in ${formatMs(timing.queryMs)} ms`;
  const { expectRows, expect } = judgement;
  const thresholds = hasThresholds(judgement);

  if (expectRows !== undefined && !countMatches(expectRows, rows.length)) {
    const reason = rows.length === 0 ? 'no-rows' : 'unexpected-rows';
    return { state: 'crit', reason, message: `${where}: ${counted}, expected ${countText(expectRows)}`, metrics };
  }
  if (!hasValue && (thresholds || expect !== undefined)) {
    const wanted = expect === undefined ? 'one whose first value is a number' : `one whose first value ${expectationText(expect)}`;
    return { state: 'crit', reason: 'no-rows', message: `${where}: ${counted}, expected ${wanted}`, metrics };
  }
  if (expect !== undefined && !valueMatches(expect, first)) {
    return { state: 'crit', reason: 'unexpected-value', message: `${where}: first value ${shown(first)}, expected it ${expectationText(expect)} (${counted})`, metrics };
  }
  if (thresholds) {
    if (number === undefined) {
      return { state: 'crit', reason: 'unexpected-value', message: `${where}: first value ${shown(first)}, expected a number (${counted})`, metrics };
    }
    const crossed = crossedThreshold(judgement, number);
    if (crossed !== undefined) {
      return { state: crossed.state, reason: 'threshold', message: `${where}: first value ${shown(first)} is ${crossed.text} (${counted})`, metrics };
    }
  }
  const value = hasValue ? `, first value ${shown(first)}` : '';
  return { state: 'ok', reason: 'ok', message: `${where}: ${counted}${value}`, metrics };
}

function hasThresholds({ warn, crit, warnBelow, critBelow }: Judgement): boolean {
  return warn !== undefined || crit !== undefined || warnBelow !== undefined || critBelow !== undefined;
}

/** The worst threshold `value` is at or past, critical first. */
function crossedThreshold({ warn, crit, warnBelow, critBelow }: Judgement, value: number): { state: 'warn' | 'crit'; text: string } | undefined {
  if (crit !== undefined && value >= crit) return { state: 'crit', text: `at or above the critical threshold of ${crit}` };
  if (critBelow !== undefined && value <= critBelow) return { state: 'crit', text: `at or below the critical threshold of ${critBelow}` };
  if (warn !== undefined && value >= warn) return { state: 'warn', text: `at or above the warning threshold of ${warn}` };
  if (warnBelow !== undefined && value <= warnBelow) return { state: 'warn', text: `at or below the warning threshold of ${warnBelow}` };
  return undefined;
}

function countMatches({ min, max }: RowCount, rows: number): boolean {
  return rows >= min && (max === undefined || rows <= max);
}

function countText({ min, max }: RowCount): string {
  if (max === undefined) return `at least ${rowsText(min)}`;
  if (min === max) return `exactly ${rowsText(min)}`;
  if (min === 0) return `at most ${rowsText(max)}`;
  return `${min}–${max} rows`;
}

function rowsText(count: number): string {
  return count === 1 ? '1 row' : `${count} rows`;
}

function expectationText(expect: ValueMatcher): string {
  if ('regex' in expect) return `to match ${expect.display}`;
  return `to be ${expect.display}`;
}

/** A value for a message: numbers as they are, text quoted (and cut), NULL as `NULL`. */
function shown(value: unknown): string {
  const text = valueText(value);
  if (text === null) return 'NULL';
  if (numericValue(value) !== undefined) return text.trim();
  return text.length > QUOTE_CHARS ? `${JSON.stringify(text.slice(0, QUOTE_CHARS))}…` : JSON.stringify(text);
}

/** `connect_time` and `query_time` (ms), `rows`, and `value` (with the above-thresholds) when the first value is a number. */
export function measured(judgement: Judgement, { connectMs, queryMs }: Timing, rows: number, value: number | undefined): Metric[] {
  const metrics = [gauge('connect_time', connectMs, 'ms'), gauge('query_time', queryMs, 'ms'), gauge('rows', rows)];
  if (value !== undefined) metrics.push(gauge('value', value, '', { warn: judgement.warn, crit: judgement.crit }));
  return metrics;
}
