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
import { nmMaskScored } from '../math/nm-scored.js';
import { sparseGpt } from '../math/sparsegpt.js';
import { matmulAddInPlace } from '../math/gemm.js';
import {
  lowRankAdapter,
  rankFor,
  subtractAdapter,
  usesRandomizedRoute,
  whiteningFactor,
  whiteningMetric,
  type Adapter,
  type LowRankScratch,
  type Saliency,
} from '../math/lowrank.js';
import type { TruncatedSvdOptions } from '../math/svd.js';
import { HessianErrors, RowErrors, type LowRankFactors } from '../math/row-errors.js';
import { dequantize, dequantizeResidual, quantizeMasked, quantizeRtn, quantizeWithClip } from './rtn.js';
import { floatToHalfBits, halfBitsToFloat } from '../onnx/floats.js';
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
   * The rows of X that `error` measures on (the runner's row sample, [rows][K] fp32), when it is
   * ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ on them (math/relerr.ts relativeOutputErrorOnRows). Given, the errors come from shared
   * products instead (math/row-errors.ts: ‖XWᵀ‖ once, X·(W − W_C)ᵀ once per sparse part, each adapter through the
   * thin X·A), equal to `error`'s up to fp32 rounding, and `error` is not called.
   */
  errorRows?: {
    x: Float32Array;
    rows: number;
    /** ‖X·Wᵀ‖² when the calibration pass already reduced it (LayerStats.sample.outputSquares). */
    reference?: number;
    /** At least rows·N floats for the products X·(W − W_C)ᵀ (contents overwritten) instead of a fresh array. */
    buffer?: Float32Array;
  };
  /**
   * The Hessian `error` measures with, when it is tr(ΔHΔᵀ)/tr(WHWᵀ) (math/relerr.ts relativeOutputError): the
   * errors then come from shared products likewise (math/row-errors.ts HessianErrors: one N×K×K product per sparse
   * part instead of one per candidate), and `error` is not called. errorRows wins when both are given.
   */
  errorHessian?: Float64Array;
  /** tr(W·H·Wᵀ) for errorHessian when the calibration pass already reduced it (LayerStats.outputTraces). */
  errorHessianReference?: number;
  /**
   * Also measure the intermediate stages (after the first adapter, after the re-quantization, after each refit),
   * not only before the adapter and at the end. Each measurement is a K×K quadratic form per row (O(N·K²)); with
   * errorRows one rows×K×N product per re-quantized sparse part.
   * @defaultValue true
   */
  stageErrors?: boolean;
  /**
   * Build result.effective (one N×K pass and one N×K×r product). false: left empty (length 0) unless the `error`
   * callback needs it for the final error. @defaultValue true
   */
  effective?: boolean;
  /**
   * A buffer of at least N·K floats to work in (contents overwritten; result.effective is then a view of it), so that
   * a caller running many layers pages in its working memory once. @defaultValue a fresh N×K array
   */
  scratch?: Float32Array;
  /** A buffer of at least N·K bytes for the magnitude/Wanda mask (result.mask is then a view of it). */
  maskScratch?: Uint8Array;
  /**
   * A buffer of at least N·K bytes for the magnitude/Wanda sparse part's codes (result.quantized.codes is then a view
   * of it). Without it one fresh array serves the layer: each re-quantization overwrites the previous sparse part's.
   */
  codesScratch?: Uint8Array;
  /** Working buffers for the randomized adapter fits (math/lowrank.ts LowRankOptions.scratch). */
  adapterScratch?: LowRankScratch;
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
  /** Effective dense weight W_C + (A·B)ᵀ (with quantized adapters when asked), canonical fp32; empty with effective false. */
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
  /** Seconds per step (mask, sparse part, adapter fit, error measurement …), summed over repeats. */
  timings: Record<string, number>;
}

/**
 * float16ToFloat32(float32ToFloat16(x)) (round to nearest even; overflow to ±Inf) without the per-element powers:
 * in the half's normal range the float32 bits are rounded at bit 13 in place (a carry into the exponent is the
 * correct rounding; into 2^16 it is the half's Inf); subnormal halves, NaN and ±0 take the scalar functions.
 */
