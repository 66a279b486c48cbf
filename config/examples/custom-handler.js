// An example custom handler type, loaded through `plugins:` in config/vigil.yaml: appends one JSON line
// per state change or incident event to a file, e.g. for a shell script to tail.
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** @type {import('vigil').HandlerType<{ file: string }>} */
const jsonlHandler = {
  type: 'jsonl',

  parseOptions(raw) {
    const options = raw ?? {};
    const issues = Object.keys(options)
      .filter((key) => key !== 'file')
      .map((key) => ({ path: [key], message: 'unknown key' }));
    if (typeof options.file !== 'string' || options.file === '') {
      issues.push({ path: ['file'], message: `expected a file path, got ${JSON.stringify(options.file)}` });
    }
    return issues.length > 0 ? { ok: false, issues } : { ok: true, value: { file: resolve(options.file) } };
  },

  create(name, options) {
    let ready;
    return {
      name,
      async process(outcome) {
        const changed = outcome.incident !== null || outcome.state.hardState !== outcome.previous.hardState
          || outcome.state.stateType !== outcome.previous.stateType;
        if (!changed) return;
        ready ??= mkdir(dirname(options.file), { recursive: true });
        await ready;
        const line = {
          at: new Date().toISOString(),
          check: outcome.check.id,
          state: outcome.result.state,
          stateType: outcome.state.stateType,
          reason: outcome.result.reason,
          message: outcome.result.message,
          incident: outcome.incident ? { event: outcome.incident.type, id: outcome.incident.incident.id } : null,
        };
        await appendFile(options.file, `${JSON.stringify(line)}\n`);
      },
    };
  },
};

export const handlers = [jsonlHandler];
