import { statfs } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalDirectories, type StatFs } from '../../../src/commands/heartbeat/local-directories.js';
import { clockWith } from '../../../src/core/clock.js';

/** Asks until the background statfs has answered (true), or gives up after two seconds. */
async function settle(directories: LocalDirectories, dir: string): Promise<boolean> {
  const deadline = Date.now() + 2_000;
  while (Date.now() < deadline) {
    if (directories.isLocal(dir)) return true;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return false;
}

/** statfs that counts its answers, so a test can wait for the lookups it started to finish. */
function countingStatfs(): { statfs: StatFs; answered: () => number } {
  let answered = 0;
  const counting: StatFs = (path, callback) =>
    statfs(path, (error, stats) => {
      callback(error, stats);
      answered++;
    });
  return { statfs: counting, answered: () => answered };
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('the lookups did not finish within 2 s');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('LocalDirectories', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-local-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('says no until it has asked, then yes for a directory on a local disk or tmpfs', async () => {
    const directories = new LocalDirectories();
    expect(directories.isLocal(dir)).toBe(false);
    expect(await settle(directories, dir)).toBe(true);
    const shm = new LocalDirectories();
    shm.isLocal('/dev/shm');
    expect(await settle(shm, '/dev/shm')).toBe(true);
  });

  it('never says yes for a filesystem it does not know as local, or a directory it cannot ask about', async () => {
    const lookups = countingStatfs();
    const directories = new LocalDirectories({ statfs: lookups.statfs });
    // procfs is not on the list: only filesystems known to hold their data on this machine are.
    directories.isLocal('/proc');
    directories.isLocal(join(dir, 'missing'));
    // Once both lookups have answered, ask again: still no.
    await until(() => lookups.answered() === 2);
    expect(directories.isLocal('/proc')).toBe(false);
    expect(directories.isLocal(join(dir, 'missing'))).toBe(false);
  });

  it('asks again after a minute, keeping the old answer meanwhile', async () => {
    let now = 0;
    const directories = new LocalDirectories({ clock: clockWith(() => now) });
    expect(await settle(directories, dir)).toBe(true);
    now = 61_000;
    // Re-asking in the background; the answer stays yes while it does.
    expect(directories.isLocal(dir)).toBe(true);
    expect(await settle(directories, dir)).toBe(true);
  });

  it('is off on other platforms, whose statfs numbers mean other things', () => {
    const lookups = countingStatfs();
    const directories = new LocalDirectories({ platform: 'darwin', statfs: lookups.statfs });
    expect(directories.isLocal(dir)).toBe(false);
    expect(directories.isLocal(dir)).toBe(false);
    expect(lookups.answered()).toBe(0);
  });
});
