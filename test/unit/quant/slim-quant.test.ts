import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clipQuantError,
  coarseToFine,
  referenceBins,
  slimQuantAlpha,
} from '../../../packages/engine/quant/slim-quant.js';

function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r()));
}

/** The reference objective written out independently: density histogram, floor-rounding model, clip term. */
function objectiveAt(w: Float32Array, bins: number, i: number, bits: number): { alpha: number; err: number } {
  const abs = Array.from(w, Math.abs);
  const lo = Math.min(...abs);
  const hi = Math.max(...abs);
  const width = (hi - lo) / bins;
  const pdf = new Array<number>(bins).fill(0);
  for (const a of abs) pdf[Math.min(bins - 1, Math.floor((a - lo) / width))] += 1 / (w.length * width);
  const val = pdf.map((_, b) => lo + (b + 0.5) * width);
  const alpha = val[i];
  const delta = alpha / 2 ** bits;
  let err = 0;
  for (let j = 0; j < bins; j++) {
    if (j < i) err += pdf[j] * (val[j] - Math.floor(val[j] / delta) * delta) ** 2;
    else err += pdf[j] * (val[j] - alpha) ** 2;
  }
  return { alpha, err: err * width };
}

test('coarse-to-fine search: the empty-range guard when the best coarse candidate is the last one', () => {
  // 100 candidates (bins % 10 == 0), objective decreasing to the end: the reference's scan range would be empty
  // and it would return index 0; the guarded search scans to the end and finds 99.
  assert.equal(coarseToFine(100, (i) => -i).index, 99);
  assert.equal(coarseToFine(100, (i) => (i - 37) ** 2).index, 37);
  assert.equal(coarseToFine(105, (i) => (i - 104) ** 2).index, 104);
  assert.equal(coarseToFine(3, (i) => (i - 1) ** 2).index, 1);
  assert.equal(referenceBins(10), 512);
  assert.equal(referenceBins(16_777_216), 16777);
  assert.equal(referenceBins(1e9), 20000);
});

test('histogram objective: α and objective match an independent evaluation, and the search finds the scan minimum', () => {
  const w = randn(4000, 1);
  const bins = 200;
  for (const bits of [4, 8] as const) {
    const r = slimQuantAlpha(w, { bits, bins });
    // The minimum over every candidate the search could have scanned is what it returns (unimodal objective).
    let best = { alpha: 0, err: Infinity };
    for (let i = 0; i < bins; i++) {
      const o = objectiveAt(w, bins, i, bits);
      if (o.err < best.err) best = o;
    }
    assert.ok(Math.abs(r.alpha - best.alpha) < 1e-9, `bits ${bits}: α ${r.alpha} vs ${best.alpha}`);
    assert.ok(Math.abs(r.objective - best.err) <= 1e-9 * best.err);
    assert.ok(r.evaluated < bins, 'coarse + fine evaluates fewer than all bins');
  }
  // 4-bit clips Gaussian tails; 8-bit clips far less.
  const a4 = slimQuantAlpha(w, { bits: 4 }).alpha;
  const a8 = slimQuantAlpha(w, { bits: 8 }).alpha;
  const max = Math.max(...Array.from(w, Math.abs));
  assert.ok(a4 < 0.8 * max && a4 > 0.3 * max, `α4 = ${a4}, max = ${max}`);
  assert.ok(a8 > a4);
});

test('exact objective: the chosen α beats absmax and equals the exhaustive scan', () => {
  const w = randn(3000, 2);
  const max = Math.max(...Array.from(w, Math.abs));
  const r = slimQuantAlpha(w, { bits: 4, objective: 'exact', candidates: 120 });
  let best = Infinity;
  for (let i = 0; i < 120; i++) best = Math.min(best, clipQuantError(w, (max * i) / 119, 4));
  assert.ok(Math.abs(r.objective - best) <= 1e-9 * best, `${r.objective} vs ${best}`);
  assert.ok(r.objective < clipQuantError(w, max, 4));
  // Independent check of clipQuantError on a tiny case: α = 7 → step 1, codes clamp to [-8, 7].
  assert.equal(clipQuantError(new Float32Array([0.25, 10, -10, 2.75]), 7, 4), 0.0625 + 9 + 4 + 0.0625);
});

test('degenerate inputs: zeros, one value, empty', () => {
  assert.equal(slimQuantAlpha(new Float32Array(10), { bits: 4 }).alpha, 0);
  assert.equal(slimQuantAlpha(new Float32Array([2, -2, 2]), { bits: 4 }).alpha, 2);
  assert.equal(slimQuantAlpha(new Float32Array(0), { bits: 4 }).alpha, 0);
  assert.throws(() => slimQuantAlpha(new Float32Array([1, NaN]), { bits: 4 }), /non-finite/);
});
