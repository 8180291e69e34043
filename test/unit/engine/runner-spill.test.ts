// The runner's spill file (runner/load.ts, runner/write.ts): a job spills rewritten weights into its output folder,
// and with external data the write stage renames that file into `<output>.data` instead of copying it. The model is
// the one the copying path writes (same weights, same ONNX Runtime outputs), the artifact sizes are the files', and
// neither a finished nor a failed job leaves a scratch file in the output folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import { runRecipe } from '../../../packages/engine/run.js';
import { randn } from '../sparsity/models.js';
import { run, tempDir } from '../sparsity/helpers.js';
import { initializerBytes as weightsOf } from '../../helpers/onnx-fixtures.js';

/** x [batch, 256] → MatMul 256×256 → Add bias → Relu → MatMul 256×128 → MatMul head 128×160 (weights ≥ 64 KiB). */
function model(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['batch', 256]);
  b.initializer('w0', 'float32', [256, 256], randn(256 * 256, 1, 0.1));
  b.initializer('bias', 'float32', [256], randn(256, 2, 0.1));
  b.initializer('w1', 'float32', [256, 128], randn(256 * 128, 3, 0.1));
  b.initializer('head', 'float32', [128, 160], randn(128 * 160, 4, 0.1));
  let h = b.node('MatMul', ['x', 'w0'], {}, { name: 'mm0' });
  h = b.node('Add', [h, 'bias']);
  h = b.node('Relu', [h]);
  h = b.node('MatMul', [h, 'w1'], {}, { name: 'mm1' });
  b.node('MatMul', [h, 'head'], {}, { name: 'head_mm', output: 'y' });
  b.output('y', 'float32', ['batch', 160]);
  return b.build();
}

const dir = tempDir();
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const RECIPE = { method: 'sparsity', pattern: '2:4', criterion: 'magnitude', exclude: ['head*'] };

async function source(): Promise<string> {
  const file = join(dir, 'src', 'dense.onnx');
  if (!fs.existsSync(file)) {
    fs.mkdirSync(join(dir, 'src'));
    await saveModel(model(), file, { externalData: true });
  }
  return file;
}

async function output(file: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file);
  try {
    const x = new ort.Tensor('float32', randn(4 * 256, 9), [4, 256]);
    return (await session.run({ x })).y.data as Float32Array;
  } finally {
    await session.release();
  }
}

const leftovers = (out: string) => fs.readdirSync(out).filter((f) => f.startsWith('.') || f.includes('.tmp-'));

test('a pruning job with external data output: the spill file becomes model.onnx.data, same model as the copy', async () => {
  const src = await source();
  const out = join(dir, 'out-adopt');
  fs.mkdirSync(out);
  let spillIno: number | undefined;
  const r = await run(
    { ...RECIPE, externalData: true },
    src,
    out,
    {},
    {
      onProgress: (p) => {
        if (p.stage !== 'write' || spillIno !== undefined) return;
        const spills = fs.readdirSync(out).filter((f) => f.startsWith('.onnx-spill-'));
        assert.equal(spills.length, 1, 'the compress stage spilled into the output folder');
        spillIno = fs.statSync(join(out, spills[0])).ino;
      },
    },
  );
  const data = join(out, 'model.onnx.data');
  assert.equal(fs.statSync(data).ino, spillIno, 'the output data file is the former spill file');
  assert.deepEqual(leftovers(out), []);
  const artifact = r.artifacts.find((a) => a.name === 'model.onnx.data')!;
  assert.equal(artifact.sizeBytes, fs.statSync(data).size);
  assert.equal(r.artifacts.find((a) => a.name === 'model.onnx')!.sizeBytes, fs.statSync(join(out, 'model.onnx')).size);

  const back = await loadModel(join(out, 'model.onnx'));
  for (const t of back.proto.graph!.initializer) {
    if (t.name === 'w0' || t.name === 'w1' || t.name === 'head') {
      const offset = Number(t.externalData.find((e) => e.key === 'offset')?.value ?? 0);
      assert.equal(offset % 4096, 0, `${t.name} at a page-aligned offset`);
    }
  }
  closeModel(back);

  // The copying path: the same job written inline (no .data, nothing adopted).
  const inline = join(dir, 'out-inline');
  fs.mkdirSync(inline);
  await run({ ...RECIPE, externalData: false }, src, inline);
  assert.ok(!fs.existsSync(join(inline, 'model.onnx.data')));
  assert.deepEqual(leftovers(inline), []);
  const got = await weightsOf(join(out, 'model.onnx'));
  assert.deepEqual(got, await weightsOf(join(inline, 'model.onnx')), 'same weights');
  assert.notDeepEqual(got.get('w0'), (await weightsOf(src)).get('w0'), 'w0 was pruned');
  assert.deepEqual(await output(join(out, 'model.onnx')), await output(join(inline, 'model.onnx')), 'same outputs');
});

test('Wanda (weights rewritten in memory, then spilled) gets its spill file adopted too', async () => {
  const src = await source();
  const out = join(dir, 'out-wanda');
  fs.mkdirSync(out);
  let spillIno: number | undefined;
  const recipe = { ...RECIPE, criterion: 'wanda', calibration: { random: true, samples: 4 }, externalData: true };
  await run(
    recipe,
    src,
    out,
    {},
    {
      onProgress: (p) => {
        if (p.stage !== 'write' || spillIno !== undefined) return;
        const spill = fs.readdirSync(out).find((f) => f.startsWith('.onnx-spill-'));
        if (spill) spillIno = fs.statSync(join(out, spill)).ino;
      },
    },
  );
  assert.ok(spillIno !== undefined, 'spilled into the output folder');
  assert.equal(fs.statSync(join(out, 'model.onnx.data')).ino, spillIno);
  assert.deepEqual(leftovers(out), []);
});

test('a job that fails after spilling leaves no scratch file in the output folder', async () => {
  const src = await source();
  const out = join(dir, 'out-failed');
  fs.mkdirSync(out);
  let spilled = false;
  const recipe = { ...RECIPE, externalData: true } as unknown as Recipe;
  await assert.rejects(
    // an output name the write stage refuses, once compress has spilled
    runRecipe(
      recipe,
      { modelPath: src, outputDir: out, outputName: 'a/b.onnx' },
      {
        onProgress: (p) => {
          if (p.stage === 'write') spilled ||= fs.readdirSync(out).some((f) => f.startsWith('.onnx-spill-'));
        },
      },
    ),
    { code: 'bad-output-name' },
  );
  assert.ok(spilled, 'the job had spilled');
  assert.deepEqual(fs.readdirSync(out), []);
});
