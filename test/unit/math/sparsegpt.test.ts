import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gramAccumulate } from '../../../packages/engine/math/gemm.js';
import { inverseCholeskyUpperF32, NotPositiveDefiniteError } from '../../../packages/engine/math/linalg.js';
import { applyMask, checkNM, MaskInputError, nmMask } from '../../../packages/engine/math/nm.js';
import { errorRatio, relativeOutputError } from '../../../packages/engine/math/relerr.js';
import {
  dampedHessian,
  sparseGpt,
  SparseGptFactorCache,
  SparseGptInputError,
  sparseGptReference,
  SparseGptWorkspace,
  type SparseGptOptions,
} from '../../../packages/engine/math/sparsegpt.js';
import { chooseGroupNM, sweepGroup, sweepGroupNM4 } from '../../../packages/engine/math/sparsegpt-sweep.js';
import { magnitudeScores, wandaScores } from '../../../packages/engine/math/wanda.js';
import { hessianF64, llmLikeActivations, maxAbs, maxAbsDiff, outputErrorF64, randomF32, rng } from './rng.js';

async function problem(N: number, K: number, tokens: number, seed: number, llmLike = false) {
  const { normal } = rng(seed);
  const x = llmLike ? llmLikeActivations(tokens, K, seed + 1) : randomF32(tokens * K, normal);
  // Wide layers take H through gramAccumulate (tested against a brute force in gemm.test.ts) to keep this file fast.
  let h: Float64Array;
  if (K <= 256) h = hessianF64(x, tokens, K);
  else {
    h = new Float64Array(K * K);
    await gramAccumulate(x, tokens, K, h);
    for (let i = 0; i < h.length; i++) h[i] *= 2 / tokens;
  }
  return { x, h, w: randomF32(N * K, normal) };
}

test('blocked fp32 SparseGPT matches the unblocked float64 OBS reference (same masks, close weights)', async () => {
  const cases: [number, number, SparseGptOptions][] = [
    [12, 64, { n: 2, m: 4, blockSize: 16 }],
    [12, 64, { n: 2, m: 4 }], // one block
    [10, 72, { n: 2, m: 4, blockSize: 32 }], // last block shorter
    [8, 64, { n: 4, m: 8, blockSize: 16 }],
    [8, 48, { n: 1, m: 4, blockSize: 8 }],
    [12, 64, { sparsity: 0.5, blockSize: 16 }],
    [9, 70, { sparsity: 0.3, blockSize: 32 }],
    [7, 200, { n: 2, m: 4 }], // sub-blocks inside a 128 block, short last block
    [6, 140, { n: 3, m: 7, blockSize: 70 }],
    [5, 390, { n: 1, m: 3 }], // default block rounds to 129
    [5, 150, { sparsity: 0.6, blockSize: 100 }],
    [6, 80, { sparsity: 0.5 }], // default block 128 ≥ K: one mask block
    [3, 600, { n: 2, m: 4 }], // all levels: 600 → 512 → 128 → 16
    [3, 600, { sparsity: 0.5, blockSize: 96 }], // 600 → 480 → 96 → 16
  ];
  const workspace = new SparseGptWorkspace(); // shared by all cases: stale scratch contents must not matter
  for (const [N, K, opts] of cases) {
    const { w, h } = await problem(N, K, Math.min(4 * K, 1200), N * K);
    const ref = sparseGptReference(w, N, K, h, opts);
    const got = w.slice();
    const { mask, error } = await sparseGpt(got, N, K, h, { ...opts, workspace });
    const label = `${N}×${K} ${JSON.stringify(opts)}`;
    assert.deepEqual(mask, ref.mask, label);
    assert.ok(maxAbsDiff(got, ref.weights) < 1e-4 * maxAbs(ref.weights), label);
    assert.ok(Math.abs(error - ref.error) < 1e-4 * ref.error, label);
    for (let i = 0; i < mask.length; i++) if (!mask[i]) assert.equal(got[i], 0);
    if (opts.n) assert.ok(checkNM(got, N, K, opts.n, opts.m!).ok, label);
    else assert.equal(mask.reduce((c, v) => c + (v ? 0 : 1), 0) >= Math.floor(N * K * opts.sparsity!) - K, true);
  }
});

