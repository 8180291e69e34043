// Method `sparsity`: N:M (keep N of every M consecutive weights along K) or unstructured pruning of every selected
// MatMul/Gemm/Conv weight, by magnitude |W|, Wanda |W|·x_k, or SparseGPT (OBS with weight update). The graph is
// unchanged (pruned weights are written back wherever they lived) unless `packed` asks for the packed 2:4 form.
// The maths lives in math/ (nm, wanda, sparsegpt); this file only orchestrates and reports.
//
// Sample recipe:
//   {"method": "sparsity", "pattern": "2:4", "criterion": "wanda", "exclude": ["*head*"], "calibration": {"samples": 128}}
import { InputError, type LayerReport } from '../job-parts.js';
import { applyMask, checkNM, nmMask, unstructuredMaskGlobal, unstructuredMaskPerRow } from '../math/nm.js';
import { errorRatio, outputSquaresOnRows } from '../math/relerr.js';
import { countZeros32 } from '../math/float-passes.js';
import { FactorScratch } from '../math/linalg.js';
import { sparseGpt, SparseGptFactorCache } from '../math/sparsegpt.js';
import { magnitudeScores, wandaScores } from '../math/wanda.js';
import type { LoadedModel } from '../onnx/model.js';
import { readWeightMatrix, writeWeightMatrix, type WeightRef } from '../onnx/weights.js';
import { Type, type Static } from 'typebox';
import {
  CommonProps,
  CriterionSchema,
  parsePattern,
  PatternSchema,
  patternFieldIssues,
  strict,
  type RecipeIssue,
} from '../recipe-parts.js';
import { packWeights24 } from '../onnx/packed24.js';
import {
  countNMViolationsStrided,
  pruneStoredMagnitudeNM,
  storedFloatTensor,
  storedLayout,
  type StoredFloatTensor,
} from '../math/sparsity-stored.js';
import { pruneNMScored } from '../math/nm-scored.js';
import { encodeFloatsInto, readFloatsInto, storeRewrittenBytes } from '../onnx/tensor.js';
import type { CompressionMethod, MethodContext, MethodResult } from './types.js';

export const SparsityRecipeSchema = Type.Object(
  {
    method: Type.Literal('sparsity'),
    pattern: Type.Optional(PatternSchema),
    sparsity: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Unstructured fraction zeroed.' })),
    criterion: Type.Optional(CriterionSchema),
    blockSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 4096,
        description: 'SparseGPT column block (default 128, rounded up to a multiple of M).',
      }),
    ),
    dampening: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'SparseGPT damping (0.01).' })),
    packed: Type.Optional(Type.Boolean({ description: 'Write 2:4 weights packed as an ONNX local function.' })),
    ...CommonProps,
  },
  { ...strict, title: 'SparsityRecipe' },
);
export type SparsityRecipe = Static<typeof SparsityRecipeSchema>;
/** The registry's name for this method's recipe schema. */
export const schema = SparsityRecipeSchema;

function withDefaults(r: SparsityRecipe): SparsityRecipe {
  if (r.pattern === undefined && r.sparsity === undefined) r.pattern = '2:4';
  r.criterion ??= 'magnitude';
  if (r.criterion === 'sparsegpt') r.dampening ??= 0.01;
  return r;
}

function rules(r: SparsityRecipe): RecipeIssue[] {
  const issues = patternFieldIssues(r.pattern);
  if (r.pattern !== undefined && r.sparsity !== undefined) {
    issues.push({ path: '/sparsity', message: 'give either pattern (N:M) or sparsity (unstructured), not both' });
  }
  if (r.blockSize !== undefined && r.pattern !== undefined) {
    const m = Number(r.pattern.split(':')[1]);
    if (m > 0 && r.blockSize % m !== 0) {
      issues.push({ path: '/blockSize', message: `blockSize ${r.blockSize} must be a multiple of M=${m}` });
    }
  }
  return issues;
}

/** The pattern a recipe asks for: N:M, or an unstructured fraction. */
export function sparsityTarget(r: SparsityRecipe): { n: number; m: number } | { sparsity: number } {
  if (r.pattern !== undefined) return parsePattern(r.pattern);
  const s = r.sparsity ?? 0.5;
  if (!(s >= 0 && s < 1)) {
    throw new InputError('bad-sparsity', `sparsity ${s} would erase every weight; use a value in [0, 1)`);
  }
  return { sparsity: s };
}

function patternLabel(t: ReturnType<typeof sparsityTarget>): string {
  return 'n' in t ? `${t.n}:${t.m}` : `unstructured ${(t.sparsity * 100).toFixed(1)}%`;
}

