// fp16 and bf16 models end to end (issue 12, item 5), through runRecipe as the CLI and the worker call it:
// - an LLM-shaped fp16 model (bench/lib/llm-model.ts; token-id calibration file) and an fp16 MLP with a float16
//   input (random calibration data): every method — 2:4 magnitude / Wanda / SparseGPT, 4-bit MatMulNBits and QDQ,
//   SLiM — gives a model ONNX Runtime runs, whose output stays float16, whose weights stay float16 (sparsity) or
//   whose scales are float16 (4-bit: MatMulNBits and DequantizeLinear take scales in the activation's dtype), and
//   whose quality report is finite and in range;
// - bf16: ONNX Runtime's CPU EP has no bfloat16 MatMul and its JavaScript API no bfloat16 tensors, so a model that
//   computes in bf16 cannot run on CPU at all (the job fails with ORT's reason); bf16 weights stored behind a Cast to
//   float32 (how bf16 checkpoints are usually run on CPU) compress with every method and stay bf16.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { runRecipe } from '../../../packages/engine/run.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import type { JobReport } from '../../../packages/engine/job.js';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { tensorDtype } from '../../../packages/engine/onnx/tensor.js';
import {
  floatToBfloatBits,
  floatToHalfBits,
  float16ToFloat32,
  halfBitsToFloat,
} from '../../../packages/engine/onnx/floats.js';
import type { DType } from '../../../packages/engine/onnx/dtypes.js';
import { writeLlmCalibration, writeLlmModel, type LlmShape } from '../../../bench/lib/llm-model.js';
import { randomFloats, removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

const Q4 = { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true };
const RECIPES: Record<string, Record<string, unknown>> = {
  magnitude: { method: 'sparsity', pattern: '2:4', criterion: 'magnitude' },
  wanda: { method: 'sparsity', pattern: '2:4', criterion: 'wanda' },
  sparsegpt: { method: 'sparsity', pattern: '2:4', criterion: 'sparsegpt' },
  matmulnbits: { method: 'quantize', quant: Q4, format: 'matmulnbits' },
  qdq: { method: 'quantize', quant: Q4, format: 'qdq' },
  slim: {
    method: 'slim',
    pattern: '2:4',
    criterion: 'wanda',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
    lowRank: { rankRatio: 0.1, saliency: 'whitened', quantize: false },
    format: 'matmulnbits',
  },
};

/** Quality bounds per kind: 4-bit g32 is close; 2:4 on random layers loses a lot, but stays well under 1. */
function checkReport(name: string, report: JobReport, layers: number): void {
  const done = report.layers.filter((l) => !l.skipped);
  assert.equal(done.length, layers, `${name}: ${JSON.stringify(report.layers.filter((l) => l.skipped))}`);
  const quantOnly = name === 'matmulnbits' || name === 'qdq';
  for (const l of done) {
    assert.ok(Number.isFinite(l.relError) && l.relError! > 0 && l.relError! < (quantOnly ? 0.2 : 0.8), `${l.name}`);
    if (!quantOnly) assert.equal(l.patternVerified, true, l.name);
  }
  const q = report.quality as { relativeError: number; cosineSimilarity: number };
  assert.ok(q.relativeError > 0 && q.relativeError < (quantOnly ? 0.3 : 0.9), `${name}: ${q.relativeError}`);
  assert.ok(q.cosineSimilarity > (quantOnly ? 0.95 : 0.4), `${name}: ${q.cosineSimilarity}`);
}

/** The output model: which dtype its compressed weights / scales have (asserted by the caller), and that it runs. */
async function checkOutput(
  dir: string,
  name: string,
  feeds: Record<string, ort.Tensor>,
  want: { output: string; stored?: DType },
): Promise<void> {
  const path = join(dir, 'model.onnx');
  const model = await loadModel(path);
  const g = model.proto.graph!;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const dtypeOf = (n: string) => tensorDtype(inits.get(n)!);
  if (name === 'matmulnbits' || name === 'slim') {
    const nb = g.node.filter((n) => n.opType === 'MatMulNBits');
    assert.ok(nb.length > 0, `${name}: no MatMulNBits`);
    for (const n of nb) assert.equal(dtypeOf(n.input[2]), want.output, `${name}: scales of ${n.name}`);
  } else if (name === 'qdq') {
    const dq = g.node.filter((n) => n.opType === 'DequantizeLinear');
    assert.ok(dq.length > 0, 'no DequantizeLinear');
    for (const n of dq) assert.equal(dtypeOf(n.input[1]), want.output, `qdq: scales of ${n.name}`);
  } else if (want.stored) {
    const weights = g.node.filter((n) => n.opType === 'MatMul' && inits.has(n.input[1]));
    assert.ok(weights.length > 0);
    for (const n of weights) assert.equal(dtypeOf(n.input[1]), want.stored, `${name}: ${n.input[1]}`);
  }
  closeModel(model);
  const s = await ort.InferenceSession.create(path);
  const out = Object.values(await s.run(feeds))[0];
  assert.equal(out.type, want.output, `${name}: output type`);
  const values = want.output === 'float16' ? float16ToFloat32(out.data as Uint16Array) : (out.data as Float32Array);
  assert.ok(
    values.every((v) => Number.isFinite(v)),
    `${name}: non-finite outputs`,
  );
  await s.release();
}

const LLM: LlmShape = { layers: 1, hidden: 64, mlp: 128, vocab: 256 };

test('fp16 LLM-shaped model (token-id calibration file): every method keeps fp16 and runs in ORT', async () => {
  const dir = tempDir('fp16-llm-');
  try {
    const f = await writeLlmModel(dir, LLM, { dtype: 'float16' });
    const calib = join(dir, 'calib.npz');
    await writeLlmCalibration(calib, LLM, { samples: 8, seq: 16 });
    const ids = new ort.Tensor(
      'int64',
      new BigInt64Array(16).map((_, i) => BigInt(i * 7)),
      [1, 16],
    );
    for (const [name, recipe] of Object.entries(RECIPES)) {
      const out = join(dir, name);
      const res = await runRecipe(recipe as unknown as Recipe, {
        modelPath: f.modelPath,
        calibrationPath: calib,
        outputDir: out,
      });
      checkReport(name, res.report, f.matmulWeights.length);
      if (name === 'qdq') {
        // Opset 17 with ReduceMean (RMSNorm): block-wise int4 DequantizeLinear needs opset 21, and the exact upgrade
        // rewrites ReduceMean's axes attribute into an input, so every layer takes the route (none skipped).
        assert.deepEqual((res.report.quantization as { opset?: unknown }).opset, {
          from: 17,
          needed: 21,
          action: 'upgraded',
          ops: ['ReduceMean'],
        });
      }
      await checkOutput(out, name, { input_ids: ids }, { output: 'float16', stored: 'float16' });
    }
  } finally {
    removeDir(dir);
  }
});

/** x [batch, 64] → MatMul → Relu → MatMul → Relu → MatMul → y, weights (and x, y) in `dtype`, or bf16 weights behind Cast to float32. */
async function mlp(dir: string, kind: 'float16' | 'bf16-cast' | 'bfloat16' | 'fp16-values-in-fp32'): Promise<string> {
  const act: DType = kind === 'float16' ? 'float16' : kind === 'bfloat16' ? 'bfloat16' : 'float32';
  const store: DType = kind === 'float16' || kind === 'fp16-values-in-fp32' ? 'float16' : 'bfloat16';
  const conv = store === 'float16' ? floatToHalfBits : floatToBfloatBits;
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', act, ['batch', 64]);
  const dims = [
    [64, 128],
    [128, 128],
    [128, 64],
  ];
  let h = 'x';
  dims.forEach(([k, n], i) => {
    const bits = Uint16Array.from(randomFloats(k * n, 11 + i), (v) => conv((v * 1.5) / Math.sqrt(k)));
    let w =
      kind === 'fp16-values-in-fp32'
        ? b.initializer(`W${i}`, 'float32', [k, n], float16ToFloat32(bits))
        : b.initializer(`W${i}`, store, [k, n], bits);
    if (kind === 'bf16-cast') w = b.node('Cast', [w], { to: 1 });
    h = b.node('MatMul', [h, w], {}, { name: `fc${i}`, output: i === 2 ? 'y' : undefined });
    if (i < 2) h = b.node('Relu', [h]);
  });
  b.output('y', act, ['batch', 64]);
  const path = join(dir, `${kind}.onnx`);
  await saveModel(b.build(), path);
  return path;
}

test('fp16 model with a float16 input and random calibration data: every method keeps fp16', async () => {
  const dir = tempDir('fp16-mlp-');
  try {
    const path = await mlp(dir, 'float16');
    const x = new ort.Tensor('float16', Uint16Array.from(randomFloats(128, 3), floatToHalfBits), [2, 64]);
    for (const [name, recipe] of Object.entries(RECIPES)) {
      const out = join(dir, name);
      const res = await runRecipe({ ...recipe, calibration: { random: true, samples: 32 } } as unknown as Recipe, {
        modelPath: path,
        outputDir: out,
      });
      assert.match(res.report.warnings.join('\n'), /random data \(random \(seed 0; x float16 \[32, 64\]\)\)/);
      checkReport(name, res.report, 3);
      await checkOutput(out, name, { x }, { output: 'float16', stored: 'float16' });
    }
  } finally {
    removeDir(dir);
  }
});

test('fp16 4-bit RTN (fused [K][N] route): the same codes as the same values in fp32, fp16 scales', async () => {
  const dir = tempDir('fp16-rtn-');
  try {
    const codes = new Map<string, Uint8Array[]>();
    const scales = new Map<string, Float32Array[]>();
    for (const kind of ['float16', 'fp16-values-in-fp32'] as const) {
      await runRecipe(RECIPES.matmulnbits as unknown as Recipe, {
        modelPath: await mlp(dir, kind),
        outputDir: join(dir, kind),
      });
      const m = await loadModel(join(dir, kind, 'model.onnx'));
      const inits = new Map(m.proto.graph!.initializer.map((t) => [t.name, t]));
      const nodes = m.proto.graph!.node.filter((n) => n.opType === 'MatMulNBits');
      codes.set(
        kind,
        nodes.map((n) => inits.get(n.input[1])!.rawData.slice()),
      );
      scales.set(
        kind,
        nodes.map((n) => {
          const t = inits.get(n.input[2])!;
          const raw = t.rawData.slice();
          return tensorDtype(t) === 'float16'
            ? float16ToFloat32(new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2))
            : new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
        }),
      );
      closeModel(m);
    }
    assert.equal(codes.get('float16')!.length, 3);
    codes.get('float16')!.forEach((c, i) => assert.deepEqual(c, codes.get('fp16-values-in-fp32')![i]));
    scales.get('float16')!.forEach((s16, i) => {
      const s32 = scales.get('fp16-values-in-fp32')![i];
      for (let j = 0; j < s32.length; j++) assert.equal(s16[j], halfBitsToFloat(floatToHalfBits(s32[j])));
    });
  } finally {
    removeDir(dir);
  }
});

