// 4-bit quality on a generated LLM-shaped model (bench/lib/llm-model.ts): this project's RTN (signed range, clip
// search), GPTQ (g32, g128, act order) and SLiM-Quant against ONNX Runtime 1.30's own Python quantizer (its default
// RTN quantizer, symmetric g32/g128 and asymmetric g128, and k-quant) on the same weights, lm_head kept dense in all.
// Measured per model, on held-out token ids:
//   layer error  — mean over the MatMuls of ‖X(W − Ŵ)‖/‖XW‖, X = the layer's real input in the dense model, Ŵ read
//                  back from each written file's MatMulNBits initializers (the same computation for every quantizer);
//   model error  — ‖logits − dense logits‖/‖dense logits‖ and top-1 agreement with the dense model.
// The ratios are against ONNX Runtime's quantizer at the same group size (RTN) and against its k-quant (GPTQ g32).
// ONNX Runtime's quantizer runs in Python: ORT_PYTHON (default: python3) must import onnxruntime 1.30, e.g. a venv
// with `pip install --no-index --find-links <dir of onnxruntime-1.30*.whl> onnxruntime onnx`; otherwise its rows
// print NOT RUN.
//
//   npx tsx bench/gptq.bench.ts [--params 5M|20M] [--samples 32] [--seq 64]
//
// The weights are random (see llm-model.ts): numbers describe reconstruction of random layers under LLM-like
// activations (a few outlier channels), not language modelling.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { create } from '@bufbuild/protobuf';
import { ValueInfoProtoSchema } from '../packages/engine/onnx/gen/onnx_pb.js';
import { closeModel, loadModel, saveModel } from '../packages/engine/onnx/model.js';
import { discoverWeights, readWeightMatrix } from '../packages/engine/onnx/weights.js';
import { readTensorBytesInto, tensorByteLength, tensorToFloat32 } from '../packages/engine/onnx/tensor.js';
import { dequantizeMatMulNBits } from '../packages/engine/quant/matmulnbits.js';
import { matmul } from '../packages/engine/math/gemm.js';
import { runRecipe } from '../packages/engine/run.js';
import type { Recipe } from '../packages/engine/recipe.js';
import { llmPreset, llmTokenIds, writeLlmCalibration, writeLlmModel } from './lib/llm-model.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const shape = llmPreset(arg('params', '5M'));
const samples = Number(arg('samples', '32'));
const seq = Number(arg('seq', '64'));
const evalSamples = 8;

interface Measured {
  label: string;
  layer: number;
  model: number;
  top1: number;
  seconds: number;
}

/** X of every MatMul in the dense model (its A input), on the eval ids: one run with those values as outputs. */
async function layerInputs(modelPath: string, dir: string, ids: BigInt64Array) {
  const m = await loadModel(modelPath);
  const weights = discoverWeights(m).filter(
    (w) => w.op === 'MatMul' && w.compressible && !w.name.startsWith('lm_head'),
  );
  const g = m.proto.graph!;
  const byOutput = new Map<string, { weight: string; input: string; K: number; N: number; W: Float32Array }>();
  for (const w of weights) {
    const node = g.node.find((n) => n.name === w.node)!;
    byOutput.set(node.output[0], { weight: w.name, input: node.input[0], K: w.K, N: w.N, W: readWeightMatrix(m, w) });
  }
  const inputs = [...new Set([...byOutput.values()].map((v) => v.input))];
  for (const name of inputs) g.output.push(create(ValueInfoProtoSchema, { name }));
  const probe = join(dir, 'probe.onnx');
  await saveModel(m, probe);
  closeModel(m);
  const s = await ort.InferenceSession.create(probe);
  const r = await s.run({ input_ids: new ort.Tensor('int64', ids, [evalSamples, seq]) }, inputs);
  await s.release();
  const acts = new Map(inputs.map((n) => [n, r[n].data as Float32Array]));
  return { byOutput, acts, tokens: evalSamples * seq };
}

/** ‖X(W − Ŵ)ᵀ‖/‖XWᵀ‖ for W, Ŵ [N][K], X [T][K]. */
async function layerError(x: Float32Array, T: number, w: Float32Array, wHat: Float32Array, K: number, N: number) {
  const diff = Float32Array.from(w, (v, i) => v - wHat[i]);
  const yd = await matmul(x, diff, T, K, N, { transB: true });
  const y = await matmul(x, w, T, K, N, { transB: true });
  let a = 0;
  let b = 0;
  for (let i = 0; i < y.length; i++) {
    a += yd[i] * yd[i];
    b += y[i] * y[i];
  }
  return Math.sqrt(a / b);
}

