// 4-bit quantize and SLiM on the models people bring: PaddleOCR PP-OCRv4 det (opset 11), rec and the mobile
// classifier (opset 9), a Gemm model at opset 13, an opset-9 model whose upgrade is impossible (Upsample), and
// Conv1d. Each job writes what it says: the output differs from the input, runs in ONNX Runtime, and the report's
// compressed count equals the DequantizeLinear / MatMulNBits nodes in the written graph; the opset route taken
// (exact upgrade or fallback) is in the report; sizes count the weights whose dequantized value is 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { loadModel, closeModel } from '../../../packages/engine/onnx/model.js';
import type { JobResult } from '../../../packages/engine/job.js';
import { PPOCR_DIR } from '../../helpers/onnx-fixtures.js';
import { randn } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function infer(path: string, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path);
  try {
    const r = await s.run(feeds);
    return r[s.outputNames[0]].data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Written graph vs report: compressed rows = DequantizeLinear + MatMulNBits nodes; returns the default opset. */
async function checkCounts(r: JobResult, out: string): Promise<{ opset: number; dq: number; nbits: number }> {
  const m = await loadModel(join(out, 'model.onnx'));
  try {
    const ops = m.proto.graph!.node.map((n) => n.opType);
    const dq = ops.filter((o) => o === 'DequantizeLinear').length;
    const nbits = ops.filter((o) => o === 'MatMulNBits').length;
    const written = r.report.layers.filter((l) => !l.skipped).length;
    const s = r.report.summary as { compressedLayers: number; skippedLayers: number };
    assert.equal(s.compressedLayers, written);
    assert.equal(s.skippedLayers, r.report.layers.length - written);
    assert.equal(dq + nbits, written, `graph has ${dq} DQ + ${nbits} MatMulNBits, report says ${written}`);
    return { opset: Number(m.proto.opsetImport.find((o) => o.domain === '')!.version), dq, nbits };
  } finally {
    closeModel(m);
  }
}

/** Runs both models on the same input: finite outputs that differ (the job changed something). */
async function checkRuns(src: string, out: string, feeds: Record<string, ort.Tensor>): Promise<number> {
  const a = await infer(src, feeds);
  const b = await infer(join(out, 'model.onnx'), feeds);
  assert.equal(a.length, b.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(b[i]));
    diff += (a[i] - b[i]) ** 2;
    norm += a[i] ** 2;
  }
  assert.ok(diff > 0, 'the compressed model computes exactly what the input did: nothing was written');
  return Math.sqrt(diff / norm);
}

