// Sessions that do not copy the weights (runtime/open-model.ts): a model handed to ONNX Runtime as an in-memory
// skeleton whose page-aligned weights are external-data references to the files they already lie in computes exactly
// what the file does; unaligned or rewritten weights are copied in; past the copy cap unaligned ranges of the model's
// own files are referenced too (ONNX Runtime reads them), and rewritten ones send the model through a scratch file that
// is unlinked at once; rewritten weights live in the spill file, not in process memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { SpillFile, lazyRawOf } from '../../../packages/engine/onnx/lazy.js';
import {
  closeModel,
  loadModel,
  modelBytesReferencing,
  saveModel,
  type LoadedModel,
} from '../../../packages/engine/onnx/model.js';
import { discoverWeights, readWeightMatrix, writeWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import {
  openLoadedModel,
  openModelFile,
  prepackFor,
  PREPACK_MIN_RUNS,
} from '../../../packages/engine/runtime/open-model.js';
import { openSession, ortSessionOptions } from '../../../packages/engine/runtime/session.js';
import { randn } from '../sparsity/models.js';

/** x [n, 256] → MatMul w1 (256 KiB) → Relu → MatMul w2 (8 KiB) → y [n, 8]. */
function model() {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['n', 256]);
  b.initializer('w1', 'float32', [256, 256], randn(256 * 256, 1, 0.1));
  b.initializer('w2', 'float32', [256, 8], randn(256 * 8, 2, 0.1));
  const h = b.node('Relu', [b.node('MatMul', ['x', 'w1'], {}, { name: 'fc1' })]);
  b.node('MatMul', [h, 'w2'], {}, { name: 'fc2', output: 'y' });
  b.output('y', 'float32', ['n', 8]);
  return b.build();
}

const feeds = { x: new ort.Tensor('float32', randn(3 * 256, 7), [3, 256]) };

async function outputOf(session: ort.InferenceSession): Promise<Float32Array> {
  const y = (await session.run(feeds)).y.data as Float32Array;
  await session.release();
  return y;
}

function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'open-model-'));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** model() saved with external data in a fresh folder, loaded, and its outputs from ONNX Runtime given the path. */
function withExternalModel(fn: (dir: string, m: LoadedModel, want: Float32Array) => Promise<void>): Promise<void> {
  return withDir(async (dir) => {
    const file = join(dir, 'ext.onnx');
    await saveModel(model(), file, { externalData: true });
    const want = await outputOf((await openSession(file)).session);
    const m = await loadModel(file);
    try {
      await fn(dir, m, want);
    } finally {
      closeModel(m);
    }
  });
}

test('aligned external data is referenced in place: a skeleton of a few KB, the same outputs as the file', () =>
  withExternalModel(async (dir, m, want) => {
    const bytes = modelBytesReferencing(m, m.dir, 0, 4096)!;
    assert.ok(bytes && bytes.length < 4096, `skeleton of ${bytes?.length} bytes`);
    const got = await outputOf((await openSession(bytes, { externalDataFolder: m.dir })).session);
    assert.deepEqual(got, want);
    const opened = await openLoadedModel(m, dir);
    assert.equal(opened.via, 'references');
    assert.deepEqual(await outputOf(opened.session), want);
    // A folder other than the files' own is never referenced: everything is copied in.
    assert.equal(modelBytesReferencing(m, join(dir, 'elsewhere'), 0, 4096), undefined);
    assert.ok(modelBytesReferencing(m, join(dir, 'elsewhere'), 1 << 20, 4096)!.length > 256 * 1024);
  }));

test('inline weights: unaligned ranges are copied (or referenced when any alignment will do); a large model goes through a scratch file that is removed', () =>
  withDir(async (dir) => {
    const file = join(dir, 'inline.onnx');
    await saveModel(model(), file);
    const want = await outputOf((await openSession(file)).session);
    const m = await loadModel(file);
    try {
      const w1 = m.proto.graph!.initializer.find((t) => t.name === 'w1')!;
      assert.ok(lazyRawOf(w1), 'w1 is read lazily from the .onnx');
      const copied = modelBytesReferencing(m, m.dir, 1 << 20, 1 << 30)!;
      assert.ok(copied.length > 256 * 1024, 'an unaligned range is copied, not referenced');
      const referenced = modelBytesReferencing(m, m.dir, 0, 1)!;
      assert.ok(referenced.length < 16 * 1024, 'with alignment 1 the .onnx itself is referenced');
      for (const bytes of [copied, referenced]) {
        assert.deepEqual(await outputOf((await openSession(bytes, { externalDataFolder: m.dir })).session), want);
      }
    } finally {
      closeModel(m);
    }
    const scratch = join(dir, 'scratch');
    await import('node:fs/promises').then((fs) => fs.mkdir(scratch));
    // Over the copy cap the unaligned ranges of the .onnx are referenced (ONNX Runtime reads them), not copied out.
    const big = await openModelFile(file, scratch, {}, 0);
    assert.equal(big.via, 'references');
    assert.deepEqual(await outputOf(big.session), want);
    const small = await openModelFile(file, scratch);
    assert.equal(small.via, 'references', 'under the copy cap the weights travel in the in-memory model');
    assert.deepEqual(await outputOf(small.session), want);
    const broken = join(dir, 'not-onnx.onnx');
    await import('node:fs/promises').then((fs) => fs.writeFile(broken, 'nope'));
    await assert.rejects(openModelFile(broken, scratch), /ONNX Runtime could not open/);
  }));

