// The `quantize` method through runRecipe: the written graph (MatMulNBits, QDQ for Conv, Gemm bias) computes what
// the dense model computes with our dequantized weights, the report carries bits/weight and the accuracy-level
// timing, and skips come with reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights, readWeightMatrix, writeWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import { dequantize } from '../../../packages/engine/quant/rtn.js';
import { quantizeCanonical, quantSpecOf } from '../../../packages/engine/methods/quantize.js';
import { convNet, mlp, randn } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';
import type { Format } from '../../../packages/engine/quant/replace.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The dense model with each compressed weight replaced by our own dequantized values (the reference). */
async function dequantizedReference(
  src: string,
  names: string[],
  quant: Parameters<typeof quantSpecOf>[0],
  format: Format,
  out: string,
): Promise<string> {
  const m: LoadedModel = await loadModel(src);
  for (const w of discoverWeights(m)) {
    if (!names.includes(w.name)) continue;
    const { q } = quantizeCanonical(readWeightMatrix(m, w), w.N, w.K, quantSpecOf(quant), format);
    writeWeightMatrix(m, w, dequantize(q));
  }
  await saveModel(m, out);
  return out;
}

async function outputs(path: string, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all' });
  const r = await s.run(feeds);
  await s.release();
  return r[s.outputNames[0]].data as Float32Array;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

const mlpData = { x: { dtype: 'float32' as const, dims: [24, 16], data: randn(24 * 16, 2) } };

test('MatMulNBits (MatMul + Gemm with bias) computes the dense model with our dequantized weights', async () => {
  const c = await writeCase(dir, 'mlp', mlp(), mlpData);
  const feeds = { x: new ort.Tensor('float32', randn(5 * 16, 7), [5, 16]) };
  for (const quant of [
    { bits: 4, groupSize: 32, symmetric: true },
    { bits: 4, groupSize: 16, symmetric: false, clip: 'mse' },
    { bits: 8, groupSize: 'channel', symmetric: true },
    { bits: 4, scheme: 'slim' },
  ] as const) {
    const out = join(dir, `mlp-${JSON.stringify(quant).replace(/\W+/g, '_')}`);
    const r = await run({ method: 'quantize', quant, accuracyLevel: 1 }, c.modelPath, out, {
      calibrationPath: c.dataPath,
    });
    const done = r.report.layers.filter((l) => !l.skipped);
    assert.deepEqual(done.map((l) => l.name).sort(), ['w1', 'w2']);
    assert.ok(done.every((l) => l.route === 'MatMulNBits' && typeof l.relError === 'number'));
    const written = await loadModel(join(out, 'model.onnx'));
    const ops = written.proto.graph!.node.map((n) => n.opType);
    assert.equal(ops.filter((o) => o === 'MatMulNBits').length, 2);
    assert.ok(!written.proto.graph!.initializer.some((t) => t.name === 'w1' || t.name === 'w2'), 'old weights gone');
    const ref = await dequantizedReference(c.modelPath, ['w1', 'w2'], quant, 'matmulnbits', join(out, 'ref.onnx'));
    const d = maxRelDiff(await outputs(join(out, 'model.onnx'), feeds), await outputs(ref, feeds));
    assert.ok(d < 1e-5, `${JSON.stringify(quant)}: ${d}`);
    const q = r.report.quantization as { bitsPerWeight: number; accuracyLevel: { level: number } };
    assert.equal(q.accuracyLevel.level, 1);
    assert.ok(q.bitsPerWeight > 4 && q.bitsPerWeight < 9.5);
    // Latency dense vs compressed at batch 1 and 8 on the provider used, with the slower flag.
    const lat = r.report.latency as {
      executionProvider: string;
      rows: {
        batch: number;
        speedup: number;
        slower: boolean;
        dense: { p50: number; p95: number };
        compressed: { p50: number; p95: number };
      }[];
    };
    assert.equal(lat.executionProvider, 'cpu');
    assert.deepEqual(
      lat.rows.map((row) => row.batch),
      [1, 8],
    );
    for (const row of lat.rows) {
      assert.ok(row.dense.p50 > 0 && row.compressed.p95 >= row.compressed.p50);
      assert.equal(row.slower, row.compressed.p50 > row.dense.p50);
      assert.equal(
        r.report.warnings.some((w) => w.includes(`slower than the dense one at batch ${row.batch}`)),
        row.slower,
      );
    }
  }
});

test('QDQ format: DequantizeLinear feeds MatMul, Gemm and (grouped) Conv; the opset is raised to 21 for int4', async () => {
  const convData = { x: { dtype: 'float32' as const, dims: [6, 8, 12, 12], data: randn(6 * 8 * 144, 9) } };
  const c = await writeCase(dir, 'conv', convNet(), convData);
  const feeds = { x: new ort.Tensor('float32', randn(2 * 8 * 144, 3), [2, 8, 12, 12]) };
  for (const quant of [
    { bits: 4, groupSize: 'channel', symmetric: true },
    { bits: 8, groupSize: 'channel', symmetric: false },
  ] as const) {
    const out = join(dir, `conv-${quant.bits}`);
    const r = await run({ method: 'quantize', quant, format: 'qdq' }, c.modelPath, out);
    const done = r.report.layers.filter((l) => !l.skipped).map((l) => l.name);
    assert.deepEqual(done.sort(), ['c1_w', 'c2_w']);
    const written = await loadModel(join(out, 'model.onnx'));
    const opset = Number(written.proto.opsetImport.find((o) => o.domain === '')!.version);
    assert.equal(opset, quant.bits === 4 ? 21 : 17);
    assert.equal(written.proto.graph!.node.filter((n) => n.opType === 'DequantizeLinear').length, 2);
    const ref = await dequantizedReference(c.modelPath, done, quant, 'qdq', join(out, 'ref.onnx'));
    const d = maxRelDiff(await outputs(join(out, 'model.onnx'), feeds), await outputs(ref, feeds));
    assert.ok(d < 1e-4, `${JSON.stringify(quant)}: ${d}`);
  }
  const m = await writeCase(dir, 'mlp-qdq', mlp(5), mlpData);
  const mlpFeeds = { x: new ort.Tensor('float32', randn(5 * 16, 7), [5, 16]) };
  for (const quant of [
    { bits: 4, groupSize: 16, symmetric: true },
    { bits: 4, groupSize: 16, symmetric: false },
    { bits: 8, groupSize: 'channel', symmetric: true },
  ] as const) {
    const out = join(dir, `mlp-qdq-${quant.bits}-${quant.symmetric}`);
    const r = await run({ method: 'quantize', quant, format: 'qdq' }, m.modelPath, out);
    const done = r.report.layers.filter((l) => !l.skipped).map((l) => l.name);
    assert.deepEqual(done.sort(), ['w1', 'w2']);
    const ref = await dequantizedReference(m.modelPath, done, quant, 'qdq', join(out, 'ref.onnx'));
    // ORT fuses blocked int4 DQ+MatMul into MatMulNBits with int8 activations: looser there.
    const tol = quant.bits === 4 ? 2e-2 : 1e-4;
    const d = maxRelDiff(await outputs(join(out, 'model.onnx'), mlpFeeds), await outputs(ref, mlpFeeds));
    assert.ok(d < tol, `mlp ${JSON.stringify(quant)}: ${d}`);
  }
  // Group 32 does not tile 8 input channels per group: skipped with the reason, not mangled — and since no layer of
  // this model can take it, the job fails with the reasons rather than returning an unchanged model.
  await assert.rejects(
    run({ method: 'quantize', quant: { bits: 4, groupSize: 32 }, format: 'qdq' }, c.modelPath, join(dir, 'g32')),
    (e: Error & { code?: string }) =>
      e.code === 'no-layer-selected' &&
      /Conv input channels per group \(8\) not a multiple of the group size 32 .*— 2 layers: "c1_w", "c2_w"/.test(
        e.message,
      ),
  );
});

test('accuracyLevel auto times the candidates and records them', async () => {
  const c = await writeCase(dir, 'mlp2', mlp(3), mlpData);
  const out = join(dir, 'auto');
  const r = await run({ method: 'quantize', quant: { bits: 4 } }, c.modelPath, out);
  const a = (
    r.report.quantization as {
      accuracyLevel: {
        level: number;
        auto: { candidates: number[]; timings: unknown[]; totalMs: Record<string, number> };
      };
    }
  ).accuracyLevel;
  assert.ok(a.auto.candidates.includes(a.level));
  assert.equal(a.auto.timings.length, 2);
  for (const c2 of a.auto.candidates) assert.ok(a.auto.totalMs[String(c2)] > 0);
  const written = await loadModel(join(out, 'model.onnx'));
  for (const n of written.proto.graph!.node.filter((x) => x.opType === 'MatMulNBits'))
    assert.equal(Number(n.attribute.find((x) => x.name === 'accuracy_level')!.i), a.level);
});

test('latency comparison dense vs compressed: interleaved p50/p95 per batch, slower flagged', async () => {
  const { compareLatency, batchOf } = await import('../../../packages/engine/quant/latency.js');
  const c = await writeCase(dir, 'mlp-lat', mlp(7), mlpData);
  const out = join(dir, 'lat');
  await run({ method: 'quantize', quant: { bits: 4 }, accuracyLevel: 4 }, c.modelPath, out);
  const data = new Map([['x', mlpData.x]]);
  const b = batchOf(data, 30); // more rows than the 24 samples: cycles
  assert.deepEqual(b.get('x')!.dims, [30, 16]);
  assert.equal(b.get('x')!.data[24 * 16], mlpData.x.data[0]);
  const rep = await compareLatency(c.modelPath, join(out, 'model.onnx'), data, { batches: [1, 8], runs: 10 });
  assert.equal(rep.executionProvider, 'cpu');
  assert.deepEqual(
    rep.rows.map((r) => r.batch),
    [1, 8],
  );
  for (const r of rep.rows) {
    assert.ok(r.dense.p50 > 0 && r.compressed.p95 >= r.compressed.p50 && r.dense.runs === 10);
    assert.equal(r.slower, r.compressed.p50 > r.dense.p50);
  }
});

test('QDQ int4 on an opset-13 model: the exact upgrade raises it to 21 (reported); per-channel keeps opset 13', async () => {
  const { GraphBuilder } = await import('../../../packages/engine/onnx/builder.js');
  const b = new GraphBuilder({ opset: 13 });
  b.input('x', 'float32', ['batch', 64]);
  b.initializer('w', 'float32', [64, 64], randn(64 * 64, 4, 0.2));
  const h = b.node('MatMul', ['x', 'w'], {}, { name: 'fc' });
  b.node('ReduceMean', [h], { axes: [1], keepdims: 1 }, { output: 'y' }); // axes became an input at opset 18
  b.output('y', 'float32', ['batch', 1]);
  const c = await writeCase(dir, 'old-opset', b.build(), {
    x: { dtype: 'float32', dims: [4, 64], data: randn(256, 1) },
  });
  const feeds = { x: new ort.Tensor('float32', randn(3 * 64, 5), [3, 64]) };
  const q = await run({ method: 'quantize', quant: { bits: 4 }, format: 'qdq' }, c.modelPath, join(dir, 'old-qdq'));
  const row = q.report.layers.find((l) => l.name === 'w')!;
  assert.equal(row.skipped, undefined);
  assert.match(String(row.route), /DequantizeLinear\(int4 block 32\)/);
  assert.deepEqual((q.report.quantization as { opset: unknown }).opset, {
    from: 13,
    needed: 21,
    action: 'upgraded',
    ops: ['ReduceMean'],
  });
  const up = await loadModel(join(dir, 'old-qdq', 'model.onnx'));
  assert.equal(Number(up.proto.opsetImport.find((o) => o.domain === '')!.version), 21);
  const upRef = await dequantizedReference(c.modelPath, ['w'], { bits: 4 }, 'qdq', join(dir, 'old-qdq', 'ref.onnx'));
  const du = maxRelDiff(await outputs(join(dir, 'old-qdq', 'model.onnx'), feeds), await outputs(upRef, feeds));
  assert.ok(du < 2e-2, `upgraded: ${du}`);
  const m = await run({ method: 'quantize', quant: { bits: 4 }, accuracyLevel: 0 }, c.modelPath, join(dir, 'old-nb'));
  assert.equal(m.report.layers.find((l) => l.name === 'w')!.route, 'MatMulNBits');
  // Per-channel groups go through ONNX Runtime's contrib DequantizeLinear at the model's own opset.
  for (const quant of [
    { bits: 4, groupSize: 'channel' },
    { bits: 8, groupSize: 'channel' },
  ] as const) {
    const out = join(dir, `old-ms-${quant.bits}`);
    const r = await run({ method: 'quantize', quant, format: 'qdq' }, c.modelPath, out);
    assert.match(String(r.report.layers.find((l) => l.name === 'w')!.route), /DequantizeLinear/);
    const written = await loadModel(join(out, 'model.onnx'));
    assert.equal(Number(written.proto.opsetImport.find((o) => o.domain === '')!.version), 13);
    // int4 needs opset 21 (unsafe here) → contrib op; int8 per-axis needs 13, which the model has → standard op.
    const domain = quant.bits === 4 ? 'com.microsoft' : '';
    assert.equal(written.proto.graph!.node.find((n) => n.opType === 'DequantizeLinear')!.domain, domain);
    const ref = await dequantizedReference(c.modelPath, ['w'], quant, 'qdq', join(out, 'ref.onnx'));
    const d = maxRelDiff(await outputs(join(out, 'model.onnx'), feeds), await outputs(ref, feeds));
    // ORT's level-'all' graph fuses DQ+MatMul into kernels that quantize the activations to int8 (MatMulNBits
    // accuracy_level 4 for int4; a dynamic-quantization MatMul for int8 here), hence the int8-activation tolerance.
    assert.ok(d < 2e-2, `${JSON.stringify(quant)}: ${d}`);
  }
});
