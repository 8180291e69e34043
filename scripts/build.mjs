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
//
// The project's files keep their layout (they find package.json, prisma/ and their worker-thread entries from their
// own location), but the pure-JavaScript dependencies they import are bundled into dist/vendor/ (one module per
// import specifier, shared code in common chunks so every importer gets the same instance) and the compiled files
// import them from there. Why: start-up was dominated by module resolution and loading, not by running code —
// TypeBox alone is ~680 ESM files, BullMQ and Fastify a few hundred CommonJS files with their dependencies; one file
// per specifier loads in a fraction of the time (bench/startup.bench.ts). Dependencies that load native or wasm code,
// are shared with one of those, or are loaded rarely stay in node_modules (NOT_BUNDLED).
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
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
const vendorDir = join(out, 'vendor');
rmSync(out, { recursive: true, force: true });

/** Packages bundled into dist/vendor/ when the sources import them (with every dependency they pull in). */
const BUNDLED = new Set([
  'typebox',
  '@bufbuild/protobuf',
  'fastify',
  '@fastify/type-provider-typebox',
  '@fastify/multipart',
  '@fastify/rate-limit',
  '@fastify/fast-json-stringify-compiler',
  '@fastify/swagger',
  '@fastify/swagger-ui',
  'pino',
  'bullmq',
  'ioredis',
  'prom-client',
  'standardwebhooks',
  'ipaddr.js',
  'fflate',
  'picomatch',
  'commander',
  'cli-progress',
]);
/**
 * Never bundled, also when a bundled package requires them: pg (shared with Prisma's adapter, which stays outside),
 * Prisma (wasm), ONNX Runtime (native), the S3 client (loaded only when configured), optional native add-ons. Files
 * a bundled package finds beside itself (Swagger UI's assets, pino's transport worker) are still found: each bundled
 * module's __dirname/__filename is its original location (see keepOutside below).
 */
const NOT_BUNDLED = [
  /^pg(\/|$)/,
  /^pg-native$/,
  /^@prisma\//,
  /^onnxruntime-node(\/|$)/,
  /^@aws-sdk\//,
  /^msgpackr-extract$/,
  /^tsx(\/|$)/,
];
const packageOf = (spec) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');
const isBare = (spec) => !/^(\.|\/|node:|[a-zA-Z]:)/.test(spec) && !builtinModules.includes(packageOf(spec));
/** dist/vendor/<file>.js for an import specifier: 'typebox/value' → typebox__value, '@fastify/multipart' → … */
const vendorName = (spec) =>
  spec
    .replace(/^@/, '')
    .replace(/[/]/g, '__')
    .replace(/[^\w.-]/g, '_');

// 1. The sources, one output file each. Only bare specifiers of bundled packages are rewritten (to the relative path
//    of their vendor module); every other import stays as written.
const vendored = new Set();
const tsFiles = files.sources.filter((rel) => rel.endsWith('.ts'));
for (const rel of files.sources.filter((r) => !r.endsWith('.ts'))) {
  const dest = join(out, rel);
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(join(root, rel), dest);
}
const rewriteImports = {
  name: 'rewrite-imports',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      if (!isBare(args.path) || !BUNDLED.has(packageOf(args.path))) return { path: args.path, external: true };
      vendored.add(args.path);
      const from = dirname(join(out, relative(root, args.importer)));
      const to = relative(from, join(vendorDir, `${vendorName(args.path)}.js`))
        .split(sep)
        .join('/');
      return { path: to.startsWith('.') ? to : `./${to}`, external: true };
    });
  },
};
await esbuild.build({
  entryPoints: tsFiles.map((rel) => join(root, rel)),
  outbase: root,
  outdir: out,
  bundle: true, // with every import external: one file in, one file out, imports rewritten by the plugin
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Matches how tsx runs the sources (the job page serialises functions and expects the same shape).
  keepNames: true,
  tsconfigRaw,
  plugins: [rewriteImports],
  logLevel: 'error',
});

