import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { fakeCommand, logType, prometheusType, strictNoopCommand, webhookType } from '../helpers/config-fixtures.js';

describe('configJsonSchema', () => {
  const schema = configJsonSchema([fakeCommand, strictNoopCommand], [logType, prometheusType, webhookType]);
  const properties = schema.properties as Record<string, Record<string, unknown>>;

  it('types each command’s attributes through an if/then on the command name', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    const items = properties.checks?.items as Record<string, unknown>;
    expect(items.additionalProperties).toBe(false);
    expect(items.required).toEqual(['id', 'command']);
    const allOf = items.allOf as Record<string, Record<string, unknown>>[];
    const fake = allOf.find((entry) => JSON.stringify(entry.if) === JSON.stringify({ properties: { command: { const: 'fake' } }, required: ['command'] }));
    const { $schema: _, ...fakeAttributes } = fakeCommand.attributesJsonSchema ?? {};
    expect(fake?.then).toEqual({ properties: { attributes: fakeAttributes } });
    expect(fakeAttributes).toMatchObject({ properties: { port: { type: 'integer', minimum: 1, maximum: 65535 } }, required: ['port'] });
  });

  it('accepts durations as a pattern string or a number, and `once` for an interval', () => {
    const check = (properties.checks?.items as { properties: Record<string, Record<string, unknown>> }).properties;
    expect(check.timeout).toMatchObject({ type: ['string', 'number'], pattern: expect.any(String) as unknown });
    const pattern = new RegExp(check.timeout?.pattern as string);
    expect(['30s', '250ms', '1.5h', '1d'].every((text) => pattern.test(text))).toBe(true);
    expect(pattern.test('soon')).toBe(false);
    expect(JSON.stringify(check.interval)).toContain('"const":"once"');
    expect(properties.server).toMatchObject({ additionalProperties: false, properties: { port: { default: 9470 }, stopTimeout: { default: '10s' } } });
  });

  it('types handler entries by their type, defaulting the type to the entry name', () => {
    const handlers = properties.handlers as { properties: Record<string, unknown>; additionalProperties: Record<string, unknown> };
    expect(handlers.additionalProperties.required).toEqual(['type']);
    expect((schema.$defs as Record<string, unknown>)['handler-options-webhook']).toMatchObject({
      properties: { type: {}, url: { type: 'string', minLength: 1 } },
      required: ['url'],
      additionalProperties: false,
    });
    // An entry named like a type takes that type's options when it has no `type` of its own.
    expect(JSON.stringify(handlers.properties.webhook)).toContain('{"if":{"not":{"required":["type"]}},"then":{"$ref":"#/$defs/handler-options-webhook"}}');
    expect(JSON.stringify(handlers.additionalProperties)).toContain('"const":"webhook"');
  });
});