test('dead inputs: zero Hessian rows are handled as the reference does (weights zeroed, no NaN)', async () => {
  const N = 6;
  const K = 32;
  const tokens = 100;
  const { normal } = rng(41);
  const x = randomF32(tokens * K, normal);
  for (let t = 0; t < tokens; t++) x[t * K + 5] = x[t * K + 17] = 0; // channels 5 and 17 never fire
  const h = hessianF64(x, tokens, K);
  const w = randomF32(N * K, normal);
  const ref = sparseGptReference(w, N, K, h, { n: 2, m: 4, blockSize: 8 });
  const got = w.slice();
  const { mask } = await sparseGpt(got, N, K, h, { n: 2, m: 4, blockSize: 8 });
  assert.deepEqual(mask, ref.mask);
  assert.ok(maxAbsDiff(got, ref.weights) < 1e-4 * maxAbs(ref.weights));
  for (let r = 0; r < N; r++) assert.equal(got[r * K + 5], 0);
  assert.ok(got.every(Number.isFinite));
});

test('on LLM-like activations: sparsegpt < wanda < magnitude in ‖X(W−Ŵ)‖/‖XW‖, and the OBS update matters', async () => {
  const N = 48;
  const K = 128;
  const tokens = 512;
  const { x, h, w } = await problem(N, K, tokens, 51, true);
  const xk = new Float64Array(K);
  for (let k = 0; k < K; k++) xk[k] = Math.sqrt(h[k * K + k] / 2);
  const wMag = w.slice();
  applyMask(wMag, nmMask(magnitudeScores(wMag), N, K, 2, 4));
  const wWanda = w.slice();
  applyMask(wWanda, nmMask(wandaScores(wWanda, N, K, xk), N, K, 2, 4));
  const wSgpt = w.slice();
  const { mask } = await sparseGpt(wSgpt, N, K, h, { n: 2, m: 4, blockSize: 32 });
  const wMaskOnly = w.slice();
  applyMask(wMaskOnly, mask);
  const e = {
    magnitude: outputErrorF64(x, tokens, w, wMag, N, K),
    wanda: outputErrorF64(x, tokens, w, wWanda, N, K),
    sparsegpt: outputErrorF64(x, tokens, w, wSgpt, N, K),
    sparsegptMaskNoUpdate: outputErrorF64(x, tokens, w, wMaskOnly, N, K),
  };
  console.log(`    2:4 layer output error ${N}×${K}: ${JSON.stringify(e)}`);
  assert.ok(e.sparsegpt < 0.9 * e.wanda && e.wanda < 0.9 * e.magnitude, JSON.stringify(e));
  assert.ok(e.sparsegpt < 0.9 * e.sparsegptMaskNoUpdate, JSON.stringify(e));
  // The Hessian-only error used in reports agrees with the activation-based one.
  assert.ok(Math.abs((await relativeOutputError(w, wSgpt, N, K, h)) - e.sparsegpt) < 1e-4 * e.sparsegpt);
});

