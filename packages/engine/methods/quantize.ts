// Method `quantize`: weight-only quantization of every selected MatMul/Gemm/Conv weight — round-to-nearest per
// group of K (4 or 8 bits, symmetric or asymmetric, groups 16–128 or per output channel), GPTQ (the same groups,
// rounded with OBS error feedback against the calibration Hessian: math/gptq.ts) or SLiM-Quant's per-tensor
// clip — written as com.microsoft MatMulNBits (MatMul/Gemm) or standard DequantizeLinear feeding the original op
// (format 'qdq', and always for Conv). Zeros stay exactly zero, so a 2:4-pruned model keeps its pattern.
// The maths lives in quant/ (rtn, slim-quant, matmulnbits); this file orchestrates and reports.
//
// Sample recipe:
//   {"method": "quantize", "quant": {"bits": 4, "scheme": "rtn", "groupSize": 32, "symmetric": true}, "format": "matmulnbits"}
import { InputError, type LayerReport } from '../job-parts.js';
import { gptqLayer, type GptqSettings } from '../quant/gptq-layer.js';
import { addPackTarget, packLayers, type PackTargets } from '../quant/packed24-nbits.js';
import { readWeightMatrix, type WeightRef } from '../onnx/weights.js';
import { Type, type Static } from 'typebox';
import {
  AccuracyLevelSchema,
  CommonProps,
  FormatSchema,
  QuantSchema,
  strict,
  type QuantSpec as RecipeQuant,
  type RecipeIssue,
} from '../recipe-parts.js';
import type { NodeProto } from '../onnx/gen/onnx_pb.js';
import { chooseAccuracyLevel, type AccuracyLevelChoice, type LayerShape } from '../quant/accuracy-level.js';
import {
  dequantizeMatMulNBits,
  isPow2AtLeast16,
  matMulNBitsBlockSize,
  matMulNBitsZeros,
  type MatMulNBitsWeights,
} from '../quant/matmulnbits.js';
import { quantizePackKN4Rows } from '../quant/fast-kn.js';
import { readFloatsInto, residentRawData, tensorByteLength, tensorDtype } from '../onnx/tensor.js';
import { nonFiniteCount } from '../report/sizes.js';
import { replaceBlocker, replaceWithQuantized, setAccuracyLevel, type Format } from '../quant/replace.js';
import { layerRoute, settleQdqOpset } from '../quant/opset-route.js';
import { dequantize, quantizeRtn, quantizeWithClip } from '../quant/rtn.js';
import { slimQuantAlpha } from '../quant/slim-quant.js';
import { resolveBlockSize, type QuantizedMatrix, type QuantSpec } from '../quant/types.js';
import type { CompressionMethod, MethodContext, MethodResult } from './types.js';

export const QuantizeRecipeSchema = Type.Object(
  {
    method: Type.Literal('quantize'),
    quant: QuantSchema,
    format: Type.Optional(FormatSchema),
    packed: Type.Optional(
      Type.Boolean({
        description:
          'Store 4-bit MatMulNBits weights that are exactly 2:4 along K packed (two kept codes + 2-bit positions per ' +
          'group of 4, ~3 bits/weight + scales), expanded by ONNX Runtime at session start; other layers unpacked.',
      }),
    ),
    accuracyLevel: Type.Optional(AccuracyLevelSchema),
    ...CommonProps,
  },
  { ...strict, title: 'QuantizeRecipe' },
);
export type QuantizeRecipe = Static<typeof QuantizeRecipeSchema>;
/** The registry's name for this method's recipe schema. */
export const schema = QuantizeRecipeSchema;

/** Defaults of a `quant` block (also slim's), for the scheme a method uses when none is named. */
export function quantDefaults(q: RecipeQuant, scheme: 'rtn' | 'slim'): RecipeQuant {
  const out: RecipeQuant = { scheme, groupSize: 32, symmetric: true, clip: 'none', ...q };
  return out.scheme === 'gptq' ? { actOrder: false, blockSize: 128, dampening: 0.01, ...out } : out;
}

