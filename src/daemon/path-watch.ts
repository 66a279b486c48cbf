import { realpath } from 'node:fs/promises';

/** Exit code of a stop caused by `server.exitOnPathChange`: the supervisor should start the new release. */
export const EXIT_PATH_CHANGED = 75;

/**
 * Polls the real path behind `path` (an install directory reached through a symlink, such as
 * `/opt/vigil/current`) and calls `onChange` once when it resolves somewhere other than `initial` (read
 * with `realpath` when the process started): a new release was deployed by switching the symlink.
 * Returns the function that stops watching.
 */
export function watchRealPath(path: string, initial: string, intervalMs: number, onChange: (from: string, to: string) => void): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    realpath(path).then(
      (current) => {
        if (stopped || current === initial) return;
        stopped = true;
        clearInterval(timer);
        onChange(initial, current);
      },
      // Mid-switch the link may briefly not resolve; the next poll sees the outcome.
      () => undefined,
    );
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
