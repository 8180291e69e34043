// The compiled layout the binary runs (dist/, built by `npm ci`'s prepare script): it gives the same answers as the
// TypeScript sources, its worker threads load compiled modules without tsx, and the binary leaves a stale build for
// the sources. Start-up times are a bench (bench/startup.bench.ts), not asserted here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DIST, STAMP, distState, sourceFiles } from '../../../scripts/dist-state.mjs';
import { PPOCR_DET, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

const ROOT = process.cwd();
const BIN = join(ROOT, 'bin', 'onnx-compress.mjs');

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Builds dist/ unless it is current (CI's `npm ci` has built it; a developer's edits make it stale). */
function ensureBuilt() {
  if (!distState(ROOT).current) {
    const b = run([join(ROOT, 'scripts', 'build.mjs'), '--quiet']);
    assert.equal(b.code, 0, b.stderr);
  }
  assert.ok(distState(ROOT).current);
}

test('the compiled CLI answers exactly as the sources do (inspect --json, --help)', () => {
  ensureBuilt();
  const compiled = run([join(ROOT, DIST, 'apps', 'cli', 'main.js'), 'inspect', PPOCR_DET, '--json']);
  const sources = run([BIN, 'inspect', PPOCR_DET, '--json'], { ONNX_COMPRESS_FROM_SOURCES: '1' });
  assert.equal(compiled.code, 0, compiled.stderr);
  assert.equal(sources.code, 0, sources.stderr);
  assert.deepEqual(JSON.parse(compiled.stdout), JSON.parse(sources.stdout));
  const help = run([BIN, '--help']);
  assert.equal(help.code, 0, help.stderr);
  for (const c of ['inspect', 'convert', 'compress', 'eval', 'serve', 'worker', 'start', 'keys', 'soup'])
    assert.match(help.stdout, new RegExp(`^  ${c}\\b`, 'm'), c);
});

test('worker threads under the compiled layout load compiled modules (no tsx): the API inspector', () => {
  ensureBuilt();
  const client = join(ROOT, DIST, 'apps', 'api', 'services', 'inspect-client.js');
  // A plain node process (no --import tsx): a .ts module or a tsx-only path anywhere in the chain would fail here.
  const script =
    `const { inspectModel } = await import(${JSON.stringify(client)});` +
    `const r = await inspectModel(${JSON.stringify(PPOCR_DET)});` +
    `process.stdout.write(JSON.stringify({ ok: r.ok }));` +
    `process.exit(0);`;
  // From a file: `-e` would hand --input-type to the thread too.
  const dir = tempDir('compiled-thread-');
  try {
    writeFileSync(join(dir, 'main.mjs'), script);
    const r = run([join(dir, 'main.mjs')]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { ok: true });
  } finally {
    removeDir(dir);
  }
});

test('the compiled worker hands jobs to the compiled engine; package.json and prisma/ are found from dist/', async () => {
  ensureBuilt();
  const worker = join(ROOT, DIST, 'workers', 'compress', 'worker.js');
  const { DEFAULT_ENGINE_MODULE } = (await import(pathToFileURL(worker).href)) as { DEFAULT_ENGINE_MODULE: string };
  assert.match(DEFAULT_ENGINE_MODULE, /\/dist\/workers\/compress\/engine\.js$/);
  assert.ok(existsSync(fileURLToPath(DEFAULT_ENGINE_MODULE)), DEFAULT_ENGINE_MODULE);
  // Paths the sources resolve from their own location (package.json, prisma/) resolve from dist/ too.
  const version = join(ROOT, DIST, 'packages', 'engine', 'runner', 'version.js');
  const { ENGINE_VERSION } = (await import(pathToFileURL(version).href)) as { ENGINE_VERSION: string };
  assert.equal(ENGINE_VERSION, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  const swagger = join(ROOT, DIST, 'apps', 'api', 'plugins', 'swagger.js');
  const { OPENAPI_INFO } = (await import(pathToFileURL(swagger).href)) as { OPENAPI_INFO: { version: string } };
  assert.equal(OPENAPI_INFO.version, ENGINE_VERSION);
  const migrate = join(ROOT, DIST, 'packages', 'platform', 'db', 'migrate.js');
  const { MIGRATIONS_DIR, SCHEMA_PATH } = (await import(pathToFileURL(migrate).href)) as Record<string, string>;
  assert.equal(MIGRATIONS_DIR, join(ROOT, 'prisma', 'migrations'));
  assert.ok(existsSync(SCHEMA_PATH), SCHEMA_PATH);
});

test('bundled dependencies (dist/vendor/) export what the packages themselves export', async () => {
  ensureBuilt();
  const manifest = JSON.parse(readFileSync(join(ROOT, DIST, 'vendor', 'manifest.json'), 'utf8')) as Record<
    string,
    string
  >;
  // The packages the server and the CLI start with are bundled (the reason for dist/vendor/: start-up time).
  for (const spec of ['typebox', 'fastify', 'bullmq', 'ioredis', 'commander']) assert.ok(manifest[spec], spec);
  for (const [spec, file] of Object.entries(manifest)) {
    const bundled = Object.keys(await import(pathToFileURL(join(ROOT, DIST, 'vendor', file)).href)).sort();
    const original = Object.keys(await import(spec)).sort();
    assert.deepEqual(bundled, original, spec);
  }
});

test('the compiled API (bundled Fastify, TypeBox, Swagger) serves /healthz and documents what the sources do', () => {
  ensureBuilt();
  const dist = (rel: string) => JSON.stringify(pathToFileURL(join(ROOT, DIST, rel)).href);
  // A plain node process: the compiled modules and their vendor bundles only.
  const script =
    `const { buildApp } = await import(${dist('apps/api/app.js')});` +
    `const { loadConfig } = await import(${dist('packages/platform/config/config.js')});` +
    `const { documentationPlugins } = await import(${dist('apps/api/plugins/service-extensions.js')});` +
    `const app = await buildApp({ deps: { config: loadConfig({}) }, logger: false, plugins: documentationPlugins() });` +
    `const health = await app.inject({ method: 'GET', url: '/healthz' });` +
    // No API key: the auth hook answers before any route (and before anything would touch the absent database).
    `const unauthorised = await app.inject({ method: 'GET', url: '/v1/jobs' });` +
    // Swagger UI's page and assets come from its package folder (bundled code, files where they were).
    `const docs = await app.inject({ method: 'GET', url: '/docs' });` +
    `const css = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui.css' });` +
    `process.stdout.write(JSON.stringify({ health: [health.statusCode, health.json()], ` +
    `docs: [docs.statusCode, docs.body.includes('swagger-initializer.js'), css.statusCode, css.body.length], ` +
    `unauthorised: [unauthorised.statusCode, unauthorised.headers['content-type']], doc: app.swagger() }));` +
    `await app.close();`;
  const dir = tempDir('compiled-api-');
  try {
    writeFileSync(join(dir, 'main.mjs'), script);
    const r = run([join(dir, 'main.mjs')]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { health: unknown[]; docs: unknown[]; unauthorised: unknown[]; doc: unknown };
    assert.deepEqual(out.health, [200, { status: 'ok' }]);
    assert.deepEqual(out.docs.slice(0, 3), [200, true, 200]);
    assert.ok((out.docs[3] as number) > 10_000, 'swagger-ui.css');
    assert.equal(out.unauthorised[0], 401);
    assert.match(String(out.unauthorised[1]), /^application\/problem\+json/);
    assert.deepEqual(out.doc, JSON.parse(readFileSync(join(ROOT, 'openapi', 'openapi.json'), 'utf8')));
  } finally {
    removeDir(dir);
  }
});

test('dist/ is current only while no source is newer and none was added or removed', () => {
  const root = tempDir('dist-state-');
  try {
    mkdirSync(join(root, 'apps'), { recursive: true });
    mkdirSync(join(root, 'packages', 'x'), { recursive: true });
    writeFileSync(join(root, 'apps', 'a.ts'), 'export const a = 1;\n');
    writeFileSync(join(root, 'packages', 'x', 'b.ts'), 'export const b = 1;\n');
    writeFileSync(join(root, 'packages', 'x', 'types.d.ts'), 'export {};\n'); // not a runtime source
    assert.equal(distState(root).current, false);
    assert.match(distState(root).reason, /not built/);

    const built = sourceFiles(root);
    assert.deepEqual(built.sources, [join('apps', 'a.ts'), join('packages', 'x', 'b.ts')]);
    mkdirSync(join(root, DIST));
    writeFileSync(join(root, STAMP), JSON.stringify({ newest: built.newest, count: built.sources.length }));
    assert.equal(distState(root).current, true);

    const later = new Date(built.newest + 5000);
    utimesSync(join(root, 'apps', 'a.ts'), later, later); // an edit after the build
    assert.equal(distState(root).current, false);
    assert.match(distState(root).reason, /changed after the build/);

    writeFileSync(join(root, STAMP), JSON.stringify({ newest: later.getTime(), count: 2 }));
    assert.equal(distState(root).current, true);
    writeFileSync(join(root, 'apps', 'thread.mjs'), '');
    utimesSync(join(root, 'apps', 'thread.mjs'), new Date(0), new Date(0)); // an old file, restored from git
    assert.equal(distState(root).current, false);
    assert.match(distState(root).reason, /added or removed/);
  } finally {
    removeDir(root);
  }
});

test('without a current build the binary runs the sources through tsx, silently', () => {
  const r = run([BIN, '--help'], { ONNX_COMPRESS_FROM_SOURCES: '1' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^Usage: onnx-compress/);
});
