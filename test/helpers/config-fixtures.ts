import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { z } from 'zod';
import { defineCommand } from '../../src/commands/command.js';
import { defineHandler } from '../../src/handlers/handler.js';
import type { LoadConfigOptions } from '../../src/config/config.js';
import { nonEmptyString, port } from '../../src/validation/schema-types.js';
import { formatIssue, ValidationError } from '../../src/validation/issues.js';

/** Fake commands and handler types for the config tests, independent of the real built-ins. */
export const fakeCommand = defineCommand({
  name: 'fake',
  attributes: z.strictObject({ host: nonEmptyString('a host').default('127.0.0.1'), port: port() }),
  run: () => Promise.resolve({ state: 'ok', reason: 'ok', message: 'fine' }),
});
export const strictNoopCommand = defineCommand({
  name: 'noop',
  attributes: z.strictObject({}),
  run: () => Promise.resolve({ state: 'ok', reason: 'ok', message: 'nothing to do' }),
});
const create = (name: string) => ({ name });
export const logType = defineHandler({ type: 'log', options: z.strictObject({ level: z.enum(['info', 'warn']).default('info') }), create });
export const prometheusType = defineHandler({ type: 'prometheus', options: z.strictObject({}), create });
export const webhookType = defineHandler({ type: 'webhook', options: z.strictObject({ url: nonEmptyString('a URL') }), create });

/** Load options with the fakes as the built-ins and an empty environment. */
export const fakeBuiltins: LoadConfigOptions = {
  env: {},
  commands: [fakeCommand, strictNoopCommand],
  handlerTypes: [logType, prometheusType, webhookType],
};

/** The formatted issues of the ValidationError `promise` rejects with. */
export async function issuesOf(promise: Promise<unknown>): Promise<string[]> {
  const error: unknown = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  expect(error).toBeInstanceOf(ValidationError);
  return (error as ValidationError).issues.map(formatIssue);
}

/** A temporary folder for the test file's configs, made before its tests and removed after. */
export function useConfigDir(prefix: string): { dir: () => string; writeConfig: (name: string, text: string) => Promise<string> } {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return {
    dir: () => dir,
    async writeConfig(name, text) {
      const file = join(dir, name);
      await mkdir(resolve(file, '..'), { recursive: true });
      await writeFile(file, text);
      return file;
    },
  };
}
