import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cholesky,
  choleskyInverse,
  choleskyUpper,
  inverseCholeskyUpper,
  inverseCholeskyUpperF32,
  inverseCholeskyUpperWithFactor,
  invSqrtmSPD,
  LinalgShapeError,
  NotPositiveDefiniteError,
  sqrtmSPD,
  symmetricEigen,
  symmetricEigenRows,
  triangularSolve,
} from '../../../packages/engine/math/linalg.js';
import { matmulF64 } from '../../../packages/engine/math/gemm.js';
import { matmulRef, maxAbs, maxAbsDiff, randomSpd, rng } from './rng.js';
import { symmetricEigenRowsReference } from './eigen-reference.js';

/** Checks use the triple loop; the largest size uses ORT's GEMM (itself tested against the triple loop) for time. */
function product(a: Float64Array, b: Float64Array, n: number, transA = false, transB = false) {
  return n > 300
    ? matmulF64(a, b, n, n, n, { transA, transB })
    : Promise.resolve(matmulRef(a, b, n, n, n, transA, transB));
}

// Sizes below, at and above the recursion bases (96 for the factorisation, 192 for triangular products).
const sizes = [1, 2, 7, 96, 97, 161, 250, 421]; // 421: the triangular products recurse too (> 2·192)

function identityError(p: Float64Array, n: number): number {
  let e = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) e = Math.max(e, Math.abs(p[i * n + j] - (i === j ? 1 : 0)));
  return e;
}

test('cholesky: lower factor reconstructs A; choleskyUpper is its transpose', async () => {
  for (const n of sizes) {
    const a = randomSpd(n, n);
    const l = await cholesky(a, n);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) assert.equal(l[i * n + j], 0, `upper entry ${i},${j}`);
    for (let i = 0; i < n; i++) assert.ok(l[i * n + i] > 0);
    assert.ok(maxAbsDiff(await product(l, l, n, false, true), a) < 1e-12 * maxAbs(a), `n=${n}`);
    const u = await choleskyUpper(a, n);
    assert.ok(maxAbsDiff(await product(u, u, n, true, false), a) < 1e-12 * maxAbs(a));
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
  }
});

test('choleskyInverse: A·A⁻¹ = I; inverseCholeskyUpper: upper U with UᵀU = A⁻¹', async () => {
  for (const n of sizes) {
    const a = randomSpd(n, 100 + n);
    const inv = await choleskyInverse(a, n);
    assert.ok(identityError(await product(a, inv, n), n) < 1e-10, `n=${n}`);
    const u = await inverseCholeskyUpper(a, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
    for (let i = 0; i < n; i++) assert.ok(u[i * n + i] > 0);
    assert.ok(maxAbsDiff(await product(u, u, n, true, false), inv) < 1e-12 * maxAbs(inv) * n, `n=${n}`);
    // With the factor: V = U⁻¹ upper and V·Vᵀ = A, in fp32 (fp32 or float64 factorisation).
    for (const f32 of [true, false]) {
      const r = await inverseCholeskyUpperWithFactor(a, n, f32);
      const v = Float64Array.from(r.v);
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(v[i * n + j], 0);
      const tol = (f32 ? 1e-5 : 1e-6) * n;
      assert.ok(maxAbsDiff(await product(v, v, n, false, true), a) < tol * maxAbs(a), `n=${n} f32=${f32}`);
      assert.ok(identityError(await product(Float64Array.from(r.u), v, n), n) < tol, `n=${n} f32=${f32}`);
    }
  }
});

test('an indefinite matrix throws NotPositiveDefiniteError naming the failing pivot', async () => {
  for (const n of [5, 150]) {
    const a = randomSpd(n, 7);
    const bad = n - 2;
    // Make the trailing 2×2 block indefinite: rank-deficient Schur complement with a negative direction.
    a[bad * n + bad] = -1e6;
    await assert.rejects(cholesky(a, n), (e: unknown) => {
      assert.ok(e instanceof NotPositiveDefiniteError);
      assert.equal(e.name, 'NotPositiveDefiniteError');
      assert.equal(e.pivot, bad);
      return true;
    });
    await assert.rejects(inverseCholeskyUpper(a, n), NotPositiveDefiniteError);
  }
  await assert.rejects(cholesky(new Float64Array(5), 2), LinalgShapeError);
});

test('triangularSolve: all four (lower|upper)×(T|Tᵀ) combinations against multiplication', () => {
  const n = 9;
  const nrhs = 3;
  const { normal } = rng(5);
  const lower = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) lower[i * n + j] = i === j ? 2 + Math.abs(normal()) : normal();
  const upper = Float64Array.from({ length: n * n }, (_, idx) => lower[(idx % n) * n + Math.floor(idx / n)]);
  for (const [t, isLower] of [
    [lower, true],
    [upper, false],
  ] as const)
    for (const transpose of [false, true]) {
      const x = Float64Array.from({ length: n * nrhs }, normal);
      const b = matmulRef(t, x, n, n, nrhs, transpose, false);
      triangularSolve(t, n, b, nrhs, { lower: isLower, transpose });
      assert.ok(maxAbsDiff(b, x) < 1e-12, `lower=${isLower} transpose=${transpose}`);
    }
});

