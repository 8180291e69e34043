import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { FidelityAccumulator, type FidelityResult } from '../../../packages/engine/metrics/fidelity.js';
import { fidelitySimdActive, useFidelitySimd } from '../../../packages/engine/metrics/fidelity-simd.js';
import { rng } from '../math/rng.js';

after(() => useFidelitySimd(true));

function fidelity(simd: boolean, batches: [Float32Array, Float32Array, number[]][]): FidelityResult {
  useFidelitySimd(simd);
  try {
    const f = new FidelityAccumulator();
    for (const [y, yHat, dims] of batches) f.add(y, yHat, dims);
    return f.result();
  } finally {
    useFidelitySimd(true);
  }
}

function closeUlps(a: number, b: number, ulps: number, what: string): void {
  if (Number.isNaN(b)) return assert.ok(Number.isNaN(a), `${what}: ${a} vs NaN`);
  const tol = ulps * Number.EPSILON * Math.abs(b);
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (diff ${a - b}, tol ${tol})`);
}

/** Neumaier-compensated Σ f(i) for i < n: the float64 reference of a long sum. */
function exactSum(n: number, f: (i: number) => number): number {
  let s = 0;
  let comp = 0;
  for (let i = 0; i < n; i++) {
    const t = f(i);
    const u = s + t;
    comp += Math.abs(s) >= Math.abs(t) ? s - u + t : t - u + s;
    s = u;
  }
  return s + comp;
}

/** Relative error and mean cosine from compensated sums over every sample (the batches' dims[0] samples each). */
function reference(batches: [Float32Array, Float32Array, number[]][]): { relativeError: number; cosine: number } {
  let d2 = 0;
  let ref2 = 0;
  const cos: number[] = [];
  for (const [y, yHat, dims] of batches) {
    const per = y.length / dims[0];
    for (let s = 0; s < dims[0]; s++) {
      const o = s * per;
      const dot = exactSum(per, (i) => y[o + i] * yHat[o + i]);
      const a2 = exactSum(per, (i) => y[o + i] * y[o + i]);
      const b2 = exactSum(per, (i) => yHat[o + i] * yHat[o + i]);
      d2 += exactSum(per, (i) => (y[o + i] - yHat[o + i]) ** 2);
      ref2 += a2;
      cos.push(dot / Math.sqrt(a2 * b2));
    }
  }
  return { relativeError: Math.sqrt(d2 / ref2), cosine: cos.reduce((a, b) => a + b, 0) / cos.length };
}

/**
 * The same counts and argmax agreement bit for bit; the float64 sums up to their rounding: both routes within
 * 2·(n·ε)^½·… of compensated sums, the kernel's no further off than the scalar loop's (plus 16 ulps).
 */
function sameResult(
  simd: FidelityResult,
  scalar: FidelityResult,
  batches: [Float32Array, Float32Array, number[]][],
  what: string,
): void {
  assert.equal(simd.samples, scalar.samples, what);
  assert.equal(simd.positions, scalar.positions, what);
  assert.equal(simd.top1Agreement, scalar.top1Agreement, `${what}: top-1`);
  const ref = reference(batches);
  for (const [got, sc, want, name] of [
    [simd.relativeError, scalar.relativeError, ref.relativeError, 'relative error'],
    [simd.cosineSimilarity, scalar.cosineSimilarity, ref.cosine, 'cosine'],
  ] as const) {
    const off = Math.abs(got - want);
    const tol = Math.abs(sc - want) + 16 * Number.EPSILON * Math.abs(want);
    assert.ok(off <= tol, `${what}: ${name} ${got} vs ${want} (scalar loop ${sc})`);
    closeUlps(got, sc, 1e4, `${what}: ${name} vs the scalar loop`);
  }
}

test('the kernel is available here (WebAssembly SIMD), so the tests below exercise it', () => {
  assert.ok(fidelitySimdActive());
});

test('LM and classifier outputs: the scalar loop’s argmax agreement exactly and its sums to float64 rounding', () => {
  const r = rng(21).normal;
  for (const dims of [
    [2, 5, 1003],
    [3, 4, 4],
    [2, 3, 7],
    [4, 5],
    [6, 3], // below 4 classes: the scalar loop
    [1, 70, 32000],
  ]) {
    const n = dims.reduce((a, b) => a * b, 1);
    const y = new Float32Array(n);
    const yHat = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = r() * 3;
      yHat[i] = i % 3 === 0 ? y[i] : y[i] + 0.3 * r();
    }
    const batches: [Float32Array, Float32Array, number[]][] = [
      [y, yHat, dims],
      [yHat, y, dims],
    ];
    const s = fidelity(true, batches);
    sameResult(s, fidelity(false, batches), batches, `[${dims.join(', ')}]`);
    assert.ok((s.top1Agreement > 0 && s.top1Agreement < 1) || dims[dims.length - 1] < 8);
  }
});

test('argmax ties, ±0, NaN and all −Inf rows pick what the scalar loop picks', () => {
  const r = rng(4).uniform;
  const classes = 11;
  const rows = 400;
  const y = new Float32Array(rows * classes);
  const yHat = new Float32Array(rows * classes);
  const special = [0, -0, NaN, -Infinity, Infinity, 1, 2, 2];
  for (let i = 0; i < y.length; i++) {
    // few distinct values: many ties, in every lane and in the tail (classes % 4 = 3)
    y[i] = r() < 0.3 ? special[Math.floor(r() * special.length)] : Math.floor(r() * 3);
    yHat[i] = r() < 0.3 ? special[Math.floor(r() * special.length)] : Math.floor(r() * 3);
  }
  y.fill(-Infinity, 0, classes);
  yHat.fill(NaN, classes, 2 * classes);
  y.fill(NaN, 2 * classes, 3 * classes);
  yHat.fill(-Infinity, 2 * classes, 3 * classes);
  const batches: [Float32Array, Float32Array, number[]][] = [[y, yHat, [rows / 4, 4, classes]]];
  const s = fidelity(true, batches);
  const sc = fidelity(false, batches);
  assert.equal(s.top1Agreement, sc.top1Agreement);
  assert.equal(s.positions, rows);
  // NaN and Inf in the sums: the same non-finite values
  assert.ok(
    Object.is(s.relativeError, sc.relativeError) || (Number.isNaN(s.relativeError) && Number.isNaN(sc.relativeError)),
  );
});

test('argmax per row agrees position by position (one differing position shows)', () => {
  const r = rng(9).normal;
  const classes = 37;
  const rows = 64;
  const y = new Float32Array(rows * classes);
  for (let i = 0; i < y.length; i++) y[i] = r();
  for (let p = 0; p < rows; p++) {
    const yHat = y.slice();
    // move this row's maximum elsewhere: exactly one position disagrees
    let best = 0;
    for (let i = 1; i < classes; i++) if (y[p * classes + i] > y[p * classes + best]) best = i;
    yHat[p * classes + ((best + 1 + (p % (classes - 1))) % classes)] = 100;
    const s = fidelity(true, [[y, yHat, [2, rows / 2, classes]]]);
    assert.equal(s.top1Agreement, (rows - 1) / rows, `row ${p}`);
  }
});
