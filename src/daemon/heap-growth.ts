import { setFlagsFromString } from 'node:v8';

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
