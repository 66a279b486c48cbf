import type { Logger } from 'pino';
import { z } from 'zod';
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
export type ParseResult<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly issues: readonly Issue[] };

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
}

/** Any command, whatever its attributes' type: what registries hold. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommand = Command<any>;

export interface CommandDefinition<S extends z.ZodType> {
  readonly name: string;
  /** Schema of the attributes; its output type is what `run` receives. */
  readonly attributes: S;
  run(attributes: z.output<S>, ctx: CommandContext): Promise<CommandOutcome>;
}

/** Builds a Command from a zod schema of its attributes: parsing, error paths and JSON Schema come with it. */
export function defineCommand<S extends z.ZodType>(definition: CommandDefinition<S>): Command<z.output<S>> {
  const { name, attributes } = definition;
  return {
    name,
    parse(raw) {
      const parsed = attributes.safeParse(raw ?? {});
      return parsed.success ? { ok: true, value: parsed.data } : { ok: false, issues: fromZodError(parsed.error, raw) };
    },
    run: (parsed, ctx) => definition.run(parsed, ctx),
    attributesJsonSchema: z.toJSONSchema(attributes, { io: 'input', unrepresentable: 'any' }),
  };
}
