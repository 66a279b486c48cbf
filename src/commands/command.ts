import type { Logger } from 'pino';
import { z } from 'zod';
import type { Check } from '../checks/check.js';
import type { CheckRegistry } from '../checks/check-registry.js';
import type { CommandOutcome, Result } from '../results/result.js';
import { fromZodError, type Issue } from '../validation/issues.js';

/** What a command's `run` gets besides its attributes. */
export interface CommandContext {
  readonly checkId: string;
  /** Aborted at the deadline or when the server stops; a command should stop its work and return. */
  readonly signal: AbortSignal;
  /** Epoch milliseconds by which the run must be over. */
  readonly deadline: number;
  /** A child logger bound to this run (`checkId`, `command`). */
  readonly logger: Logger;
  /** The previous run's Result; `null` on the first run. */
  readonly previous: Result | null;
  /** The server's checks, when its queue can change them at runtime; for commands that manage checks. */
  readonly checks?: CheckRegistry;
  /**
   * Calls `listener` once, with the abort reason, when the run is aborted (when `signal` would abort);
   * returns a function that removes it, or `null` when the run is aborted already (and `listener` is
   * not called). The server's runs offer it without making an AbortController, which costs about 3 µs
   * a run (a tenth of a tcp check's whole overhead); other runners may leave it out. Commands call
   * `listenForAbort(ctx, listener)`, which falls back on `signal`.
   */
  readonly onAbort?: (listener: AbortListener) => (() => void) | null;
}

/** Told why a run was aborted: a `TimeoutError` at the deadline, an `AbortError` when the server stops. */
export type AbortListener = (reason: unknown) => void;

/**
 * Calls `listener` once when the run is aborted, through `ctx.onAbort` where the runner offers it and
 * `ctx.signal` otherwise. Returns the function that stops listening, or `null` when the run is aborted
 * already (`listener` is not called).
 */
export function listenForAbort(ctx: CommandContext, listener: AbortListener): (() => void) | null {
  if (ctx.onAbort) return ctx.onAbort(listener);
  const { signal } = ctx;
  if (signal.aborted) return null;
  const onAbort = (): void => listener(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/** The outcome of parsing attributes: the typed value, or every problem with a path inside the attributes. */
export type ParseResult<A> =
  /**
   * `warnings`: problems that do not stop the check from loading, each with its path (a plugin missing on
   * this host, which the check reports at run time until it appears); `vigil validate --strict` fails on them.
   */
  | { readonly ok: true; readonly value: A; readonly warnings?: readonly Issue[] }
  | { readonly ok: false; readonly issues: readonly Issue[] };

/**
 * A kind of check (`tcp`, `http`, `ping`, …). Stateless: one object serves every check of its kind.
 * A target that is down is an outcome (`crit` with a reason), not an exception; an exception becomes
 * an `unknown` Result with reason `exception`.
 */
export interface Command<A = unknown> {
  /** The name checks refer to in `command:`. */
  readonly name: string;
  /**
   * Validates raw attributes once, at load time. The value must be plain data (strings, numbers,
   * RegExps, Buffers; no closures): a config reload compares it deeply to decide whether a check changed.
   */
  parse(raw: unknown): ParseResult<A>;
  /** Performs one run. Must honour an abort (`ctx.signal` or `listenForAbort`); one that does not is abandoned at the deadline. */
  run(attributes: A, ctx: CommandContext): Promise<CommandOutcome>;
  /** JSON Schema of the attributes, for the config's editor schema. */
  readonly attributesJsonSchema?: Record<string, unknown>;
  /**
   * Why checks of this kind may not be created, changed or removed through the HTTP API (it answers 403
   * with this text), e.g. because they run programs on the host; absent: the API manages them.
   */
  readonly apiRefusal?: string;
  /**
   * For a command whose runs attach checks of their own (through `ctx.checks`): the id of the check of
   * this kind that attached `check`, or `undefined`. The daemon removes attached checks with the check
   * that attached them.
   */
  readonly attachedBy?: (check: Check) => string | undefined;
  /**
   * For a kind of check fed by pings from the job it watches rather than by probes (`push`): each such
   * check gets a ping token and a ping URL (`/ping/:token`, shown by the API), and what arrives through
   * the push routes or AMQP ingest becomes its outcome here.
   */
  readonly pings?: PingReceiver<A>;
  /**
   * Releases what the command keeps between runs (a browser process); called once the server has
   * stopped, and by `vigil once` after its run. A later run may start it again.
   */
  close?(): Promise<void>;
}

/** What a ping says; `at` is when it arrived (epoch ms). */
export interface Ping {
  /** `success` (`/ping/:token`, exit code 0), `start`, or `fail` (`/fail`, exit codes 1–255). */
  readonly kind: 'success' | 'start' | 'fail';
  /** Epoch milliseconds the ping arrived. */
  readonly at: number;
  /** The body's first line, trimmed; empty or absent when there was none. */
  readonly text?: string;
  /** The exit code of `/ping/:token/:exitCode`. */
  readonly exitCode?: number;
}

/** How the checks of a ping-fed command take their pings. */
export interface PingReceiver<A> {
  /** The ping token the attributes set, or `undefined` to have one derived from the check id and the data dir's secret. */
  token(attributes: A): string | undefined;
  /** The outcome `ping` makes, given the check's previous Result. */
  apply(attributes: A, previous: Result | null, ping: Ping): CommandOutcome;
  /** How long after a ping (ms) the check's own run should next judge the silence. */
  quietAfterMs(attributes: A): number;
}

/** Any command, whatever its attributes' type: what registries hold. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommand = Command<any>;

export interface CommandDefinition<S extends z.ZodType> {
  readonly name: string;
  /** Schema of the attributes; its output type is what `run` receives. */
  readonly attributes: S;
  run(attributes: z.output<S>, ctx: CommandContext): Promise<CommandOutcome>;
  /** Problems with valid attributes that still let the check load (see `ParseResult`); default none. */
  readonly warnings?: (attributes: z.output<S>) => readonly Issue[];
  /** See `Command.apiRefusal`. */
  readonly apiRefusal?: string;
  /** See `Command.attachedBy`. */
  readonly attachedBy?: (check: Check) => string | undefined;
  /** See `Command.pings`. */
  readonly pings?: PingReceiver<z.output<S>>;
}

/** Builds a Command from a zod schema of its attributes: parsing, error paths and JSON Schema come with it. */
export function defineCommand<S extends z.ZodType>(definition: CommandDefinition<S>): Command<z.output<S>> {
  const { name, attributes } = definition;
  return {
    name,
    parse(raw) {
      const parsed = attributes.safeParse(raw ?? {});
      if (!parsed.success) return { ok: false, issues: fromZodError(parsed.error, raw) };
      const warnings = definition.warnings?.(parsed.data) ?? [];
      return warnings.length === 0 ? { ok: true, value: parsed.data } : { ok: true, value: parsed.data, warnings };
    },
    run: (parsed, ctx) => definition.run(parsed, ctx),
    attributesJsonSchema: z.toJSONSchema(attributes, { io: 'input', unrepresentable: 'any' }),
    ...(definition.apiRefusal === undefined ? {} : { apiRefusal: definition.apiRefusal }),
    ...(definition.attachedBy === undefined ? {} : { attachedBy: definition.attachedBy }),
    ...(definition.pings === undefined ? {} : { pings: definition.pings }),
  };
}