/** Rules of a `quant` block (also slim's): keys of one scheme given to another, and what SLiM-Quant cannot do. */
export function quantRules(q: RecipeQuant): RecipeIssue[] {
  const issues: RecipeIssue[] = [];
  for (const key of ['actOrder', 'blockSize', 'dampening'] as const) {
    if (q[key] !== undefined && q.scheme !== 'gptq')
      issues.push({ path: `/quant/${key}`, message: `${key} applies to scheme "gptq" only` });
  }
  if (q.scheme === 'slim' && q.clip === 'mse') {
    issues.push({ path: '/quant/clip', message: 'SLiM-Quant searches its own per-tensor clip; clip "mse" is for rtn' });
  }
  if (q.scheme === 'slim' && q.symmetric === false) {
    issues.push({
      path: '/quant/symmetric',
      message: 'SLiM-Quant is symmetric per tensor; use scheme "rtn" for asymmetric',
    });
  }
  return issues;
}

function withDefaults(r: QuantizeRecipe): QuantizeRecipe {
  r.quant = quantDefaults(r.quant, 'rtn');
  r.format ??= 'matmulnbits';
  r.accuracyLevel ??= 'auto';
  return r;
}

/** A recipe's quantization as the engine uses it; `gptq` carries GPTQ's knobs (scheme 'gptq' only). */
export type EngineQuant = QuantSpec & { scheme: 'rtn' | 'slim' | 'gptq'; gptq?: GptqSettings };

export function quantSpecOf(q: RecipeQuant): EngineQuant {
  return {
    bits: q.bits,
    groupSize: q.groupSize ?? 32,
    symmetric: q.symmetric ?? true,
    scheme: q.scheme ?? 'rtn',
    clip: q.clip ?? 'none',
    ...(q.scheme === 'gptq'
      ? { gptq: { actOrder: q.actOrder ?? false, blockSize: q.blockSize ?? 128, dampening: q.dampening ?? 0.01 } }
      : {}),
  };
}

export function quantLabel(s: EngineQuant): string {
  if (s.scheme === 'slim') return `int${s.bits} SLiM-Quant per-tensor`;
  const clip = s.clip === 'mse' ? ' clip-mse' : '';
  const gptq = s.scheme === 'gptq' ? ` GPTQ${s.gptq?.actOrder ? ' act-order' : ''}` : '';
  return `int${s.bits} ${s.groupSize === 'channel' ? 'per-channel' : `g${s.groupSize}`} ${s.symmetric ? 'sym' : 'asym'}${clip}${gptq}`;
}

/** Opset the DequantizeLinear route needs: int4 and block-wise scales arrived in opset 21, int8 per-axis in 13. */
export function qdqOpsetFor(spec: QuantSpec & { scheme: string }): number {
  return spec.bits === 4 || (spec.groupSize !== 'channel' && spec.scheme !== 'slim') ? 21 : 13;
}

/** Whether the QDQ route writes one group per output row (quantizeCanonical: 'channel', or SLiM-Quant under qdq). */
export function perChannelOf(spec: QuantSpec & { scheme: string }, format: Format): boolean {
  return spec.groupSize === 'channel' || (spec.scheme === 'slim' && format === 'qdq');
}

/** Whether the weight's layout can take the quantization groups in the chosen format. */
export function quantSkipReason(
  w: WeightRef,
  spec: QuantSpec & { scheme: string },
  format: Format,
): string | undefined {
  const g = spec.groupSize;
  if (w.op === 'Conv') {
    // Conv1d, Conv2d, Conv3d weights [O][C/group][k…]: the DequantizeLinear route handles any spatial rank.
    if (w.consumerShape.length < 3) return `Conv weight of rank ${w.consumerShape.length}`;
    const cg = w.consumerShape[1];
    if (g !== 'channel' && spec.scheme !== 'slim' && cg % g !== 0)
      return `Conv input channels per group (${cg}) not a multiple of the group size ${g} (use groupSize "channel")`;
    return undefined;
  }
  if (format === 'qdq' && g !== 'channel' && w.K % g !== 0)
    return `K=${w.K} is not a multiple of the group size ${g} (DequantizeLinear blocks must tile K)`;
  return undefined;
}

