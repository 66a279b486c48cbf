import { mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { serializeHeartbeat } from './heartbeat-file-format.js';
import { nowOf, type Clock } from '../core/clock.js';

/** What a beat says about the process it stands for. */
export interface HeartbeatSample {
  readonly pid: number;
  /** Seconds the process has been running. */
  readonly uptime: number;
  /** Resident set size, bytes; undefined when it cannot be known. */
  readonly memoryUsage: number | undefined;
}

export interface HeartbeatOptions {
  /** The heartbeat file; its directory is created when missing. */
  readonly file: string;
  /** Milliseconds between beats (≥ 1). */
  readonly intervalMs: number;
  /** Tells the time; default `systemClock`. */
  readonly clock?: Clock;
  /** What each beat reports; default this process (`process.pid`, `process.uptime()`, its rss). */
  readonly sample?: () => HeartbeatSample | Promise<HeartbeatSample>;
  /** Called with the error of a failed timed beat (the first one included); default: ignored. */
  readonly onError?: (error: unknown) => void;
}

/** A heartbeat being written. */
export interface Heartbeat extends AsyncDisposable {
  /** The file written. */
  readonly file: string;
  /** Beats written so far. */
  readonly beats: number;
  /** Writes a beat now (after one in flight). Rejects when the write fails, or after `stop()`. */
  beat(): Promise<void>;
  /**
   * Stops beating and waits for a write in flight. `remove: true` (a clean exit) then deletes the file,
   * so the monitor detaches it rather than watching it go stale. Idempotent; a later call with
   * `remove: true` still removes.
   */
  stop(options?: { remove?: boolean }): Promise<void>;
  /** `stop()` without removing the file: leaving a scope is not known to be a clean exit. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** This process, as a beat reports it. */
export function processSample(): HeartbeatSample {
  return { pid: process.pid, uptime: process.uptime(), memoryUsage: process.memoryUsage.rss() };
}

/**
 * Starts writing a heartbeat file: a beat at once, then one every `intervalMs` on an unref'd timer (the
 * heartbeat never keeps a process alive by itself). Each beat replaces the file atomically: it is
 * written to a dot-file beside it and renamed over it, so a reader sees the old beat or the new one,
 * never half of one. No fsync: a heartbeat lost to a power cut is stale anyway. A timed beat that
 * finds the previous one still writing (a hung disk) is skipped rather than queued.
 */
export function startHeartbeatFile(options: HeartbeatOptions): Heartbeat {
  assertIntervalMs(options.intervalMs);
  return new HeartbeatWriter(options);
}

/** Throws the TypeError `startHeartbeatFile` throws for an `intervalMs` that is not a positive integer. */
export function assertIntervalMs(intervalMs: number): void {
  if (!Number.isInteger(intervalMs) || intervalMs < 1) {
    throw new TypeError(`Expected \`intervalMs\` to be a positive integer, got \`${String(intervalMs)}\``);
  }
}

class HeartbeatWriter implements Heartbeat {
  readonly file: string;
  readonly #dir: string;
  readonly #tempPrefix: string;
  readonly #now: () => number;
  readonly #sample: () => HeartbeatSample | Promise<HeartbeatSample>;
  readonly #onError: (error: unknown) => void;
  readonly #timer: NodeJS.Timeout;
  #beats = 0;
  #temps = 0;
  #dirReady = false;
  /** The last write, settled or not; the next one starts after it. Never rejects. */
  #tail: Promise<void> = Promise.resolve();
  #writing = false;
  #stopped: Promise<void> | null = null;
  #removed: Promise<void> | null = null;

  constructor(options: HeartbeatOptions) {
    this.file = options.file;
    this.#dir = dirname(options.file);
    this.#tempPrefix = join(this.#dir, `.${basename(options.file)}.${process.pid}.`);
    this.#now = nowOf(options.clock);
    this.#sample = options.sample ?? processSample;
    this.#onError = options.onError ?? ignore;
    this.#timer = setInterval(() => this.#timedBeat(), options.intervalMs);
    this.#timer.unref();
    this.#timedBeat();
  }

  get beats(): number {
    return this.#beats;
  }

  beat(): Promise<void> {
    if (this.#stopped !== null) return Promise.reject(new Error(`the heartbeat ${this.file} is stopped`));
    return this.#enqueue();
  }

  stop(options: { remove?: boolean } = {}): Promise<void> {
    this.#stopped ??= this.#halt();
    if (options.remove !== true) return this.#stopped;
    this.#removed ??= this.#stopped.then(() => unlink(this.file).catch(ignoreMissing));
    return this.#removed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #timedBeat(): void {
    if (this.#writing || this.#stopped !== null) return;
    this.#enqueue().catch(this.#onError);
  }

  #enqueue(): Promise<void> {
    const write = this.#tail.then(() => this.#write());
    this.#tail = write.catch(ignore);
    return write;
  }

  async #write(): Promise<void> {
    this.#writing = true;
    const temp = `${this.#tempPrefix}${++this.#temps}.tmp`;
    try {
      const { pid, uptime, memoryUsage } = await this.#sample();
      const text = serializeHeartbeat({ timestampMs: this.#now(), uptime, memoryUsage, pid, beat: this.#beats + 1 });
      if (!this.#dirReady) {
        await mkdir(this.#dir, { recursive: true });
        this.#dirReady = true;
      }
      try {
        await writeFile(temp, text);
        await rename(temp, this.file);
      } catch (error) {
        await unlink(temp).catch(ignore);
        // The directory was removed after the first beat: create it again on the next one.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') this.#dirReady = false;
        throw error;
      }
      this.#beats++;
    } finally {
      this.#writing = false;
    }
  }

  async #halt(): Promise<void> {
    clearInterval(this.#timer);
    await this.#tail;
  }
}

function ignore(): void {}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
}
