import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GemmShapeError,
  gramAccumulate,
  matmul,
  matmulAddInPlace,
  matmulF64,
  matmulInto,
  matmulJs,
  matmulSubtract,
  matmulSubtractF64,
  matmulSubtractInPlace,
  matmulSubtractInPlaceF64,
  gemmExecutionProvider,
  setGemmExecutionProvider,
} from '../../../packages/engine/math/gemm.js';
import { matmulRef, maxAbs, maxAbsDiff, randomF32, rng } from './rng.js';

// Shapes on both sides of the JS-fallback threshold, with odd sizes and degenerate dims.
const shapes: [number, number, number][] = [
  [1, 1, 1],
  [1, 300, 1],
  [3, 5, 7],
  [64, 1, 65],
  [37, 53, 29],
  [130, 67, 90],
  [1, 513, 257],
];

test('matmul (fp32, ORT and fallback) matches a float64 triple loop for every transpose combination', async () => {
  const { normal } = rng(1);
  for (const [m, k, n] of shapes)
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        const a = randomF32(m * k, normal);
        const b = randomF32(k * n, normal);
        const want = matmulRef(a, b, m, k, n, transA, transB);
        const got = await matmul(a, b, m, k, n, { transA, transB });
        assert.equal(got.length, m * n);
        const tol = 1e-5 * Math.sqrt(k) * Math.max(1, maxAbs(want));
        assert.ok(maxAbsDiff(got, want) <= tol, `${m}×${k}×${n} tA=${transA} tB=${transB}`);
        const js = matmulJs(a, b, m, k, n, { transA, transB });
        assert.ok(maxAbsDiff(js, want) <= tol);
      }
});

test('matmulF64 is float64-accurate, and the subtract forms return C − op(A)·op(B)', async () => {
  const { normal } = rng(2);
  for (const [m, k, n] of shapes) {
    const a = Float64Array.from({ length: m * k }, normal);
    const b = Float64Array.from({ length: k * n }, normal);
    const c = Float64Array.from({ length: m * n }, normal);
    const want = matmulRef(a, b, m, k, n, true, false);
    const got = await matmulF64(a, b, m, k, n, { transA: true });
    assert.ok(maxAbsDiff(got, want) <= 1e-12 * Math.max(1, maxAbs(want)) * k);
    const sub = await matmulSubtractF64(c, a, b, m, k, n, { transA: true });
    assert.ok(
      maxAbsDiff(
        sub,
        c.map((v, i) => v - want[i]),
      ) <=
        1e-12 * Math.max(1, maxAbs(want)) * k,
    );
    assert.notEqual(sub, c, 'C must not be modified in place');
    const a32 = Float32Array.from(a);
    const b32 = Float32Array.from(b);
    const c32 = Float32Array.from(c);
    const want32 = matmulRef(a32, b32, m, k, n, true, false);
    const sub32 = await matmulSubtract(c32, a32, b32, m, k, n, { transA: true });
    const tol32 = 1e-5 * Math.sqrt(k) * (1 + maxAbs(want32));
    assert.ok(
      maxAbsDiff(
        sub32,
        Float64Array.from(c32, (v, i) => v - want32[i]),
      ) <= tol32,
    );
  }
});

test('matmul accepts subarray views (offset into a larger buffer)', async () => {
  const { normal } = rng(3);
  const big = randomF32(10_000, normal);
  const a = big.subarray(17, 17 + 40 * 50);
  const b = big.subarray(3001, 3001 + 50 * 60);
  const got = await matmul(a, b, 40, 50, 60);
  assert.ok(maxAbsDiff(got, matmulRef(a, b, 40, 50, 60)) < 1e-4);
});

test('zero-size dimensions and bad shapes', async () => {
  assert.equal((await matmul(new Float32Array(0), new Float32Array(0), 0, 5, 0)).length, 0);
  const z = await matmul(new Float32Array(0), new Float32Array(0), 3, 0, 4);
  assert.deepEqual([...z], new Array(12).fill(0));
  await assert.rejects(matmul(new Float32Array(5), new Float32Array(6), 2, 3, 2), GemmShapeError);
  await assert.rejects(matmul(new Float32Array(6), new Float32Array(6), 2, 3, -2), GemmShapeError);
  await assert.rejects(matmul(new Float32Array(6), new Float32Array(6), 2, 3, 2.5), GemmShapeError);
});

test('gramAccumulate over batches equals one pass and a float64 brute force', async () => {
  const { normal } = rng(4);
  const tokens = 301;
  const K = 70;
  const x = randomF32(tokens * K, normal);
  const onePass = new Float64Array(K * K);
  await gramAccumulate(x, tokens, K, onePass);
  const batched = new Float64Array(K * K);
  for (const [t0, t1] of [
    [0, 1],
    [1, 100],
    [100, 101],
    [101, 301],
  ])
    await gramAccumulate(x.subarray(t0 * K, t1 * K), t1 - t0, K, batched);
  const want = matmulRef(x, x, K, tokens, K, true, false);
  const tol = 1e-5 * maxAbs(want);
  assert.ok(maxAbsDiff(onePass, want) < tol);
  assert.ok(maxAbsDiff(batched, want) < tol);
  assert.ok(maxAbsDiff(batched, onePass) < tol);
});

