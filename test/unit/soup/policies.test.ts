// Mask policies other than require-shared, the parent's zeros, the next SMS phase, fidelity scoring, BatchNorm and
// non-float tensors — each against an independent computation over the fixture files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
} from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { makeTensor, tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { tensorValueInfo } from '../../../packages/engine/onnx/graph.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { isInputError } from '../../../packages/engine/job.js';
import { phaseSparsity } from '../../../packages/engine/recipe.js';
import type { SoupSettings } from '../../../packages/engine/soup/merge.js';
import {
  INGREDIENTS,
  cook,
  fixture,
  loadProto,
  scratchDir,
  weightValues,
  writeProto,
} from '../../helpers/soup-harness.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await scratchDir()));
after(() => cleanup());

const base: SoupSettings = { mode: 'greedy', tie: '>=', maskPolicy: 'require-shared', metric: 'accuracy' };
const LAYERS = [
  { name: 'fc1.weight', k: 16, n: 64 },
  { name: 'fc2.weight', k: 64, n: 64 },
];

async function values(path: string, name: string): Promise<Float32Array> {
  const m = await loadModel(path);
  try {
    return weightValues(m, name);
  } finally {
    closeModel(m);
  }
}

test('reprune 2:4, maskFrom all: one mask from the uniform average, top-2 |avg| per group of 4 along K', async () => {
  // the dense model and two sparse fine-tunes: three different zero patterns
  const paths = [fixture('dense.onnx'), INGREDIENTS[0], INGREDIENTS[3]];
  const r = await cook({
    paths,
    settings: { ...base, maskPolicy: 'reprune', reprune: { kind: 'nm', n: 2, m: 4 }, maskFrom: 'all' },
    dir,
    evalPath: fixture('val.npz'),
  });
  try {
    assert.equal(r.report.soup.nmVerified, true);
    assert.equal(r.report.maskCheck.reprune, '2:4');
    // 192 elements: below discovery's size floor, so not re-pruned
    assert.deepEqual(
      r.report.maskCheck.repruneSkipped?.map((s) => s.weight),
      ['fc3.weight'],
    );
    assert.match(r.report.maskCheck.repruneSkipped![0].reason, /too small.*averaged under the union/);
    assert.ok(r.report.soup.metric! >= Math.max(...r.report.ingredients.map((i) => i.metric!)));
    const members = r.report.soup.members;
    for (const { name, k, n } of LAYERS) {
      const all = await Promise.all(paths.map((p) => values(p, name)));
      const soup = weightValues(r.soup, name);
      for (let col = 0; col < n; col++) {
        for (let g = 0; g < k; g += 4) {
          const idx = [0, 1, 2, 3].map((t) => (g + t) * n + col);
          const avg = idx.map((i) => Math.abs(Math.fround(all.reduce((s, v) => s + v[i], 0) / all.length)));
          const keep = [0, 1, 2, 3].sort((a, b) => avg[b] - avg[a] || a - b).slice(0, 2);
          idx.forEach((i, t) => {
            const mean = Math.fround(members.reduce((s, m) => s + all[m][i], 0) / members.length);
            assert.equal(soup[i], keep.includes(t) ? mean : 0, `${name}[k=${g + t}, n=${col}]`);
          });
        }
      }
    }
  } finally {
    closeModel(r.soup);
  }
});

test('reprune 2:4, maskFrom soup (default): each candidate soup is pruned from its own average', async () => {
  // the dense model and two sparse fine-tunes with a different mask: the average of a candidate set decides its mask
  const paths = [fixture('dense.onnx'), INGREDIENTS[0], INGREDIENTS[3]];
  const settings: SoupSettings = { ...base, maskPolicy: 'reprune', reprune: { kind: 'nm', n: 2, m: 4 } };
  const follow = await cook({ paths, settings, dir, name: 'follow.onnx', evalPath: fixture('val.npz') });
  const one = await cook({
    paths,
    settings: { ...settings, maskFrom: 'all' },
    dir,
    name: 'one.onnx',
    evalPath: fixture('val.npz'),
  });
  try {
    assert.equal(follow.report.maskCheck.maskFrom, 'soup');
    assert.equal(one.report.maskCheck.maskFrom, 'all');
    assert.match(follow.report.maskCheck.result, /each candidate soup re-pruned \(2:4\) from its own average/);
    assert.equal(follow.report.soup.nmVerified, true);
    const members = follow.report.soup.members;
    const all = await Promise.all(paths.map((p) => Promise.all(LAYERS.map((l) => values(p, l.name)))));
    let maskDiffers = 0;
    LAYERS.forEach(({ name, k, n }, li) => {
      const soup = weightValues(follow.soup, name);
      const oneSoup = weightValues(one.soup, name);
      for (let col = 0; col < n; col++) {
        for (let g = 0; g < k; g += 4) {
          const idx = [0, 1, 2, 3].map((t) => (g + t) * n + col);
          const mean = idx.map((i) => Math.fround(members.reduce((s, m) => s + all[m][li][i], 0) / members.length));
          const keep = [0, 1, 2, 3].sort((a, b) => Math.abs(mean[b]) - Math.abs(mean[a]) || a - b).slice(0, 2);
          idx.forEach((i, t) => assert.equal(soup[i], keep.includes(t) ? mean[t] : 0, `${name}[k=${g + t}, n=${col}]`));
          // the one-mask design keeps the top 2 of the average of all three instead
          const avgAll = idx.map((i) => Math.abs(Math.fround(all.reduce((s, v) => s + v[li][i], 0) / all.length)));
          const keepAll = [0, 1, 2, 3].sort((a, b) => avgAll[b] - avgAll[a] || a - b).slice(0, 2);
          if (keep.some((t) => !keepAll.includes(t))) maskDiffers++;
          idx.forEach((i, t) => {
            if (!keepAll.includes(t)) assert.equal(oneSoup[i], 0);
          });
        }
      }
    });
    // the final soup is not all three ingredients, so its own mask differs from the one-mask design's
    assert.notDeepEqual(members, [0, 1, 2]);
    assert.ok(maskDiffers > 0, 'the followed mask equals the one from the average of all');
    // each ingredient scored alone is pruned from its own values: the sparse fine-tunes keep their own 2:4 mask
    assert.equal(follow.report.ingredients[1].zeroedByMask, 0);
    assert.equal(follow.report.ingredients[2].zeroedByMask, 0);
    assert.ok(one.report.ingredients[1].zeroedByMask > 0);
  } finally {
    closeModel(follow.soup);
    closeModel(one.soup);
  }
});

test('reprune unstructured 60%: per-matrix magnitude threshold on the average', async () => {
  const paths = [INGREDIENTS[1], INGREDIENTS[2]];
  const r = await cook({
    paths,
    settings: { ...base, mode: 'uniform', maskPolicy: 'reprune', reprune: { kind: 'unstructured', sparsity: 0.6 } },
    dir,
  });
  try {
    for (const { name, k, n } of LAYERS) {
      const soup = weightValues(r.soup, name);
      const zeros = soup.reduce((z, v) => z + (v === 0 ? 1 : 0), 0);
      assert.equal(zeros, Math.floor(0.6 * k * n), name);
      const kept = [...soup].filter((v) => v !== 0).map(Math.abs);
      const avg = await Promise.all(paths.map((p) => values(p, name)));
      const pruned = [...soup.keys()].filter((i) => soup[i] === 0).map((i) => Math.abs((avg[0][i] + avg[1][i]) / 2));
      assert.ok(Math.min(...kept) >= Math.max(...pruned) - 1e-7, name);
    }
    assert.equal(r.report.metric.evaluated, false);
    assert.equal(r.report.soup.metric, null);
  } finally {
    closeModel(r.soup);
  }
});

test('next phase: global magnitude to p_phase = 1 − (1 − goal)^(1/T) of the remaining weights', async () => {
  const goal = 0.75;
  const phases = 2;
  const p = phaseSparsity(goal, phases);
  const r = await cook({
    paths: INGREDIENTS,
    settings: {
      ...base,
      mode: 'uniform',
      nextPhase: { kind: 'magnitude', fraction: p, scope: 'global', goal, phases },
    },
    dir,
    evalPath: fixture('val.npz'),
  });
  try {
    const np = r.report.nextPhase!;
    assert.ok(Math.abs(np.phaseSparsity! - 0.5) < 1e-12);
    assert.equal(np.sparsityBefore, 0.5);
    assert.equal(np.sparsityAfter, 1 - 0.5 * (1 - p)); // 2:4 soup, half of what is left pruned
    assert.equal(typeof np.metric, 'number');
    assert.ok(np.metric! < r.report.soup.metric!, 'pruning further costs accuracy before retraining');
    // global: one threshold across fc1 and fc2; fc3 (not prunable) untouched
    const uniform = await cook({ paths: INGREDIENTS, settings: { ...base, mode: 'uniform' }, dir, name: 'u.onnx' });
    let minKept = Infinity;
    let maxPruned = 0;
    for (const { name } of LAYERS) {
      const before = weightValues(uniform.soup, name);
      const afterW = weightValues(r.soup, name);
      before.forEach((v, i) => {
        if (v === 0) return assert.equal(afterW[i], 0);
        if (afterW[i] === 0) maxPruned = Math.max(maxPruned, Math.abs(v));
        else {
          assert.equal(afterW[i], v);
          minKept = Math.min(minKept, Math.abs(v));
        }
      });
    }
    assert.ok(minKept >= maxPruned);
    assert.deepEqual(weightValues(r.soup, 'fc3.weight'), weightValues(uniform.soup, 'fc3.weight'));
    closeModel(uniform.soup);
  } finally {
    closeModel(r.soup);
  }
});

test('next phase: per-layer scope and 1:4 along K', async () => {
  const layer = await cook({
    paths: INGREDIENTS.slice(0, 3),
    settings: { ...base, mode: 'uniform', nextPhase: { kind: 'magnitude', fraction: 0.5, scope: 'layer' } },
    dir,
  });
  const nm = await cook({
    paths: INGREDIENTS.slice(0, 3),
    settings: { ...base, mode: 'uniform', nextPhase: { kind: 'nm', n: 1, m: 4 } },
    dir,
  });
  try {
    for (const w of layer.report.nextPhase!.weights) assert.equal(w.after, 0.75, w.name);
    assert.equal(nm.report.nextPhase!.nmVerified, true);
    for (const { name, k, n } of LAYERS) {
      const w = weightValues(nm.soup, name);
      for (let col = 0; col < n; col++)
        for (let g = 0; g < k; g += 4) {
          const nz = [0, 1, 2, 3].filter((t) => w[(g + t) * n + col] !== 0).length;
          assert.ok(nz <= 1, `${name} col ${col} group ${g}`);
        }
    }
  } finally {
    closeModel(layer.soup);
    closeModel(nm.soup);
  }
});

test('the parent as base: its zeros bound the mask; without extra zeros the soup is unchanged', async () => {
  const viaParent = await cook({
    paths: INGREDIENTS,
    basePath: fixture('parent.onnx'),
    settings: { ...base, mode: 'uniform' },
    dir,
  });
  const viaIngredient = await cook({ paths: INGREDIENTS, settings: { ...base, mode: 'uniform' }, dir, name: 'i.onnx' });
  const proto = await loadProto(fixture('parent.onnx'));
  const t = proto.graph!.initializer.find((x) => x.name === 'fc1.weight')!;
  const w = new Float32Array(t.rawData.slice().buffer);
  const extra = w.findIndex((v) => v !== 0);
  w[extra] = 0;
  t.rawData = new Uint8Array(w.buffer);
  const sparser = await writeProto(proto, join(dir, 'sparser-parent.onnx'));
  const bound = await cook({ paths: INGREDIENTS, basePath: sparser, settings: { ...base, mode: 'uniform' }, dir });
  try {
    assert.equal(viaParent.report.maskCheck.parentBound, false);
    for (const name of ['fc1.weight', 'fc2.weight', 'fc3.weight', 'fc1.bias']) {
      assert.deepEqual(weightValues(viaParent.soup, name), weightValues(viaIngredient.soup, name));
    }
    assert.equal(bound.report.maskCheck.parentBound, true);
    assert.equal(weightValues(bound.soup, 'fc1.weight')[extra], 0);
    assert.equal(bound.report.ingredients[0].zeroedByMask, 1);
  } finally {
    [viaParent, viaIngredient, bound].forEach((r) => closeModel(r.soup));
  }
});

test('fidelity: greedy against a reference model, lower relative error is better', async () => {
  const r = await cook({
    paths: INGREDIENTS,
    settings: { ...base, metric: 'fidelity' },
    dir,
    evalPath: fixture('val.npz'),
    referencePath: fixture('dense.onnx'),
  });
  try {
    const metrics = r.report.ingredients.map((i) => i.metric!);
    assert.equal(r.report.metric.direction, 'lower');
    assert.ok(metrics.every((m) => m > 0 && m < 1));
    assert.ok(r.report.soup.metric! <= Math.min(...metrics));
    assert.equal(r.report.greedy!.steps[0].ingredient, metrics.indexOf(Math.min(...metrics)));
  } finally {
    closeModel(r.soup);
  }
});

/** x[N,16] → BatchNormalization → Reshape(shape) → MatMul W[16,3] → y. */
async function bnModel(name: string, seed: number, shape: number[]): Promise<string> {
  const f = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + s) + (s % 3));
  const inits = [
    makeTensor('bn.scale', 'float32', [16], f(16, seed)),
    makeTensor('bn.bias', 'float32', [16], f(16, seed + 1)),
    makeTensor('bn.mean', 'float32', [16], f(16, seed + 2)),
    makeTensor(
      'bn.var',
      'float32',
      [16],
      f(16, seed + 3).map((v) => v * v + 0.5),
    ),
    makeTensor('shape', 'int64', [2], shape),
    makeTensor(
      'w',
      'float32',
      [16, 3],
      f(48, seed + 4).map((v, i) => (i % 2 ? 0 : v)),
    ),
  ];
  const node = (opType: string, input: string[], output: string[]) =>
    create(NodeProtoSchema, { opType, input, output, name: opType });
  const proto = create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
    graph: create(GraphProtoSchema, {
      name: 'bn',
      node: [
        node('BatchNormalization', ['x', 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'], ['h']),
        node('Reshape', ['h', 'shape'], ['r']),
        node('MatMul', ['r', 'w'], ['y']),
      ],
      initializer: inits,
      input: [tensorValueInfo('x', 'float32', ['N', 16])],
      output: [tensorValueInfo('y', 'float32', ['N', 3])],
    }),
  });
  const path = join(dir, name);
  await writeFile(path, toBinary(ModelProtoSchema, proto));
  return path;
}

