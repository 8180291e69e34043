// The quantize method on a model file whose weights stay on disk until used (lazy inline raw_data, at whatever byte
// offset protobuf left them): the fused path reads each weight block by block and must write exactly the
// MatMulNBits bytes the in-memory kernel gives; a non-finite weight still fails the layer with the kernel's error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { lazyRawOf } from '../../../packages/engine/onnx/lazy.js';
import { tensorBytes } from '../../../packages/engine/onnx/tensor.js';
import { float16ToFloat32, float32ToFloat16 } from '../../../packages/engine/onnx/floats.js';
import { quantizePackKN4 } from '../../../packages/engine/quant/fast-kn.js';
import { runRecipe } from '../../../packages/engine/run.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

const K = 256;
const N = 160; // 160 KiB of fp32: above the lazy threshold

function model(w: Float32Array[]): ReturnType<GraphBuilder['build']> {
  const b = new GraphBuilder({ opset: 17 });
  let h = b.input('x', 'float32', [1, K]);
  w.forEach((v, i) => {
    // a small odd-length tensor first, so the next raw_data sits at an unaligned file offset
    b.initializer(`pad${i}`, 'uint8', [3 + i], new Uint8Array(3 + i));
    h = b.node('MatMul', [h, b.initializer(`w${i}`, 'float32', [K, i === 0 ? K : N], v)], {}, { name: `mm${i}` });
  });
  b.output(h, 'float32', [1, N]);
  return b.build();
}

const recipe = {
  method: 'quantize',
  quant: { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true },
  accuracyLevel: 0,
};

test('fused quantization of lazily loaded weights writes the same MatMulNBits bytes as the in-memory kernel', async () => {
  const dir = tempDir('quant-file-');
  try {
    const ws = [randomFloats(K * K, 1), randomFloats(K * N, 2)];
    const src = join(dir, 'dense.onnx');
    await saveModel(model(ws), src);
    const loaded = await loadModel(src);
    assert.ok(loaded.proto.graph!.initializer.filter((t) => t.name.startsWith('w')).every((t) => lazyRawOf(t)));
    closeModel(loaded);
    const res = await runRecipe(recipe as unknown as Recipe, { modelPath: src, outputDir: join(dir, 'out') });
    assert.deepEqual(
      res.report.layers.map((l) => [l.name, l.nonFinite]),
      [
        ['w0', 0],
        ['w1', 0],
      ],
    );
    const out = await loadModel(join(dir, 'out', 'model.onnx'));
    const g = out.proto.graph!;
    const nodes = g.node.filter((n) => n.opType === 'MatMulNBits');
    assert.equal(nodes.length, 2);
    nodes.forEach((node, i) => {
      const want = quantizePackKN4(ws[i], K, i === 0 ? K : N, 32);
      const init = (name: string) =>
        tensorBytes(
          out,
          g.initializer.find((t) => t.name === name)!,
        );
      assert.deepEqual(init(node.input[1]), want.B, `B of w${i}`);
      assert.deepEqual(init(node.input[2]), new Uint8Array(want.scales.buffer), `scales of w${i}`);
    });
    closeModel(out);
  } finally {
    removeDir(dir);
  }
});

test('a NaN weight read from the file fails the job with the kernel error naming it', async () => {
  const dir = tempDir('quant-file-nan-');
  try {
    const ws = [randomFloats(K * K, 3), randomFloats(K * N, 4)];
    ws[1][1234] = NaN;
    const src = join(dir, 'dense.onnx');
    await saveModel(model(ws), src);
    await assert.rejects(
      runRecipe(recipe as unknown as Recipe, { modelPath: src, outputDir: join(dir, 'out') }),
      /non-finite weight at row 7, column 114/,
    );
  } finally {
    removeDir(dir);
  }
});

/** x (fp16) → /model/layers.0/mlp/up_proj/MatMul (w0, K×K) → down_proj (w1, K×N), weights stored as fp16 bits. */
function model16(halves: Uint16Array[]): ReturnType<GraphBuilder['build']> {
  const b = new GraphBuilder({ opset: 21 });
  let h = b.input('x', 'float16', [1, K]);
  halves.forEach((v, i) => {
    b.initializer(`pad${i}`, 'uint8', [3 + i], new Uint8Array(3 + i)); // unaligned raw_data, as above
    const name = `/model/layers.0/mlp/${i ? 'down' : 'up'}_proj/MatMul`;
    h = b.node('MatMul', [h, b.initializer(`w${i}`, 'float16', [K, i === 0 ? K : N], v)], {}, { name });
  });
  b.output(h, 'float16', [1, N]);
  return b.build();
}

test('fp16 weights, lazily loaded or external: the fused path writes quantizePackKN4 of their exact fp32 values', async () => {
  const dir = tempDir('quant-file-16-');
  try {
    const halves = [float32ToFloat16(randomFloats(K * K, 5)), float32ToFloat16(randomFloats(K * N, 6))];
    for (const external of [false, true]) {
      const src = join(dir, `dense-${external}.onnx`);
      await saveModel(model16(halves), src, external ? { externalData: { sizeThreshold: 1024 } } : {});
      const res = await runRecipe(recipe as unknown as Recipe, {
        modelPath: src,
        outputDir: join(dir, `out-${external}`),
      });
      assert.deepEqual(
        res.report.layers.map((l) => [l.name, l.skipped ?? null]),
        [
          ['w0', null],
          ['w1', null],
        ],
      );
      const out = await loadModel(join(dir, `out-${external}`, 'model.onnx'));
      const g = out.proto.graph!;
      const init = (name: string) =>
        tensorBytes(
          out,
          g.initializer.find((t) => t.name === name)!,
        );
      const nodes = g.node.filter((n) => n.opType === 'MatMulNBits');
      assert.equal(nodes.length, 2);
      nodes.forEach((node, i) => {
        const want = quantizePackKN4(float16ToFloat32(halves[i]), K, i === 0 ? K : N, 32);
        const scales16 = float32ToFloat16(want.scales);
        assert.deepEqual(init(node.input[1]), want.B, `B of w${i}`);
        assert.deepEqual(init(node.input[2]), new Uint8Array(scales16.buffer), `fp16 scales of w${i}`);
      });
      closeModel(out);
    }
    // The fused kernel's error (the canonical route's names a group): a NaN read through the fp16 path, where it is.
    halves[1][7 * N + 114] = 0x7e00;
    const nan = join(dir, 'nan.onnx');
    await saveModel(model16(halves), nan, { externalData: { sizeThreshold: 1024 } });
    await assert.rejects(
      runRecipe(recipe as unknown as Recipe, { modelPath: nan, outputDir: join(dir, 'out-nan') }),
      /non-finite weight at row 7, column 114/,
    );
  } finally {
    removeDir(dir);
  }
});
