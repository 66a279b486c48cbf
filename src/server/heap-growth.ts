import { setFlagsFromString } from 'node:v8';

/**
 * The daemon's default `server.heapGrowthPercent`. Measured with 100,000 checks at 10,000 runs/s
 * (`npm run bench -- --only scheduler`, 2 cores, a few runs each): V8's own choice gave RSS 294–349 MB
 * at 13–17 µs of CPU a run; 50 % gave 277–317 MB at 14–21 µs; 30 % gave 267–272 MB at 15–20 µs, p99
 * lag 1–3 ms throughout. (Before runs stopped leaking into the old generation, 30 % cost 26 µs a run
 * and 18 ms of p99 lag: see server/in-flight-runs.ts.)
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 30;

/**
 * Sets how far (%) V8 lets the JavaScript heap grow past what its last full collection kept before it
 * collects again; 0 gives the choice back to V8, which grows by up to four times when collecting is
 * cheap next to allocating. A monitor keeps most of its heap alive for good (every check's spec and
 * state) and frees each run's Result one interval later, so V8 would grow the heap far past the live
 * data: the daemon trades a little marking for a resident size that follows its checks.
 *
 * Process-wide and read by V8 at every collection, so it takes effect at once. Only the daemon calls it:
 * a library must not change the heap of the process it is embedded in.
 */
export function limitHeapGrowth(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0) throw new TypeError(`Expected \`heapGrowthPercent\` to be a non-negative integer, got \`${String(percent)}\``);
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
