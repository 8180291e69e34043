// Weight discovery and the canonical [N][K] matrix view, checked against float64 brute-force layer outputs computed
// from the canonical matrix and compared with what onnxruntime computes from the stored tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { GraphBuilder, float } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import type { LoadedModel } from '../../../packages/engine/onnx/model.js';
import { makeTensor, tensorBytes } from '../../../packages/engine/onnx/tensor.js';
import type { WeightRef } from '../../../packages/engine/onnx/weights.js';
import {
  discoverWeights,
  readWeightMatrix,
  weightColumnChannel,
  writeWeightMatrix,
} from '../../../packages/engine/onnx/weights.js';
import {
  PPOCR_DET,
  PPOCR_REC,
  ifModel,
  loopScanModel,
  mlpModel,
  randomFloats,
  removeDir,
  sparseInitModel,
  tempDir,
  viaModel,
} from '../../helpers/onnx-fixtures.js';
import { runOrt } from '../../helpers/ort.js';

const byName = (ws: WeightRef[], name: string) => {
  const w = ws.find((x) => x.name === name);
  assert.ok(w, `weight ${name} found among ${ws.map((x) => x.name).join(', ')}`);
  return w;
};

/** y[r][n] = Σ_k x[r][k]·M[n][k] in float64. */
function denseRef(x: Float32Array, rows: number, M: Float32Array, N: number, K: number): Float64Array {
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * M[n * K + k];
      y[r * N + n] = s;
    }
  return y;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-4): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++)
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol * (1 + Math.abs(expected[i])),
      `[${i}] ${actual[i]} vs ${expected[i]}`,
    );
}

test('discovery: initializer + Constant, Gemm transB, axes and K/N', () => {
  const ws = discoverWeights(mlpModel(), { minElements: 0 });
  assert.equal(ws.length, 2);
  const w1 = byName(ws, 'W1');
  assert.deepEqual(
    [w1.op, w1.node, w1.location, w1.shape, w1.kAxis, w1.nAxis, w1.K, w1.N, w1.compressible, w1.activation],
    ['MatMul', 'mm1', 'initializer', [16, 32], 0, 1, 16, 32, true, 'x'],
  );
  const w2 = byName(ws, 'W2');
  assert.deepEqual(
    [w2.op, w2.location, w2.transB, w2.kAxis, w2.nAxis, w2.K, w2.N],
    ['Gemm', 'constant', true, 1, 0, 32, 8],
  );
  // Default minElements (1024) marks these small ones as too small.
  assert.match(discoverWeights(mlpModel())[0].reason ?? '', /too small/);
});

test('discovery through Identity / Cast(fp16) / Reshape / Transpose', () => {
  const ws = discoverWeights(viaModel(), { minElements: 0 });
  const id = byName(ws, 'Wid');
  assert.deepEqual(id.via, ['Identity']);
  const cast = byName(ws, 'Wfp16');
  assert.deepEqual([cast.via, cast.dtype, cast.compressible], [['Cast'], 'float16', true]);
  const flat = byName(ws, 'Wflat');
  assert.deepEqual(
    [flat.via, flat.location, flat.shape, flat.consumerShape, flat.K, flat.N],
    [['Reshape'], 'constant', [64], [8, 8], 8, 8],
  );
  const t = byName(ws, 'Wt');
  assert.deepEqual(
    [t.via, t.shape, t.consumerShape, t.kAxis, t.nAxis, t.K, t.N],
    [['Transpose'], [4, 8], [8, 4], 1, 0, 8, 4],
  );
  // Stored [N][K] behind a Transpose: the canonical matrix is the stored tensor itself.
  const model = viaModel();
  const stored = tensorBytes(
    model,
    model.proto.graph!.initializer.find((x) => x.name === 'Wt')!,
  );
  assert.deepEqual(Array.from(readWeightMatrix(model, t)), Array.from(new Float32Array(stored.slice().buffer)));
});

async function checkLayerAgainstOrt(model: LoadedModel, w: WeightRef, x: Float32Array, rows: number, output: string) {
  const M = readWeightMatrix(model, w);
  const y = await runOrt(model, { x: { type: 'float32', data: x, dims: [rows, w.K] } }, [output]);
  assertClose(y[output] as Float32Array, denseRef(x, rows, M, w.N, w.K));
}

