// Held-out scoring details users hit with real exports: a label output listed before the logits, labels stored as
// [samples, 1], and a model that fixes its batch size at 1.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { create } from '@bufbuild/protobuf';
import { decodeNpz, encodeNpz } from '../../../packages/engine/data/npz.js';
import {
  NodeProtoSchema,
  AttributeProtoSchema,
  AttributeProto_AttributeType,
} from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { tensorValueInfo } from '../../../packages/engine/onnx/graph.js';
import { closeModel, loadModel } from '../../../packages/engine/onnx/model.js';
import { HeldOutScorer } from '../../../packages/engine/soup/score.js';
import { INGREDIENTS, fixture, heldOut, loadProto, scratchDir, writeProto } from '../../helpers/soup-harness.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await scratchDir()));
after(() => cleanup());

async function score(modelPath: string, dataPath: string): Promise<number | null> {
  const model = await loadModel(modelPath);
  const scorer = new HeldOutScorer({ dataset: await heldOut(dataPath, model), tmpDir: dir });
  try {
    return await scorer.score(model, 'accuracy');
  } finally {
    await scorer.close();
    closeModel(model);
  }
}

test('a label output first and labels [samples, 1]: the class-axis output is scored', async () => {
  const proto = await loadProto(INGREDIENTS[0]);
  const g = proto.graph!;
  g.node.push(
    create(NodeProtoSchema, {
      opType: 'ArgMax',
      input: ['logits'],
      output: ['label'],
      attribute: [
        create(AttributeProtoSchema, { name: 'axis', type: AttributeProto_AttributeType.INT, i: 1n }),
        create(AttributeProtoSchema, { name: 'keepdims', type: AttributeProto_AttributeType.INT, i: 0n }),
      ],
    }),
  );
  g.output.unshift(tensorValueInfo('label', 'int64', ['batch']));
  const twoOutputs = await writeProto(proto, join(dir, 'two-outputs.onnx'));
  const arrays = decodeNpz(new Uint8Array(await readFile(fixture('val.npz'))));
  const labels = arrays.get('labels')!;
  const column = join(dir, 'val-column.npz');
  await writeFile(column, encodeNpz({ input: arrays.get('input')!, labels: { ...labels, dims: [labels.dims[0], 1] } }));
  const expected = await score(INGREDIENTS[0], fixture('val.npz'));
  assert.equal(await score(twoOutputs, column), expected);
  assert.equal(await score(twoOutputs, fixture('val.npz')), expected);
});

test('a model that fixes the batch at 1 is scored sample by sample, same accuracy', async () => {
  const proto = await loadProto(INGREDIENTS[0]);
  proto.graph!.input[0] = tensorValueInfo('input', 'float32', [1, 16]);
  proto.graph!.output[0] = tensorValueInfo('logits', 'float32', [1, 3]);
  const fixed = await writeProto(proto, join(dir, 'batch1.onnx'));
  assert.equal(await score(fixed, fixture('val.npz')), await score(INGREDIENTS[0], fixture('val.npz')));
});