const ppocr = [
  { file: 'ch_PP-OCRv4_det_infer.onnx', dims: [1, 3, 64, 64], opset: 11 },
  { file: 'ch_PP-OCRv4_rec_infer.onnx', dims: [1, 3, 48, 64], opset: 9 },
  { file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', dims: [1, 3, 48, 96], opset: 9 },
];

for (const p of ppocr) {
  test(`PP-OCR ${p.file} (opset ${p.opset}): 4-bit g32 and SLiM write every layer they count`, async () => {
    const src = join(PPOCR_DIR, p.file);
    const n = p.dims.reduce((a, b) => a * b, 1);
    const feeds = {
      x: new ort.Tensor(
        'float32',
        Float32Array.from(randn(n, 5), (v) => 0.5 + 0.25 * v),
        p.dims,
      ),
    };
    const q4 = join(dir, `q4-${p.file}`);
    const r = await run({ method: 'quantize', quant: { bits: 4, groupSize: 32 }, accuracyLevel: 0 }, src, q4);
    const c = await checkCounts(r, q4);
    assert.equal(c.opset, 21);
    assert.ok(c.dq > 0);
    const route = (r.report.quantization as { opset: { action: string; from: number } }).opset;
    assert.deepEqual([route.action, route.from], ['upgraded', p.opset]);
    await checkRuns(src, q4, feeds);
    const sl = join(dir, `slim-${p.file}`);
    const slim = await run(
      { method: 'slim', criterion: 'magnitude', lowRank: { rankRatio: 0.1, saliency: 'none' }, accuracyLevel: 0 },
      src,
      sl,
    );
    const cs = await checkCounts(slim, sl);
    assert.ok(cs.dq > 0);
    await checkRuns(src, sl, feeds);
    // The 2:4 zeros of the written layers are counted (they dequantize to exactly 0).
    const sizes = slim.report.sizes as unknown as { parameters: number; nonZeros: number; weightSparsity: number };
    const zeros = slim.report.layers
      .filter((l) => !l.skipped)
      .reduce((a, l) => a + Math.round((l.sparsity as number) * l.shape.reduce((x, y) => x * y, 1)), 0);
    assert.ok(zeros > 0 && sizes.parameters - sizes.nonZeros >= zeros, `${sizes.nonZeros} of ${sizes.parameters}`);
    assert.ok(sizes.weightSparsity > 0.1);
  });
}

test('Gemm model at opset 13: 4-bit MatMulNBits, QDQ (opset raised exactly) and SLiM change the output', async () => {
  const b = new GraphBuilder({ opset: 13 });
  b.input('x', 'float32', ['batch', 64]);
  b.initializer('g1', 'float32', [128, 64], randn(128 * 64, 1, 0.2));
  b.initializer('b1', 'float32', [128], randn(128, 2, 0.1));
  b.initializer('g2', 'float32', [128, 64], randn(64 * 128, 3, 0.2));
  let h = b.node('Gemm', ['x', 'g1', 'b1'], { transB: 1 }, { name: 'fc1' });
  h = b.node('Relu', [h]);
  h = b.node('Gemm', [h, 'g2'], {}, { name: 'fc2' }); // transB 0: g2 is [K][N]
  b.node('Softmax', [h], { axis: 1 }, { output: 'p' });
  b.node('ReduceMean', [h], { axes: [1], keepdims: 1 }, { output: 'm' }); // axes became an input in opset 18
  b.output('p', 'float32', ['batch', 64]);
  b.output('m', 'float32', ['batch', 1]);
  const c = await writeCase(dir, 'gemm13', b.build(), {
    x: { dtype: 'float32', dims: [8, 64], data: randn(8 * 64, 4) },
  });
  const feeds = { x: new ort.Tensor('float32', randn(3 * 64, 7), [3, 64]) };
  for (const recipe of [
    { method: 'quantize', quant: { bits: 4, groupSize: 32 }, accuracyLevel: 0 },
    { method: 'quantize', quant: { bits: 4, groupSize: 32 }, format: 'qdq' },
    { method: 'slim', criterion: 'magnitude', lowRank: { rankRatio: 0.1, saliency: 'none' }, accuracyLevel: 0 },
  ]) {
    const out = join(dir, `gemm13-${recipe.method}-${recipe.format ?? 'nbits'}`);
    const r = await run(recipe, c.modelPath, out);
    const counts = await checkCounts(r, out);
    assert.equal(counts.dq + counts.nbits, 2);
    assert.equal(counts.opset, recipe.format === 'qdq' ? 21 : 13);
    if (recipe.format === 'qdq')
      assert.deepEqual((r.report.quantization as { opset: unknown }).opset, {
        from: 13,
        needed: 21,
        action: 'upgraded',
        ops: ['ReduceMean'],
      });
    const rel = await checkRuns(c.modelPath, out, feeds);
    assert.ok(rel < 0.5, `${JSON.stringify(recipe)}: relative output change ${rel}`);
  }
});

test('opset 9 with an op that has no exact upgrade: Conv per-channel via com.microsoft, MatMul as MatMulNBits', async () => {
  const b = new GraphBuilder({ opset: 9 });
  b.input('x', 'float32', [1, 32, 8, 16]);
  b.initializer('cw', 'float32', [32, 32, 3, 3], randn(32 * 32 * 9, 1, 0.1));
  b.initializer('scales', 'float32', [4], [1, 1, 2, 2]);
  b.initializer('mw', 'float32', [32, 64], randn(32 * 64, 2, 0.2));
  let h = b.node('Conv', ['x', 'cw'], { pads: [1, 1, 1, 1] }, { name: 'conv' });
  h = b.node('Upsample', [h, 'scales'], { mode: 'nearest' }); // removed in opset 10: no exact upgrade
  b.node('MatMul', [h, 'mw'], {}, { name: 'mm', output: 'y' });
  b.output('y', 'float32', [1, 32, 16, 64]);
  const c = await writeCase(dir, 'op9', b.build(), {
    x: { dtype: 'float32', dims: [1, 32, 8, 16], data: randn(32 * 128, 3) },
  });
  const out = join(dir, 'op9-q');
  const r = await run({ method: 'quantize', quant: { bits: 4, groupSize: 32 }, format: 'qdq' }, c.modelPath, out);
  const route = (r.report.quantization as { opset: { action: string; ops: string[]; fallback: string } }).opset;
  assert.equal(route.action, 'fallback');
  assert.deepEqual(route.ops, ['Upsample']);
  const rows = Object.fromEntries(r.report.layers.map((l) => [l.name, l]));
  assert.match(String(rows.cw.route), /DequantizeLinear\(int4 per-channel\)\+Conv/);
  assert.match(String(rows.cw.pattern), /per-channel/);
  assert.equal(rows.mw.route, 'MatMulNBits');
  const counts = await checkCounts(r, out);
  assert.equal(counts.opset, 9);
  const feeds = { x: new ort.Tensor('float32', randn(32 * 128, 9), [1, 32, 8, 16]) };
  assert.ok((await checkRuns(c.modelPath, out, feeds)) < 0.3);
});

test('Conv1d weights (rank 3) take the 4-bit QDQ and SLiM routes like Conv2d', async () => {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', [1, 64, 40]);
  b.initializer('c1', 'float32', [64, 64, 3], randn(64 * 64 * 3, 1, 0.1));
  b.initializer('c2', 'float32', [32, 64, 5], randn(32 * 64 * 5, 2, 0.1));
  let h = b.node('Conv', ['x', 'c1'], { pads: [1, 1] }, { name: 'conv1' });
  h = b.node('Relu', [h]);
  b.node('Conv', [h, 'c2'], { strides: [2] }, { name: 'conv2', output: 'y' });
  b.output('y', 'float32', [1, 32, 18]);
  const c = await writeCase(dir, 'conv1d', b.build(), {
    x: { dtype: 'float32', dims: [4, 64, 40], data: randn(4 * 64 * 40, 3) },
  });
  const feeds = { x: new ort.Tensor('float32', randn(64 * 40, 8), [1, 64, 40]) };
  for (const recipe of [
    { method: 'quantize', quant: { bits: 4, groupSize: 32 } },
    { method: 'slim', criterion: 'wanda', lowRank: { rankRatio: 0.1, saliency: 'slim' }, accuracyLevel: 0 },
  ]) {
    const out = join(dir, `conv1d-${recipe.method}`);
    const r = await run(recipe, c.modelPath, out, { calibrationPath: c.dataPath });
    assert.deepEqual(
      r.report.layers.filter((l) => !l.skipped).map((l) => l.name),
      ['c1', 'c2'],
    );
    const counts = await checkCounts(r, out);
    assert.equal(counts.dq, 2);
    const rel = await checkRuns(c.modelPath, out, feeds);
    assert.ok(rel < 1, `${recipe.method}: ${rel}`); // random weights: 2:4 + 4-bit costs much, but not everything
  }
});
