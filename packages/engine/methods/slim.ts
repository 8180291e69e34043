// Method `slim`: SLiM — N:M sparsity (2:4 by default) + 4-bit quantization + low-rank adapters, per layer:
// mask from `criterion` (wanda default, magnitude, sparsegpt), SLiM-Quant per-tensor or RTN groups, adapter
// Y += (X·A)·B fitted to the residual under `saliency` (slim = diag(x), the paper; whitened = H^1/2, the
// layer-output-optimal one; none = naive LoRA), the sparse part re-quantized against the adapter, optional
// alternating refits and 4-bit adapters (SLiM-LoRA^Q). Written as MatMulNBits (or QDQ) + MatMul·MatMul + Add.
// With criterion 'sparsegpt' the re-quantization reruns SparseGPT on W − LR instead of recomputing the sparse part
// from the original W (which would discard SparseGPT's weight updates; see quant/slim-layer.ts).
// The maths lives in quant/slim-layer.ts and math/lowrank.ts; this file orchestrates and reports.
//
// Sample recipe:
//   {"method": "slim", "pattern": "2:4", "criterion": "wanda", "quant": {"bits": 4, "scheme": "rtn", "groupSize": 32},
//    "lowRank": {"rankRatio": 0.1, "saliency": "whitened", "quantize": false}, "format": "matmulnbits"}
import { InputError, type LayerReport } from '../job-parts.js';
import type { LoadedModel } from '../onnx/loaded.js';
import { readWeightMatrix, type WeightRef } from '../onnx/weights.js';
import { readFloatsInto, tensorByteLength } from '../onnx/tensor.js';
import { storedFloatTensor, storedLayout } from '../math/sparsity-stored.js';
import { transposeCountNonFinite } from '../math/transpose.js';
import { nonFiniteCount } from '../report/sizes.js';
import { Type, type Static } from 'typebox';
import {
  AccuracyLevelSchema,
  CommonProps,
  CriterionSchema,
  FormatSchema,
  parsePattern,
  PatternSchema,
  patternFieldIssues,
  QuantSchema,
  strict,
  type RecipeIssue,
} from '../recipe-parts.js';
import { replaceBlocker, replaceWithQuantized, type Format } from '../quant/replace.js';
import { slimLayer, sparsePartStats } from '../quant/slim-layer.js';
import {
  qdqOpsetFor,
  quantDefaults,
  quantLabel,
  quantRules,
  quantSkipReason,
  quantSpecOf,
  recordShape,
  settleAccuracyLevel,
  type AccuracyPlan,
} from './quantize.js';
import { addPackTarget, packLayers, type PackTargets } from '../quant/packed24-nbits.js';
import { layerRoute, settleQdqOpset } from '../quant/opset-route.js';
import type { CompressionMethod, LayerStats, MethodContext, MethodResult } from './types.js';

export const LowRankSchema = Type.Object(
  {
    rankRatio: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'r = floor(rankRatio·min(K,N)). Default 0.1.' }),
    ),
    saliency: Type.Optional(
      Type.Union([Type.Literal('slim'), Type.Literal('whitened'), Type.Literal('none')], {
        description: 'slim: diag(x); whitened: full H^1/2; none: plain SVD of the error.',
      }),
    ),
    quantize: Type.Optional(Type.Boolean({ description: 'Quantize the adapters (SLiM-LoRA^Q).' })),
  },
  strict,
);

