// The claim of issue 5 on a classifier trained here (test/helpers/soup-fixtures.ts: a 16-64-64-3 MLP on a 3-arm
// spiral, pruned 2:4, six variants fine-tuned with the mask fixed): the greedy soup's held-out accuracy is at least
// the best single ingredient's, the sparsity is preserved exactly, and uniform vs greedy are both reported. The soup's
// weights are checked against an independent float64 average of the member files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeModel, loadModel } from '../../../packages/engine/onnx/model.js';
import {
  INGREDIENTS,
  WEIGHT_NAMES,
  accuracyOf,
  cook,
  fixture,
  manifest,
  scratchDir,
  weightValues,
  type CookResult,
} from '../../helpers/soup-harness.js';

let dir: string;
let cleanup: () => Promise<void>;
let greedy: CookResult;
let uniform: CookResult;

before(async () => {
  ({ dir, cleanup } = await scratchDir());
  const common = { maskPolicy: 'require-shared', metric: 'accuracy', tie: '>=' } as const;
  greedy = await cook({
    paths: INGREDIENTS,
    settings: { ...common, mode: 'greedy' },
    dir,
    name: 'greedy.onnx',
    evalPath: fixture('val.npz'),
  });
  uniform = await cook({
    paths: INGREDIENTS,
    settings: { ...common, mode: 'uniform' },
    dir,
    name: 'uniform.onnx',
    evalPath: fixture('val.npz'),
  });
});

after(async () => {
  closeModel(greedy.soup);
  closeModel(uniform.soup);
  await cleanup();
});

test('greedy soup: held-out accuracy ≥ the best ingredient, steps in rank order with the metric after each', async () => {
  const r = greedy.report;
  const metrics = r.ingredients.map((i) => i.metric!);
  const best = Math.max(...metrics);
  assert.ok(r.soup.metric! >= best, `soup ${r.soup.metric} < best ingredient ${best}`);
  assert.equal(r.soup.metric, r.greedy!.metric);
  // ingredient metrics agree with the float64 trainer's own accuracy (ORT float32 may flip a borderline sample)
  r.ingredients.forEach((ing, i) => assert.ok(Math.abs(ing.metric! - manifest.variants[i].val) <= 0.002, ing.path));
  // rank order best first, first step is the best alone, every later step accepted iff not worse
  const order = r.greedy!.order;
  assert.deepEqual(
    order,
    [...order].sort((a, b) => metrics[b] - metrics[a] || a - b),
  );
  assert.equal(r.greedy!.steps[0].ingredient, order[0]);
  let current = metrics[order[0]];
  for (const step of r.greedy!.steps.slice(1)) {
    assert.equal(step.accepted, step.metric >= current, `step ${step.ingredient}`);
    if (step.accepted) current = step.metric;
  }
  assert.deepEqual(
    r.greedy!.members,
    r.greedy!.steps.filter((s) => s.accepted).map((s) => s.ingredient),
  );
  // the saved file scores the same, measured by a fresh scorer
  assert.equal(await accuracyOf(greedy.outPath, fixture('val.npz'), dir), r.soup.metric);
  const test = {
    greedy: await accuracyOf(greedy.outPath, fixture('test.npz'), dir),
    uniform: await accuracyOf(uniform.outPath, fixture('test.npz'), dir),
    bestByVal: await accuracyOf(INGREDIENTS[order[0]], fixture('test.npz'), dir),
  };
  console.log(
    `val: ingredients ${metrics.join(' ')} | uniform ${r.uniform.metric} | greedy ${r.soup.metric} ` +
      `(members ${r.greedy!.members.join(',')}) || test: best-by-val ingredient ${test.bestByVal}, ` +
      `uniform ${test.uniform}, greedy ${test.greedy}`,
  );
});

test('sparsity is preserved exactly: the soup has the parent zero pattern, nothing more, nothing less', async () => {
  const parent = await loadModel(fixture('parent.onnx'));
  try {
    for (const soup of [greedy, uniform]) {
      for (const name of WEIGHT_NAMES) {
        const p = weightValues(parent, name);
        const s = weightValues(soup.soup, name);
        for (let i = 0; i < p.length; i++) {
          assert.equal(s[i] === 0, p[i] === 0, `${name}[${i}]: soup ${s[i]} vs parent ${p[i]}`);
        }
      }
      const r = soup.report;
      assert.equal(r.soup.sparsity, r.ingredients[0].sparsity);
      assert.equal(r.soup.sparsity, 0.5);
      assert.ok(r.soup.maskRespected && r.soup.sparsityPreserved);
      assert.ok(r.maskCheck.sharedExactly);
      assert.match(r.maskCheck.result, /all 6 ingredients share one zero pattern over 3 weights/);
    }
  } finally {
    closeModel(parent);
  }
});

test('soup weights equal an independent float64 average of the member files', async () => {
  const cases = [
    { r: greedy, members: greedy.report.soup.members },
    { r: uniform, members: INGREDIENTS.map((_, i) => i) },
  ];
  const models = await Promise.all(INGREDIENTS.map((p) => loadModel(p)));
  try {
    for (const { r, members } of cases) {
      for (const name of [...WEIGHT_NAMES, 'fc1.bias', 'fc2.bias', 'fc3.bias']) {
        const values = members.map((i) => weightValues(models[i], name));
        const soup = weightValues(r.soup, name);
        for (let k = 0; k < soup.length; k++) {
          let s = 0;
          for (const v of values) s += v[k];
          assert.equal(soup[k], Math.fround(s / values.length), `${name}[${k}]`);
        }
      }
    }
  } finally {
    models.forEach(closeModel);
  }
  assert.equal(uniform.report.soup.metric, uniform.report.uniform.metric);
  assert.equal(greedy.report.uniform.metric, uniform.report.soup.metric);
});

test("tie rule '>' (model soups) keeps only strict improvements", async () => {
  const strict = await cook({
    paths: INGREDIENTS,
    settings: { maskPolicy: 'require-shared', metric: 'accuracy', tie: '>', mode: 'greedy' },
    dir,
    name: 'strict.onnx',
    evalPath: fixture('val.npz'),
  });
  try {
    const metrics = strict.report.ingredients.map((i) => i.metric!);
    let current = metrics[strict.report.greedy!.order[0]];
    for (const step of strict.report.greedy!.steps.slice(1)) {
      assert.equal(step.accepted, step.metric > current);
      if (step.accepted) current = step.metric;
    }
    assert.ok(strict.report.soup.metric! >= Math.max(...metrics));
  } finally {
    closeModel(strict.soup);
  }
});