test('outputError: tr(ΔHΔᵀ)/tr(WHWᵀ) from the sweep equals ‖X(W−Ŵ)ᵀ‖²/‖XWᵀ‖² from the activations (float64)', async () => {
  // [N, K, tokens, options, every how many columns a dead input (0: none)]. tokens < K: rank-deficient H, where
  // much of the error sits in H's null space; the last cases make the dampening dominate the error (the trace
  // fallback) or make fp32 lose definiteness (the float64 factorisation).
  const cases: [number, number, number, SparseGptOptions, number][] = [
    [40, 128, 400, { n: 2, m: 4 }, 0],
    [40, 128, 400, { n: 2, m: 4, blockSize: 32 }, 17],
    [40, 256, 100, { n: 2, m: 4 }, 0],
    [30, 256, 60, { sparsity: 0.5 }, 9],
    [30, 304, 1000, { n: 4, m: 8 }, 0],
    [64, 600, 300, { sparsity: 0.5, blockSize: 96 }, 0], // W₀·V over three panels, GEMM paths
    [20, 64, 2, { n: 2, m: 4, dampening: 1 }, 0], // num: λ‖Δ‖² ≈ Σe², the trace fallback
    [20, 64, 4, { sparsity: 0.5, dampening: 1 }, 7],
    [30, 200, 30, { n: 2, m: 4, dampening: 1e-9 }, 0], // fp32 factorisation fails: float64
  ];
  for (const [N, K, tokens, opts, deadEvery] of cases) {
    const x = llmLikeActivations(tokens, K, N + K + tokens);
    if (deadEvery) for (let t = 0; t < tokens; t++) for (let k = 3; k < K; k += deadEvery) x[t * K + k] = 0;
    const h = hessianF64(x, tokens, K);
    const w = randomF32(N * K, rng(N * K).normal);
    const got = w.slice();
    const r = await sparseGpt(got, N, K, h, { ...opts, outputError: true });
    const want = outputErrorF64(x, tokens, w, got, N, K);
    const label = `${N}×${K} T=${tokens} ${JSON.stringify(opts)} dead/${deadEvery}`;
    const { num, den } = r.outputError!;
    assert.ok(Math.abs(errorRatio(num, den) - want) < 1e-5 * want, `${label}: ${errorRatio(num, den)} vs ${want}`);
    // The weights and mask are those of a run without outputError.
    const plain = w.slice();
    assert.deepEqual((await sparseGpt(plain, N, K, h, opts)).mask, r.mask, label);
    assert.deepEqual(plain, got, label);
    // Given Wᵀ (the MatMul layout) and edited in place there: the same weights and terms, no mask when not asked.
    const wt = new Float32Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
    const rt = await sparseGpt(wt, N, K, h, { ...opts, outputError: true, transposed: true, mask: false });
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) assert.equal(wt[k * N + n], got[n * K + k], label);
    assert.deepEqual(rt.outputError, r.outputError, label);
    assert.equal(rt.mask.length, 0);
  }
  // W almost orthogonal to the activations: tr(WHWᵀ) ≪ λ‖W‖², the denominator's trace fallback.
  {
    const [N, K, tokens] = [10, 64, 3];
    const x = llmLikeActivations(tokens, K, 5);
    const h = hessianF64(x, tokens, K);
    const w = randomF32(N * K, rng(6).normal);
    const q = Float64Array.from(x); // Gram–Schmidt on X's rows, then W −= 0.99·(projection of W onto them)
    for (let t = 0; t < tokens; t++) {
      for (let s2 = 0; s2 < t; s2++) {
        let d = 0;
        for (let k = 0; k < K; k++) d += q[t * K + k] * q[s2 * K + k];
        for (let k = 0; k < K; k++) q[t * K + k] -= d * q[s2 * K + k];
      }
      let n2 = 0;
      for (let k = 0; k < K; k++) n2 += q[t * K + k] ** 2;
      for (let k = 0; k < K; k++) q[t * K + k] /= Math.sqrt(n2);
    }
    for (let r = 0; r < N; r++)
      for (let t = 0; t < tokens; t++) {
        let d = 0;
        for (let k = 0; k < K; k++) d += w[r * K + k] * q[t * K + k];
        for (let k = 0; k < K; k++) w[r * K + k] -= 0.99 * d * q[t * K + k];
      }
    const got = w.slice();
    const { outputError } = await sparseGpt(got, N, K, h, { n: 2, m: 4, outputError: true });
    const want = outputErrorF64(x, tokens, w, got, N, K);
    const have = errorRatio(outputError!.num, outputError!.den);
    assert.ok(Math.abs(have - want) < 1e-4 * want, `near-null W: ${have} vs ${want}`);
  }
  const ill = hessianF64(llmLikeActivations(30, 200, 260), 30, 200);
  await assert.rejects(inverseCholeskyUpperF32(dampedHessian(ill, 200, 1e-9).h, 200), NotPositiveDefiniteError);
  const empty = await sparseGpt(new Float32Array(0), 0, 4, new Float64Array(16), { n: 2, m: 4, outputError: true });
  assert.deepEqual(empty.outputError, { num: 0, den: 0 });
});

test('factor cache: a second layer on the same Hessian reuses the factorisation; a changed Hessian does not', async () => {
  const [N, K] = [20, 96];
  const { w, h } = await problem(N, K, 300, 77, true);
  const factors = new SparseGptFactorCache();
  const opts: SparseGptOptions = { n: 2, m: 4, outputError: true };
  const fresh = async (hh: Float64Array) => {
    const got = w.slice();
    return { got, r: await sparseGpt(got, N, K, hh, opts) };
  };
  const want = await fresh(h);
  for (let i = 0; i < 2; i++) {
    const got = w.slice();
    const r = await sparseGpt(got, N, K, h, { ...opts, factors });
    assert.deepEqual(got, want.got);
    assert.deepEqual(r, want.r);
  }
  const first = factors.entry!.u;
  await sparseGpt(w.slice(), N, K, h, { ...opts, factors });
  assert.equal(factors.entry!.u, first); // reused
  for (let i = 0; i < h.length; i += K + 1) h[i] *= 1.5; // rewritten in place: factorised again
  const want2 = await fresh(h);
  const got = w.slice();
  assert.deepEqual(await sparseGpt(got, N, K, h, { ...opts, factors }), want2.r);
  assert.deepEqual(got, want2.got);
  assert.notEqual(factors.entry!.u, first);
  await sparseGpt(w.slice(), N, K, h, { ...opts, dampening: 0.05, factors });
  assert.equal(factors.entry!.dampening, 0.05);
});