export const SlimRecipeSchema = Type.Object(
  {
    method: Type.Literal('slim'),
    pattern: Type.Optional(PatternSchema),
    criterion: Type.Optional(CriterionSchema),
    quant: Type.Optional(QuantSchema),
    lowRank: Type.Optional(LowRankSchema),
    refitIterations: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    quantizeAdapters: Type.Optional(Type.Boolean({ description: 'Same as lowRank.quantize.' })),
    format: Type.Optional(FormatSchema),
    packed: Type.Optional(
      Type.Boolean({
        description:
          'Store the 2:4 4-bit codes packed (two kept codes + 2-bit positions per group of 4), expanded by ONNX ' +
          'Runtime at session start (MatMulNBits layers; QDQ layers stay unpacked, listed in the report).',
      }),
    ),
    accuracyLevel: Type.Optional(AccuracyLevelSchema),
    ...CommonProps,
  },
  { ...strict, title: 'SlimRecipe' },
);
export type SlimRecipe = Static<typeof SlimRecipeSchema>;
/** The registry's name for this method's recipe schema. */
export const schema = SlimRecipeSchema;

function withDefaults(r: SlimRecipe): SlimRecipe {
  r.pattern ??= '2:4';
  r.criterion ??= 'wanda';
  r.quant = quantDefaults(r.quant ?? { bits: 4 }, 'slim');
  const quantizeAdapters = r.lowRank?.quantize ?? r.quantizeAdapters ?? false;
  r.lowRank = { rankRatio: 0.1, saliency: 'slim', ...r.lowRank, quantize: quantizeAdapters };
  r.quantizeAdapters = quantizeAdapters;
  r.refitIterations ??= 0;
  r.format ??= 'matmulnbits';
  r.accuracyLevel ??= 'auto';
  return r;
}

function rules(r: SlimRecipe): RecipeIssue[] {
  const issues = patternFieldIssues(r.pattern);
  if (
    r.lowRank?.quantize !== undefined &&
    r.quantizeAdapters !== undefined &&
    r.lowRank.quantize !== r.quantizeAdapters
  ) {
    issues.push({ path: '/quantizeAdapters', message: 'conflicts with lowRank.quantize' });
  }
  if (r.quant) {
    issues.push(...quantRules(r.quant));
    if (r.quant.symmetric === false) {
      issues.push({
        path: '/quant/symmetric',
        message: 'asymmetric codes do not keep the 2:4 zeros exact; slim needs symmetric quantization',
      });
    }
  }
  return issues;
}

/** Above this N·K² the intermediate stage errors are not measured (4096² layers: ~1e11 multiply-adds each). */
const STAGE_ERROR_FLOPS = 2 ** 33;

function settings(r: SlimRecipe) {
  const { n, m } = parsePattern(r.pattern ?? '2:4');
  return {
    n,
    m,
    criterion: r.criterion ?? 'wanda',
    quant: quantSpecOf(r.quant ?? { bits: 4, scheme: 'slim' }),
    rankRatio: r.lowRank?.rankRatio ?? 0.1,
    saliency: r.lowRank?.saliency ?? 'slim',
    refitIterations: r.refitIterations ?? 0,
    quantizeAdapters: r.lowRank?.quantize ?? r.quantizeAdapters ?? false,
    format: (r.format ?? 'matmulnbits') as Format,
  };
}

function needsXNorm(s: ReturnType<typeof settings>): boolean {
  return s.criterion === 'wanda' || s.saliency === 'slim';
}
function needsHessian(s: ReturnType<typeof settings>): boolean {
  return s.criterion === 'sparsegpt' || s.saliency === 'whitened' || s.quant.scheme === 'gptq';
}

function skipReason(w: WeightRef, r: SlimRecipe): string | undefined {
  const s = settings(r);
  if (w.op === 'Conv') {
    // Conv: QDQ weights (DequantizeLinear feeding the Conv) + adapter Conv(k×k, r channels) → Conv(1×1).
    if ((w.group ?? 1) !== 1)
      return 'SLiM adapters for grouped/depthwise Conv are not implemented; use the sparsity + quantize methods';
    if (s.rankRatio > 0 && s.quantizeAdapters)
      return '4-bit adapters are written for MatMul/Gemm only; use lowRank.quantize false for Conv layers';
    const cg = w.consumerShape[1];
    if (cg % s.m !== 0)
      return `Conv input channels (${cg}) not a multiple of M=${s.m}: N:M groups run over input channels`;
  }
  if (w.K % s.m !== 0) return `K=${w.K} is not a multiple of M=${s.m}`;
  return quantSkipReason(w, s.quant, s.format);
}

