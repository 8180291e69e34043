import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sparseGpt, type SparseGptOptions } from '../../../packages/engine/math/sparsegpt.js';
import { sweepGroupNM4, sweepLeafNM4 } from '../../../packages/engine/math/sparsegpt-sweep.js';
import { sparseGptSweepSimdActive, useSparseGptSweepSimd } from '../../../packages/engine/math/sparsegpt-sweep-simd.js';
import { hessianF64, llmLikeActivations, randomF32, rng } from './rng.js';

const bits = (a: ArrayLike<number>) => Array.from(a, (x) => (Object.is(x, -0) ? '-0' : String(x))).join(',');

/** Wᵀ [K][N] and an upper-triangular U with ties (equal U_jj), ±0 and subnormal weights, and huge U_jj (q = w/d underflows to 0). */
function leafProblem(N: number, K: number, seed: number) {
  const { normal, uniform } = rng(seed);
  const w0 = randomF32(K * N, normal);
  // Ties across a group's columns (equal U_jj, equal |w|) on every third row.
  for (let col = 0; col < K; col++)
    for (let r = 0; r < N; r += 3) w0[col * N + r] = (col % 2 ? -1 : 1) * w0[(col - (col % 4)) * N + r];
  for (let i = 3; i < w0.length; i += 11) w0[i] = uniform() < 0.5 ? 0 : -0;
  for (let i = 5; i < w0.length; i += 13) w0[i] = (uniform() < 0.5 ? -1 : 1) * 1e-40 * (1 + uniform());
  for (let i = 9; i < w0.length; i += 17) w0[i] = (uniform() < 0.5 ? -1 : 1) * 1.4e-45;
  const u = new Float32Array(K * K);
  for (let i = 0; i < K; i++) {
    u[i * K + i] = i % 8 < 4 ? 1 : i % 16 === 13 ? 1e30 : 0.5 + uniform();
    for (let j = i + 1; j < K; j++) u[i * K + j] = i % 5 === 2 ? 1e-39 * normal() : 0.1 * normal();
  }
  return { w0, u };
}

function runLeaves(
  w0: Float32Array,
  u: Float32Array,
  N: number,
  K: number,
  L: number,
  n: number,
  mode: 'js' | 'leaf',
  withMask: boolean,
) {
  const wt = w0.slice();
  const errBase = 4;
  const errT = new Float32Array((K - errBase) * N).fill(NaN);
  const mask = withMask ? new Uint8Array(N * K).fill(9) : new Uint8Array(0);
  const e = new Float64Array(4 * N);
  let loss = 0.25; // a running loss to add to (the order of the additions matters)
  for (let c0 = errBase; c0 < K; c0 += L) {
    const c1 = Math.min(c0 + L, K);
    if (mode === 'leaf') loss = sweepLeafNM4(wt, u, errT, errBase, mask, N, K, c0, c1, n, e, loss);
    else for (let g = c0; g < c1; g += 4) loss += sweepGroupNM4(wt, u, errT, errBase, mask, N, K, g, c1, n, e);
  }
  return { wt: bits(wt), errT: bits(errT), mask: bits(mask), loss };
}

test('sparseGPT N:4 leaf kernel: the bits of sweepGroupNM4 (weights, errors, masks, loss); ties, ±0, subnormals, n = 1..3, odd N, several chunks', () => {
  assert.ok(sparseGptSweepSimdActive(), 'WebAssembly SIMD available');
  for (const N of [1, 2, 3, 37, 4099]) {
    const K = 4 + 48;
    const { w0, u } = leafProblem(N, K, 100 + N);
    for (const L of [16, 8, 12]) {
      for (const n of N > 100 ? [2] : [1, 2, 3]) {
        for (const withMask of L === 16 ? [true, false] : [true]) {
          const label = `N=${N} L=${L} n=${n} mask=${withMask}`;
          const want = runLeaves(w0, u, N, K, L, n, 'js', withMask);
          useSparseGptSweepSimd(false);
          const off = runLeaves(w0, u, N, K, L, n, 'leaf', withMask);
          useSparseGptSweepSimd(true);
          const on = runLeaves(w0, u, N, K, L, n, 'leaf', withMask);
          for (const got of [off, on]) {
            assert.equal(got.wt, want.wt, `${label}: weights`);
            assert.equal(got.errT, want.errT, `${label}: errors`);
            assert.equal(got.mask, want.mask, `${label}: mask`);
            assert.ok(Object.is(got.loss, want.loss), `${label}: loss ${got.loss} vs ${want.loss}`);
          }
          if (N > 30)
            assert.ok(want.wt.includes('-0') && want.wt.includes('e-4'), 'the case has −0 and subnormal weights');
        }
      }
    }
  }
});

test('sparseGpt with the leaf kernel on and off: identical weights, masks and errors', async () => {
  const cases: [number, number, number, SparseGptOptions][] = [
    [37, 128, 300, { n: 2, m: 4 }],
    [3, 96, 200, { n: 1, m: 4, blockSize: 32 }],
    [2100, 64, 100, { n: 2, m: 4 }],
  ];
  for (const [N, K, tokens, opts] of cases) {
    const x = llmLikeActivations(tokens, K, N + K);
    const h = hessianF64(x, tokens, K);
    const w = randomF32(N * K, rng(N * K).normal);
    const run = async (on: boolean) => {
      useSparseGptSweepSimd(on);
      try {
        const got = w.slice();
        const r = await sparseGpt(got, N, K, h, { ...opts, outputError: true });
        return { w: bits(got), r };
      } finally {
        useSparseGptSweepSimd(true);
      }
    };
    const a = await run(false);
    const b = await run(true);
    assert.equal(b.w, a.w, `${N}×${K}: weights`);
    assert.deepEqual(b.r, a.r, `${N}×${K}: result`);
  }
});
