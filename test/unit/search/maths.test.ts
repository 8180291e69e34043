// The pure parts of the search: space expansion and sizes, the budget, per-layer hulls and the greedy mixing path,
// the Pareto front and the choice, and the SVG plot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe, RecipeError, type SearchRecipe } from '../../../packages/engine/recipe.js';
import { choiceBytes, choiceLabel, expandSpace, stepsOf } from '../../../packages/engine/search/space.js';
import { budgetMetricLine, deltaOf, withinBudget } from '../../../packages/engine/search/budget.js';
import { layerHull, mixingPath, planAt, lastPlanWithin } from '../../../packages/engine/search/plan.js';
import { choosePoint, paretoFront, type SearchPoint } from '../../../packages/engine/search/front.js';
import { paretoSvg } from '../../../packages/engine/search/svg.js';

test('search recipe: defaults, the default space, and refusals with a JSON pointer', () => {
  const r = parseRecipe({ method: 'search', budget: { metric: 'perplexity', maxRelativeIncrease: 0.02 } });
  assert.equal(r.method, 'search');
  const s = r as SearchRecipe;
  assert.equal(s.objective, 'size');
  assert.equal(s.perLayer, true);
  assert.equal(s.maxTrials, 24);
  assert.deepEqual(s.space?.bits, [4, 8]);
  const bad = (input: unknown) => {
    try {
      parseRecipe(input);
    } catch (e) {
      assert.ok(e instanceof RecipeError);
      return e.issues.map((i) => i.path);
    }
    return assert.fail('expected a RecipeError');
  };
  assert.ok(bad({ method: 'search' }).some((p) => p === '' || p.startsWith('/budget')));
  assert.ok(bad({ method: 'search', budget: { metric: 'accuracy', maxDrop: 2 } }).some((p) => p.startsWith('/budget')));
  assert.deepEqual(
    bad({ method: 'search', budget: { metric: 'fidelity', maxOutputError: 0.1 }, space: { patterns: ['4:2'] } }),
    ['/space/patterns/0'],
  );
  assert.ok(
    bad({ method: 'search', budget: { metric: 'fidelity', maxOutputError: 0.1 }, spaec: {} }).includes('/spaec'),
  );
});

test('space expansion: every combination once, labels unique, steps are valid single-method recipes', () => {
  const all = expandSpace(undefined);
  // quantize 2 schemes × 2 bits × 2 groups; sparsity 3 criteria; N:M + int4: rtn × 3 criteria × 2 groups × 2 rank
  // ratios, gptq × sparsegpt × 2 groups × 2 rank ratios
  assert.equal(all.length, 8 + 3 + 12 + 4);
  assert.ok(all.some((c) => choiceLabel(c) === '2:4 sparsegpt + int4 g32 gptq + r0.1'));
  assert.ok(!all.some((c) => choiceLabel(c) === '2:4 wanda + int4 g32 gptq'));
  assert.equal(new Set(all.map(choiceLabel)).size, all.length);
  for (const c of all) {
    for (const step of stepsOf(c, 'size')) {
      if (step.method === 'slim' && step.lowRank?.rankRatio === 0) continue; // built directly (schema wants > 0)
      assert.doesNotThrow(() => parseRecipe(step), choiceLabel(c));
    }
  }
  const q = expandSpace({ methods: ['quantize'], bits: [4], groupSize: [32, 32, 128], schemes: ['rtn', 'slim'] });
  assert.deepEqual(q.map(choiceLabel), ['int4 g32', 'int4 g128', 'int4 slim-quant']);
  // only 8-bit in the space: N:M + int8 is then expanded (nothing smaller to prefer)
  assert.ok(
    expandSpace({ methods: ['slim'], bits: [8], rankRatio: [0] }).every((c) => c.kind === 'slim' && c.bits === 8),
  );
});

test('choice bytes: codes + fp32 scales, packed 2:4 = half the values + 2-bit positions, adapters fp16', () => {
  const N = 64;
  const K = 256;
  assert.equal(choiceBytes('dense', N, K, 4), N * K * 4);
  assert.equal(
    choiceBytes({ kind: 'quantize', bits: 4, groupSize: 32, scheme: 'rtn' }, N, K, 4),
    (N * K) / 2 + N * 8 * 4,
  );
  assert.equal(choiceBytes({ kind: 'sparsity', pattern: '2:4', criterion: 'wanda' }, N, K, 4), N * K * 2 + (N * K) / 8);
  const slim = { kind: 'slim', pattern: '2:4', criterion: 'wanda', bits: 4, groupSize: 128, scheme: 'rtn' } as const;
  // 2:4 + int4 is stored packed: 3 bits per weight of codes
  assert.equal(choiceBytes({ ...slim, rankRatio: 0 }, N, K, 4), (N * K * 3) / 8 + N * 2 * 4);
  assert.equal(choiceBytes({ ...slim, rankRatio: 0.1 }, N, K, 4), (N * K * 3) / 8 + N * 2 * 4 + 6 * (N + K) * 2);
});

