import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { instanceFilePath, startInstance } from '../../src/daemon/instance.js';
import { capturingLogger } from '../helpers/logger.js';

const T0 = Date.UTC(2024, 0, 1);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-instance-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readInstanceFile(dataDir: string): Promise<unknown> {
  return JSON.parse(await readFile(instanceFilePath(dataDir), 'utf8'));
}

describe('startInstance', () => {
  it('keeps its id across starts and counts them in its epoch', async () => {
    const first = await startInstance(dir, T0);
    expect(first).toEqual({ id: expect.stringMatching(UUID) as unknown, epoch: 1, startedAt: T0 });
    const second = await startInstance(dir, T0 + 1_000);
    expect(second).toEqual({ id: first.id, epoch: 2, startedAt: T0 + 1_000 });
    expect(await readInstanceFile(dir)).toEqual({ id: first.id, epoch: 2 });
    // Written atomically: no temporary files left behind.
    expect(await readdir(dir)).toEqual(['instance.json']);
  });

  it('gives each data dir its own id', async () => {
    const other = await mkdtemp(join(tmpdir(), 'vigil-instance-'));
    try {
      const a = await startInstance(dir);
      const b = await startInstance(other);
      expect(a.id).not.toBe(b.id);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('creates the data dir', async () => {
    const dataDir = join(dir, 'var', 'vigil');
    const identity = await startInstance(dataDir, T0);
    expect(identity.epoch).toBe(1);
    expect(await readInstanceFile(dataDir)).toEqual({ id: identity.id, epoch: 1 });
  });

  it('defaults startedAt to now', async () => {
    const before = Date.now();
    const { startedAt } = await startInstance(dir);
    expect(startedAt).toBeGreaterThanOrEqual(before);
    expect(startedAt).toBeLessThanOrEqual(Date.now());
  });

  it.each([
    ['not JSON', '{"id": "abc", ', 'is not valid JSON'],
    ['no id', JSON.stringify({ epoch: 7 }), 'has no `id` string'],
    ['a bad epoch', JSON.stringify({ id: 'abc', epoch: 'seven' }), 'has no positive integer `epoch`'],
  ])('starts a new identity, with a warning, when the file holds %s', async (_name, text, problem) => {
    await writeFile(instanceFilePath(dir), text);
    const { logger, lines } = capturingLogger();
    const identity = await startInstance(dir, T0, logger);
    expect(identity).toEqual({ id: expect.stringMatching(UUID) as unknown, epoch: 1, startedAt: T0 });
    expect(await readInstanceFile(dir)).toEqual({ id: identity.id, epoch: 1 });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, file: instanceFilePath(dir), problem: expect.stringContaining(problem) as unknown });
    expect(lines[0]?.msg).toContain(instanceFilePath(dir));
  });

  it('continues an identity it did not create', async () => {
    await writeFile(instanceFilePath(dir), JSON.stringify({ id: 'edge-1', epoch: 41 }));
    const { logger, lines } = capturingLogger();
    expect(await startInstance(dir, T0, logger)).toEqual({ id: 'edge-1', epoch: 42, startedAt: T0 });
    expect(lines).toEqual([]);
  });
});
