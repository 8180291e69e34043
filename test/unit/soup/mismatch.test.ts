// Ingredients that are not the same network, or do not share a mask under require-shared, are refused with an error
// that says exactly where they differ. Each mismatching model is built from the committed fixtures.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { create, fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, NodeProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { makeTensor, tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import { closeModel } from '../../../packages/engine/onnx/model.js';
import { isInputError } from '../../../packages/engine/job.js';
import { cookSoup } from '../../../packages/engine/soup/merge.js';
import { compareStructure } from '../../../packages/engine/soup/structure.js';
import { initMlp, mlpBytes } from '../../helpers/soup-mlp.js';
import { INGREDIENTS, cook, fixture, loadProto, scratchDir, writeProto } from '../../helpers/soup-harness.js';
import { writeFile } from 'node:fs/promises';
import type { SoupSettings } from '../../../packages/engine/soup/merge.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await scratchDir()));
after(() => cleanup());

const shared: SoupSettings = { mode: 'uniform', tie: '>=', maskPolicy: 'require-shared', metric: 'accuracy' };

async function expectInputError(p: Promise<unknown>, code: string, pattern: RegExp): Promise<string> {
  const e = await p.then(
    () => assert.fail('expected an error'),
    (err: unknown) => err,
  );
  assert.ok(isInputError(e), `not an input error: ${String(e)}`);
  assert.equal((e as { code: string }).code, code);
  const msg = (e as Error).message;
  assert.match(msg, pattern);
  return msg;
}

test('different shapes: the first differing tensor is named with both shapes', async () => {
  const other = join(dir, 'narrow.onnx');
  await writeFile(other, mlpBytes(initMlp([16, 32, 64, 3], 1)));
  const msg = await expectInputError(
    cook({ paths: [INGREDIENTS[0], other], settings: shared, dir }),
    'soup-structure-mismatch',
    /ingredient 2 \(.*narrow\.onnx\) is not the same network as ingredient 1/,
  );
  assert.match(msg, /initializer "fc1\.weight": shape \[16, 64\] vs \[16, 32\]/);
  assert.match(msg, /initializer "fc2\.weight": shape \[64, 64\] vs \[32, 64\]/);
});

test('different op graphs: MatMul+Add vs Gemm, Relu vs LeakyRelu, a missing node', async () => {
  const base = await loadProto(INGREDIENTS[1]);
  const weights = new Map(base.graph!.initializer.map((t) => [t.name, tensorToFloat32(undefined, t)]));
  const mlp = initMlp([16, 64, 64, 3], 1);
  mlp.forEach((l, i) => {
    l.w.set(weights.get(`fc${i + 1}.weight`)!);
    l.b.set(weights.get(`fc${i + 1}.bias`)!);
  });
  const gemm = join(dir, 'gemm.onnx');
  await writeFile(gemm, mlpBytes(mlp, { linear: 'gemm' }));
  await expectInputError(
    cook({ paths: [INGREDIENTS[0], gemm], settings: shared, dir }),
    'soup-structure-mismatch',
    /graph\.node\[0\] \(MatMul "fc1\/MatMul"\): op MatMul vs Gemm/,
  );
  const leaky = join(dir, 'leaky.onnx');
  await writeFile(leaky, mlpBytes(mlp, { activation: 'LeakyRelu' }));
  await expectInputError(
    cook({ paths: [INGREDIENTS[0], leaky], settings: shared, dir }),
    'soup-structure-mismatch',
    /graph\.node\[2\] \(Relu "act1\/Relu"\): op Relu vs LeakyRelu/,
  );
  // an extra Identity at the end: node count and the rewired output differ
  const extra = await loadProto(INGREDIENTS[1]);
  const g = extra.graph!;
  const last = g.node[g.node.length - 1];
  last.output = ['logits_raw'];
  g.node.push(create(NodeProtoSchema, { opType: 'Identity', input: ['logits_raw'], output: ['logits'] }));
  const path = await writeProto(extra, join(dir, 'extra.onnx'));
  await expectInputError(
    cook({ paths: [INGREDIENTS[0], path], settings: shared, dir }),
    'soup-structure-mismatch',
    /outputs: \["logits"\] vs \["logits_raw"\].*graph\.node: 8 vs 9 nodes \(first extra: Identity\)/,
  );
});

