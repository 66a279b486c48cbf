import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtinCommands, builtinHandlerTypes } from '../src/builtins.js';
import { configJsonSchema } from '../src/server/config-schema.js';

/** The package root: the nearest directory above this script with a package.json (it runs from source or from dist). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

const file = join(packageRoot(), 'config', 'vigil.schema.json');
const schema = configJsonSchema(builtinCommands(), builtinHandlerTypes());
await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
console.log(`wrote ${file}`);
