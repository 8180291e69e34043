// A real exported network: PP-OCRv4 detection (62 Conv weights, all in Constant nodes, as PaddleOCR exports them).
// Two "fine-tunes" (every Conv weight jittered, seeded), re-pruned to one 2:4 mask along Conv's K (input channels
// at each kernel position): every Conv weight verified 2:4 by an independent checker on the canonical layout, the
// soup equal to the masked float64 average, and ONNX Runtime runs the result.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { closeModel, loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import { discoverWeights, readWeightMatrix } from '../../../packages/engine/onnx/weights.js';
import { checkNM } from '../../../packages/engine/math/nm.js';
import { modelTensors, readValues, writeValues } from '../../../packages/engine/soup/tensors.js';
import { PPOCR_DET } from '../../helpers/onnx-fixtures.js';
import { cook, scratchDir } from '../../helpers/soup-harness.js';
import { gaussian, mulberry32 } from '../../helpers/soup-mlp.js';

let dir: string;
let cleanup: () => Promise<void>;
let paths: string[];
before(async () => {
  ({ dir, cleanup } = await scratchDir());
  paths = [];
  for (const seed of [11, 12]) {
    const m = await loadModel(PPOCR_DET);
    const g = gaussian(mulberry32(seed));
    // Jitter the trainable weights only: other float constants (Resize scales, Clip bounds) are not trained.
    const tensors = modelTensors(m);
    for (const w of discoverWeights(m)) {
      const t = tensors.get(`${w.storeGraphPath}|${w.name}`)!;
      const v = readValues(m, t);
      for (let i = 0; i < v.length; i++) v[i] *= 1 + 0.05 * g();
      writeValues(t, v);
    }
    const p = join(dir, `det-${seed}.onnx`);
    await saveModel(m, p);
    closeModel(m);
    paths.push(p);
  }
});
after(() => cleanup());

test('PP-OCRv4 det: reprune 2:4 over 62 Constant-node Conv weights, verified, averaged, runnable', async () => {
  const r = await cook({
    paths,
    settings: {
      mode: 'uniform',
      tie: '>=',
      maskPolicy: 'reprune',
      reprune: { kind: 'nm', n: 2, m: 4 },
      metric: 'accuracy',
    },
    dir,
  });
  try {
    const weights = discoverWeights(r.soup);
    assert.equal(weights.length, 62);
    assert.equal(r.report.maskCheck.maskedWeights, 62);
    const skipped = new Set(r.report.maskCheck.repruneSkipped?.map((s) => s.weight) ?? []);
    let verified = 0;
    for (const w of weights) {
      if (skipped.has(w.name)) continue;
      const canon = readWeightMatrix(r.soup, w);
      assert.ok(checkNM(canon, w.N, w.K, 2, 4).ok, `${w.name} is not 2:4`);
      verified++;
    }
    // the rest cannot take 2:4 (depthwise 3×3: K = 9; or below the size floor) and are listed with the reason
    const eligible = weights.filter((w) => w.compressible && w.K % 4 === 0).length;
    assert.equal(verified, eligible);
    assert.equal(skipped.size, 62 - eligible);
    console.log(`PP-OCRv4 det soup: ${verified} Conv weights re-pruned 2:4 and verified, ${skipped.size} skipped`);
    assert.equal(r.report.soup.nmVerified, true);
    // soup = masked mean of the two files, for a re-pruned and a skipped (union-mask) weight alike
    const [a, b] = await Promise.all(paths.map((p) => loadModel(p)));
    const ta = modelTensors(a);
    const tb = modelTensors(b);
    const ts = modelTensors(r.soup);
    for (const w of weights.slice(0, 8)) {
      const key = `|${w.name}`;
      const va = tensorToFloat32(a, ta.get(key)!);
      const vb = tensorToFloat32(b, tb.get(key)!);
      const vs = tensorToFloat32(r.soup, ts.get(key)!);
      vs.forEach((v, i) => assert.ok(v === 0 || v === Math.fround((va[i] + vb[i]) / 2), `${w.name}[${i}]`));
    }
    closeModel(a);
    closeModel(b);
    const session = await ort.InferenceSession.create(r.outPath);
    const x = new ort.Tensor('float32', new Float32Array(3 * 64 * 64).fill(0.5), [1, 3, 64, 64]);
    const out = await session.run({ [session.inputNames[0]]: x });
    const y = out[session.outputNames[0]].data as Float32Array;
    assert.ok(y.length > 0 && y.every(Number.isFinite));
    await session.release();
  } finally {
    closeModel(r.soup);
  }
});

test('PP-OCRv4 det: a Resize scale that differs between ingredients is refused, not averaged', async () => {
  const m = await loadModel(paths[1]);
  const resize = m.proto.graph!.node.find((n) => n.opType === 'Resize' && n.input[2])!;
  assert.ok(resize, 'the detector upsamples with Resize');
  const t = modelTensors(m).get(`|${resize.input[2]}`)!;
  const v = readValues(m, t);
  v[v.length - 1] *= 1.05;
  writeValues(t, v);
  const odd = join(dir, 'odd-scale.onnx');
  await saveModel(m, odd);
  closeModel(m);
  const settings = { mode: 'uniform', tie: '>=', maskPolicy: 'require-shared', metric: 'accuracy' } as const;
  const e = await cook({ paths: [paths[0], odd], settings, dir }).catch((x: unknown) => x as Error);
  assert.equal((e as { code?: string }).code, 'soup-tensor-mismatch');
  assert.match(
    (e as Error).message,
    new RegExp(`tensor "${resize.input[2]}" \\(4, a float that sets output shapes\\) differs between ingredient 2`),
  );
});
