// Raising the opset must keep what the model computes: ORT outputs before and after upgradeOpset() agree, on
// PP-OCRv4 rec (opset 9: Squeeze, Clip, Slice, ReduceMean, Softmax) and on a synthetic opset-9 model holding every
// rewritten op, including Softmax on a non-last axis (where the old 2-D coercion differs from the new semantics).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { GraphBuilder, float } from '../../../packages/engine/onnx/builder.js';
import { ensureOpset, upgradeOpset } from '../../../packages/engine/onnx/graph.js';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import type { LoadedModel } from '../../../packages/engine/onnx/model.js';
import { PPOCR_DET, PPOCR_REC, randomFloats } from '../../helpers/onnx-fixtures.js';
import type { Feeds } from '../../helpers/ort.js';
import { runOrt } from '../../helpers/ort.js';

function assertClose(a: Float32Array, b: Float32Array, tol: number, label: string): void {
  assert.equal(a.length, b.length, label);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  assert.ok(worst <= tol, `${label}: max relative difference ${worst}`);
}

async function checkUpgrade(model: LoadedModel, feeds: Feeds, version: number, tol = 0): Promise<void> {
  const before = await runOrt(model, feeds);
  upgradeOpset(model, version);
  assert.equal(Number(model.proto.opsetImport.find((o) => o.domain === '')!.version), version);
  ensureOpset(model, '', version); // now a no-op
  const after = await runOrt(model, feeds);
  for (const k of Object.keys(before)) assertClose(after[k], before[k], tol, k);
}

function oldOpsetModel(): LoadedModel {
  const b = new GraphBuilder({ opset: 9 });
  const x = b.input('x', 'float32', [2, 3, 8]);
  const c = b.node('Clip', [x], { min: float(-0.5), max: float(0.7) });
  const c1 = b.node('Clip', [c], { max: float(0.6) });
  const s = b.node('Slice', [c1], { starts: [1], ends: [7], axes: [2] });
  const u = b.node('Unsqueeze', [s], { axes: [0] });
  const q = b.node('Squeeze', [u], { axes: [0] });
  const r = b.node('ReduceMean', [q], { axes: [1], keepdims: 1 });
  const p = b.node('Pad', [r], { pads: [0, 0, 1, 0, 0, 1], value: float(0.25) });
  const d = b.node('Dropout', [p], { ratio: float(0.3) });
  const [s1, s2] = b.nodeMulti('Split', [d], { axis: 2, split: [3, 5] }, { outputs: 2 });
  const [tv] = b.nodeMulti('TopK', [s2], { k: 2, axis: -1 }, { outputs: 2 });
  const sm = b.node('Softmax', [x], { axis: 1 }, { output: 'soft_axis1' });
  const sl = b.node('LogSoftmax', [x], { axis: 2 }, { output: 'logsoft_last' });
  b.output(s1, 'float32');
  b.output(tv, 'float32');
  b.output(sm, 'float32');
  b.output(sl, 'float32');
  return b.build();
}

test('synthetic opset-9 model: every rewritten op computes the same after 9 → 21', async () => {
  const model = oldOpsetModel();
  await checkUpgrade(model, { x: { type: 'float32', data: randomFloats(48, 3), dims: [2, 3, 8] } }, 21, 1e-6);
  const ops = model.proto.graph!.node.map((n) => n.opType);
  assert.ok(ops.includes('Flatten') && ops.includes('Shape'), 'Softmax(axis=1) rewritten through its 2-D form');
  assert.ok(
    model.proto.graph!.node.every(
      (n) => !n.attribute.some((a) => ['axes', 'starts', 'min', 'pads', 'split', 'k', 'ratio'].includes(a.name)),
    ),
  );
  assert.equal(Number(model.proto.irVersion), 10);
});

test('PP-OCRv4 rec (opset 9) and det (opset 11) upgrade to 21 with the same outputs', async () => {
  const rec = await loadModel(PPOCR_REC);
  assert.throws(() => ensureOpset(rec, '', 21), { code: 'opset-upgrade-unsafe' });
  await checkUpgrade(
    rec,
    { x: { type: 'float32', data: randomFloats(3 * 48 * 120, 4), dims: [1, 3, 48, 120] } },
    21,
    1e-5,
  );
  const det = await loadModel(PPOCR_DET);
  await checkUpgrade(det, { x: { type: 'float32', data: randomFloats(3 * 64 * 64, 5), dims: [1, 3, 64, 64] } }, 21);
});

test('an op without an exact rewrite blocks the upgrade and leaves the model untouched', () => {
  const b = new GraphBuilder({ opset: 10 });
  const x = b.input('x', 'float32', [1, 1, 2, 2]);
  b.output(
    b.node('Resize', [x, b.initializer('scales', 'float32', [4], [1, 1, 2, 2])], { mode: 'nearest' }),
    'float32',
  );
  b.node('Squeeze', [x], { axes: [0] });
  const model = b.build();
  const before = toBinary(ModelProtoSchema, model.proto);
  assert.throws(
    () => upgradeOpset(model, 13),
    (e: Error & { code?: string }) => e.code === 'opset-upgrade-unsafe' && /Resize/.test(e.message),
  );
  assert.deepEqual(toBinary(ModelProtoSchema, model.proto), before);
});
