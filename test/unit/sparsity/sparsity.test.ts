// The `sparsity` method through runRecipe: N:M on every output checked independently on the stored tensors, skips
// with reasons, calibration rules, the report's shape, abort and progress.
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../../packages/engine/job.js';
import { convNet, mlp, randn, tokenData, transformer } from './models.js';
import { checkOutput, run, storedTensor, tempDir, writeCase } from './helpers.js';
import { loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { encodeNpz } from '../../../packages/engine/data/npz.js';
import { PPOCR_DIR } from '../../helpers/onnx-fixtures.js';
import { tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

const convData = { x: { dtype: 'float32' as const, dims: [12, 8, 12, 12], data: randn(12 * 8 * 144, 9) } };
const mlpData = { x: { dtype: 'float32' as const, dims: [40, 16], data: randn(40 * 16, 2) } };

test('N:M patterns on MatMul, Gemm(transB) and Conv (Constant-node and grouped) hold on every stored output', async () => {
  const conv = await writeCase(dir, 'conv', convNet(), convData);
  const m = await writeCase(dir, 'mlp', mlp(), mlpData);
  for (const [pattern, n, mm] of [
    ['2:4', 2, 4],
    ['1:4', 1, 4],
    ['4:8', 4, 8],
  ] as const) {
    for (const criterion of ['magnitude', 'wanda', 'sparsegpt']) {
      const out = join(dir, `conv-${pattern.replace(':', '-')}-${criterion}`);
      const r = await run({ method: 'sparsity', pattern, criterion }, conv.modelPath, out, {
        calibrationPath: conv.dataPath,
      });
      const done = r.report.layers.filter((l) => !l.skipped).map((l) => l.name);
      assert.deepEqual(done.sort(), ['c1_w', 'c2_w'], `${pattern} ${criterion}`);
      const check = await checkOutput(
        join(out, 'model.onnx'),
        done.map((name) => ({ name, layout: 'conv' as const })),
        n,
        mm,
      );
      for (const [name, c] of Object.entries(check)) {
        assert.equal(c.violations, 0, `${name} ${pattern} ${criterion}`);
        assert.ok(c.zeros >= 1 - n / mm - 1e-9, `${name} sparsity ${c.zeros}`);
      }
      for (const l of r.report.layers.filter((x) => !x.skipped)) assert.equal(l.patternVerified, true);
    }
    const out = join(dir, `mlp-${pattern.replace(':', '-')}`);
    const r = await run({ method: 'sparsity', pattern, criterion: 'sparsegpt' }, m.modelPath, out, {
      calibrationPath: m.dataPath,
    });
    const check = await checkOutput(
      join(out, 'model.onnx'),
      [
        { name: 'w1', layout: 'KN' },
        { name: 'w2', layout: 'NK' },
      ],
      n,
      mm,
    );
    assert.deepEqual(
      Object.values(check).map((c) => c.violations),
      [0, 0],
    );
    assert.ok(r.report.layers.find((l) => l.name === 'head')?.skipped?.includes('too small'));
  }
});

test('layers that cannot take the pattern are skipped with the reason; include/exclude/opTypes select layers', async () => {
  const conv = await writeCase(dir, 'conv2', convNet(), convData);
  // No layer can take 2:16: the job fails (nothing would change) and the error gives the reason per layer.
  await assert.rejects(
    run({ method: 'sparsity', pattern: '2:16' }, conv.modelPath, join(dir, 'conv-2-16')),
    (e: Error & { code?: string }) =>
      e.code === 'no-layer-selected' &&
      // The reasons grouped: each once, with the layers it applies to.
      /Conv input channels per group \(8\) not a multiple of M=16.* — 2 layers: "c1_w", "c2_w"/.test(e.message),
  );
  const m = await writeCase(dir, 'mlp2', mlp(), mlpData);
  const sel = await run(
    { method: 'sparsity', pattern: '2:4', include: ['w*'], exclude: ['fc2'] },
    m.modelPath,
    join(dir, 'mlp-sel'),
  );
  const rows = Object.fromEntries(sel.report.layers.map((l) => [l.name, l.skipped ?? 'compressed']));
  assert.equal(rows.w1, 'compressed');
  assert.match(rows.w2, /excluded by "fc2"/);
  assert.match(rows.head, /not matched by include/);
  const ops = await run({ method: 'sparsity', pattern: '2:4', opTypes: ['Gemm'] }, m.modelPath, join(dir, 'mlp-ops'));
  assert.match(ops.report.layers.find((l) => l.name === 'w1')!.skipped!, /op MatMul not in opTypes/);
});

test('unstructured sparsity reaches the asked fraction', async () => {
  const m = await writeCase(dir, 'mlp3', mlp(), mlpData);
  for (const criterion of ['magnitude', 'wanda', 'sparsegpt']) {
    const r = await run({ method: 'sparsity', sparsity: 0.7, criterion }, m.modelPath, join(dir, `u-${criterion}`), {
      calibrationPath: m.dataPath,
    });
    for (const l of r.report.layers.filter((x) => !x.skipped)) {
      assert.ok(Math.abs(l.sparsity! - 0.7) < 0.02, `${criterion} ${l.name}: ${l.sparsity}`);
      assert.equal(l.pattern, 'unstructured 70.0%');
    }
  }
});

test('calibration: wanda without data is refused; random data only when asked, and the report says so', async () => {
  const m = await writeCase(dir, 'mlp4', mlp(), mlpData);
  await assert.rejects(
    run({ method: 'sparsity', pattern: '2:4', criterion: 'wanda' }, m.modelPath, join(dir, 'no-cal')),
    (e: unknown) => e instanceof InputError && e.code === 'calibration-required' && /calibration/.test(e.message),
  );
  const r = await run(
    { method: 'sparsity', pattern: '2:4', criterion: 'wanda', calibration: { random: true, samples: 16, seed: 1 } },
    m.modelPath,
    join(dir, 'random-cal'),
  );
  const cal = r.report.calibration as { random: boolean; samples: number; source: string };
  assert.equal(cal.random, true);
  assert.equal(cal.samples, 16);
  assert.ok(r.report.warnings.some((w) => /random data/.test(w)));
  // A mismatching calibration file fails with a DatasetError naming the problem.
  const bad = await writeCase(dir, 'mlp5', mlp(), {
    x: { dtype: 'float32', dims: [4, 15], data: new Float32Array(60) },
  });
  await assert.rejects(
    run({ method: 'sparsity', criterion: 'wanda' }, m.modelPath, join(dir, 'bad-cal'), {
      calibrationPath: bad.dataPath,
    }),
    (e: unknown) =>
      (e as Error).name === 'DatasetError' && /axis 1 is 15, the model fixes it at 16/.test((e as Error).message),
  );
});

test('the report: layers, quality vs dense with LM perplexity, sizes, ORT version and EP, report.json on disk', async () => {
  const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(24) });
  const evalCase = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(8, undefined, 99) });
  const progress: number[] = [];
  const r = await run(
    { method: 'sparsity', pattern: '2:4', criterion: 'wanda', exclude: ['lm_head'] },
    lm.modelPath,
    join(dir, 'lm-out'),
    { calibrationPath: lm.dataPath, evalPath: evalCase.dataPath },
    { onProgress: (p) => progress.push(p.fraction), executionProviders: ['cpu'] },
  );
  const rep = r.report;
  assert.equal(rep.method, 'sparsity');
  assert.equal(rep.onnxruntime.executionProvider, 'cpu');
  assert.match(rep.onnxruntime.version, /^\d+\.\d+/);
  const q = rep.quality as Record<string, unknown> & {
    dense: Record<string, number>;
    compressed: Record<string, number>;
  };
  assert.equal(q.data, 'evaluation');
  assert.equal(q.task, 'lm');
  assert.equal(q.targets, 'shifted-inputs');
  assert.equal(q.samples, 8);
  for (const k of ['relativeError', 'cosineSimilarity', 'top1Agreement']) assert.equal(typeof q[k], 'number', k);
  assert.ok(q.dense.perplexity > 1 && q.compressed.perplexity > 1);
  assert.ok(Math.abs(q.dense.bitsPerToken - Math.log2(q.dense.perplexity)) < 1e-9);
  const compressed = rep.layers.filter((l) => !l.skipped);
  assert.equal(compressed.length, 12);
  for (const l of compressed) {
    assert.equal(l.pattern, '2:4');
    assert.equal(l.patternVerified, true);
    assert.equal(l.sparsity, 0.5);
    assert.ok(typeof l.relError === 'number' && l.relError > 0 && l.relError < 1, `${l.name} ${l.relError}`);
    assert.ok(l.seconds >= 0);
  }
  assert.match(rep.layers.find((l) => l.name === 'lm_head')!.skipped!, /excluded/);
  assert.ok(rep.sizes.inputBytes > 0 && rep.sizes.outputBytes > 0);
  assert.ok((rep.sizes.nonZeros as number) < (rep.sizes.parameters as number));
  assert.match(String(rep.expectedSpeedup), /none from ONNX Runtime/);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1], 'progress is monotone');
  assert.equal(progress[progress.length - 1], 1);
  const onDisk = JSON.parse(readFileSync(join(dir, 'lm-out', 'report.json'), 'utf8'));
  assert.equal(onDisk.layers.length, rep.layers.length);
  assert.deepEqual(
    r.artifacts.map((a) => a.name),
    ['model.onnx', 'report.json'],
  );
});

