// Calibration statistics (reduced inside ONNX Runtime, runtime/capture.ts) against float64 brute force: x_k and
// H = (2/n)·XᵀX for MatMul inputs; Conv Hessians from patches extracted by an independent loop and by the JS im2col
// path; several batches = one pass; passes under a Hessian budget; 3-D activations, Gemm, shared q/k/v, fp16 models
// and one ORT run per batch for every layer together; the row sample for Hessian-free layer errors; and the
// canonical column order checked end to end (the layer error from H equals ‖Y(W) − Y(Ŵ)‖/‖Y(W)‖ from ORT runs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder, type AttrValue } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights, readWeightMatrix, writeWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import {
  openCaptureSession,
  openStatsSession,
  passCut,
  statsRequestFor,
  consumerOutput,
  layerRelativeError,
} from '../../../packages/engine/runtime/calibration.js';
import { StatsCollector, type StatsCollectorOptions } from '../../../packages/engine/runtime/stats.js';
import type { LoadedModel } from '../../../packages/engine/onnx/model.js';
import { batches, planBatches } from '../../../packages/engine/data/dataset.js';
import { feedsOf, openSession, toFloat32 } from '../../../packages/engine/runtime/session.js';
import { im2colRows, outputSize } from '../../../packages/engine/runtime/conv.js';
import { float32ToFloat16 } from '../../../packages/engine/onnx/floats.js';
import type { Dataset, DataArray } from '../../../packages/engine/data/types.js';
import { InputError } from '../../../packages/engine/job.js';
import { mlp, randn } from '../sparsity/models.js';
import { hessianF64, outputErrorF64 } from '../math/rng.js';

const dataset = (name: string, a: DataArray): Dataset => ({
  inputs: new Map([[name, a]]),
  samples: a.dims[0],
  source: 'test',
});

