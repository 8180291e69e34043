// Decode → encode round trips: real PP-OCRv4 models and synthetic ones, inline and with external data, must keep
// meaning exactly (onnxruntime gives bit-identical outputs) and keep unknown fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataLocation } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { decodeModel, loadModel, saveModel, closeModel } from '../../../packages/engine/onnx/model.js';
import type { LoadedModel } from '../../../packages/engine/onnx/model.js';
import { externalRef } from '../../../packages/engine/onnx/external.js';
import { tensorBytes } from '../../../packages/engine/onnx/tensor.js';
import { graphTensors, walkGraphs } from '../../../packages/engine/onnx/walk.js';
import {
  PPOCR_DET,
  PPOCR_REC,
  convModel,
  functionModel,
  ifModel,
  loopScanModel,
  mlpModel,
  randomFloats,
  removeDir,
  sparseInitModel,
  tempDir,
  viaModel,
} from '../../helpers/onnx-fixtures.js';
import type { Feeds } from '../../helpers/ort.js';
import { runOrt, sameArrays } from '../../helpers/ort.js';

const f32 = (n: number[], seed: number): Feeds[string] => ({
  type: 'float32',
  data: randomFloats(
    n.reduce((a, b) => a * b, 1),
    seed,
  ),
  dims: n,
});

const synthetic: [string, () => LoadedModel, Feeds][] = [
  ['mlp (initializer + Constant, Gemm transB)', mlpModel, { x: f32([1, 16], 20) }],
  ['via (Identity, Cast fp16, Reshape, Transpose)', viaModel, { x: f32([2, 8], 21) }],
  ['conv (groups)', convModel, { x: f32([1, 4, 6, 6], 22) }],
  ['If subgraphs', ifModel, { x: f32([1, 8], 23), cond: { type: 'bool', data: new Uint8Array([1]), dims: [] } }],
  ['Loop/Scan subgraphs', loopScanModel, { x: f32([1, 8], 24), rows: f32([3, 8], 25) }],
  ['sparse initializer', sparseInitModel, { x: f32([1, 8], 26) }],
  ['local function with a Constant weight', functionModel, { x: f32([1, 8], 27) }],
];

async function assertSameOutputs(a: string | LoadedModel, b: string | LoadedModel, feeds: Feeds): Promise<void> {
  const ra = await runOrt(a, feeds);
  const rb = await runOrt(b, feeds);
  assert.deepEqual(Object.keys(rb).sort(), Object.keys(ra).sort());
  for (const k of Object.keys(ra)) assert.ok(sameArrays(ra[k], rb[k]), `output '${k}' differs`);
}

function externalTensorCount(m: LoadedModel): number {
  let n = 0;
  walkGraphs(m.proto, (v) => {
    for (const t of graphTensors(v.graph)) if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) n++;
  });
  return n;
}

for (const [label, build, feeds] of synthetic) {
  test(`synthetic ${label}: ORT identical after save inline → external → inline`, async () => {
    const dir = tempDir();
    try {
      const model = build();
      const inline1 = path.join(dir, 'a.onnx');
      const ext = path.join(dir, 'b.onnx');
      const inline2 = path.join(dir, 'c.onnx');
      await saveModel(model, inline1, { externalData: false });
      const r = await saveModel(await loadModel(inline1), ext, { externalData: { sizeThreshold: 64 } });
      const loadedExt = await loadModel(ext);
      if (!['sparse initializer', 'local function with a Constant weight'].includes(label)) {
        assert.ok(r.externalBytes > 0, 'some tensor went external');
        assert.ok(externalTensorCount(loadedExt) > 0);
      }
      if (label.startsWith('local function'))
        assert.equal(
          loadedExt.proto.functions[0].node[0].attribute[0].t!.rawData.length,
          256,
          'function body stays inline',
        );
      await saveModel(loadedExt, inline2, { externalData: false });
      assert.equal(externalTensorCount(await loadModel(inline2)), 0);
      await assertSameOutputs(model, inline1, feeds);
      await assertSameOutputs(model, ext, feeds);
      await assertSameOutputs(model, inline2, feeds);
      // Inline → external → inline gives back the very same bytes.
      assert.ok(Buffer.from(fs.readFileSync(inline1)).equals(fs.readFileSync(inline2)));
      closeModel(loadedExt);
    } finally {
      removeDir(dir);
    }
  });
}

for (const [label, file, dims] of [
  ['det', PPOCR_DET, [1, 3, 64, 96]],
  ['rec', PPOCR_REC, [1, 3, 48, 160]],
] as const) {
  test(`PP-OCRv4 ${label}: byte-identical re-save, ORT identical through external data and back`, async () => {
    const dir = tempDir();
    try {
      const model = await loadModel(file);
      const inline = path.join(dir, 'inline.onnx');
      const ext = path.join(dir, 'ext.onnx');
      const back = path.join(dir, 'back.onnx');
      const a = await saveModel(model, inline, { externalData: false });
      assert.equal(a.externalBytes, 0);
      // Byte for byte what the exporter wrote (fields in number order, like protobuf-es and C++ protobuf).
      assert.ok(fs.readFileSync(inline).equals(fs.readFileSync(file)), 'inline re-save is byte-identical');
      const b = await saveModel(model, ext, { externalData: true });
      assert.ok(b.externalBytes > 0 && b.modelBytes < 200_000, `weights moved out (${JSON.stringify(b)})`);
      const extModel = await loadModel(ext);
      // The Constant-node weights are external now and every offset is 4 KiB aligned.
      let n = 0;
      walkGraphs(extModel.proto, (v) => {
        for (const t of graphTensors(v.graph))
          if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) {
            n++;
            assert.equal(externalRef(t).offset % 4096, 0);
            assert.equal(externalRef(t).location, 'ext.onnx.data');
          }
      });
      assert.ok(n > 40, `${n} external tensors`);
      await saveModel(extModel, back, { externalData: false });
      assert.ok(fs.readFileSync(back).equals(fs.readFileSync(file)), 'external → inline gives the original bytes back');
      const feeds: Feeds = { x: f32([...dims], 30) };
      await assertSameOutputs(file, ext, feeds);
      await assertSameOutputs(file, back, feeds);
      closeModel(extModel);
    } finally {
      removeDir(dir);
    }
  });
}

