// GPTQ (Frantar et al. 2023; IST-DASLab/gptq `fasterquant`): Optimal-Brain-Surgeon rounding. The SparseGPT loop
// with rounding instead of masking: H = (2/n)·Σ x xᵀ damped as in sparsegpt.ts (dead inputs → H_kk = 1, weights
// zeroed; H += λ·mean(diag H)·I), U = chol(H⁻¹) upper; for each column j in turn q_j = Q(w_j) with its group's scale,
// e = (w_j − q_j)/U_jj, and the columns after j in the block take W[:, j+1:] −= e ⊗ U[j, j+1:]; after a block of
// columns the rest of W takes one GEMM W[:, rest] −= Err·U[block, rest] (blocking is exact: the updates commute).
//
// Groups and scales. A group's scale (and zero point) is RTN's (quantizeRtn, so every RTN rule — signed range,
// clip search — applies here too) on the group's weights *as they stand when its first column is reached*, i.e.
// after the error feedback of every earlier column, as the reference does. With `actOrder` the columns are processed
// by decreasing H_jj (permuted H and W, un-permuted codes at the end) while the groups stay the original contiguous
// K ranges that MatMulNBits / DequantizeLinear store; their scales are then fixed up front from the weights before
// any update — the reference's `static_groups` variant (its other variant, groups in permuted order, needs a
// column index per weight, which neither format has).
//
// Under a mask (SLiM with quant.scheme "gptq"), masked entries are forced to code "zero" (value exactly 0) and their
// whole value is fed back as error, so the kept weights absorb both the pruning and the rounding (SparseGPT's joint
// sparsify-and-quantize with a fixed mask).
//
// Precision follows sparsegpt.ts: W, U and the lazy GEMMs in fp32; each update's arithmetic in JS doubles.
import { matmulSubtractInPlace } from './gemm.js';
import { inverseCholeskyUpper, inverseCholeskyUpperF32, NotPositiveDefiniteError } from './linalg.js';
import { dampedHessian, SparseGptInputError } from './sparsegpt.js';
import { quantizeRtn } from '../quant/rtn.js';
import { resolveBlockSize, type QuantizedMatrix, type QuantSpec } from '../quant/types.js';

export interface GptqOptions {
  /** Bits, group size and symmetry (and any other RTN option): the scale rule of every group. */
  quant: QuantSpec;
  /** Columns per lazy-update block. Without actOrder, rounded to a multiple of the group size. @defaultValue 128 */
  blockSize?: number;
  /** λ in H += λ·mean(diag H)·I. @defaultValue 0.01 */
  dampening?: number;
  /** Process columns by decreasing H_jj (static groups). @defaultValue false */
  actOrder?: boolean;
  /** [N][K], 1 = kept, 0 = forced to zero (with error feedback). */
  mask?: Uint8Array;
  signal?: AbortSignal;
}

export interface GptqResult {
  q: QuantizedMatrix;
  /** OBS loss estimate ½·Σ (w − q)²/U_jj² over all weights (the reference's `Losses` sum). */
  error: number;
  /** Column order used (a permutation of 0..K−1; identity without actOrder). */
  order: Int32Array;
  /** Lazy-update block actually used. */
  blockSize: number;
}

export class GptqInputError extends SparseGptInputError {
  override name = 'GptqInputError';
}

/** Effective lazy-update block: without actOrder a group must not start inside a block it does not fit in. */
export function gptqBlockSize(requested: number, groupSize: number, cols: number, actOrder: boolean): number {
  if (!Number.isInteger(requested) || requested < 1)
    throw new GptqInputError(`gptq: blockSize ${requested} must be a positive integer`);
  if (actOrder || groupSize >= cols) return requested;
  // Groups inside blocks (block a multiple of the group), or blocks inside groups (a group starts at a block start).
  if (groupSize <= requested) return requested - (requested % groupSize);
  return groupSize % requested === 0 ? requested : groupSize;
}