/** A collector whose capture sessions run on the CPU EP; `runs` counts every ORT run of every session it opened. */
function collector(
  model: LoadedModel,
  dir: string,
  opts: Omit<StatsCollectorOptions, 'open'>,
): { c: StatsCollector; runs: () => number; opened: () => number } {
  let runs = 0;
  let opened = 0;
  const c = new StatsCollector({
    ...opts,
    open: async (reqs, extra) => {
      opened++;
      const s = await openCaptureSession(model, reqs, dir, ['cpu'], extra);
      const run = s.session.run.bind(s.session);
      s.session.run = ((...args: Parameters<typeof run>) => {
        runs++;
        return run(...args);
      }) as typeof run;
      return s;
    },
  });
  return { c, runs: () => runs, opened: () => opened };
}

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
    const results = [];
    for (const batch of [4, 37]) {
      const { c } = collector(model, dir, {
        dataset: dataset('x', { dtype: 'float32', dims: [37, 16], data: x }),
        ranges: planBatches(37, batch).ranges,
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Σ over batches of ORT's fp32 XᵀX (a plain Transpose + MatMul graph, ORT's own outputs) in float64, × 2/rows. */
async function ortGramFold(dir: string, x: Float32Array, K: number, ranges: [number, number][]): Promise<Float64Array> {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['t', K]);
  b.node('MatMul', [b.node('Transpose', ['x'], { perm: [1, 0] }), 'x'], {}, { output: 'h' });
  b.output('h', 'float32', [K, K]);
  const path = join(dir, `gram-${K}.onnx`);
  await saveModel(b.build(), path);
  const { session } = await openSession(path);
  const h = new Float64Array(K * K);
  let rows = 0;
  try {
    for (const [start, count] of ranges) {
      const t = new ort.Tensor('float32', x.subarray(start * K, (start + count) * K), [count, K]);
      const y = (await session.run({ x: t })).h.data as Float32Array;
      for (let i = 0; i < h.length; i++) h[i] += y[i];
      rows += count;
    }
  } finally {
    await session.release();
  }
  return h.map((v) => v * (2 / rows));
}

test('H is, bit for bit, the float64 sum of ORT fp32 XᵀX per batch (1 and 3 batches; 1, 2 and 3 tiles a side)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    // K > GRAM_BLOCK: XᵀX is computed as the tiles above the block diagonal and mirrored (uneven blocks at 1600).
    for (const K of [96, 1000, 1600]) await gramMatchesOrt(dir, K);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function gramMatchesOrt(dir: string, K: number): Promise<void> {
  {
    const b = new GraphBuilder({ opset: 17 });
    b.input('x', 'float32', ['batch', K]);
    b.initializer('w', 'float32', [K, 8], randn(K * 8, 81));
    b.node('MatMul', ['x', 'w'], {}, { name: 'mm', output: 'y' });
    b.output('y', 'float32', ['batch', 8]);
    const model = b.build();
    const x = randn(300 * K, 82);
    const req = statsRequestFor(model, discoverWeights(model)[0], true);
    for (const batch of [300, 100]) {
      const ranges = planBatches(300, batch).ranges;
      const { c } = collector(model, dir, {
        dataset: dataset('x', { dtype: 'float32', dims: [300, K], data: x }),
        ranges,
        maxHessianBytes: 1 << 25,
      });
      c.add(req);
      const s = await c.get(req.key);
      assert.deepEqual(s.hessian![0], await ortGramFold(dir, x, K, ranges), `K ${K}, ${ranges.length} batch(es)`);
    }
  }
}

test('an intermediate activation (Gemm input after Relu) is captured as a graph output', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = mlp();
    const w2 = discoverWeights(model).find((w) => w.name === 'w2')!;
    const req = statsRequestFor(model, w2, true);
    const nodes = model.proto.graph!.node.length;
    const x = randn(10 * 16, 4);
    const { c } = collector(model, dir, {
      dataset: dataset('x', { dtype: 'float32', dims: [10, 16], data: x }),
      ranges: planBatches(10, 3).ranges,
      maxHessianBytes: 1 << 20,
    });
    c.add(req);
    const s = await c.get(req.key);
    assert.equal(model.proto.graph!.output.length, 1, 'the caller model is left unchanged');
    assert.equal(model.proto.graph!.node.length, nodes);
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
    const { c } = collector(model, dir, {
      dataset: dataset('x', { dtype: 'float32', dims: [3, 8, 9, 11], data: x }),
      ranges: planBatches(3, 2).ranges,
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Hessians beyond the budget stream in several passes with identical results; one over the cap is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = mlp();
    const ws = discoverWeights(model).filter((w) => w.compressible);
    const x = randn(20 * 16, 5);
    const make = (budget: number) =>
      collector(model, dir, {
        dataset: dataset('x', { dtype: 'float32', dims: [20, 16], data: x }),
        ranges: planBatches(20, 8).ranges,
        maxHessianBytes: budget,
      }).c;
    const big = make(1 << 20);
    const small = make(64 * 64 * 8); // fits one 64×64 Hessian at a time
    const reqs = ws.map((w) => statsRequestFor(model, w, true));
    for (const r of reqs) {
      big.add(r);
      small.add(r);
    }
    // has(key) says whether get(key) runs a pass: false exactly where the pass count goes up.
    const ready: boolean[] = [];
    for (const r of reqs) {
      const a = await big.get(r.key);
      ready.push(small.has(r.key));
      const passesBefore = small.passCount;
      const b = await small.get(r.key);
      assert.equal(small.passCount > passesBefore, !ready[ready.length - 1], r.key);
      assert.ok(small.has(r.key));
      assert.deepEqual([...a.hessian![0]], [...b.hessian![0]]);
    }
    assert.deepEqual(ready, [false, false], 'each of the two Hessians needs its own pass');
    assert.equal(big.passCount, 1);
    assert.equal(small.passCount, 2);
    assert.throws(
      () => make(100).add(reqs[0]),
      (e: unknown) => e instanceof InputError && e.code === 'hessian-too-large' && /maxHessianBytes/.test(e.message),
    );
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

/**
 * x [B, S, 16] (fp32 or fp16) → q, k, v MatMuls (one shared activation) → h = Relu(q + k + v) [B, S, 24] → MatMul 24→16
 * (a 3-D intermediate activation) → Reshape [B·S, 16] → Gemm(transB) 16→8 (a 2-D activation).
 */
function blockModel(fp16: boolean): LoadedModel {
  const dt = fp16 ? 'float16' : 'float32';
  const b = new GraphBuilder({ opset: 17 });
  const w = (name: string, dims: number[], seed: number) => {
    const v = randn(dims[0] * dims[1], seed, 0.3);
    b.initializer(name, dt, dims, fp16 ? float32ToFloat16(v) : v);
  };
  b.input('x', dt, ['b', 's', 16]);
  for (const [i, n] of ['q', 'k', 'v'].entries()) w(n, [16, 24], 30 + i);
  w('o', [24, 16], 40);
  w('g', [8, 16], 41);
  const [q, k, v] = ['q', 'k', 'v'].map((n) => b.node('MatMul', ['x', n], {}, { name: n }));
  b.node('Relu', [b.node('Add', [b.node('Add', [q, k]), v])], {}, { output: 'h' });
  b.node('MatMul', ['h', 'o'], {}, { name: 'o_mm', output: 'y' });
  b.initializer('flat', 'int64', [2], BigInt64Array.of(-1n, 16n));
  b.node('Reshape', ['y', 'flat'], {}, { output: 'y2' });
  b.node('Gemm', ['y2', 'g'], { transB: 1 }, { name: 'gemm', output: 'out' });
  b.output('out', dt, ['n', 8]);
  return b.build();
}

/** The reference: activations copied out to JS as graph outputs (the earlier path), reduced in float64. */
async function referenceStats(model: LoadedModel, dir: string, ds: Dataset, ranges: [number, number][]) {
  const acts = ['h', 'y2'];
  const opened = await openStatsSession(model, acts, dir, ['cpu']);
  const out = new Map<string, { sumSq: Float64Array; h: Float64Array; rows: number; K: number }>();
  try {
    for (const batch of batches(ds, ranges)) {
      const r = await opened.session.run(feedsOf(batch.inputs), acts);
      const values: [string, Float32Array, number][] = [['x', toFloat32(batch.inputs.get('x')!), 16]];
      for (const a of acts) values.push([a, toFloat32(r[a]), r[a].dims[r[a].dims.length - 1]]);
      for (const [name, x, K] of values) {
        let acc = out.get(name);
        if (!acc) out.set(name, (acc = { sumSq: new Float64Array(K), h: new Float64Array(K * K), rows: 0, K }));
        const rows = x.length / K;
        for (let t = 0; t < rows; t++)
          for (let i = 0; i < K; i++) {
            const xi = x[t * K + i];
            acc.sumSq[i] += xi * xi;
            for (let j = 0; j < K; j++) acc.h[i * K + j] += xi * x[t * K + j];
          }
        acc.rows += rows;
      }
    }
  } finally {
    await opened.session.release();
  }
  for (const a of out.values()) for (let i = 0; i < a.h.length; i++) a.h[i] *= 2 / a.rows;
  return out;
}

for (const fp16 of [false, true]) {
  test(`3-D activations, shared q/k/v, MatMul and Gemm${fp16 ? ', fp16 model' : ''}: equal to the copied-out path, one ORT run per batch`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stats-'));
    try {
      const model = blockModel(fp16);
      const raw = randn(5 * 7 * 16, 50);
      const x: DataArray = fp16
        ? { dtype: 'float16', dims: [5, 7, 16], data: float32ToFloat16(raw) }
        : { dtype: 'float32', dims: [5, 7, 16], data: raw };
      const ds = dataset('x', x);
      const ranges = planBatches(5, 2).ranges; // 3 batches
      const ws = discoverWeights(model);
      assert.deepEqual(
        ws.map((w) => w.activation),
        ['x', 'x', 'x', 'h', 'y2'],
      );
      const { c, runs, opened } = collector(model, dir, { dataset: ds, ranges, maxHessianBytes: 1 << 20 });
      for (const w of ws) c.add(statsRequestFor(model, w, true));
      const ref = await referenceStats(model, dir, ds, ranges);
      for (const w of ws) {
        const s = await c.get(w.activation!);
        const want = ref.get(w.activation!)!;
        assert.equal(s.tokens, 35, w.name);
        // fp16: an intermediate activation may round differently in the two sessions (ORT fuses the fp16 graph
        // differently once the Cast is appended): half a fp16 ulp, ~5e-4. The model input is bit-identical.
        const tol = fp16 && w.activation !== 'x' ? 2e-3 : 1e-5;
        assert.ok(
          maxRelDiff(s.hessian![0], want.h) < tol,
          `${w.name}: H differs by ${maxRelDiff(s.hessian![0], want.h)}`,
        );
        const xn = want.sumSq.map((v) => Math.sqrt(v / want.rows));
        assert.ok(maxRelDiff(s.xNorm[0], xn) < tol, `${w.name}: x_k differs`);
      }
      assert.equal(c.passCount, 1);
      assert.equal(opened(), 1);
      assert.equal(runs(), ranges.length, 'one ORT run per batch for every layer together');
      assert.equal(c.runCount, ranges.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('Conv (grouped + SAME_UPPER, dilation, Conv1d): in-graph patches equal the JS im2col path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const cases: { spatial: number; dims: number[]; w: number[]; attrs: Record<string, AttrValue> }[] = [
      {
        spatial: 2,
        dims: [2, 6, 10, 9],
        w: [4, 3, 3, 2],
        attrs: { group: 2, strides: [2, 2], auto_pad: 'SAME_UPPER' },
      },
      { spatial: 2, dims: [2, 4, 8, 9], w: [4, 4, 2, 3], attrs: { dilations: [2, 1], pads: [1, 0, 2, 1] } },
      { spatial: 1, dims: [3, 4, 13], w: [6, 4, 3], attrs: { strides: [2], pads: [2, 1] } },
      // K = 3·3·88 = 792 > GRAM_BLOCK: two tiles a side per group.
      { spatial: 2, dims: [2, 176, 5, 5], w: [4, 88, 3, 3], attrs: { group: 2, pads: [1, 1, 1, 1] } },
    ];
    for (const k of cases) {
      const b = new GraphBuilder({ opset: 17 });
      b.input('x', 'float32', ['b', ...k.dims.slice(1)]);
      b.initializer(
        'w',
        'float32',
        k.w,
        randn(
          k.w.reduce((a, c) => a * c, 1),
          60,
        ),
      );
      b.node('Conv', ['x', 'w'], k.attrs, { name: 'conv', output: 'y' });
      b.output('y', 'float32');
      const model = b.build();
      const ref = discoverWeights(model, { minElements: 1 })[0];
      const req = statsRequestFor(model, ref, true);
      const n = k.dims.reduce((a, c) => a * c, 1);
      const x = randn(n, 61);
      const { c } = collector(model, dir, {
        dataset: dataset('x', { dtype: 'float32', dims: k.dims, data: x }),
        ranges: planBatches(k.dims[0], 1).ranges,
        maxHessianBytes: 1 << 25,
      });
      c.add({ ...req, sampleRows: 5 });
      const s = await c.get(req.key);
      // JS im2col (runtime/conv.ts), float64 Gram.
      const g = req.conv!;
      const [B, C] = k.dims;
      const h = k.spatial === 2 ? k.dims[2] : 1;
      const w = k.dims[k.dims.length - 1];
      const o = outputSize(g, h, w);
      const T = B * o.oh * o.ow;
      for (let grp = 0; grp < req.groups; grp++) {
        const patches = new Float32Array(T * req.K);
        im2colRows(x, { b: B, c: C, h, w }, g, o, grp, 0, T, patches);
        const rows = Array.from({ length: T }, (_, r) =>
          Float64Array.from(patches.subarray(r * req.K, (r + 1) * req.K)),
        );
        assert.ok(maxRelDiff(s.hessian![grp], bruteGram(rows, req.K)) < 1e-5, `${k.spatial}-D group ${grp}`);
        // The sample: every ⌈T₁/5⌉-th patch row of the first batch (one image here).
        const t1 = o.oh * o.ow;
        const step = Math.ceil(t1 / 5);
        assert.equal(s.sample!.rows, Math.ceil(t1 / step));
        for (let r = 0; r < s.sample!.rows; r++)
          assert.deepEqual(
            [...s.sample!.x[grp].subarray(r * req.K, (r + 1) * req.K)],
            [...patches.subarray(r * step * req.K, (r * step + 1) * req.K)],
          );
      }
      assert.equal(s.tokens, T);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Hessian-free requests: a row sample of the first batch, and the layer error on it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = mlp();
    const w1 = discoverWeights(model).find((w) => w.name === 'w1')!;
    const x = randn(40 * 16, 70);
    const { c } = collector(model, dir, {
      dataset: dataset('x', { dtype: 'float32', dims: [40, 16], data: x }),
      ranges: planBatches(40, 16).ranges,
      maxHessianBytes: 0, // no Hessian is held at all
    });
    c.add({ ...statsRequestFor(model, w1, false), sampleRows: 6 });
    const s = await c.get('x');
    assert.equal(s.hessian, undefined);
    assert.equal(s.sample!.rows, 6); // 16 rows in the first batch, every 3rd
    for (let r = 0; r < 6; r++)
      assert.deepEqual(
        [...s.sample!.x[0].subarray(r * 16, (r + 1) * 16)],
        [...x.subarray(r * 3 * 16, (r * 3 + 1) * 16)],
      );
    const before = readWeightMatrix(model, w1);
    const after = before.map((v, i) => (i % 3 === 0 ? 0 : v));
    const err = await layerRelativeError(w1, s, before, after);
    let num = 0;
    let den = 0;
    for (let r = 0; r < 6; r++)
      for (let n = 0; n < w1.N; n++) {
        let y = 0;
        let d = 0;
        for (let k = 0; k < 16; k++) {
          const xv = x[r * 3 * 16 + k];
          y += xv * before[n * 16 + k];
          d += xv * (before[n * 16 + k] - after[n * 16 + k]);
        }
        num += d * d;
        den += y * y;
      }
    assert.ok(Math.abs(err! - Math.sqrt(num / den)) < 1e-5 * err!, `${err} vs ${Math.sqrt(num / den)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Hessian-free requests on plain MatMuls: ‖X_s·W‖² of each reader comes from the pass, over the sampled rows; none for Gemm or a layer the pass does not run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = blockModel(false);
    const ws = discoverWeights(model);
    const byName = (n: string) => ws.find((w) => w.name === n)!;
    const [B, S] = [3, 10]; // 30 rows in the batch; 8 sampled: every 4th
    const x = randn(B * S * 16, 91);
    const request = (n: string) => {
      const w = byName(n);
      const output = consumerOutput(model, w);
      return { ...statsRequestFor(model, w, false), sampleRows: 8, ...(output ? { outputs: [output] } : {}) };
    };
    assert.equal(consumerOutput(model, byName('g')), undefined); // Gemm: α·X·Wᵀ + βC is not X·W
    const run = async (names: string[]) => {
      const { c } = collector(model, dir, {
        dataset: dataset('x', { dtype: 'float32', dims: [B, S, 16], data: x }),
        ranges: planBatches(B, B).ranges,
        maxHessianBytes: 0,
      });
      for (const n of names) c.add(request(n));
      return c;
    };
    // q, k, v share x; o reads h, which the pass computes from q, k and v; g's reductions run o_mm.
    const all = await run(['q', 'k', 'v', 'o', 'g']);
    const sx = await all.get('x');
    const sh = await all.get('h');
    assert.equal((await all.get('y2')).sample!.outputSquares, undefined);
    assert.equal(sx.sample!.rows, 8);
    for (const [n, s, K, N] of [
      ['q', sx, 16, 24],
      ['k', sx, 16, 24],
      ['v', sx, 16, 24],
      ['o', sh, 24, 16],
    ] as const) {
      const w = readWeightMatrix(model, byName(n)); // canonical [N][K]
      let want = 0;
      for (let r = 0; r < 8; r++)
        for (let j = 0; j < N; j++) {
          let y = 0;
          for (let k = 0; k < K; k++) y += s.sample!.x[0][r * K + k] * w[j * K + k];
          want += y * y;
        }
      const got = s.sample!.outputSquares?.get(n);
      assert.ok(got !== undefined && Math.abs(got - want) < 1e-5 * want, `${n}: ${got} vs ${want}`);
    }
    assert.equal(sh.sample!.outputSquares?.has('q'), false);
    // A pass over x alone runs no MatMul (its reductions need none): q, k and v get no reference from it.
    const alone = await (await run(['q', 'k', 'v'])).get('x');
    assert.equal(alone.sample!.outputSquares, undefined);
    // h's reductions need q, k and v, so they run; o_mm does not (nothing after h is fetched), like an LM head.
    const last = await run(['q', 'o']);
    assert.ok((await last.get('x')).sample!.outputSquares?.has('q'));
    assert.equal((await last.get('h')).sample!.outputSquares, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the reductions are appended latest activation first, so that ORT reduces each activation as the pass goes', async () => {
  const { appendStatistics } = await import('../../../packages/engine/runtime/capture.js');
  const model = blockModel(false);
  const ws = discoverWeights(model);
  const reqs = ['q', 'o', 'g'].map((n) => ({
    ...statsRequestFor(
      model,
      ws.find((w) => w.name === n)!,
      false,
    ),
  }));
  const before = model.proto.graph!.node.length;
  const appended = appendStatistics(model, reqs);
  const nodes = model.proto.graph!.node.slice(before);
  // ONNX Runtime's default order walks back from the LAST leaf first: the first activation's nodes must come last.
  const firstUse = (activation: string) => nodes.findIndex((n) => n.input.includes(activation));
  assert.ok(firstUse('y2') < firstUse('h') && firstUse('h') < firstUse('x'), 'appended latest activation first');
  appended.undo();
  assert.equal(model.proto.graph!.node.length, before);
});

test('a released Hessian’s buffer is reused by the next pass, whatever it holds, with results bit-identical to one pass', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    // x [n, 32] → three MatMuls 32×32 (Tanh between): three Hessians of one size.
    const b = new GraphBuilder({ opset: 17 });
    b.input('x', 'float32', ['n', 32]);
    let h = 'x';
    for (let l = 0; l < 3; l++) {
      b.initializer(`w${l}`, 'float32', [32, 32], randn(32 * 32, 11 + l, 0.3));
      h = b.node('MatMul', [h, `w${l}`], {}, { name: `fc${l}` });
      if (l < 2) h = b.node('Tanh', [h]);
    }
    b.output(h, 'float32', ['n', 32]);
    const file = join(dir, 'chain.onnx');
    await saveModel(b.build(), file);
    const model = await loadModel(file);
    const ws = discoverWeights(model).filter((w) => w.compressible);
    assert.equal(ws.length, 3);
    const make = (budget: number) =>
      collector(model, dir, {
        dataset: dataset('x', { dtype: 'float32', dims: [24, 32], data: randn(24 * 32, 3) }),
        ranges: planBatches(24, 8).ranges,
        maxHessianBytes: budget,
      }).c;
    const one = make(1 << 20);
    const each = make(32 * 32 * 8); // one Hessian per pass
    const reqs = ws.map((w) => statsRequestFor(model, w, true));
    for (const r of reqs) {
      one.add(r);
      each.add(r);
    }
    let previous: ArrayBufferLike | undefined;
    for (const r of reqs) {
      const want = (await one.get(r.key)).hessian![0];
      const got = (await each.get(r.key)).hessian![0];
      if (previous) assert.equal(got.buffer, previous, `${r.key}: the released Hessian's buffer is reused`);
      assert.deepEqual([...got], [...want], r.key);
      got.fill(Number.NaN); // what a reused buffer may hold: none of it may show in the next pass's Hessian
      previous = got.buffer;
      each.release(r.key);
    }
    assert.equal(each.passCount, 3);
    // A capture session fetches the model's own output only when asked; else its graph is cut to the reductions.
    const first = [statsRequestFor(model, ws[0], true)];
    for (const [modelOutputs, want] of [
      [false, false],
      [true, true],
    ] as const) {
      const cs = await openCaptureSession(model, first, dir, ['cpu'], { modelOutputs });
      assert.equal(cs.session.outputNames.includes(h), want, `modelOutputs: ${modelOutputs}`);
      await cs.session.release();
    }
    assert.equal(model.proto.graph!.node.length, 5, 'the caller’s model is left as it was');
    closeModel(model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('later passes start from their cut, fed what the first pass fetched there: the same Hessians, fewer nodes run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    // x [n, 32] → four MatMuls 32×32 with Tanh between (plus a Relu side branch the last one reads).
    const b = new GraphBuilder({ opset: 17 });
    b.input('x', 'float32', ['n', 32]);
    const side = b.node('Relu', ['x'], {}, { name: 'side', output: 'side' });
    let h = 'x';
    for (let l = 0; l < 4; l++) {
      b.initializer(`w${l}`, 'float32', [32, 32], randn(32 * 32, 21 + l, 0.3));
      if (l === 3) h = b.node('Add', [h, side], {}, { name: 'skip' });
      h = b.node('MatMul', [h, `w${l}`], {}, { name: `fc${l}` });
      if (l < 3) h = b.node('Tanh', [h], {}, { name: `tanh${l}` });
    }
    b.output(h, 'float32', ['n', 32]);
    const file = join(dir, 'chain4.onnx');
    await saveModel(b.build(), file);
    const model = await loadModel(file);
    const ws = discoverWeights(model).filter((w) => w.compressible);
    const reqs = ws.map((w) => statsRequestFor(model, w, true));
    const opts = {
      dataset: dataset('x', { dtype: 'float32', dims: [20, 32], data: randn(20 * 32, 4) }),
      ranges: planBatches(20, 8).ranges,
      maxHessianBytes: 2 * 32 * 32 * 8, // two Hessians per pass
    };
    const plain = collector(model, dir, opts).c;
    const inputs: string[][] = [];
    const cut = new StatsCollector({
      ...opts,
      cutFor: (passReqs) =>
        passCut(
          model,
          passReqs.map((r) => r.activation),
        ),
      open: async (passReqs, extra) => {
        const s = await openCaptureSession(model, passReqs, dir, ['cpu'], extra);
        inputs.push([...s.session.inputNames]);
        return s;
      },
    });
    assert.equal(reqs.length, 4);
    for (const r of reqs) {
      plain.add(r);
      cut.add(r);
    }
    await cut.prepare();
    for (const r of reqs) {
      const want = (await plain.get(r.key)).hessian![0];
      const got = (await cut.get(r.key)).hessian![0];
      assert.deepEqual([...got], [...want], r.key);
    }
    assert.equal(cut.passCount, 2);
    // A cut ONNX Runtime refuses (here a crossing value declared int64) runs uncut, with the same Hessians.
    const refused = new StatsCollector({
      ...opts,
      cutFor: (passReqs) => {
        const c = passCut(
          model,
          passReqs.map((r) => r.activation),
        );
        return c && { ...c, frontier: c.frontier.map((f) => ({ ...f, elemType: 7 })) };
      },
      open: (passReqs, extra) => openCaptureSession(model, passReqs, dir, ['cpu'], extra),
    });
    for (const r of reqs) refused.add(r);
    await refused.prepare();
    for (const r of reqs) {
      assert.deepEqual([...(await refused.get(r.key)).hessian![0]], [...(await plain.get(r.key)).hessian![0]], r.key);
    }
    // The second pass (fc2, fc3) starts at tanh1, which produces fc2's input: it is fed fc1's output and the side
    // branch, not x.
    assert.deepEqual(inputs[0], ['x']);
    assert.deepEqual(inputs[1].sort(), ['fc1_out0', 'side']);
    closeModel(model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A PyTorch-exported-like block: q/k/v on one input, o_proj, an MLP and an LM head last (weights `onnx::MatMul_*`),
 * in fp32 or fp16 (weights, input and every value).
 */
function torchNamedModel(dt: 'float32' | 'float16' = 'float32'): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  b.input('input', dt, ['batch', 'seq', 16]);
  let id = 101;
  const init = (name: string, K: number, N: number, seed: number) => {
    const v = randn(K * N, seed, 0.3);
    b.initializer(name, dt, [K, N], dt === 'float16' ? float32ToFloat16(v) : v);
  };
  const mm = (x: string, path: string, K: number, N: number) => {
    const w = `onnx::MatMul_${id}`;
    init(w, K, N, id++);
    return b.node('MatMul', [x, w], {}, { name: `${path}/MatMul`, output: `${path}/MatMul_output_0` });
  };
  const [q, k, v] = ['q', 'k', 'v'].map((p) => mm('input', `/model/layers.0/self_attn/${p}_proj`, 16, 24));
  const h = b.node(
    'Relu',
    [b.node('Add', [b.node('Add', [q, k]), v])],
    {},
    { output: '/model/layers.0/Relu_output_0' },
  );
  const o = b.node('Tanh', [mm(h, '/model/layers.0/self_attn/o_proj', 24, 16)], {}, { output: '/model/Tanh_output_0' });
  const u = b.node('Relu', [mm(o, '/model/layers.0/mlp/up_proj', 16, 32)], {}, { output: '/model/Relu_1_output_0' });
  const d = b.node('Tanh', [mm(u, '/model/layers.0/mlp/down_proj', 32, 16)], {}, { output: '/model/norm/output_0' });
  b.node('MatMul', [d, `onnx::MatMul_${id}`], {}, { name: '/lm_head/MatMul', output: 'logits' });
  init(`onnx::MatMul_${id}`, 16, 40, id);
  b.output('logits', dt, ['batch', 'seq', 40]);
  return b.build();
}

test('Hessian requests on plain MatMuls: tr(W·H·Wᵀ) of each reader from its own output over every row of every batch, for the passes that run it; none for an LM head past the pass', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = torchNamedModel();
    const ws = discoverWeights(model).filter((w) => w.op === 'MatMul');
    assert.equal(ws.length, 7);
    const [B, S] = [7, 5]; // batches of 3, 3 and 1 samples: 15, 15 and 5 rows
    const opts = {
      dataset: dataset('input', { dtype: 'float32', dims: [B, S, 16], data: randn(B * S * 16, 93) }),
      ranges: planBatches(B, 3).ranges,
    };
    const requests = () =>
      ws.map((w) => {
        const output = consumerOutput(model, w);
        assert.ok(output, w.name);
        return { ...statsRequestFor(model, w, true), outputs: [output] };
      });
    /** float64 tr(W·H·Wᵀ) from the pass's Hessian and the canonical weight [N][K]. */
    const traceOf = (name: string, h: Float64Array) => {
      const w = ws.find((x) => x.name === name)!;
      const m = readWeightMatrix(model, w);
      let t = 0;
      for (let n = 0; n < w.N; n++)
        for (let i = 0; i < w.K; i++) {
          let s = 0;
          for (let j = 0; j < w.K; j++) s += h[i * w.K + j] * m[n * w.K + j];
          t += m[n * w.K + i] * s;
        }
      return t;
    };
    const run = async (extra: Partial<StatsCollectorOptions>) => {
      const { c } = collector(model, dir, { ...opts, maxHessianBytes: 1 << 20, ...extra });
      for (const r of requests()) c.add(r);
      const got = new Map<string, number | undefined>();
      for (const w of ws) {
        const s = await c.get(w.activation!);
        assert.ok(s.tokens === B * S && s.hessian, w.name);
        const t = s.outputTraces?.get(w.name);
        got.set(w.name, t);
        if (t === undefined) continue;
        const want = traceOf(w.name, s.hessian[0]);
        assert.ok(Math.abs(t - want) < 1e-5 * want, `${w.name}: ${t} vs ${want}`);
      }
      return { c, got };
    };
    const traced = (got: Map<string, number | undefined>) =>
      [...got].filter(([, t]) => t !== undefined).map(([n]) => n);
    // One pass: every MatMul runs for a later activation's reductions except the LM head.
    const one = await run({});
    assert.equal(one.c.passCount, 1);
    assert.deepEqual(
      traced(one.got),
      ws.slice(0, 6).map((w) => w.name),
    );
    // Hessians capped at 8 KiB: passes {input, Relu}, {Tanh, norm} (from its cut), {Relu_1}. A reader's trace comes
    // with its activation's pass, where its MatMul runs anyway: q/k/v (for Relu's) and up_proj (for norm's); o_proj
    // and down_proj would run only for their trace, like the LM head. Equal to fp32 rounding where present.
    const capped = await run({
      maxHessianBytes: 32 * 32 * 8,
      cutFor: (passReqs) => passCut(model, [...new Set(passReqs.map((r) => r.activation))]),
    });
    assert.equal(capped.c.passCount, 3);
    const names = ws.map((w) => w.name);
    assert.deepEqual(traced(capped.got), [...names.slice(0, 3), names[4]]);
    for (const [n, t] of capped.got) if (t !== undefined) assert.ok(Math.abs(t - one.got.get(n)!) < 1e-5 * t, n);
    // Sequential: one activation per pass, whose readers do not run in it; every Hessian as before.
    const seq = await run({ sequential: true });
    assert.equal(seq.c.passCount, 5);
    assert.deepEqual(traced(seq.got), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('layerRelativeError with the pass’s tr(W·H·Wᵀ) (LayerStats.outputTraces) computes only tr(ΔHΔᵀ): the same error', async () => {
  const [T, N, K] = [50, 24, 96]; // N·K·K over the JS route's limit at 2N rows and under it at N: both routes met
  const x = randn(T * K, 3);
  const w = randn(N * K, 4);
  const h = hessianF64(x, T, K);
  let trace = 0; // tr(W·H·Wᵀ) in float64
  for (let n = 0; n < N; n++)
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) trace += w[n * K + i] * h[i * K + j] * w[n * K + j];
  const after = w.map((v, i) => (i % 4 < 2 ? 0 : v));
  const want = outputErrorF64(x, T, w, after, N, K); // ‖X(W − Ŵ)ᵀ‖ / ‖XWᵀ‖ in float64
  const ref = { name: 'onnx::MatMul_123', N, K } as unknown as Parameters<typeof layerRelativeError>[0];
  const stats = (traces?: Map<string, number>) =>
    ({ hessian: [h], ...(traces ? { outputTraces: traces } : {}) }) as unknown as Parameters<
      typeof layerRelativeError
    >[1];
  const measured = (await layerRelativeError(ref, stats(), w, after))!;
  const given = (await layerRelativeError(ref, stats(new Map([[ref.name, trace]])), w, after))!;
  assert.ok(Math.abs(measured - want) < 1e-5 * want, `${measured} vs ${want}`);
  assert.ok(Math.abs(given - want) < 1e-5 * want, `${given} vs ${want}`);
  // The given trace is the denominator (not re-measured): four times it halves the error; another weight's is not read.
  const quarter = (await layerRelativeError(ref, stats(new Map([[ref.name, 4 * trace]])), w, after))!;
  assert.ok(Math.abs(quarter - want / 2) < 1e-5 * want, `${quarter} vs ${want / 2}`);
  assert.equal(await layerRelativeError(ref, stats(new Map([['other', 4 * trace]])), w, after), measured);
});

test('fp16 model (PyTorch names): x_k, H and tr(W·H·Wᵀ) of every reader the pass runs equal float64 sums over the fp16 activations and MatMul outputs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stats-'));
  try {
    const model = torchNamedModel('float16');
    const ws = discoverWeights(model).filter((w) => w.op === 'MatMul');
    const [B, S] = [7, 5];
    const x: DataArray = { dtype: 'float16', dims: [B, S, 16], data: float32ToFloat16(randn(B * S * 16, 94)) };
    const ds = dataset('input', x);
    const ranges = planBatches(B, 3).ranges;
    const { c } = collector(model, dir, { dataset: ds, ranges, maxHessianBytes: 1 << 20 });
    for (const w of ws) c.add({ ...statsRequestFor(model, w, true), outputs: [consumerOutput(model, w)!] });
    // The reference: the fp16 activations and MatMul outputs fetched as graph outputs, reduced in float64.
    const acts = [...new Set(ws.map((w) => w.activation!))].filter((a) => a !== 'input');
    const outs = ws.slice(0, 6).map((w) => consumerOutput(model, w)!.value);
    const opened = await openStatsSession(model, [...acts, ...outs], dir, ['cpu']);
    const ref = new Map<string, { sq: Float64Array; h: Float64Array; rows: number }>();
    try {
      for (const batch of batches(ds, ranges)) {
        const r = await opened.session.run(feedsOf(batch.inputs), [...acts, ...outs]);
        const values: [string, ort.Tensor][] = [
          [
            'input',
            new ort.Tensor('float16', batch.inputs.get('input')!.data as Uint16Array, batch.inputs.get('input')!.dims),
          ],
        ];
        for (const n of [...acts, ...outs]) values.push([n, r[n]]);
        for (const [name, t] of values) {
          assert.equal(t.type, 'float16', name);
          const v = toFloat32(t);
          const K = t.dims[t.dims.length - 1];
          let a = ref.get(name);
          if (!a) ref.set(name, (a = { sq: new Float64Array(K), h: new Float64Array(K * K), rows: 0 }));
          for (let row = 0; row < v.length / K; row++)
            for (let i = 0; i < K; i++) {
              const xi = v[row * K + i];
              a.sq[i] += xi * xi;
              for (let j = 0; j < K; j++) a.h[i * K + j] += xi * v[row * K + j];
            }
          a.rows += v.length / K;
        }
      }
    } finally {
      await opened.session.release();
    }
    for (const w of ws) {
      const s = await c.get(w.activation!);
      const want = ref.get(w.activation!)!;
      assert.equal(s.tokens, B * S);
      // ONNX Runtime computes this graph's Add/Relu/Tanh in fp32 and drops their Casts back to fp16 where only the
      // reductions read them (they read the fp32 value): up to half a fp16 ulp per element, ~2.4e-4, on the
      // intermediate activations. The model input is the fp16 data itself: fp32 rounding only.
      const tol = w.activation === 'input' ? 1e-6 : 2e-3;
      const h = want.h.map((v) => (v * 2) / want.rows);
      assert.ok(maxRelDiff(s.hessian![0], h) < tol, `${w.name}: H differs by ${maxRelDiff(s.hessian![0], h)}`);
      const xn = want.sq.map((v) => Math.sqrt(v / want.rows));
      assert.ok(maxRelDiff(s.xNorm[0], xn) < tol, `${w.name}: x_k differs by ${maxRelDiff(s.xNorm[0], xn)}`);
      // tr(W·H·Wᵀ) = (2/n)·Σ‖Y‖² from the reader's own output, fp16 like X (not for the LM head past the pass).
      const trace = s.outputTraces?.get(w.name);
      const y = ref.get(consumerOutput(model, w)!.value);
      if (!y) {
        assert.equal(trace, undefined, w.name);
        continue;
      }
      const wantTrace = (2 / y.rows) * y.sq.reduce((a, v) => a + v, 0);
      assert.ok(trace !== undefined, `${w.name}: no output trace from the pass`);
      assert.ok(Math.abs(trace - wantTrace) < tol * wantTrace, `${w.name}: ${trace} vs ${wantTrace}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
