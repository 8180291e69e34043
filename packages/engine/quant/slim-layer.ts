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
import {
  adapterMatrix,
  lowRankAdapter,
  rankFor,
  whiteningFactor,
  type Adapter,
  type Saliency,
} from '../math/lowrank.js';
import type { TruncatedSvdOptions } from '../math/svd.js';
import { dequantize, quantizeRtn, quantizeWithClip } from './rtn.js';
import { float16ToFloat32, float32ToFloat16 } from '../onnx/floats.js';
import { slimQuantAlpha } from './slim-quant.js';
import { QuantError, resolveBlockSize, type QuantizedMatrix, type QuantSpec } from './types.js';

export type Criterion = 'magnitude' | 'wanda' | 'sparsegpt';

export interface SlimLayerOptions {
  /** Keep n of every m along K. */
  n: number;
  m: number;
  criterion: Criterion;
  quant: QuantSpec & { scheme: 'rtn' | 'slim' };
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

function add(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}
function sub(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
  return out;
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
  // Errors need the candidate's effective weight; build it only when someone measures it.
  const errorOf = async (wc: Float32Array, lr?: Float32Array) =>
    o.error ? timed('errors', () => o.error!(lr ? add(wc, lr) : wc)) : null;
  const stageErrorOf = async (wc: Float32Array, lr: Float32Array) => ((o.stageErrors ?? true) ? errorOf(wc, lr) : null);

  // The mask of magnitude/Wanda is chosen once on the dense W and kept through the refits.
  let mask: Uint8Array =
    o.criterion === 'sparsegpt'
      ? new Uint8Array(N * K)
      : nmMask(o.criterion === 'wanda' ? wandaScores(w, N, K, stats.xNorm!) : magnitudeScores(w), N, K, o.n, o.m);
  let alpha: number | undefined;

  const quantize = (target: Float32Array, fitOn: Float32Array): QuantizedMatrix => {
    if (o.quant.scheme === 'slim') {
      alpha = slimQuantAlpha(fitOn, { bits: o.quant.bits }).alpha; // fitted on the dense target, before masking
      return quantizeWithClip(target, N, K, o.quant.bits, alpha, blockSize);
    }
    return quantizeRtn(target, N, K, o.quant);
  };
  /** W_C for a dense target: masked (or SparseGPT-pruned) and quantized. */
  const sparsePart = (target: Float32Array): Promise<QuantizedMatrix> =>
    timed('sparse part', () => sparsePartRaw(target));
  const sparsePartRaw = async (target: Float32Array): Promise<QuantizedMatrix> => {
    o.signal?.throwIfAborted();
    const t = target.slice();
    if (o.criterion === 'sparsegpt' && (o.sparseGptRequant === 'reference' ? target === w : true)) {
      const r = await sparseGpt(t, N, K, stats.hessian!, { n: o.n, m: o.m, ...o.sparseGpt, signal: o.signal });
      mask = r.mask;
    } else {
      for (let i = 0; i < t.length; i++) if (!mask[i]) t[i] = 0;
    }
    return quantize(t, target);
  };

  let q = await sparsePart(w);
  stages.push(o.criterion === 'sparsegpt' ? 'sparsegpt+quant' : `${o.criterion}-mask+quant`);
  let wc = dequantize(q);
  const beforeAdapter = await errorOf(wc);
  const rank = o.rankRatio > 0 ? rankFor(o.rankRatio, N, K) : 0;
  if (rank === 0) {
    return {
      quantized: q,
      mask,
      adapter: null,
      adapterQuantized: null,
      effective: wc,
      alpha,
      errors: { beforeAdapter, afterAdapter: null, afterFinalRequant: null, refits: [], final: beforeAdapter },
      stages,
      timings,
    };
  }
  const fit = (target: Float32Array) => timed('adapter fit', () => lowRankAdapterOf(target));
  // The Cholesky factor of the damped Hessian is the same for every fit: compute it once (O(K³)).
  let whitening: Promise<{ l: Float64Array; li: Float64Array }> | undefined;
  const lowRankAdapterOf = async (target: Float32Array) =>
    lowRankAdapter(sub(w, target), N, K, {
      saliency: o.saliency,
      rank,
      xNorm: stats.xNorm,
      hessian: stats.hessian,
      whitening:
        o.saliency === 'whitened'
          ? await (whitening ??= whiteningFactor(stats.hessian!, K, o.whiteningDampening))
          : undefined,
      svd: o.svd,
    });
  let adapter = await fit(wc);
  let lr = await timed('adapter product', () => adapterMatrix(adapter));
  stages.push(`adapter r=${rank} (${o.saliency}, ${adapter.svd} SVD)`);
  const afterAdapter = await stageErrorOf(wc, lr);
  let afterFinalRequant: number | null = null;
  if (o.finalRequantize ?? true) {
    q = await sparsePart(sub(w, lr));
    wc = dequantize(q);
    stages.push('re-quantize sparse part against the adapter');
    afterFinalRequant = await stageErrorOf(wc, lr);
  }
  const refits: (number | null)[] = [];
  for (let it = 0; it < o.refitIterations; it++) {
    adapter = await fit(wc);
    lr = await timed('adapter product', () => adapterMatrix(adapter));
    q = await sparsePart(sub(w, lr));
    wc = dequantize(q);
    refits.push(await stageErrorOf(wc, lr));
  }
  if (o.refitIterations) stages.push(`${o.refitIterations} refit iteration(s)`);
  let adapterQuantized: SlimLayerResult['adapterQuantized'] = null;
  if (!o.quantizeAdapters && o.adapterStorage === 'float16') {
    adapter = {
      ...adapter,
      a: float16ToFloat32(float32ToFloat16(adapter.a)),
      b: float16ToFloat32(float32ToFloat16(adapter.b)),
    };
    lr = await adapterMatrix(adapter);
    stages.push('adapters stored as float16');
  }
  if (o.quantizeAdapters) {
    // Groups along each adapter GEMM's reduction axis: A multiplies X (K) → canonical Aᵀ [r][K];
    // B multiplies X·A (r) → canonical Bᵀ [N][r].
    const spec: QuantSpec = { bits: o.quant.bits, symmetric: true, groupSize: o.quant.groupSize };
    const aq = quantizeRtn(transpose32(adapter.a, K, rank), rank, K, spec);
    const bq = quantizeRtn(transpose32(adapter.b, rank, N), N, rank, spec);
    adapterQuantized = { a: aq, b: bq };
    lr = await adapterMatrix({
      ...adapter,
      a: transpose32(dequantize(aq), rank, K),
      b: transpose32(dequantize(bq), N, rank),
    });
    stages.push('adapters quantized');
  }
  const effective = add(wc, lr);
  const final = await errorOf(effective);
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
