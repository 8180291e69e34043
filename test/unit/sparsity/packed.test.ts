// Packed 2:4: kept values + 2-bit positions rebuilt by an ONNX local function. Stock ONNX Runtime must give outputs
// identical to the unpacked 2:4 model, from a smaller file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { pack24 } from '../../../packages/engine/onnx/packed24.js';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import { mlp, randn, tokenData, transformer } from './models.js';
import { run, tempDir, writeCase } from './helpers.js';
import type { DataArray } from '../../../packages/engine/data/types.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('pack24 stores every kept value and its position (groups with 0, 1 or 2 non-zeros)', () => {
  const w = new Float32Array([1, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 4, 5, 0]);
  const { values, idx } = pack24(w, 1, 16);
  assert.deepEqual([...values], [1, 2, 0, 3, 0, 0, 4, 5]);
  // group 0: positions 0,2 → 0b1000; group 1: positions 0 (filler), 3 → 0b1100 in the high nibble.
  assert.deepEqual([...idx], [0b1100_1000, 0b1001_0100]);
  assert.throws(() => pack24(new Float32Array([1, 1, 1, 0, 0, 0, 0, 0]), 1, 8), /more than 2 non-zeros/);
});

async function outputs(path: string, feeds: Record<string, ort.Tensor>, name: string): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path);
  const y = (await s.run(feeds))[name].data as Float32Array;
  await s.release();
  return y;
}

test('packed 2:4 models run in stock ONNX Runtime with outputs identical to the dense-stored 2:4 model', async () => {
  const cases: { name: string; model: ReturnType<typeof mlp>; data: Record<string, DataArray>; out: string }[] = [
    {
      name: 'mlp',
      model: mlp(),
      data: { x: { dtype: 'float32' as const, dims: [8, 16], data: randn(128, 4) } },
      out: 'logits',
    },
    { name: 'lm', model: transformer(), data: { ids: tokenData(4) }, out: 'logits' },
  ];
  for (const c of cases) {
    const { modelPath, dataPath } = await writeCase(dir, c.name, c.model, c.data);
    const plain = await run(
      { method: 'sparsity', pattern: '2:4', criterion: 'wanda' },
      modelPath,
      join(dir, `${c.name}-plain`),
      {
        calibrationPath: dataPath,
      },
    );
    const packed = await run(
      { method: 'sparsity', pattern: '2:4', criterion: 'wanda', packed: true },
      modelPath,
      join(dir, `${c.name}-packed`),
      { calibrationPath: dataPath },
    );
    const info = packed.report.packed as { layers: number; bytesBefore: number; bytesAfter: number };
    assert.ok(info.layers >= 2, JSON.stringify(info));
    assert.ok(info.bytesAfter < 0.55 * info.bytesBefore, JSON.stringify(info));
    const a = join(dir, `${c.name}-plain`, 'model.onnx');
    const b = join(dir, `${c.name}-packed`, 'model.onnx');
    assert.ok(statSync(b).size < statSync(a).size, 'the packed file is smaller');
    const m = await loadModel(b);
    assert.ok(m.proto.functions.some((f) => f.domain === 'onnx_compress'));
    const [k, v] = Object.entries(c.data)[0];
    const feeds = { [k]: new ort.Tensor(v.dtype, v.data as Float32Array, v.dims) };
    const ya = await outputs(a, feeds, c.out);
    const yb = await outputs(b, feeds, c.out);
    assert.deepEqual(yb, ya, `${c.name}: packed outputs differ`);
    // The report's quality on the packed model (evaluated by ORT) matches the plain one.
    assert.equal(
      (packed.report.quality as { relativeError: number }).relativeError,
      (plain.report.quality as { relativeError: number }).relativeError,
    );
  }
});
