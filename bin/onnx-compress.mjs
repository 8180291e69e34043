#!/usr/bin/env node
// Entry point of the `onnx-compress` binary. It runs the compiled JavaScript under dist/ (built by `npm ci` through the
// `prepare` script, or `node scripts/build.mjs`) when that build is current, and otherwise the TypeScript sources
// through tsx's loader: an edited source is never shadowed by an old build, and a checkout without a build still
// works (slower to start: tsx transpiles on every run). ONNX_COMPRESS_FROM_SOURCES=1 forces the sources.
import { fileURLToPath } from 'node:url';
import { distState } from '../scripts/dist-state.mjs';

// package.json's engines, said at start: older Node fails later with errors that do not name the cause (Prisma and
// several dependencies need 20.19).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  process.stderr.write(
    `error: onnx-compress needs Node.js 20.19 or newer (this is ${process.version}): install a current LTS release ` +
      'from https://nodejs.org (or with nvm: nvm install --lts)\n',
  );
  process.exit(1);
}

const root = fileURLToPath(new URL('..', import.meta.url));
if (process.env.ONNX_COMPRESS_FROM_SOURCES !== '1' && distState(root).current) {
  await import('../dist/apps/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../apps/cli/main.ts');
}
