// Calibration statistics against float64 brute force: x_k and H = (2/n)·XᵀX for MatMul inputs; Conv Hessians from
// patches extracted by an independent loop; several batches = one pass; passes under a Hessian budget; and the
// canonical column order checked end to end (the layer error from H equals ‖Y(W) − Y(Ŵ)‖/‖Y(W)‖ from ORT runs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { saveModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights, readWeightMatrix, writeWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import { openStatsSession, statsRequestFor, layerRelativeError } from '../../../packages/engine/runtime/calibration.js';
import { StatsCollector } from '../../../packages/engine/runtime/stats.js';
import { planBatches } from '../../../packages/engine/data/dataset.js';
import { openSession } from '../../../packages/engine/runtime/session.js';
import type { Dataset, DataArray } from '../../../packages/engine/data/types.js';
import { InputError } from '../../../packages/engine/job.js';
import { mlp, randn } from '../sparsity/models.js';

const dataset = (name: string, a: DataArray): Dataset => ({
  inputs: new Map([[name, a]]),
  samples: a.dims[0],
  source: 'test',
});

function bruteGram(rows: Float64Array[], K: number): Float64Array {
  const h = new Float64Array(K * K);
  for (const r of rows) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) h[i * K + j] += r[i] * r[j];
  for (let i = 0; i < h.length; i++) h[i] *= 2 / rows.length;
  return h;
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return diff / (scale || 1);
}

test('MatMul input: x_k and H match float64 brute force; 3 batches give what 1 batch gives', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = mlp();
    const x = randn(37 * 16, 21);
    const w1 = discoverWeights(model).find((w) => w.name === 'w1')!;
    const req = statsRequestFor(model, w1, true);
    const opened = await openStatsSession(model, [], dir, ['cpu']);
    const results = [];
    for (const batch of [4, 37]) {
      const c = new StatsCollector({
        session: opened.session,
        dataset: dataset('x', { dtype: 'float32', dims: [37, 16], data: x }),
        ranges: planBatches(37, batch).ranges,
        modelInputs: new Set(['x']),
        maxHessianBytes: 1 << 20,
      });
      c.add(req);
      results.push(await c.get(req.key));
    }
    const rows = Array.from({ length: 37 }, (_, r) => Float64Array.from(x.subarray(r * 16, (r + 1) * 16)));
    const h = bruteGram(rows, 16);
    for (const s of results) {
      assert.equal(s.tokens, 37);
      assert.ok(maxRelDiff(s.hessian![0], h) < 1e-6, `H differs by ${maxRelDiff(s.hessian![0], h)}`);
      for (let k = 0; k < 16; k++) {
        const want = Math.sqrt(rows.reduce((a, r) => a + r[k] * r[k], 0) / 37);
        assert.ok(Math.abs(s.xNorm[0][k] - want) < 1e-6 * want);
      }
    }
    assert.ok(maxRelDiff(results[0].hessian![0], results[1].hessian![0]) < 1e-6);
    await opened.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an intermediate activation (Gemm input after Relu) is captured as a graph output', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = mlp();
    const w2 = discoverWeights(model).find((w) => w.name === 'w2')!;
    const req = statsRequestFor(model, w2, true);
    const opened = await openStatsSession(model, [w2.activation!], dir, ['cpu']);
    assert.equal(model.proto.graph!.output.length, 1, 'the caller model is left unchanged');
    const x = randn(10 * 16, 4);
    const c = new StatsCollector({
      session: opened.session,
      dataset: dataset('x', { dtype: 'float32', dims: [10, 16], data: x }),
      ranges: planBatches(10, 3).ranges,
      modelInputs: new Set(['x']),
      maxHessianBytes: 1 << 20,
    });
    c.add(req);
    const s = await c.get(req.key);
    // Independent: relu(x·W1) in float64.
    const W1 = readWeightMatrix(model, discoverWeights(model)[0]); // [64][16]
    const rows: Float64Array[] = [];
    for (let r = 0; r < 10; r++) {
      const row = new Float64Array(64);
      for (let n = 0; n < 64; n++) {
        let v = 0;
        for (let k = 0; k < 16; k++) v += x[r * 16 + k] * W1[n * 16 + k];
        row[n] = Math.max(0, v);
      }
      rows.push(row);
    }
    assert.ok(maxRelDiff(s.hessian![0], bruteGram(rows, 64)) < 1e-5);
    await opened.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** x [b, 8, 9, 11] → grouped Conv (group 2, 3×3, stride 2, pads 1,0,1,2, dilation 1) → y. */
function convModel(weights: Float32Array) {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['b', 8, 9, 11]);
  b.initializer('w', 'float32', [6, 4, 3, 3], weights);
  b.node('Conv', ['x', 'w'], { group: 2, strides: [2, 2], pads: [1, 0, 1, 2] }, { name: 'conv', output: 'y' });
  b.output('y', 'float32', ['b', 6, 'h', 'w']);
  return b.build();
}