/**
 * The row sample ctx.relativeError measures on, when it measures on one (no Hessian: the runner's error for a method
 * without one is ‖X_s(W−Ŵ)ᵀ‖/‖X_s·Wᵀ‖ on LayerStats.sample); slimLayer then shares its products between the stages.
 * With the declared Hessian the runner's error is tr(ΔHΔᵀ)/tr(WHWᵀ) on it, and errorHessian shares them likewise.
 */
function errorRowsOf(
  ctx: MethodContext<SlimRecipe>,
  stats: LayerStats | undefined,
  w: WeightRef,
  ws: Workspace,
): { x: Float32Array; rows: number; reference?: number; buffer: Float32Array } | undefined {
  const sample = stats?.sample;
  if (!ctx.hasCalibration || stats?.hessian || !sample || sample.x.length !== 1) return undefined;
  const reference = sample.outputSquares?.get(w.name);
  return {
    x: sample.x[0],
    rows: sample.rows,
    ...(reference !== undefined ? { reference } : {}),
    buffer: ws.f32('row products', sample.rows * w.N),
  };
}

/**
 * A run's working buffers by name (the canonical weights, slimLayer's N×K scratch and its mask, the read chunk, the
 * layer errors' rows×N products), each grown to the largest layer seen: fresh memory costs ~0.25 s per 64 MB to page
 * in on the workers, and the layers in turn would otherwise allocate the model's size several times over. One per
 * run, never shared.
 */
export class Workspace {
  private readonly floats = new Map<string, Float32Array>();
  private readonly bytes = new Map<string, Uint8Array>();

  f32(name: string, size: number): Float32Array {
    let b = this.floats.get(name);
    if (!b || b.length < size) {
      this.floats.delete(name); // the old one may be collected before the new one is paged in
      this.floats.set(name, (b = new Float32Array(size)));
    }
    return b.subarray(0, size);
  }

  u8(name: string, size: number): Uint8Array {
    let b = this.bytes.get(name);
    if (!b || b.length < size) {
      this.bytes.delete(name);
      this.bytes.set(name, (b = new Uint8Array(size)));
    }
    return b.subarray(0, size);
  }

  /** Lets go of every buffer (a calibration pass is about to hold ONNX Runtime's copy of the model). */
  drop(): void {
    this.floats.clear();
    this.bytes.clear();
  }
}

/** Rows of the stored [K][N] read per chunk by readCanonical (a few MB, whatever N is). */
const READ_CHUNK_BYTES = 4 << 20;

/** NaN and ±Inf values (exponent bits all ones) of an fp32 array, read as bits. */
function nonFiniteIn(a: Float32Array): number {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  let bad = 0;
  for (let i = 0; i < u.length; i++) bad += +((u[i] & 0x7f800000) === 0x7f800000);
  return bad;
}

/**
 * The canonical W [N][K] in the workspace and how many of its values are NaN or ±Inf (reportsNonFinite: counted here,
 * by the transpose as it moves them, instead of the runner's separate scan of every stored weight): a float32,
 * float16 or bfloat16 MatMul/Gemm weight stored as it is consumed is read chunk by chunk (2-byte floats widened
 * exactly through a reused byte buffer) and transposed into place (Gemm transB: read as it is), with no fresh N×K
 * array; anything else goes through readWeightMatrix. The same values either way.
 */
