import { counter, gauge, type Metric } from '../../results/metric.js';

/**
 * Nagios plugin output (https://nagios-plugins.org/doc/guidelines.html#AEN200):
 *
 * ```
 * TEXT OUTPUT | OPTIONAL PERFDATA
 * LONG TEXT LINE 1
 * LONG TEXT LINE 2 | PERFDATA LINE 2
 * PERFDATA LINE 3
 * ```
 *
 * Performance data is a list of `'label'=value[UOM];[warn];[crit];[min];[max]` separated by white space.
 */

/** A plugin's output split the Nagios way. */
export interface PluginOutput {
  /** The first line's text before `|`, trimmed; empty when the plugin printed none. */
  readonly message: string;
  /** The performance data of the first line and of the long output, in order; malformed entries left out. */
  readonly metrics: readonly Metric[];
}

/**
 * Splits a plugin's output into its message and its performance data: what follows `|` on the first
 * line, and everything after the first `|` of the later lines. The long output text itself is dropped:
 * a Result has one line.
 */
export function parsePluginOutput(output: string): PluginOutput {
  const firstEnd = output.indexOf('\n');
  const firstLine = firstEnd === -1 ? output : output.slice(0, firstEnd);
  const bar = firstLine.indexOf('|');
  const message = (bar === -1 ? firstLine : firstLine.slice(0, bar)).trim();
  let perfdata = bar === -1 ? '' : firstLine.slice(bar + 1);
  if (firstEnd !== -1) {
    const longBar = output.indexOf('|', firstEnd + 1);
    if (longBar !== -1) perfdata += `\n${output.slice(longBar + 1)}`;
  }
  return { message, metrics: perfdata === '' ? [] : parsePerfdata(perfdata) };
}

/**
 * Parses performance data into Metrics. Never throws: an entry that cannot be read (no `=`, an empty
 * label, a value that is not a number such as `U`, an unterminated quote) is skipped and the next one read.
 *
 * - Names: `metricName(label)`; a name already taken in this output gets `_2`, `_3`, … appended.
 * - Value and unit: kept as the plugin gave them (`12MB` → 12, `MB`); the unit may be any text without
 *   digits (`s`, `ms`, `us`, `%`, `B`, `KB`, `MB`, `GB`, `TB`, `c`, or others seen in the wild such as `°C`).
 * - Kind: `counter` for the unit `c`, otherwise `gauge`.
 * - `warn`/`crit`: see `upperBound`. Counters carry no thresholds; `min`/`max` are not kept (a Metric
 *   has no place for them).
 */
export function parsePerfdata(text: string): Metric[] {
  const metrics: Metric[] = [];
  let names: Set<string> | undefined;
  const end = text.length;
  let i = 0;
  while (i < end) {
    while (i < end && isSpace(text.charCodeAt(i))) i++;
    if (i >= end) break;

    let label: string;
    if (text.charCodeAt(i) === QUOTE) {
      const quoted = readQuoted(text, i);
      if (quoted === undefined || text.charCodeAt(quoted.next) !== EQUALS) {
        i = skipToken(text, i);
        continue;
      }
      label = quoted.label;
      i = quoted.next;
    } else {
      const start = i;
      while (i < end && text.charCodeAt(i) !== EQUALS && !isSpace(text.charCodeAt(i))) i++;
      if (i >= end || text.charCodeAt(i) !== EQUALS) continue;
      label = text.slice(start, i);
    }

    const dataStart = i + 1;
    i = skipToken(text, dataStart);
    const metric = toMetric(label, text.slice(dataStart, i));
    if (metric === undefined) continue;

    names ??= new Set();
    if (names.has(metric.name)) {
      let n = 2;
      while (names.has(`${metric.name}_${n}`)) n++;
      const renamed = { ...metric, name: `${metric.name}_${n}` };
      names.add(renamed.name);
      metrics.push(renamed);
    } else {
      names.add(metric.name);
      metrics.push(metric);
    }
  }
  return metrics;
}