// 2. The bundled dependencies: one entry per specifier the sources import, code shared between entries in chunks.
//    CommonJS inside an ES module needs `require`, and `__dirname`/`__filename` are each file's original folder.
const keepOutside = {
  name: 'keep-outside',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) =>
      args.kind !== 'entry-point' && NOT_BUNDLED.some((re) => re.test(args.path))
        ? { path: args.path, external: true }
        : undefined,
    );
    build.onLoad({ filter: /node_modules.*\.c?js$/ }, (args) => {
      const code = readFileSync(args.path, 'utf8');
      if (!/\b__(dirname|filename)\b/.test(code)) return undefined;
      const rel = relative(vendorDir, args.path).split(sep).join('/');
      const fixed = code
        .replace(/\b__dirname\b/g, `__vendorPath(${JSON.stringify(rel)}, true)`)
        .replace(/\b__filename\b/g, `__vendorPath(${JSON.stringify(rel)}, false)`);
      return { contents: fixed, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};
/** How Node loads `spec` from the project: 'esm' or 'cjs' (by extension, else the owning package.json's type). */
function formatOf(spec) {
  const file = fileURLToPath(import.meta.resolve(spec));
  if (/\.mjs$/.test(file)) return 'esm';
  if (/\.cjs$/.test(file)) return 'cjs';
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).type === 'module' ? 'esm' : 'cjs';
    } catch {
      // no package.json here: look further up
    }
  }
  return 'cjs';
}
/**
 * The vendor module of `spec`: the same exports Node gives an importer of the package itself. An ES module is
 * re-exported; a CommonJS module is required (default = module.exports, as Node does) and the names Node finds in it
 * (its cjs-module-lexer view, read here by importing the package) are exported one by one.
 */
async function vendorEntry(spec) {
  const names = Object.keys(await import(spec));
  if (formatOf(spec) === 'esm') {
    return `export * from ${JSON.stringify(spec)};\n${names.includes('default') ? `export { default } from ${JSON.stringify(spec)};\n` : ''}`;
  }
  const named = names.filter((n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n));
  return `const m = require(${JSON.stringify(spec)});\nexport default m;\n${named.length ? `export const { ${named.join(', ')} } = m;\n` : ''}`;
}
if (vendored.size) {
  const entries = new Map();
  for (const spec of vendored) entries.set(`vendor-entry:${spec}`, await vendorEntry(spec));
  const entryModules = {
    name: 'vendor-entries',
    setup(build) {
      build.onResolve({ filter: /^vendor-entry:/ }, (args) => ({ path: args.path, namespace: 'vendor-entry' }));
      build.onLoad({ filter: /.*/, namespace: 'vendor-entry' }, (args) => ({
        contents: entries.get(args.path),
        loader: 'js',
        resolveDir: root,
      }));
    },
  };
  await esbuild.build({
    entryPoints: [...vendored].sort().map((spec) => ({ in: `vendor-entry:${spec}`, out: vendorName(spec) })),
    absWorkingDir: root,
    outdir: vendorDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    keepNames: true,
    chunkNames: 'chunks/[name]-[hash]',
    banner: {
      js: [
        "import { createRequire as __createRequire } from 'node:module';",
        "import { dirname as __dirnameOf, join as __joinPath } from 'node:path';",
        "import { fileURLToPath as __fileURLToPath } from 'node:url';",
        'const require = __createRequire(import.meta.url);',
        // the folder of this output file (an entry in vendor/, or a shared chunk in vendor/chunks/), then `rel`
        'const __vendorHere = __dirnameOf(__fileURLToPath(import.meta.url));',
        "const __vendorRoot = __vendorHere.endsWith('chunks') ? __joinPath(__vendorHere, '..') : __vendorHere;",
        'const __vendorPath = (rel, dir) => { const p = __joinPath(__vendorRoot, rel); return dir ? __dirnameOf(p) : p; };',
      ].join('\n'),
    },
    plugins: [entryModules, keepOutside],
    logLevel: 'error',
  });
}

// Which vendor module stands for which import specifier (test/unit/cli/compiled.test.ts compares their exports).
mkdirSync(vendorDir, { recursive: true });
writeFileSync(
  join(vendorDir, 'manifest.json'),
  JSON.stringify(Object.fromEntries([...vendored].sort().map((spec) => [spec, `${vendorName(spec)}.js`])), null, 2) +
    '\n',
);
// Written last: a build that stopped half-way leaves no stamp, and the bin treats dist/ as missing.
writeFileSync(join(root, STAMP), JSON.stringify({ newest: files.newest, count: files.sources.length }) + '\n');
if (!args.has('--quiet')) {
  const ms = (performance.now() - started).toFixed(0);
  console.log(`build: ${files.sources.length} files → ${DIST}/ (${vendored.size} bundled dependencies) in ${ms} ms`);
}