test('a different dtype or attribute value is named', () => {
  return (async () => {
    const a = await loadProto(INGREDIENTS[0]);
    const b = await loadProto(INGREDIENTS[1]);
    const bias = b.graph!.initializer.find((t) => t.name === 'fc2.bias')!;
    const replaced = makeTensor('fc2.bias', 'float16', [64], new Uint16Array(64));
    Object.assign(bias, { dataType: replaced.dataType, rawData: replaced.rawData });
    const diffs = compareStructure(a, b);
    assert.deepEqual(diffs, [{ where: 'graph.initializer "fc2.bias"', message: 'dtype FLOAT vs FLOAT16' }]);
    assert.deepEqual(compareStructure(a, a), []);
    const mlp = initMlp([16, 64, 64, 3], 1);
    const leakyA = fromBinary(ModelProtoSchema, mlpBytes(mlp, { activation: 'LeakyRelu' }));
    const leakyB = fromBinary(ModelProtoSchema, mlpBytes(mlp, { activation: 'LeakyRelu' }));
    leakyB.graph!.node[5].attribute[0].f = 0.25;
    assert.deepEqual(compareStructure(leakyA, leakyB), [
      {
        where: 'graph.node[5] (LeakyRelu "act2/LeakyRelu") attribute "alpha"',
        message: `${Math.fround(0.01)} vs 0.25`,
      },
    ]);
  })();
});

test('require-shared: a different zero pattern names the first differing weight and position', async () => {
  const proto = await loadProto(INGREDIENTS[2]);
  const t = proto.graph!.initializer.find((x) => x.name === 'fc2.weight')!;
  const w = tensorToFloat32(undefined, t);
  const revive = w.findIndex((v) => v === 0);
  w[revive] = 0.05; // a pruned weight comes back to life in one ingredient
  t.rawData = new Uint8Array(w.buffer);
  const path = await writeProto(proto, join(dir, 'revived.onnx'));
  const row = Math.floor(revive / 64);
  const col = revive % 64;
  const msg = await expectInputError(
    cook({ paths: [INGREDIENTS[0], INGREDIENTS[1], path], settings: shared, dir }),
    'soup-mask-mismatch',
    /ingredient 3 \(.*revived\.onnx\) does not share the zero pattern of ingredient 1/,
  );
  assert.ok(msg.includes(`first differing weight "fc2.weight" at [${row}, ${col}] (zero vs non-zero; 1 of 4096`), msg);
  assert.match(msg, /use "intersect" or "reprune"/);

  // intersect merges them: the revived weight is zeroed again, sparsity exactly the shared pattern's
  const merged = await cook({
    paths: [INGREDIENTS[0], INGREDIENTS[1], path],
    settings: { ...shared, maskPolicy: 'intersect' },
    dir,
    evalPath: fixture('val.npz'),
  });
  try {
    const r = merged.report;
    assert.equal(r.soup.sparsity, 0.5);
    assert.deepEqual(r.maskCheck.differing, [{ weight: 'fc2.weight', positions: 1 }]);
    assert.match(r.maskCheck.result, /1 of 3 weights have different zero patterns.*intersection/);
    assert.equal(r.ingredients[2].zeroedByMask, 1);
    assert.equal(typeof r.ingredients[2].metricAsGiven, 'number');
    const soupW = tensorToFloat32(
      merged.soup,
      merged.soup.proto.graph!.initializer.find((x) => x.name === 'fc2.weight')!,
    );
    assert.equal(soupW[revive], 0);
  } finally {
    closeModel(merged.soup);
  }
});

test('greedy without held-out data, one ingredient, and pattern without reprune are refused', async () => {
  await expectInputError(
    cook({ paths: INGREDIENTS.slice(0, 2), settings: { ...shared, mode: 'greedy' }, dir }),
    'soup-needs-eval',
    /greedy soup ranks and selects ingredients by their accuracy on held-out data/,
  );
  const { loadModel } = await import('../../../packages/engine/onnx/model.js');
  const base = await loadModel(INGREDIENTS[0]);
  await expectInputError(
    cookSoup({
      base,
      baseIngredient: 0,
      ingredients: [{ path: INGREDIENTS[0], load: () => loadModel(INGREDIENTS[0]) }],
      maskedWeights: [],
      prunableWeights: [],
      settings: shared,
    }),
    'soup-too-few-ingredients',
    /at least 2 ingredients, got 1/,
  );
  closeModel(base);
  const { soupSettings } = await import('../../../packages/engine/methods/soup.js');
  assert.throws(
    () => soupSettings({ method: 'soup', maskPolicy: 'intersect', pattern: '2:4' }),
    /apply only with maskPolicy "reprune"/,
  );
});

test('a corrupt ingredient file is named in the error', async () => {
  const junk = join(dir, 'junk.onnx');
  await writeFile(
    junk,
    Uint8Array.from({ length: 100 }, (_, i) => (i * 37 + 11) & 0xff),
  );
  const e = await cook({ paths: [INGREDIENTS[0], junk], settings: shared, dir }).catch((x: unknown) => x as Error);
  assert.ok(isInputError(e), String(e));
  assert.match((e as Error).message, /^ingredient 2 \(.*junk\.onnx\): /);
});
