// SparseGPT (Frantar & Alistarh 2023; IST-DASLab/sparsegpt `fasterprune`): prune with an Optimal-Brain-Surgeon weight
// update, blocked so that almost all flops are GEMMs. Canonical weights W[N outputs][K inputs]; H = (2/n)·Σ x xᵀ.
// Precision follows the reference where it matters: W, U = chol(H⁻¹)ᵀ and the updates run in fp32 (the reference
// does everything in fp32); the factorisation of H itself runs in float64 (linalg.ts) because it is where fp32 loses
// digits on the ill-conditioned Hessians of LLM layers, and it costs little extra here.
import { matmulSubtract } from './gemm.js';
import { inverseCholeskyUpper } from './linalg.js';
import { keepTopNInGroup, MaskInputError, pruneLowest, validateNM } from './nm.js';

export { sparseGptReference } from './sparsegpt-reference.js';

export interface SparseGptOptions {
  /** Keep n of every m consecutive weights along K (N:M). Give n and m, or `sparsity`. */
  n?: number;
  m?: number;
  /** Unstructured: fraction of weights to prune, chosen per column block by w²/U_jj² (as the reference does). */
  sparsity?: number;
  /** Columns per lazy-update block; a multiple of m. @defaultValue 128 */
  blockSize?: number;
  /** λ in H += λ·mean(diag H)·I. @defaultValue 0.01 */
  dampening?: number;
  signal?: AbortSignal;
}

export interface SparseGptResult {
  /** 1 = kept, 0 = pruned; [N][K]. */
  mask: Uint8Array;
  /** The OBS loss estimate ½·Σ (w − q)²/U_jj² over all pruned weights (the reference's `Losses` sum). */
  error: number;
}

export class SparseGptInputError extends MaskInputError {
  override name = 'SparseGptInputError';
}

export interface ResolvedSparseGptOptions {
  nm: { n: number; m: number } | null;
  sparsity: number;
  blockSize: number;
  dampening: number;
}

/** Validate shapes and options; shared with the reference so both read options identically. */
export function resolveSparseGptOptions(
  w: { length: number },
  rows: number,
  cols: number,
  hessian: Float64Array,
  opts: SparseGptOptions,
): ResolvedSparseGptOptions {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols <= 0)
    throw new SparseGptInputError(`sparseGpt: shape ${rows}×${cols} is not a weight matrix shape`);
  if (w.length !== rows * cols)
    throw new SparseGptInputError(`sparseGpt: expected ${rows}×${cols} weights, got ${w.length}`);
  if (hessian.length !== cols * cols)
    throw new SparseGptInputError(`sparseGpt: Hessian must be ${cols}×${cols}, got ${hessian.length} values`);
  const hasNM = opts.n !== undefined || opts.m !== undefined;
  if (hasNM === (opts.sparsity !== undefined))
    throw new SparseGptInputError('sparseGpt: give either an N:M pattern (n and m) or an unstructured sparsity');
  let nm: ResolvedSparseGptOptions['nm'] = null;
  if (hasNM) {
    if (opts.n === undefined || opts.m === undefined)
      throw new SparseGptInputError('sparseGpt: N:M needs both n and m');
    validateNM(opts.n, opts.m, cols);
    nm = { n: opts.n, m: opts.m };
  } else if (!(opts.sparsity! >= 0 && opts.sparsity! < 1)) {
    throw new SparseGptInputError(`sparseGpt: sparsity must be in [0, 1), got ${opts.sparsity}`);
  }
  const blockSize = opts.blockSize ?? 128;
  if (!Number.isInteger(blockSize) || blockSize <= 0 || (nm && blockSize % nm.m !== 0))
    throw new SparseGptInputError(`sparseGpt: blockSize ${blockSize} must be a positive multiple of M`);
  const dampening = opts.dampening ?? 0.01;
  if (!(dampening >= 0 && dampening < Infinity))
    throw new SparseGptInputError(`sparseGpt: dampening must be finite and ≥ 0, got ${dampening}`);
  for (let i = 0; i < hessian.length; i++)
    if (!Number.isFinite(hessian[i])) throw new SparseGptInputError(`sparseGpt: Hessian entry ${i} is ${hessian[i]}`);
  for (let i = 0; i < w.length; i++)
    if (!Number.isFinite((w as ArrayLike<number>)[i]))
      throw new SparseGptInputError(`sparseGpt: weight ${i} is not finite`);
  return { nm, sparsity: opts.sparsity ?? 0, blockSize, dampening };
}

/**
 * Copy of H with dead inputs (H_kk = 0) set to H_kk = 1 and λ·mean(diag H) added to the diagonal (in that order,
 * as the reference does). Returns the dead columns, whose weights the caller zeroes.
 */
export function dampedHessian(hessian: Float64Array, cols: number, dampening: number) {
  const h = Float64Array.from(hessian);
  const dead: number[] = [];
  let diagSum = 0;
  for (let k = 0; k < cols; k++) {
    if (h[k * cols + k] === 0) {
      h[k * cols + k] = 1;
      dead.push(k);
    }
    diagSum += h[k * cols + k];
  }
  const damp = (dampening * diagSum) / cols;
  for (let k = 0; k < cols; k++) h[k * cols + k] += damp;
  return { h, dead };
}

