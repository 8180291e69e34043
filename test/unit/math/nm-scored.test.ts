// N:M by score in the stored layout (math/nm-scored.ts) against the canonical path it replaces for Wanda and
// magnitude: nmMask(wandaScores | magnitudeScores) + applyMask on the [N][K] matrix, Δ = W − Ŵ, and the layer error
// of outputErrorOnRows (float64 from the activations as the reference of both).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyMask, MaskInputError, nmMask } from '../../../packages/engine/math/nm.js';
import { magnitudeScores, wandaScores } from '../../../packages/engine/math/wanda.js';
import { nmMaskScored, pruneNMScored } from '../../../packages/engine/math/nm-scored.js';
import { errorRatio, outputErrorOnRows, outputSquaresOnRows } from '../../../packages/engine/math/relerr.js';
import { countNMViolationsStrided, type StridedLayout } from '../../../packages/engine/math/sparsity-stored.js';
import { llmLikeActivations, outputErrorF64, randomF32, rng } from './rng.js';

/** Stored → canonical [N][K]: MatMul stores [K][N], Gemm(transB) stores [N][K]. */
function canonical(v: Float32Array, N: number, K: number, transB: boolean): Float32Array {
  if (transB) return v.slice();
  const out = new Float32Array(N * K);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) out[n * K + k] = v[k * N + n];
  return out;
}

function layoutOf(N: number, K: number, m: number, transB: boolean): StridedLayout {
  return transB ? { outer: N, groups: K / m, m, inner: 1 } : { outer: 1, groups: K / m, m, inner: N };
}

/** Weights with ties (repeated magnitudes, ±0) and, when asked, NaN and ±Inf. */
function weights(len: number, seed: number, nonFinite: boolean): Float32Array {
  const { normal, uniform } = rng(seed);
  const w = randomF32(len, normal);
  for (let i = 0; i < len; i++) {
    const u = uniform();
    if (u < 0.05) w[i] = 0;
    else if (u < 0.08) w[i] = -0;
    else if (u < 0.15) w[i] = Math.sign(w[i]) * 0.5;
    else if (nonFinite && u < 0.17) w[i] = NaN;
    else if (nonFinite && u < 0.19) w[i] = u < 0.18 ? Infinity : -Infinity;
  }
  return w;
}

const bitsOf = (a: Float32Array) => new Int32Array(a.buffer, a.byteOffset, a.length);

test('pruneNMScored keeps exactly what nmMask(wandaScores | |W|) keeps, in MatMul and Gemm(transB) layouts', () => {
  let cases = 0;
  for (const transB of [false, true])
    for (const [n, m] of [
      [2, 4],
      [1, 4],
      [3, 4],
      [2, 8],
      [4, 8],
    ])
      for (const nonFinite of [false, true])
        for (const criterion of ['wanda', 'magnitude'] as const) {
          const N = 12;
          const K = 32;
          const seed = 100 + cases++;
          const v = weights(N * K, seed, nonFinite);
          const { uniform } = rng(seed + 7);
          // Zero and repeated channel factors give equal scores (ties to the lower index), large ones overflow fp32.
          const x = Float64Array.from({ length: K }, (_, k) => (k % 9 === 4 ? 0 : k % 7 === 3 ? 1e30 : uniform() * 3));
          const w = canonical(v, N, K, transB);
          const scores = criterion === 'wanda' ? wandaScores(w, N, K, x) : magnitudeScores(w);
          const wHat = w.slice();
          applyMask(wHat, nmMask(scores, N, K, n, m));
          const got = v.slice();
          const delta = new Float32Array(v.length).fill(7);
          const l = layoutOf(N, K, m, transB);
          const c = pruneNMScored(got, l, n, criterion === 'wanda' ? x : undefined, delta);
          const what = `${criterion} ${n}:${m} transB=${transB} nonFinite=${nonFinite}`;
          assert.deepEqual(bitsOf(canonical(got, N, K, transB)), bitsOf(wHat), what);
          const wantDelta = new Float32Array(w.length);
          for (let i = 0; i < w.length; i++) wantDelta[i] = w[i] - wHat[i];
          assert.deepEqual(bitsOf(canonical(delta, N, K, transB)), bitsOf(wantDelta), `Δ ${what}`);
          assert.equal(c.zeros, wHat.filter((a) => a === 0).length, what);
          assert.equal(c.nonFinite, w.filter((a) => !Number.isFinite(a)).length, what);
          assert.equal(countNMViolationsStrided(got, l, n), 0, what);
        }
});

