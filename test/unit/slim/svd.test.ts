import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomizedSvd, svdGram, svdJacobi, truncatedSvd, type Svd } from '../../../packages/engine/math/svd.js';

function randn(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float64Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r()));
}

/** ‖A − U_r Σ_r V_rᵀ‖_F in float64 (brute force). */
function residual(a: ArrayLike<number>, m: number, n: number, svd: Svd, rank = svd.rank): number {
  let ss = 0;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let v = a[i * n + j];
      for (let r = 0; r < rank; r++) v -= svd.u[i * svd.rank + r] * svd.s[r] * svd.v[j * svd.rank + r];
      ss += v * v;
    }
  return Math.sqrt(ss);
}

function maxOffOrthogonality(x: Float64Array, rows: number, cols: number, upTo = cols): number {
  let worst = 0;
  for (let p = 0; p < upTo; p++)
    for (let q = 0; q < upTo; q++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += x[i * cols + p] * x[i * cols + q];
      worst = Math.max(worst, Math.abs(d - (p === q ? 1 : 0)));
    }
  return worst;
}

/** Orthonormal columns (rows×k) by modified Gram–Schmidt of Gaussian vectors, column-major. */
function orthonormalColumns(rows: number, k: number, seed: number): Float64Array {
  const c = randn(rows * k, seed);
  for (let j = 0; j < k; j++) {
    const cj = c.subarray(j * rows, (j + 1) * rows);
    for (let p = 0; p < j; p++) {
      const cp = c.subarray(p * rows, (p + 1) * rows);
      let d = 0;
      for (let i = 0; i < rows; i++) d += cj[i] * cp[i];
      for (let i = 0; i < rows; i++) cj[i] -= d * cp[i];
    }
    let nn = 0;
    for (let i = 0; i < rows; i++) nn += cj[i] * cj[i];
    for (let i = 0; i < rows; i++) cj[i] /= Math.sqrt(nn);
  }
  return c;
}

/**
 * A with singular values decay^i + 0.02 (a decaying head over a noise floor, what weight errors look like);
 * decay = 0 gives a plain Gaussian matrix (Marchenko–Pastur spectrum: no gap at all).
 */
function spectrumMatrix(m: number, n: number, decay: number, seed: number): Float64Array {
  if (decay === 0) return randn(m * n, seed);
  const k = Math.min(m, n);
  const x = orthonormalColumns(m, k, seed);
  const y = orthonormalColumns(n, k, seed + 1);
  const a = new Float64Array(m * n);
  for (let r = 0; r < k; r++) {
    const s = decay ** r + 0.02;
    const xr = x.subarray(r * m, (r + 1) * m);
    const yr = y.subarray(r * n, (r + 1) * n);
    for (let i = 0; i < m; i++) {
      const f = xr[i] * s;
      for (let j = 0; j < n; j++) a[i * n + j] += f * yr[j];
    }
  }
  return a;
}

test('one-sided Jacobi: exact reconstruction, orthonormal factors, descending values (tall and wide)', () => {
  for (const [m, n] of [
    [12, 7],
    [7, 12],
    [9, 9],
  ]) {
    const a = randn(m * n, m * 31 + n);
    const svd = svdJacobi(a, m, n);
    assert.ok(residual(a, m, n, svd) < 1e-12 * Math.sqrt(m * n), `${m}x${n}`);
    assert.ok(maxOffOrthogonality(svd.u, m, svd.rank) < 1e-12);
    assert.ok(maxOffOrthogonality(svd.v, n, svd.rank) < 1e-12);
    for (let r = 1; r < svd.rank; r++) assert.ok(svd.s[r] <= svd.s[r - 1]);
  }
  // Known values: diag(3, 2, 1) padded.
  const d = new Float64Array(12);
  d[0] = 3;
  d[4 + 1] = -2;
  d[8 + 2] = 1;
  assert.deepEqual(
    Array.from(svdJacobi(d, 3, 4).s, (v) => +v.toFixed(12)),
    [3, 2, 1],
  );
});

test('exact Gram route agrees with Jacobi on the top singular triplets and the truncation error', async () => {
  for (const [m, n, rank] of [
    [40, 30, 6],
    [30, 40, 6],
  ]) {
    const a = spectrumMatrix(m, n, 0.8, 5);
    const ref = svdJacobi(a, m, n);
    const g = await svdGram(a, m, n, rank);
    for (let r = 0; r < rank; r++) assert.ok(Math.abs(g.s[r] - ref.s[r]) < 1e-10 * ref.s[0]);
    const eRef = residual(a, m, n, ref, rank);
    const eG = residual(a, m, n, g);
    assert.ok(Math.abs(eG - eRef) < 1e-9 * eRef, `${eG} vs ${eRef}`);
  }
});

test('randomized truncated SVD: error against the exact optimum (numbers printed), oversample 10, power 0–2', async () => {
  const rows: string[] = [];
  for (const [m, n, rank, decay] of [
    [300, 200, 20, 0.9],
    [200, 300, 20, 0.97],
    [256, 256, 25, 0], // Gaussian: no spectral gap, the hardest case for a range finder
  ]) {
    const a = spectrumMatrix(m, n, decay, 9);
    const exact = await svdGram(a, m, n, rank);
    const eExact = residual(a, m, n, exact);
    for (const power of [0, 1, 2]) {
      const rs = await randomizedSvd(Float32Array.from(a), m, n, rank, { power });
      const ratio = residual(a, m, n, rs) / eExact;
      rows.push(`${m}x${n} r=${rank} decay=${decay} power=${power}: ‖A−A_r‖ rand/exact = ${ratio.toFixed(5)}`);
      assert.ok(ratio >= 1 - 1e-4, 'cannot beat the Eckart–Young optimum (beyond fp32 round-off)');
      if (power === 2) assert.ok(ratio < 1.02, `power 2 within 2% of optimal: ${ratio}`);
      if (power === 0 && decay === 0.9) assert.ok(ratio > 1.05, 'without power iterations the error is visibly worse');
      assert.ok(maxOffOrthogonality(rs.u, m, rank) < 1e-4);
    }
  }
  console.log(rows.join('\n'));
});

test('truncatedSvd picks a route by size; bad shapes are typed errors', async () => {
  const a = Float32Array.from(randn(20 * 10, 3));
  assert.equal((await truncatedSvd(a, 20, 10, 3)).method, 'exact');
  assert.equal((await truncatedSvd(a, 20, 10, 3, { method: 'randomized' })).method, 'randomized');
  assert.equal((await truncatedSvd(a, 20, 10, 3, { method: 'jacobi' })).s.length, 3);
  await assert.rejects(truncatedSvd(a, 20, 10, 11), /rank 11/);
  assert.throws(() => svdJacobi(new Float64Array(5), 2, 3), /expected 6/);
  // Rank-deficient input: the range finder's shifted CholeskyQR still returns the exact low-rank factors.
  const low = new Float32Array(60 * 40);
  for (let i = 0; i < 60; i++) for (let j = 0; j < 40; j++) low[i * 40 + j] = (i + 1) * (j % 3 === 0 ? 1 : -0.5);
  const rs = await randomizedSvd(low, 60, 40, 5);
  assert.ok(residual(low, 60, 40, rs) < 1e-5 * 1230, 'fp32-level relative residual (‖A‖ ≈ 1230)');
});
