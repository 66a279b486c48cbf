import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { builtinCommands, builtinHandlerTypes } from '../../src/plugins/builtins.js';
import { configJsonSchema } from '../../src/config/json-schema.js';

describe('config/vigil.schema.json', () => {
  it('is the schema of the built-in commands and handlers as they are (regenerate with `npm run schema`)', async () => {
    const committed: unknown = JSON.parse(await readFile(new URL('../../config/vigil.schema.json', import.meta.url), 'utf8'));
    expect(committed).toEqual(JSON.parse(JSON.stringify(configJsonSchema(builtinCommands(), builtinHandlerTypes()))));
  });
});
