// saveModel's adoptSpill (onnx/model.ts): with external data, a model's named spill file becomes the output's side
// file — spilled tensors referenced at their (4096-aligned) spill offsets, the other external tensors appended after
// it — instead of being copied out. The model written must be the one the copying path writes (same tensors, same
// ONNX Runtime outputs); adoption falls back to the copy when it is not safe or not worth it; a failed save leaves
// nothing under the final names and no scratch file once the model is closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { SPILL_ALIGNMENT, lazyRawOf } from '../../../packages/engine/onnx/lazy.js';
import { storeRewrittenBytes, tensorBytes } from '../../../packages/engine/onnx/tensor.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import {
  pruneStoredMagnitudeNM,
  storedFloatTensor,
  storedLayout,
} from '../../../packages/engine/math/sparsity-stored.js';
import { initializerBytes as weightsOf, randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

/** x [1, 256] → MatMul w0 256×256 (256 KiB) → Add bias (1 KiB) → MatMul w1 256×128 (128 KiB) → MatMul head 128×40. */
function build(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', [1, 256]);
  b.initializer('w0', 'float32', [256, 256], randomFloats(256 * 256, 1));
  b.initializer('bias', 'float32', [256], randomFloats(256, 2));
  b.initializer('w1', 'float32', [256, 128], randomFloats(256 * 128, 3));
  b.initializer('head', 'float32', [128, 160], randomFloats(128 * 160, 4)); // 80 KiB, left as it is
  let h = b.node('MatMul', ['x', 'w0'], {}, { name: 'mm0' });
  h = b.node('Add', [h, 'bias']);
  h = b.node('MatMul', [h, 'w1'], {}, { name: 'mm1' });
  b.node('MatMul', [h, 'head'], {}, { name: 'head_mm', output: 'y' });
  b.output('y', 'float32', [1, 160]);
  return b.build();
}

/** Prunes w0 and w1 2:4 through the spill file (they are still on disk). */
function prune(m: LoadedModel): void {
  for (const w of discoverWeights(m).filter((x) => x.name === 'w0' || x.name === 'w1')) {
    const r = pruneStoredMagnitudeNM(m, storedFloatTensor(m, w)!.tensor, storedLayout(w, 4)!, 2);
    assert.equal(r.violations, 0);
  }
}

/** A model with external data in `dir`, loaded with its spill file to be made in `spillDir`. */
async function loaded(dir: string, spillDir?: string): Promise<LoadedModel> {
  const src = path.join(dir, 'src', 'dense.onnx');
  if (!fs.existsSync(src)) {
    fs.mkdirSync(path.dirname(src), { recursive: true });
    await saveModel(build(), src, { externalData: true });
  }
  const m = await loadModel(src);
  if (spillDir) m.spillDir = spillDir;
  return m;
}

const init = (m: LoadedModel, name: string) => m.proto.graph!.initializer.find((t) => t.name === name)!;
const scratchFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('.') || f.includes('.tmp-'));
const ino = (file: string) => fs.statSync(file).ino;

function externalOf(m: LoadedModel, name: string): { location: string; offset: number; length: number } {
  const kv = Object.fromEntries(init(m, name).externalData.map((e) => [e.key, e.value]));
  return { location: kv.location, offset: Number(kv.offset ?? 0), length: Number(kv.length) };
}

async function output(file: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file);
  try {
    const x = new ort.Tensor('float32', randomFloats(256, 9), [1, 256]);
    const r = await session.run({ x });
    return r.y.data as Float32Array;
  } finally {
    await session.release();
  }
}

test('the spill file becomes the external data: spill offsets, 4096-aligned, same model as the copy', async () => {
  const dir = tempDir('adopt-');
  try {
    const out = path.join(dir, 'out');
    const copied = path.join(dir, 'copied');
    fs.mkdirSync(out);
    fs.mkdirSync(copied);
    // The copying path: the same pruning, saved without adoption.
    const c = await loaded(dir, copied);
    prune(c);
    await saveModel(c, path.join(copied, 'model.onnx'), { externalData: true });
    closeModel(c);

    const m = await loaded(dir, out);
    prune(m);
    const spill = m.spill!;
    const scratch = spill.adoptablePath!;
    assert.equal(path.dirname(scratch), out, 'the spill file is named in the output folder');
    const spillIno = ino(scratch);
    const at = new Map(['w0', 'w1'].map((n) => [n, lazyRawOf(init(m, n))!]));
    assert.ok([...at.values()].every((r) => r.source === spill));
    assert.equal(at.get('w1')!.offset % SPILL_ALIGNMENT, 0, 'a spilled tensor starts aligned');
    const file = path.join(out, 'model.onnx');
    const saved = await saveModel(m, file, { externalData: true, adoptSpill: true });
    const data = `${file}.data`;
    assert.equal(ino(data), spillIno, 'the .data file is the former spill file');
    assert.equal(saved.externalBytes, fs.statSync(data).size);
    assert.throws(() => spill.append(new Uint8Array(8)), /read-only/, 'sealed');
    // Tensors not yet closed still read from it.
    assert.deepEqual(
      Buffer.from(tensorBytes(m, init(m, 'w1'))),
      (await weightsOf(path.join(copied, 'model.onnx'))).get('w1'),
    );
    closeModel(m);
    assert.ok(fs.existsSync(data), 'closing the model keeps the adopted file');
    assert.deepEqual(scratchFiles(out), []);

    const back = await loadModel(file);
    for (const name of ['w0', 'w1']) {
      const e = externalOf(back, name);
      assert.equal(e.location, 'model.onnx.data');
      assert.equal(e.offset, at.get(name)!.offset, `${name} stays where it was spilled`);
    }
    for (const name of ['w0', 'bias', 'w1', 'head'])
      assert.equal(externalOf(back, name).offset % 4096, 0, `${name}: offset aligned`);
    assert.ok(externalOf(back, 'head').offset >= spill.size, 'the rest goes after the spilled bytes');
    closeModel(back);
    assert.deepEqual(await weightsOf(file), await weightsOf(path.join(copied, 'model.onnx')), 'same weights');
    assert.deepEqual(await output(file), await output(path.join(copied, 'model.onnx')), 'same ONNX Runtime output');
  } finally {
    removeDir(dir);
  }
});