test('abort stops the job with an AbortError', async () => {
  const lm = await writeCase(dir, 'lm2', transformer(), { ids: tokenData(16) });
  const ac = new AbortController();
  await assert.rejects(
    run(
      { method: 'sparsity', pattern: '2:4', criterion: 'sparsegpt' },
      lm.modelPath,
      join(dir, 'aborted'),
      { calibrationPath: lm.dataPath },
      { signal: ac.signal, onProgress: (p) => p.layer?.index === 2 && ac.abort() },
    ),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
});

test('magnitude N:M without calibration (stored-layout fast path) writes exactly what the canonical path writes', async () => {
  const conv = await writeCase(dir, 'conv-fast', convNet(), convData);
  const m = await writeCase(dir, 'mlp-fast', mlp(), mlpData);
  for (const [c, names] of [
    [conv, ['c1_w', 'c2_w']],
    [m, ['w1', 'w2']],
  ] as const) {
    for (const pattern of ['2:4', '1:4', '4:8']) {
      const fast = join(dir, `fast-${pattern.replace(':', '-')}-${names[0]}`);
      const slow = join(dir, `slow-${pattern.replace(':', '-')}-${names[0]}`);
      const rf = await run({ method: 'sparsity', pattern }, c.modelPath, fast);
      // With calibration data the scored stored-layout path (MatMul/Gemm) or the canonical one (Conv) runs: it
      // reports the layer error.
      const rs = await run({ method: 'sparsity', pattern }, c.modelPath, slow, { calibrationPath: c.dataPath });
      assert.ok(rf.report.layers.filter((l) => !l.skipped).every((l) => l.relError === null));
      assert.ok(rs.report.layers.filter((l) => !l.skipped).every((l) => typeof l.relError === 'number'));
      const a = await loadModel(join(fast, 'model.onnx'));
      const b = await loadModel(join(slow, 'model.onnx'));
      for (const name of names) {
        assert.deepEqual(
          tensorToFloat32(a, storedTensor(a, name)!),
          tensorToFloat32(b, storedTensor(b, name)!),
          `${name} ${pattern}`,
        );
      }
    }
  }
});

test('NaN/Inf weights are named in the warnings; SparseGPT refuses them with a clear error', async () => {
  const model = mlp();
  const w1 = model.proto.graph!.initializer.find((t) => t.name === 'w1')!;
  const v = tensorToFloat32(model, w1);
  v[5] = NaN;
  v[77] = Infinity;
  w1.rawData = new Uint8Array(v.buffer.slice(0));
  const c = await writeCase(dir, 'mlp-nan', model, mlpData);
  const r = await run({ method: 'sparsity', pattern: '2:4' }, c.modelPath, join(dir, 'nan-out'));
  assert.ok(
    r.report.warnings.some((x) => /^w1: 2 of 1024 weights are NaN or infinite/.test(x)),
    r.report.warnings.join('|'),
  );
  const out = await checkOutput(join(dir, 'nan-out', 'model.onnx'), [{ name: 'w1', layout: 'KN' }], 2, 4);
  assert.equal(out.w1.violations, 0);
  await assert.rejects(
    run({ method: 'sparsity', pattern: '2:4', criterion: 'sparsegpt' }, c.modelPath, join(dir, 'nan-sgpt'), {
      calibrationPath: c.dataPath,
    }),
    (e: unknown) => e instanceof InputError && e.code === 'non-finite-weights',
  );
});

test('weights in external data are pruned (both paths) and written to a side file when asked', async () => {
  const src = join(dir, 'ext');
  mkdirSync(src, { recursive: true });
  const modelPath = join(src, 'mlp.onnx');
  await saveModel(mlp(), modelPath, { externalData: { sizeThreshold: 0 } });
  const data = join(src, 'x.npz');
  writeFileSync(data, encodeNpz(mlpData));
  for (const withCalibration of [false, true]) {
    const out = join(dir, `ext-out-${withCalibration}`);
    const r = await run(
      { method: 'sparsity', pattern: '2:4', externalData: true },
      modelPath,
      out,
      withCalibration ? { calibrationPath: data } : {},
    );
    assert.deepEqual(
      r.artifacts.map((a) => a.name),
      ['model.onnx', 'model.onnx.data', 'report.json'],
    );
    const check = await checkOutput(
      join(out, 'model.onnx'),
      [
        { name: 'w1', layout: 'KN' },
        { name: 'w2', layout: 'NK' },
      ],
      2,
      4,
    );
    assert.deepEqual(
      Object.values(check).map((c) => [c.violations, c.zeros]),
      [
        [0, 0.5],
        [0, 0.5],
      ],
    );
  }
});

test('SparseGPT with an M that does not divide 128 (1:3, 2:6) runs with its default block and holds the pattern', async () => {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['batch', 48]);
  b.initializer('w', 'float32', [48, 64], randn(48 * 64, 5, 0.3));
  b.node('MatMul', ['x', 'w'], {}, { name: 'fc', output: 'y' });
  b.output('y', 'float32', ['batch', 64]);
  const c = await writeCase(dir, 'k24', b.build(), {
    x: { dtype: 'float32', dims: [32, 48], data: randn(32 * 48, 6) },
  });
  for (const [pattern, n, m] of [
    ['1:3', 1, 3],
    ['2:6', 2, 6],
  ] as const) {
    const out = join(dir, `k24-${pattern.replace(':', '-')}`);
    const r = await run({ method: 'sparsity', pattern, criterion: 'sparsegpt' }, c.modelPath, out, {
      calibrationPath: c.dataPath,
    });
    const check = await checkOutput(join(out, 'model.onnx'), [{ name: 'w', layout: 'KN' }], n, m);
    assert.equal(check.w.violations, 0);
    assert.equal(r.report.layers.find((l) => l.name === 'w')?.patternVerified, true);
  }
});