test('symmetricEigen: A·V = V·Λ, VᵀV = I, ascending values; known spectra', async () => {
  for (const n of [1, 2, 5, 40, 120]) {
    const a = randomSpd(n, 200 + n, 0.01);
    const { values, vectors } = symmetricEigen(a, n);
    for (let i = 1; i < n; i++) assert.ok(values[i] >= values[i - 1]);
    assert.ok(identityError(matmulRef(vectors, vectors, n, n, n, true, false), n) < 1e-10);
    const av = matmulRef(a, vectors, n, n, n);
    const vl = Float64Array.from(vectors, (v, idx) => v * values[idx % n]);
    assert.ok(maxAbsDiff(av, vl) < 1e-10 * maxAbs(a), `n=${n}`);
  }
  // Diagonal and a repeated-eigenvalue case.
  const d = Float64Array.from([3, 0, 0, 0, -1, 0, 0, 0, 2]);
  assert.deepEqual([...symmetricEigen(d, 3).values], [-1, 2, 3]);
  const rep = Float64Array.from([2, 1, 1, 1, 2, 1, 1, 1, 2]); // eigenvalues 1, 1, 4
  const ev = symmetricEigen(rep, 3).values;
  assert.ok(maxAbsDiff(ev, [1, 1, 4]) < 1e-12);
});

test('symmetricEigenRows is symmetricEigen with the eigenvectors as rows', () => {
  for (const n of [1, 7, 90]) {
    const a = randomSpd(n, 300 + n, 0.01);
    const cols = symmetricEigen(a, n);
    const rows = symmetricEigenRows(a, n);
    assert.deepEqual(rows.values, cols.values);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) assert.equal(rows.vectors[j * n + i], cols.vectors[i * n + j]);
  }
});

test('symmetricEigenRows: the same bits as the row-by-row, rotation-by-rotation JAMA loops', () => {
  // Odd and even sizes (the paired / four-row loops and their tails), random symmetric, PSD Gram matrices as the
  // Rayleigh–Ritz step makes them, diagonal and partly zero ones (tred2's scale-0 branch).
  const r = rng(5).uniform;
  for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 64, 97, 112, 214]) {
    const cases: Float64Array[] = [randomSpd(n, 400 + n, 0.01)];
    const sym = new Float64Array(n * n);
    const diag = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      diag[i * n + i] = i % 3;
      for (let j = 0; j <= i; j++) sym[i * n + j] = sym[j * n + i] = r() - 0.5;
    }
    cases.push(sym, diag);
    for (const a of cases) {
      const got = symmetricEigenRows(a, n);
      const want = symmetricEigenRowsReference(a, n);
      assert.ok(
        got.values.every((v, i) => Object.is(v, want.values[i])),
        `values n=${n}`,
      );
      assert.ok(
        got.vectors.every((v, i) => Object.is(v, want.vectors[i])),
        `vectors n=${n}`,
      );
    }
  }
});

test('sqrtmSPD and invSqrtmSPD reconstruct A and A⁻¹', async () => {
  const n = 30;
  const a = randomSpd(n, 9);
  const s = await sqrtmSPD(a, n);
  assert.ok(maxAbsDiff(matmulRef(s, s, n, n, n), a) < 1e-10 * maxAbs(a));
  const is = await invSqrtmSPD(a, n);
  assert.ok(identityError(matmulRef(matmulRef(is, a, n, n, n), is, n, n, n), n) < 1e-10);
  // PSD with a zero eigenvalue: sqrt is fine, inverse sqrt is an error.
  const psd = Float64Array.from([1, 1, 1, 1]);
  const sp = await sqrtmSPD(psd, 2);
  assert.ok(maxAbsDiff(matmulRef(sp, sp, 2, 2, 2), psd) < 1e-12);
  await assert.rejects(invSqrtmSPD(psd, 2), NotPositiveDefiniteError);
  await assert.rejects(sqrtmSPD(Float64Array.from([1, 0, 0, -1]), 2), NotPositiveDefiniteError);
});

test('inverseCholeskyUpperF32: fp32 factor with UᵀU ≈ A⁻¹; an indefinite matrix still throws', async () => {
  for (const n of [7, 250, 421]) {
    const a = randomSpd(n, 300 + n);
    const inv = await choleskyInverse(a, n);
    const u = await inverseCholeskyUpperF32(a, n);
    assert.ok(u instanceof Float32Array);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
    const utu = await product(Float64Array.from(u), Float64Array.from(u), n, true, false);
    assert.ok(maxAbsDiff(utu, inv) < 1e-4 * maxAbs(inv), `n=${n}: ${maxAbsDiff(utu, inv)} vs ${maxAbs(inv)}`);
  }
  const bad = randomSpd(150, 8);
  bad[148 * 150 + 148] = -1e6;
  await assert.rejects(inverseCholeskyUpperF32(bad, 150), NotPositiveDefiniteError);
});

test('recycled scratch: concurrent and repeated factorisations (also after a failed one) give identical results', async () => {
  const sizes = [300, 611, 300];
  const as = sizes.map((n, i) => randomSpd(n, 500 + i));
  const seq = [];
  for (let i = 0; i < sizes.length; i++) seq.push(await inverseCholeskyUpperWithFactor(as[i], sizes[i], true));
  const bad = randomSpd(300, 8);
  bad[290 * 300 + 290] = -1e6;
  const [, ...conc] = await Promise.allSettled([
    inverseCholeskyUpperF32(bad, 300),
    ...sizes.map((n, i) => inverseCholeskyUpperWithFactor(as[i], n, true)),
  ]);
  for (let i = 0; i < sizes.length; i++) {
    const c = conc[i];
    assert.equal(c.status, 'fulfilled');
    if (c.status !== 'fulfilled') continue;
    assert.deepEqual(c.value.u, seq[i].u);
    assert.deepEqual(c.value.v, seq[i].v);
  }
  const again = await inverseCholeskyUpperF32(as[1], sizes[1]);
  assert.deepEqual(again, seq[1].u);
  const li = await choleskyInverse(as[0], sizes[0]);
  assert.deepEqual(await choleskyInverse(as[0], sizes[0]), li);
});
