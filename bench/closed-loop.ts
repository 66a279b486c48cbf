/**
 * Starts `count` units of work (`start(i, finish)`), `concurrency` at a time, none after `deadline`
 * (epoch ms), each started as another finishes: a closed loop, as a bare client or a saturated vigil
 * runs. Resolves with how many finished and how many of them were not ok.
 */
export function closedLoop(concurrency: number, count: number, deadline: number, start: (i: number, finish: (ok: boolean) => void) => void): Promise<{ done: number; errors: number }> {
  return new Promise((resolve) => {
    let started = 0;
    let active = 0;
    let done = 0;
    let errors = 0;
    function launch(): void {
      while (active < concurrency && started < count && Date.now() < deadline) {
        active++;
        start(started++, finish);
      }
      if (active === 0) resolve({ done, errors });
    }
    function finish(ok: boolean): void {
      active--;
      done++;
      if (!ok) errors++;
      launch();
    }
    launch();
  });
}