export function roundToFloat16(x: Float32Array): Float32Array {
  const out = x.slice();
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < u.length; i++) {
    const bits = u[i];
    const e = (bits >>> 23) & 0xff;
    if (e >= 113 && e <= 142) {
      // Round half to even without a branch (the round-up decision is a coin flip per value): adding 0xfff plus the
      // kept part's lowest bit carries out of the 13 dropped bits exactly when they exceed half, or equal it on odd.
      const r = ((bits + 0xfff + ((bits >>> 13) & 1)) & 0xffffe000) >>> 0;
      u[i] = ((r >>> 23) & 0xff) === 143 ? (bits & 0x80000000) | 0x7f800000 : r;
    } else out[i] = halfBitsToFloat(floatToHalfBits(out[i]));
  }
  return out;
}

/**
 * Zeros of the dequantized sparse part and whether every group of m along K keeps at most n non-zeros, read from
 * the codes (an entry (code − zp)·s is 0 exactly when s = 0, or code = zp with s finite), with no N×K dequantized
 * copy: the same answers as counting dequantize(q)'s zeros and math/nm.ts checkNM on it.
 */
export function sparsePartStats(q: QuantizedMatrix, n: number, m: number): { zeros: number; nmOk: boolean } {
  const { rows, cols, blockSize, blocksPerRow, codes, scales, zeroPoints } = q;
  if (blockSize % m === 0) return groupedStats(q, n, m);
  let zeros = 0;
  let nmOk = true;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let inGroup = 0;
    let nonzeros = 0;
    for (let b = 0; b < blocksPerRow; b++) {
      const s = scales[r * blocksPerRow + b];
      const zp = zeroPoints[r * blocksPerRow + b];
      const allZero = s === 0;
      const finite = Number.isFinite(s);
      const k1 = Math.min(cols, (b + 1) * blockSize);
      for (let k = b * blockSize; k < k1; k++) {
        if (allZero || (finite && codes[base + k] === zp)) zeros++;
        else nonzeros++;
        if (++inGroup === m) {
          if (nonzeros > n) nmOk = false;
          inGroup = 0;
          nonzeros = 0;
        }
      }
    }
    if (nonzeros > n) nmOk = false; // a short last group
  }
  return { zeros, nmOk };
}

/** sparsePartStats when the N:M groups lie inside the quantization blocks (blockSize a multiple of m). */
function groupedStats(q: QuantizedMatrix, n: number, m: number): { zeros: number; nmOk: boolean } {
  const { rows, cols, blockSize, blocksPerRow, codes, scales, zeroPoints } = q;
  // N:4 groups a word each (every group starts at a multiple of 4 when K is one): read the codes 4 at a time.
  const words =
    m === 4 && cols % 4 === 0 && codes.byteOffset % 4 === 0 && codes.length >= rows * cols
      ? new Uint32Array(codes.buffer, codes.byteOffset, (rows * cols) >> 2)
      : null;
  let zeros = 0;
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const s = scales[r * blocksPerRow + b];
      const zp = zeroPoints[r * blocksPerRow + b];
      const k0 = base + b * blockSize;
      const k1 = base + Math.min(cols, (b + 1) * blockSize);
      if (s === 0) {
        zeros += k1 - k0;
        continue;
      }
      if (!Number.isFinite(s)) {
        // Every entry is NaN or ±Inf: no zeros, every group full.
        if (Math.min(m, k1 - k0) > worst) worst = Math.min(m, k1 - k0);
        continue;
      }
      if (words) {
        // Four codes per 32-bit word, one N:4 group each: x = codes ^ zp has a non-zero byte per kept code; bit 7 of
        // ((x & 0x7f…) + 0x7f…) | x marks each such byte, and multiplying the four marks by 0x01010101 sums them
        // into the top byte.
        const zw = Math.imul(zp, 0x01010101);
        for (let i = k0 >> 2, e = k1 >> 2; i < e; i++) {
          const x = words[i] ^ zw;
          const nz = Math.imul(((((x & 0x7f7f7f7f) + 0x7f7f7f7f) | x) >>> 7) & 0x01010101, 0x01010101) >>> 24;
          zeros += 4 - nz;
          if (nz > worst) worst = nz;
        }
        continue;
      }
      for (let g = k0; g < k1; g += m) {
        const e = Math.min(g + m, k1);
        let nz = 0;
        for (let i = g; i < e; i++) nz += +(codes[i] !== zp); // no branch: zeros sit at random in the groups
        zeros += e - g - nz;
        if (nz > worst) worst = nz;
      }
    }
  }
  return { zeros, nmOk: worst <= n };
}

