// The WebAssembly SIMD kernels of math/nm-scored-simd.ts against the JavaScript they replace (the kernels turned
// off): the same mask bytes, weight bits, Δ bits and counts, on random and adversarial inputs (ties, ±0, equal
// magnitudes of opposite sign, subnormals, scores that overflow or round together, zero factors, NaN/±Inf groups).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { nmMaskScored, pruneNMScored } from '../../../packages/engine/math/nm-scored.js';
import { nmScoredSimdActive, prune4Simd, useNMScoredSimd } from '../../../packages/engine/math/nm-scored-simd.js';
import type { StridedLayout } from '../../../packages/engine/math/sparsity-stored.js';
import { rng } from './rng.js';

after(() => useNMScoredSimd(true));

const bitsOf = (a: Float32Array) => new Int32Array(a.buffer, a.byteOffset, a.length);

/** Adversarial weights: few distinct magnitudes (ties), ±0, sign pairs, subnormals, huge values, optional NaN/±Inf. */
function weights(len: number, seed: number, nonFinite: number): Float32Array {
  const { normal, uniform } = rng(seed);
  const w = new Float32Array(len);
  const pool = [0.5, 1, 0.25, 3e38, 1e-45, 1.4e-40, 1 + 2 ** -23, 1 + 2 ** -22];
  for (let i = 0; i < len; i++) {
    const u = uniform();
    const sign = uniform() < 0.5 ? -1 : 1;
    if (u < 0.08) w[i] = 0;
    else if (u < 0.14) w[i] = -0;
    else if (u < 0.4) w[i] = sign * pool[Math.floor(uniform() * pool.length)];
    else if (u < 0.4 + nonFinite) w[i] = uniform() < 0.5 ? NaN : sign * Infinity;
    else w[i] = normal();
  }
  return w;
}

/** Factors with zeros, ties, values that are not fp32 and ones that make |w|·x overflow or underflow. */
function factors(len: number, seed: number): Float64Array {
  const { uniform } = rng(seed);
  const f = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const u = uniform();
    f[i] = u < 0.1 ? 0 : u < 0.2 ? 1 : u < 0.3 ? 1 / 3 : u < 0.35 ? 1e30 : u < 0.4 ? 1e-30 : Math.sqrt(uniform() * 7);
  }
  return f;
}

function withSimd<R>(on: boolean, fn: () => R): R {
  useNMScoredSimd(on);
  try {
    return fn();
  } finally {
    useNMScoredSimd(true);
  }
}

test('the kernels are available here (Node with WebAssembly SIMD)', () => {
  assert.equal(nmScoredSimdActive(), true);
  // The pruning kernel applies here (−1 where it does not): 8 zeros, half of each group.
  const v = Float32Array.from({ length: 16 }, (_, i) => i + 1);
  assert.equal(
    prune4Simd(v, 1, 1, 4, 2, undefined, new Float32Array(16), () => assert.fail('no NaN here')),
    8,
  );
});

test('nmMaskScored: the kernel makes the JavaScript mask, byte for byte', () => {
  let seed = 1;
  for (const [rows, cols] of [
    [1, 16],
    [3, 48],
    [17, 64],
    [5, 8192],
    [2, 20], // cols not a multiple of 16: the JavaScript
  ])
    for (const nonFinite of [0, 0.02, 0.3])
      for (const withFactor of [true, false])
        for (const n of [1, 2, 3]) {
          const w = weights(rows * cols, seed++, nonFinite);
          const f = withFactor ? factors(cols, seed++) : undefined;
          const js = withSimd(false, () => nmMaskScored(w, rows, cols, n, 4, f));
          const simd = withSimd(true, () => nmMaskScored(w, rows, cols, n, 4, f));
          assert.deepEqual(simd, js, `${rows}×${cols} n=${n} nonFinite=${nonFinite} factor=${withFactor}`);
        }
});

test('nmMaskScored: ties go to the lower index as in the JavaScript (all equal, opposite signs, x = 0)', () => {
  const cols = 32;
  const w = new Float32Array(cols);
  for (let k = 0; k < cols; k++) w[k] = [1, -1, 1, -1, 0, -0, 0, -0, 2, 2, -2, 2][k % 12];
  for (const f of [undefined, new Float64Array(cols).fill(0), Float64Array.from({ length: cols }, (_, k) => k % 3)])
    for (const n of [1, 2, 3]) {
      const js = withSimd(false, () => nmMaskScored(w, 1, cols, n, 4, f));
      assert.deepEqual(
        withSimd(true, () => nmMaskScored(w, 1, cols, n, 4, f)),
        js,
      );
    }
});

function prune(simd: boolean, v0: Float32Array, l: StridedLayout, n: number, f: Float64Array | undefined) {
  const v = v0.slice();
  const delta = new Float32Array(v.length).fill(7);
  const counts = withSimd(simd, () => pruneNMScored(v, l, n, f, delta));
  return { v: bitsOf(v), delta: bitsOf(delta), counts };
}

test('pruneNMScored: the kernel writes the JavaScript weights and Δ, bit for bit, with the same counts', () => {
  let seed = 100;
  const layouts: StridedLayout[] = [
    { outer: 1, groups: 3, m: 4, inner: 4 },
    { outer: 1, groups: 5, m: 4, inner: 36 },
    { outer: 2, groups: 4, m: 4, inner: 12 },
    { outer: 1, groups: 3, m: 4, inner: 4096 }, // slabs larger than a chunk's share
    { outer: 2, groups: 6, m: 4, inner: 2048 },
    { outer: 4, groups: 4, m: 4, inner: 1 }, // Gemm(transB): the JavaScript
    { outer: 1, groups: 3, m: 4, inner: 6 }, // inner not a multiple of 4: the JavaScript
  ];
  for (const l of layouts)
    for (const nonFinite of [0, 0.01, 0.3])
      for (const withFactor of [true, false])
        for (const n of [1, 2, 3]) {
          const len = l.outer * l.groups * 4 * l.inner;
          const w = weights(len, seed++, nonFinite);
          const f = withFactor ? factors(l.groups * 4, seed++) : undefined;
          const js = prune(false, w, l, n, f);
          const simd = prune(true, w, l, n, f);
          const what = `${JSON.stringify(l)} n=${n} nonFinite=${nonFinite} factor=${withFactor}`;
          assert.deepEqual(simd.counts, js.counts, what);
          assert.deepEqual(simd.v, js.v, what);
          assert.deepEqual(simd.delta, js.delta, what);
        }
});

test('pruneNMScored: without Δ the kernel writes the same weights', () => {
  const l: StridedLayout = { outer: 1, groups: 8, m: 4, inner: 64 };
  const w = weights(8 * 4 * 64, 7, 0.01);
  const f = factors(32, 8);
  const a = w.slice();
  const b = w.slice();
  const ca = withSimd(false, () => pruneNMScored(a, l, 2, f));
  const cb = withSimd(true, () => pruneNMScored(b, l, 2, f));
  assert.deepEqual(cb, ca);
  assert.deepEqual(bitsOf(b), bitsOf(a));
});
