// Two rounds of Sparse Model Soups end to end: the phase-1 greedy soup of the fixtures is pruned further (next phase,
// global magnitude to p_phase = 1 − (1 − 0.75)^(1/2) = 0.5 of the remaining weights) and handed back as a parent;
// three variants are fine-tuned from it here with its mask fixed (soup-mlp.ts), and their greedy soup is again at least
// as good as its best ingredient on held-out data, at exactly the phase-2 sparsity.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { closeModel } from '../../../packages/engine/onnx/model.js';
import { phaseSparsity } from '../../../packages/engine/recipe.js';
import { INGREDIENTS, cook, fixture, scratchDir, weightValues } from '../../helpers/soup-harness.js';
import { SIZES } from '../../helpers/soup-fixtures.js';
import { cloneMlp, mlpBytes, mlpFromInitializers, spiralTask, train } from '../../helpers/soup-mlp.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await scratchDir()));
after(() => cleanup());

test('SMS round 2: soup → next-phase parent (75%) → fine-tunes → greedy soup ≥ best, sparsity exact', async () => {
  const p = phaseSparsity(0.75, 2);
  const round1 = await cook({
    paths: INGREDIENTS,
    settings: {
      mode: 'greedy',
      tie: '>=',
      maskPolicy: 'require-shared',
      metric: 'accuracy',
      nextPhase: { kind: 'magnitude', fraction: p, scope: 'global', goal: 0.75, phases: 2 },
    },
    dir,
    name: 'round2-parent.onnx',
    evalPath: fixture('val.npz'),
  });
  const parent = mlpFromInitializers((name) => weightValues(round1.soup, name), SIZES);
  closeModel(round1.soup);
  assert.equal(round1.report.nextPhase!.sparsityAfter, 0.75);

  // Retraining happens outside the service: three short fine-tunes with the parent's mask held.
  const trainSet = spiralTask(3000, 1);
  const paths: string[] = [];
  for (const [i, v] of [
    { seed: 701, lr: 1e-3 },
    { seed: 702, lr: 2e-3 },
    { seed: 703, lr: 1.5e-3 },
  ].entries()) {
    const m = cloneMlp(parent);
    train(m, trainSet, { epochs: 2, lr: v.lr, batch: 32, seed: v.seed });
    const path = join(dir, `round2-ft-${i}.onnx`);
    await writeFile(path, mlpBytes(m));
    paths.push(path);
  }

  const round2 = await cook({
    paths,
    basePath: round1.outPath,
    settings: { mode: 'greedy', tie: '>=', maskPolicy: 'require-shared', metric: 'accuracy' },
    dir,
    name: 'round2-soup.onnx',
    evalPath: fixture('val.npz'),
  });
  try {
    const r = round2.report;
    const metrics = r.ingredients.map((i) => i.metric!);
    assert.ok(r.soup.metric! >= Math.max(...metrics));
    assert.equal(r.maskCheck.parentBound, false, 'the fine-tunes kept the parent mask');
    assert.ok(r.soup.sparsityPreserved);
    for (const name of ['fc1.weight', 'fc2.weight']) {
      const w = weightValues(round2.soup, name);
      const parentW = parent[Number(name[2]) - 1].w;
      w.forEach((v, i) => assert.equal(v === 0, parentW[i] === 0, `${name}[${i}]`));
    }
    console.log(
      `round 1 soup ${round1.report.soup.metric} → pruned to 75%: ${round1.report.nextPhase!.metric} → ` +
        `round 2 ingredients ${metrics.join(' ')} → greedy soup ${r.soup.metric} (uniform ${r.uniform.metric})`,
    );
  } finally {
    closeModel(round2.soup);
  }
});
