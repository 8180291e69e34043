// Test helpers: write models/data to a temp dir, run a recipe, and check N:M on the STORED tensors of the output file
// with a checker written here independently of the engine (no canonical matrices, no engine mask code).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeNpz } from '../../../packages/engine/data/npz.js';
import type { DataArray } from '../../../packages/engine/data/types.js';
import { loadModel, saveModel, type LoadedModel } from '../../../packages/engine/onnx/model.js';
import { tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import type { TensorProto } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { runRecipe } from '../../../packages/engine/run.js';
import type { JobOptions, JobResult } from '../../../packages/engine/job.js';
import type { Recipe } from '../../../packages/engine/recipe.js';
import { rng } from './models.js';

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'sparsity-'));
}

export async function writeCase(
  dir: string,
  name: string,
  model: LoadedModel,
  data: Record<string, DataArray>,
): Promise<{ modelPath: string; dataPath: string }> {
  const modelPath = join(dir, `${name}.onnx`);
  const dataPath = join(dir, `${name}.npz`);
  await saveModel(model, modelPath);
  writeFileSync(dataPath, encodeNpz(data));
  return { modelPath, dataPath };
}

export function run(
  recipe: Record<string, unknown>,
  modelPath: string,
  outputDir: string,
  extra: { calibrationPath?: string; evalPath?: string; ingredientPaths?: string[]; parentPath?: string } = {},
  opts: JobOptions = {},
): Promise<JobResult> {
  return runRecipe(recipe as unknown as Recipe, { modelPath, outputDir, ...extra }, opts);
}

/** The stored tensor of a value: initializer or Constant node output (main graph). */
export function storedTensor(model: LoadedModel, name: string): TensorProto | undefined {
  const g = model.proto.graph!;
  const init = g.initializer.find((t) => t.name === name);
  if (init) return init;
  const c = g.node.find((n) => n.opType === 'Constant' && n.output[0] === name);
  return c?.attribute.find((a) => a.name === 'value')?.t;
}

/**
 * Independent N:M check on the stored layout: MatMul B[K][N] down each column; Gemm(transB=1) B[N][K] along each
 * row; Conv W[O][Cg][kh][kw]: M consecutive input channels at each (o, ky, kx). Returns violations found.
 */
export function nmViolations(
  values: Float32Array,
  dims: number[],
  layout: 'KN' | 'NK' | 'conv',
  n: number,
  m: number,
): number {
  let bad = 0;
  if (layout === 'KN') {
    const [K, N] = dims;
    for (let col = 0; col < N; col++)
      for (let k0 = 0; k0 < K; k0 += m) {
        let nz = 0;
        for (let k = k0; k < k0 + m; k++) if (values[k * N + col] !== 0) nz++;
        if (nz > n) bad++;
      }
  } else if (layout === 'NK') {
    const [N, K] = dims;
    for (let row = 0; row < N; row++)
      for (let k0 = 0; k0 < K; k0 += m) {
        let nz = 0;
        for (let k = k0; k < k0 + m; k++) if (values[row * K + k] !== 0) nz++;
        if (nz > n) bad++;
      }
  } else {
    const [O, C, KH, KW] = dims;
    for (let o = 0; o < O; o++)
      for (let ky = 0; ky < KH; ky++)
        for (let kx = 0; kx < KW; kx++)
          for (let c0 = 0; c0 < C; c0 += m) {
            let nz = 0;
            for (let c = c0; c < c0 + m; c++) if (values[((o * C + c) * KH + ky) * KW + kx] !== 0) nz++;
            if (nz > n) bad++;
          }
  }
  return bad;
}

/** Loads an output model and checks every listed weight; returns {name: violations}. */
export async function checkOutput(
  path: string,
  layers: { name: string; layout: 'KN' | 'NK' | 'conv' }[],
  n: number,
  m: number,
): Promise<Record<string, { violations: number; zeros: number }>> {
  const model = await loadModel(path);
  const out: Record<string, { violations: number; zeros: number }> = {};
  for (const l of layers) {
    const t = storedTensor(model, l.name);
    if (!t) throw new Error(`${l.name} not found in ${path}`);
    const v = tensorToFloat32(model, t);
    let zeros = 0;
    for (const x of v) if (x === 0) zeros++;
    out[l.name] = { violations: nmViolations(v, t.dims.map(Number), l.layout, n, m), zeros: zeros / v.length };
  }
  return out;
}

/** Text-line-like images for PP-OCR recognition: light background, dark glyph strokes, PaddleOCR normalisation. */
export function textLineImages(samples: number, h: number, w: number, seed = 3): DataArray {
  const r = rng(seed);
  const x = new Float32Array(samples * 3 * h * w);
  for (let s = 0; s < samples; s++) {
    const img = new Float32Array(h * w).fill(0.9);
    for (let c = 0; 8 + c * 12 + 10 < w; c++) {
      const x0 = 8 + c * 12 + Math.floor(r() * 3);
      const y0 = 10 + Math.floor(r() * 6);
      const gw = 2 + Math.floor(r() * 6);
      const gh = 18 + Math.floor(r() * 10);
      for (let y = y0; y < Math.min(h, y0 + gh); y++)
        for (let xx = x0; xx < Math.min(w, x0 + gw); xx++) img[y * w + xx] = 0.1 + 0.1 * r();
      const hy = Math.min(h - 1, y0 + Math.floor(r() * gh));
      for (let xx = x0; xx < Math.min(w, x0 + 9); xx++) img[hy * w + xx] = 0.15;
    }
    for (let ch = 0; ch < 3; ch++)
      for (let i = 0; i < h * w; i++) x[(s * 3 + ch) * h * w + i] = (img[i] + 0.02 * (r() - 0.5) - 0.5) / 0.5;
  }
  return { dtype: 'float32', dims: [samples, 3, h, w], data: x };
}
