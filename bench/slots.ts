import pg from 'pg';

/**
 * Runs per slot, the measure of a shared queue's promise: every check runs once in each slot of its
 * fixed-rate grid, whichever instances start or stop. A run belongs to the slot nearest its start (a
 * late claim runs for the nearest slot, see the mirror's `markClaimed`), so a run half an interval late
 * or more counts for the next slot, and two runs less than half an interval apart share one.
 *
 * The queue decides a run's slot when it claims it, a few ms before the run starts: a run that starts
 * within `BOUNDARY_TOLERANCE_MS` of the middle between two slots may be either's. Each run counts for
 * its nearest slot; where that makes two runs share a slot and one of them may count for the free slot
 * beside it, it does.
 */

/** How close to the middle between two slots (ms) a run's start may be and still count for either. */
export const BOUNDARY_TOLERANCE_MS = 50;

/** One check's runs judged against its grid. */
export interface SlotReport {
  readonly runs: number;
  /** Slots from the first run's to the last run's, both included. */
  readonly slots: number;
  /** Slots (their grid time, epoch ms) with more than one run, and those runs' start times. */
  readonly doubled: readonly { readonly slot: number; readonly starts: readonly number[] }[];
  /** Slots between the first run and the last with no run, by their grid time. */
  readonly missed: readonly number[];
  /** Runs per slot, by the slot's number on the grid (`anchor + k × intervalMs`); slots without a run are absent. */
  readonly counts: ReadonlyMap<number, number>;
  /** The runs' start times, in order, and the grid's interval: for the messages. */
  readonly starts: readonly number[];
  readonly intervalMs: number;
}

/** Judges `starts` (epoch ms, any order) against the grid `anchor + k × intervalMs`. */
export function slotReport(starts: readonly number[], anchor: number, intervalMs: number, toleranceMs = BOUNDARY_TOLERANCE_MS): SlotReport {
  const sorted = [...starts].sort((a, b) => a - b);
  // Each run's nearest slot, and the other one beside it when it starts close enough to their middle.
  const runs = sorted.map((start) => {
    const position = (start - anchor) / intervalMs;
    const nearest = Math.round(position);
    const fromMiddleMs = (position - Math.floor(position) - 0.5) * intervalMs;
    const other = Math.abs(fromMiddleMs) <= toleranceMs ? (nearest > position ? nearest - 1 : nearest + 1) : null;
    return { start, slot: nearest, other };
  });
  const taken = new Map<number, number>();
  for (const run of runs) taken.set(run.slot, (taken.get(run.slot) ?? 0) + 1);
  for (const run of runs) {
    if ((taken.get(run.slot) ?? 0) < 2 || run.other === null || taken.has(run.other)) continue;
    taken.set(run.slot, (taken.get(run.slot) as number) - 1);
    taken.set(run.other, 1);
    run.slot = run.other;
  }
  const bySlot = new Map<number, number[]>();
  for (const { start, slot } of runs) bySlot.set(slot, [...(bySlot.get(slot) ?? []), start]);
  const ks = [...bySlot.keys()].sort((a, b) => a - b);
  const counts = new Map([...bySlot].map(([k, list]) => [k, list.length]));
  if (ks.length === 0) return { runs: 0, slots: 0, doubled: [], missed: [], counts, starts: sorted, intervalMs };
  const first = ks[0] as number;
  const last = ks.at(-1) as number;
  const doubled = [...bySlot].filter(([, runs]) => runs.length > 1).map(([k, runs]) => ({ slot: anchor + k * intervalMs, starts: runs }));
  const missed: number[] = [];
  for (let k = first; k <= last; k++) if (!bySlot.has(k)) missed.push(anchor + k * intervalMs);
  return { runs: starts.length, slots: last - first + 1, doubled, missed, counts, starts: sorted, intervalMs };
}

/** A check's grid as the table holds it: a slot time (epoch ms, the database's clock) and the interval. */
export interface Grid {
  readonly anchor: number;
  readonly intervalMs: number;
}

/** The grid of every check with an interval in `<schema>.checks`, by id. */
export async function grids(pool: pg.Pool, schema: string): Promise<Map<string, Grid>> {
  const { rows } = await pool.query<{ id: string; anchor: number; interval_ms: number }>(
    `SELECT id, (extract(epoch FROM slot_at) * 1000)::float8 AS anchor, (spec->>'intervalMs')::float8 AS interval_ms
     FROM ${pg.escapeIdentifier(schema)}.checks WHERE spec->>'intervalMs' IS NOT NULL`,
  );
  return new Map(rows.map((row) => [row.id, { anchor: row.anchor, intervalMs: row.interval_ms }]));
}

/** The start times (epoch ms) of every run the `postgres-results` handler stored, by check id. */
export async function storedStarts(pool: pg.Pool, schema: string): Promise<Map<string, number[]>> {
  const { rows } = await pool.query<{ check_id: string; started: number }>(
    `SELECT check_id, (extract(epoch FROM started_at) * 1000)::float8 AS started FROM ${pg.escapeIdentifier(schema)}.results ORDER BY started_at`,
  );
  const starts = new Map<string, number[]>();
  for (const row of rows) {
    const list = starts.get(row.check_id);
    if (list) list.push(row.started);
    else starts.set(row.check_id, [row.started]);
  }
  return starts;
}

/** Every check's report, from the results and grids the database holds. */
export async function storedSlotReports(pool: pg.Pool, schema: string): Promise<Map<string, SlotReport>> {
  const [starts, byId] = await Promise.all([storedStarts(pool, schema), grids(pool, schema)]);
  const reports = new Map<string, SlotReport>();
  for (const [id, grid] of byId) reports.set(id, slotReport(starts.get(id) ?? [], grid.anchor, grid.intervalMs));
  return reports;
}

/** The problems of a set of reports, as short lines (empty when every check ran once per slot). */
export function slotProblems(reports: ReadonlyMap<string, SlotReport>, options: { allowMissed?: (slot: number) => boolean } = {}): string[] {
  const problems: string[] = [];
  for (const [id, report] of reports) {
    for (const { slot, starts } of report.doubled) problems.push(`${id}: ${starts.length} runs in the slot at ${new Date(slot).toISOString()} (${starts.map((s) => Math.round(s - slot)).join(', ')} ms from it)`);
    for (const slot of report.missed) {
      if (options.allowMissed?.(slot)) continue;
      const around = report.starts.filter((start) => Math.abs(start - slot) < 3 * report.intervalMs).map((start) => Math.round(start - slot));
      problems.push(`${id}: no run in the slot at ${new Date(slot).toISOString()} (runs at ${around.join(', ')} ms from it)`);
    }
  }
  return problems;
}
