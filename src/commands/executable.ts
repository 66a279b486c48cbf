import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';

const programError = 'expected a program: an absolute path or a name found on PATH';

/**
 * The absolute path of an executable file, or what is wrong with `program`: an absolute path is
 * checked as it is, a bare name is looked for in the absolute directories of `path` (`:`-separated, as
 * `execvp` looks; empty and relative entries are skipped: they would depend on the daemon's working
 * directory), and a relative path is refused. Used by `exec` for its plugins and to find `fping`.
 */
export function resolveProgram(program: string, path: string): string | ProgramProblem {
  if (program === '') return { problem: programError };
  if (isAbsolute(program)) {
    const problem = executableProblem(program);
    return problem === undefined ? program : { problem, ...(problem === NO_SUCH_FILE ? { missing: true } : {}) };
  }
  if (program.includes('/')) return { problem: `${programError} (a relative path is not resolved)` };
  for (const dir of path.split(':')) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, program);
    if (executableProblem(candidate) === undefined) return candidate;
  }
  return { problem: `${programError} (not found on PATH ${path})`, missing: true };
}

/** Why a program cannot be run; `missing` when it does not exist (yet), rather than being the wrong kind of file. */
export interface ProgramProblem {
  readonly problem: string;
  readonly missing?: true;
}

const NO_SUCH_FILE = 'expected an existing executable file (no such file)';

function executableProblem(file: string): string | undefined {
  try {
    if (statSync(file).isDirectory()) return 'expected an executable file (this is a directory)';
    accessSync(file, constants.X_OK);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return NO_SUCH_FILE;
    if (code === 'EACCES') return 'expected an executable file (no execute permission)';
    return `expected an executable file (${code ?? String(error)})`;
  }
}
