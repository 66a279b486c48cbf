import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Check } from '../checks/check.js';
import { nextSlot } from '../checks/schedule.js';
import { acknowledge as acknowledgeIncident, transition } from '../checks/state-machine.js';
import type { AnyCommand } from '../commands/command.js';
import type { Handler, Outcome } from '../handlers/handler.js';
import { isCheckRegistry, type CheckRegistry } from '../checks/check-registry.js';
import { CompletionRefusedError, type Queue, type QueueEvent } from '../queues/queue.js';
import type { Incident } from '../results/incident.js';
import { toResult, type CommandOutcome, type Result } from '../results/result.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { ServerEvents } from './events.js';
import { HandlerChain } from './handler-chain.js';
import { defaultPools, Pools, type PoolRouting, type PoolSpec, type PoolStats } from './pools.js';
import { InFlightRuns } from './in-flight-runs.js';
import { runCheck } from './run-check.js';

export interface ServerOptions {
  readonly queue: Queue;
  /** The commands checks can name. */
  readonly commands: Iterable<AnyCommand>;
  /** The handler instances checks can name. The server closes them when it stops. */
  readonly handlers?: Iterable<Handler>;
  readonly logger: Logger;
  /** Checks running at once, shared out by `pools`; default 256. */
  readonly concurrency?: number;
  /**
   * Shares of the concurrency (see Pools). Default: `default` with 85 %, `exec` with 10 % and `browser`
   * with 5 %, so plugin processes and browsers cannot starve network checks.
   */
  readonly pools?: readonly PoolSpec[];
  /** Which pool a check that names none runs in; required with `pools`. */
  readonly poolRouting?: PoolRouting;
  /** Two checks with the same command and attributes never run at once; default true. */
  readonly safeMode?: boolean;
  /** How long `stop()` waits for running checks before aborting them, in ms; default 10 000. */
  readonly stopTimeoutMs?: number;
  /** How long one handler hook may take, in ms; default 5 000. */
  readonly handlerTimeoutMs?: number;
  /** A run starting more than this many ms after its due time is reported as late; default 1 000. */
  readonly lateThresholdMs?: number;
  /** Default the system clock. */
  readonly clock?: Clock;
}

/** Counters since start, for `/healthz`, metrics and tests. */
export interface ServerStats {
  /** Runs that produced a Result. */
  readonly runs: number;
  /** Runs that started later than `lateThresholdMs` after their due time. */
  readonly lateStarts: number;
  /** Regular runs after which slots were skipped (the run started late or ran past its interval). */
  readonly overruns: number;
  /** Failed handler hooks. */
  readonly handlerErrors: number;
  /** Checks running now. */
  readonly running: number;
  /** Checks claimed and waiting for a free slot. */
  readonly waiting: number;
}

/**
 * The loop: one timer armed for the earliest due check; due checks are claimed up to the free
 * concurrency, run under their timeout, passed through the state machine and the handlers, and given
 * back to the queue at their next fixed-rate slot.
 */
export class Server extends EventEmitter<ServerEvents> implements AsyncDisposable {
  readonly #queue: Queue;
  readonly #registry: CheckRegistry | undefined;
  readonly #commands: ReadonlyMap<string, AnyCommand>;
  readonly #chain: HandlerChain;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #concurrency: number;
  readonly #stopTimeoutMs: number;
  readonly #lateThresholdMs: number;
  readonly #pools: Pools;
  /** Runs whose command is under way, for stop to interrupt when it gives up waiting. */
  readonly #inFlight = new InFlightRuns();
  /** `process` hooks still running; stop waits for them. */
  readonly #handlerWork = new Set<Promise<void>>();

  #started = false;
  #stopping = false;
  #stopped: Promise<void> | null = null;
  #unwatch: (() => void) | null = null;
  #timer: unknown = null;
  #armedAt: number | null = null;
  #pumping = false;
  /** The pump under way, which stop waits for: what it claims must be given back, not lost. */
  #pumpRun: Promise<void> = Promise.resolve();
  #pumpAgain = false;
  #runs = 0;
  #lateStarts = 0;
  #overruns = 0;

