/** Numbers and durations written for people: in Result messages, logs and errors. */

/** Milliseconds for a message: one decimal under 100 ms, whole above ("4.2", "250"). */
export function formatMs(ms: number): string {
  return ms < 100 ? ms.toFixed(1) : String(Math.round(ms));
}

/**
 * Milliseconds to about three significant digits, for round-trip times that can be well under one
 * millisecond on a LAN ("0.042", "1.23", "12.3", "250").
 */
export function formatMsPrecisely(ms: number): string {
  if (ms >= 100) return String(Math.round(ms));
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

/** A duration as the config writes it: the largest unit that divides it ("30s", "5m", "1d", "250ms"). */
export function formatDuration(ms: number): string {
  const units: readonly (readonly [string, number])[] = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ];
  for (const [unit, size] of units) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** An elapsed time by its two largest units, for messages: `250ms`, `42s`, `5m 3s`, `2h 10m`, `1d 4h`. */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const total = Math.floor(ms / 1000);
  const units: [number, string][] = [
    [Math.floor(total / 86_400), 'd'],
    [Math.floor((total % 86_400) / 3600), 'h'],
    [Math.floor((total % 3600) / 60), 'm'],
    [total % 60, 's'],
  ];
  // At least one second, so some unit is not zero.
  const first = units.findIndex(([value]) => value > 0);
  const major = units[first];
  const minor = units[first + 1];
  const text = major === undefined ? '0s' : `${major[0]}${major[1]}`;
  return minor === undefined || minor[0] === 0 ? text : `${text} ${minor[0]}${minor[1]}`;
}
