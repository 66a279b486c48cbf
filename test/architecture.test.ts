import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { LAYERS, layerOf } from '../scripts/lint/layers.js';

/**
 * The layout's rules that lint does not see file by file: no import cycle in src/, every folder says
 * what it is, and ARCHITECTURE.md lists the layers in the order the lint rule enforces.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src');

function walk(dir: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [dir];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      const inner = walk(path);
      files.push(...inner.files);
      dirs.push(...inner.dirs);
    } else if (name.endsWith('.ts')) files.push(path);
  }
  return { files, dirs };
}

/** Every relative import of each file in src/ (type-only ones too), resolved to the file it names. */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = importedFiles
      .map((ref) => ref.fileName)
      .filter((name) => name.startsWith('.'))
      .map((name) => resolve(dirname(file), name.replace(/\.js$/, '.ts')));
    graph.set(file, targets);
  }
  return graph;
}

/** The cycles of the graph: Tarjan's strongly connected components with more than one file, or a self-import. */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    indices.set(node, index);
    low.set(node, index);
    index++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (!indices.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node) as number, indices.get(next) as number));
    }
    if (low.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.map((file) => relative(root, file)).sort());
    }
  };
  for (const node of graph.keys()) if (!indices.has(node)) visit(node);
  return found;
}

describe('the layout of src/', () => {
  const { files, dirs } = walk(srcDir);
  const graph = importGraph(files);

  it('finds the modules and their imports', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(graph.get(join(srcDir, 'server', 'server.ts'))).toContain(join(srcDir, 'checks', 'state-machine.ts'));
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('finds a cycle where there is one', () => {
    const a = join(srcDir, 'a.ts');
    const b = join(srcDir, 'b.ts');
    expect(cycles(new Map([[a, [b]], [b, [a]]]))).toEqual([['src/a.ts', 'src/b.ts']]);
  });

  it('imports only what exists', () => {
    const missing = [...graph].flatMap(([file, targets]) => targets.filter((target) => !existsSync(target)).map((target) => `${relative(root, file)} → ${relative(root, target)}`));
    expect(missing).toEqual([]);
  });

  it('puts every module in a layer of the lint rule, with no import upward', () => {
    const upward: string[] = [];
    for (const [file, targets] of graph) {
      const from = layerOf(file, srcDir) as string;
      expect(LAYERS, relative(root, file)).toContain(from);
      for (const target of targets) {
        const to = layerOf(target, srcDir) as string;
        if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) upward.push(`${relative(root, file)} → ${relative(root, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('opens every folder with a README.md that says what it is', () => {
    const silent = dirs.filter((dir) => {
      const readme = join(dir, 'README.md');
      return !existsSync(readme) || readFileSync(readme, 'utf8').trim() === '';
    });
    expect(silent.map((dir) => relative(root, dir))).toEqual([]);
  });

  it('lists the layers in ARCHITECTURE.md in the order lint enforces', () => {
    const text = readFileSync(join(root, 'ARCHITECTURE.md'), 'utf8');
    const documented = [...text.matchAll(/^\| `([a-z]+)\/` \|/gm)].map((match) => match[1]);
    expect(documented).toEqual(LAYERS.filter((layer) => layer !== '.'));
  });
});
