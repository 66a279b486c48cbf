import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import writeFileAtomic from 'write-file-atomic';
import { errorMessage } from '../core/errors.js';

/** Who this vigil is: an id kept in its data dir across restarts, and how many times it has started. */
export interface InstanceIdentity {
  /** A random UUID, made on the first start with a data dir. */
  readonly id: string;
  /** 1 on the first start, one more on each start after. */
  readonly epoch: number;
  /** Epoch milliseconds of this start. */
  readonly startedAt: number;
}

/** The file in the data dir that holds the identity: `{ id, epoch }`. */
export function instanceFilePath(dataDir: string): string {
  return join(dataDir, 'instance.json');
}

/**
 * Starts this instance: reads `<dataDir>/instance.json`, increments its epoch, and writes it back
 * atomically; a missing file (or a corrupt one, logged as a warning) starts a new identity at epoch 1.
 * Creates the data dir. Throws when the file exists but cannot be read or written.
 */
export async function startInstance(dataDir: string, now: number = Date.now(), logger?: Logger): Promise<InstanceIdentity> {
  const file = instanceFilePath(dataDir);
  await mkdir(dataDir, { recursive: true });
  const previous = await readIdentity(file, logger);
  const stored = { id: previous?.id ?? randomUUID(), epoch: (previous?.epoch ?? 0) + 1 };
  await writeFileAtomic(file, `${JSON.stringify(stored, null, 2)}\n`);
  return { ...stored, startedAt: now };
}

async function readIdentity(file: string, logger: Logger | undefined): Promise<{ id: string; epoch: number } | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof Error && (error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const parsed = parseIdentity(text);
  if (typeof parsed !== 'string') return parsed;
  logger?.warn({ file, problem: parsed }, `instance file ${file} ${parsed}; starting a new instance identity`);
  return null;
}

/** The identity an instance file's text holds, or what is wrong with it. */
function parseIdentity(text: string): { id: string; epoch: number } | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return `is not valid JSON: ${errorMessage(error)}`;
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return 'is not a JSON object';
  const { id, epoch } = data as Record<string, unknown>;
  if (typeof id !== 'string' || id.length === 0) return 'has no `id` string';
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1) return 'has no positive integer `epoch`';
  return { id, epoch };
}
