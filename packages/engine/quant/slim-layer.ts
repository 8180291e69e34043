// SLiM on one canonical layer W [N][K]: sparse + quantized part W_C plus a low-rank adapter, as ALGORITHMS.md
// specifies. Steps:
//   1. SLiM-Quant α on the dense W (scheme 'slim'; RTN groups need no fitting).
//   2. Sparse part W_C = sparsePart(W): magnitude / Wanda → mask M (fixed from here on), W_C = Q(M ⊙ target);
//      SparseGPT → W_C = Q(SparseGPT(target, H)) (its OBS updates are part of the sparse part).
//   3. Adapter LR = lowRank(W − W_C) under the saliency.
//   4. Final re-quantization against the adapter: W_C = sparsePart(W − LR) with a freshly fitted scale.
//   5. refitIterations × { LR = lowRank(W − W_C); W_C = sparsePart(W − LR) } (alternating minimisation).
//   6. Optional SLiM-LoRA^Q: A and B quantized group-wise along their own GEMM's K.
// The SparseGPT interaction: the reference's final step recomputes W_C = Q(M ⊙ (W − LR)) from the original W, which
// throws SparseGPT's weight updates away. Here, with criterion 'sparsegpt', every re-quantization reruns SparseGPT
// on the new target (W − LR) with the same Hessian, so the OBS compensation is recomputed for the target instead of
// discarded (the mask may move; it stays N:M). Quantization itself is RTN/SLiM-Quant after the OBS step, not a
// joint OBS quantizer (GPTQ), and the layer report says so.
import { nmMask } from '../math/nm.js';
import { wandaScores, magnitudeScores } from '../math/wanda.js';
import { sparseGpt } from '../math/sparsegpt.js';
import { matmulAddInPlace, matmulSubtract } from '../math/gemm.js';
import {
  lowRankAdapter,
  rankFor,
  usesRandomizedRoute,
  whiteningFactor,
  whiteningMetric,
  type Adapter,
  type Saliency,
} from '../math/lowrank.js';
import type { TruncatedSvdOptions } from '../math/svd.js';
import { dequantize, dequantizeResidual, quantizeMasked, quantizeRtn, quantizeWithClip } from './rtn.js';
import { float16ToFloat32, float32ToFloat16 } from '../onnx/floats.js';
import { gptqLayer, type GptqSettings } from './gptq-layer.js';
import { slimQuantAlpha } from './slim-quant.js';
import { QuantError, resolveBlockSize, type QuantizedMatrix, type QuantSpec } from './types.js';

export type Criterion = 'magnitude' | 'wanda' | 'sparsegpt';

export interface SlimLayerOptions {
  /** Keep n of every m along K. */
  n: number;
  m: number;
  criterion: Criterion;
  /** scheme 'gptq': the kept weights rounded with OBS error feedback under the mask (needs the Hessian). */
  quant: QuantSpec & { scheme: 'rtn' | 'slim' | 'gptq'; gptq?: GptqSettings };
  /** 0 disables the adapter. */
  rankRatio: number;
  saliency: Saliency;
  refitIterations: number;
  quantizeAdapters: boolean;
  /**
   * Round the final unquantized adapter to float16 (what the file stores; see onnx-nodes adapterNodes), so that
   * the errors reported are those of the stored model. @defaultValue 'float32'
   */
  adapterStorage?: 'float32' | 'float16';
  /** Apply step 4 (the reference always does). @defaultValue true */
  finalRequantize?: boolean;
  sparseGpt?: { blockSize?: number; dampening?: number };
  /**
   * How SparseGPT's sparse part is re-quantized against the adapter: 'rerun' (default) runs SparseGPT again on
   * W − LR; 'reference' keeps its first mask and recomputes Q(M ⊙ (W − LR)) from the original W as the SLiM code
   * does, discarding the OBS updates (offered only to measure the difference).
   */
  sparseGptRequant?: 'rerun' | 'reference';
  svd?: TruncatedSvdOptions;
  /** λ in H + λ·mean(diag H)·I for the whitened saliency. @defaultValue 0.01 */
  whiteningDampening?: number;
  /** Layer output error of a candidate effective weight; when given, errors are recorded (see stageErrors). */
  error?: (wHat: Float32Array) => Promise<number | null>;
  /**
   * Also measure the intermediate stages (after the first adapter, after the re-quantization, after each refit),
   * not only before the adapter and at the end. Each measurement is a K×K quadratic form per row (O(N·K²)).
   * @defaultValue true
   */
  stageErrors?: boolean;
  signal?: AbortSignal;
}