export function readCanonical(
  model: LoadedModel,
  w: WeightRef,
  ws: Workspace,
): { weights: Float32Array; nonFinite: number } {
  const { N, K } = w;
  const stored = w.op !== 'Conv' && storedLayout(w, 1) ? storedFloatTensor(model, w) : undefined;
  if (!stored || tensorByteLength(stored.tensor) !== (stored.dtype === 'float32' ? 4 : 2) * N * K) {
    const weights = readWeightMatrix(model, w);
    return { weights, nonFinite: nonFiniteIn(weights) };
  }
  const { tensor: t, dtype } = stored;
  const out = ws.f32('weights', N * K);
  const rows = Math.max(1, Math.min(K, Math.floor(READ_CHUNK_BYTES / (4 * N))));
  const raw = dtype === 'float32' ? undefined : ws.u8('read bytes', 2 * rows * N);
  if (w.op === 'Gemm' && w.transB) {
    for (let at = 0; at < N * K; at += rows * N) readFloatsInto(model, t, at, out.subarray(at, at + rows * N), raw);
    return { weights: out, nonFinite: nonFiniteIn(out) };
  }
  const chunk = ws.f32('read', rows * N);
  let nonFinite = 0;
  for (let k0 = 0; k0 < K; k0 += rows) {
    const part = chunk.subarray(0, Math.min(rows, K - k0) * N);
    readFloatsInto(model, t, k0 * N, part, raw);
    // Stored rows k0.. → canonical columns k0.., counted on the way.
    nonFinite += transposeCountNonFinite(part, 0, N, part.length / N, N, out, k0, K);
  }
  return { weights: out, nonFinite };
}

/** The weight's statistics; the workspace is dropped first when they take a calibration pass (see Workspace.drop). */
function statsFor(ctx: MethodContext<SlimRecipe>, w: WeightRef, ws: Workspace) {
  if (ctx.statsReady?.(w) === false) ws.drop();
  return ctx.stats(w);
}

