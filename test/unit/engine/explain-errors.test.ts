// Errors that say what to do: a model with nothing to compress is refused for that before any calibration-data
// check; weights fed as graph inputs are named as such; reasons are grouped with quoted names and a suggestion that
// would work; calibration errors name --calibration, the API field and random data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { tensorValueInfo } from '../../../packages/engine/onnx/graph.js';
import { ValueInfoProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { runRecipe } from '../../../packages/engine/run.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import { groupedReasons } from '../../../packages/engine/methods/explain.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

const TENSOR_STRING = 8;

/** Runs `recipe` on `model` and returns the InputError it must fail with. */
async function refusal(model: LoadedModel, recipe: unknown): Promise<{ code: string; message: string }> {
  const dir = tempDir('explain-');
  try {
    const path = join(dir, 'model.onnx');
    await saveModel(model, path);
    await assert.rejects(runRecipe(recipe as Recipe, { modelPath: path, outputDir: join(dir, 'out') }), (e: Error) => {
      assert.equal(e.name, 'InputError', e.message);
      return true;
    });
    try {
      await runRecipe(recipe as Recipe, { modelPath: path, outputDir: join(dir, 'out2') });
    } catch (e) {
      return { code: (e as { code: string }).code, message: (e as Error).message };
    }
    throw new Error('unreachable');
  } finally {
    removeDir(dir);
  }
}

test('weights that are graph inputs: said, with what to re-export', async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 64]);
  const w = b.input('W', 'float32', [64, 32]); // the weight arrives at run time
  const h = b.node('MatMul', [x, w], {}, { name: 'mm' });
  const y = b.node('Gemm', [h, b.input('W2', 'float32', [32, 32])], {}, { name: 'gemm', output: 'y' });
  b.output(y, 'float32', [1, 32]);
  const r = await refusal(b.build(), { method: 'sparsity', pattern: '2:4', criterion: 'magnitude' });
  assert.equal(r.code, 'no-layer-selected');
  assert.match(r.message, /are graph inputs \("W", "W2"\)/);
  assert.match(r.message, /re-export the model with the weights as initializers/);
});

test('nothing to compress is said before any calibration-data problem (a STRING input, random data asked)', async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 8]);
  b.output(b.node('Relu', [x], {}, { output: 'y' }), 'float32', [1, 8]);
  const model = b.build();
  model.proto.graph!.input.push(tensorValueInfo('text', TENSOR_STRING, ['b']));
  const r = await refusal(model, {
    method: 'sparsity',
    pattern: '2:4',
    criterion: 'wanda',
    calibration: { random: true, samples: 2 },
  });
  assert.equal(r.code, 'no-layer-selected', r.message);
  assert.match(r.message, /no MatMul\/Gemm\/Conv weight/);
  assert.doesNotMatch(r.message, /STRING|calibration data/);
});

/** If with a 64×64 MatMul in each branch (their activations live in the subgraphs: out of calibration's reach). */
function ifMatMuls(): LoadedModel {
  const branch = (name: string, seed: number) => {
    const g = new GraphBuilder({ name });
    const w = g.constant(`W_${name}`, 'float32', [64, 64], randomFloats(64 * 64, seed));
    const act = g.node('Relu', ['x'], {}, { output: `${name}_act` }); // produced inside the branch
    g.output(g.node('MatMul', [act, w], {}, { name: `mm_${name}`, output: `${name}_out` }), 'float32', [1, 64]);
    return g.buildGraph();
  };
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', [1, 64]);
  const cond = b.input('cond', 'bool', [1]);
  const y = b.node('If', [cond], { then_branch: branch('then', 1), else_branch: branch('else', 2) }, { output: 'y' });
  b.output(y, 'float32', [1, 64]);
  return b.build();
}

/** x [1, 64] → MatMul (64×64) → Relu → MatMul (64×32) → y. */
function mlp64(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 64]);
  const h = b.node('MatMul', [x, b.initializer('W1', 'float32', [64, 64], randomFloats(64 * 64, 1))]);
  const y = b.node(
    'MatMul',
    [b.node('Relu', [h]), b.initializer('W2', 'float32', [64, 32], randomFloats(64 * 32, 2))],
    {},
    { output: 'y' },
  );
  b.output(y, 'float32', [1, 32]);
  return b.build();
}

test('layers out of calibration reach: grouped, quoted, and the criterion that works is named (and works)', async () => {
  const r = await refusal(ifMatMuls(), {
    method: 'sparsity',
    pattern: '2:4',
    criterion: 'wanda',
    calibration: { random: true, samples: 2 },
  });
  assert.equal(r.code, 'no-layer-selected');
  // Both If branches' MatMuls share one reason kind; each is named in quotes.
  assert.match(
    r.message,
    /applies to no layer of this model \(its input activation lives in a subgraph and cannot be captured for calibration — 2 layers: "If\/then_branch\/W_then", "If\/else_branch\/W_else"\)/,
  );
  assert.match(r.message, /What would work: criterion "magnitude" needs no calibration/);
  assert.match(r.message, /onnx-compress inspect MODEL/);
  const dir = tempDir('explain-works-');
  try {
    await saveModel(ifMatMuls(), join(dir, 'model.onnx'));
    const res = await runRecipe({ method: 'sparsity', pattern: '2:4', criterion: 'magnitude' } as Recipe, {
      modelPath: join(dir, 'model.onnx'),
      outputDir: join(dir, 'out'),
    });
    assert.equal((res.report.summary as { compressedLayers: number }).compressedLayers, 2);
  } finally {
    removeDir(dir);
  }
});

test('a weight named "1" that is also a graph input reads as a name, with the export option that fixes it', async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 64]);
  const w = b.initializer('1', 'float32', [64, 32], randomFloats(64 * 32, 3));
  b.output(b.node('MatMul', [x, w], {}, { name: 'mm', output: 'y' }), 'float32', [1, 32]);
  const model = b.build();
  const g = model.proto.graph!;
  g.input.push(create(ValueInfoProtoSchema, { name: '1', type: tensorValueInfo('1', 'float32', [64, 32]).type }));
  const r = await refusal(model, { method: 'sparsity', pattern: '2:4', criterion: 'magnitude' });
  assert.match(r.message, /initializer is also a graph input \(can be overridden at run time\) — "1"/);
  assert.match(r.message, /keep_initializers_as_inputs=False/);
});

test('calibration-required names --calibration, the API field, random data, and a criterion that needs none', async () => {
  const r = await refusal(mlp64(), { method: 'sparsity', pattern: '2:4', criterion: 'wanda' });
  assert.equal(r.code, 'calibration-required');
  assert.match(r.message, /--calibration FILE on the CLI, calibrationDatasetId in the API/);
  assert.match(r.message, /"calibration": \{"random": true\}/);
  assert.match(r.message, /criterion "magnitude" needs no calibration/);
});

test('groupedReasons: each reason once with its layers, names quoted, long lists counted', () => {
  const rows: [string, string][] = [
    ...'abcdefg'.split('').map((n): [string, string] => [n, 'too small']),
    ['1', 'initializer is also a graph input'],
  ];
  assert.equal(
    groupedReasons(rows),
    'too small — 7 layers: "a", "b", "c" (+4 more); initializer is also a graph input — "1"',
  );
});
