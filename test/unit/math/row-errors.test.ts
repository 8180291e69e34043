import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HessianErrors, RowErrors } from '../../../packages/engine/math/row-errors.js';
import { hessianF64, llmLikeActivations, outputErrorF64, randomF32, rng } from './rng.js';

test('RowErrors: ‖P − (X·A)·B‖/‖XWᵀ‖ equals the float64 brute force ‖X(W − W_C − (AB)ᵀ)ᵀ‖/‖XWᵀ‖', async () => {
  // Small (JS GEMM path) and large enough for ORT's products.
  for (const [rows, N, K, r] of [
    [6, 5, 8, 2],
    [64, 96, 160, 12],
  ]) {
    const { normal } = rng(N + K);
    const x = llmLikeActivations(rows, K, 7 + N);
    const w = randomF32(N * K, normal);
    const { wC, a, b, wHat } = adapterCase(w, N, K, r, normal);
    const errs = await RowErrors.of(w, N, K, x, rows);
    const e = w.map((v, i) => v - wC[i]);
    const p = await errs.residual(e);
    const without = await errs.relative(p);
    const withAdapter = await errs.relative(p, { rank: r, a, b });
    const wantWithout = outputErrorF64(x, rows, w, wC, N, K);
    const wantWith = outputErrorF64(x, rows, w, wHat, N, K);
    assert.ok(Math.abs(without - wantWithout) < 1e-5 * wantWithout, `${N}×${K}: ${without} vs ${wantWithout}`);
    assert.ok(Math.abs(withAdapter - wantWith) < 1e-5 * wantWith, `${N}×${K} r=${r}: ${withAdapter} vs ${wantWith}`);
    // The work buffer is reused: a second adapter measured after the first gives its own number.
    assert.equal(await errs.relative(p, { rank: r, a, b }), withAdapter);
    assert.equal(await errs.relative(p, { rank: 0, a: new Float32Array(0), b: new Float32Array(0) }), without);
    // A reference the caller already has (the calibration pass's ‖X·Wᵀ‖²) is used as given: no product for it.
    const given = await RowErrors.of(w, N, K, x, rows, errs.reference * 4);
    assert.equal(given.reference, errs.reference * 4);
    const half = await given.relative(await given.residual(e));
    assert.ok(Math.abs(half - without / 2) < 1e-6 * without, `${half} vs ${without / 2}`);
  }
});

test('RowErrors: exact match is 0, a zero reference is Infinity, wrong shapes are typed errors', async () => {
  const x = Float32Array.from([1, 2, 3, 4]);
  const w = Float32Array.from([1, -1]);
  const errs = await RowErrors.of(w, 1, 2, x, 2);
  assert.equal(await errs.relative(await errs.residual(new Float32Array(2))), 0);
  const zero = await RowErrors.of(new Float32Array(2), 1, 2, x, 2);
  assert.equal(await zero.relative(await zero.residual(w)), Infinity);
  await assert.rejects(RowErrors.of(w, 1, 3, x, 2), /W must be 1×3/);
  await assert.rejects(errs.residual(new Float32Array(3)), /residual must be 1×2/);
  await assert.rejects(
    errs.relative(new Float32Array(2), { rank: 1, a: new Float32Array(3), b: new Float32Array(1) }),
    /factors/,
  );
});

test('HessianErrors: ⟨EH,E⟩ − 2⟨B·EH, Aᵀ⟩ + ⟨AᵀHA, BBᵀ⟩ over tr(WHWᵀ) equals the float64 ‖X(W − Ŵ)ᵀ‖/‖XWᵀ‖', async () => {
  for (const [tokens, N, K, r] of [
    [40, 5, 8, 2],
    [300, 96, 160, 12],
  ]) {
    const { normal } = rng(3 * N + K);
    const x = llmLikeActivations(tokens, K, 11 + K);
    const h = hessianF64(x, tokens, K);
    const w = randomF32(N * K, normal);
    const { wC, a, b, wHat } = adapterCase(w, N, K, r, normal);
    const errs = await HessianErrors.of(w, N, K, h);
    const p = await errs.residual(w.map((v, i) => v - wC[i]));
    const without = await errs.relative(p);
    const withAdapter = await errs.relative(p, { rank: r, a, b });
    const wantWithout = outputErrorF64(x, tokens, w, wC, N, K);
    const wantWith = outputErrorF64(x, tokens, w, wHat, N, K);
    assert.ok(Math.abs(without - wantWithout) < 1e-5 * wantWithout, `${N}×${K}: ${without} vs ${wantWithout}`);
    assert.ok(Math.abs(withAdapter - wantWith) < 1e-5 * wantWith, `${N}×${K} r=${r}: ${withAdapter} vs ${wantWith}`);
  }
  await assert.rejects(HessianErrors.of(new Float32Array(2), 1, 2, new Float64Array(3)), /H must be 2×2/);
});

/** A 2:4 sparse part W_C (zeros + rounding noise), an adapter A [K][r], B [r][N], and Ŵ = W_C + (A·B)ᵀ in float64. */
function adapterCase(w: Float32Array, N: number, K: number, r: number, normal: () => number) {
  const wC = w.map((v, i) => (i % 4 < 2 ? 0 : v + 0.05 * normal()));
  const a = randomF32(K * r, () => 0.1 * normal());
  const b = randomF32(r * N, () => 0.1 * normal());
  const wHat = new Float64Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += a[k * r + j] * b[j * N + n];
      wHat[n * K + k] = wC[n * K + k] + s;
    }
  return { wC, a, b, wHat };
}