async function compressOne(
  ctx: MethodContext<SlimRecipe>,
  w: WeightRef,
  s: ReturnType<typeof settings>,
  plan: AccuracyPlan,
  pack: PackTargets,
  ws: Workspace,
): Promise<LayerReport & { bytes: number }> {
  const t0 = performance.now();
  const { N, K } = w;
  const blocker = replaceBlocker(ctx.model, w, s.format, qdqOpsetFor(s.quant), s.quant.groupSize === 'channel');
  if (blocker) {
    const nonFinite = nonFiniteCount(ctx.model, w); // reportsNonFinite: skipped layers are counted too
    return { name: w.name, node: w.node, op: w.op, shape: w.shape, skipped: blocker, seconds: 0, bytes: 0, nonFinite };
  }
  const stats = needsXNorm(s) || needsHessian(s) ? await statsFor(ctx, w, ws) : undefined;
  const { weights, nonFinite } = readCanonical(ctx.model, w, ws);
  if ((needsXNorm(s) || needsHessian(s)) && !stats)
    throw new InputError('calibration-required', `slim with ${s.criterion}/${s.saliency} needs calibration data`);
  const hessian = stats?.hessian?.[0];
  if (needsHessian(s) && !hessian) throw new Error(`slim: no Hessian for ${w.name}`);
  const res = await slimLayer(
    weights,
    N,
    K,
    { xNorm: stats?.xNorm[0], hessian },
    {
      n: s.n,
      m: s.m,
      criterion: s.criterion,
      quant: s.quant,
      rankRatio: s.rankRatio,
      saliency: s.saliency,
      refitIterations: s.refitIterations,
      quantizeAdapters: s.quantizeAdapters,
      adapterStorage: 'float16',
      sparseGpt: { dampening: 0.01 }, // block: sparseGpt's default, 128 rounded to a multiple of M
      error: ctx.hasCalibration ? (x) => ctx.relativeError(w, weights, x) : undefined,
      errorRows: errorRowsOf(ctx, stats, w, ws),
      errorHessian: ctx.hasCalibration && stats?.hessian?.length === 1 ? hessian : undefined,
      errorHessianReference: stats?.outputTraces?.get(w.name),
      // Each error is an O(N·K²) GEMM: big layers get it before the adapter and at the end only.
      stageErrors: N * K * K <= STAGE_ERROR_FLOPS,
      effective: false, // nothing here reads it (the codes are checked below)
      scratch: ws.f32('scratch', N * K),
      maskScratch: ws.u8('mask', N * K),
      codesScratch: ws.u8('codes', N * K), // read into the stored form below, before the next layer reuses it
      adapterScratch: ws,
      signal: ctx.signal,
    },
  ).catch((e: unknown) => {
    // The quantizers and the adapter fit refuse NaN/±Inf (kept or pruned: the residual carries them): name the cause.
    if (!nonFinite || ctx.signal?.aborted) throw e;
    throw new InputError(
      'non-finite-weights',
      `${w.name}: ${nonFinite} of ${N * K} weights are NaN or infinite; SLiM cannot compress them (exclude the layer)`,
    );
  });
  ctx.release(w);
  // Read from the codes: the same answers as checkNM and a zero count on the dequantized sparse part.
  const { zeros, nmOk: verified } = sparsePartStats(res.quantized, s.n, s.m);
  if (!verified) throw new Error(`slim: ${s.n}:${s.m} check failed on the quantized sparse part of ${w.name}`);
  const ad = res.adapter;
  const rep = replaceWithQuantized(ctx.model, w, res.quantized, {
    format: s.format,
    accuracyLevel: 0,
    adapter:
      ad && ad.rank > 0
        ? { rank: ad.rank, a: ad.a, b: ad.b, quantized: res.adapterQuantized ?? undefined, storage: 'float16' }
        : undefined,
  });
  recordShape(plan, res.quantized, rep.nbitsNodes);
  addPackTarget(pack, w.name, rep);
  const rank = ad?.rank ?? 0;
  const row: LayerReport & { bytes: number } = {
    name: w.name,
    node: w.node,
    op: w.op,
    shape: w.shape,
    pattern: `${s.n}:${s.m} + ${quantLabel(s.quant)}${rank ? ` + r=${rank} (${s.saliency}${s.quantizeAdapters ? ', 4-bit' : ''})` : ''}`,
    criterion: s.criterion,
    route: rep.route,
    sparsity: zeros / (N * K),
    nonFinite,
    patternVerified: verified,
    relErrorBeforeAdapter: res.errors.beforeAdapter,
    relErrorAfterAdapter: res.errors.afterAdapter,
    relErrorAfterRequant: res.errors.afterFinalRequant,
    relErrorRefits: res.errors.refits,
    relError: res.errors.final,
    rank,
    svd: ad?.svd ?? null,
    bitsPerWeight: (rep.bytes * 8) / (N * K),
    adapterBitsPerWeight: (rep.adapterBytes * 8) / (N * K),
    stages: res.stages,
    stepSeconds: res.timings,
    seconds: (performance.now() - t0) / 1000,
    bytes: rep.bytes,
  };
  if (res.alpha !== undefined) row.alpha = res.alpha;
  return row;
}

