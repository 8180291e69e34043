// Lazy inline tensors (onnx/lazy.ts): a model loaded with its large raw_data left in the file must be
// indistinguishable from one read whole — same bytes for every tensor, wherever it sits and whatever its dtype, same
// re-saved file — while no weight is read until something asks for it; in-place edits persist; a file changed or
// closed under a lazy model gives a clear error instead of wrong weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto, type TensorProto } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { lazyRawOf } from '../../../packages/engine/onnx/lazy.js';
import {
  readTensorBytesInto,
  scanTensorBytes,
  tensorBytes,
  tensorDtype,
  tensorStorage,
  tensorToFloat32,
  type DType,
} from '../../../packages/engine/onnx/tensor.js';
import {
  PPOCR_DET,
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

/** Every TensorProto of a model, in a fixed order: graphs and subgraphs, attributes, sparse parts, functions. */
function allTensors(proto: ModelProto): TensorProto[] {
  const out: TensorProto[] = [];
  const seen = new Set<object>();
  const visit = (x: unknown): void => {
    if (!x || typeof x !== 'object' || seen.has(x) || ArrayBuffer.isView(x)) return;
    seen.add(x);
    if (Array.isArray(x)) {
      for (const y of x) visit(y);
      return;
    }
    const msg = x as Record<string, unknown>;
    if (msg.$typeName === 'onnx.TensorProto') {
      out.push(msg as unknown as TensorProto);
      return;
    }
    for (const k of Object.keys(msg)) if (k !== '$unknown') visit(msg[k]);
  };
  visit(proto);
  return out;
}

/** One initializer of every dtype with a byte form, plus a typed-field (float_data) tensor. */
function dtypeZoo(): LoadedModel {
  const b = new GraphBuilder({ opset: 21 });
  const x = b.input('x', 'float32', [1, 4]);
  const numeric: DType[] = ['float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32'];
  for (const d of [...numeric, 'int64', 'uint64', 'bool', 'int4', 'uint4'] as DType[]) {
    const n = 37;
    const vals = Array.from({ length: n }, (_, i) =>
      d === 'bool' ? i % 2 : d.startsWith('uint') ? i % 7 : (i % 7) - 3,
    );
    b.initializer(`t_${d}`, d, [n], vals);
  }
  b.initializer(
    't_float16',
    'float16',
    [16],
    new Uint16Array(16).map((_, i) => 0x3c00 + i),
  );
  b.initializer(
    't_bfloat16',
    'bfloat16',
    [16],
    new Uint16Array(16).map((_, i) => 0x3f80 + i),
  );
  b.initializer(
    't_f8',
    'float8e4m3fn',
    [16],
    new Uint8Array(16).map((_, i) => i * 3),
  );
  b.output(b.node('Identity', [x], {}, { output: 'y' }), 'float32', [1, 4]);
  const m = b.build();
  const typed = m.proto.graph!.initializer.find((t) => t.name === 't_float32')!;
  typed.floatData = Array.from(randomFloats(37, 9));
  typed.rawData = new Uint8Array(0);
  return m;
}

const models: [string, () => LoadedModel][] = [
  ['mlp', mlpModel],
  ['via', viaModel],
  ['conv', convModel],
  ['if', ifModel],
  ['loop/scan', loopScanModel],
  ['sparse initializer', sparseInitModel],
  ['local function', functionModel],
  ['dtype zoo', dtypeZoo],
];

test('lazy load equals eager load: every tensor, every dtype and place, and the re-saved file', async () => {
  const dir = tempDir('lazy-');
  try {
    for (const [name, make] of models) {
      const file = path.join(dir, `${name.replace(/\W/g, '_')}.onnx`);
      await saveModel(make(), file);
      const original = fs.readFileSync(file);
      const eager = await loadModel(file, { lazyMinBytes: Infinity });
      const lazy = await loadModel(file, { lazyMinBytes: 1 });
      assert.ok(lazy.source, `${name}: loaded lazily`);
      assert.equal(eager.source, undefined);
      const te = allTensors(eager.proto);
      const tl = allTensors(lazy.proto);
      assert.equal(tl.length, te.length, name);
      const lazyCount = tl.filter((t) => lazyRawOf(t)).length;
      assert.ok(lazyCount >= 1, `${name}: some raw_data left in the file`);
      // Re-saving before anything was read copies the lazy bytes straight from the file: the same file.
      const resaved = path.join(dir, 'resaved.onnx');
      await saveModel(lazy, resaved);
      assert.ok(fs.readFileSync(resaved).equals(original), `${name}: re-saved file identical`);
      assert.equal(tl.filter((t) => lazyRawOf(t)).length, lazyCount, `${name}: saving read nothing into memory`);
      for (let i = 0; i < te.length; i++) {
        const [a, b] = [te[i], tl[i]];
        assert.equal(tensorStorage(b), tensorStorage(a), `${name}/${a.name}: storage`);
        if (tensorStorage(a) === 'empty' || a.dataType === 8) continue;
        const want = tensorBytes(eager, a);
        // Partial reads and chunked scans do not materialise the tensor.
        if (want.length > 2) {
          const part = new Uint8Array(want.length - 2);
          readTensorBytesInto(lazy, b, 1, part);
          assert.deepEqual(part, want.subarray(1, want.length - 1), `${name}/${a.name}: range read`);
        }
        const scanned = new Uint8Array(want.length);
        scanTensorBytes(lazy, b, (chunk, at) => scanned.set(chunk, at));
        assert.deepEqual(scanned, want, `${name}/${a.name}: scan`);
        const wasLazy = !!lazyRawOf(b);
        if (tensorDtype(a) === 'float32') {
          assert.deepEqual(tensorToFloat32(lazy, b), tensorToFloat32(eager, a), `${name}/${a.name}: floats`);
          assert.equal(!!lazyRawOf(b), wasLazy, `${name}/${a.name}: converting keeps no raw copy`);
        }
        assert.deepEqual(tensorBytes(lazy, b), want, `${name}/${a.name}: bytes`);
        if (wasLazy) assert.equal(lazyRawOf(b), undefined, `${name}/${a.name}: tensorBytes keeps the bytes`);
      }
      // Fully materialised, the two protos encode identically.
      assert.deepEqual(toBinary(ModelProtoSchema, lazy.proto), toBinary(ModelProtoSchema, eager.proto), name);
      closeModel(eager);
      closeModel(lazy);
    }
  } finally {
    removeDir(dir);
  }
});

test('default load leaves large raw_data in the file and re-saves PP-OCRv4 det byte for byte', async () => {
  const dir = tempDir('lazy-ppocr-');
  try {
    const m = await loadModel(PPOCR_DET);
    const lazy = allTensors(m.proto).filter((t) => lazyRawOf(t));
    assert.ok(lazy.length > 0 && lazy.every((t) => lazyRawOf(t)!.length >= 64 * 1024));
    const out = path.join(dir, 'det.onnx');
    await saveModel(m, out);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(PPOCR_DET)));
    // Saved with external data and back inline: the lazy bytes go to the side file from the source file.
    const ext = path.join(dir, 'det-ext.onnx');
    await saveModel(m, ext, { externalData: true });
    const back = await loadModel(ext);
    const inline = path.join(dir, 'det-inline.onnx');
    await saveModel(back, inline, { externalData: false });
    closeModel(back);
    assert.ok(fs.readFileSync(inline).equals(fs.readFileSync(PPOCR_DET)));
    closeModel(m);
  } finally {
    removeDir(dir);
  }
});