/** Ŵ [N][K] of every MatMulNBits in a written model, by its output name (= the replaced MatMul's output). */
async function quantizedWeights(path: string) {
  const m = await loadModel(path);
  const g = m.proto.graph!;
  const init = new Map(g.initializer.map((t) => [t.name, t]));
  const bytes = (name: string) => {
    const t = init.get(name)!;
    const out = new Uint8Array(tensorByteLength(t));
    readTensorBytesInto(m, t, 0, out);
    return out;
  };
  const out = new Map<string, Float32Array>();
  for (const n of g.node.filter((x) => x.opType === 'MatMulNBits')) {
    const attr = (k: string) => Number(n.attribute.find((a) => a.name === k)!.i);
    const K = attr('K');
    const N = attr('N');
    const bits = attr('bits') as 4;
    const blockSize = attr('block_size');
    const blocks = Math.ceil(K / blockSize);
    // 4-bit zero points packed two per byte ([N][⌈blocks/2⌉]), the layout both writers use.
    const zeroPoints = n.input[3] ? bytes(n.input[3]) : null;
    const scales = tensorToFloat32(m, init.get(n.input[2])!);
    out.set(
      n.output[0],
      dequantizeMatMulNBits({ K, N, bits, blockSize, blocks, B: bytes(n.input[1]), scales, zeroPoints }),
    );
  }
  closeModel(m);
  return out;
}

async function logits(path: string, ids: BigInt64Array): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path);
  const r = await s.run({ input_ids: new ort.Tensor('int64', ids, [evalSamples, seq]) });
  await s.release();
  return r[s.outputNames[0]].data as Float32Array;
}

function modelError(y: Float32Array, y0: Float32Array, vocab: number) {
  let a = 0;
  let b = 0;
  let agree = 0;
  for (let i = 0; i < y.length; i++) {
    a += (y[i] - y0[i]) ** 2;
    b += y0[i] ** 2;
  }
  const rows = y.length / vocab;
  for (let r = 0; r < rows; r++) {
    let i0 = 0;
    let i1 = 0;
    for (let v = 1; v < vocab; v++) {
      if (y0[r * vocab + v] > y0[r * vocab + i0]) i0 = v;
      if (y[r * vocab + v] > y[r * vocab + i1]) i1 = v;
    }
    if (i0 === i1) agree++;
  }
  return { rel: Math.sqrt(a / b), top1: agree / rows };
}

