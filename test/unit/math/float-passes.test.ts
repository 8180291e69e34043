import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addDiffSquares32,
  addSquares32,
  countZeros32,
  firstNonFinite32,
  firstNonFinite64,
  firstNonFiniteAny,
} from '../../../packages/engine/math/float-passes.js';
import { randomF32, rng } from './rng.js';

test('countZeros32 counts +0 and −0 only', () => {
  assert.equal(countZeros32(Float32Array.from([0, -0, 1e-45, -1, NaN, 0])), 3);
  assert.equal(countZeros32(new Float32Array(0)), 0);
  // A view at an offset counts its own elements only; NaN, ±Infinity and the smallest subnormals are not zero.
  const v = Float32Array.from([0, 0, 1, -0, NaN, -Infinity, -1e-45, 0, 0]);
  assert.equal(countZeros32(v.subarray(1, 7)), 2);
  const { uniform } = rng(9);
  const r = randomF32(4099, () => (uniform() < 0.5 ? 0 : uniform() - 0.5));
  assert.equal(countZeros32(r), r.filter((x) => x === 0).length);
});

test('addSquares32 / addDiffSquares32 continue a running float64 sum term by term (the inline loops’ exact bits)', () => {
  const { normal } = rng(5);
  const a = randomF32(10007, () => normal() * 1e3);
  const b = randomF32(10007, normal);
  // The loops these replace: one running sum carried across calls, never a sum of partial sums.
  let want = 0.125;
  for (let i = 0; i < a.length; i++) want += a[i] * a[i];
  let got = addSquares32(0.125, a, 0, 4001);
  got = addSquares32(got, a, 4001);
  assert.equal(got, want);
  assert.equal(addSquares32(0, a), addSquares32(addSquares32(0, a.subarray(0, 3)), a, 3));
  let wantD = 0;
  for (let t = 0; t < 5000; t++) {
    const d = a[7 + t] - b[3 + t];
    wantD += d * d;
  }
  assert.equal(addDiffSquares32(addDiffSquares32(0, a, 7, b, 3, 2500), a, 2507, b, 2503, 2500), wantD);
  assert.equal(addDiffSquares32(1.5, a, 0, b, 0, 0), 1.5);
});

test('firstNonFinite32/64/Any: index of the first NaN or ±Infinity, else −1', () => {
  assert.equal(firstNonFinite32(Float32Array.from([0, -0, 3.4e38, 1e-45])), -1);
  assert.equal(firstNonFinite32(Float32Array.from([1, Infinity, NaN])), 1);
  assert.equal(firstNonFinite64(Float64Array.from([1.7e308, 2, -Infinity])), 2);
  assert.equal(firstNonFinite64(Float64Array.from([NaN])), 0);
  assert.equal(firstNonFiniteAny([1, 2, Number.NaN]), 2);
  assert.equal(firstNonFiniteAny(new Float64Array(4)), -1);
});