function bigModel(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 256]);
  const y = b.node('MatMul', [x, b.initializer('W', 'float32', [256, 256], randomFloats(65536, 3))]);
  b.output(y, 'float32', [1, 256]);
  return b.build();
}

test('in-place edits of a lazily loaded weight are kept and saved; copies carry the bytes', async () => {
  const dir = tempDir('lazy-edit-');
  try {
    const file = path.join(dir, 'm.onnx');
    await saveModel(bigModel(), file);
    const m = await loadModel(file);
    const w = m.proto.graph!.initializer[0];
    assert.ok(lazyRawOf(w));
    const copy = { ...w };
    assert.equal(copy.rawData.length, 65536 * 4, 'a spread copy reads the bytes');
    const bytes = tensorBytes(m, w);
    bytes.fill(0, 0, 1024);
    assert.equal(tensorBytes(m, w), bytes, 'the same bytes on the next read');
    await saveModel(m, file); // over the file it was loaded from
    closeModel(m);
    const again = await loadModel(file, { lazyMinBytes: Infinity });
    const b2 = tensorBytes(again, again.proto.graph!.initializer[0]);
    assert.ok(b2.subarray(0, 1024).every((v) => v === 0));
    assert.deepEqual(b2.subarray(1024), bytes.subarray(1024));
  } finally {
    removeDir(dir);
  }
});