/** Column order by decreasing H_jj; ties keep the lower index. */
export function actOrderPermutation(h: Float64Array, cols: number): Int32Array {
  const idx = Array.from({ length: cols }, (_, i) => i);
  idx.sort((a, b) => h[b * cols + b] - h[a * cols + a] || a - b);
  return Int32Array.from(idx);
}

function checkInputs(w: Float32Array, rows: number, cols: number, hessian: Float64Array, o: GptqOptions) {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols <= 0)
    throw new GptqInputError(`gptq: shape ${rows}×${cols} is not a weight matrix shape`);
  if (w.length !== rows * cols) throw new GptqInputError(`gptq: expected ${rows}×${cols} weights, got ${w.length}`);
  if (hessian.length !== cols * cols)
    throw new GptqInputError(`gptq: Hessian must be ${cols}×${cols}, got ${hessian.length} values`);
  if (o.mask && o.mask.length !== rows * cols)
    throw new GptqInputError(`gptq: mask must be ${rows}×${cols}, got ${o.mask.length}`);
  const damp = o.dampening ?? 0.01;
  if (!(damp >= 0 && damp < Infinity)) throw new GptqInputError(`gptq: dampening must be finite and ≥ 0, got ${damp}`);
  for (let i = 0; i < hessian.length; i++)
    if (hessian[i] - hessian[i] !== 0) throw new GptqInputError(`gptq: Hessian entry ${i} is ${hessian[i]}`);
  for (let i = 0; i < w.length; i++) if (w[i] - w[i] !== 0) throw new GptqInputError(`gptq: weight ${i} is not finite`);
  return damp;
}

/** Rows × cols of a row-major matrix with `ld` columns, copied out. */
function copyRect(a: Float32Array, ld: number, r0: number, r1: number, c0: number, c1: number): Float32Array {
  const w = c1 - c0;
  const out = new Float32Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * ld + c0, r * ld + c1), (r - r0) * w);
  return out;
}

/**
 * Quantizes W [rows=N][cols=K] (canonical layout; not modified) with OBS error feedback. Returns the codes, scales and
 * zero points in the original column order and group layout, as quantizeRtn would lay them out.
 * Cost: O(K³) factorisation + O(N·K²) fp32 lazy updates (GEMM) + O(N·K·blockSize) JS in-block work.
 */