test('matmulSubtractInPlace writes C − op(A)·op(B) into C (a subarray view) and nothing outside it', async () => {
  const { normal } = rng(6);
  for (const [m, k, n, transA] of [
    [300, 64, 257, true],
    [5, 3, 4, false], // JS fallback path
    [0, 3, 4, false],
  ] as const) {
    const a = randomF32(m * k, normal);
    const b = randomF32(k * n, normal);
    const big = randomF32(m * n + 40, normal);
    const before = big.slice();
    const c = big.subarray(17, 17 + m * n);
    await matmulSubtractInPlace(c, a, b, m, k, n, { transA });
    const prod = matmulRef(a, b, m, k, n, transA, false);
    const want = Float64Array.from(prod, (p, i) => before[17 + i] - p);
    assert.ok(maxAbsDiff(c, want) <= 1e-5 * Math.sqrt(k) * (1 + maxAbs(prod)), `${m}×${k}×${n}`);
    for (let i = 0; i < 17; i++) assert.equal(big[i], before[i]);
    for (let i = 17 + m * n; i < big.length; i++) assert.equal(big[i], before[i]);
    const c64 = Float64Array.from(before.subarray(17, 17 + m * n));
    await matmulSubtractInPlaceF64(c64, Float64Array.from(a), Float64Array.from(b), m, k, n, { transA });
    assert.ok(maxAbsDiff(c64, want) <= 1e-5 * Math.sqrt(k) * (1 + maxAbs(prod)));
  }
});

test('gramAccumulate on a wide input (symmetric panel split) equals the plain product', async () => {
  const { normal } = rng(7);
  const tokens = 24;
  const K = 2200; // three panels of 1024, the last one narrow
  const x = randomF32(tokens * K, normal);
  const acc = new Float64Array(K * K).fill(0.5);
  await gramAccumulate(x, tokens, K, acc);
  const want = await matmul(x, x, K, tokens, K, { transA: true });
  const scale = maxAbs(want);
  let worst = 0;
  for (let i = 0; i < acc.length; i++) worst = Math.max(worst, Math.abs(acc[i] - 0.5 - want[i]));
  assert.ok(worst < 1e-4 * scale, `max diff ${worst}`);
  for (let i = 0; i < K; i += 97)
    for (let j = 0; j < K; j += 89) assert.ok(Math.abs(acc[i * K + j] - acc[j * K + i]) < 1e-4 * scale);
});

test('matmulInto / matmulSubtract with out / matmulAddInPlace write into the given buffer (ORT and fallback)', async () => {
  const { normal } = rng(8);
  for (const [m, k, n] of shapes)
    for (const [transA, transB] of [
      [false, false],
      [true, true],
    ]) {
      const a = randomF32(m * k, normal);
      const b = randomF32(k * n, normal);
      const c = randomF32(m * n, normal);
      const prod = matmulRef(a, b, m, k, n, transA, transB);
      const tol = 1e-5 * Math.sqrt(k) * (1 + maxAbs(prod));
      const out = new Float32Array(m * n).fill(7);
      assert.equal(await matmulInto(out, a, b, m, k, n, { transA, transB }), out);
      assert.ok(maxAbsDiff(out, prod) <= tol, `into ${m}×${k}×${n}`);
      const out2 = new Float32Array(m * n).fill(7);
      const cBefore = c.slice();
      assert.equal(await matmulSubtract(c, a, b, m, k, n, { transA, transB }, out2), out2);
      assert.ok(
        maxAbsDiff(
          out2,
          Float64Array.from(prod, (p, i) => c[i] - p),
        ) <= tol,
        `subtract ${m}×${k}×${n}`,
      );
      assert.deepEqual(c, cBefore, 'C is not modified when out is another buffer');
      await matmulAddInPlace(c, a, b, m, k, n, { transA, transB });
      assert.ok(
        maxAbsDiff(
          c,
          Float64Array.from(prod, (p, i) => cBefore[i] + p),
        ) <= tol,
        `add ${m}×${k}×${n}`,
      );
    }
  await assert.rejects(matmulInto(new Float32Array(5), new Float32Array(6), new Float32Array(6), 2, 3, 2), /out/);
});

test('the GEMMs on the job EP: CUDA where available (same results as CPU), else a CPU fallback with the reason', async (t) => {
  const r = rng(91);
  const a = randomF32(300 * 200, r.uniform);
  const b = randomF32(200 * 170, r.uniform);
  const a64 = Float64Array.from(a);
  const b64 = Float64Array.from(b);
  const cpu = await matmul(a, b, 300, 200, 170);
  const cpu64 = await matmulF64(a64, b64, 300, 200, 170);
  try {
    const set = await setGemmExecutionProvider('cuda');
    assert.deepEqual(gemmExecutionProvider(), set);
    if (set.executionProvider === 'cpu') {
      // CPU-only build (this machine): the fallback says why, and the results are the CPU ones, bit for bit.
      assert.match(set.fallback!, /^cuda: /);
      assert.deepEqual(await matmul(a, b, 300, 200, 170), cpu);
      t.skip(`CUDA path not exercised: ${set.fallback}`);
      return;
    }
    const gpu = await matmul(a, b, 300, 200, 170);
    assert.ok(maxAbsDiff(gpu, cpu) < 1e-4 * maxAbs(cpu), 'fp32 on CUDA');
    const gpu64 = await matmulF64(a64, b64, 300, 200, 170);
    assert.ok(maxAbsDiff(gpu64, cpu64) < 1e-10 * maxAbs(cpu64), 'float64 on CUDA');
  } finally {
    assert.deepEqual(await setGemmExecutionProvider('cpu'), { executionProvider: 'cpu' });
  }
});
