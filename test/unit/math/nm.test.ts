import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyMask,
  checkNM,
  kthSmallest,
  MaskInputError,
  nmMask,
  unstructuredMaskGlobal,
  unstructuredMaskPerRow,
} from '../../../packages/engine/math/nm.js';
import { randomF32, rng } from './rng.js';

/** Brute force: of all C(m, n) subsets pick the one with the largest score sum, ties to the lexicographically
 * smallest index set (= keep the lower index on equal scores). */
function bruteGroup(scores: number[], n: number): number[] {
  let best: number[] = [];
  let bestSum = -Infinity;
  const m = scores.length;
  for (let bits = 0; bits < 1 << m; bits++) {
    const idx: number[] = [];
    for (let j = 0; j < m; j++) if (bits & (1 << j)) idx.push(j);
    if (idx.length !== n) continue;
    const sum = idx.reduce((s, j) => s + scores[j], 0);
    const lexSmaller = best.length === 0 || compareLex(idx, best) < 0;
    if (sum > bestSum || (sum === bestSum && lexSmaller)) {
      best = idx;
      bestSum = sum;
    }
  }
  return best;
}
function compareLex(a: number[], b: number[]) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

test('nmMask keeps the n largest of every m along a row, against brute force, on awkward shapes and ties', () => {
  const { uniform } = rng(11);
  const cases: [number, number, number, number][] = [
    [1, 4, 2, 4],
    [3, 8, 1, 2],
    [5, 12, 3, 4],
    [2, 16, 5, 8],
    [4, 10, 1, 10],
    [2, 12, 11, 12],
  ];
  for (const [rows, cols, n, m] of cases)
    for (const ties of [false, true]) {
      // With ties: scores drawn from {0, 1, 2} so equal scores are everywhere.
      const s = Float32Array.from({ length: rows * cols }, () => (ties ? Math.floor(uniform() * 3) : uniform()));
      const mask = nmMask(s, rows, cols, n, m);
      for (let r = 0; r < rows; r++)
        for (let g = 0; g < cols / m; g++) {
          const off = r * cols + g * m;
          const want = bruteGroup(Array.from(s.subarray(off, off + m)), n);
          const got: number[] = [];
          for (let j = 0; j < m; j++) if (mask[off + j]) got.push(j);
          assert.deepEqual(got, want, `${rows}×${cols} ${n}:${m} row ${r} group ${g}`);
        }
    }
});

test('nmMask with m = 32 and NaN scores: NaN is pruned before any number', () => {
  const { uniform } = rng(12);
  const s = randomF32(2 * 32, uniform);
  s[3] = NaN;
  s[40] = NaN;
  const mask = nmMask(s, 2, 32, 31, 32);
  assert.equal(mask[3], 0);
  assert.equal(mask[40], 0);
  assert.equal(
    mask.reduce((a, b) => a + b, 0),
    62,
  );
});

test('nmMask rejects invalid patterns and shapes with a typed error', () => {
  const s = new Float32Array(8);
  for (const [n, m] of [
    [0, 4],
    [4, 4],
    [5, 4],
    [1, 33],
    [1.5, 4],
  ])
    assert.throws(() => nmMask(s, 2, 4, n, m), MaskInputError, `${n}:${m}`);
  assert.throws(() => nmMask(new Float32Array(12), 2, 6, 2, 4), /multiple of 4/);
  assert.throws(() => nmMask(s, 3, 4, 2, 4), MaskInputError);
});