function skipReason(w: WeightRef, r: SparsityRecipe): string | undefined {
  const t = sparsityTarget(r);
  if (!('n' in t)) return undefined;
  if (w.op === 'Conv') {
    const cg = w.consumerShape[1];
    if (cg % t.m !== 0) {
      return `Conv input channels per group (${cg}) not a multiple of M=${t.m}: N:M groups run over input channels`;
    }
    return undefined;
  }
  if (w.K % t.m !== 0) return `K=${w.K} is not a multiple of M=${t.m}`;
  return undefined;
}

/**
 * Float32 buffers reused from layer to layer within one run (grown to the largest layer, dropped with the run):
 * paging in fresh memory for every layer cost more than the pruning and the error products together.
 */
class Buffers {
  private readonly held = new Map<string, Float32Array>();
  /** SparseGPT's last factorisation: q/k/v (gate/up) share one Hessian, so one K³ factorisation serves them. */
  readonly sparseGptFactors = new SparseGptFactorCache();
  /** The arrays of SparseGPT's factorisations, recycled from one to the next (~4·K² fp32 at the largest K). */
  readonly factorScratch = new FactorScratch();

  get(name: string, length: number): Float32Array {
    let b = this.held.get(name);
    if (!b || b.length < length) this.held.set(name, (b = new Float32Array(length)));
    return b.subarray(0, length);
  }

  /** `length` bytes of the held 'raw' buffer: fp16/bf16 weights are decoded from and encoded into it. */
  private raw(length: number): Uint8Array {
    const b = this.get('raw', Math.ceil(length / 4));
    return new Uint8Array(b.buffer, b.byteOffset, length);
  }

  /** A stored weight's values, in its stored layout, decoded into the held 'weights' buffer. */
  readWeight(model: LoadedModel, w: StoredFloatTensor, length: number): Float32Array {
    const v = this.get('weights', length);
    this.readWeightRange(model, w, 0, v);
    return v;
  }

  /** Values [at, at + out.length) of a stored weight into `out` (fp16/bf16 through the held 'raw' bytes). */
  readWeightRange(model: LoadedModel, w: StoredFloatTensor, at: number, out: Float32Array): void {
    readFloatsInto(model, w.tensor, at, out, w.dtype === 'float32' ? undefined : this.raw(2 * out.length));
  }

  /** Writes values back to a stored weight in its own dtype (rounded as writeWeightMatrix rounds). */
  writeWeight(model: LoadedModel, w: StoredFloatTensor, v: Float32Array): void {
    const raw = w.dtype === 'float32' ? undefined : this.raw(2 * v.length);
    storeRewrittenBytes(model, w.tensor, encodeFloatsInto(w.dtype, v, raw), true);
  }

  /** Lets go of every buffer and the cached factorisation (their next use allocates afresh). */
  drop(): void {
    this.held.clear();
    this.sparseGptFactors.entry = undefined;
    this.factorScratch.clear();
  }
}

/**
 * The weight's calibration statistics. When they are not ready, the call runs a calibration pass, which holds ONNX
 * Runtime's copy of the model and up to maxHessianBytes of Hessians: the buffers (and the last layer's U and V,
 * 2·K² fp32) are dropped first so that they do not sit on top of that peak.
 */
function statsFor(ctx: MethodContext<SparsityRecipe>, w: WeightRef, buffers: Buffers) {
  if (ctx.statsReady?.(w) === false) buffers.drop();
  return ctx.stats(w);
}

/** The fields that name a layer's row: which weight, where, and what was asked of it. */
function layerIdentity(w: WeightRef, target: ReturnType<typeof sparsityTarget>, criterion: string) {
  return { name: w.name, node: w.node, op: w.op, shape: w.shape, pattern: patternLabel(target), criterion };
}