test('workspace and factor cache over layers of alternating sizes (recycled factorisation arrays): exactly the fresh results', async () => {
  const workspace = new SparseGptWorkspace();
  const factors = new SparseGptFactorCache();
  const layers = [
    [24, 200, 1],
    [16, 200, 1],
    [12, 320, 2],
    [24, 200, 3], // the first size again: its arrays come back from the workspace
    [12, 320, 4],
  ];
  for (const [N, K, seed] of layers) {
    const { w, h } = await problem(N, K, 2 * K, 500 + seed, true);
    const opts: SparseGptOptions = { n: 2, m: 4, outputError: true };
    const want = w.slice();
    const r0 = await sparseGpt(want, N, K, h, opts);
    const got = w.slice();
    assert.deepEqual(await sparseGpt(got, N, K, h, { ...opts, workspace, factors }), r0, `${N}×${K}`);
    assert.deepEqual(got, want, `${N}×${K}`);
  }
  assert.ok(workspace.factorScratch.bytes > 0);
});

test('transposed with `original` (W₀ re-read in chunks, no copy): the same weights, errors and output error terms', async () => {
  const [N, K] = [600, 512]; // N·K > one re-read chunk: several chunks
  const { w, h } = await problem(N, K, 700, 91, true);
  for (let k = 0; k < K; k++) h[k * K + 37] = h[37 * K + k] = 0; // a dead input: its row of W₀ᵀ reads as zeros
  const wt = new Float32Array(K * N);
  for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) wt[k * N + r] = w[r * K + k];
  const opts: SparseGptOptions = { n: 2, m: 4, outputError: true, transposed: true };
  const want = wt.slice();
  const r0 = await sparseGpt(want, N, K, h, opts);
  const got = wt.slice();
  const reads: number[] = [];
  const original = (k0: number, k1: number, out: Float32Array) => {
    reads.push(k1 - k0);
    out.set(wt.subarray(k0 * N, k1 * N));
  };
  assert.deepEqual(await sparseGpt(got, N, K, h, { ...opts, original }), r0);
  assert.deepEqual(got, want);
  assert.ok(reads.length > 1 && reads.reduce((a, b) => a + b, 0) === K);
});

test('bad inputs give typed errors; a singular Hessian without dampening is NotPositiveDefinite; abort works', async () => {
  const w = new Float32Array(8);
  const h = new Float64Array(16);
  for (let i = 0; i < 4; i++) h[i * 4 + i] = 1;
  const bad: [SparseGptOptions, RegExp][] = [
    [{}, /either an N:M pattern/],
    [{ n: 2, m: 4, sparsity: 0.5 }, /either an N:M pattern/],
    [{ n: 2 }, /needs both n and m/],
    [{ n: 2, m: 4, blockSize: 6 }, /multiple of M/],
    [{ sparsity: 1 }, /sparsity must be in/],
    [{ n: 2, m: 4, dampening: -1 }, /dampening/],
    [{ n: 3, m: 3 }, /invalid/],
  ];
  for (const [opts, msg] of bad)
    await assert.rejects(sparseGpt(w.slice(), 2, 4, h, opts), (e: unknown) => {
      assert.ok(e instanceof MaskInputError, String(e)); // SparseGptInputError extends MaskInputError
      assert.match(String(e), msg);
      return true;
    });
  await assert.rejects(sparseGpt(w, 2, 4, new Float64Array(15), { n: 2, m: 4 }), SparseGptInputError);
  await assert.rejects(sparseGpt(new Float32Array(10), 2, 5, new Float64Array(25), { n: 2, m: 4 }), /multiple of 4/);
  const hNaN = h.slice();
  hNaN[5] = NaN;
  await assert.rejects(sparseGpt(w, 2, 4, hNaN, { n: 2, m: 4 }), SparseGptInputError);
  const ones = new Float64Array(16).fill(1); // rank one: second pivot is exactly 0
  await assert.rejects(sparseGpt(w, 2, 4, ones, { n: 2, m: 4, dampening: 0 }), NotPositiveDefiniteError);
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  await assert.rejects(sparseGpt(w, 2, 4, h, { n: 2, m: 4, signal: ac.signal }), /stop/);
});