function ortPython(): string | undefined {
  const py = process.env.ORT_PYTHON ?? 'python3';
  try {
    const v = execFileSync(
      py,
      ['-c', 'import onnxruntime, onnxruntime.quantization.matmul_nbits_quantizer; print(onnxruntime.__version__)'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    ).trim();
    if (!v.startsWith('1.30')) {
      console.log(`ONNX Runtime's quantizer: NOT RUN (${py} has onnxruntime ${v}, not 1.30)`);
      return undefined;
    }
    return py;
  } catch {
    console.log(
      `ONNX Runtime's quantizer: NOT RUN (${py} cannot import onnxruntime's matmul_nbits_quantizer; set ORT_PYTHON)`,
    );
    return undefined;
  }
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'gptq-bench-'));
  try {
    const files = await writeLlmModel(dir, shape);
    const calib = join(dir, 'calib.npz');
    await writeLlmCalibration(calib, shape, { samples, seq, seed: 7 });
    const ids = llmTokenIds(shape, { samples: evalSamples, seq, seed: 99 });
    console.log(
      `model: ${files.params.toLocaleString()} parameters (${shape.layers} blocks, hidden ${shape.hidden}, mlp ` +
        `${shape.mlp}, vocab ${shape.vocab}), random weights; calibration ${samples}×${seq} tokens, eval ` +
        `${evalSamples}×${seq}; lm_head kept dense everywhere`,
    );
    const { byOutput, acts, tokens } = await layerInputs(files.modelPath, dir, ids);
    const y0 = await logits(files.modelPath, ids);
    const measure = async (label: string, path: string, seconds: number): Promise<Measured> => {
      const q = await quantizedWeights(path);
      let sum = 0;
      for (const [out, l] of byOutput) {
        const wHat = q.get(out);
        if (!wHat) throw new Error(`${label}: no MatMulNBits for ${l.weight}`);
        sum += await layerError(acts.get(l.input)!, tokens, l.W, wHat, l.K, l.N);
      }
      const e = modelError(await logits(path, ids), y0, shape.vocab);
      return { label, layer: sum / byOutput.size, model: e.rel, top1: e.top1, seconds };
    };
    const rows = new Map<string, Measured>();
    const ours: [string, Record<string, unknown>][] = [
      ['RTN g32 sym', { bits: 4, groupSize: 32 }],
      ['RTN g32 sym clip mse', { bits: 4, groupSize: 32, clip: 'mse' }],
      ['RTN g128 sym', { bits: 4, groupSize: 128 }],
      ['RTN g128 sym clip mse', { bits: 4, groupSize: 128, clip: 'mse' }],
      ['RTN g128 asym', { bits: 4, groupSize: 128, symmetric: false }],
      ['SLiM-Quant per-tensor', { bits: 4, scheme: 'slim' }],
      ['GPTQ g32', { bits: 4, groupSize: 32, scheme: 'gptq' }],
      ['GPTQ g32 act-order', { bits: 4, groupSize: 32, scheme: 'gptq', actOrder: true }],
      ['GPTQ g128', { bits: 4, groupSize: 128, scheme: 'gptq' }],
      ['GPTQ g128 act-order', { bits: 4, groupSize: 128, scheme: 'gptq', actOrder: true }],
    ];
    for (const [label, quant] of ours) {
      const out = join(dir, label.replace(/\W+/g, '_'));
      const t0 = performance.now();
      await runRecipe(
        { method: 'quantize', quant, format: 'matmulnbits', accuracyLevel: 0, exclude: ['lm_head*'] } as Recipe,
        { modelPath: files.modelPath, outputDir: out, calibrationPath: calib },
      );
      rows.set(label, await measure(label, join(out, 'model.onnx'), (performance.now() - t0) / 1000));
    }
    const py = ortPython();
    const here = fileURLToPath(new URL('./py/ort_quantize.py', import.meta.url));
    const ortModes: [string, string][] = [
      ['ORT RTN g32 sym', 'rtn-sym-32'],
      ['ORT RTN g128 sym', 'rtn-sym-128'],
      ['ORT RTN g128 asym', 'rtn-asym-128'],
      ['ORT k-quant (block 32)', 'kquant-32'],
    ];
    if (py) {
      const m = await loadModel(files.modelPath);
      const head = m.proto.graph!.node.find((n) => n.input[1] === 'lm_head.weight')!.name;
      closeModel(m);
      for (const [label, mode] of ortModes) {
        const out = join(dir, `${mode}.onnx`);
        const t0 = performance.now();
        execFileSync(py, [here, files.modelPath, out, mode, head], { stdio: ['ignore', 'ignore', 'inherit'] });
        rows.set(label, await measure(label, out, (performance.now() - t0) / 1000));
      }
    }
    console.log(
      '\n| quantizer | mean layer error | model output error | top-1 agreement | seconds |\n|---|---|---|---|---|',
    );
    for (const r of rows.values())
      console.log(
        `| ${r.label} | ${r.layer.toFixed(5)} | ${r.model.toFixed(5)} | ${r.top1.toFixed(4)} | ${r.seconds.toFixed(2)} |`,
      );
    if (!py) for (const [label] of ortModes) console.log(`| ${label} | NOT RUN | NOT RUN | NOT RUN | — |`);
    /** `at most`: the target is ≤ (RTN against the same rule), else < (GPTQ must beat the baseline). */
    const ratio = (a: string, b: string, atMost = false) => {
      const x = rows.get(a);
      const y = rows.get(b);
      if (!x || !y) return console.log(`${a} / ${b}: NOT RUN`);
      const verdict = (v: number) => `${v.toFixed(3)}× ${v < 1 || (atMost && v <= 1) ? '✔' : '✘'}`;
      console.log(`${a} / ${b}: layer error ${verdict(x.layer / y.layer)}, model error ${verdict(x.model / y.model)}`);
    };
    console.log('\ntargets (GPTQ: ratio < 1; RTN against the same rule: ≤ 1):');
    ratio('GPTQ g32', 'ORT k-quant (block 32)');
    ratio('GPTQ g128', 'ORT RTN g128 sym');
    ratio('RTN g32 sym', 'ORT RTN g32 sym', true);
    ratio('RTN g128 sym', 'ORT RTN g128 sym', true);
    ratio('RTN g128 asym', 'ORT RTN g128 asym', true);
    ratio('GPTQ g32', 'RTN g32 sym');
    ratio('GPTQ g128', 'RTN g128 sym');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
