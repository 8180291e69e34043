// Magnitude N:M pruning of weights that are still on disk (lazily loaded inline raw_data, external data) goes
// through the model's spill file instead of fresh memory. It must give exactly what pruning the same model read
// whole gives — the same saved bytes, sparsity, verification and non-finite counts — and leave no file behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { lazyRawOf } from '../../../packages/engine/onnx/lazy.js';
import { tensorBytes } from '../../../packages/engine/onnx/tensor.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import {
  pruneStoredMagnitudeNM,
  storedFloatTensor,
  storedLayout,
} from '../../../packages/engine/math/sparsity-stored.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

function build(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  let h = b.input('x', 'float32', [1, 512]);
  const w0 = randomFloats(512 * 384, 1);
  w0[10] = NaN;
  w0[4000] = Infinity;
  // a 3-byte tensor first, so the weights' raw_data sits at unaligned file offsets
  b.initializer('odd', 'uint8', [3], [1, 2, 3]);
  h = b.node('MatMul', [h, b.initializer('W0', 'float32', [512, 384], w0)], {}, { name: 'mm0' });
  const w1 = b.initializer('W1', 'float32', [256, 384], randomFloats(256 * 384, 2)); // Gemm transB: [N][K]
  h = b.node('Gemm', [h, w1], { transB: 1 }, { name: 'gemm1' });
  b.output(h, 'float32', [1, 256]);
  return b.build();
}

function pruneAll(m: LoadedModel): { name: string; sparsity: number; violations: number; nonFinite: number }[] {
  return discoverWeights(m).map((w) => {
    const layout = storedLayout(w, 4)!;
    const t = storedFloatTensor(m, w)!.tensor;
    return { name: w.name, ...pruneStoredMagnitudeNM(m, t, layout, 2) };
  });
}

const spillFiles = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`onnx-spill-${process.pid}-`));

test('pruning lazily loaded and external weights through the spill file equals pruning them in memory', async () => {
  const dir = tempDir('spill-');
  try {
    const src = path.join(dir, 'dense.onnx');
    await saveModel(build(), src);
    const ext = path.join(dir, 'dense-ext.onnx');
    await saveModel(build(), ext, { externalData: true });

    const eager = await loadModel(src, { lazyMinBytes: Infinity });
    const wantRows = pruneAll(eager);
    assert.equal(eager.spill, undefined, 'in-memory weights are pruned in place');
    const wantFile = path.join(dir, 'want.onnx');
    await saveModel(eager, wantFile);
    closeModel(eager);
    assert.ok(wantRows.every((r) => r.violations === 0 && Math.abs(r.sparsity - 0.5) < 1e-3));
    assert.equal(wantRows[0].nonFinite, 2);

    for (const [what, file] of [
      ['lazy inline', src],
      ['external data', ext],
    ] as const) {
      const m = await loadModel(file);
      const rows = pruneAll(m);
      assert.deepEqual(rows, wantRows, what);
      assert.ok(m.spill, `${what}: went through the spill file`);
      const inits = m.proto.graph!.initializer.filter((t) => t.name.startsWith('W'));
      assert.ok(
        inits.every((t) => lazyRawOf(t)?.source === m.spill && t.externalData.length === 0),
        what,
      );
      assert.equal(spillFiles().length, 0, 'the spill file has no name');
      const got = path.join(dir, 'got.onnx');
      await saveModel(m, got);
      assert.ok(fs.readFileSync(got).equals(fs.readFileSync(wantFile)), `${what}: same saved model`);
      // Reading a pruned weight back gives the pruned values.
      const again = await loadModel(wantFile, { lazyMinBytes: Infinity });
      for (const t of inits) {
        const ref = again.proto.graph!.initializer.find((x) => x.name === t.name)!;
        assert.deepEqual(tensorBytes(m, t), tensorBytes(again, ref), `${what}: ${t.name}`);
      }
      closeModel(again);
      closeModel(m);
      assert.throws(() => m.spill!.check(), { name: 'OnnxError', code: 'io-error' });
    }
  } finally {
    removeDir(dir);
  }
});