test('sparsegpt on a MatMul weight in its stored layout: layer error equals ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ of the written weights', async () => {
  const [T, K, N] = [96, 64, 40];
  const b = new GraphBuilder();
  b.input('x', 'float32', ['batch', K]);
  const w = randn(K * N, 11, 0.3); // stored [K][N]
  b.initializer('w', 'float32', [K, N], w);
  b.node('MatMul', ['x', 'w'], {}, { name: 'fc', output: 'y' });
  b.output('y', 'float32', ['batch', N]);
  const x = randn(T * K, 12);
  for (let t = 0; t < T; t++) x[t * K + 5] = 0; // a dead input
  const c = await writeCase(dir, 'sgpt-stored', b.build(), { x: { dtype: 'float32', dims: [T, K], data: x } });
  for (const recipe of [
    { method: 'sparsity' as const, pattern: '2:4', criterion: 'sparsegpt' as const },
    { method: 'sparsity' as const, sparsity: 0.6, criterion: 'sparsegpt' as const, blockSize: 32 },
  ]) {
    const out = join(dir, `sgpt-stored-${recipe.pattern ? 'nm' : 'u'}`);
    const r = await run(recipe, c.modelPath, out, { calibrationPath: c.dataPath });
    const model = await loadModel(join(out, 'model.onnx'));
    const wHat = tensorToFloat32(model, storedTensor(model, 'w')!);
    let num = 0;
    let den = 0;
    for (let t = 0; t < T; t++)
      for (let n = 0; n < N; n++) {
        let y = 0;
        let d = 0;
        for (let k = 0; k < K; k++) {
          y += x[t * K + k] * w[k * N + n];
          d += x[t * K + k] * (w[k * N + n] - wHat[k * N + n]);
        }
        num += d * d;
        den += y * y;
      }
    const layer = r.report.layers.find((l) => l.name === 'w')!;
    const want = Math.sqrt(num / den);
    assert.ok(
      Math.abs(layer.relError! - want) < 1e-4 * want,
      `${JSON.stringify(recipe)}: ${layer.relError} vs ${want}`,
    );
    for (let n = 0; n < N; n++) assert.equal(wHat[5 * N + n], 0);
    if (recipe.pattern) assert.equal(layer.patternVerified, true);
    assert.ok(Math.abs(layer.sparsity! - (recipe.pattern ? 0.5 : 0.6)) < 0.02, String(layer.sparsity));
  }
});