test('budget: deltas are signed so that larger is worse; the edge counts as met', () => {
  const ppl = { metric: 'perplexity', maxRelativeIncrease: 0.02 } as const;
  assert.ok(Math.abs(deltaOf(ppl, 10.2, 10) - 0.02) < 1e-12);
  assert.equal(withinBudget(ppl, deltaOf(ppl, 10.2, 10)), true);
  assert.equal(withinBudget(ppl, deltaOf(ppl, 10.21, 10)), false);
  assert.equal(budgetMetricLine(ppl, 10), 10.2);
  const acc = { metric: 'accuracy', maxDrop: 0.01 } as const;
  assert.ok(Math.abs(deltaOf(acc, 0.9, 0.905) - 0.005) < 1e-12);
  assert.equal(withinBudget(acc, deltaOf(acc, 0.91, 0.905)), true); // better than dense
  const fid = { metric: 'fidelity', maxOutputError: 0.05 } as const;
  assert.equal(deltaOf(fid, 0.04, 0), 0.04);
  assert.equal(withinBudget(fid, NaN), false);
});

test('layer hull: Pareto then lower convex in (bytes, ε²), dense first', () => {
  const hull = layerHull([
    { choice: -1, bytes: 100, error: 0 },
    { choice: 0, bytes: 50, error: 0.1 }, // damage 0.01
    { choice: 1, bytes: 60, error: 0.2 }, // dominated by choice 0
    { choice: 2, bytes: 30, error: 0.5 }, // 0.25: above the chord from 0 to 3, so not convex
    { choice: 3, bytes: 20, error: 0.55 }, // 0.3025
    { choice: 4, bytes: 25, error: Infinity }, // unusable
  ]);
  assert.deepEqual(
    hull.map((o) => o.choice),
    [-1, 0, 3],
  );
});

test('mixing path: bytes fall and damage rises monotonically, plans match their sums, cheapest damage first', () => {
  const rand = (() => {
    let s = 7;
    return () => ((s = (s * 1103515245 + 12345) % 2 ** 31), s / 2 ** 31);
  })();
  const tables = Array.from({ length: 6 }, (_, l) => ({
    name: `l${l}`,
    options: [
      { choice: -1, bytes: 1000, error: 0 },
      ...[0, 1, 2].map((c) => ({ choice: c, bytes: 1000 / 2 ** (c + 1), error: (c + 1) * 0.05 * (1 + 3 * rand()) })),
    ],
  }));
  const path = mixingPath(tables);
  for (let s = 1; s < path.bytes.length; s++) {
    assert.ok(path.bytes[s] < path.bytes[s - 1]);
    assert.ok(path.damage[s] >= path.damage[s - 1]);
    assert.ok(path.moves[s - 1].price >= (path.moves[s - 2]?.price ?? 0));
  }
  for (const s of [0, 3, path.moves.length]) {
    const plan = planAt(path, s);
    let bytes = 0;
    let damage = 0;
    plan.forEach((c, l) => {
      const o = tables[l].options.find((x) => x.choice === c)!;
      bytes += o.bytes;
      damage += o.error ** 2;
    });
    assert.ok(Math.abs(bytes - path.bytes[s]) < 1e-9);
    assert.ok(Math.abs(damage - path.damage[s]) < 1e-12);
  }
  assert.deepEqual(planAt(path, 0), [-1, -1, -1, -1, -1, -1]);
  assert.ok(planAt(path, path.moves.length).every((c) => c >= 0));
  assert.equal(lastPlanWithin(path, path.damage[4]), 4);
  // The first move is the cheapest damage per byte saved of any layer's first move.
  const firstPrices = path.hulls.map((h) => (h[1].error ** 2 - h[0].error ** 2) / (h[0].bytes - h[1].bytes));
  assert.equal(path.moves[0].price, Math.min(...firstPrices));
});

function point(trial: number, bytes: number, delta: number, within: boolean): SearchPoint {
  return {
    trial,
    kind: 'uniform',
    plan: {},
    bytes,
    bitsPerWeight: 4,
    latency: null,
    metric: 10 + delta,
    delta,
    withinBudget: within,
    proxy: delta,
    seconds: 1,
  };
}

test('front and choice: least cost within budget; dominated points are off the front', () => {
  const pts = [
    point(1, 100, 0.01, true),
    point(2, 80, 0.03, false),
    point(3, 90, 0.02, true),
    point(4, 95, 0.025, true),
  ];
  assert.deepEqual(
    paretoFront(pts, 'size').map((p) => p.trial),
    [2, 3, 1],
  );
  assert.equal(choosePoint(pts, 'size')?.trial, 3);
  assert.equal(choosePoint([point(1, 1, 1, false)], 'size'), undefined);
});

test('pareto.svg: one panel per measured axis, budget line, chosen ring, escaped labels', () => {
  const pts = [point(1, 2e6, 0.01, true), point(2, 1e6, 0.05, false)];
  const svg = paretoSvg({
    points: pts,
    metricName: 'perplexity <&>',
    dense: { bytes: 4e6, metric: 10, latency: null },
    budgetLine: 10.02,
    chosenTrial: 1,
    title: 'test',
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal((svg.match(/class="budget"/g) ?? []).length, 1);
  assert.equal((svg.match(/class="chosen"/g) ?? []).length, 1);
  assert.equal((svg.match(/class="point"/g) ?? []).length, 2);
  assert.ok(svg.includes('perplexity &lt;&amp;&gt;'));
  assert.ok(!svg.includes('NaN'));
  const withLatency = paretoSvg({
    points: pts.map((p) => ({ ...p, latency: { batch1: 1.5, batch8: 4 } })),
    metricName: 'perplexity',
    dense: { bytes: 4e6, metric: 10, latency: 3 },
    budgetLine: 10.02,
    chosenTrial: null,
    title: 'latency',
  });
  assert.equal((withLatency.match(/class="budget"/g) ?? []).length, 2);
  assert.ok(withLatency.includes('latency p50, batch 1 (ms)'));
});
