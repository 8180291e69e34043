// Perplexity soups on a tiny next-token model whose output weight is a float16 Constant node behind a Cast (the
// PaddleOCR / fp16-export layout): perplexity from labels and from shifted inputs against a float64 reference, a
// greedy soup by perplexity, float16 weights averaged and written back in float16 with the 2:4 mask intact. And the
// method through the job runner (runRecipe).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { toBinary } from '@bufbuild/protobuf';
import { encodeNpz } from '../../../packages/engine/data/npz.js';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { ModelProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { closeModel, loadModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import {
  float32ToFloat16,
  halfBitsToFloat,
  floatToHalfBits,
  tensorToFloat32,
} from '../../../packages/engine/onnx/tensor.js';
import { runRecipe } from '../../../packages/engine/run.js';
import { HeldOutScorer } from '../../../packages/engine/soup/score.js';
import { INGREDIENTS, cook, fixture, heldOut, scratchDir } from '../../helpers/soup-harness.js';
import { gaussian, mulberry32 } from '../../helpers/soup-mlp.js';

const V = 12;
const D = 8;
const T = 6;
const S = 40;

let dir: string;
let cleanup: () => Promise<void>;
let paths: string[];
let withLabels: string;
let noLabels: string;
let ids: BigInt64Array;

/** Shared 2:4 mask along K = D for W [D, V] (groups down each column), fixed by seed 99. */
const mask = (() => {
  const r = mulberry32(99);
  const m = new Uint8Array(D * V);
  for (let col = 0; col < V; col++)
    for (let g = 0; g < D; g += 4) {
      const keep = [0, 1, 2, 3].sort(() => r() - 0.5).slice(0, 2);
      for (const t of keep) m[(g + t) * V + col] = 1;
    }
  return m;
})();

function lmModel(seed: number): Uint8Array {
  const g = gaussian(mulberry32(seed));
  const emb = Float32Array.from({ length: V * D }, () => g());
  const w = Float32Array.from({ length: D * V }, (_, i) => (mask[i] ? g() * 0.8 : 0));
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('input_ids', 'int64', ['batch', T]);
  const h = b.node('Gather', [b.initializer('emb', 'float32', [V, D], emb), x]);
  const wHalf = b.constant('w_half', 'float16', [D, V], float32ToFloat16(w));
  const w32 = b.node('Cast', [wHalf], { to: 1 });
  b.node('MatMul', [h, w32], {}, { output: 'logits' });
  b.output('logits', 'float32', ['batch', T, V]);
  return toBinary(ModelProtoSchema, b.build().proto);
}

before(async () => {
  ({ dir, cleanup } = await scratchDir());
  paths = [];
  for (const seed of [1, 2, 3]) {
    const p = join(dir, `lm-${seed}.onnx`);
    await writeFile(p, lmModel(seed));
    paths.push(p);
  }
  // token sequences with structure (next = current + 1 mod V, sometimes random) so models differ in quality
  const r = mulberry32(5);
  ids = new BigInt64Array(S * T);
  for (let s = 0; s < S; s++) {
    let t0 = Math.floor(r() * V);
    for (let t = 0; t < T; t++) {
      ids[s * T + t] = BigInt(t0);
      t0 = r() < 0.7 ? (t0 + 1) % V : Math.floor(r() * V);
    }
  }
  const labels = new BigInt64Array(S * T).fill(-100n);
  for (let s = 0; s < S; s++) for (let t = 0; t + 1 < T; t++) labels[s * T + t] = ids[s * T + t + 1];
  withLabels = join(dir, 'lm-labels.npz');
  noLabels = join(dir, 'lm-ids.npz');
  await writeFile(
    withLabels,
    encodeNpz({
      input_ids: { dtype: 'int64', dims: [S, T], data: ids },
      labels: { dtype: 'int64', dims: [S, T], data: labels },
    }),
  );
  await writeFile(noLabels, encodeNpz({ input_ids: { dtype: 'int64', dims: [S, T], data: ids } }));
});
after(() => cleanup());

function tensorOf(model: LoadedModel, name: string): Float32Array {
  const g = model.proto.graph!;
  const init = g.initializer.find((t) => t.name === name);
  if (init) return tensorToFloat32(model, init);
  const node = g.node.find((n) => n.opType === 'Constant' && n.output[0] === name)!;
  return tensorToFloat32(model, node.attribute[0].t!);
}

/** float64 perplexity of next-token prediction, positions t < T−1. */
function referencePerplexity(model: LoadedModel): number {
  const emb = tensorOf(model, 'emb');
  const w = tensorOf(model, 'w_half');
  let nll = 0;
  let n = 0;
  for (let s = 0; s < S; s++)
    for (let t = 0; t + 1 < T; t++) {
      const tok = Number(ids[s * T + t]);
      const logits = new Float64Array(V);
      for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) logits[v] += emb[tok * D + d] * w[d * V + v];
      const mx = Math.max(...logits);
      const lse = mx + Math.log(logits.reduce((a, l) => a + Math.exp(l - mx), 0));
      nll += lse - logits[Number(ids[s * T + t + 1])];
      n++;
    }
  return Math.exp(nll / n);
}

test('perplexity from labels and from shifted inputs matches a float64 reference', async () => {
  const model = await loadModel(paths[0]);
  try {
    const ref = referencePerplexity(model);
    for (const data of [withLabels, noLabels]) {
      const scorer = new HeldOutScorer({ dataset: await heldOut(data, model), tmpDir: dir, batchSize: 16 });
      const ppl = (await scorer.score(model, 'perplexity'))!;
      await scorer.close();
      assert.ok(Math.abs(ppl - ref) / ref < 1e-5, `${data}: ${ppl} vs ${ref}`);
    }
    const scorer = new HeldOutScorer({ dataset: await heldOut(noLabels, model), tmpDir: dir });
    assert.equal(await scorer.score(model, 'accuracy'), null, 'no labels: accuracy is unavailable, not invented');
    assert.equal(await scorer.score(model, 'fidelity'), null, 'no reference: fidelity is unavailable');
  } finally {
    closeModel(model);
  }
});

test('greedy by perplexity over float16 Constant-node weights: lower is better, fp16 written back, mask kept', async () => {
  const r = await cook({
    paths,
    settings: { mode: 'greedy', tie: '>=', maskPolicy: 'require-shared', metric: 'perplexity' },
    dir,
    evalPath: withLabels,
  });
  try {
    const rep = r.report;
    assert.equal(rep.metric.direction, 'lower');
    const metrics = rep.ingredients.map((i) => i.metric!);
    assert.ok(rep.soup.metric! <= Math.min(...metrics));
    assert.equal(rep.greedy!.steps[0].ingredient, metrics.indexOf(Math.min(...metrics)));
    assert.match(rep.maskCheck.result, /share one zero pattern over 1 weights/);
    assert.equal(rep.soup.sparsity, 0.5);
    const node = r.soup.proto.graph!.node.find((n) => n.output[0] === 'w_half')!;
    assert.equal(node.attribute[0].t!.dataType, 10, 'still float16');
    const models = await Promise.all(rep.soup.members.map((i) => loadModel(paths[i])));
    const soupW = tensorOf(r.soup, 'w_half');
    const member = models.map((m) => tensorOf(m, 'w_half'));
    soupW.forEach((v, i) => {
      const mean = member.reduce((s, w) => s + w[i], 0) / member.length;
      assert.equal(v, halfBitsToFloat(floatToHalfBits(Math.fround(mean))), `w[${i}]`);
      assert.equal(v === 0, mask[i] === 0, `mask at ${i}`);
    });
    models.forEach(closeModel);
    assert.ok(Math.abs(rep.soup.metric! - referencePerplexity(r.soup)) / rep.soup.metric! < 1e-5);
  } finally {
    closeModel(r.soup);
  }
});

test('the method through runRecipe: uniform soup of the fixtures, report and layer rows', async () => {
  const out = join(dir, 'run');
  const { report, artifacts } = await runRecipe(
    { method: 'soup', mode: 'uniform' },
    { modelPath: INGREDIENTS[0], ingredientPaths: INGREDIENTS, evalPath: fixture('val.npz'), outputDir: out },
  );
  assert.ok(artifacts.some((a) => a.name === 'model.onnx'));
  const soup = report.soup as { soup: { sparsity: number; members: number[]; maskRespected: boolean } };
  assert.equal(soup.soup.sparsity, 0.5);
  assert.deepEqual(soup.soup.members, [0, 1, 2, 3, 4, 5]);
  assert.ok(soup.soup.maskRespected);
  const rows = report.layers.map((l) => [l.name, l.sparsity ?? null, l.patternVerified ?? null, l.skipped ?? null]);
  assert.deepEqual(rows, [
    ['fc1.weight', 0.5, true, null],
    ['fc2.weight', 0.5, true, null],
    ['fc3.weight', null, null, 'too small (192 elements < 1024)'],
  ]);
});