export interface SlimLayerStats {
  xNorm?: Float64Array;
  hessian?: Float64Array;
}

export interface SlimLayerResult {
  /** The sparse quantized part (codes keep the N:M zeros exactly). */
  quantized: QuantizedMatrix;
  /** 1 = kept. */
  mask: Uint8Array;
  adapter: Adapter | null;
  /** SLiM-LoRA^Q: A as canonical [r][K] and B as canonical [N][r], quantized. */
  adapterQuantized: { a: QuantizedMatrix; b: QuantizedMatrix } | null;
  /** Effective dense weight W_C + (A·B)ᵀ (with quantized adapters when asked), canonical fp32. */
  effective: Float32Array;
  /** Per-tensor clip α of the final sparse part (scheme 'slim'). */
  alpha?: number;
  /** Layer errors: sparse+quantized only (before any adapter), after the first adapter, after each refit, final. */
  errors: {
    beforeAdapter: number | null;
    afterAdapter: number | null;
    afterFinalRequant: number | null;
    refits: (number | null)[];
    final: number | null;
  };
  stages: string[];
  /** Seconds per step (sparse part, adapter fit, error measurement …), summed over repeats. */
  timings: Record<string, number>;
}

/** Transpose a rows×cols row-major matrix. */
export function transpose32(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}

