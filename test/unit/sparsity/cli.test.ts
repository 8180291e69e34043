// `onnx-compress compress` and `eval` end to end through the real binary: outputs, report file, plain progress
// lines when not on a terminal, and a non-zero exit with one clear error line for bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mlp, randn } from './models.js';
import { tempDir, writeCase } from './helpers.js';

const bin = fileURLToPath(new URL('../../../bin/onnx-compress.mjs', import.meta.url));
const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('compress writes the model and the report; eval compares the two models', async () => {
  const c = await writeCase(dir, 'mlp', mlp(), { x: { dtype: 'float32', dims: [32, 16], data: randn(512, 3) } });
  const recipe = join(dir, 'recipe.json');
  writeFileSync(recipe, JSON.stringify({ method: 'sparsity', pattern: '2:4', criterion: 'wanda' }));
  const out = join(dir, 'out.onnx');
  const rep = join(dir, 'report.json');
  const r = cli('compress', c.modelPath, '--recipe', recipe, '--calibration', c.dataPath, '-o', out, '--report', rep);
  assert.equal(r.code, 0, r.err);
  assert.ok(existsSync(out));
  assert.match(r.out, /sparsity: 2 layers compressed, 1 skipped/);
  assert.match(r.err, /^\[\s*\d+%\] compress layer 1\/2 w1$/m, 'plain progress lines off a terminal');
  const report = JSON.parse(readFileSync(rep, 'utf8'));
  assert.equal(report.layers.filter((l: { patternVerified?: boolean }) => l.patternVerified).length, 2);
  assert.equal(readdirSync(dir).filter((n) => n.startsWith('.onnx-compress-')).length, 0, 'scratch removed');
  const e = cli('eval', c.modelPath, out, '--data', c.dataPath, '--json');
  assert.equal(e.code, 0, e.err);
  const q = JSON.parse(e.out);
  assert.equal(q.relativeError, report.quality.relativeError);
});

test('bad input: exit code 1 and one error line naming the problem', async () => {
  const c = await writeCase(dir, 'mlp2', mlp(), { x: { dtype: 'float32', dims: [4, 16], data: randn(64, 3) } });
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ method: 'sparsity', patern: '2:4' }));
  let r = cli('compress', c.modelPath, '--recipe', bad, '-o', join(dir, 'x.onnx'));
  assert.equal(r.code, 1);
  assert.match(r.err, /^error: .*\/patern: unknown field$/m);
  const wanda = join(dir, 'wanda.json');
  writeFileSync(wanda, JSON.stringify({ method: 'sparsity', criterion: 'wanda' }));
  r = cli('compress', c.modelPath, '--recipe', wanda, '-o', join(dir, 'x.onnx'));
  assert.equal(r.code, 1);
  assert.match(r.err, /^error: .*needs calibration data/m);
  r = cli('compress', join(dir, 'missing.onnx'), '--recipe', wanda, '-o', join(dir, 'x.onnx'));
  assert.equal(r.code, 1);
  assert.match(r.err, /^error: .*missing\.onnx/m);
  assert.ok(!existsSync(join(dir, 'x.onnx')));
});
