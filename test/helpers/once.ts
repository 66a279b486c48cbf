import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCli, type CliResult } from './cli.js';

/** A number as perfdata and messages print it. */
export const NUM = String.raw`\d+(?:\.\d+)?`;

/** One check of a `vigil once` config. */
export interface OnceCheck {
  readonly id: string;
  readonly command: string;
  readonly attributes: Record<string, unknown>;
  /** Default 10s. */
  readonly timeout?: string;
}

/**
 * Writes a config with the one check into `dir` (JSON, which is YAML: no quoting to get wrong for
 * paths, URLs and tokens) and runs the built `vigil once` on it, as an operator or Nagios does.
 */
export async function runOnce(dir: string, check: OnceCheck, env?: NodeJS.ProcessEnv): Promise<CliResult> {
  const file = join(dir, `${check.id}.json.yaml`);
  const config = {
    server: { host: '127.0.0.1', port: 0, dataDir: join(dir, 'data') },
    checks: [{ id: check.id, command: check.command, timeout: check.timeout ?? '10s', attributes: check.attributes }],
  };
  await writeFile(file, JSON.stringify(config, null, 2));
  return runCli(['once', check.id, '-c', file], env === undefined ? {} : { env });
}

/**
 * Asserts nothing on stderr (first: when the line is missing, stderr says why), one printed line
 * matching `line` (a regex source, anchored here), and the exit code.
 */
export function expectLine(result: CliResult, line: string, code: number): void {
  expect(result.stderr, JSON.stringify(result)).toBe('');
  expect(result.stdout).toMatch(new RegExp(`^${line}\\n$`));
  expect(result.code).toBe(code);
}

/** `text` with the characters a regular expression gives meaning escaped. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