test('sparsegpt over 3 calibration batches with the denominator from the pass (PyTorch-style names): each layer error equals ‖X(W−Ŵ)‖/‖X·W‖ over every row; the LM head past the pass gets its own', async () => {
  const [T, K, H, V] = [96, 48, 64, 80];
  const b = new GraphBuilder();
  b.input('input', 'float32', ['batch', K]);
  const w1 = randn(K * H, 31, 0.3); // stored [K][H]
  const w2 = randn(H * K, 32, 0.3);
  const w3 = randn(K * V, 33, 0.3);
  b.initializer('onnx::MatMul_201', 'float32', [K, H], w1);
  b.initializer('onnx::MatMul_202', 'float32', [H, K], w2);
  b.initializer('onnx::MatMul_203', 'float32', [K, V], w3);
  const mm = (x: string, w: string, path: string) =>
    b.node('MatMul', [x, w], {}, { name: `${path}/MatMul`, output: `${path}/MatMul_output_0` });
  const u = b.node('Relu', [mm('input', 'onnx::MatMul_201', '/model/layers.0/mlp/up_proj')]);
  const d = b.node('Tanh', [mm(u, 'onnx::MatMul_202', '/model/layers.0/mlp/down_proj')]);
  b.node('MatMul', [d, 'onnx::MatMul_203'], {}, { name: '/lm_head/MatMul', output: 'logits' });
  b.output('logits', 'float32', ['batch', V]);
  const x = randn(T * K, 34);
  const c = await writeCase(dir, 'sgpt-trace', b.build(), { input: { dtype: 'float32', dims: [T, K], data: x } });
  const out = join(dir, 'sgpt-trace-out');
  // One pass (which may fetch the model's output, running the head anyway), and two under a Hessian cap: the head's
  // input alone in the second, cut to what its reductions need, so the head's MatMul does not run there.
  for (const maxHessianBytes of [1 << 24, (K * K + H * H) * 8]) {
    const recipe = {
      method: 'sparsity',
      pattern: '2:4',
      criterion: 'sparsegpt',
      calibration: { samples: T, batchSize: 32, maxHessianBytes },
    };
    const res = await run(recipe, c.modelPath, `${out}-${maxHessianBytes}`, { calibrationPath: c.dataPath });
    assert.equal((res.report.calibration as { passes?: number }).passes, maxHessianBytes === 1 << 24 ? 1 : 2);
    const model = await loadModel(join(`${out}-${maxHessianBytes}`, 'model.onnx'));
    // The dense activations in float64: up's input x, down's input relu(x·W1), the head's input tanh(·W2).
    const layer = (inputs: Float64Array[], w: Float32Array, k: number, n: number) =>
      inputs.map((xr) =>
        Float64Array.from({ length: n }, (_, j) => {
          let y = 0;
          for (let i = 0; i < k; i++) y += xr[i] * w[i * n + j];
          return y;
        }),
      );
    const xs = Array.from({ length: T }, (_, t) => Float64Array.from(x.subarray(t * K, (t + 1) * K)));
    const hs = layer(xs, w1, K, H).map((r) => r.map((v) => Math.max(0, v)));
    const ds = layer(hs, w2, H, K).map((r) => r.map(Math.tanh));
    for (const [name, w, inputs, k, n] of [
      ['onnx::MatMul_201', w1, xs, K, H],
      ['onnx::MatMul_202', w2, hs, H, K],
      ['onnx::MatMul_203', w3, ds, K, V],
    ] as const) {
      const wHat = tensorToFloat32(model, storedTensor(model, name)!);
      const delta = w.map((v, i) => v - wHat[i]);
      let num = 0;
      let den = 0;
      const ys = layer(inputs, w, k, n);
      const es = layer(inputs, delta, k, n);
      for (let t = 0; t < T; t++)
        for (let j = 0; j < n; j++) {
          den += ys[t][j] ** 2;
          num += es[t][j] ** 2;
        }
      const want = Math.sqrt(num / den);
      const row = res.report.layers.find((l) => l.name === name)!;
      assert.ok(row && Math.abs(row.relError! - want) < 1e-4 * want, `${name}: ${row?.relError} vs ${want}`);
    }
  }
});