test('a lazily loaded model whose file is rewritten or closed fails clearly; replaced by rename it still reads', async () => {
  const dir = tempDir('lazy-changed-');
  try {
    const file = path.join(dir, 'm.onnx');
    await saveModel(bigModel(), file);
    const original = fs.readFileSync(file);
    // Replaced by rename (what saveModel does): the open descriptor still reads the old file.
    const m1 = await loadModel(file);
    fs.writeFileSync(file + '.new', Buffer.alloc(original.length, 1));
    fs.renameSync(file + '.new', file);
    const out = path.join(dir, 'out.onnx');
    await saveModel(m1, out);
    assert.ok(fs.readFileSync(out).equals(original));
    closeModel(m1);
    // Rewritten in place: refused.
    fs.writeFileSync(file, original);
    const m2 = await loadModel(file);
    const w2 = m2.proto.graph!.initializer[0];
    const bumped = Buffer.from(original);
    bumped[bumped.length - 100] ^= 1;
    fs.writeFileSync(file, bumped);
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(file, later, later);
    assert.throws(() => tensorBytes(m2, w2), { name: 'OnnxError', code: 'model-changed' });
    closeModel(m2);
    // Read after closeModel: refused, not empty.
    fs.writeFileSync(file, original);
    const m3 = await loadModel(file);
    closeModel(m3);
    assert.throws(() => tensorBytes(m3, m3.proto.graph!.initializer[0]), { name: 'OnnxError', code: 'io-error' });
  } finally {
    removeDir(dir);
  }
});

test('truncated and size-mismatched files keep their error codes through the lazy loader', async () => {
  const dir = tempDir('lazy-bad-');
  try {
    const file = path.join(dir, 'm.onnx');
    await saveModel(bigModel(), file);
    const whole = fs.readFileSync(file);
    for (const frac of [0.1, 0.5, 0.9, 0.999]) {
      fs.writeFileSync(file, whole.subarray(0, Math.floor(whole.length * frac)));
      await assert.rejects(loadModel(file), { name: 'OnnxError', code: 'truncated' }, `cut at ${frac}`);
    }
    // dims say 256×128 while raw_data holds 256×256.
    const m = bigModel();
    m.proto.graph!.initializer[0].dims = [256n, 128n];
    fs.writeFileSync(file, toBinary(ModelProtoSchema, m.proto));
    await assert.rejects(loadModel(file), { name: 'OnnxError', code: 'raw-data-size-mismatch' });
    await assert.rejects(loadModel(file, { lazyMinBytes: 0 }), { name: 'OnnxError', code: 'invalid-argument' });
  } finally {
    removeDir(dir);
  }
});

test('negative int attributes (axis = -1: a ten-byte varint past 2^53) do not stop the lazy load', async () => {
  const dir = tempDir('lazy-negative-');
  try {
    const b = new GraphBuilder({ opset: 17 });
    b.input('x', 'float32', ['n', 128]);
    b.initializer('w', 'float32', [128, 128], randomFloats(128 * 128, 3));
    const h = b.node('MatMul', ['x', 'w']);
    b.node('Softmax', [h], { axis: -1 }, { output: 'y' });
    b.output('y', 'float32', ['n', 128]);
    const file = path.join(dir, 'm.onnx');
    await saveModel(b.build(), file);
    const m = await loadModel(file);
    try {
      const w = m.proto.graph!.initializer[0];
      assert.ok(lazyRawOf(w), 'the 64 KiB weight stays in the file');
      assert.equal(m.proto.graph!.node[1].attribute[0].i, -1n);
      const eager = await loadModel(file, { lazyMinBytes: Infinity });
      assert.deepEqual(tensorBytes(m, w), tensorBytes(eager, eager.proto.graph!.initializer[0]));
      closeModel(eager);
    } finally {
      closeModel(m);
    }
  } finally {
    removeDir(dir);
  }
});