test('non-finite values are found inside the passes that read them: same errors and index, weights untouched', async () => {
  const { normal } = rng(5);
  const N = 24;
  const K = 32;
  const w0 = randomF32(N * K, normal);
  const h0 = hessianF64(randomF32(64 * K, normal), 64, K);
  for (let k = 0; k < K; k++) h0[3 * K + k] = h0[k * K + 3] = 0; // a dead input: its weights are zeroed after the check
  for (const at of [0, 3, 3 * N + 2, 5 * K + 3, 7 * K + 9, N * K - 1])
    for (const bad of [NaN, Infinity, -Infinity])
      for (const transposed of [false, true])
        for (const outputError of [false, true]) {
          const w = w0.slice();
          w[at] = bad;
          const before = w.slice();
          const opts = { n: 2, m: 4, transposed, outputError };
          await assert.rejects(sparseGpt(w, N, K, h0, opts), (e: unknown) => {
            assert.ok(e instanceof SparseGptInputError, String(e));
            assert.match(String(e), new RegExp(`weight ${at} is not finite`));
            return true;
          });
          assert.deepEqual(w, before);
        }
  for (const at of [0, 5, K * K - 1]) {
    const h = h0.slice();
    h[at] = NaN;
    await assert.rejects(sparseGpt(w0.slice(), N, K, h, { n: 2, m: 4 }), new RegExp(`Hessian entry ${at} is NaN`));
    await assert.rejects(sparseGpt(new Float32Array(0), 0, K, h, { n: 2, m: 4 }), /Hessian entry/);
  }
  // Finite entries whose row sum overflows are not rejected as non-finite (the exact search finds none).
  const huge = h0.slice();
  huge[1] = huge[2] = 1.5e308;
  await assert.rejects(sparseGpt(w0.slice(), N, K, huge, { n: 2, m: 4 }), NotPositiveDefiniteError);
  // The factor cache reuses a checked Hessian's factorisation; the results are those of a fresh call.
  const factors = new SparseGptFactorCache();
  const first = w0.slice();
  await sparseGpt(first, N, K, h0, { n: 2, m: 4, factors, outputError: true });
  const again = w0.slice();
  const r = await sparseGpt(again, N, K, h0, { n: 2, m: 4, factors, outputError: true });
  const fresh = w0.slice();
  const rf = await sparseGpt(fresh, N, K, h0, { n: 2, m: 4, outputError: true });
  assert.deepEqual(again, fresh);
  assert.deepEqual(r, rf);
});

test('sweepGroupNM4 (branch-free mask selects) gives the bits of chooseGroupNM + sweepGroup: ties, ±0 weights, n = 1..3', () => {
  const { normal, uniform } = rng(77);
  const N = 301;
  const K = 48;
  const w0 = randomF32(K * N, normal);
  // Ties inside groups (equal scores when U_jj are equal), and exact ±0 weights, kept and pruned.
  for (let i = 0; i < w0.length; i += 7) w0[i] = w0[i + 1 < w0.length ? i + 1 : i];
  for (let i = 3; i < w0.length; i += 11) w0[i] = uniform() < 0.5 ? 0 : -0;
  const u = new Float32Array(K * K);
  for (let i = 0; i < K; i++) {
    u[i * K + i] = i % 8 < 4 ? 1 : 0.5 + uniform();
    for (let j = i + 1; j < K; j++) u[i * K + j] = 0.1 * normal();
  }
  const bits = (a: ArrayLike<number>) => Array.from(a, (x) => (Object.is(x, -0) ? '-0' : String(x))).join(',');
  for (const n of [1, 2, 3]) {
    const run = (fused: boolean) => {
      const wt = w0.slice();
      const errT = new Float32Array(K * N).fill(NaN);
      const mask = new Uint8Array(N * K).fill(9);
      const buf = { e: new Float64Array(4 * N), keep: new Uint8Array(4 * N), u: new Float64Array(4) };
      let loss = 0;
      for (let c0 = 0; c0 < K; c0 += 16)
        for (let g = c0; g < c0 + 16; g += 4) {
          if (fused) loss += sweepGroupNM4(wt, u, errT, 0, mask, N, K, g, c0 + 16, n, buf.e);
          else {
            chooseGroupNM(wt, u, N, K, g, 4, n, buf.keep);
            loss += sweepGroup(wt, u, errT, 0, mask, N, K, g, 4, c0 + 16, buf);
          }
        }
      return { wt: bits(wt), errT: bits(errT), mask: bits(mask), loss };
    };
    const a = run(true);
    const b = run(false);
    assert.equal(a.wt, b.wt, `n=${n}: weights`);
    assert.equal(a.errT, b.errT, `n=${n}: errors`);
    assert.equal(a.mask, b.mask, `n=${n}: mask`);
    assert.ok(Object.is(a.loss, b.loss), `n=${n}: loss ${a.loss} vs ${b.loss}`);
    assert.ok(a.wt.includes('-0') && a.mask.includes('0'), 'the case has −0 weights and pruned ones');
  }
});