/** Quantizes a canonical matrix with the recipe's scheme (SLiM-Quant fits α on the matrix given). */
export function quantizeCanonical(
  w: Float32Array,
  N: number,
  K: number,
  spec: QuantSpec & { scheme: 'rtn' | 'slim' | 'gptq' },
  format: Format,
): { q: QuantizedMatrix; alpha?: number } {
  if (spec.scheme === 'gptq') throw new Error('quantizeCanonical: GPTQ needs the Hessian (gptqLayer)');
  if (spec.scheme === 'slim') {
    const alpha = slimQuantAlpha(w, { bits: spec.bits }).alpha;
    // One scale for the tensor; stored per group of 32 for MatMulNBits (its kernel needs blocks) or one per row.
    const bs = format === 'matmulnbits' ? Math.min(32, resolveBlockSize({ groupSize: 'channel' }, K)) : K;
    return { q: quantizeWithClip(w, N, K, spec.bits, alpha, bs < 16 ? K : bs), alpha };
  }
  return { q: quantizeRtn(w, N, K, spec) };
}

export interface AccuracyPlan {
  nodes: NodeProto[];
  shapes: Map<string, LayerShape>;
}

export function recordShape(plan: AccuracyPlan, q: QuantizedMatrix | MatMulNBitsWeights, nodes: NodeProto[]): void {
  if (!nodes.length) return;
  plan.nodes.push(...nodes);
  const shape =
    'codes' in q
      ? { K: q.cols, N: q.rows, bits: q.bits, blockSize: matMulNBitsBlockSize(q) }
      : { K: q.K, N: q.N, bits: q.bits, blockSize: q.blockSize };
  const key = `${shape.K}x${shape.N}x${shape.bits}x${shape.blockSize}`;
  const s = plan.shapes.get(key);
  if (s) s.count++;
  else plan.shapes.set(key, { ...shape, count: 1 });
}

/**
 * Rows of the stored fp32 or fp16 [K][N] values of a MatMul / Gemm(transB=0) weight that sits directly in a
 * main-graph initializer (no Cast/Transpose/Reshape in between), one quantization block at a time — the input of the
 * fused fast path. fp32 bytes in memory and 4-byte aligned are used where they are; otherwise (unaligned raw_data,
 * weights still in the model file or in external data, fp16) each block is read into one small reused buffer (fp16
 * through a reused byte buffer, widened exactly by readFloatsInto), so a large model never gets a fresh copy of its
 * weights.
 */
function storedKNRows(ctx: MethodContext, w: WeightRef, block: number, scratch: KNScratch) {
  if (w.via.length || (w.dtype !== 'float32' && w.dtype !== 'float16') || w.storeGraphPath !== '') return undefined;
  if (!(w.op === 'MatMul' || (w.op === 'Gemm' && !w.transB))) return undefined;
  if (w.location !== 'initializer' && w.location !== 'external') return undefined;
  const t = ctx.model.proto.graph?.initializer.find((x) => x.name === w.name);
  const width = w.dtype === 'float16' ? 2 : 4;
  if (!t || tensorDtype(t) !== w.dtype || tensorByteLength(t) !== w.K * w.N * width) return undefined;
  const N = w.N;
  const resident = residentRawData(t);
  if (width === 4 && resident && resident.length === w.K * N * 4 && resident.byteOffset % 4 === 0) {
    const all = new Float32Array(resident.buffer, resident.byteOffset, w.K * N);
    return (k0: number) => ({ data: all, base: k0 * N });
  }
  if (!scratch.rows || scratch.rows.length < block * N) scratch.rows = new Float32Array(block * N);
  if (width === 2 && (!scratch.bytes || scratch.bytes.length < 2 * block * N))
    scratch.bytes = new Uint8Array(2 * block * N);
  const { rows, bytes } = scratch;
  return (k0: number, k1: number) => {
    readFloatsInto(ctx.model, t, k0 * N, rows.subarray(0, (k1 - k0) * N), bytes);
    return { data: rows, base: 0 };
  };
}

interface KNScratch {
  rows?: Float32Array;
  /** fp16 blocks as stored, before readFloatsInto widens them into `rows`. */
  bytes?: Uint8Array;
}

/** Whether the fused [K][N] → MatMulNBits kernel implements this spec. */
function fastSpec(spec: QuantSpec & { scheme: string }, format: Format): number | undefined {
  const g = spec.groupSize;
  if (format !== 'matmulnbits' || spec.scheme !== 'rtn' || spec.bits !== 4 || !spec.symmetric) return undefined;
  if (spec.clip === 'mse') return undefined; // the clip search runs on the canonical route
  return typeof g === 'number' && isPow2AtLeast16(g) ? g : undefined;
}