/**
 * Prune W in place (pruned weights set to 0, kept weights OBS-updated) and return the mask.
 * Cost: O(K³) float64 factorisation (GEMM) + O(N·K²) fp32 lazy updates (GEMM) + O(N·K·blockSize) JS in-block work.
 */
export async function sparseGpt(
  w: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  opts: SparseGptOptions,
): Promise<SparseGptResult> {
  const o = resolveSparseGptOptions(w, rows, cols, hessian, opts);
  opts.signal?.throwIfAborted();
  const N = rows;
  const K = cols;
  const mask = new Uint8Array(N * K);
  if (N === 0) return { mask, error: 0 };
  const { h, dead } = dampedHessian(hessian, K, o.dampening);
  const u = Float32Array.from(await inverseCholeskyUpper(h, K)); // fp32 from here on, like the reference
  opts.signal?.throwIfAborted();

  // Work on Wᵀ [K][N]: the columns W[:, rest] the lazy update touches are then one contiguous tail of rows.
  const wt = new Float32Array(K * N);
  for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) wt[k * N + r] = w[r * K + k];
  for (const k of dead) wt.fill(0, k * N, (k + 1) * N);

  let loss = 0;
  for (let i1 = 0; i1 < K; i1 += o.blockSize) {
    const i2 = Math.min(i1 + o.blockSize, K);
    const count = i2 - i1;
    // Block of W as [N][count] so each output row's in-block sweep runs over contiguous memory.
    const blk = new Float32Array(N * count);
    for (let j = 0; j < count; j++) {
      const src = (i1 + j) * N;
      for (let r = 0; r < N; r++) blk[r * count + j] = wt[src + r];
    }
    const ub = new Float32Array(count * count);
    for (let j = 0; j < count; j++) ub.set(u.subarray((i1 + j) * K + i1, (i1 + j) * K + i2), j * count);
    const keep = new Uint8Array(N * count);
    if (!o.nm) {
      // Unstructured: one threshold over the whole block on w²/U_jj², from the weights as they stand at block start.
      const scores = new Float32Array(N * count);
      for (let r = 0; r < N; r++)
        for (let j = 0; j < count; j++) {
          const v = blk[r * count + j] / ub[j * count + j];
          scores[r * count + j] = v * v;
        }
      pruneLowest(scores, 0, N * count, Math.floor(N * count * o.sparsity), keep);
    }
    const err = new Float32Array(N * count);
    loss += sweepBlock(blk, ub, keep, err, N, count, o.nm);
    for (let j = 0; j < count; j++) {
      const dst = (i1 + j) * N;
      for (let r = 0; r < N; r++) {
        wt[dst + r] = blk[r * count + j];
        mask[r * K + i1 + j] = keep[r * count + j];
      }
    }
    if (i2 < K) {
      // Lazy update W[:, i2:] −= Err·U[i1:i2, i2:], i.e. Wᵀ[i2:, :] −= U[i1:i2, i2:]ᵀ·Errᵀ — one fp32 GEMM.
      const rest = K - i2;
      const uRest = new Float32Array(count * rest);
      for (let j = 0; j < count; j++) uRest.set(u.subarray((i1 + j) * K + i2, (i1 + j + 1) * K), j * rest);
      const updated = await matmulSubtract(wt.subarray(i2 * N), uRest, err, rest, count, N, {
        transA: true,
        transB: true,
      });
      wt.set(updated, i2 * N);
    }
    opts.signal?.throwIfAborted();
  }
  for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) w[r * K + k] = wt[k * N + r];
  return { mask, error: loss / 2 };
}

/**
 * The in-block OBS sweep, row by row (rows are independent inside a block): at each group start choose the N:M mask
 * from the current weights; for every pruned column i, e = w_i/U_ii, w_i = 0, w_j −= e·U_ij for j > i in the block.
 * Kept columns have e = 0 and cost nothing. Returns Σ e².
 */
function sweepBlock(
  blk: Float32Array,
  ub: Float32Array,
  keep: Uint8Array,
  err: Float32Array,
  N: number,
  count: number,
  nm: { n: number; m: number } | null,
): number {
  let loss = 0;
  const groupScores = new Float64Array(nm ? nm.m : 0);
  for (let r = 0; r < N; r++) {
    const rb = r * count;
    for (let i = 0; i < count; i++) {
      if (nm && i % nm.m === 0) {
        for (let j = 0; j < nm.m; j++) {
          const v = blk[rb + i + j] / ub[(i + j) * count + i + j];
          groupScores[j] = v * v;
        }
        keepTopNInGroup(groupScores, 0, nm.m, nm.n, keep, rb + i);
      }
      if (keep[rb + i] === 1) continue;
      const e = blk[rb + i] / ub[i * count + i];
      if (e === 0) continue;
      loss += e * e;
      err[rb + i] = e;
      blk[rb + i] = 0;
      const ui = i * count;
      for (let j = i + 1; j < count; j++) blk[rb + j] -= e * ub[ui + j];
    }
  }
  return loss;
}
