import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { builtinCommands, builtinHandlerTypes } from '../src/builtins.js';
import { configJsonSchema } from '../src/server/config-schema.js';
import { packageRoot } from '../src/server/version.js';

/** Writes config/vigil.schema.json, the JSON Schema editors use for the config file (`npm run schema`). */
const file = join(packageRoot, 'config', 'vigil.schema.json');
const schema = configJsonSchema(builtinCommands(), builtinHandlerTypes());
await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
console.log(`wrote ${file}`);