async function pruneOne(ctx: MethodContext<SparsityRecipe>, w: WeightRef, buffers: Buffers): Promise<LayerReport> {
  const t0 = performance.now();
  const r = ctx.recipe;
  const target = sparsityTarget(r);
  const criterion = r.criterion ?? 'magnitude';
  const { N, K } = w;
  if (criterion === 'magnitude' && 'n' in target && !ctx.hasCalibration) {
    // No layer error to report: prune in the stored layout, skipping the canonical copy (see sparsity-stored.ts).
    const layout = storedLayout(w, target.m);
    const stored = layout && storedFloatTensor(ctx.model, w);
    if (layout && stored) {
      const r = pruneStoredMagnitudeNM(ctx.model, stored.tensor, layout, target.n);
      return {
        ...layerIdentity(w, target, criterion),
        sparsity: r.sparsity,
        patternVerified: r.violations === 0,
        nonFinite: r.nonFinite,
        relError: null,
        seconds: (performance.now() - t0) / 1000,
      };
    }
  }
  if ('n' in target && (criterion === 'wanda' || criterion === 'magnitude')) {
    const row = await pruneStoredScored(ctx, w, target, criterion, t0, buffers);
    if (row) return row;
  }
  if (criterion === 'sparsegpt') {
    const row = await pruneStoredSparseGpt(ctx, w, target, t0, buffers);
    if (row) return row;
  }
  const weights = readWeightMatrix(ctx.model, w);
  let nonFinite = 0;
  for (let i = 0; i < weights.length; i++) if (!Number.isFinite(weights[i])) nonFinite++;
  if (nonFinite && criterion === 'sparsegpt') {
    throw new InputError(
      'non-finite-weights',
      `${w.name}: ${nonFinite} weights are NaN or infinite; SparseGPT's weight update cannot handle them ` +
        '(exclude the layer, or use magnitude/wanda)',
    );
  }
  // SparseGPT reports its layer error from the sweep (outputError below): no copy of the dense weights needed.
  const before = ctx.hasCalibration && criterion !== 'sparsegpt' ? weights.slice() : undefined;
  const stats = criterion === 'magnitude' ? undefined : await statsFor(ctx, w, buffers);
  if (criterion !== 'magnitude' && !stats) {
    throw new InputError('calibration-required', `${criterion} needs calibration statistics for ${w.name}`);
  }
  const groups = stats?.groups ?? 1;
  const rowsPerGroup = N / groups;
  let obsLoss = 0;
  const outputError = { num: 0, den: 0 };
  if (criterion === 'magnitude') {
    const scores = magnitudeScores(weights);
    const mask =
      'n' in target ? nmMask(scores, N, K, target.n, target.m) : unstructuredMaskGlobal(scores, N, K, target.sparsity);
    applyMask(weights, mask);
  } else {
    for (let g = 0; g < groups; g++) {
      const rows = weights.subarray(g * rowsPerGroup * K, (g + 1) * rowsPerGroup * K);
      if (criterion === 'wanda') {
        const scores = wandaScores(rows, rowsPerGroup, K, stats!.xNorm[g]);
        const mask =
          'n' in target
            ? nmMask(scores, rowsPerGroup, K, target.n, target.m)
            : unstructuredMaskPerRow(scores, rowsPerGroup, K, target.sparsity);
        applyMask(rows, mask);
      } else {
        const h = stats!.hessian?.[g];
        if (!h) throw new Error(`sparsegpt: no Hessian for ${w.name}`);
        const res = await sparseGpt(rows, rowsPerGroup, K, h, {
          ...('n' in target ? { n: target.n, m: target.m } : { sparsity: target.sparsity }),
          blockSize: r.blockSize, // undefined: sparseGpt's default (128 rounded to a multiple of M)
          dampening: r.dampening ?? 0.01,
          outputError: true,
          workspace: buffers,
          factors: buffers.sparseGptFactors,
          signal: ctx.signal,
        });
        obsLoss += res.error;
        outputError.num += res.outputError!.num;
        outputError.den += res.outputError!.den;
      }
    }
  }
  const zeros = countZeros32(weights);
  const verified = 'n' in target ? checkNM(weights, N, K, target.n, target.m).ok : undefined;
  writeWeightMatrix(ctx.model, w, weights);
  // SparseGPT: the same ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ from the same Hessian as ctx.relativeError, without its K×K pass.
  const relError =
    criterion === 'sparsegpt'
      ? errorRatio(outputError.num, outputError.den)
      : before
        ? await ctx.relativeError(w, before, weights)
        : null;
  ctx.release(w);
  const row: LayerReport = {
    ...layerIdentity(w, target, criterion),
    sparsity: zeros / weights.length,
    nonFinite,
    relError,
    seconds: (performance.now() - t0) / 1000,
  };
  if (verified !== undefined) row.patternVerified = verified;
  if (criterion === 'sparsegpt') row.obsLoss = obsLoss;
  return row;
}

/**
 * Wanda, and magnitude with calibration, N:M on a MatMul/Gemm weight stored as fp32, fp16 or bf16 in its consumer's
 * layout (2-byte floats decoded into a reused fp32 buffer and encoded back, as the canonical path rounds them):
 * scored, pruned and checked in the stored layout (math/nm-scored.ts; the same masks as the canonical path, without
 * its copies and transposes), and the layer error from the row sample as ‖X·Δ‖/‖X·W‖ with ‖X·W‖ reduced by the
 * calibration pass from the layer's own output where it could (LayerStats.sample.outputSquares; else one product
 * taken before pruning) and Δ written by the pruning, so no copy of the dense weight is kept. Undefined when the
 * weight has no such layout (Conv, Transposes in between, other dtypes, grouped statistics): the canonical path runs.
 */
