// Layer selection with the names real exporters write: PyTorch (`/model/layers.0/mlp/down_proj/MatMul`,
// `onnx::MatMul_123`, `lm_head.weight`, `/head/MatMul`) and PaddleOCR (weights in Constant nodes, `conv2d_397.w_0`
// read by `p2o.Conv.4`). `*` crosses `/ . :`; each pattern's match count is reported; a pattern that matches nothing
// is a warning; an include that selects nothing fails naming the pattern.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { loadModel, closeModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import { nameGlobMatch } from '../../../packages/engine/methods/name-glob.js';
import { selectWeights } from '../../../packages/engine/methods/select.js';
import { methodFor } from '../../../packages/engine/methods/registry.js';
import { parseRecipe, type Recipe } from '../../../packages/engine/recipe.js';
import { PPOCR_DIR } from '../../helpers/onnx-fixtures.js';
import { randn } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('name globs: * is any run of characters (/ . : included), ? one character, the whole name must match', () => {
  const yes: [string, string][] = [
    ['*head*', '/head/MatMul'],
    ['*head*', 'lm_head.weight'],
    ['**head**', '/head/MatMul'],
    ['/model/layers.*/mlp/*', '/model/layers.0/mlp/down_proj/MatMul'],
    ['*layers.?/*down_proj*', '/model/layers.7/mlp/down_proj/MatMul'],
    ['onnx::MatMul_*', 'onnx::MatMul_123'],
    ['onnx::MatMul_1?3', 'onnx::MatMul_123'],
    ['p2o.Conv.1?', 'p2o.Conv.12'],
    ['*', ''],
    ['a*b*c', 'aXbYbZc'],
  ];
  const no: [string, string][] = [
    ['head', '/head/MatMul'], // whole-name match
    ['*layers.?/*', '/model/layers.12/mlp'], // ? is exactly one character
    ['p2o.Conv.1?', 'p2o.Conv.1'],
    ['onnx::matmul_*', 'onnx::MatMul_1'], // case-sensitive
    ['a*b*c', 'aXbYbZ'],
    ['[ab]', 'a'], // no character classes: brackets are literal
  ];
  for (const [p, n] of yes) assert.ok(nameGlobMatch(p, n), `${p} ~ ${n}`);
  for (const [p, n] of no) assert.ok(!nameGlobMatch(p, n), `${p} !~ ${n}`);
  assert.ok(nameGlobMatch('[ab]', '[ab]'));
});

/** A PyTorch-export-shaped model: initializers named onnx::MatMul_N, nodes named by module path, a tied-style head. */
function torchLike() {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['batch', 64]);
  b.initializer('onnx::MatMul_123', 'float32', [64, 64], randn(64 * 64, 1, 0.1));
  b.initializer('onnx::MatMul_124', 'float32', [64, 64], randn(64 * 64, 2, 0.1));
  b.initializer('lm_head.weight', 'float32', [64, 64], randn(64 * 64, 3, 0.1));
  const h1 = b.node('MatMul', ['x', 'onnx::MatMul_123'], {}, { name: '/model/layers.0/mlp/down_proj/MatMul' });
  const h2 = b.node('MatMul', [h1, 'onnx::MatMul_124'], {}, { name: '/head/MatMul' });
  b.node('Gemm', [h2, 'lm_head.weight'], { transB: 1 }, { name: '/lm_head/Gemm', output: 'y' });
  b.output('y', 'float32', ['batch', 64]);
  return b.build();
}

async function select(model: Parameters<typeof discoverWeights>[0], recipe: Record<string, unknown>) {
  const r = parseRecipe(recipe as unknown as Recipe);
  return selectWeights(discoverWeights(model), r, await methodFor(r), false);
}

test('selection over PyTorch export names: include/exclude by weight or node name, counts per pattern', async () => {
  const m = torchLike();
  let s = await select(m, { method: 'sparsity', pattern: '2:4', exclude: ['*head*'] });
  // The README's example: '*head*' excludes both '/head/MatMul' (by node name) and 'lm_head.weight'.
  assert.deepEqual(
    s.selected.map((w) => w.name),
    ['onnx::MatMul_123'],
  );
  assert.deepEqual(s.patterns, [{ list: 'exclude', pattern: '*head*', weights: 2 }]);
  assert.deepEqual(s.warnings, []);
  s = await select(m, { method: 'sparsity', pattern: '2:4', include: ['/model/layers.?/mlp/*', 'onnx::MatMul_12*'] });
  assert.deepEqual(s.selected.map((w) => w.name).sort(), ['onnx::MatMul_123', 'onnx::MatMul_124']);
  assert.deepEqual(
    s.patterns.map((p) => p.weights),
    [1, 2],
  );
  s = await select(m, { method: 'sparsity', pattern: '2:4', exclude: ['lm_head.weight', '/no/such/*'] });
  assert.deepEqual(
    s.patterns.map((p) => p.weights),
    [1, 0],
  );
  assert.equal(s.warnings.length, 1);
  assert.match(s.warnings[0], /exclude pattern "\/no\/such\/\*" matched no weight/);
  assert.equal(s.skipped.find((k) => k.weight.name === 'lm_head.weight')?.reason, 'excluded by "lm_head.weight"');
});

test('selection over PaddleOCR Constant-node weights (PP-OCRv4 det): weight names and p2o node names', async () => {
  const m = await loadModel(join(PPOCR_DIR, 'ch_PP-OCRv4_det_infer.onnx'));
  try {
    const all = discoverWeights(m);
    assert.ok(all.every((w) => w.location === 'constant'));
    const byNode = all.filter((w) => w.nodes.some((n) => /^p2o\.Conv\.1\d$/.test(n))).length;
    const byName = all.filter((w) => /^conv2d_4\d\d\.w_0$/.test(w.name)).length;
    assert.ok(byNode === 10 && byName > 0, `${byNode} ${byName}`);
    const s = await select(m, { method: 'sparsity', pattern: '2:4', include: ['p2o.Conv.1?', 'conv2d_4??.w_0'] });
    assert.deepEqual(
      s.patterns.map((p) => p.weights),
      [byNode, byName],
    );
    for (const w of s.selected) assert.ok(/^p2o\.Conv\.1\d$/.test(w.node) || /^conv2d_4\d\d\.w_0$/.test(w.name));
  } finally {
    closeModel(m);
  }
});

test('a job: unmatched patterns are warnings in the report; an include that selects nothing fails naming it', async () => {
  const c = await writeCase(dir, 'torch', torchLike(), {
    x: { dtype: 'float32', dims: [4, 64], data: randn(256, 9) },
  });
  const r = await run(
    { method: 'sparsity', pattern: '2:4', exclude: ['*head*', 'model.decoder.*'] },
    c.modelPath,
    join(dir, 'ok'),
  );
  assert.deepEqual(r.report.selection, {
    patterns: [
      { list: 'exclude', pattern: '*head*', weights: 2 },
      { list: 'exclude', pattern: 'model.decoder.*', weights: 0 },
    ],
  });
  assert.ok(r.report.warnings.some((w) => w.includes('exclude pattern "model.decoder.*" matched no weight')));
  assert.deepEqual(r.report.summary, { ...(r.report.summary as object), compressedLayers: 1, skippedLayers: 2 });
  await assert.rejects(
    run({ method: 'sparsity', pattern: '2:4', include: ['*attn*', 'q_proj'] }, c.modelPath, join(dir, 'none')),
    (e: Error & { code?: string }) =>
      e.code === 'no-layer-selected' && /include "\*attn\*", "q_proj" matched no weight or node name/.test(e.message),
  );
});
