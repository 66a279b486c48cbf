/**
 * Fixed-rate scheduling: each check has a grid of slots `slotAt + k × interval`, its first slot spread
 * across the interval by a stable hash of its id, so many checks with one interval start evenly and
 * keep their place across restarts.
 */

/**
 * FNV-1a, 32 bit, with murmur3's final mix: stable across processes and versions, cheap, and its high
 * bits well spread even for ids that differ in one trailing character (`check-1`, `check-2`, …).
 */
export function stableHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** The first due time of a check added at `now`: somewhere in `[now, now + interval)`, by its id. */
export function firstDueAt(id: string, intervalMs: number | null, now: number): number {
  if (intervalMs === null) return now;
  return now + Math.floor((stableHash(id) / 0x1_0000_0000) * intervalMs);
}

/** The next slot of the grid anchored at `slotAt` that is after `now`, and how many slots were missed. */
export function nextSlot(slotAt: number, intervalMs: number, now: number): { dueAt: number; missed: number } {
  const next = slotAt + intervalMs;
  if (next > now) return { dueAt: next, missed: 0 };
  const missed = Math.floor((now - next) / intervalMs) + 1;
  return { dueAt: next + missed * intervalMs, missed };
}