test('BatchNorm: statistics averaged with a recalibration note; non-float tensors must be identical', async () => {
  const a = await bnModel('bn-a.onnx', 1, [-1, 16]);
  const b = await bnModel('bn-b.onnx', 2, [-1, 16]);
  const r = await cook({ paths: [a, b], settings: { ...base, mode: 'uniform' }, dir });
  try {
    assert.match(r.report.batchNorm!, /1 BatchNormalization node\(s\).*averaged.*recalibrate/);
    const [ma, mb] = (await Promise.all([a, b].map((p) => loadModel(p)))) as LoadedModel[];
    const mean = weightValues(r.soup, 'bn.mean');
    const ea = weightValues(ma, 'bn.mean');
    const eb = weightValues(mb, 'bn.mean');
    mean.forEach((v, i) => assert.equal(v, Math.fround((ea[i] + eb[i]) / 2)));
    closeModel(ma);
    closeModel(mb);
  } finally {
    closeModel(r.soup);
  }
  const c = await bnModel('bn-c.onnx', 3, [0, 16]);
  const e = await cook({ paths: [a, c], settings: { ...base, mode: 'uniform' }, dir }).catch((x: unknown) => x);
  assert.ok(isInputError(e));
  assert.equal((e as { code: string }).code, 'soup-tensor-mismatch');
  assert.match((e as Error).message, /tensor "shape" \(2, not float\) differs between ingredient 2/);
});