test('wanda in the stored layout: each layer error equals ‖X_s(W−Ŵ)‖/‖X_s·W‖ on the sampled rows (every 3rd of 600), its reference reduced in the calibration pass', async () => {
  const [T, K, H, N] = [600, 48, 64, 32];
  const b = new GraphBuilder();
  b.input('x', 'float32', ['batch', K]);
  const w1 = randn(K * H, 21, 0.3); // stored [K][H]
  const w2 = randn(H * N, 22, 0.3); // stored [H][N]
  b.initializer('/model/layers.0/mlp/up_proj/MatMul_W', 'float32', [K, H], w1);
  b.initializer('onnx::MatMul_123', 'float32', [H, N], w2);
  const h = b.node(
    'MatMul',
    ['x', '/model/layers.0/mlp/up_proj/MatMul_W'],
    {},
    { name: '/model/layers.0/mlp/up_proj/MatMul' },
  );
  const r = b.node('Relu', [h]);
  b.node('MatMul', [r, 'onnx::MatMul_123'], {}, { name: '/model/layers.0/mlp/down_proj/MatMul', output: 'y' });
  b.output('y', 'float32', ['batch', N]);
  const x = randn(T * K, 23);
  const c = await writeCase(dir, 'wanda-rows', b.build(), { x: { dtype: 'float32', dims: [T, K], data: x } });
  const out = join(dir, 'wanda-rows-out');
  const recipe = { method: 'sparsity', pattern: '2:4', criterion: 'wanda', calibration: { samples: T, batchSize: T } };
  const res = await run(recipe, c.modelPath, out, { calibrationPath: c.dataPath });
  const model = await loadModel(join(out, 'model.onnx'));
  // Rows 0, 3, …, 597 of the one batch (ERROR_SAMPLE_ROWS = 256: every ⌈600/256⌉-th), through each layer in float64.
  const rows = Array.from({ length: T / 3 }, (_, i) => 3 * i);
  const hidden = rows.map((t) =>
    Array.from({ length: H }, (_, j) => {
      let v = 0;
      for (let k = 0; k < K; k++) v += x[t * K + k] * w1[k * H + j];
      return Math.max(0, v);
    }),
  );
  const expected = (name: string, w: Float32Array, inputs: ArrayLike<number>[], k: number, n: number) => {
    const wHat = tensorToFloat32(model, storedTensor(model, name)!);
    let num = 0;
    let den = 0;
    for (const xr of inputs)
      for (let j = 0; j < n; j++) {
        let y = 0;
        let d = 0;
        for (let i = 0; i < k; i++) {
          y += xr[i] * w[i * n + j];
          d += xr[i] * (w[i * n + j] - wHat[i * n + j]);
        }
        num += d * d;
        den += y * y;
      }
    return Math.sqrt(num / den);
  };
  const xRows = rows.map((t) => x.subarray(t * K, (t + 1) * K));
  for (const [name, want] of [
    ['/model/layers.0/mlp/up_proj/MatMul_W', expected('/model/layers.0/mlp/up_proj/MatMul_W', w1, xRows, K, H)],
    ['onnx::MatMul_123', expected('onnx::MatMul_123', w2, hidden, H, N)],
  ] as const) {
    const layer = res.report.layers.find((l) => l.name === name)!;
    assert.ok(Math.abs(layer.relError! - want) < 1e-4 * want, `${name}: ${layer.relError} vs ${want}`);
  }
});

