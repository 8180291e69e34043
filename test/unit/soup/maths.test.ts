// Pure soup maths against small independent float64 references: masks, averaging, greedy selection, magnitude
// pruning and the SMS phase schedule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  andMaskInto,
  applyMask,
  countMaskDifferences,
  firstMaskDifference,
  nonzeroMask,
  orMaskInto,
  respectsMask,
  unravelIndex,
} from '../../../packages/engine/soup/masks.js';
import { TensorSum, averageTensors } from '../../../packages/engine/soup/average.js';
import { greedySelect, isAcceptable, rankByMetric } from '../../../packages/engine/soup/greedy.js';
import {
  magnitudeMaskPerTensor,
  pruneCount,
  pruneRemaining,
  pruneSmallest,
} from '../../../packages/engine/soup/magnitude.js';
import { phaseSparsity } from '../../../packages/engine/recipe.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sparseRandom(n: number, density: number, r: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() < density ? r() * 2 - 1 : 0;
  return out;
}

test('masks: extraction, comparison, union, intersection', () => {
  const a = nonzeroMask(Float32Array.from([0, 1, -2, 0, NaN, -0]));
  assert.deepEqual([...a], [0, 1, 1, 0, 1, 0]);
  const b = Uint8Array.from([0, 1, 0, 1, 1, 0]);
  assert.equal(firstMaskDifference(a, b), 2);
  assert.equal(firstMaskDifference(a, Uint8Array.from(a)), -1);
  assert.equal(countMaskDifferences(a, b), 2);
  const or = Uint8Array.from(a);
  orMaskInto(or, b);
  assert.deepEqual([...or], [0, 1, 1, 1, 1, 0]);
  const and = Uint8Array.from(a);
  andMaskInto(and, b);
  assert.deepEqual([...and], [0, 1, 0, 0, 1, 0]);
  assert.throws(() => firstMaskDifference(a, new Uint8Array(3)), RangeError);
  const w = Float32Array.from([5, 6, 7, 8, 9, 10]);
  assert.equal(applyMask(w, and), 4);
  assert.deepEqual([...w], [0, 6, 0, 0, 9, 0]);
  assert.ok(respectsMask(w, and));
  assert.ok(!respectsMask(Float32Array.from([1, 1, 1, 1, 1, 1]), and));
  assert.deepEqual(unravelIndex(7, [2, 4]), [1, 3]);
  assert.deepEqual(unravelIndex(0, []), []);
});

test('averaging: float64 mean, mask re-applied, soup of one is bit-identical', () => {
  const r = rng(1);
  const n = 257;
  const tensors = [0, 1, 2, 3].map(() => sparseRandom(n, 0.6, r));
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = r() < 0.5 ? 1 : 0;
  const got = averageTensors(tensors, mask);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const t of tensors) s += t[i];
    const ref = mask[i] ? Math.fround(s / tensors.length) : 0;
    assert.equal(got[i], ref, `entry ${i}`);
  }
  const one = averageTensors([tensors[0]], null);
  assert.deepEqual(one, tensors[0]);
  // candidate averaging equals committing the candidate
  const acc = new TensorSum(n);
  acc.add(tensors[0]);
  acc.add(tensors[1]);
  const withCandidate = acc.meanInto(new Float32Array(n), mask, tensors[2]);
  acc.add(tensors[2]);
  assert.deepEqual(withCandidate, acc.meanInto(new Float32Array(n), mask));
  assert.equal(acc.count, 3);
  assert.throws(() => acc.add(new Float32Array(3)), RangeError);
});

test('greedy: tie rules, ranking, order of steps', async () => {
  assert.ok(isAcceptable(0.9, 0.9, 'higher', '>='));
  assert.ok(!isAcceptable(0.9, 0.9, 'higher', '>'));
  assert.ok(isAcceptable(3, 4, 'lower', '>'));
  assert.ok(!isAcceptable(5, 4, 'lower', '>='));
  assert.ok(!isAcceptable(NaN, 4, 'lower', '>='));
  assert.deepEqual(rankByMetric([0.5, 0.9, NaN, 0.9, 0.1], 'higher'), [1, 3, 0, 4, 2]);
  assert.deepEqual(rankByMetric([3, 1, 2], 'lower'), [1, 2, 0]);

  // Soup metric = −|mean − 10| over member values: 10 is the target; brute-force the expected greedy path.
  const values = [9, 14, 11, 30, 10];
  const metricOf = (members: number[]) => -Math.abs(members.reduce((s, i) => s + values[i], 0) / members.length - 10);
  const individual = values.map((_, i) => metricOf([i]));
  for (const tie of ['>=', '>'] as const) {
    const ranked = rankByMetric(individual, 'higher');
    assert.deepEqual(ranked, [4, 0, 2, 1, 3]);
    const members: number[] = [];
    const result = await greedySelect(
      ranked,
      individual[ranked[0]],
      {
        tryAdd: async (c) => metricOf([...members, c]),
        accept: (c) => void members.push(c),
      },
      'higher',
      tie,
    );
    // reference loop written out independently
    const ref: number[] = [ranked[0]];
    let best = individual[ranked[0]];
    for (const c of ranked.slice(1)) {
      const m = metricOf([...ref, c]);
      if (tie === '>=' ? m >= best : m > best) {
        ref.push(c);
        best = m;
      }
    }
    assert.deepEqual(result.members, ref);
    assert.deepEqual(members, ref);
    assert.equal(result.metric, best);
    assert.equal(result.steps.length, values.length);
    assert.deepEqual(
      result.steps.map((s) => s.ingredient),
      ranked,
    );
    assert.ok(result.metric >= individual[ranked[0]]);
  }
  // A tie at the first step: '>=' keeps ingredient 1 and ends at {0,1,2}; '>' skips it and ends at {0,2}.
  const table: Record<string, number> = { '0': 0.8, '0,1': 0.8, '0,1,2': 0.85, '0,2': 0.9 };
  for (const [tie, expected, metric] of [
    ['>=', [0, 1, 2], 0.85],
    ['>', [0, 2], 0.9],
  ] as const) {
    const members: number[] = [];
    const r = await greedySelect(
      [0, 1, 2],
      table['0'],
      { tryAdd: async (c) => table[[...members, c].sort().join(',')], accept: (c) => void members.push(c) },
      'higher',
      tie,
    );
    assert.deepEqual(r.members, expected);
    assert.equal(r.metric, metric);
    assert.deepEqual(
      r.steps.map((st) => st.accepted),
      [true, tie === '>=', true],
    );
  }
});