/** Applies the recipe's accuracy level, timing the candidates when it is 'auto'. */
export async function settleAccuracyLevel(
  ctx: MethodContext,
  requested: 'auto' | number | undefined,
  plan: AccuracyPlan,
): Promise<{ level: number; auto?: AccuracyLevelChoice } | null> {
  if (!plan.nodes.length) return null;
  if (requested !== undefined && requested !== 'auto') {
    setAccuracyLevel(plan.nodes, requested);
    return { level: requested };
  }
  ctx.progress({ fraction: 0.99, message: 'timing MatMulNBits accuracy levels' });
  const auto = await chooseAccuracyLevel([...plan.shapes.values()], { executionProvider: ctx.executionProvider });
  setAccuracyLevel(plan.nodes, auto.level);
  return { level: auto.level, auto };
}

/** GPTQ of one layer against its calibration Hessian(s). */
async function gptqOf(ctx: MethodContext, w: WeightRef, weights: Float32Array, spec: EngineQuant) {
  const stats = await ctx.stats(w);
  if (!stats?.hessian) {
    throw new InputError('calibration-required', `quant.scheme "gptq" needs calibration data (${w.name})`);
  }
  return gptqLayer(weights, w.N, w.K, stats.hessian, spec, spec.gptq ?? {}, { signal: ctx.signal });
}