test('ingredients with external data give the same soup as inline ones', async () => {
  const external: string[] = [];
  for (const [i, p] of INGREDIENTS.slice(0, 3).entries()) {
    const m = await loadModel(p);
    const out = join(dir, `ext-${i}.onnx`);
    await saveModel(m, out, { externalData: { sizeThreshold: 0 } });
    closeModel(m);
    external.push(out);
  }
  const settings = { ...base, mode: 'uniform' } as const;
  const ext = await cook({ paths: external, settings, dir, name: 'ext-soup.onnx' });
  const inline = await cook({ paths: INGREDIENTS.slice(0, 3), settings, dir, name: 'inline-soup.onnx' });
  try {
    for (const name of ['fc1.weight', 'fc2.weight', 'fc3.weight', 'fc2.bias']) {
      assert.deepEqual(weightValues(ext.soup, name), weightValues(inline.soup, name), name);
    }
    assert.equal(ext.report.soup.sparsity, 0.5);
  } finally {
    closeModel(ext.soup);
    closeModel(inline.soup);
  }
});

/** x[N,8] → If(cond) { x·Wt } else { x·We }: weights stored inside the branches. */
async function ifModel(name: string, seed: number, zeroAt: number): Promise<string> {
  const w = (s: number) => Float32Array.from({ length: 64 }, (_, i) => (i % 4 === zeroAt ? 0 : Math.sin(i + s)));
  const branch = (label: string, s: number) => {
    const g = new GraphBuilder({ name: label });
    g.node('MatMul', ['x', g.initializer(`W_${label}`, 'float32', [8, 8], w(s))], {}, { output: `y_${label}` });
    g.output(`y_${label}`, 'float32', ['N', 8]);
    return g.buildGraph();
  };
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['N', 8]);
  const cond = b.initializer('cond', 'bool', [], [1]);
  b.node('If', [cond], { then_branch: branch('then', seed), else_branch: branch('else', seed + 9) }, { output: 'y' });
  b.output('y', 'float32', ['N', 8]);
  const path = join(dir, name);
  await writeFile(path, toBinary(ModelProtoSchema, b.build().proto));
  return path;
}

