// The search from the builds users run: the compiled CLI (dist/, built by `npm ci`'s prepare script) and the esbuild
// bundle bench/gpu.sh carries to GPU hosts (dist-bench/). Both register every method from the registry's static
// list, search included; these runs fail if a build leaves it out or cannot apply the methods it searches over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIST, distState } from '../../../scripts/dist-state.mjs';
import { tokenData, transformer } from '../sparsity/models.js';
import { tempDir, writeCase } from '../sparsity/helpers.js';

const ROOT = process.cwd();

function node(args: string[]) {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000, cwd: ROOT });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const RECIPE = {
  method: 'search',
  budget: { metric: 'perplexity', maxRelativeIncrease: 0.05 },
  space: { methods: ['quantize', 'sparsity'], bits: [4, 8], groupSize: [32], schemes: ['rtn'], criteria: ['wanda'] },
  maxTrials: 4,
};

test('the compiled CLI runs method "search": model.onnx, report.search and pareto.svg', async () => {
  if (!distState(ROOT).current) {
    const b = node([join(ROOT, 'scripts', 'build.mjs'), '--quiet']);
    assert.equal(b.code, 0, b.stderr);
  }
  const dir = tempDir();
  try {
    const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(16) });
    const recipe = join(dir, 'recipe.json');
    writeFileSync(recipe, JSON.stringify(RECIPE));
    const out = join(dir, 'out');
    mkdirSync(out);
    const r = node([
      join(ROOT, DIST, 'apps', 'cli', 'main.js'),
      'compress',
      lm.modelPath,
      '--recipe',
      recipe,
      '--calibration',
      lm.dataPath,
      '-o',
      join(out, 'model.onnx'),
      '--report',
      join(out, 'report.json'),
      '--no-progress',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    assert.equal(report.recipe.method, 'search');
    assert.ok(report.search.chosen.withinBudget);
    assert.ok(report.search.points.length >= 1 && report.search.points.length <= 4);
    assert.ok(existsSync(join(out, 'model.onnx')));
    assert.ok(existsSync(join(out, 'pareto.svg')), `files: ${JSON.stringify(report.artifacts ?? null)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the esbuild bundle (bench/gpu.sh --build: dist-bench/) runs method "search"', async () => {
  // esbuild comes with tsx (a dev dependency) and `prepare` builds dist/ with it: missing means a broken install.
  const esbuild = join(ROOT, 'node_modules', '.bin', 'esbuild');
  assert.ok(existsSync(esbuild), `${esbuild} is missing: run npm ci`);
  const dir = tempDir();
  try {
    // The same bundle command as bench/gpu.sh, into a scratch folder (dist-bench/ may hold a build being carried).
    const b = spawnSync(
      esbuild,
      [
        'bench/lib/llm-job.ts',
        '--bundle',
        '--platform=node',
        '--format=esm',
        '--target=node20',
        `--outdir=${join(dir, 'bundle')}`,
        '--out-extension:.js=.mjs',
        '--external:onnxruntime-node',
        '--log-level=warning',
        "--banner:js=import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
      ],
      { encoding: 'utf8', cwd: ROOT },
    );
    assert.equal(b.status, 0, b.stderr);
    const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(16) });
    // onnxruntime-node stays outside the bundle: resolved through a node_modules link, as gpu.sh makes one.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    const bundle = join(dir, 'bundle', 'llm-job.mjs');
    const spec = {
      method: 'search',
      recipe: RECIPE,
      modelPath: lm.modelPath,
      calibrationPath: lm.dataPath,
      outputDir: join(dir, 'out'),
      executionProviders: ['cpu'],
    };
    const r = spawnSync(process.execPath, [bundle, JSON.stringify(spec)], { encoding: 'utf8', timeout: 240_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const line = r.stdout.split('\n').find((l) => l.startsWith('@@RESULT '));
    assert.ok(line, r.stdout);
    assert.ok(existsSync(join(dir, 'out', 'model.onnx')));
    assert.ok(existsSync(join(dir, 'out', 'pareto.svg')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
