// Latency timing (quant/latency.ts): the median's order-statistic interval against the binomial computed directly in
// float64, and when compareLatency stops and warms up, on sessions whose runs are counted (a busy-wait stands in for
// ONNX Runtime, so the counts do not depend on a model).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as ort from 'onnxruntime-node';
import {
  compareLatency,
  latencyStats,
  medianCiRanks,
  MIN_CI_RUNS,
  type LatencyOptions,
} from '../../../packages/engine/quant/latency.js';

/** P(B ≤ k) for B ~ Binomial(n, ½), from the binomial coefficients in float64. */
function binomialCdf(n: number, k: number): number {
  let c = 1;
  let sum = 0;
  for (let j = 0; j <= k; j++) {
    sum += c;
    c = (c * (n - j)) / (j + 1);
  }
  return sum / 2 ** n;
}

test('medianCiRanks: the tightest order statistics whose coverage 1 − 2·P(B ≤ k) is at least 95%', () => {
  for (let n = 1; n <= 60; n++) {
    const r = medianCiRanks(n);
    if (n < MIN_CI_RUNS) {
      assert.equal(r, undefined, `n=${n}: even the extremes cover under 95%`);
      assert.ok(1 - 2 * binomialCdf(n, 0) < 0.95);
      continue;
    }
    assert.ok(r, `n=${n}`);
    const [k, hi] = r;
    assert.equal(hi, n - 1 - k);
    assert.ok(1 - 2 * binomialCdf(n, k) >= 0.95, `n=${n}: coverage of rank ${k}`);
    assert.ok(1 - 2 * binomialCdf(n, k + 1) < 0.95, `n=${n}: rank ${k + 1} would still cover 95%`);
  }
  assert.deepEqual(medianCiRanks(6), [0, 5]);
  assert.deepEqual(medianCiRanks(20), [5, 14]); // the textbook table: ranks 6 and 15 (1-based) at n = 20
});

test('latencyStats: p50, p95, runs, and ci95 from six runs on', () => {
  assert.deepEqual(latencyStats([3, 1, 2]), { p50: 2, p95: 3, runs: 3 });
  const six = latencyStats([5, 9, 1, 7, 3, 11]);
  assert.deepEqual(six, { p50: 7, p95: 11, runs: 6, ci95: [1, 11] });
  const many = latencyStats(Array.from({ length: 20 }, (_, i) => 20 - i));
  assert.deepEqual(many.ci95, [6, 15]);
  assert.equal(many.p50, 11);
});

/**
 * A session stand-in whose run advances the simulated `clock` by `ms` and counts its calls per batch size (from the
 * feed's first dim): the counts then follow from the rules alone, however busy the machine running the test is.
 */
function fakeSession(
  ms: number,
  clock: { t: number },
  perSample = false,
): ort.InferenceSession & { calls: Map<number, number> } {
  const calls = new Map<number, number>();
  const run = async (feeds: Record<string, ort.Tensor>) => {
    const b = feeds.x.dims[0];
    calls.set(b, (calls.get(b) ?? 0) + 1);
    clock.t += perSample ? ms * b : ms;
    return {};
  };
  return { run, release: async () => {}, calls } as unknown as ort.InferenceSession & { calls: Map<number, number> };
}

const data = new Map([['x', { dtype: 'float32' as const, dims: [4, 3], data: new Float32Array(12) }]]);

async function timeFakes(
  o: LatencyOptions & { denseMs?: number; compressedMs?: number; warm?: number[]; perSample?: boolean },
) {
  const clock = { t: 0 };
  const dense = fakeSession(o.denseMs ?? 1, clock, o.perSample);
  const compressed = fakeSession(o.compressedMs ?? 1, clock, o.perSample);
  const rep = await compareLatency('dense.onnx', 'never-opened.onnx', data, {
    ...o,
    now: () => clock.t,
    openSession: async () => ({ session: dense, executionProvider: 'cpu', fallbacks: [] }),
    compressed: { session: compressed, executionProvider: 'cpu', release: async () => {}, warm: o.warm ?? [] },
  });
  return { rep, dense: dense.calls, compressed: compressed.calls };
}

test('compareLatency with a tolerance stops a batch once both medians are settled, after at least minRuns runs', async () => {
  const { rep } = await timeFakes({ batches: [1, 2], tolerance: 0.5, runs: 50, budgetSeconds: 30 });
  for (const row of rep.rows) {
    for (const s of [row.dense, row.compressed]) {
      assert.ok(s.runs >= MIN_CI_RUNS && s.runs < 50, `batch ${row.batch}: ${s.runs} runs`);
      assert.ok(s.ci95 && s.ci95[1] - s.p50 <= 0.5 * s.p50 && s.p50 - s.ci95[0] <= 0.5 * s.p50);
    }
    assert.equal(row.dense.runs, row.compressed.runs, 'interleaved rounds');
  }
  assert.match(rep.note, /ci95 was within ±50% of its p50 after at least 6 runs/);
  // minRuns past MIN_CI_RUNS is honoured; without a tolerance every batch gets `runs` runs.
  const more = await timeFakes({ batches: [1], tolerance: 0.5, minRuns: 9, budgetSeconds: 30 });
  assert.ok(more.rep.rows[0].dense.runs >= 9);
  const fixed = await timeFakes({ batches: [1], runs: 12, budgetSeconds: 30 });
  assert.equal(fixed.rep.rows[0].dense.runs, 12);
});