test('sparsegpt without `sequential`: every calibration pass describes the dense model, so the Hessian cap changes how many passes run and nothing else', async () => {
  const model = transformer();
  const c = await writeCase(dir, 'passes-lm', model, { ids: tokenData(8) });
  const recipe = (maxHessianBytes: number) => ({
    method: 'sparsity',
    pattern: '2:4',
    criterion: 'sparsegpt',
    calibration: { maxHessianBytes },
  });
  const one = await run(recipe(1 << 26), c.modelPath, join(dir, 'passes-one'), { calibrationPath: c.dataPath });
  // The largest Hessian (the MLP's second layer, K = 256) alone: the K = 64 ones share the first pass, each K = 256
  // one gets its own, after the layers before it were pruned.
  const capped = await run(recipe(256 * 256 * 8), c.modelPath, join(dir, 'passes-capped'), {
    calibrationPath: c.dataPath,
  });
  assert.equal((one.report.calibration as { passes?: number }).passes, 1);
  assert.equal((capped.report.calibration as { passes?: number }).passes, 3);
  // Equal to fp32 rounding (the later passes' graphs are cut to what they need, which ONNX Runtime may fuse
  // differently); statistics taken on the partly pruned model instead moved these errors by 0.7 % and 4 %.
  const [a, b] = [capped, one].map((r) => r.report.layers.map((l) => l.relError ?? 0));
  a.forEach((e, i) => assert.ok(Math.abs(e - b[i]) <= 1e-4 * b[i], `layer ${i}: ${e} vs ${b[i]}`));
});

test('sparsegpt on PP-OCRv4 det (Conv layers, FPN skips): 7 calibration passes from their cuts give what 1 pass gives', async () => {
  const modelPath = join(PPOCR_DIR, 'ch_PP-OCRv4_det_infer.onnx');
  const recipe = (maxHessianBytes: number) => ({
    method: 'sparsity',
    pattern: '2:4',
    criterion: 'sparsegpt',
    calibration: { random: true, samples: 4, maxHessianBytes },
  });
  const one = await run(recipe(2 ** 30), modelPath, join(dir, 'det-one'));
  const capped = await run(recipe(8e6), modelPath, join(dir, 'det-capped')); // the largest Hessian is 5.97 MB
  assert.equal((one.report.calibration as { passes?: number }).passes, 1);
  assert.equal((capped.report.calibration as { passes?: number }).passes, 7);
  const [a, b] = [capped, one].map((r) => r.report.layers.flatMap((l) => (l.relError == null ? [] : [l.relError])));
  assert.equal(a.length, 35, 'layers with a calibrated error');
  a.forEach((e, i) => assert.ok(Math.abs(e - b[i]) <= 1e-4 * b[i], `layer ${i}: ${e} vs ${b[i]}`));
});