test('canonical matrices reproduce ORT layer outputs (MatMul, Gemm transB=0/1, via ops), before and after writes', async () => {
  for (const transB of [0, 1]) {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [3, 12]);
    const W = randomFloats(60, 50 + transB);
    b.output(
      b.node(
        'Gemm',
        [x, b.initializer('W', 'float32', transB ? [5, 12] : [12, 5], W)],
        { transB, alpha: float(1) },
        { output: 'y' },
      ),
      'float32',
      [3, 5],
    );
    const model = b.build();
    const w = discoverWeights(model, { minElements: 0 })[0];
    assert.deepEqual([w.K, w.N, w.kAxis], [12, 5, transB ? 1 : 0]);
    const xv = randomFloats(36, 60);
    await checkLayerAgainstOrt(model, w, xv, 3, 'y');
    const changed = readWeightMatrix(model, w).map((v, i) => (i % 3 === 0 ? 0 : v * 2));
    writeWeightMatrix(model, w, changed);
    assert.deepEqual(Array.from(readWeightMatrix(model, w)), Array.from(changed));
    await checkLayerAgainstOrt(model, w, xv, 3, 'y');
  }
  // Each via-op weight, written with a recognisable pattern, then checked layer by layer through ORT.
  const model = viaModel();
  const ws = discoverWeights(model, { minElements: 0 });
  for (const w of ws) {
    const before = readWeightMatrix(model, w);
    writeWeightMatrix(model, w, before);
    assert.deepEqual(
      Array.from(readWeightMatrix(model, w)),
      Array.from(before),
      `${w.name}: write(read) is the identity`,
    );
    writeWeightMatrix(
      model,
      w,
      before.map((v, i) => (i % 2 ? 0 : v)),
    );
  }
  // fp16 stays fp16 and holds the rounded values.
  const fp16 = model.proto.graph!.initializer.find((t) => t.name === 'Wfp16')!;
  assert.equal(fp16.dataType, 10);
  assert.equal(fp16.rawData.length, 128);
  const x = randomFloats(16, 70);
  const out = await runOrt(model, { x: { type: 'float32', data: x, dims: [2, 8] } });
  let h: Float64Array = Float64Array.from(x);
  for (const name of ['Wid', 'Wfp16', 'Wflat', 'Wt']) {
    const w = byName(ws, name);
    h = denseRef(Float32Array.from(h), 2, readWeightMatrix(model, w), w.N, w.K);
  }
  assertClose(out.y as Float32Array, h);
});

/** Conv reference from the canonical (kh, kw, cin) matrix: validates the ASP layout and weightColumnChannel. */
test('Conv with groups: canonical (kh, kw, cin) rows reproduce ORT, columns map to input channels', async () => {
  const [Cin, G, N, KH, KW, H, Wd] = [6, 3, 9, 3, 2, 5, 4];
  const Cg = Cin / G;
  const b = new GraphBuilder();
  const x = b.input('x', 'float32', [1, Cin, H, Wd]);
  b.output(
    b.node(
      'Conv',
      [x, b.constant('Wc', 'float32', [N, Cg, KH, KW], randomFloats(N * Cg * KH * KW, 80))],
      { group: G },
      { name: 'conv', output: 'y' },
    ),
    'float32',
  );
  const model = b.build();
  const w = discoverWeights(model, { minElements: 0 })[0];
  assert.deepEqual(
    [w.op, w.group, w.K, w.N, w.kAxis, w.nAxis, w.location],
    ['Conv', G, Cg * KH * KW, N, 1, 0, 'constant'],
  );
  const chan = weightColumnChannel(w);
  writeWeightMatrix(
    model,
    w,
    readWeightMatrix(model, w).map((v, i) => (i % 4 === 1 ? 0 : v)),
  );
  const M = readWeightMatrix(model, w);
  const xv = randomFloats(Cin * H * Wd, 81);
  const y = (await runOrt(model, { x: { type: 'float32', data: xv, dims: [1, Cin, H, Wd] } })).y as Float32Array;
  const OH = H - KH + 1;
  const OW = Wd - KW + 1;
  const ref = new Float64Array(N * OH * OW);
  for (let n = 0; n < N; n++) {
    const g = Math.floor(n / (N / G));
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        let s = 0;
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++)
            for (let ci = 0; ci < Cg; ci++) {
              const k = (kh * KW + kw) * Cg + ci;
              assert.equal(chan[k], ci);
              s += xv[(g * Cg + chan[k]) * H * Wd + (oh + kh) * Wd + (ow + kw)] * M[n * w.K + k];
            }
        ref[(n * OH + oh) * OW + ow] = s;
      }
  }
  assertClose(y, ref);
});

