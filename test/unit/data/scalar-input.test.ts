// A model input of rank 0 (a scalar: a temperature, a scale) has no sample axis: random calibration data gives it one
// value that every batch feeds as it is, and real datasets' batches pass it through the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { batches, planBatches, sliceSamples } from '../../../packages/engine/data/dataset.js';
import { randomDataset } from '../../../packages/engine/data/random.js';
import type { ModelInputSpec } from '../../../packages/engine/data/inputs.js';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { saveModel } from '../../../packages/engine/onnx/model.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import { runRecipe } from '../../../packages/engine/run.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

test('random data for a rank-0 input: one value, fed unchanged with every batch', () => {
  const specs: ModelInputSpec[] = [
    { name: 'x', dtype: 'float32', dims: ['b', 4] },
    { name: 't', dtype: 'float32', dims: [] },
    { name: 'k', dtype: 'int64', dims: [] },
  ];
  const ds = randomDataset(specs, { samples: 5, seed: 1 });
  assert.deepEqual(ds.inputs.get('t')!.dims, []);
  assert.equal(ds.inputs.get('t')!.data.length, 1);
  assert.deepEqual(ds.inputs.get('k')!.dims, []);
  const got = [...batches(ds, planBatches(ds.samples, 2).ranges)];
  assert.deepEqual(
    got.map((b) => b.inputs.get('x')!.dims),
    [
      [2, 4],
      [2, 4],
      [1, 4],
    ],
  );
  for (const b of got) {
    assert.deepEqual(b.inputs.get('t')!.dims, []);
    assert.deepEqual([...b.inputs.get('t')!.data], [...ds.inputs.get('t')!.data]);
  }
  assert.deepEqual(sliceSamples(ds.inputs.get('k')!, 3, 2), ds.inputs.get('k'));
});

test('a model with a scalar input compresses with random calibration data (Wanda runs it per batch)', async () => {
  const dir = tempDir('scalar-input-');
  try {
    // y = MatMul(x, W) * t, with t a float scalar input.
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', ['batch', 64]);
    const t = b.input('t', 'float32', []);
    const h = b.node('MatMul', [x, b.initializer('W', 'float32', [64, 32], randomFloats(2048, 1))], {}, { name: 'mm' });
    const y = b.node('Mul', [h, t], {}, { output: 'y' });
    b.output(y, 'float32', ['batch', 32]);
    const path = join(dir, 'scalar.onnx');
    await saveModel(b.build(), path);
    const recipe = {
      method: 'sparsity',
      pattern: '2:4',
      criterion: 'wanda',
      calibration: { random: true, samples: 8 },
    } as unknown as Recipe;
    const res = await runRecipe(recipe, { modelPath: path, outputDir: join(dir, 'out') });
    const summary = res.report.summary as { compressedLayers: number };
    assert.equal(summary.compressedLayers, 1);
  } finally {
    removeDir(dir);
  }
});