/** The shared-product error terms (RowErrors or HessianErrors) behind one interface. */
interface SharedErrors {
  residual(e: Float32Array): Promise<unknown>;
  relative(p: unknown, ad?: LowRankFactors): Promise<number>;
}

function sharesErrors(o: SlimLayerOptions): boolean {
  return !!(o.errorRows || o.errorHessian);
}

async function sharedErrors(w: Float32Array, N: number, K: number, o: SlimLayerOptions): Promise<SharedErrors> {
  if (o.errorRows) {
    const { x, rows, reference, buffer } = o.errorRows;
    return (await RowErrors.of(w, N, K, x, rows, reference, buffer)) as SharedErrors;
  }
  return (await HessianErrors.of(w, N, K, o.errorHessian!, o.errorHessianReference)) as unknown as SharedErrors;
}

/** Transpose a rows×cols row-major matrix. */
export function transpose32(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}

/** The options' requirements on the statistics and the shapes, checked before any work. */
function checkInputs(w: Float32Array, N: number, K: number, stats: SlimLayerStats, o: SlimLayerOptions): void {
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
}

/**
 * One layer's run: its inputs, the working buffer, and what the steps have fixed so far (the mask, α, the rank and
 * the whitening operand); the steps of the header are its methods, and slimLayer calls them in order.
 */
class SlimRun {
  readonly stages: string[] = [];
  /** Seconds per step, summed over repeats. */
  readonly timings: Record<string, number> = {};
  // One N×K working buffer carries every dense intermediate in turn (scores → masked target → E = W − W_C →
  // W − LR → … → the effective weight returned): fresh memory costs ~0.25 s per 64 MB to page in on the workers,
  // more than the arithmetic of a step, so no step allocates its own N×K temporary.
  readonly scratch: Float32Array;
  readonly blockSize: number;
  mask: Uint8Array;
  alpha: number | undefined;
  /** Adapter rank (0: no adapter). */
  readonly rank: number;
  // The whitened saliency's K×K operand is the same for every fit: computed once. Big layers (randomized route)
  // need only the damped Hessian as a metric; small ones (exact SVD) its Cholesky factor and inverse (O(K³)).
  private whitening: Promise<{ l: Float64Array; li: Float64Array }> | undefined;
  private metric: Float32Array | undefined;
  private readonly randomized: boolean;
  /** errorRows: ‖X·Wᵀ‖ (measured at the first error) and the latest sparse part's X·(W − W_C)ᵀ. */
  private shared: Promise<SharedErrors> | undefined;
  private rowProduct: { q: QuantizedMatrix; p: unknown } | undefined;
  /** The masked sparse part's codes (the latest one's: nothing reads an earlier sparse part once it is replaced). */
  private codes: Uint8Array | undefined;
  /** The sparse part whose residual W − W_C scratch holds now (fit reuses it); cleared when scratch is rewritten. */
  private residualIn: QuantizedMatrix | undefined;

