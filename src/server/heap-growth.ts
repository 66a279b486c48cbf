import { setFlagsFromString } from 'node:v8';

/**
 * The daemon's default `server.heapGrowthPercent`. Measured with 100,000 checks at 10,000 runs/s
 * (`npm run bench -- --only scheduler`, 2 cores): V8's own choice let the heap grow to about 2.5 times
 * the live data (RSS 360–530 MB, 17 µs of CPU a run); 50 % gave RSS 293 MB for 21 µs a run, p99 lag
 * 3 ms; 30 % gave 282 MB but 26 µs a run, and its more frequent full collections pushed p99 lag to 18 ms.
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 50;

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