async function pruneStoredScored(
  ctx: MethodContext<SparsityRecipe>,
  w: WeightRef,
  target: { n: number; m: number },
  criterion: 'wanda' | 'magnitude',
  t0: number,
  buffers: Buffers,
): Promise<LayerReport | undefined> {
  if (w.op === 'Conv') return undefined;
  const layout = storedLayout(w, target.m);
  const stored = layout && storedFloatTensor(ctx.model, w);
  if (!layout || !stored) return undefined;
  const stats = criterion === 'wanda' || ctx.hasCalibration ? await statsFor(ctx, w, buffers) : undefined;
  if (criterion === 'wanda' && !stats) {
    throw new InputError('calibration-required', `${criterion} needs calibration statistics for ${w.name}`);
  }
  if (stats && stats.groups !== 1) return undefined;
  const { N, K } = w;
  const transB = w.op === 'Gemm' && !!w.transB;
  const v = buffers.readWeight(ctx.model, stored, N * K);
  const sample = stats?.sample;
  const y = sample && buffers.get('outputs', sample.rows * N);
  const squares = (b: Float32Array) => outputSquaresOnRows(sample!.x[0], sample!.rows, K, b, N, transB, y);
  const den = sample ? (sample.outputSquares?.get(w.name) ?? (await squares(v))) : 0;
  const delta = sample && buffers.get('delta', N * K);
  const c = pruneNMScored(v, layout, target.n, criterion === 'wanda' ? stats!.xNorm[0] : undefined, delta);
  const violations = countNMViolationsStrided(v, layout, target.n);
  buffers.writeWeight(ctx.model, stored, v);
  const num = delta ? await squares(delta) : 0;
  ctx.release(w);
  return {
    ...layerIdentity(w, target, criterion),
    sparsity: c.zeros / v.length,
    nonFinite: c.nonFinite,
    relError: sample ? errorRatio(num, den) : null,
    seconds: (performance.now() - t0) / 1000,
    patternVerified: violations === 0,
  };
}

/**
 * SparseGPT on a MatMul (or Gemm without transB) weight stored as fp32, fp16 or bf16 [K][N] (2-byte floats decoded
 * into a reused fp32 buffer and encoded back): that layout is the Wᵀ the kernel works on, so it runs on the stored
 * values in place (sparseGpt `transposed`) — no canonical copy, no transposes in or out — and reports the layer error
 * from the sweep. Undefined when the weight has no such layout (Conv, Transposes in between, other dtypes, grouped
 * statistics): the canonical path runs.
 */
async function pruneStoredSparseGpt(
  ctx: MethodContext<SparsityRecipe>,
  w: WeightRef,
  target: ReturnType<typeof sparsityTarget>,
  t0: number,
  buffers: Buffers,
): Promise<LayerReport | undefined> {
  if (w.op === 'Conv') return undefined;
  const nm = 'n' in target ? target : undefined;
  const layout = storedLayout(w, nm ? nm.m : 1);
  if (!layout || layout.outer !== 1 || layout.inner !== w.N) return undefined;
  const stored = storedFloatTensor(ctx.model, w);
  if (!stored) return undefined;
  const { N, K } = w;
  const stats = await statsFor(ctx, w, buffers);
  if (!stats) throw new InputError('calibration-required', `sparsegpt needs calibration statistics for ${w.name}`);
  if (stats.groups !== 1) return undefined;
  const v = buffers.readWeight(ctx.model, stored, N * K);
  const h = stats.hessian?.[0];
  if (!h) throw new Error(`sparsegpt: no Hessian for ${w.name}`);
  const r = ctx.recipe;
  // sparseGpt rejects non-finite weights before touching them; counted only then (one pass less per layer).
  const res = await sparseGpt(v, N, K, h, {
    ...(nm ? { n: nm.n, m: nm.m } : { sparsity: (target as { sparsity: number }).sparsity }),
    blockSize: r.blockSize, // undefined: sparseGpt's default (128 rounded to a multiple of M)
    dampening: r.dampening ?? 0.01,
    outputError: true,
    // tr(W·H·Wᵀ) from the calibration pass's own output of this MatMul (LayerStats.outputTraces), where it ran one:
    // no V = U⁻¹ and no ‖W·V‖² product; missing (e.g. an LM head past the pass), sparseGpt computes it.
    referenceTrace: stats.outputTraces?.get(w.name),
    transposed: true,
    // The model keeps the dense weight until writeWeight below: the error re-reads (decodes) it instead of a copy.
    original: (k0, k1, out) => buffers.readWeightRange(ctx.model, stored, k0 * N, out.subarray(0, (k1 - k0) * N)),
    mask: false,
    workspace: buffers,
    factors: buffers.sparseGptFactors,
    signal: ctx.signal,
  }).catch((e: unknown) => {
    let nonFinite = 0;
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) nonFinite++;
    if (!nonFinite) throw e;
    throw new InputError(
      'non-finite-weights',
      `${w.name}: ${nonFinite} weights are NaN or infinite; SparseGPT's weight update cannot handle them ` +
        '(exclude the layer, or use magnitude/wanda)',
    );
  });
  const zeros = countZeros32(v);
  const violations = nm ? countNMViolationsStrided(v, layout, nm.n) : 0;
  buffers.writeWeight(ctx.model, stored, v);
  ctx.release(w);
  const row: LayerReport = {
    ...layerIdentity(w, target, 'sparsegpt'),
    sparsity: zeros / v.length,
    nonFinite: 0,
    relError: errorRatio(res.outputError!.num, res.outputError!.den),
    seconds: (performance.now() - t0) / 1000,
  };
  if (nm) row.patternVerified = violations === 0;
  row.obsLoss = res.error;
  return row;
}