  constructor(
    readonly w: Float32Array,
    readonly N: number,
    readonly K: number,
    readonly stats: SlimLayerStats,
    readonly o: SlimLayerOptions,
  ) {
    this.blockSize = resolveBlockSize(o.quant, K);
    if (o.scratch && o.scratch.length < N * K)
      throw new QuantError(`slimLayer: scratch holds ${o.scratch.length} values, the layer needs ${N * K}`);
    this.scratch = o.scratch ? o.scratch.subarray(0, N * K) : new Float32Array(N * K);
    if (o.codesScratch && o.codesScratch.length < N * K)
      throw new QuantError(`slimLayer: codesScratch holds ${o.codesScratch.length} bytes, the layer needs ${N * K}`);
    this.rank = o.rankRatio > 0 ? rankFor(o.rankRatio, N, K) : 0;
    this.randomized = usesRandomizedRoute(N, K, o.svd);
    // The mask of magnitude/Wanda is chosen once on the dense W and kept through the refits.
    const t0 = performance.now();
    if (o.maskScratch && o.maskScratch.length < N * K)
      throw new QuantError(`slimLayer: maskScratch holds ${o.maskScratch.length} bytes, the layer needs ${N * K}`);
    this.mask =
      o.criterion === 'sparsegpt'
        ? new Uint8Array(N * K)
        : nmMaskScored(
            w,
            N,
            K,
            o.n,
            o.m,
            o.criterion === 'wanda' ? stats.xNorm! : undefined,
            o.maskScratch?.subarray(0, N * K),
          );
    if (o.criterion !== 'sparsegpt') this.timings.mask = (performance.now() - t0) / 1000;
  }