test('rewritten weights go to the spill file (large) or stay in memory (small), and read, save and reference the same', () =>
  withDir(async (dir) => {
    const file = join(dir, 'ext.onnx');
    await saveModel(model(), file, { externalData: true });
    const m = await loadModel(file);
    try {
      const ws = discoverWeights(m);
      const edited = new Map<string, Float32Array>();
      for (const w of ws) {
        const v = readWeightMatrix(m, w).map((x) => (Math.abs(x) < 0.05 ? 0 : x));
        writeWeightMatrix(m, w, v);
        edited.set(w.name, v);
      }
      const w1 = m.proto.graph!.initializer.find((t) => t.name === 'w1')!;
      const w2 = m.proto.graph!.initializer.find((t) => t.name === 'w2')!;
      assert.ok(lazyRawOf(w1)?.source instanceof SpillFile, 'the 256 KiB weight lives in the spill file');
      assert.equal(lazyRawOf(w2), undefined, 'the 8 KiB weight stays in memory');
      for (const w of ws) assert.deepEqual(readWeightMatrix(m, w), edited.get(w.name));
      // The spill file is private: a session on the edited model copies its bytes in (never references them), and
      // over the copy cap the model goes through a scratch file that is removed once the session is open.
      const opened = await openLoadedModel(m, dir);
      const got = await outputOf(opened.session);
      const scratch = join(dir, 'scratch');
      mkdirSync(scratch);
      const viaScratch = await openLoadedModel(m, scratch, {}, 0);
      assert.equal(viaScratch.via, 'scratch-file');
      assert.deepEqual(readdirSync(scratch), [], 'the scratch copy is unlinked once the session is open');
      assert.deepEqual(await outputOf(viaScratch.session), got);
      const out = join(dir, 'out.onnx');
      await saveModel(m, out);
      const want = await outputOf((await openSession(out)).session);
      assert.deepEqual(got, want);
      const back = await loadModel(out);
      for (const w of discoverWeights(back)) assert.deepEqual(readWeightMatrix(back, w), edited.get(w.name));
      closeModel(back);
    } finally {
      closeModel(m);
    }
  }));

test('prepacking: skipped for a few runs over float weights, kept for many runs, unknown counts and quantized kernels', () => {
  const float = model();
  assert.equal(prepackFor(float, { runs: 1 }), false);
  assert.equal(prepackFor(float, { runs: PREPACK_MIN_RUNS }), false);
  assert.equal(prepackFor(float, { runs: PREPACK_MIN_RUNS + 1 }), true);
  assert.equal(prepackFor(float, {}), true, 'a caller that does not say how many runs gets ONNX Runtime’s default');
  assert.equal(prepackFor(float, { runs: 1, prepack: true }), true, 'an explicit choice wins');
  const b = new GraphBuilder({ opset: 17, domains: { 'com.microsoft': 1 } });
  b.input('x', 'float32', ['n', 64]);
  b.initializer('q', 'uint8', [8, 2, 16], new Uint8Array(256));
  b.initializer('s', 'float32', [16], new Float32Array(16).fill(1));
  b.node(
    'MatMulNBits',
    ['x', 'q', 's'],
    { K: 64, N: 8, bits: 4, block_size: 32 },
    { domain: 'com.microsoft', output: 'y' },
  );
  b.output('y', 'float32', ['n', 8]);
  assert.equal(prepackFor(b.build(), { runs: 1 }), true, 'MatMulNBits unpacked runs 2–3 × slower');
  // What ONNX Runtime is given: its session config key, only when asked.
  assert.deepEqual(ortSessionOptions('cpu', { prepack: false }, false).extra, { session: { disable_prepacking: '1' } });
  assert.equal(ortSessionOptions('cpu', {}, false).extra, undefined);
});

test('a session opened without prepacking computes what the file does (ONNX Runtime accepts the option)', () =>
  withExternalModel(async (dir, m, want) => {
    const got = await outputOf((await openLoadedModel(m, dir, { runs: 1 })).session);
    assert.equal(got.length, want.length);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i])));
  }));
