/**
 * The contract of one benchmark: `bench/index.ts` runs each in turn, prints its tables as it finishes and
 * every benchmark's ratios on the last line. A new benchmark is one file exporting a `Benchmark`, added
 * to the list in `bench/index.ts`. Benchmarks measure; none passes or fails on a figure. A benchmark
 * whose prerequisite is missing (a package that cannot be installed) returns a report that says so in
 * `notes`; it throws only when the harness itself is broken.
 */

export interface BenchOptions {
  /** The short version `.ci/run` calls so the harness never rots: seconds, not minutes; figures are rough. */
  readonly quick: boolean;
}

/** A table of already formatted cells; the first column names the row, the others are right-aligned. */
export interface Table {
  /** Header cells; the first one is the benchmark's name (`scheduler`, `tcp`). */
  readonly columns: readonly string[];
  /** One array of cells per row, as many as `columns`. */
  readonly rows: readonly (readonly string[])[];
}

/** A headline figure for the last line: a ratio (`tcp cpu/check vigil÷bare 1.31`) or an absolute one with its unit. */
export interface Ratio {
  readonly name: string;
  readonly value: number;
  /** Shown after the value (`ms`, `MB`); none for a ratio. */
  readonly unit?: string;
  /** Decimals shown; default 2. */
  readonly digits?: number;
}

export interface BenchReport {
  /** Printed in order, each followed by a blank line. */
  readonly tables: readonly Table[];
  /** Joined into the `ratios:` line after every benchmark ran. */
  readonly ratios: readonly Ratio[];
  /** One line each, printed under the tables: how the figures were taken, what could not be measured. */
  readonly notes?: readonly string[];
}

export interface Benchmark {
  /** What `--only` selects, and the first column of its tables. */
  readonly name: string;
  run(options: BenchOptions): Promise<BenchReport>;
}