  async timed<R>(key: string, fn: () => Promise<R> | R): Promise<R> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.timings[key] = (this.timings[key] ?? 0) + (performance.now() - t0) / 1000;
    }
  }

  /** (A·B)ᵀ products: W − LR into `out` (math/lowrank.ts subtractAdapter: row blocks, no fresh N×K output). */
  minusAdapter(ad: Adapter, out: Float32Array): Promise<Float32Array> {
    if (out === this.scratch) this.residualIn = undefined;
    return this.timed('adapter product', () => subtractAdapter(this.w, ad, out));
  }

  /** (A·B)ᵀ products: `into` += LR. */
  plusAdapter(ad: Adapter, into: Float32Array): Promise<unknown> {
    const { N, K } = this;
    if (into === this.scratch) this.residualIn = undefined;
    return this.timed('adapter product', () =>
      matmulAddInPlace(into, ad.b, ad.a, N, ad.rank, K, { transA: true, transB: true }),
    );
  }

  /** The residual E = W − W_C of `qm` in scratch (kept while scratch is not rewritten). */
  residual(qm: QuantizedMatrix): Float32Array {
    if (this.residualIn !== qm) {
      dequantizeResidual(qm, this.w, this.scratch);
      this.residualIn = qm;
    }
    return this.scratch;
  }

  /**
   * Errors need the candidate's effective weight W_C (+ LR); built (a fresh array) only when someone measures it.
   * With errorRows: from X·(W − W_C)ᵀ (one product per sparse part, its residual left in scratch for fit) and the
   * adapter's thin X·A (math/row-errors.ts).
   */
  async errorOf(qm: QuantizedMatrix, ad?: Pick<Adapter, 'a' | 'b' | 'rank'>): Promise<number | null> {
    if (sharesErrors(this.o)) {
      return this.timed('errors', async () => {
        const errs = await (this.shared ??= sharedErrors(this.w, this.N, this.K, this.o));
        if (this.rowProduct?.q !== qm) this.rowProduct = { q: qm, p: await errs.residual(this.residual(qm)) };
        return errs.relative(this.rowProduct.p, ad);
      });
    }
    if (!this.o.error) return null;
    const dense = dequantize(qm);
    if (ad) await this.plusAdapter(ad as Adapter, dense);
    return this.timed('errors', () => this.o.error!(dense));
  }

  /** The error of an intermediate stage, when stageErrors asks for them. */
  stageErrorOf(qm: QuantizedMatrix, ad: Adapter): Promise<number | null> {
    return (this.o.stageErrors ?? true) ? this.errorOf(qm, ad) : Promise.resolve(null);
  }

  /**
   * W_C for a dense target: masked and quantized in one pass (magnitude/Wanda), or SparseGPT-pruned in `scratch`
   * and quantized. The target may be scratch itself; its contents are then consumed. `first`: the call on W itself.
   */
  sparsePart(target: Float32Array, first: boolean): Promise<QuantizedMatrix> {
    return this.timed('sparse part', async () => {
      const { o, N, K, scratch, stats } = this;
      o.signal?.throwIfAborted();
      if (target === scratch || o.criterion === 'sparsegpt') this.residualIn = undefined;
      // SLiM-Quant's α is fitted on the dense target, before masking.
      const a = o.quant.scheme === 'slim' ? slimQuantAlpha(target, { bits: o.quant.bits }).alpha : undefined;
      if (!(o.criterion === 'sparsegpt' && (o.sparseGptRequant === 'reference' ? first : true))) {
        if (o.quant.scheme === 'gptq') {
          // The dense target under the fixed mask: pruned entries are fed back as error with the rounding error.
          return (await gptqLayer(target, N, K, [stats.hessian!], o.quant, o.quant.gptq ?? {}, this.gptqRun())).q;
        }
        if (a !== undefined) this.alpha = a;
        // No masked copy; the residual W − W_C (what the errors and the adapter fit read next) in the same sweep.
        const q = quantizeMasked(target, this.mask, N, K, o.quant.bits, this.blockSize, a, o.quant.clip, {
          residual: { w: this.w, out: scratch },
          codes: (this.codes ??= o.codesScratch?.subarray(0, N * K) ?? new Uint8Array(N * K)),
        });
        this.residualIn = q;
        return q;
      }
      if (target !== scratch) scratch.set(target);
      const r = await sparseGpt(scratch, N, K, stats.hessian!, { n: o.n, m: o.m, ...o.sparseGpt, signal: o.signal });
      this.mask = r.mask;
      if (a !== undefined) {
        this.alpha = a;
        return quantizeWithClip(scratch, N, K, o.quant.bits, a, this.blockSize);
      }
      if (o.quant.scheme === 'gptq') {
        // SparseGPT's OBS-updated weights, rounded with GPTQ's feedback under SparseGPT's mask.
        return (await gptqLayer(scratch, N, K, [stats.hessian!], o.quant, o.quant.gptq ?? {}, this.gptqRun())).q;
      }
      return quantizeRtn(scratch, N, K, o.quant);
    });
  }

  private gptqRun() {
    return { mask: this.mask, signal: this.o.signal };
  }

  /** Adapter for E = W − W_C(q), E built in scratch. */
  fit(qm: QuantizedMatrix): Promise<Adapter> {
    return this.timed('adapter fit', async () => {
      const { o, N, K, stats } = this;
      const scratch = this.residual(qm);
      const whitened = o.saliency === 'whitened';
      const { randomized } = this;
      return lowRankAdapter(scratch, N, K, {
        saliency: o.saliency,
        rank: this.rank,
        xNorm: stats.xNorm,
        hessian: stats.hessian,
        dampening: o.whiteningDampening,
        whitening:
          whitened && !randomized
            ? await (this.whitening ??= whiteningFactor(stats.hessian!, K, o.whiteningDampening))
            : undefined,
        whiteningMetric:
          whitened && randomized
            ? (this.metric ??= whiteningMetric(stats.hessian!, K, o.whiteningDampening))
            : undefined,
        svd: o.svd,
        scratch: o.adapterScratch,
      });
    });
  }
}

/** Steps 3–5: the first adapter, the re-quantization against it, and the refits. */
async function fitAdapter(run: SlimRun, first: QuantizedMatrix) {
  const { o, scratch } = run;
  let q = first;
  let adapter = await run.fit(q);
  run.stages.push(`adapter r=${run.rank} (${o.saliency}, ${adapter.svd} SVD)`);
  const afterAdapter = await run.stageErrorOf(q, adapter);
  let afterFinalRequant: number | null = null;
  if (o.finalRequantize ?? true) {
    q = await run.sparsePart(await run.minusAdapter(adapter, scratch), false);
    run.stages.push('re-quantize sparse part against the adapter');
    afterFinalRequant = await run.stageErrorOf(q, adapter);
  }
  const refits: (number | null)[] = [];
  for (let it = 0; it < o.refitIterations; it++) {
    adapter = await run.fit(q);
    q = await run.sparsePart(await run.minusAdapter(adapter, scratch), false);
    refits.push(await run.stageErrorOf(q, adapter));
  }
  if (o.refitIterations) run.stages.push(`${o.refitIterations} refit iteration(s)`);
  return { q, adapter, afterAdapter, afterFinalRequant, refits };
}