test('subgraph weights: If branches, Loop body initializer, Scan body reading an outer Constant', () => {
  const ws = discoverWeights(ifModel(), { minElements: 0 });
  const outer = byName(ws, 'Wouter');
  // The branch reads the main graph's input x directly: that activation can be captured.
  assert.deepEqual(
    [outer.graphPath, outer.storeGraphPath, outer.activationInMainGraph, outer.location],
    ['If_0/then_branch', '', true, 'initializer'],
  );
  const inner = byName(ws, 'Winner');
  assert.deepEqual(
    [inner.graphPath, inner.storeGraphPath, inner.location],
    ['If_0/else_branch', 'If_0/else_branch', 'constant'],
  );
  const m = loopScanModel();
  const ls = discoverWeights(m, { minElements: 0 });
  const loop = byName(ls, 'Wloop');
  // Its activation is the loop-carried state, a value that exists only inside the body.
  assert.deepEqual([loop.graphPath, loop.activation, loop.activationInMainGraph], ['Loop_0/body', 'h', false]);
  const scan = byName(ls, 'Wscan');
  assert.deepEqual([scan.graphPath, scan.storeGraphPath, scan.location], ['Scan_0/body', '', 'constant']);
  // Writing a subgraph weight lands in the subgraph's initializer.
  const w = byName(ls, 'Wloop');
  writeWeightMatrix(m, w, new Float32Array(64).fill(0.5));
  assert.ok(readWeightMatrix(m, w).every((v) => v === 0.5));
});

test('sparse initializer: read dense, write back sparse (nonzeros only), ORT agrees', async () => {
  const model = sparseInitModel();
  const w = discoverWeights(model, { minElements: 0 })[0];
  assert.equal(w.location, 'sparse-initializer');
  const M = readWeightMatrix(model, w);
  const x = randomFloats(8, 90);
  assertClose(
    (await runOrt(model, { x: { type: 'float32', data: x, dims: [1, 8] } })).y as Float32Array,
    denseRef(x, 1, M, 4, 8),
  );
  const pruned = M.map((v, i) => (i % 4 === 0 ? v : 0));
  writeWeightMatrix(model, w, pruned);
  const s = model.proto.graph!.sparseInitializer[0];
  assert.equal(Number(s.values!.dims[0]), pruned.filter((v) => v !== 0).length);
  assertClose(
    (await runOrt(model, { x: { type: 'float32', data: x, dims: [1, 8] } })).y as Float32Array,
    denseRef(x, 1, pruned, 4, 8),
  );
});

test('external weights: read lazily, write turns them in-memory, the next save carries the new values', async () => {
  const dir = tempDir();
  try {
    await saveModel(mlpModel(), path.join(dir, 'm.onnx'), { externalData: { sizeThreshold: 16 } });
    const model = await loadModel(path.join(dir, 'm.onnx'));
    const ws = discoverWeights(model, { minElements: 0 });
    assert.deepEqual(
      ws.map((w) => w.location),
      ['external', 'external'],
    );
    const w1 = ws[0];
    const M = readWeightMatrix(model, w1).map((v) => -v);
    writeWeightMatrix(model, w1, M);
    assert.equal(discoverWeights(model, { minElements: 0 })[0].location, 'initializer');
    await saveModel(model, path.join(dir, 'n.onnx'), { externalData: { sizeThreshold: 16 } });
    const again = await loadModel(path.join(dir, 'n.onnx'));
    assert.deepEqual(Array.from(readWeightMatrix(again, discoverWeights(again, { minElements: 0 })[0])), Array.from(M));
    closeModel(model);
    closeModel(again);
  } finally {
    removeDir(dir);
  }
});