async function run(ctx: MethodContext<QuantizeRecipe>): Promise<MethodResult> {
  const r = ctx.recipe;
  const spec = quantSpecOf(r.quant);
  const format: Format = r.format ?? 'matmulnbits';
  const layers: LayerReport[] = [];
  const plan: AccuracyPlan = { nodes: [], shapes: new Map() };
  const scratch: KNScratch = {};
  // Packed codes and scales of the fused path: one pair of buffers for all layers, since the MatMulNBits
  // initializers take copies.
  const out = { codes: new Uint8Array(0), scales: new Float32Array(0) };
  let paramsDone = 0;
  let bytesAfter = 0;
  let bytesBefore = 0;
  const pack: PackTargets = { nodes: [], qdq: [], other: [] };
  const total = ctx.weights.length;
  const opset = settleQdqOpset(ctx.model, ctx.weights, format, qdqOpsetFor(spec), perChannelOf(spec, format));
  for (let i = 0; i < total; i++) {
    ctx.checkAbort();
    const w = ctx.weights[i];
    ctx.progress({ fraction: i / total, layer: { index: i, total, name: w.name } });
    const t0 = performance.now();
    const { spec: ls, format: lf } = layerRoute(opset, w, spec, format);
    const blocker = replaceBlocker(ctx.model, w, lf, qdqOpsetFor(ls), perChannelOf(ls, lf));
    if (blocker) {
      const nonFinite = nonFiniteCount(ctx.model, w);
      layers.push({ name: w.name, node: w.node, op: w.op, shape: w.shape, skipped: blocker, seconds: 0, nonFinite });
      continue;
    }
    const block = fastSpec(ls, lf);
    const kn = block ? storedKNRows(ctx, w, block, scratch) : undefined;
    let rep;
    let relError: number | null = null;
    let alpha: number | undefined;
    let sparsity: number | null = null;
    // NaN/±Inf among the original weights (reportsNonFinite). The fused kernel refuses any (it throws naming the
    // first), so a layer it quantized has none; the canonical route counts them on the stored bytes first.
    let nonFinite = 0;
    if (kn && block) {
      // Fused path: quantize and pack straight from the stored bytes (errors only when calibration asks for them).
      const blocks = Math.ceil(w.K / block);
      if (out.codes.length < w.N * blocks * (block >> 1)) out.codes = new Uint8Array(w.N * blocks * (block >> 1));
      if (out.scales.length < w.N * blocks) out.scales = new Float32Array(w.N * blocks);
      const packed = quantizePackKN4Rows(kn, w.K, w.N, block, out);
      if (ctx.hasCalibration)
        relError = await ctx.relativeError(w, readWeightMatrix(ctx.model, w), dequantizeMatMulNBits(packed));
      ctx.release(w);
      rep = replaceWithQuantized(ctx.model, w, null, { format: lf, accuracyLevel: 0, packed });
      // The reused buffers must not end up in the model: should the node builder ever keep B or the scales
      // instead of copying them, copy them here (else the next layer would overwrite this one's).
      // (Only the new nodes' inputs are looked at: reading rawData of other initializers would load them.)
      const created = new Set(rep.nbitsNodes.flatMap((n) => n.input.slice(1)));
      for (const t of ctx.model.proto.graph?.initializer ?? []) {
        if (!created.has(t.name)) continue;
        const buf = t.rawData.buffer;
        if (buf === out.codes.buffer || buf === out.scales.buffer) t.rawData = t.rawData.slice();
      }
      recordShape(plan, packed, rep.nbitsNodes);
      sparsity = matMulNBitsZeros(packed) / (w.N * w.K);
    } else {
      nonFinite = nonFiniteCount(ctx.model, w);
      const weights = readWeightMatrix(ctx.model, w);
      const res =
        ls.scheme === 'gptq' ? await gptqOf(ctx, w, weights, ls) : quantizeCanonical(weights, w.N, w.K, ls, lf);
      alpha = 'alpha' in res ? res.alpha : undefined;
      const wHat = dequantize(res.q);
      if (ctx.hasCalibration) relError = await ctx.relativeError(w, weights, wHat);
      ctx.release(w);
      rep = replaceWithQuantized(ctx.model, w, res.q, { format: lf, accuracyLevel: 0 });
      recordShape(plan, res.q, rep.nbitsNodes);
      let zeros = 0;
      for (let k = 0; k < wHat.length; k++) if (wHat[k] === 0) zeros++;
      sparsity = zeros / wHat.length;
    }
    const params = w.N * w.K;
    paramsDone += params;
    bytesAfter += rep.bytes;
    bytesBefore += params * (w.dtype === 'float16' || w.dtype === 'bfloat16' ? 2 : w.dtype === 'float64' ? 8 : 4);
    const row: LayerReport = {
      name: w.name,
      node: w.node,
      op: w.op,
      shape: w.shape,
      pattern: quantLabel(ls),
      route: rep.route,
      relError,
      bitsPerWeight: (rep.bytes * 8) / params,
      seconds: (performance.now() - t0) / 1000,
      nonFinite,
    };
    if (alpha !== undefined) row.alpha = alpha;
    if (sparsity !== null) row.sparsity = sparsity;
    layers.push(row);
    addPackTarget(pack, w.name, rep);
  }
  const accuracy = await settleAccuracyLevel(ctx, r.accuracyLevel, plan);
  const packed = r.packed ? packLayers(ctx.model, pack) : undefined;
  if (packed) bytesAfter -= packed.codeBytesBefore - packed.codeBytesAfter;
  return {
    layers,
    graphChanged: true,
    report: {
      quantization: {
        ...spec,
        label: quantLabel(spec),
        format,
        conv: 'Conv weights are written as DequantizeLinear + Conv (MatMulNBits is a MatMul kernel)',
        ...(opset ? { opset } : {}),
        accuracyLevel: accuracy,
        bitsPerWeight: paramsDone ? (bytesAfter * 8) / paramsDone : null,
        quantizedParameters: paramsDone,
        weightBytesBefore: bytesBefore,
        weightBytesAfter: bytesAfter,
      },
      ...(packed ? { packed } : {}),
    },
  };
}

export const method: CompressionMethod<QuantizeRecipe> = {
  name: 'quantize',
  schema: QuantizeRecipeSchema,
  withDefaults,
  rules: (r) => quantRules(r.quant),
  summary: 'weight-only 4/8-bit quantization (RTN groups or SLiM-Quant) as MatMulNBits or QDQ',
  example: {
    method: 'quantize',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true },
    format: 'matmulnbits',
  },
  calibration: (r) => (r.quant.scheme === 'gptq' ? 'required' : 'optional'),
  hessian: (r) => r.quant.scheme === 'gptq',
  labels: () => false,
  ingredients: () => false,
  changesGraph: () => true,
  timesLatency: () => true,
  reportsNonFinite: true,
  skipReason: (w, r) => quantSkipReason(w, quantSpecOf(r.quant), r.format ?? 'matmulnbits'),
  run,
};
