import { describe, expect, it, vi } from 'vitest';
import { CompletionBuffer, type BufferedCompletion, type CompletionBufferOptions } from '../../../src/queues/postgres/completion-buffer.js';
import { CompletionDroppedError } from '../../../src/queues/postgres/errors.js';
import { DatabaseHealth } from '../../../src/queues/postgres/health.js';
import { silentLogger } from '../../helpers/logger.js';
import { ManualClock } from '../../helpers/manual-clock.js';

interface TestCompletion extends BufferedCompletion {
  readonly resolve: () => void;
  /** 'written', or the error it was rejected with. */
  readonly outcome: Promise<unknown>;
}

function completion(id: string): TestCompletion {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const settledWith = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { settled: false, id, resolve, reject, outcome: settledWith.then(() => 'written', (error: unknown) => error) };
}

const away = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

/**
 * A buffer whose writer answers as `answer` says for each batch (by default: writes it), recording
 * the ids of every batch it was given.
 */
function setup(options: Partial<CompletionBufferOptions<TestCompletion>> = {}, answer: (ids: string[]) => Promise<void> = () => Promise.resolve()) {
  const clock = new ManualClock();
  const recoveries: number[] = [];
  const health = new DatabaseHealth({ clock, logger: silentLogger(), onRecovered: () => recoveries.push(clock.now()) });
  const batches: string[][] = [];
  const abandoned: string[] = [];
  const reported: string[] = [];
  const buffer = new CompletionBuffer<TestCompletion>({
    clock,
    health,
    report: (error, operation) => reported.push(`${operation}: ${String(error)}`),
    flushDelayMs: 5,
    flushBatchSize: 200,
    maxBuffered: 100,
    async write(batch) {
      const ids = batch.map((c) => c.id);
      batches.push(ids);
      await answer(ids);
      for (const c of batch) {
        c.settled = true;
        c.resolve();
      }
    },
    abandon: (c) => abandoned.push(c.id),
    ...options,
  });
  return { clock, health, recoveries, buffer, batches, abandoned, reported };
}