test('not compressible: shared, computed at run time, not float, graph-input initializer, too small, K multiple', () => {
  const b = new GraphBuilder();
  const x = b.input('x', 'float32', [1, 8]);
  const shared = b.initializer('Wshared', 'float32', [8, 8], randomFloats(64, 1));
  const a1 = b.node('MatMul', [x, shared], {}, { name: 'use1' });
  const a2 = b.node('MatMul', [a1, shared], {}, { name: 'use2' });
  const scaled = b.node('Mul', [
    b.initializer('Wraw', 'float32', [8, 8], randomFloats(64, 2)),
    b.initializer('s', 'float32', [], [2]),
  ]);
  const a3 = b.node('MatMul', [a2, scaled], {}, { name: 'computed' });
  const asF = b.node('Cast', [b.initializer('Wint', 'int8', [8, 8], new Int8Array(64).fill(3))], { to: 1 });
  const a4 = b.node('MatMul', [a3, asF], {}, { name: 'int' });
  b.input('Wover', 'float32', [8, 8]);
  const a5 = b.node(
    'MatMul',
    [a4, b.initializer('Wover', 'float32', [8, 8], randomFloats(64, 3))],
    {},
    { name: 'over' },
  );
  const a6 = b.node('MatMul', [a5, b.initializer('W9', 'float32', [8, 9], randomFloats(72, 4))], {}, { name: 'k8' });
  b.output(a6, 'float32', [1, 9]);
  const ws = discoverWeights(b.build(), { minElements: 0, multipleOf: 3 });
  const sh = byName(ws, 'Wshared');
  assert.deepEqual([sh.nodes, sh.compressible], [['use1', 'use2'], false]);
  assert.match(sh.reason!, /shared by 2 consumers/);
  const comp = byName(ws, 'Wraw');
  assert.equal(comp.readable, false);
  assert.match(comp.reason!, /computed at run time \(via Mul\)/);
  assert.throws(() => readWeightMatrix(b.build(), comp), { code: 'invalid-argument' });
  const int = byName(ws, 'Wint');
  assert.deepEqual([int.readable, int.compressible, int.dtype], [true, false, 'int8']);
  assert.match(int.reason!, /not float/);
  assert.match(byName(ws, 'Wover').reason!, /graph input/);
  assert.match(byName(ws, 'W9').reason!, /^K=8 not divisible by 3$/);
  assert.match(
    discoverWeights(b.build(), { minElements: 100 }).find((w) => w.name === 'W9')!.reason!,
    /too small \(72 elements < 100\)/,
  );
});

test('bf16 weight behind Cast: read and written bit-exactly as bfloat16', () => {
  const b = new GraphBuilder();
  const x = b.input('x', 'float32', [1, 4]);
  const vals = [1, -2, 0.5, 3.25, 100, -0.125, 7, 8];
  b.output(
    b.node(
      'MatMul',
      [
        x,
        b.node(
          'Cast',
          [
            b.initializer(
              'Wbf',
              'bfloat16',
              [4, 2],
              new Uint16Array(vals.map((v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16)),
            ),
          ],
          { to: 1 },
        ),
      ],
      {},
      { output: 'y' },
    ),
    'float32',
  );
  const model = b.build();
  const w = discoverWeights(model, { minElements: 0 })[0];
  assert.equal(w.dtype, 'bfloat16');
  const M = readWeightMatrix(model, w);
  assert.deepEqual(Array.from(M), [1, 0.5, 100, 7, -2, 3.25, -0.125, 8]);
  const raw = model.proto.graph!.initializer[0].rawData.slice();
  writeWeightMatrix(model, w, M);
  assert.deepEqual(Array.from(model.proto.graph!.initializer[0].rawData), Array.from(raw));
});

test('PP-OCRv4: every Conv weight lives in a Constant node and is found; rec MatMuls too', async () => {
  const det = await loadModel(PPOCR_DET);
  const dw = discoverWeights(det);
  assert.equal(dw.filter((w) => w.op === 'Conv').length, 62);
  assert.ok(dw.every((w) => w.location === 'constant'));
  assert.ok(dw.filter((w) => w.compressible).length >= 40);
  const rec = await loadModel(PPOCR_REC);
  const rw = discoverWeights(rec);
  const mm = rw.filter((w) => w.op === 'MatMul' && w.compressible);
  assert.ok(mm.length >= 8, `${mm.length} MatMul weights`);
  for (const w of rw.filter((x) => x.readable)) assert.equal(readWeightMatrix(rec, w).length, w.N * w.K);
});

test('reads after graph edits see the edited model (the store lookup cache is re-verified)', () => {
  const model = mlpModel();
  const [w1, w2] = discoverWeights(model, { minElements: 0 });
  readWeightMatrix(model, w1);
  // Replace the initializer object under the same name, and move the Constant node.
  const g = model.proto.graph!;
  const i = g.initializer.findIndex((t) => t.name === 'W1');
  g.initializer[i] = makeTensor('W1', 'float32', [16, 32], new Float32Array(512).fill(3));
  assert.ok(readWeightMatrix(model, w1).every((v) => v === 3));
  const c = g.node.findIndex((n) => n.opType === 'Constant');
  g.node.push(...g.node.splice(c, 1));
  assert.equal(readWeightMatrix(model, w2).length, 256);
  g.node.splice(
    g.node.findIndex((n) => n.opType === 'Constant'),
    1,
  );
  assert.throws(() => readWeightMatrix(model, w2), { code: 'not-found' });
});
