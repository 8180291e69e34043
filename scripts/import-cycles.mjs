#!/usr/bin/env node
// Checks two properties of the import graph of the project's own TypeScript files (issue 16), without madge:
//   1. no import circles: each strongly connected group of files is listed (type-only imports count, since they too
//      tie the files' meaning together: a method that names `Recipe` depends on the union of every method);
//   2. no arrow from a lower layer to a higher one: packages/engine < packages/platform < workers < apps (a file may
//      import its own layer or a lower one; test/, bench/, scripts/ and the rest stand outside the layers).
// Relative imports only (package imports cannot point into the tree). Generated code is left out: Prisma's client
// (prisma/generated/) and the protobuf classes (onnx/gen/) are rewritten by their generators on every run, so a circle
// inside them is neither ours to break nor stable between generator versions; only edges INTO them are followed.
// Usage: node scripts/import-cycles.mjs [ROOT] — exits 1 while a circle or a layer violation remains. Run by
// `npm run lint`; ROOT (default: this repository) lets test/unit/scripts check the checker on a made-up tree.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = process.argv[2] ? resolve(process.argv[2]) : new URL('..', import.meta.url).pathname;
const skip = new Set(['node_modules', 'generated', 'gen', 'dist']);
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

// Layers, lowest first: a file's layer is the first folder prefix it falls under.
const LAYERS = ['packages/engine/', 'packages/platform/', 'workers/', 'apps/'];
const layerOf = (file) => LAYERS.findIndex((prefix) => relative(root, file).startsWith(prefix));
const upward = [];
for (const [from, deps] of graph) {
  const own = layerOf(from);
  if (own < 0) continue;
  for (const to of deps) {
    const target = layerOf(to);
    if (target > own)
      upward.push(`${relative(root, from)} -> ${relative(root, to)} (${LAYERS[own]} < ${LAYERS[target]})`);
  }
}
for (const u of upward.sort()) console.log(`upward import: ${u}`);
console.log(`upward imports: ${upward.length}`);
process.exitCode = cycles.length || upward.length ? 1 : 0;