const SIMPLE_NAME = /^[a-z0-9]+(?:_[a-z0-9]+)*$/;
const ACRONYM_WORD = /([A-Z]+)([A-Z][a-z])/g;
const LOWER_UPPER = /([a-z0-9])([A-Z])/g;
const COMBINING_MARKS = /\p{M}+/gu;
const NOT_NAME = /[^a-z0-9]+/g;
const EDGE_UNDERSCORES = /^_+|_+$/g;

/**
 * A Prometheus-friendly snake_case name for a perfdata label, of `[a-z0-9_]` only: `/` (check_disk's
 * root file system) → `root`, `/var/log` → `var_log`, `connectTime` → `connect_time`,
 * `'C:\ Used Space'` → `c_used_space`, `Température` → `temperature`. Empty when nothing usable is left
 * (the entry is then skipped).
 */
export function metricName(label: string): string {
  if (SIMPLE_NAME.test(label)) return label;
  const trimmed = label.trim();
  if (trimmed === '/') return 'root';
  return trimmed
    .replace(ACRONYM_WORD, '$1_$2')
    .replace(LOWER_UPPER, '$1_$2')
    .normalize('NFKD')
    .replace(COMBINING_MARKS, '')
    .toLowerCase()
    .replace(NOT_NAME, '_')
    .replace(EDGE_UNDERSCORES, '');
}

const NUMBER = String.raw`[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?`;
/** A number, then a unit that neither starts a number nor holds digits (`0,5` from a comma locale is malformed). */
const VALUE = new RegExp(String.raw`^(${NUMBER})([^\d.,+-]*)$`);
/** `[@][start:][end]`, start possibly `~` (minus infinity). */
const RANGE = new RegExp(String.raw`^(@)?(?:(~|${NUMBER})?:)?(${NUMBER})?$`);

/**
 * The threshold a Metric keeps from a Nagios range (`warn` or `crit` field): its end when the range
 * alerts only above that end — `10`, `0:10`, `~:10`, `:10` all give 10. Ranges that also or only alert
 * low (`10:`, `5:10`, `-5:10`) or inside (`@10:20`) cannot be said as "at or above", and give nothing,
 * as do empty and unreadable fields: the value is still kept.
 */
function upperBound(range: string | undefined): number | undefined {
  if (range === undefined || range === '') return undefined;
  const match = RANGE.exec(range);
  if (match === null || match[1] !== undefined || match[3] === undefined) return undefined;
  const start = match[2];
  if (start !== undefined && start !== '~' && Number(start) !== 0) return undefined;
  const value = Number(match[3]);
  return Number.isFinite(value) ? value : undefined;
}

function toMetric(label: string, data: string): Metric | undefined {
  const fields = data.split(';');
  const parsed = VALUE.exec(fields[0] as string);
  if (parsed === null) return undefined;
  const value = Number(parsed[1]);
  if (!Number.isFinite(value)) return undefined;
  const name = metricName(label);
  if (name === '') return undefined;
  const unit = parsed[2] as string;
  if (unit === 'c') return counter(name, value);
  return gauge(name, value, unit, { warn: upperBound(fields[1]), crit: upperBound(fields[2]) });
}

const QUOTE = 0x27;
const EQUALS = 0x3d;

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

/** The index of the first white space at or after `from`, or the end. */
function skipToken(text: string, from: number): number {
  let i = from;
  while (i < text.length && !isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** A `'quoted label'` starting at `start`, `''` standing for `'`; undefined when the quote is not closed. */
function readQuoted(text: string, start: number): { label: string; next: number } | undefined {
  let label = '';
  let from = start + 1;
  for (;;) {
    const close = text.indexOf("'", from);
    if (close === -1) return undefined;
    label += text.slice(from, close);
    if (text.charCodeAt(close + 1) !== QUOTE) return { label, next: close + 1 };
    label += "'";
    from = close + 2;
  }
}