function bruteSmallest(tensors: Float32Array[], eligible: Uint8Array[], k: number): Uint8Array[] {
  const entries: { a: number; t: number; i: number }[] = [];
  tensors.forEach((w, t) => w.forEach((v, i) => eligible[t][i] && entries.push({ a: Math.abs(v), t, i })));
  entries.sort((x, y) => x.a - y.a || x.t - y.t || x.i - y.i);
  const keep = eligible.map((e) => Uint8Array.from(e));
  for (const e of entries.slice(0, k)) keep[e.t][e.i] = 0;
  return keep;
}

test('magnitude pruning: exact k smallest, deterministic ties, against a sort-based reference', () => {
  const r = rng(7);
  for (let trial = 0; trial < 20; trial++) {
    const tensors = [13, 40, 7].map((n) => {
      const w = sparseRandom(n, 0.8, r);
      // quantize some values so ties at the threshold happen
      for (let i = 0; i < n; i += 3) w[i] = Math.round(w[i] * 4) / 4;
      return w;
    });
    const eligible = tensors.map((w) => nonzeroMask(w));
    const total = eligible.reduce((s, m) => s + m.reduce((a, b) => a + b, 0), 0);
    const k = Math.floor(r() * (total + 1));
    assert.deepEqual(pruneSmallest(tensors, eligible, k), bruteSmallest(tensors, eligible, k));
  }
  assert.throws(() => pruneSmallest([new Float32Array(2)], [new Uint8Array(2)], 1), RangeError);
  assert.equal(pruneCount(10, 0.25), 3);
  assert.equal(pruneCount(4, 1), 4);
});

test('next phase: remaining-weight fraction, global and per layer; per-tensor reprune masks', () => {
  const r = rng(3);
  const a = sparseRandom(100, 0.5, r);
  const b = sparseRandom(300, 0.9, r);
  const before = [a, b].map((w) => nonzeroMask(w).reduce((s, v) => s + v, 0));
  const layer = pruneRemaining([a, b], 0.4, 'layer');
  layer.forEach((m, t) => {
    const kept = m.reduce((s, v) => s + v, 0);
    assert.equal(kept, before[t] - Math.round(0.4 * before[t]));
    // a pruned soup never revives a zero
    for (let i = 0; i < m.length; i++) if ([a, b][t][i] === 0) assert.equal(m[i], 0);
  });
  const global = pruneRemaining([a, b], 0.4, 'global');
  const totalBefore = before[0] + before[1];
  const keptGlobal = global.reduce((s, m) => s + m.reduce((x, v) => x + v, 0), 0);
  assert.equal(keptGlobal, totalBefore - Math.round(0.4 * totalBefore));
  // global threshold: every kept magnitude ≥ every pruned non-zero magnitude
  let minKept = Infinity;
  let maxPruned = 0;
  [a, b].forEach((w, t) =>
    w.forEach((v, i) => {
      if (v === 0) return;
      if (global[t][i]) minKept = Math.min(minKept, Math.abs(v));
      else maxPruned = Math.max(maxPruned, Math.abs(v));
    }),
  );
  assert.ok(minKept >= maxPruned);
  const per = magnitudeMaskPerTensor([a], 0.75)[0];
  assert.equal(
    per.reduce((s, v) => s + v, 0),
    25,
  );
  // p_phase = 1 − (1 − goal)^(1/T): T phases of p_phase reach the goal
  const p = phaseSparsity(0.9, 3);
  assert.ok(Math.abs(1 - Math.pow(1 - p, 3) - 0.9) < 1e-12);
});

test('quickselect: k-th smallest equals the sorted reference, with duplicates and every rank', async () => {
  const { kthSmallest } = await import('../../../packages/engine/soup/magnitude.js');
  const r = rng(21);
  for (const n of [1, 2, 5, 17, 100, 1000]) {
    const base = Float64Array.from({ length: n }, () => Math.floor(r() * 7) / 2); // many ties
    const sorted = Float64Array.from(base).sort();
    for (let k = 0; k < n; k += Math.max(1, Math.floor(n / 13))) {
      const a = Float64Array.from(base);
      assert.equal(kthSmallest(a, k), sorted[k], `n=${n} k=${k}`);
      for (let i = 0; i < k; i++) assert.ok(a[i] <= a[k]);
      for (let i = k + 1; i < n; i++) assert.ok(a[i] >= a[k]);
    }
  }
  assert.throws(() => kthSmallest(new Float64Array(3), 3), RangeError);
});
