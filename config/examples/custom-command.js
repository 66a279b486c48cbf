// An example custom command, loaded through `plugins:` in config/vigil.yaml.
// A plugin is an ES module exporting `commands` (and/or `handlers`); plain JavaScript works, no build step.
// Written by hand here to show the contract; in TypeScript, `defineCommand` from 'vigil' with a zod
// schema gives parsing, error paths and the editor schema for free.
import { loadavg } from 'node:os';

/** @typedef {{ warn: number, crit: number }} LoadAttributes */

/** @type {import('vigil').Command<LoadAttributes>} */
const loadAverage = {
  name: 'load-average',

  // Called once at load time: return the typed attributes, or every problem with its path.
  parse(raw) {
    const attributes = { warn: 4, crit: 8, ...(raw ?? {}) };
    const issues = [];
    for (const key of Object.keys(attributes)) {
      if (key !== 'warn' && key !== 'crit') issues.push({ path: [key], message: 'unknown key' });
    }
    for (const key of ['warn', 'crit']) {
      const value = attributes[key];
      if (typeof value !== 'number' || !(value >= 0)) {
        issues.push({ path: [key], message: `expected a number ≥ 0, got ${JSON.stringify(value)}` });
      }
    }
    if (issues.length === 0 && attributes.warn > attributes.crit) {
      issues.push({ path: ['warn'], message: `expected warn ≤ crit (${attributes.crit}), got ${attributes.warn}` });
    }
    return issues.length > 0 ? { ok: false, issues } : { ok: true, value: attributes };
  },

  // Called on every run: return an outcome; the engine adds the timing.
  async run(attributes) {
    const [one] = loadavg();
    const state = one >= attributes.crit ? 'crit' : one >= attributes.warn ? 'warn' : 'ok';
    return {
      state,
      reason: state === 'ok' ? 'ok' : 'load-high',
      message: `load average ${one.toFixed(2)} (warn ${attributes.warn}, crit ${attributes.crit})`,
      metrics: [{ name: 'load1', value: one, unit: '', kind: 'gauge', warn: attributes.warn, crit: attributes.crit }],
    };
  },
};

export const commands = [loadAverage];
