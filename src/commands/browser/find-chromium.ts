import { resolveProgram } from '../executable.js';

/** Names looked for on PATH when neither the check, the command nor `VIGIL_CHROMIUM` names a Chromium. */
export const CHROMIUM_NAMES = ['chromium', 'chromium-browser', 'google-chrome'] as const;
/** The variable that names the Chromium to run, as a path or a name on PATH. */
export const CHROMIUM_ENV = 'VIGIL_CHROMIUM';
/** When the environment has no PATH. */
const FALLBACK_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * The absolute path of the Chromium to run, or why there is none: `configured` (a check's
 * `executablePath`, else the command's) when given, else `VIGIL_CHROMIUM`, else the first of
 * `CHROMIUM_NAMES` on PATH. Looked up on every run, so that installing a browser fixes a check
 * without a restart; a few `stat` calls are nothing beside a page load.
 */
export function findChromium(configured: string | undefined, env: NodeJS.ProcessEnv): string | { problem: string } {
  const path = env['PATH'] ?? FALLBACK_PATH;
  if (configured !== undefined) return named(configured, path, `executablePath ${configured}`);
  const fromEnv = env[CHROMIUM_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return named(fromEnv, path, `${CHROMIUM_ENV}=${fromEnv}`);
  for (const name of CHROMIUM_NAMES) {
    const found = resolveProgram(name, path);
    if (typeof found === 'string') return found;
  }
  return {
    problem: `no Chromium found: none of ${CHROMIUM_NAMES.join(', ')} is on PATH (${path}); install one (Debian: apt-get install chromium), or name it with ${CHROMIUM_ENV} or the executablePath attribute`,
  };
}

function named(program: string, path: string, source: string): string | { problem: string } {
  const found = resolveProgram(program, path);
  return typeof found === 'string' ? found : { problem: `cannot run the Chromium of ${source}: ${found.problem}` };
}
