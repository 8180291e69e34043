// Report scans (report/sizes.ts): non-finite and non-zero counts read the stored bytes chunk by chunk
// (scanTensorBytes) and must equal a plain element-by-element count for every storage: aligned and unaligned inline
// raw_data, lazily read raw_data (large tensors of a loaded file), external data, fp32/fp16/bf16, several chunks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import {
  float32ToFloat16,
  float32ToBfloat16,
  scanTensorBytes,
  tensorBytes,
} from '../../../packages/engine/onnx/tensor.js';
import { nonFiniteCount, weightCounts } from '../../../packages/engine/report/sizes.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

const K = 640;
const N = 1024; // fp32 weight of 2.5 MiB: three scan chunks, the last one partial

/** Values with zeros, NaN, ±Inf and -0 sprinkled in; the expected counts computed element by element. */
function values(n: number, seed: number): { v: Float32Array; nonFinite: number; nonZero: number } {
  const v = randomFloats(n, seed);
  for (let i = 0; i < n; i += 7) v[i] = 0;
  for (let i = 3; i < n; i += 1001) v[i] = -0;
  for (let i = 5; i < n; i += 4099) v[i] = NaN;
  for (let i = 11; i < n; i += 9001) v[i] = i % 2 ? Infinity : -Infinity;
  let nonFinite = 0;
  let nonZero = 0;
  for (const x of v) {
    if (!Number.isFinite(x)) nonFinite++;
    if (x !== 0) nonZero++;
  }
  return { v, nonFinite, nonZero };
}

function build(): { model: LoadedModel; expect: Map<string, { nonFinite: number; nonZero: number }> } {
  const b = new GraphBuilder({ opset: 17 });
  let h = b.input('x', 'float32', [1, K]);
  const expect = new Map<string, { nonFinite: number; nonZero: number }>();
  const f32 = values(K * N, 1);
  expect.set('W32', f32);
  h = b.node('MatMul', [h, b.initializer('W32', 'float32', [K, N], f32.v)], {}, { name: 'mm32' });
  const f16 = values(N * 512, 2);
  expect.set('W16', f16);
  const c16 = b.node('Cast', [b.initializer('W16', 'float16', [N, 512], float32ToFloat16(f16.v))], { to: 1 });
  h = b.node('MatMul', [h, c16], {}, { name: 'mm16' });
  const bf = values(512 * 256, 3);
  expect.set('WB', bf);
  const cbf = b.node('Cast', [b.initializer('WB', 'bfloat16', [512, 256], float32ToBfloat16(bf.v))], { to: 1 });
  h = b.node('MatMul', [h, cbf], {}, { name: 'mmbf' });
  b.output(h, 'float32', [1, 256]);
  return { model: b.build(), expect };
}

function check(model: LoadedModel, expect: Map<string, { nonFinite: number; nonZero: number }>, what: string): void {
  const ws = discoverWeights(model);
  assert.deepEqual(ws.map((w) => w.name).sort(), [...expect.keys()].sort(), what);
  let params = 0;
  let nonZeros = 0;
  for (const w of ws) {
    const e = expect.get(w.name)!;
    assert.equal(nonFiniteCount(model, w), e.nonFinite, `${what}: non-finite of ${w.name}`);
    params += w.shape.reduce((a, b) => a * b, 1);
    nonZeros += e.nonZero;
  }
  assert.deepEqual(weightCounts(model, ws), { parameters: params, nonZeros }, what);
}

test('non-finite and non-zero counts match an element-wise count for every storage', async () => {
  const dir = tempDir('sizes-');
  try {
    const { model, expect } = build();
    check(model, expect, 'in memory, aligned');
    // raw_data at an odd offset, as protobuf leaves it inside a file buffer.
    for (const t of model.proto.graph!.initializer) {
      const shifted = new Uint8Array(t.rawData.length + 1);
      shifted.set(t.rawData, 1);
      t.rawData = shifted.subarray(1);
    }
    check(model, expect, 'in memory, unaligned');
    const inline = path.join(dir, 'inline.onnx');
    await saveModel(model, inline);
    const loaded = await loadModel(inline);
    check(loaded, expect, 'loaded inline');
    closeModel(loaded);
    const ext = path.join(dir, 'ext.onnx');
    await saveModel(model, ext, { externalData: true });
    const loadedExt = await loadModel(ext);
    check(loadedExt, expect, 'external data');
    closeModel(loadedExt);
  } finally {
    removeDir(dir);
  }
});

test('scanTensorBytes gives the same bytes as tensorBytes, in 8-byte-aligned chunks', () => {
  const { model } = build();
  for (const t of model.proto.graph!.initializer) {
    const shifted = new Uint8Array(t.rawData.length + 3);
    shifted.set(t.rawData, 3);
    t.rawData = shifted.subarray(3);
    const want = tensorBytes(model, t);
    const got = new Uint8Array(want.length);
    let next = 0;
    scanTensorBytes(model, t, (chunk, at) => {
      assert.equal(at, next);
      assert.equal(chunk.byteOffset % 8, 0);
      if (at + chunk.length < want.length) assert.equal(chunk.length % 8, 0);
      got.set(chunk, at);
      next += chunk.length;
    });
    assert.equal(next, want.length);
    assert.deepEqual(got, want);
  }
});