test('bf16 weights behind Cast (fp32 compute): every method works, sparse weights stay bf16', async () => {
  const dir = tempDir('bf16-');
  try {
    const path = await mlp(dir, 'bf16-cast');
    const x = new ort.Tensor('float32', randomFloats(128, 3), [2, 64]);
    for (const [name, recipe] of Object.entries(RECIPES)) {
      const out = join(dir, name);
      const res = await runRecipe({ ...recipe, calibration: { random: true, samples: 32 } } as unknown as Recipe, {
        modelPath: path,
        outputDir: out,
      });
      checkReport(name, res.report, 3);
      if (name.match(/magnitude|wanda|sparsegpt/)) {
        const m = await loadModel(join(out, 'model.onnx'));
        for (const i of [0, 1, 2])
          assert.equal(tensorDtype(m.proto.graph!.initializer.find((t) => t.name === `W${i}`)!), 'bfloat16');
        closeModel(m);
      }
      await checkOutput(out, name, { x }, { output: 'float32' });
    }
  } finally {
    removeDir(dir);
  }
});

test('bf16 compute: ORT CPU has no bfloat16 MatMul and no bfloat16 tensors in JS, so the job fails saying why', async () => {
  const dir = tempDir('bf16-pure-');
  try {
    const path = await mlp(dir, 'bfloat16');
    await assert.rejects(
      runRecipe({ ...RECIPES.wanda, calibration: { random: true, samples: 8 } } as unknown as Recipe, {
        modelPath: path,
        outputDir: join(dir, 'out'),
      }),
      /bfloat16/i,
    );
  } finally {
    removeDir(dir);
  }
});
