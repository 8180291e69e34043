// The engine's public entries (issue 16.4): index.ts, the whole surface, and the light entries that start-up paths
// (the start of CLI compress, inspect/convert/eval, the worker's file moves) import alone: job.ts, onnx/index.ts,
// data/index.ts, runtime/index.ts. A light entry is only worth having while it stays light: no module it loads,
// directly or through others, may reach the recipe schema, the method registry or the runner (loading those loads
// every method). This walks the value imports from each (type-only imports are erased at compile time and load
// nothing) and fails on the first path that reaches one of them; the control checks that the same walk from index.ts
// does reach them, so the walk itself can fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const HEAVY = ['packages/engine/recipe.ts', 'packages/engine/methods/registry.ts', 'packages/engine/run.ts'];
const STATEMENT =
  /(?:^|\n)\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

/** Relative modules `file` loads at run time (import type, export type and all-`type` name lists load nothing). */
function valueImports(file: string): string[] {
  const out: string[] = [];
  for (const m of readFileSync(file, 'utf8').matchAll(STATEMENT)) {
    const spec = m[4] ?? m[5];
    if (m[2]) continue;
    const names = m[3]?.match(/^\{([^}]*)\}$/)?.[1];
    if (names !== undefined && names.split(',').every((n) => !n.trim() || /^type\s/.test(n.trim()))) continue;
    const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
    if (existsSync(target)) out.push(target);
  }
  return out;
}

/** The chain of files from `entry` to the first heavy module it loads, or null. */
function pathToHeavy(entry: string): string[] | null {
  const from = new Map<string, string | null>([[entry, null]]);
  const queue = [entry];
  while (queue.length) {
    const file = queue.shift()!;
    if (HEAVY.includes(relative(root, file))) {
      const chain = [];
      for (let f: string | null = file; f; f = from.get(f)!) chain.unshift(relative(root, f));
      return chain;
    }
    for (const next of valueImports(file)) {
      if (!from.has(next)) {
        from.set(next, file);
        queue.push(next);
      }
    }
  }
  return null;
}

const LIGHT = ['job.ts', 'onnx/index.ts', 'data/index.ts', 'runtime/index.ts'];

test('the light entries load neither the recipe schema, the registry nor the runner', () => {
  for (const entry of LIGHT) {
    const chain = pathToHeavy(join(root, 'packages/engine', entry));
    assert.equal(chain, null, `${entry} reaches a heavy module: ${chain?.join(' -> ')}`);
  }
});

test('the job contract loads nothing but its own pieces (the start of compress imports it)', () => {
  const loaded = valueImports(join(root, 'packages/engine/job.ts')).map((f) => relative(root, f));
  assert.deepEqual(loaded, ['packages/engine/job-parts.ts']);
});

test('control: index.ts does reach them (the walk can find such a path)', () => {
  const chain = pathToHeavy(join(root, 'packages/engine/index.ts'));
  assert.ok(chain, 'index.ts should reach the recipe schema');
  assert.ok(HEAVY.includes(chain.at(-1)!));
});
