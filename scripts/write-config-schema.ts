import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { builtinCommands, builtinHandlerTypes } from '../src/plugins/builtins.js';
import { configJsonSchema } from '../src/config/json-schema.js';
import { packageRoot } from '../src/core/version.js';

/** Writes config/vigil.schema.json, the JSON Schema editors use for the config file (`npm run schema`). */
const file = join(packageRoot, 'config', 'vigil.schema.json');
const schema = configJsonSchema(builtinCommands(), builtinHandlerTypes());
await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
console.log(`wrote ${file}`);
