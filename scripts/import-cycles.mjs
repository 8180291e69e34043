#!/usr/bin/env node
// Lists import cycles among the project's own TypeScript files (relative imports, type-only ones included, since
// they too tie the files' meaning together), so that "import circles 0" (issue 16) can be checked without madge.
// Generated Prisma client code is left out. Usage: node scripts/import-cycles.mjs — exits 1 while a cycle remains.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const skip = new Set(['node_modules', 'generated', 'dist']);
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    if (skip.has(name) || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.tsx?$/.test(name) && !name.endsWith('.d.ts')) files.push(p);
  }
})(root);

const IMPORT = /(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
const graph = new Map();
for (const f of files) {
  const deps = new Set();
  for (const m of readFileSync(f, 'utf8').matchAll(IMPORT)) {
    const target = resolve(dirname(f), m[1] ?? m[2]).replace(/\.js$/, '.ts');
    if (existsSync(target)) deps.add(target);
    else if (existsSync(target + 'x')) deps.add(target + 'x');
  }
  graph.set(f, [...deps]);
}

// Tarjan's strongly connected components: each component of more than one file is one circle.
let next = 0;
const stack = [];
const onStack = new Set();
const index = new Map();
const low = new Map();
const cycles = [];
function visit(v) {
  index.set(v, next);
  low.set(v, next++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!index.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
  }
  if (low.get(v) !== index.get(v)) return;
  const component = [];
  let w;
  do {
    w = stack.pop();
    onStack.delete(w);
    component.push(relative(root, w));
  } while (w !== v);
  if (component.length > 1) cycles.push(component.sort());
}
for (const v of graph.keys()) if (!index.has(v)) visit(v);
for (const c of cycles) console.log(`circle of ${c.length} files:\n  ${c.join('\n  ')}`);
console.log(`import circles: ${cycles.length}`);
process.exitCode = cycles.length ? 1 : 0;
