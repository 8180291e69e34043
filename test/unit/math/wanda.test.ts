import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkNM,
  MaskInputError,
  nmMask,
  applyMask,
  unstructuredMaskPerRow,
} from '../../../packages/engine/math/nm.js';
import { magnitudeScores, wandaScores } from '../../../packages/engine/math/wanda.js';
import { llmLikeActivations, outputErrorF64, randomF32, rng } from './rng.js';

/** x_k = sqrt(mean_t X[t,k]²), float64. */
function channelRms(x: Float32Array, tokens: number, K: number): Float64Array {
  const s = new Float64Array(K);
  for (let t = 0; t < tokens; t++) for (let k = 0; k < K; k++) s[k] += x[t * K + k] ** 2;
  return s.map((v) => Math.sqrt(v / tokens));
}

test('wandaScores = |W[n,k]|·x_k, against brute force', () => {
  const { normal, uniform } = rng(21);
  const rows = 5;
  const cols = 12;
  const w = randomF32(rows * cols, normal);
  const x = Float64Array.from({ length: cols }, () => uniform() * 3);
  const s = wandaScores(w, rows, cols, x);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < cols; k++) assert.equal(s[r * cols + k], Math.fround(Math.abs(w[r * cols + k]) * x[k]));
  assert.deepEqual(magnitudeScores(Float32Array.from([-2, 0, 3])), Float32Array.from([2, 0, 3]));
  assert.throws(() => wandaScores(w, rows, cols, new Float64Array(cols - 1)), MaskInputError);
  assert.throws(
    () =>
      wandaScores(
        w,
        rows,
        cols,
        Float64Array.from({ length: cols }, () => NaN),
      ),
    MaskInputError,
  );
});

test('Wanda 2:4 and unstructured masks equal a brute-force choice on |W|·x', () => {
  const tokens = 64;
  const K = 16;
  const N = 6;
  const x = llmLikeActivations(tokens, K, 22);
  const xk = channelRms(x, tokens, K);
  const { normal } = rng(23);
  const w = randomF32(N * K, normal);
  const mask = nmMask(wandaScores(w, N, K, xk), N, K, 2, 4);
  for (let r = 0; r < N; r++)
    for (let g = 0; g < K / 4; g++) {
      const idx = [0, 1, 2, 3].map((j) => g * 4 + j);
      idx.sort((a, b) => Math.abs(w[r * K + b]) * xk[b] - Math.abs(w[r * K + a]) * xk[a] || a - b);
      const keep = new Set(idx.slice(0, 2));
      for (const k of [0, 1, 2, 3].map((j) => g * 4 + j)) assert.equal(mask[r * K + k], keep.has(k) ? 1 : 0);
    }
  const un = unstructuredMaskPerRow(wandaScores(w, N, K, xk), N, K, 0.5);
  for (let r = 0; r < N; r++) {
    const idx = Array.from({ length: K }, (_, k) => k);
    idx.sort((a, b) => Math.abs(w[r * K + a]) * xk[a] - Math.abs(w[r * K + b]) * xk[b] || b - a);
    const pruned = new Set(idx.slice(0, K / 2));
    for (let k = 0; k < K; k++) assert.equal(un[r * K + k], pruned.has(k) ? 0 : 1);
  }
});

test('on LLM-like activations Wanda 2:4 has lower output error than magnitude 2:4', () => {
  const tokens = 256;
  const K = 64;
  const N = 32;
  const x = llmLikeActivations(tokens, K, 24);
  const xk = channelRms(x, tokens, K);
  const { normal } = rng(25);
  const w = randomF32(N * K, normal);
  const wWanda = w.slice();
  applyMask(wWanda, nmMask(wandaScores(wWanda, N, K, xk), N, K, 2, 4));
  const wMag = w.slice();
  applyMask(wMag, nmMask(magnitudeScores(wMag), N, K, 2, 4));
  assert.ok(checkNM(wWanda, N, K, 2, 4).ok && checkNM(wMag, N, K, 2, 4).ok);
  const eWanda = outputErrorF64(x, tokens, w, wWanda, N, K);
  const eMag = outputErrorF64(x, tokens, w, wMag, N, K);
  assert.ok(eWanda < 0.8 * eMag, `wanda ${eWanda} vs magnitude ${eMag}`);
});
