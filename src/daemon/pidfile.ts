import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import writeFileAtomic from 'write-file-atomic';

/**
 * Writes this process's pid to `file` and returns the function that removes it again. Refuses, naming
 * the pid, when the file belongs to a process that is still alive; a stale file (its process is gone)
 * is taken over.
 */
export async function acquirePidfile(file: string): Promise<() => Promise<void>> {
  const existing = await readPid(file);
  if (existing !== null && existing !== process.pid && isAlive(existing)) {
    throw new Error(`vigil is already running with pid ${existing} (pidfile ${file})`);
  }
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, `${process.pid}\n`);
  return async () => {
    // Only our own: a successor may have taken the file over meanwhile.
    if ((await readPid(file)) === process.pid) await rm(file, { force: true });
  };
}

async function readPid(file: string): Promise<number | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but someone else's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
