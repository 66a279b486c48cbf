import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Ratio, Table } from './benchmark.js';

/** Microseconds of CPU (user + system) this process has used since it started. */
export function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

let ticksPerSecond: number | undefined;

/** Clock ticks per second of the CPU times in /proc (`getconf CLK_TCK`; 100 where getconf is missing). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    let ticks = Number.NaN;
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      // No getconf: 100 is what Linux reports on every common architecture.
    }
    ticksPerSecond = Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
  }
  return ticksPerSecond;
}

/**
 * Microseconds of CPU (user + system) another process has used, from /proc/PID/stat. The resolution is
 * one clock tick (10 ms at 100 Hz): measure windows of seconds, not milliseconds.
 */
export function processCpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 (the command name) is in parentheses and may hold spaces: count from after its closing one.
  // There fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) throw new Error(`Expected utime and stime in /proc/${pid}/stat, got ${JSON.stringify(stat.slice(0, 200))}`);
  return (ticks * 1_000_000) / clockTicksPerSecond();
}

/** Resident set size of this process, in MiB. */
export function rssMB(): number {
  return process.memoryUsage.rss() / 1_048_576;
}

/** Wall time and CPU at one moment, for `usageSince`. */
export interface UsageMark {
  readonly atMs: number;
  readonly cpuMicros: number;
  /** The other process watched too (a target server), when one is. */
  readonly otherPid: number | null;
  readonly otherCpuMicros: number;
}

/** What was used between a mark and now. */
export interface Usage {
  readonly wallMs: number;
  /** This process's CPU. */
  readonly cpuMicros: number;
  /** The other process's CPU; 0 when none was watched. */
  readonly otherCpuMicros: number;
}

/** Marks now: this process's CPU and, when given, another process's (`otherPid`, e.g. a target server). */
export function markUsage(otherPid?: number): UsageMark {
  return {
    atMs: performance.now(),
    cpuMicros: cpuMicros(),
    otherPid: otherPid ?? null,
    otherCpuMicros: otherPid === undefined ? 0 : processCpuMicros(otherPid),
  };
}

export function usageSince(mark: UsageMark): Usage {
  return {
    wallMs: performance.now() - mark.atMs,
    cpuMicros: cpuMicros() - mark.cpuMicros,
    otherCpuMicros: mark.otherPid === null ? 0 : processCpuMicros(mark.otherPid) - mark.otherCpuMicros,
  };
}

/** p50/p99/max of a set of values; all `NaN` when there are none. */
export interface Summary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/**
 * Values of one measurement (schedule lags, …), kept in a typed array that grows up to `capacity`;
 * past it further values are counted in `dropped` and left out, so memory stays bounded.
 */
export class Samples {
  readonly #capacity: number;
  #values = new Float64Array(1024);
  #length = 0;
  #dropped = 0;

  /** `capacity`: most values kept; default 4,000,000 (32 MB). */
  constructor(capacity = 4_000_000) {
    this.#capacity = capacity;
  }

  add(value: number): void {
    if (this.#length === this.#values.length) {
      if (this.#length >= this.#capacity) {
        this.#dropped++;
        return;
      }
      const grown = new Float64Array(Math.min(this.#capacity, this.#length * 2));
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#length++] = value;
  }

  get count(): number {
    return this.#length;
  }

  /** Values that did not fit. */
  get dropped(): number {
    return this.#dropped;
  }

  summary(): Summary {
    return summarize(this.#values.subarray(0, this.#length));
  }
}

/** Nearest-rank percentiles of the values (which are not changed). */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  const count = sorted.length;
  if (count === 0) return { count, p50: Number.NaN, p99: Number.NaN, max: Number.NaN };
  const rank = (p: number): number => sorted[Math.min(count - 1, Math.max(0, Math.ceil(p * count) - 1))] as number;
  return { count, p50: rank(0.5), p99: rank(0.99), max: sorted[count - 1] as number };
}

/** A cell for a value that does not apply to the row. */
export const NA = '–';

/** `value` with `digits` decimals and thousands separators (`12,345.6`); `NA` for NaN and infinities. */
export function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return NA;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** The table with its columns aligned: the first to the left, the others to the right. */
export function formatTable(table: Table): string {
  const lines = [table.columns, ...table.rows];
  const widths = table.columns.map((_, column) => Math.max(...lines.map((cells) => [...(cells[column] ?? '')].length)));
  return lines
    .map((cells) =>
      widths
        .map((width, column) => {
          const cell = cells[column] ?? '';
          const pad = ' '.repeat(width - [...cell].length);
          return column === 0 ? cell + pad : pad + cell;
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `name value unit`, as the `ratios:` line shows it. */
export function formatRatio(ratio: Ratio): string {
  const value = fmt(ratio.value, ratio.digits ?? 2);
  return ratio.unit === undefined ? `${ratio.name} ${value}` : `${ratio.name} ${value} ${ratio.unit}`;
}

/** A progress line on stderr, so that stdout holds only the tables. */
export function progress(message: string): void {
  process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1)}s] ${message}\n`);
}

/** Resolves with `work`, or rejects when it has not settled after `ms`, saying what did not finish. */
export function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