async function run(ctx: MethodContext<SlimRecipe>): Promise<MethodResult> {
  const s = settings(ctx.recipe);
  if ((needsXNorm(s) || needsHessian(s)) && !ctx.hasCalibration)
    throw new InputError(
      'calibration-required',
      `slim with criterion "${s.criterion}", saliency "${s.saliency}" and quant.scheme "${s.quant.scheme}" needs calibration data ` +
        '(give a calibration file, or calibration.random for a smoke test)',
    );
  const layers: LayerReport[] = [];
  const plan: AccuracyPlan = { nodes: [], shapes: new Map() };
  const pack: PackTargets = { nodes: [], qdq: [], other: [] };
  let params = 0;
  let bytes = 0;
  const total = ctx.weights.length;
  const workspace = new Workspace();
  const opset = settleQdqOpset(ctx.model, ctx.weights, s.format, qdqOpsetFor(s.quant), s.quant.groupSize === 'channel');
  for (let i = 0; i < total; i++) {
    ctx.checkAbort();
    const w = ctx.weights[i];
    ctx.progress({ fraction: i / total, layer: { index: i, total, name: w.name } });
    const route = layerRoute(opset, w, s.quant, s.format);
    const ls = { ...s, quant: route.spec, format: route.format };
    const { bytes: b, ...row } = await compressOne(ctx, w, ls, plan, pack, workspace);
    layers.push(row);
    if (!row.skipped) {
      params += w.N * w.K;
      bytes += b;
    }
  }
  const accuracy = await settleAccuracyLevel(ctx, ctx.recipe.accuracyLevel, plan);
  const packed = ctx.recipe.packed ? packLayers(ctx.model, pack) : undefined;
  if (packed) bytes -= packed.codeBytesBefore - packed.codeBytesAfter;
  const done = layers.filter((l) => !l.skipped);
  const mean = (key: string) => {
    const v = done.map((l) => l[key]).filter((x): x is number => typeof x === 'number');
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  return {
    layers,
    graphChanged: true,
    report: {
      slim: {
        pattern: `${s.n}:${s.m}`,
        criterion: s.criterion,
        quantization: { ...s.quant, label: quantLabel(s.quant) },
        lowRank: { rankRatio: s.rankRatio, saliency: s.saliency, quantized: s.quantizeAdapters },
        refitIterations: s.refitIterations,
        format: s.format,
        ...(opset ? { opset } : {}),
        accuracyLevel: accuracy,
        bitsPerWeight: params ? (bytes * 8) / params : null,
        bitsPerWeightNote:
          `codes + scales + zero points + adapters, as stored (2:4 zeros are stored ${packed ? 'packed where listed in packed.layers' : 'densely'}; ` +
          'unquantized adapters are stored as float16 and cast to the activation type, which ONNX Runtime folds at load)',
        compressedParameters: params,
        meanRelErrorBeforeAdapter: mean('relErrorBeforeAdapter'),
        meanRelError: mean('relError'),
        sparseGpt:
          s.criterion === 'sparsegpt'
            ? 'the sparse part is re-derived by SparseGPT on W − LR at every re-quantization (the reference ' +
              'recomputes it from the original W, discarding the OBS updates); ' +
              (s.quant.scheme === 'gptq'
                ? 'the kept weights are then rounded by GPTQ with error feedback under its mask'
                : 'quantization follows the OBS step (RTN/SLiM-Quant), it is not a joint OBS quantizer')
            : undefined,
        expectedSpeedup:
          'MatMulNBits 4-bit kernels (accuracy_level 4 on CPUs with int8 dot products) run several times faster ' +
          'than fp32 at batch 1; the 2:4 zeros themselves give no speedup in ONNX Runtime (no sparse GEMM); the ' +
          'adapter adds two thin GEMMs (2·r·(K+N) MACs per token)',
      },
      ...(packed ? { packed } : {}),
    },
  };
}

export const method: CompressionMethod<SlimRecipe> = {
  name: 'slim',
  schema: SlimRecipeSchema,
  withDefaults,
  rules,
  summary: 'SLiM: N:M sparsity + 4-bit quantization + low-rank adapters, as MatMulNBits + adapter GEMMs',
  example: {
    method: 'slim',
    pattern: '2:4',
    criterion: 'wanda',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
    lowRank: { rankRatio: 0.1, saliency: 'whitened', quantize: false },
    format: 'matmulnbits',
  },
  calibration: (r) => {
    const s = settings(r);
    return needsXNorm(s) || needsHessian(s) ? 'required' : 'optional';
  },
  hessian: (r) => needsHessian(settings(r)),
  labels: () => false,
  ingredients: () => false,
  changesGraph: () => true,
  timesLatency: () => true,
  reportsNonFinite: true,
  skipReason,
  run,
};