export async function gptq(
  w: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  opts: GptqOptions,
): Promise<GptqResult> {
  const damp = checkInputs(w, rows, cols, hessian, opts);
  const N = rows;
  const K = cols;
  const actOrder = opts.actOrder ?? false;
  const gs = resolveBlockSize(opts.quant, K);
  const B = gptqBlockSize(opts.blockSize ?? 128, gs, K, actOrder);
  const { h, dead } = dampedHessian(hessian, K, damp);
  const order = actOrder ? actOrderPermutation(h, K) : Int32Array.from({ length: K }, (_, i) => i);
  const hp = actOrder ? new Float64Array(K * K) : h;
  if (actOrder) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) hp[i * K + j] = h[order[i] * K + order[j]];
  let u: Float32Array;
  try {
    u = await inverseCholeskyUpperF32(hp, K);
  } catch (e) {
    if (!(e instanceof NotPositiveDefiniteError)) throw e;
    u = Float32Array.from(await inverseCholeskyUpper(hp, K));
  }
  opts.signal?.throwIfAborted();

  // Wᵀ [K][N] in processing order (row p = original column order[p]), so a column is a contiguous row and the rest
  // of the matrix after a block is one contiguous tail; the mask likewise.
  const isDead = new Uint8Array(K);
  for (const k of dead) isDead[k] = 1;
  const wt = new Float32Array(K * N);
  const keepT = opts.mask ? new Uint8Array(K * N) : undefined;
  for (let p = 0; p < K; p++) {
    const c = order[p];
    if (isDead[c]) continue;
    for (let n = 0; n < N; n++) wt[p * N + n] = w[n * K + c];
  }
  if (keepT) for (let p = 0; p < K; p++) for (let n = 0; n < N; n++) keepT[p * N + n] = opts.mask![n * K + order[p]];

  // The result, laid out as quantizeRtn lays it out. Static groups: scales of the masked W before any update.
  const q = quantizeRtn(new Float32Array(N * K), N, K, opts.quant);
  if (actOrder) {
    const start = new Float32Array(N * K);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++)
        start[n * K + k] = isDead[k] || (opts.mask && !opts.mask[n * K + k]) ? 0 : w[n * K + k];
    const s = quantizeRtn(start, N, K, opts.quant);
    q.scales.set(s.scales);
    q.zeroPoints.set(s.zeroPoints);
  }
  const maxq = (1 << opts.quant.bits) - 1;
  const bpr = q.blocksPerRow;
  const errT = new Float32Array(K * N);
  let loss = 0;
  for (let c0 = 0; c0 < K; c0 += B) {
    const c1 = Math.min(c0 + B, K);
    for (let p = c0; p < c1; p++) {
      const col = order[p];
      const g = Math.floor(col / gs);
      if (!actOrder && col % gs === 0) fixGroupScales(q, wt, keepT, N, col, Math.min(col + gs, K), opts.quant);
      const d = u[p * K + p];
      const row = p * N;
      for (let n = 0; n < N; n++) {
        const x = wt[row + n];
        const s = q.scales[n * bpr + g];
        const zp = q.zeroPoints[n * bpr + g];
        let code = zp;
        if (s !== 0 && (!keepT || keepT[row + n])) {
          code = Math.round(x / s) + zp;
          if (code < 0) code = 0;
          else if (code > maxq) code = maxq;
        }
        q.codes[n * K + col] = code;
        const e = (x - (code - zp) * s) / d;
        errT[row + n] = e;
        loss += e * e;
      }
      // In-block feedback: the later columns of this block, one contiguous axpy each.
      for (let j = p + 1; j < c1; j++) {
        const f = u[p * K + j];
        if (f === 0) continue;
        const rj = j * N;
        for (let n = 0; n < N; n++) wt[rj + n] -= errT[row + n] * f;
      }
    }
    if (c1 < K) {
      // W[:, c1:] −= Err[:, c0:c1]·U[c0:c1, c1:], on Wᵀ rows: one fp32 GEMM.
      const uRest = copyRect(u, K, c0, c1, c1, K);
      await matmulSubtractInPlace(wt.subarray(c1 * N), uRest, errT.subarray(c0 * N, c1 * N), K - c1, c1 - c0, N, {
        transA: true,
      });
    }
    opts.signal?.throwIfAborted();
  }
  return { q, error: loss / 2, order, blockSize: B };
}

/**
 * Scales and zero points of the group of original columns [k0, k1) from the weights as they stand now (rows of Wᵀ;
 * without actOrder processing order = original order), masked entries counted as 0: RTN's rule on that slice.
 */
function fixGroupScales(
  q: QuantizedMatrix,
  wt: Float32Array,
  keepT: Uint8Array | undefined,
  N: number,
  k0: number,
  k1: number,
  spec: QuantSpec,
): void {
  const len = k1 - k0;
  const slice = new Float32Array(N * len);
  for (let j = 0; j < len; j++) {
    const r = (k0 + j) * N;
    for (let n = 0; n < N; n++) slice[n * len + j] = !keepT || keepT[r + n] ? wt[r + n] : 0;
  }
  const s = quantizeRtn(slice, N, len, { ...spec, groupSize: len });
  const g = Math.floor(k0 / q.blockSize);
  for (let n = 0; n < N; n++) {
    q.scales[n * q.blocksPerRow + g] = s.scales[n];
    q.zeroPoints[n * q.blocksPerRow + g] = s.zeroPoints[n];
  }
}