export async function slimLayer(
  w: Float32Array,
  N: number,
  K: number,
  stats: SlimLayerStats,
  o: SlimLayerOptions,
): Promise<SlimLayerResult> {
  if (w.length !== N * K) throw new QuantError(`slimLayer: expected ${N}×${K} weights, got ${w.length}`);
  if (K % o.m !== 0) throw new QuantError(`slimLayer: K = ${K} is not a multiple of M = ${o.m}`);
  if (o.criterion === 'wanda' && !stats.xNorm) throw new QuantError('slimLayer: Wanda needs input norms');
  if (o.criterion === 'sparsegpt' && !stats.hessian) throw new QuantError('slimLayer: SparseGPT needs the Hessian');
  if (o.quant.scheme === 'gptq' && !stats.hessian) throw new QuantError('slimLayer: GPTQ needs the Hessian');
  if (o.rankRatio > 0 && o.saliency === 'whitened' && !stats.hessian)
    throw new QuantError("slimLayer: saliency 'whitened' needs the Hessian");
  if (o.rankRatio > 0 && o.saliency === 'slim' && !stats.xNorm)
    throw new QuantError("slimLayer: saliency 'slim' needs input norms");
  if (!o.quant.symmetric) throw new QuantError('slimLayer: asymmetric codes do not keep N:M zeros exact');
  const blockSize = resolveBlockSize(o.quant, K);
  const stages: string[] = [];
  const timings: Record<string, number> = {};
  const timed = async <R>(key: string, fn: () => Promise<R> | R): Promise<R> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings[key] = (timings[key] ?? 0) + (performance.now() - t0) / 1000;
    }
  };
  // One N×K working buffer carries every dense intermediate in turn (scores → masked target → E = W − W_C →
  // W − LR → … → the effective weight returned): fresh memory costs ~0.25 s per 64 MB to page in on the workers,
  // more than the arithmetic of a step, so no step allocates its own N×K temporary.
  const scratch = new Float32Array(N * K);
  /** (A·B)ᵀ products: W − LR into `out`, or `into` += LR. */
  const minusAdapter = (ad: Adapter, out: Float32Array) =>
    timed('adapter product', () => matmulSubtract(w, ad.b, ad.a, N, ad.rank, K, { transA: true, transB: true }, out));
  const plusAdapter = (ad: Adapter, into: Float32Array) =>
    timed('adapter product', () => matmulAddInPlace(into, ad.b, ad.a, N, ad.rank, K, { transA: true, transB: true }));
  // Errors need the candidate's effective weight W_C (+ LR); build it (a fresh array) only when someone measures it.
  const errorOf = async (qm: QuantizedMatrix, ad?: Adapter) => {
    if (!o.error) return null;
    const dense = dequantize(qm);
    if (ad) await plusAdapter(ad, dense);
    return timed('errors', () => o.error!(dense));
  };
  const stageErrorOf = async (qm: QuantizedMatrix, ad: Adapter) => ((o.stageErrors ?? true) ? errorOf(qm, ad) : null);

  // The mask of magnitude/Wanda is chosen once on the dense W and kept through the refits.
  let mask: Uint8Array =
    o.criterion === 'sparsegpt'
      ? new Uint8Array(N * K)
      : nmMask(
          o.criterion === 'wanda' ? wandaScores(w, N, K, stats.xNorm!, scratch) : magnitudeScores(w, scratch),
          N,
          K,
          o.n,
          o.m,
        );
  let alpha: number | undefined;

  /**
   * W_C for a dense target: masked and quantized in one pass (magnitude/Wanda), or SparseGPT-pruned in `scratch`
   * and quantized. The target may be scratch itself; its contents are then consumed. `first`: the call on W itself.
   */
  const sparsePart = (target: Float32Array, first: boolean): Promise<QuantizedMatrix> =>
    timed('sparse part', async () => {
      o.signal?.throwIfAborted();
      // SLiM-Quant's α is fitted on the dense target, before masking.
      const a = o.quant.scheme === 'slim' ? slimQuantAlpha(target, { bits: o.quant.bits }).alpha : undefined;
      if (o.criterion === 'sparsegpt' && (o.sparseGptRequant === 'reference' ? first : true)) {
        if (target !== scratch) scratch.set(target);
        const r = await sparseGpt(scratch, N, K, stats.hessian!, { n: o.n, m: o.m, ...o.sparseGpt, signal: o.signal });
        mask = r.mask;
      } else if (o.quant.scheme === 'gptq') {
        // The dense target under the fixed mask: pruned entries are fed back as error with the rounding error.
        const r = await gptqLayer(target, N, K, [stats.hessian!], o.quant, o.quant.gptq ?? {}, {
          mask,
          signal: o.signal,
        });
        return r.q;
      } else {
        if (a !== undefined) alpha = a;
        return quantizeMasked(target, mask, N, K, o.quant.bits, blockSize, a, o.quant.clip); // no masked copy
      }
      if (a !== undefined) {
        alpha = a;
        return quantizeWithClip(scratch, N, K, o.quant.bits, a, blockSize);
      }
      if (o.quant.scheme === 'gptq') {
        // SparseGPT's OBS-updated weights, rounded with GPTQ's feedback under SparseGPT's mask.
        const r = await gptqLayer(scratch, N, K, [stats.hessian!], o.quant, o.quant.gptq ?? {}, {
          mask,
          signal: o.signal,
        });
        return r.q;
      }
      return quantizeRtn(scratch, N, K, o.quant);
    });

  let q = await sparsePart(w, true);
  stages.push(o.criterion === 'sparsegpt' ? 'sparsegpt+quant' : `${o.criterion}-mask+quant`);
  const beforeAdapter = await errorOf(q);
  const rank = o.rankRatio > 0 ? rankFor(o.rankRatio, N, K) : 0;
  if (rank === 0) {
    return {
      quantized: q,
      mask,
      adapter: null,
      adapterQuantized: null,
      effective: dequantize(q, scratch),
      alpha,
      errors: { beforeAdapter, afterAdapter: null, afterFinalRequant: null, refits: [], final: beforeAdapter },
      stages,
      timings,
    };
  }
  // The whitened saliency's K×K operand is the same for every fit: computed once. Big layers (randomized route)
  // need only the damped Hessian as a metric; small ones (exact SVD) its Cholesky factor and inverse (O(K³)).
  let whitening: Promise<{ l: Float64Array; li: Float64Array }> | undefined;
  let metric: Float32Array | undefined;
  const randomized = usesRandomizedRoute(N, K, o.svd);
  /** Adapter for E = W − W_C(q), E built in scratch. */
  const fit = (qm: QuantizedMatrix) =>
    timed('adapter fit', async () => {
      dequantizeResidual(qm, w, scratch);
      const whitened = o.saliency === 'whitened';
      return lowRankAdapter(scratch, N, K, {
        saliency: o.saliency,
        rank,
        xNorm: stats.xNorm,
        hessian: stats.hessian,
        dampening: o.whiteningDampening,
        whitening:
          whitened && !randomized
            ? await (whitening ??= whiteningFactor(stats.hessian!, K, o.whiteningDampening))
            : undefined,
        whiteningMetric:
          whitened && randomized ? (metric ??= whiteningMetric(stats.hessian!, K, o.whiteningDampening)) : undefined,
        svd: o.svd,
      });
    });
  let adapter = await fit(q);
  stages.push(`adapter r=${rank} (${o.saliency}, ${adapter.svd} SVD)`);
  const afterAdapter = await stageErrorOf(q, adapter);
  let afterFinalRequant: number | null = null;
  if (o.finalRequantize ?? true) {
    q = await sparsePart(await minusAdapter(adapter, scratch), false);
    stages.push('re-quantize sparse part against the adapter');
    afterFinalRequant = await stageErrorOf(q, adapter);
  }
  const refits: (number | null)[] = [];
  for (let it = 0; it < o.refitIterations; it++) {
    adapter = await fit(q);
    q = await sparsePart(await minusAdapter(adapter, scratch), false);
    refits.push(await stageErrorOf(q, adapter));
  }
  if (o.refitIterations) stages.push(`${o.refitIterations} refit iteration(s)`);
  let adapterQuantized: SlimLayerResult['adapterQuantized'] = null;
  // The adapter the effective weight is built with (what the file stores).
  let stored: Adapter = adapter;
  if (!o.quantizeAdapters && o.adapterStorage === 'float16') {
    adapter = {
      ...adapter,
      a: float16ToFloat32(float32ToFloat16(adapter.a)),
      b: float16ToFloat32(float32ToFloat16(adapter.b)),
    };
    stored = adapter;
    stages.push('adapters stored as float16');
  }
  if (o.quantizeAdapters) {
    // Groups along each adapter GEMM's reduction axis: A multiplies X (K) → canonical Aᵀ [r][K];
    // B multiplies X·A (r) → canonical Bᵀ [N][r].
    const spec: QuantSpec = { bits: o.quant.bits, symmetric: true, groupSize: o.quant.groupSize };
    const aq = quantizeRtn(transpose32(adapter.a, K, rank), rank, K, spec);
    const bq = quantizeRtn(transpose32(adapter.b, rank, N), N, rank, spec);
    adapterQuantized = { a: aq, b: bq };
    stored = { ...adapter, a: transpose32(dequantize(aq), rank, K), b: transpose32(dequantize(bq), N, rank) };
    stages.push('adapters quantized');
  }
  const effective = dequantize(q, scratch);
  await plusAdapter(stored, effective);
  const final = o.error ? await timed('errors', () => o.error!(effective)) : null;
  return {
    quantized: q,
    mask,
    adapter,
    adapterQuantized,
    effective,
    alpha,
    errors: { beforeAdapter, afterAdapter, afterFinalRequant, refits, final },
    stages,
    timings,
  };
}