test('checkNM finds the first violation, counts NaN and not −0, and checks a short last group', () => {
  const w = Float32Array.from([1, 0, -0, 2, /**/ 0, 0, 0, 0, /**/ 3, 4, 0, 0]);
  assert.deepEqual(checkNM(w, 1, 12, 2, 4), { ok: true });
  assert.deepEqual(checkNM(w, 1, 12, 1, 4), { ok: false, firstViolation: { row: 0, group: 0, nonzeros: 2 } });
  const w2 = Float32Array.from([1, 0, 0, 0, NaN, 1, 0, 0]);
  assert.deepEqual(checkNM(w2, 2, 4, 1, 4), { ok: false, firstViolation: { row: 1, group: 0, nonzeros: 2 } });
  // cols = 6, m = 4: the last group has 2 columns and is checked too.
  const w3 = Float32Array.from([1, 1, 0, 0, 1, 1]);
  assert.deepEqual(checkNM(w3, 1, 6, 2, 4), { ok: true });
  assert.deepEqual(checkNM(w3, 1, 6, 1, 4), { ok: false, firstViolation: { row: 0, group: 0, nonzeros: 2 } });
  const w4 = Float32Array.from([1, 0, 0, 0, 1, 1]);
  assert.deepEqual(checkNM(w4, 1, 6, 1, 4), { ok: false, firstViolation: { row: 0, group: 1, nonzeros: 2 } });
});

test('nmMask + applyMask always pass checkNM, with exactly n survivors per group for non-zero weights', () => {
  const { normal } = rng(13);
  for (const [n, m] of [
    [2, 4],
    [1, 4],
    [4, 8],
    [7, 16],
  ]) {
    const rows = 9;
    const cols = m * 5;
    const w = randomF32(rows * cols, normal);
    const mask = nmMask(w.map(Math.abs), rows, cols, n, m);
    applyMask(w, mask);
    assert.ok(checkNM(w, rows, cols, n, m).ok);
    assert.ok(!checkNM(w, rows, cols, n - 1, m).ok);
    assert.equal(
      w.reduce((c, v) => c + (v !== 0 ? 1 : 0), 0),
      (rows * cols * n) / m,
    );
  }
  assert.throws(() => applyMask(new Float32Array(3), new Uint8Array(4)), MaskInputError);
});

test('unstructured masks: per-row and global counts and choices against a sort', () => {
  const { uniform } = rng(14);
  const rows = 7;
  const cols = 23;
  for (const ties of [false, true]) {
    const s = Float32Array.from({ length: rows * cols }, () => (ties ? Math.floor(uniform() * 4) : uniform()));
    for (const p of [0, 0.1, 0.5, 0.93]) {
      const perRow = unstructuredMaskPerRow(s, rows, cols, p);
      const count = Math.floor(cols * p);
      for (let r = 0; r < rows; r++) {
        const idx = Array.from({ length: cols }, (_, j) => j);
        idx.sort((a, b) => s[r * cols + a] - s[r * cols + b] || b - a); // prune: lowest first, ties later index first
        const pruned = new Set(idx.slice(0, count));
        for (let j = 0; j < cols; j++)
          assert.equal(perRow[r * cols + j], pruned.has(j) ? 0 : 1, `p=${p} r=${r} j=${j}`);
      }
      const global = unstructuredMaskGlobal(s, rows, cols, p);
      const all = Array.from({ length: rows * cols }, (_, i) => i);
      all.sort((a, b) => s[a] - s[b] || b - a);
      const prunedAll = new Set(all.slice(0, Math.floor(rows * cols * p)));
      for (let i = 0; i < s.length; i++) assert.equal(global[i], prunedAll.has(i) ? 0 : 1);
    }
  }
  assert.throws(() => unstructuredMaskPerRow(new Float32Array(4), 2, 2, 1), MaskInputError);
  assert.throws(() => unstructuredMaskGlobal(new Float32Array(4), 2, 2, -0.1), MaskInputError);
});

test('kthSmallest agrees with a sort, with many ties and ±Infinity', () => {
  const { uniform } = rng(15);
  for (const len of [1, 2, 3, 10, 257, 5000]) {
    for (const ties of [false, true]) {
      const a = Float64Array.from({ length: len }, () => {
        const u = uniform();
        if (u < 0.02) return -Infinity;
        if (u > 0.98) return Infinity;
        return ties ? Math.floor(u * 5) : u;
      });
      const sorted = Float64Array.from(a).sort();
      for (const k of [0, len - 1, Math.floor(len / 2), Math.floor(len / 3)])
        assert.equal(kthSmallest(Float64Array.from(a), k), sorted[k], `len=${len} k=${k}`);
    }
  }
});