test('compareLatency starts no run past the budget, yet times each model once', async () => {
  // Rounds of 60 ms against a 100 ms budget: one round fits; a second would end past it.
  const { rep } = await timeFakes({ batches: [1], denseMs: 30, compressedMs: 30, budgetSeconds: 0.1, runs: 50 });
  assert.deepEqual([rep.rows[0].dense.runs, rep.rows[0].compressed.runs], [1, 1]);
  const over = await timeFakes({ batches: [1], denseMs: 80, compressedMs: 80, budgetSeconds: 0.05 });
  assert.deepEqual([over.rep.rows[0].dense.runs, over.rep.rows[0].compressed.runs], [1, 1]);
});

test('warm-ups: once per session without the CPU arena, per batch size with it; none where evaluation ran', async () => {
  const warmups = (calls: Map<number, number>, runs: Map<number, number>) =>
    [...calls].map(([b, n]) => n - (runs.get(b) ?? 0));
  const runsOf = (rep: Awaited<ReturnType<typeof timeFakes>>['rep'], which: 'dense' | 'compressed') =>
    new Map(rep.rows.map((r) => [r.batch, r[which].runs]));
  const off = await timeFakes({ batches: [1, 2], runs: 4, sessionOptions: { cpuMemArena: false }, warm: [2] });
  const [d1, d2] = warmups(off.dense, runsOf(off.rep, 'dense'));
  assert.ok(d1 >= 1 && d1 <= 3, `dense warm-ups at its first batch: ${d1}`);
  assert.equal(d2, 0, 'no warm-up at a later batch without the arena');
  assert.deepEqual(warmups(off.compressed, runsOf(off.rep, 'compressed')), [0, 0], 'the evaluated session is warm');
  assert.match(off.rep.note, /none at a later one/);
  const on = await timeFakes({ batches: [1, 2], runs: 4, warm: [2] });
  const dOn = warmups(on.dense, runsOf(on.rep, 'dense'));
  assert.ok(
    dOn.every((w) => w >= 1 && w <= 3),
    `dense warm-ups per batch with the arena: ${dOn.join()}`,
  );
  const cOn = warmups(on.compressed, runsOf(on.rep, 'compressed'));
  assert.ok(cOn[0] >= 1 && cOn[1] === 0, `compressed: warm-up at batch 1 only (2 ran in evaluation): ${cOn.join()}`);
  assert.match(on.rep.note, /and at each later one/);
});

test('a larger batch size whose runs alone would overrun the budget is not timed, for either model, and says why', async () => {
  // One model at a time (over the interleaving limit), 250 ms per model per batch size. Runs cost 20 / 30 ms per
  // sample: batch 8 would take 160 ms + its warm-up for the compressed model, over 250 ms → left out for both.
  const big = { denseBytes: 2 ** 40, budgetSeconds: 0.5, perSample: true, denseMs: 30, compressedMs: 20 };
  const { rep, dense, compressed } = await timeFakes({ ...big, batches: [1, 8] });
  assert.deepEqual(
    rep.rows.map((r) => r.batch),
    [1],
  );
  assert.equal(rep.skipped?.length, 1);
  const [skip] = rep.skipped!;
  assert.equal(skip.batch, 8);
  assert.equal(skip.budgetSeconds, 0.25);
  assert.ok(Math.abs(skip.estimatedSeconds - 0.32) < 1e-9, String(skip.estimatedSeconds)); // 2 × 8 × 20 ms
  assert.match(skip.reason, /raise evaluation\.latency\.budgetSeconds/);
  assert.equal(dense.get(8), undefined);
  assert.equal(compressed.get(8), undefined);
  // Where evaluation already ran batch 8 in the compressed session (no warm-up), 160 ms fits: both are timed.
  const warm = await timeFakes({ ...big, batches: [1, 8], warm: [8] });
  assert.deepEqual(
    warm.rep.rows.map((r) => r.batch),
    [1, 8],
  );
  assert.equal(warm.rep.skipped, undefined);
  // Small models interleave; a budget that holds batch 8 times it.
  const small = await timeFakes({ batches: [1, 8], perSample: true, budgetSeconds: 30, runs: 5 });
  assert.deepEqual(
    small.rep.rows.map((r) => r.batch),
    [1, 8],
  );
});