async function run(ctx: MethodContext<SparsityRecipe>): Promise<MethodResult> {
  const target = sparsityTarget(ctx.recipe);
  const layers: LayerReport[] = [];
  const total = ctx.weights.length;
  const buffers = new Buffers();
  for (let i = 0; i < total; i++) {
    ctx.checkAbort();
    const w = ctx.weights[i];
    ctx.progress({ fraction: i / total, layer: { index: i, total, name: w.name } });
    layers.push(await pruneOne(ctx, w, buffers));
  }
  // Let go of the largest layer's buffers (weights, Δ, raw bytes: ~250 MB at a 32000×768 head) before the write and
  // evaluation stages allocate on top of them.
  buffers.drop();
  const unverified = layers.filter((l) => l.patternVerified === false).map((l) => l.name);
  if (unverified.length) throw new Error(`N:M check failed after pruning: ${unverified.join(', ')}`);
  const result: MethodResult = {
    layers,
    report: {
      pattern: patternLabel(target),
      criterion: ctx.recipe.criterion ?? 'magnitude',
      expectedSpeedup:
        'none from ONNX Runtime: its CPU and CUDA execution providers have no sparse GEMM kernel, so the zeros are ' +
        'multiplied like any weight. 2:4 pays off on runtimes with sparse tensor cores (TensorRT/cuSPARSELt, ' +
        'up to ~1.3–1.6× on large GEMMs of Ampere+ GPUs) or after further compression (quantization, packed storage).',
    },
  };
  if (ctx.recipe.packed) {
    if (!('n' in target) || target.n !== 2 || target.m !== 4) {
      throw new InputError('packed-needs-2:4', 'packed: true stores the 2:4 pattern; use pattern "2:4"');
    }
    const packed = packWeights24(ctx.model, ctx.weights);
    result.graphChanged = packed.packed.length > 0;
    result.report!.packed = {
      format:
        'onnx_compress.Unpack24 local function: values [N, K/2] + 2-bit positions (4 per byte); ORT inlines and ' +
        'constant-folds it at load, so the runtime graph equals the dense one',
      layers: packed.packed.length,
      bytesBefore: packed.bytesBefore,
      bytesAfter: packed.bytesAfter,
      notPacked: packed.notPacked,
    };
    for (const l of layers) if (packed.packed.includes(l.name)) l.packed = true;
  }
  return result;
}

export const method: CompressionMethod<SparsityRecipe> = {
  name: 'sparsity',
  schema: SparsityRecipeSchema,
  withDefaults,
  rules,
  summary: 'N:M (e.g. 2:4) or unstructured pruning by magnitude, Wanda or SparseGPT',
  example: {
    method: 'sparsity',
    pattern: '2:4',
    criterion: 'wanda',
    exclude: ['*head*'],
    calibration: { samples: 128 },
  },
  calibration: (r) => ((r.criterion ?? 'magnitude') === 'magnitude' ? 'optional' : 'required'),
  hessian: (r) => r.criterion === 'sparsegpt',
  labels: () => false,
  ingredients: () => false,
  changesGraph: (r) => !!r.packed,
  reportsNonFinite: true,
  skipReason,
  run,
};