test('unknown fields survive decode → encode, inline and external', async () => {
  const dir = tempDir();
  try {
    const model = mlpModel();
    const bytes = toBinary(ModelProtoSchema, model.proto);
    // Append unknown fields at three levels: ModelProto (field 1000), GraphProto (field 999), TensorProto (field 777).
    const proto = fromBinary(ModelProtoSchema, bytes);
    const unk = (no: number, data: number[]) => ({ no, wireType: 2, data: new Uint8Array([data.length, ...data]) });
    (proto as { $unknown?: unknown[] }).$unknown = [unk(1000, [1, 2, 3])];
    (proto.graph as { $unknown?: unknown[] }).$unknown = [unk(999, [4, 5])];
    (proto.graph!.initializer[0] as { $unknown?: unknown[] }).$unknown = [unk(777, [6])];
    const withUnknown = toBinary(ModelProtoSchema, proto);
    const loaded = decodeModel(withUnknown, dir);
    await saveModel(loaded, path.join(dir, 'same.onnx'), { externalData: false });
    assert.ok(fs.readFileSync(path.join(dir, 'same.onnx')).equals(withUnknown), 'the same bytes toBinary gives');
    for (const opts of [{ externalData: false }, { externalData: { sizeThreshold: 16 } }] as const) {
      const out = path.join(dir, `u-${opts.externalData === false ? 'inline' : 'ext'}.onnx`);
      await saveModel(loaded, out, opts);
      const again = fromBinary(ModelProtoSchema, fs.readFileSync(out));
      const u = (m: object) =>
        ((m as { $unknown?: { no: number; data: Uint8Array }[] }).$unknown ?? []).map((x) => [
          x.no,
          Array.from(x.data),
        ]);
      assert.deepEqual(u(again), [[1000, [3, 1, 2, 3]]]);
      assert.deepEqual(u(again.graph!), [[999, [2, 4, 5]]]);
      assert.deepEqual(u(again.graph!.initializer.find((t) => t.name === 'W1')!), [[777, [1, 6]]]);
    }
  } finally {
    removeDir(dir);
  }
});

test('default save: inline below 1.8 GiB; external model saved with default goes inline again', async () => {
  const dir = tempDir();
  try {
    const model = mlpModel();
    const r = await saveModel(model, path.join(dir, 'm.onnx'));
    assert.equal(r.externalBytes, 0);
    assert.equal(fs.existsSync(path.join(dir, 'm.onnx.data')), false);
    await saveModel(model, path.join(dir, 'e.onnx'), { externalData: { location: 'weights.bin', sizeThreshold: 0 } });
    const e = await loadModel(path.join(dir, 'e.onnx'));
    assert.ok(fs.existsSync(path.join(dir, 'weights.bin')));
    const w1 = e.proto.graph!.initializer.find((t) => t.name === 'W1')!;
    assert.equal(externalRef(w1).location, 'weights.bin');
    assert.deepEqual(Array.from(tensorBytes(e, w1)), Array.from(model.proto.graph!.initializer[0].rawData));
    const r2 = await saveModel(e, path.join(dir, 'i.onnx'));
    assert.equal(r2.externalBytes, 0);
    await assert.rejects(saveModel(model, path.join(dir, 'x.onnx'), { externalData: { location: '../x.data' } }), {
      name: 'OnnxError',
      code: 'external-path-traversal',
    });
  } finally {
    removeDir(dir);
  }
});

test('saving over the model being read (same .onnx and .data paths) works', async () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    await saveModel(mlpModel(), file, { externalData: { sizeThreshold: 16 } });
    const m = await loadModel(file);
    await saveModel(m, file, { externalData: { sizeThreshold: 16 } });
    const again = await loadModel(file);
    await assertSameOutputs(mlpModel(), file, { x: f32([1, 16], 40) });
    closeModel(m);
    closeModel(again);
  } finally {
    removeDir(dir);
  }
});

test('tensors stored in typed fields (float_data, int32_data fp16) move to external data and back', async () => {
  const dir = tempDir();
  try {
    const model = mlpModel();
    const w1 = model.proto.graph!.initializer.find((t) => t.name === 'W1')!;
    const values = new Float32Array(
      w1.rawData.buffer.slice(w1.rawData.byteOffset, w1.rawData.byteOffset + w1.rawData.length),
    );
    w1.floatData = Array.from(values);
    w1.rawData = new Uint8Array(0);
    await saveModel(model, path.join(dir, 't.onnx'), { externalData: { sizeThreshold: 16 } });
    await assertSameOutputs(mlpModel(), path.join(dir, 't.onnx'), { x: f32([1, 16], 41) });
  } finally {
    removeDir(dir);
  }
});
