#!/usr/bin/env node
// Entry point of the `onnx-compress` binary. It runs the compiled JavaScript under dist/ (built by `npm ci` through the
// `prepare` script, or `node scripts/build.mjs`) when that build is current, and otherwise the TypeScript sources
// through tsx's loader: an edited source is never shadowed by an old build, and a checkout without a build still
// works (slower to start: tsx transpiles on every run). ONNX_COMPRESS_FROM_SOURCES=1 forces the sources.
import { fileURLToPath } from 'node:url';
import { distState } from '../scripts/dist-state.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
if (process.env.ONNX_COMPRESS_FROM_SOURCES !== '1' && distState(root).current) {
  await import('../dist/apps/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../apps/cli/main.ts');
}
