import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { CheckSpec, CheckState } from '../checks/check.js';
import type { IncidentEvent } from '../results/incident.js';
import type { Result } from '../results/result.js';
import { fromZodError } from '../validation/issues.js';
import type { ParseResult } from '../commands/command.js';

/** Everything that came of one run (or one incident change): what every handler receives. */
export interface Outcome {
  readonly check: CheckSpec;
  /** The run's Result (for an acknowledgement, the check's last Result). */
  readonly result: Result;
  /** The check's state after this outcome. */
  readonly state: CheckState;
  /** The check's state before it. */
  readonly previous: CheckState;
  /** The incident this outcome opened, updated, resolved or acknowledged; `null` when none. */
  readonly incident: IncidentEvent | null;
  /** A child logger bound to this run. */
  readonly logger: Logger;
}

export interface HandlerContext {
  /** Aborted when the handler's time is up (`handlerTimeoutMs`, default 5 s). */
  readonly signal: AbortSignal;
}

/**
 * Receives every outcome of the checks that name it. `mutate` hooks of a check's handlers run one after
 * the other, each seeing the previous one's return (to enrich the outcome, e.g. store a pager's incident
 * id as `incident.incident.externalId`); then every `process` hook runs concurrently for side effects.
 * A hook that throws or outlives its timeout is logged and counted and never stops the others.
 */
export interface Handler {
  /** The name checks use in `handlers:`. */
  readonly name: string;
  mutate?(outcome: Outcome, ctx: HandlerContext): Outcome | void | Promise<Outcome | void>;
  process?(outcome: Outcome, ctx: HandlerContext): void | Promise<void>;
  /** The check is gone (removed, or renamed): forget what is kept for it (metric series, …). */
  checkRemoved?(checkId: string): void;
  /** Flushes and releases resources; called once when the server stops, in reverse order of creation. */
  close?(): Promise<void>;
}

/** What a handler factory gets from the server. */
export interface HandlerDeps {
  readonly logger: Logger;
  /** The Prometheus registry the server exposes on `/metrics`. */
  readonly registry: Registry;
}

/** A kind of handler, instantiated by name from the config's `handlers:` section. */
export interface HandlerType<O = unknown> {
  /** The `type:` config entries use; a handler named like its type needs no entry. */
  readonly type: string;
  parseOptions(raw: unknown): ParseResult<O>;
  create(name: string, options: O, deps: HandlerDeps): Handler;
  readonly optionsJsonSchema?: Record<string, unknown>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyHandlerType = HandlerType<any>;

export interface HandlerDefinition<S extends z.ZodType> {
  readonly type: string;
  /** Schema of the options (the config entry without `type`). */
  readonly options: S;
  create(name: string, options: z.output<S>, deps: HandlerDeps): Handler;
}

/** Builds a HandlerType from a zod schema of its options. */
export function defineHandler<S extends z.ZodType>(definition: HandlerDefinition<S>): HandlerType<z.output<S>> {
  const { type, options } = definition;
  return {
    type,
    parseOptions(raw): ParseResult<z.output<S>> {
      const parsed = options.safeParse(raw ?? {});
      return parsed.success ? { ok: true, value: parsed.data } : { ok: false, issues: fromZodError(parsed.error, raw) };
    },
    create: (name, parsed, deps) => definition.create(name, parsed, deps),
    optionsJsonSchema: z.toJSONSchema(options, { io: 'input', unrepresentable: 'any' }),
  };
}