test('grouped Conv Hessian equals brute-force patches, and the layer error from H equals ORT output error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const W = randn(6 * 4 * 9, 8, 0.5);
    const model = convModel(W);
    const ref = discoverWeights(model, { minElements: 1 })[0];
    const req = statsRequestFor(model, ref, true);
    assert.equal(req.groups, 2);
    assert.equal(req.K, 36);
    const x = randn(3 * 8 * 9 * 11, 17);
    const opened = await openStatsSession(model, [], dir, ['cpu']);
    const c = new StatsCollector({
      session: opened.session,
      dataset: dataset('x', { dtype: 'float32', dims: [3, 8, 9, 11], data: x }),
      ranges: planBatches(3, 2).ranges,
      modelInputs: new Set(['x']),
      maxHessianBytes: 1 << 20,
    });
    c.add(req);
    const s = await c.get(req.key);
    // Independent patch extraction: column (ky, kx, ci), output size from the ONNX formula.
    const oh = Math.floor((9 + 1 + 1 - 3) / 2) + 1;
    const ow = Math.floor((11 + 0 + 2 - 3) / 2) + 1;
    for (let g = 0; g < 2; g++) {
      const rows: Float64Array[] = [];
      for (let bi = 0; bi < 3; bi++)
        for (let oy = 0; oy < oh; oy++)
          for (let ox = 0; ox < ow; ox++) {
            const p = new Float64Array(36);
            for (let ky = 0; ky < 3; ky++)
              for (let kx = 0; kx < 3; kx++)
                for (let ci = 0; ci < 4; ci++) {
                  const iy = oy * 2 - 1 + ky;
                  const ix = ox * 2 - 0 + kx;
                  if (iy >= 0 && iy < 9 && ix >= 0 && ix < 11)
                    p[(ky * 3 + kx) * 4 + ci] = x[((bi * 8 + g * 4 + ci) * 9 + iy) * 11 + ix];
                }
            rows.push(p);
          }
      assert.ok(maxRelDiff(s.hessian![g], bruteGram(rows, 36)) < 1e-5, `group ${g}`);
    }
    assert.equal(s.tokens, 3 * oh * ow);

    // End to end: prune half the weights at random, compare the H-based error to ORT's outputs.
    const before = readWeightMatrix(model, ref);
    const after = before.slice();
    for (let i = 0; i < after.length; i += 2) after[i] = 0;
    const fromH = await layerRelativeError(ref, s, before, after);
    const run = async (wts: Float32Array) => {
      writeWeightMatrix(model, ref, wts);
      const p = join(dir, `m${Math.random()}.onnx`);
      await saveModel(model, p);
      const sess = (await openSession(p)).session;
      const y = (await sess.run({ x: new ort.Tensor('float32', x, [3, 8, 9, 11]) })).y.data as Float32Array;
      await sess.release();
      return y;
    };
    const y0 = await run(before);
    const y1 = await run(after);
    let num = 0;
    let den = 0;
    for (let i = 0; i < y0.length; i++) {
      num += (y0[i] - y1[i]) ** 2;
      den += y0[i] ** 2;
    }
    const direct = Math.sqrt(num / den);
    assert.ok(Math.abs(fromH! - direct) < 1e-4 * direct, `H-based ${fromH} vs ORT ${direct}`);
    await opened.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Hessians beyond the budget stream in several passes with identical results; one over the cap is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = mlp();
    const ws = discoverWeights(model).filter((w) => w.compressible);
    const opened = await openStatsSession(
      model,
      ws.map((w) => w.activation!),
      dir,
      ['cpu'],
    );
    const x = randn(20 * 16, 5);
    const make = (budget: number) =>
      new StatsCollector({
        session: opened.session,
        dataset: dataset('x', { dtype: 'float32', dims: [20, 16], data: x }),
        ranges: planBatches(20, 8).ranges,
        modelInputs: new Set(['x']),
        maxHessianBytes: budget,
      });
    const big = make(1 << 20);
    const small = make(64 * 64 * 8); // fits one 64×64 Hessian at a time
    const reqs = ws.map((w) => statsRequestFor(model, w, true));
    for (const r of reqs) {
      big.add(r);
      small.add(r);
    }
    for (const r of reqs) {
      const a = await big.get(r.key);
      const b = await small.get(r.key);
      assert.deepEqual([...a.hessian![0]], [...b.hessian![0]]);
    }
    assert.equal(big.passCount, 1);
    assert.equal(small.passCount, 2);
    assert.throws(
      () => make(100).add(reqs[0]),
      (e: unknown) => e instanceof InputError && e.code === 'hessian-too-large' && /maxHessianBytes/.test(e.message),
    );
    await opened.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('execution providers: a missing CUDA EP falls back to CPU and says why', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const p = join(dir, 'm.onnx');
    await saveModel(mlp(), p);
    const s = await openSession(p, { executionProviders: ['cuda', 'cpu'] });
    // On a CUDA machine the first choice works; on CPU-only builds the fallback is recorded.
    if (s.executionProvider === 'cpu') assert.match(s.fallbacks[0], /^cuda: /);
    else assert.deepEqual(s.fallbacks, []);
    await s.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