/**
 * Step 6 and storage: the adapter as the file stores it (float16-rounded, or SLiM-LoRA^Q quantized). Returns the
 * adapter reported, its quantized form, and `stored`, the one the effective weight is built with.
 */
function storeAdapter(run: SlimRun, fitted: Adapter) {
  const { o, N, K, rank } = run;
  if (!o.quantizeAdapters && o.adapterStorage === 'float16') {
    const adapter = { ...fitted, a: roundToFloat16(fitted.a), b: roundToFloat16(fitted.b) };
    run.stages.push('adapters stored as float16');
    return { adapter, adapterQuantized: null, stored: adapter };
  }
  if (!o.quantizeAdapters) return { adapter: fitted, adapterQuantized: null, stored: fitted };
  // Groups along each adapter GEMM's reduction axis: A multiplies X (K) → canonical Aᵀ [r][K];
  // B multiplies X·A (r) → canonical Bᵀ [N][r].
  const spec: QuantSpec = { bits: o.quant.bits, symmetric: true, groupSize: o.quant.groupSize };
  const aq = quantizeRtn(transpose32(fitted.a, K, rank), rank, K, spec);
  const bq = quantizeRtn(transpose32(fitted.b, rank, N), N, rank, spec);
  const stored = { ...fitted, a: transpose32(dequantize(aq), rank, K), b: transpose32(dequantize(bq), N, rank) };
  run.stages.push('adapters quantized');
  return { adapter: fitted, adapterQuantized: { a: aq, b: bq }, stored };
}

export async function slimLayer(
  w: Float32Array,
  N: number,
  K: number,
  stats: SlimLayerStats,
  o: SlimLayerOptions,
): Promise<SlimLayerResult> {
  checkInputs(w, N, K, stats, o);
  const run = new SlimRun(w, N, K, stats, o);
  const { stages, timings, scratch } = run;
  const first = await run.sparsePart(w, true);
  stages.push(o.criterion === 'sparsegpt' ? 'sparsegpt+quant' : `${o.criterion}-mask+quant`);
  const beforeAdapter = await run.errorOf(first);
  if (run.rank === 0) {
    return {
      quantized: first,
      mask: run.mask,
      adapter: null,
      adapterQuantized: null,
      effective: o.effective === false ? new Float32Array(0) : dequantize(first, scratch),
      alpha: run.alpha,
      errors: { beforeAdapter, afterAdapter: null, afterFinalRequant: null, refits: [], final: beforeAdapter },
      stages,
      timings,
    };
  }
  const { q, adapter: fitted, afterAdapter, afterFinalRequant, refits } = await fitAdapter(run, first);
  const { adapter, adapterQuantized, stored } = storeAdapter(run, fitted);
  // Shared products: measured before scratch turns into the effective weight (it may hold q's residual).
  const shared = sharesErrors(o);
  const finalFromRows = shared ? await run.errorOf(q, stored) : null;
  const callback = !shared && o.error;
  let effective: Float32Array = new Float32Array(0);
  if (o.effective !== false || callback) {
    effective = dequantize(q, scratch);
    await run.plusAdapter(stored, effective);
  }
  const final = shared ? finalFromRows : callback ? await run.timed('errors', () => callback(effective)) : null;
  return {
    quantized: q,
    mask: run.mask,
    adapter,
    adapterQuantized,
    effective,
    alpha: run.alpha,
    errors: { beforeAdapter, afterAdapter, afterFinalRequant, refits, final },
    stages,
    timings,
  };
}
