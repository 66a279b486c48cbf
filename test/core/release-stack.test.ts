import { describe, expect, it } from 'vitest';
import { ReleaseStack } from '../../src/core/release-stack.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';

describe('ReleaseStack', () => {
  it('releases last pushed first, each awaited before the next starts', async () => {
    const stack = new ReleaseStack({ logger: silentLogger() });
    const calls: string[] = [];
    for (const name of ['handlers', 'queue', 'server']) {
      stack.push(name, async () => {
        calls.push(`${name} begins`);
        // A turn of the event loop: the next release must not begin meanwhile.
        await new Promise((resolve) => setImmediate(resolve));
        calls.push(`${name} ends`);
      });
    }
    stack.push('timer', () => void calls.push('timer'));
    expect(await stack.releaseAll()).toEqual([]);
    expect(calls).toEqual(['timer', 'server begins', 'server ends', 'queue begins', 'queue ends', 'handlers begins', 'handlers ends']);
  });

  it('logs a release that throws or rejects with its step name, and runs the others', async () => {
    const { logger, lines } = capturingLogger();
    const stack = new ReleaseStack({ logger });
    const calls: string[] = [];
    stack.push('first', () => void calls.push('first'));
    stack.push('rejects', () => Promise.reject(new Error('cannot save')));
    stack.push('middle', () => void calls.push('middle'));
    stack.push('throws', () => {
      throw new Error('boom');
    });
    stack.push('last', () => void calls.push('last'));

    const failures = await stack.releaseAll();
    expect(calls).toEqual(['last', 'middle', 'first']);
    expect(failures.map(({ step, error }) => [step, (error as Error).message])).toEqual([
      ['throws', 'boom'],
      ['rejects', 'cannot save'],
    ]);
    expect(lines).toMatchObject([
      { level: 50, msg: 'release failed', step: 'throws', err: { message: 'boom' } },
      { level: 50, msg: 'release failed', step: 'rejects', err: { message: 'cannot save' } },
    ]);
  });

  it('runs each release once: a second call returns the same promise', async () => {
    const stack = new ReleaseStack({ logger: silentLogger() });
    let releases = 0;
    stack.push('once', () => void releases++);
    const first = stack.releaseAll();
    expect(stack.releaseAll()).toBe(first);
    await first;
    await stack.releaseAll();
    expect(releases).toBe(1);
    expect(stack.size).toBe(0);
  });

  it('refuses a push once released, naming the step', async () => {
    const stack = new ReleaseStack({ logger: silentLogger() });
    await stack.releaseAll();
    expect(() => stack.push('late', () => undefined)).toThrow('Cannot push release "late": the release stack has been released already');
  });

  it('releases what was pushed when an `await using` block throws, and keeps the block’s error', async () => {
    const calls: string[] = [];
    const start = async (): Promise<void> => {
      await using stack = new ReleaseStack({ logger: silentLogger() });
      stack.push('queue', () => void calls.push('queue'));
      stack.push('server', () => void calls.push('server'));
      await Promise.resolve();
      throw new Error('port taken');
    };
    await expect(start()).rejects.toThrow('port taken');
    expect(calls).toEqual(['server', 'queue']);
  });

  it('hands its releases on with move(): the block ends without releasing, the new stack releases them', async () => {
    const calls: string[] = [];
    const start = async (): Promise<ReleaseStack> => {
      await using stack = new ReleaseStack({ logger: silentLogger() });
      stack.push('queue', () => void calls.push('queue'));
      stack.push('server', () => void calls.push('server'));
      await Promise.resolve();
      return stack.move();
    };
    const moved = await start();
    expect(calls).toEqual([]);
    expect(moved.size).toBe(2);
    await moved[Symbol.asyncDispose]();
    expect(calls).toEqual(['server', 'queue']);
  });
});