test('referenceTrace: the denominator as given, no V = U⁻¹ factorised; num, masks and weights bit-identical to the computed route', async () => {
  const cases: [number, number, number, SparseGptOptions, number][] = [
    [40, 128, 400, { n: 2, m: 4 }, 0],
    [40, 128, 400, { n: 2, m: 4, blockSize: 32 }, 17], // dead inputs
    [30, 256, 60, { sparsity: 0.5 }, 9], // rank-deficient H
    [64, 600, 300, { sparsity: 0.5, blockSize: 96 }, 0], // W₀·V over three panels on the computed route
    [20, 64, 2, { n: 2, m: 4, dampening: 1 }, 0], // the numerator's trace fallback
    [30, 200, 30, { n: 2, m: 4, dampening: 1e-9 }, 0], // fp32 factorisation fails: float64
  ];
  for (const [N, K, tokens, opts, deadEvery] of cases) {
    const x = llmLikeActivations(tokens, K, N + K + tokens);
    if (deadEvery) for (let t = 0; t < tokens; t++) for (let k = 3; k < K; k += deadEvery) x[t * K + k] = 0;
    const h = hessianF64(x, tokens, K);
    const w = randomF32(N * K, rng(N * K).normal);
    // tr(W·H·Wᵀ) in float64, what the calibration pass reduces from the layer's output (LayerStats.outputTraces).
    let trace = 0;
    for (let n = 0; n < N; n++)
      for (let i = 0; i < K; i++) {
        let s = 0;
        for (let j = 0; j < K; j++) s += h[i * K + j] * w[n * K + j];
        trace += w[n * K + i] * s;
      }
    const label = `${N}×${K} T=${tokens} ${JSON.stringify(opts)} dead/${deadEvery}`;
    const want = w.slice();
    const r0 = await sparseGpt(want, N, K, h, { ...opts, outputError: true });
    for (const transposed of [false, true]) {
      const factors = new SparseGptFactorCache();
      const got = transposed ? new Float32Array(N * K) : w.slice();
      if (transposed) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) got[k * N + n] = w[n * K + k];
      const src = got.slice();
      const r = await sparseGpt(got, N, K, h, {
        ...opts,
        outputError: true,
        referenceTrace: trace,
        factors,
        ...(transposed
          ? {
              transposed,
              original: (k0: number, k1: number, out: Float32Array) => out.set(src.subarray(k0 * N, k1 * N)),
            }
          : {}),
      });
      // (Below 97 columns the unblocked factorisation has V at hand anyway.)
      if (K > 96) assert.equal(factors.entry!.v, undefined, `${label}: V was factorised`);
      if (transposed) {
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) assert.equal(got[k * N + n], want[n * K + k], label);
      } else assert.deepEqual(got, want, label);
      assert.deepEqual(r.mask, r0.mask, label);
      assert.equal(r.error, r0.error, `${label} error`);
      assert.equal(r.outputError!.num, r0.outputError!.num, `${label} num transposed=${transposed}`);
      assert.equal(r.outputError!.den, trace, label);
      const rel = Math.abs(trace - r0.outputError!.den) / r0.outputError!.den;
      assert.ok(rel < 1e-5, `${label}: den ${trace} vs ${r0.outputError!.den}`);
    }
    // Not finite (or absent): the computed route, the same result.
    const again = w.slice();
    assert.deepEqual(await sparseGpt(again, N, K, h, { ...opts, outputError: true, referenceTrace: NaN }), r0);
    assert.deepEqual(again, want);
  }
});
