// @ts-check
/**
 * The layers of `src/`, lowest first: a module may import from its own top-level folder and from the
 * layers below it, never from one above. ARCHITECTURE.md explains each; eslint.config.js enforces the
 * order with the `vigil/layers` rule below, and test/architecture.test.ts checks that there is no
 * import cycle and that every folder says what it is.
 */
import { dirname, relative, resolve, sep } from 'node:path';

/** Top-level folders of `src/` (and `.` for its root files), lowest first. */
export const LAYERS = [
  'core',
  'validation',
  'results',
  'checks',
  'postgres',
  'metrics',
  'heartbeats',
  'commands',
  'handlers',
  'plugins',
  'queues',
  'store',
  'server',
  'ingest',
  'config',
  'http',
  'web',
  'daemon',
  '.',
];

/** The layer of a file under `srcDir`, or `null` outside it. */
export function layerOf(file, srcDir) {
  const rel = relative(srcDir, file);
  if (rel.startsWith('..') || rel === '') return null;
  const parts = rel.split(sep);
  return parts.length === 1 ? '.' : parts[0];
}

/** @type {import('eslint').Rule.RuleModule} */
const layersRule = {
  meta: {
    type: 'problem',
    docs: { description: 'Imports in src/ point down the layers of scripts/lint/layers.js' },
    schema: [],
    messages: {
      upward: '{{from}}/ may not import from {{to}}/ ({{source}}): {{to}} is above {{from}} in the layer order (ARCHITECTURE.md)',
      unknown: 'src/{{folder}}/ is not a layer: add it to scripts/lint/layers.js and ARCHITECTURE.md',
    },
  },
  create(context) {
    const srcDir = resolve(context.cwd, 'src');
    const file = context.filename;
    const from = layerOf(file, srcDir);
    if (from === null) return {};
    /** @param {import('estree').Node & { source?: import('estree').Literal | null }} node */
    const check = (node) => {
      const source = node.source?.value;
      if (typeof source !== 'string' || !source.startsWith('.')) return;
      const to = layerOf(resolve(dirname(file), source), srcDir);
      if (to === null || to === from) return;
      const fromRank = LAYERS.indexOf(from);
      const toRank = LAYERS.indexOf(to);
      if (fromRank < 0) return context.report({ node, messageId: 'unknown', data: { folder: from } });
      if (toRank < 0) return context.report({ node, messageId: 'unknown', data: { folder: to } });
      if (toRank > fromRank) context.report({ node, messageId: 'upward', data: { from, to, source } });
    };
    return {
      ImportDeclaration: check,
      ExportNamedDeclaration: check,
      ExportAllDeclaration: check,
      ImportExpression: check,
    };
  },
};

export const layersPlugin = { rules: { layers: layersRule } };