test('nmMaskScored is nmMask(wandaScores | magnitudeScores) on canonical rows, written into a reused mask', () => {
  let cases = 0;
  const reused = new Uint8Array(12 * 32).fill(9);
  for (const [n, m] of [
    [2, 4],
    [1, 4],
    [3, 4],
    [2, 8],
    [5, 8],
  ])
    for (const nonFinite of [false, true])
      for (const criterion of ['wanda', 'magnitude'] as const) {
        const N = 12;
        const K = 32;
        const seed = 300 + cases++;
        const w = weights(N * K, seed, nonFinite);
        const { uniform } = rng(seed + 7);
        const x = Float64Array.from({ length: K }, (_, k) => (k % 9 === 4 ? 0 : k % 7 === 3 ? 1e30 : uniform() * 3));
        const scores = criterion === 'wanda' ? wandaScores(w, N, K, x) : magnitudeScores(w);
        const want = nmMask(scores, N, K, n, m);
        const f = criterion === 'wanda' ? x : undefined;
        const what = `${criterion} ${n}:${m} nonFinite=${nonFinite}`;
        assert.deepEqual(nmMaskScored(w, N, K, n, m, f), want, what);
        assert.equal(nmMaskScored(w, N, K, n, m, f, reused), reused, what);
        assert.deepEqual(reused, want, `into a reused mask: ${what}`);
      }
  assert.throws(() => nmMaskScored(new Float32Array(12), 3, 4, 2, 4, [1, 2, 3]), MaskInputError);
  assert.throws(() => nmMaskScored(new Float32Array(12), 2, 6, 2, 4), MaskInputError);
  assert.throws(() => nmMaskScored(new Float32Array(12), 3, 4, 2, 4, undefined, new Uint8Array(8)), MaskInputError);
});

test('pruneNMScored checks its inputs', () => {
  const l: StridedLayout = { outer: 1, groups: 2, m: 4, inner: 3 };
  assert.throws(() => pruneNMScored(new Float32Array(23), l, 2), MaskInputError);
  assert.throws(() => pruneNMScored(new Float32Array(24), l, 4), MaskInputError);
  assert.throws(() => pruneNMScored(new Float32Array(24), l, 2, new Float64Array(7)), MaskInputError);
  assert.throws(() => pruneNMScored(new Float32Array(24), l, 2, new Float64Array(8).fill(NaN)), MaskInputError);
  assert.throws(() => pruneNMScored(new Float32Array(24), l, 2, undefined, new Float32Array(8)), MaskInputError);
});

test('the layer error from ‖X·Δ‖² / ‖X·W‖² in the stored layout equals outputErrorOnRows and float64', async () => {
  for (const transB of [false, true])
    for (const [N, K, rows] of [
      [6, 16, 5], // below the GEMM's JS threshold
      [96, 128, 64], // through ORT
    ]) {
      const x = llmLikeActivations(rows, K, 40 + K);
      const xNorm = new Float64Array(K);
      for (let t = 0; t < rows; t++) for (let k = 0; k < K; k++) xNorm[k] += x[t * K + k] ** 2;
      const v = weights(N * K, 50 + N, false);
      const w = canonical(v, N, K, transB);
      const den = await outputSquaresOnRows(x, rows, K, v, N, transB);
      const delta = new Float32Array(v.length);
      pruneNMScored(v, layoutOf(N, K, 4, transB), 2, xNorm, delta);
      const num = await outputSquaresOnRows(x, rows, K, delta, N, transB, new Float32Array(rows * N + 3));
      const got = errorRatio(num, den);
      const wHat = canonical(v, N, K, transB);
      const t = await outputErrorOnRows(w, wHat, N, K, x, rows);
      const canonicalError = Math.sqrt(t.num / t.den);
      const ref = outputErrorF64(x, rows, w, wHat, N, K);
      const what = `${N}×${K} rows=${rows} transB=${transB}`;
      assert.ok(Math.abs(got - canonicalError) <= 1e-6 * canonicalError, `${what}: ${got} vs ${canonicalError}`);
      assert.ok(Math.abs(got - ref) <= 1e-5 * ref, `${what}: ${got} vs float64 ${ref}`);
      assert.ok(got > 0.01 && got < 1, `${what}: ${got}`);
    }
  assert.equal(errorRatio(0, 0), 0);
  assert.equal(errorRatio(1, 0), Infinity);
});