describe('CompletionBuffer', () => {
  it('gathers completions for flushDelayMs on its clock, then writes them in one batch', async () => {
    const { clock, buffer, batches } = setup();
    const [a, b] = [completion('a'), completion('b')];
    buffer.push(a);
    buffer.push(b);
    clock.advance(4);
    expect(batches).toEqual([]);
    expect(buffer.length).toBe(2);
    clock.advance(1);
    expect(batches).toEqual([['a', 'b']]);
    expect(await Promise.all([a.outcome, b.outcome])).toEqual(['written', 'written']);
    expect(buffer.length).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('writes at most flushBatchSize completions a batch, one batch after the other', async () => {
    const { clock, buffer, batches } = setup({ flushBatchSize: 2 });
    const all = ['a', 'b', 'c', 'd', 'e'].map(completion);
    for (const c of all) buffer.push(c);
    clock.advance(5);
    expect(await Promise.all(all.map((c) => c.outcome))).toEqual(['written', 'written', 'written', 'written', 'written']);
    expect(batches).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('writes a full batch without waiting for the flush delay', async () => {
    const { clock, buffer, batches } = setup({ flushBatchSize: 1 });
    const a = completion('a');
    buffer.push(a);
    expect(clock.delays()).toEqual([0]);
    clock.advance(0);
    expect(batches).toEqual([['a']]);
    expect(await a.outcome).toBe('written');
  });

  it('drops the oldest beyond maxBufferedCompletions: rejected, its claim abandoned, counted', async () => {
    const { clock, buffer, batches, abandoned } = setup({ maxBuffered: 2 });
    const [a, b, c] = [completion('a'), completion('b'), completion('c')];
    buffer.push(a);
    buffer.push(b);
    buffer.push(c);
    const error = await a.outcome;
    expect(error).toBeInstanceOf(CompletionDroppedError);
    expect(String(error)).toMatch(/completion of check "a" was dropped: more than 2 completions were waiting for the database/);
    expect(a.settled).toBe(true);
    expect(abandoned).toEqual(['a']);
    expect(buffer.dropped).toBe(1);
    expect(buffer.length).toBe(2);
    clock.advance(5);
    expect(await Promise.all([b.outcome, c.outcome])).toEqual(['written', 'written']);
    expect(batches).toEqual([['b', 'c']]);
  });

  it('keeps completions while the database is away and writes them again after its backoff', async () => {
    let up = false;
    const { clock, health, recoveries, buffer, batches } = setup({}, () => (up ? Promise.resolve() : Promise.reject(away())));
    const a = completion('a');
    buffer.push(a);
    clock.advance(5);
    await vi.waitFor(() => expect(health.healthy).toBe(false));
    expect(buffer.length).toBe(1);
    expect(a.settled).toBe(false);
    // The first backoff is 250 ms.
    await vi.waitFor(() => expect(clock.delays()).toEqual([250]));
    up = true;
    clock.advance(249);
    expect(batches).toEqual([['a']]);
    clock.advance(1);
    expect(await a.outcome).toBe('written');
    expect(batches).toEqual([['a'], ['a']]);
    expect(health.healthy).toBe(true);
    expect(recoveries).toHaveLength(1);
  });

  it('writes a batch the database refuses one by one, so that only the bad completion fails', async () => {
    const bad = Object.assign(new Error('new row violates check constraint'), { code: '23514' });
    const { clock, buffer, batches, abandoned, reported, health } = setup({}, (ids) => (ids.includes('bad') ? Promise.reject(bad) : Promise.resolve()));
    const all = ['one', 'bad', 'two'].map(completion);
    for (const c of all) buffer.push(c);
    clock.advance(5);
    expect(await Promise.all(all.map((c) => c.outcome))).toEqual(['written', bad, 'written']);
    expect(batches).toEqual([['one', 'bad', 'two'], ['one'], ['bad'], ['two']]);
    expect(abandoned).toEqual(['bad']);
    expect(reported).toEqual([`complete: ${String(bad)}`]);
    expect(buffer.dropped).toBe(0);
    expect(health.healthy).toBe(true);
  });

  it('drains at close without waiting for the flush delay', async () => {
    const { clock, buffer, batches } = setup();
    const a = completion('a');
    buffer.push(a);
    await buffer.drain(clock.now() + 1_000);
    expect(batches).toEqual([['a']]);
    expect(await a.outcome).toBe('written');
    expect(clock.pending).toBe(0);
  });

  it('drains a database that is away every 50 ms until the deadline, not after its backoff', async () => {
    const { clock, buffer, batches } = setup({}, () => Promise.reject(away()));
    buffer.push(completion('a'));
    let drained = false;
    const draining = buffer.drain(clock.now() + 100).then(() => (drained = true));
    await vi.waitFor(() => expect(clock.delays()).toContain(50));
    expect(batches).toHaveLength(1);
    clock.advance(50);
    await vi.waitFor(() => expect(batches).toHaveLength(2));
    await vi.waitFor(() => expect(clock.delays()).toContain(50));
    expect(drained).toBe(false);
    clock.advance(50);
    await draining;
    expect(batches).toHaveLength(2);
    expect(buffer.length).toBe(1);
  });

  it('drops what still waits when it closes, and writes nothing after', async () => {
    const { clock, buffer, batches, abandoned, health } = setup({}, () => Promise.reject(away()));
    const a = completion('a');
    buffer.push(a);
    clock.advance(5);
    await vi.waitFor(() => expect(health.healthy).toBe(false));
    buffer.close();
    const error = await a.outcome;
    expect(error).toBeInstanceOf(CompletionDroppedError);
    expect(String(error)).toMatch(/the queue closed before it could be written/);
    expect(abandoned).toEqual(['a']);
    expect(buffer.dropped).toBe(1);
    // The retry's timer is gone too.
    expect(clock.pending).toBe(0);
    const late = completion('late');
    buffer.push(late);
    clock.advance(1_000);
    expect(batches).toEqual([['a']]);
  });

  it('drops a batch that was being written when it closed and then failed, rather than leave it pending', async () => {
    let fail!: (error: Error) => void;
    const { clock, buffer, abandoned } = setup({}, () => new Promise<void>((_, reject) => (fail = reject)));
    const a = completion('a');
    buffer.push(a);
    clock.advance(5);
    buffer.close();
    expect(a.settled).toBe(false);
    fail(away());
    expect(await a.outcome).toBeInstanceOf(CompletionDroppedError);
    expect(abandoned).toEqual(['a']);
    expect(buffer.length).toBe(0);
  });
});