test('weights inside If branches: averaged per branch, masks checked there too', async () => {
  const a = await ifModel('if-a.onnx', 1, 0);
  const b = await ifModel('if-b.onnx', 2, 0);
  const r = await cook({ paths: [a, b], settings: { ...base, mode: 'uniform' }, dir });
  try {
    assert.equal(r.report.maskCheck.maskedWeights, 2);
    assert.deepEqual(
      r.report.weights.map((w) => [w.name, w.soupSparsity]),
      [
        ['If/then_branch/W_then', 0.25],
        ['If/else_branch/W_else', 0.25],
      ],
    );
    const ifNode = r.soup.proto.graph!.node[0];
    const then = ifNode.attribute.find((x) => x.name === 'then_branch')!.g!.initializer[0];
    const got = tensorToFloat32(r.soup, then);
    got.forEach((v, i) =>
      assert.equal(v, i % 4 === 0 ? 0 : Math.fround((Math.fround(Math.sin(i + 1)) + Math.fround(Math.sin(i + 2))) / 2)),
    );
  } finally {
    closeModel(r.soup);
  }
  const c = await ifModel('if-c.onnx', 3, 1);
  const e = await cook({ paths: [a, c], settings: { ...base, mode: 'uniform' }, dir }).catch(
    (x: unknown) => x as Error,
  );
  assert.equal((e as { code?: string }).code, 'soup-mask-mismatch');
  assert.match((e as Error).message, /first differing weight "If\/then_branch\/W_then" at \[0, 0\]/);
});