test('adoption falls back to the copy: inline output, dead bytes, a spill elsewhere or unnamed', async () => {
  const dir = tempDir('adopt-');
  try {
    const want = path.join(dir, 'want.onnx');
    const w = await loaded(dir);
    prune(w);
    await saveModel(w, want, { externalData: true });
    closeModel(w);
    const wantWeights = await weightsOf(want);

    const cases: [string, (m: LoadedModel) => void, string | undefined, boolean][] = [
      ['inline output', () => {}, 'out', false],
      [
        'dead bytes (w0 rewritten twice)',
        (m) => storeRewrittenBytes(m, init(m, 'w0'), tensorBytes(m, init(m, 'w0')).slice()),
        'out',
        true,
      ],
      ['spill in another folder', () => {}, 'elsewhere', true],
      ['unnamed spill', () => {}, undefined, true],
    ];
    for (const [what, edit, spillIn, external] of cases) {
      const out = path.join(dir, what.replace(/\W+/g, '-'));
      fs.mkdirSync(path.join(out, 'elsewhere'), { recursive: true });
      const m = await loaded(dir, spillIn && path.join(out, spillIn === 'out' ? '' : spillIn));
      prune(m);
      edit(m);
      const named = m.spill!.adoptablePath;
      assert.equal(!!named, spillIn !== undefined, what);
      const namedIno = named && ino(named);
      const file = path.join(out, 'model.onnx');
      await saveModel(m, file, { externalData: external, adoptSpill: true });
      assert.equal(m.spill!.adoptablePath, named, `${what}: the spill is left as it was`);
      m.spill!.append(new Uint8Array(8)); // and still takes appends
      closeModel(m);
      assert.equal(fs.existsSync(`${file}.data`), external, what);
      if (external) assert.notEqual(ino(`${file}.data`), namedIno, `${what}: copied`);
      assert.deepEqual(await weightsOf(file), wantWeights, what);
      assert.deepEqual(scratchFiles(out), [], `${what}: the spill is removed on close`);
      assert.deepEqual(fs.readdirSync(path.join(out, 'elsewhere')), [], what);
    }
  } finally {
    removeDir(dir);
  }
});

test('a failed adopting save leaves nothing under the final names, and the spill is removed on close', async () => {
  const dir = tempDir('adopt-');
  try {
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const m = await loaded(dir, out);
    prune(m);
    const scratch = m.spill!.adoptablePath!;
    const size = fs.statSync(scratch).size;
    const file = path.join(out, 'model.onnx');
    fs.mkdirSync(file); // the model's own rename fails (a folder is in the way)
    await assert.rejects(saveModel(m, file, { externalData: true, adoptSpill: true }), { code: 'io-error' });
    assert.ok(!fs.existsSync(`${file}.data`), 'no .data under its final name');
    assert.equal(m.spill!.adoptablePath, scratch, 'the spill is back under its scratch name');
    assert.equal(fs.statSync(scratch).size, size, 'without the tail the save appended');
    assert.deepEqual(
      fs.readdirSync(out).filter((f) => f !== 'model.onnx' && f !== path.basename(scratch)),
      [],
    );
    // The model is still whole: saved elsewhere it gives the pruned weights.
    fs.rmdirSync(file);
    const again = await saveModel(m, file, { externalData: true, adoptSpill: true });
    assert.ok(again.externalBytes > 0);
    closeModel(m);
    assert.deepEqual(scratchFiles(out), []);
    assert.equal((await weightsOf(file)).get('w0')!.length, 256 * 256 * 4);

    const failed = await loaded(dir, out);
    prune(failed);
    const left = failed.spill!.adoptablePath!;
    closeModel(failed); // a job that fails before writing
    assert.ok(!fs.existsSync(left));
    assert.deepEqual(scratchFiles(out), []);
  } finally {
    removeDir(dir);
  }
});

test('a spill whose name now leads to another file is neither adopted nor removed by name', async () => {
  const dir = tempDir('adopt-');
  try {
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const m = await loaded(dir, out);
    prune(m);
    const scratch = m.spill!.adoptablePath!;
    const other = path.join(out, 'other');
    fs.writeFileSync(other, 'not the spill');
    fs.renameSync(other, scratch);
    assert.equal(m.spill!.adoptablePath, undefined);
    const file = path.join(out, 'model.onnx');
    await saveModel(m, file, { externalData: true, adoptSpill: true });
    closeModel(m);
    assert.equal(fs.readFileSync(scratch, 'utf8'), 'not the spill', 'left alone');
    assert.equal((await weightsOf(file)).get('w1')!.length, 256 * 128 * 4, 'copied from the spill it still holds open');
  } finally {
    removeDir(dir);
  }
});
