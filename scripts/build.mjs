#!/usr/bin/env node
// Compiles the runtime sources (apps/, packages/, workers/, prisma/generated/) to JavaScript under dist/, one file per
// source file at the same relative path, so the CLI starts without transpiling on every run (bin/onnx-compress.mjs
// runs dist/ when it is current and falls back to tsx when it is not). `npm ci` runs this as the `prepare` script:
// there is no build step to remember. Usage: node scripts/build.mjs [--quiet] [--check]
//   --check   exit 0 if dist/ is current, 1 if it is missing or older than the sources (no build)
//
// Each file is transpiled on its own with esbuild (tsx's own transpiler, a dependency of tsx, so it is present in
// production installs too); the project's tsconfig has isolatedModules, which is what makes per-file output correct.
// Type checking stays with `npm run typecheck`. Non-TypeScript modules the sources load at run time (the worker-thread
// entries *.mjs) are copied beside their siblings.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DIST, STAMP, distState, sourceFiles } from './dist-state.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = new Set(process.argv.slice(2));

if (args.has('--check')) {
  const state = distState(root);
  if (!args.has('--quiet')) console.log(state.current ? 'dist/ is current' : `dist/ is not current: ${state.reason}`);
  process.exit(state.current ? 0 : 1);
}

const files = sourceFiles(root);
if (files.sources.length === 0) process.exit(0); // an install without the sources (a Docker layer): nothing to build

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  // Not an error a user must act on: the CLI runs the sources through tsx instead (slower start-up).
  if (!args.has('--quiet'))
    console.log('build: esbuild not installed; the CLI will run the TypeScript sources via tsx');
  process.exit(0);
}

// The project's compiler options (target, class fields, module syntax), as tsx passes them to esbuild.
const tsconfigRaw = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
const started = performance.now();
const out = join(root, DIST);
rmSync(out, { recursive: true, force: true });
for (const rel of files.sources) {
  const src = join(root, rel);
  const code = readFileSync(src, 'utf8');
  const dest = join(out, rel.endsWith('.ts') ? rel.slice(0, -3) + '.js' : rel);
  mkdirSync(dirname(dest), { recursive: true });
  if (!rel.endsWith('.ts')) {
    copyFileSync(src, dest);
    continue;
  }
  const r = esbuild.transformSync(code, {
    loader: 'ts',
    format: 'esm',
    target: 'node20',
    sourcefile: rel,
    // Matches how tsx runs the sources (the job page serialises functions and expects the same shape).
    keepNames: true,
    tsconfigRaw,
  });
  writeFileSync(dest, r.code);
}
// Written last: a build that stopped half-way leaves no stamp, and the bin treats dist/ as missing.
writeFileSync(join(root, STAMP), JSON.stringify({ newest: files.newest, count: files.sources.length }) + '\n');
if (!args.has('--quiet')) {
  const ms = (performance.now() - started).toFixed(0);
  console.log(`build: ${files.sources.length} files → ${DIST}/ in ${ms} ms`);
}
