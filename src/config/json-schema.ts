import { z } from 'zod';
import type { AnyCommand } from '../commands/command.js';
import type { AnyHandlerType } from '../handlers/handler.js';
import { checkSchema, defaultsSchema, ingestSchema, queueSchema, serverSchema } from './config.js';
import { isMapping } from '../core/values.js';
import { pluginsSchema } from './plugin-loader.js';

/** JSON Schema (draft 2020-12) of the config file for editors; each check's `attributes` is typed by its command. */
export function configJsonSchema(commands: readonly AnyCommand[], handlerTypes: readonly AnyHandlerType[]): Record<string, unknown> {
  const handlers = handlersJsonSchema(handlerTypes);
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'vigil config',
    description: 'Configuration of vigil, a check poller and heartbeat monitor. String values may use ${VAR} and ${VAR:-default}.',
    type: 'object',
    additionalProperties: false,
    properties: {
      server: jsonSchemaOf(serverSchema),
      queue: jsonSchemaOf(queueSchema),
      defaults: jsonSchemaOf(defaultsSchema),
      handlers: handlers.schema,
      plugins: jsonSchemaOf(pluginsSchema),
      checks: { type: 'array', description: 'The checks to run', items: checkJsonSchema(commands) },
      ingest: jsonSchemaOf(ingestSchema),
    },
    $defs: handlers.$defs,
  };
}

function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

/** Places a command's or handler type's own schema inside ours; with `$defs`, its `$ref`s need their own base. */
function embed(schema: Record<string, unknown>, id: string): Record<string, unknown> {
  const { $schema: _, ...rest } = schema;
  return '$defs' in rest && !('$id' in rest) ? { $id: `urn:vigil:${id}`, ...rest } : rest;
}

function nameOrKnown(names: readonly string[], description: string): Record<string, unknown> {
  // The enum offers completions; the plain string admits names from plugins.
  return names.length === 0
    ? { description, type: 'string', minLength: 1 }
    : { description, anyOf: [{ enum: names }, { type: 'string', minLength: 1 }] };
}

function checkJsonSchema(commands: readonly AnyCommand[]): Record<string, unknown> {
  const base = jsonSchemaOf(checkSchema);
  const properties = { ...(base.properties as Record<string, unknown>) };
  properties.command = nameOrKnown(
    commands.map((command) => command.name),
    'The command that performs the check (a built-in one or one from a plugin)',
  );
  const allOf = commands.flatMap((command) =>
    command.attributesJsonSchema
      ? [
          {
            if: { properties: { command: { const: command.name } }, required: ['command'] },
            then: { properties: { attributes: embed(command.attributesJsonSchema, `command:${encodeURIComponent(command.name)}:attributes`) } },
          },
        ]
      : [],
  );
  return { ...base, properties, ...(allOf.length > 0 ? { allOf } : {}) };
}

/** The `handlers:` section's schema, and the `$defs` (one per handler type's options) its branches refer to. */
function handlersJsonSchema(handlerTypes: readonly AnyHandlerType[]): { schema: Record<string, unknown>; $defs: Record<string, unknown> } {
  const typeProperty = nameOrKnown(
    handlerTypes.map((type) => type.type),
    'The handler type (default: the entry name)',
  );
  const $defs: Record<string, unknown> = {};
  const optionsRef = new Map<string, Record<string, unknown>>();
  for (const type of handlerTypes) {
    const key = `handler-options-${type.type}`;
    let options: Record<string, unknown> = {};
    if (type.optionsJsonSchema) {
      options = embed(type.optionsJsonSchema, `handler:${encodeURIComponent(type.type)}:options`);
      // The options sit beside `type` in the entry, so a closed options schema must still let `type` in.
      if (isMapping(options.properties)) options = { ...options, properties: { type: {}, ...options.properties } };
    }
    $defs[key] = options;
    optionsRef.set(type.type, { $ref: `#/$defs/${encodeURIComponent(key.replaceAll('~', '~0').replaceAll('/', '~1'))}` });
  }
  const byType = handlerTypes.map((type) => ({
    if: { properties: { type: { const: type.type } }, required: ['type'] },
    then: optionsRef.get(type.type),
  }));
  const schema = {
    type: 'object',
    description: 'Named handler instances: a type (default: the name) and its options. Checks refer to them by name.',
    properties: Object.fromEntries(
      handlerTypes.map((type) => [
        type.type,
        {
          type: 'object',
          properties: { type: typeProperty },
          allOf: [...byType, { if: { not: { required: ['type'] } }, then: optionsRef.get(type.type) }],
        },
      ]),
    ),
    additionalProperties: { type: 'object', required: ['type'], properties: { type: typeProperty }, allOf: byType },
  };
  return { schema, $defs };
}