  constructor(options: ServerOptions) {
    super();
    this.#queue = options.queue;
    this.#registry = isCheckRegistry(options.queue) ? options.queue : undefined;
    this.#commands = new Map([...options.commands].map((command) => [command.name, command]));
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#concurrency = options.concurrency ?? 256;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.#lateThresholdMs = options.lateThresholdMs ?? 1_000;
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) {
      throw new TypeError(`Expected \`concurrency\` to be a positive integer, got \`${String(options.concurrency)}\``);
    }
    const fallback = defaultPools();
    if (options.pools && !options.poolRouting) throw new TypeError('Expected `poolRouting` with `pools`');
    this.#pools = new Pools(this.#concurrency, options.pools ?? fallback.pools, {
      routing: options.poolRouting ?? fallback.routing,
      safeMode: options.safeMode ?? true,
      // A finished run frees a slot: look for due work.
      onSlotFree: () => this.#pump(),
    });
    this.#chain = new HandlerChain(options.handlers ?? [], {
      logger: this.#logger,
      clock: this.#clock,
      timeoutMs: options.handlerTimeoutMs ?? 5_000,
      // The chain logs a failed hook itself, with the handler and hook: the server only emits the event.
      onError: (error, source, checkId) => this.#emitError(error, source, checkId),
    });
  }

  get stats(): ServerStats {
    let handlerErrors = 0;
    for (const count of this.#chain.errors.values()) handlerErrors += count;
    return {
      runs: this.#runs,
      lateStarts: this.#lateStarts,
      overruns: this.#overruns,
      handlerErrors,
      running: this.#pools.running,
      waiting: this.#pools.waiting,
    };
  }

  /** Slots, running, waiting and borrowed checks per pool. */
  poolStats(): PoolStats[] {
    return this.#pools.stats();
  }

  /** Failed hooks per handler name since start. */
  get handlerErrors(): ReadonlyMap<string, number> {
    return this.#chain.errors;
  }

  get queue(): Queue {
    return this.#queue;
  }

  /** The command named `name` that this server runs checks with, or `undefined`: what the API and push routes ask a command about. */
  command(name: string): AnyCommand | undefined {
    return this.#commands.get(name);
  }

  /** True from the moment `stop()` is called. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Starts taking due checks from the queue. Calling it again does nothing. */
  start(): void {
    if (this.#stopping) throw new Error('a stopped server cannot start again; create a new one');
    if (this.#started) return;
    this.#started = true;
    // Each pool claims its own checks where the queue can keep them apart (before listening: the
    // moves between lines announce themselves as due-earlier events).
    this.#queue.partitionBy?.((spec) => this.#pools.poolOf(spec));
    this.#unwatch = this.#queue.watch((event) => this.#onQueueEvent(event));
    this.#pump();
  }

  /**
   * Stops gracefully: no more checks are taken; running ones get `timeoutMs` (default `stopTimeoutMs`)
   * to finish, then are aborted and given back unchanged; handlers finish and are closed.
   * Idempotent: every call returns the same promise.
   */
  stop(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#stopped ??= this.#shutdown(options.timeoutMs ?? this.#stopTimeoutMs);
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Acknowledges a check's open incident and passes the acknowledgement to its handlers. Returns the
   * acknowledged incident, or `null` when the check has no open unacknowledged incident.
   */
  async acknowledge(checkId: string): Promise<Incident | null> {
    const check = this.#check(checkId);
    const step = acknowledgeIncident(check.state, this.#clock.now());
    if (!step?.event || !check.state.lastResult) return null;
    const previous = check.state;
    check.state = step.state;
    const logger = this.#logger.child({ checkId, command: check.spec.command });
    const outcome = await this.#mutate(check, { check: check.spec, result: previous.lastResult as Result, state: step.state, previous, incident: step.event, logger });
    this.#publish(outcome);
    return outcome.incident?.incident ?? step.event.incident;
  }

  /**
   * Applies a result that arrived from outside (a pushed heartbeat, a message from another vigil) as if
   * the check had run: the same state machine, events and handlers. The check's schedule is unchanged.
   */
  async submit(checkId: string, outcome: CommandOutcome, timing: { startedAt?: number; durationMs?: number } = {}): Promise<Result> {
    const check = this.#check(checkId);
    const now = this.#clock.now();
    const result = toResult(outcome, timing.startedAt ?? now, timing.durationMs ?? 0);
    const previous = check.state;
    const step = transition(check.spec, previous, result, now);
    this.#runs++;
    const logger = this.#logger.child({ checkId, command: check.spec.command, passive: true });
    const mutated = await this.#mutate(check, { check: check.spec, result, state: step.state, previous, incident: step.event, logger });
    this.emit('check:finish', { check: check.spec, result, state: check.state, lagMs: 0, nextDueAt: check.dueAt, missedSlots: 0 });
    this.#publish(mutated);
    return result;
  }

  /** Makes a check due now (unless it is running). Returns false when it is running. */
  runNow(checkId: string): boolean {
    this.#check(checkId);
    return (this.#registry as CheckRegistry).reschedule(checkId, this.#clock.now());
  }

  /** The check with this id from a queue that can look checks up; throws otherwise. */
  #check(checkId: string): Check {
    if (!this.#registry) throw new Error('this queue cannot look checks up by id');
    const check = this.#registry.get(checkId);
    if (!check) throw new Error(`check "${checkId}" does not exist`);
    return check;
  }

  #onQueueEvent(event: QueueEvent): void {
    if (event.type === 'removed') this.#chain.checkRemoved(event.checkId);
    else this.#pump();
  }

  /** Claims what is due up to the free concurrency, then arms the timer. Single-flight. */
  #pump(): void {
    if (this.#stopping) return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    this.#pumpRun = this.#pumpLoop()
      .catch((error: unknown) => {
        this.#report(error, 'queue');
        // The queue failed (a database away): look again in a second rather than spin.
        this.#arm(this.#clock.now() + 1_000);
      })
      .finally(() => {
        this.#pumping = false;
        if (this.#pumpAgain) this.#pump();
      });
  }

  async #pumpLoop(): Promise<void> {
    do {
      this.#pumpAgain = false;
      if (this.#queue.claimFrom) await this.#claimByPool(this.#queue.claimFrom.bind(this.#queue));
      else await this.#claimAny();
      if (this.#stopping) return;
      // With no capacity left, the next run to finish pumps again; the timer is for due times.
      const next = await this.#queue.nextDueAt();
      if (!this.#stopping) this.#arm(next);
    } while (this.#pumpAgain);
  }

  /** Claims what is due for the free slots, whatever pool the checks belong to. */
  async #claimAny(): Promise<void> {
    for (;;) {
      const capacity = this.#pools.free;
      if (capacity <= 0 || this.#stopping) return;
      const due = await this.#queue.claim(this.#clock.now(), capacity);
      this.#submit(due);
      if (due.length < capacity) return;
    }
  }

  /**
   * Each pool claims its own due checks for its free slots; then each shared pool lends its remaining
   * slots to the non-shared pools' overflow, in definition order. Repeats while a claim came back full.
   */
  async #claimByPool(claimFrom: (now: number, limit: number, partition: string) => Promise<Check[]>): Promise<void> {
    const specs = this.#pools.specs;
    let more = true;
    while (more && !this.#stopping) {
      more = false;
      const now = this.#clock.now();
      for (const pool of specs) {
        const limit = this.#pools.freeFor(pool.name);
        if (limit <= 0) continue;
        const due = await claimFrom(now, limit, pool.name);
        this.#submit(due);
        if (due.length === limit) more = true;
      }
      for (const shared of specs) {
        if (!shared.shared) continue;
        for (const owner of specs) {
          const limit = this.#pools.freeFor(shared.name);
          if (limit <= 0 || this.#stopping) break;
          if (owner.shared) continue;
          const due = await claimFrom(now, limit, owner.name);
          this.#submit(due);
          if (due.length === limit) more = true;
        }
      }
    }
  }

  #submit(due: readonly Check[]): void {
    if (due.length > 0) this.#pools.submit(due.map((check) => ({ check, run: () => this.#execute(check) })));
  }

  #arm(at: number | null): void {
    if (at === this.#armedAt && this.#timer !== null) return;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#armedAt = at;
    if (at === null) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.#armedAt = null;
      this.#pump();
    }, Math.max(0, at - this.#clock.now()));
  }

  /** One claimed check: run, settle, give back. Never rejects. */
  async #execute(check: Check): Promise<void> {
    try {
      // Claimed, but the server began stopping before a slot was free: give it back untouched.
      if (this.#stopping) return await this.#queue.complete(check, check.dueAt);
      const { spec } = check;
      const startedAt = this.#clock.now();
      const lagMs = startedAt - check.dueAt;
      const logger = this.#logger.child({ checkId: spec.id, command: spec.command });
      if (lagMs > this.#lateThresholdMs) {
        this.#lateStarts++;
        logger.warn({ lagMs, dueAt: new Date(check.dueAt).toISOString() }, 'check started late');
      }
      if (this.listenerCount('check:start') > 0) this.emit('check:start', { check, lagMs, pool: this.#pools.poolOf(spec) });
      const run = await runCheck(check, { commands: this.#commands, clock: this.#clock, logger, inFlight: this.#inFlight, checks: this.#registry });
      if (run.kind === 'shutdown') return await this.#queue.complete(check, check.dueAt);
      await this.#settle(check, run.result, lagMs, logger);
    } catch (error) {
      // A shared queue may refuse a completion: the lease moved to another instance, or the database
      // was away too long. The check is not ours any more; its outcome is not published.
      if (error instanceof CompletionRefusedError) {
        this.#logger.warn({ err: error, checkId: check.spec.id }, 'the queue refused the completion; the outcome is dropped');
        return;
      }
      this.#report(error, 'server', check.spec.id);
      await this.#queue.complete(check, this.#clock.now() + check.spec.retryIntervalMs).catch((e: unknown) => this.#report(e, 'queue', check.spec.id));
    }
  }

  /** State machine, mutate hooks, next due time, give back; then the process hooks in the background. */
  async #settle(check: Check, result: Result, lagMs: number, logger: Logger): Promise<void> {
    const { spec } = check;
    const now = this.#clock.now();
    // Read the state now, not at claim time: an acknowledgement may have landed while the check ran.
    const previous = check.state;
    const step = transition(spec, previous, result, now);
    this.#runs++;

    let nextDueAt: number | null;
    let missedSlots = 0;
    if (step.retry) nextDueAt = now + spec.retryIntervalMs;
    else if (spec.intervalMs === null) nextDueAt = null;
    else {
      const regular = check.dueAt === check.slotAt;
      const slot = nextSlot(check.slotAt, spec.intervalMs, now);
      nextDueAt = check.slotAt = slot.dueAt;
      // After retries the grid moved on while the check was off it: that is not an overrun.
      if (regular && slot.missed > 0) {
        missedSlots = slot.missed;
        this.#overruns++;
        logger.warn({ missedSlots, lagMs, durationMs: result.durationMs, intervalMs: spec.intervalMs }, 'run overran its slot; skipping missed slots');
      }
    }

    const outcome = await this.#mutate(check, { check: spec, result, state: step.state, previous, incident: step.event, logger });
    await this.#queue.complete(check, nextDueAt);
    if (this.listenerCount('check:finish') > 0) this.emit('check:finish', { check: spec, result, state: check.state, lagMs, nextDueAt, missedSlots });
    this.#publish(outcome);
  }

  /**
   * Takes the outcome's state at once, so that another outcome of the same check arriving while the
   * `mutate` hooks run (a pushed ping during a scheduled run) builds on it rather than being lost; then
   * runs the hooks and keeps what they added to the incident, if it is still the check's incident.
   */
  #mutate(check: Check, outcome: Outcome): Outcome | Promise<Outcome> {
    check.state = outcome.state;
    const handlers = this.#chain.resolve(check.spec.handlers);
    // Most runs meet no mutate hook: no promise for them.
    if (!handlers.some((handler) => handler.mutate !== undefined)) return outcome;
    return this.#mutateWith(check, outcome, handlers);
  }

  async #mutateWith(check: Check, outcome: Outcome, handlers: readonly Handler[]): Promise<Outcome> {
    const mutated = await this.#chain.mutate(outcome, handlers);
    const event = mutated.incident;
    if (event && event.type !== 'resolve' && check.state.incident?.id === event.incident.id && check.state.incident !== event.incident) {
      check.state = { ...check.state, incident: event.incident };
    }
    return mutated;
  }

  /** Emits the incident event and runs the `process` hooks in the background (stop waits for them). */
  #publish(outcome: Outcome): void {
    if (outcome.incident) this.emit(`incident:${outcome.incident.type}`, { check: outcome.check, incident: outcome.incident.incident });
    const work = this.#chain.process(outcome, this.#chain.resolve(outcome.check.handlers));
    // Synchronous hooks (the log and prometheus handlers) are done already; only pending work is tracked.
    if (work === undefined) return;
    this.#handlerWork.add(work);
    void work.finally(() => this.#handlerWork.delete(work));
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    this.#unwatch?.();
    this.#arm(null);
    await this.#pumpRun;
    // Claimed but never started: back in line, untouched.
    await Promise.all(this.#pools.drainWaiting().map((check) => this.#queue.complete(check, check.dueAt)));
    const running = this.#pools.running;
    if (running > 0) {
      this.#logger.info({ running, timeoutMs }, 'stopping: waiting for running checks');
      const finished = await this.#within(this.#pools.onIdle(), timeoutMs);
      if (!finished) {
        this.#logger.warn({ running: this.#pools.running }, 'stopping: aborting checks still running');
        for (const run of this.#inFlight) run.interrupt();
      }
    }
    await this.#pools.onIdle();
    await Promise.all(this.#handlerWork);
    await this.#chain.close();
    this.#logger.info({ runs: this.#runs }, 'stopped');
  }

  /** Resolves true when `work` settles within `ms`, false when the time ran out first. */
  #within(work: Promise<unknown>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => resolve(false), ms);
      void work.then(() => {
        this.#clock.clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** An unexpected failure of the server's own or of its queue: logged, and emitted as `error`. */
  #report(error: unknown, source: string, checkId?: string): void {
    this.#logger.error({ err: error, source, checkId }, 'unexpected failure');
    this.#emitError(error, source, checkId);
  }

  #emitError(error: unknown, source: string, checkId?: string): void {
    if (this.listenerCount('error') > 0) this.emit('error', checkId === undefined ? { error, source } : { error, source, checkId });
  }
}
