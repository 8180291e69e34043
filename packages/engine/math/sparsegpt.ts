// SparseGPT (Frantar & Alistarh 2023; IST-DASLab/sparsegpt `fasterprune`): prune with an Optimal-Brain-Surgeon weight
// update, blocked so that almost all flops are GEMMs. Canonical weights W[N outputs][K inputs]; H = (2/n)·Σ x xᵀ.
// Precision follows the reference: W, U = chol(H⁻¹) and the updates run in fp32 (the reference does everything in
// fp32, on the GPU); the factorisation falls back to float64 when fp32 loses definiteness (ill-conditioned H), where
// the reference would raise. The small diagonal blocks of the factorisation and each OBS update's arithmetic run in
// JS doubles and are rounded once on store.
import { matmulSubtractInPlace } from './gemm.js';
import { inverseCholeskyUpper, inverseCholeskyUpperF32, NotPositiveDefiniteError } from './linalg.js';
import { transposeInto } from './transpose.js';
import { pruneLowest } from './nm.js';

import {
  dampedHessian,
  resolveSparseGptOptions,
  type ResolvedSparseGptOptions,
  type SparseGptOptions,
} from './sparsegpt-options.js';

// Re-exported so callers keep importing SparseGPT from one module.
export {
  dampedHessian,
  resolveSparseGptOptions,
  SparseGptInputError,
  type ResolvedSparseGptOptions,
  type SparseGptOptions,
} from './sparsegpt-options.js';
export { sparseGptReference } from './sparsegpt-reference.js';

export interface SparseGptResult {
  /** 1 = kept, 0 = pruned; [N][K]. */
  mask: Uint8Array;
  /** The OBS loss estimate ½·Σ (w − q)²/U_jj² over all pruned weights (the reference's `Losses` sum). */
  error: number;
}

/**
 * Prune W in place (pruned weights set to 0, kept weights OBS-updated) and return the mask.
 * Cost: O(K³) float64 factorisation (GEMM) + O(N·K²) fp32 lazy updates (GEMM) + O(N·K·32) JS in-block work.
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
  // U = chol(H⁻¹) upper, in fp32 like the reference (torch fp32 cholesky → cholesky_inverse → cholesky); where fp32
  // loses definiteness on an ill-conditioned H, redo it in float64 instead of failing as the reference would.
  let u: Float32Array;
  try {
    u = await inverseCholeskyUpperF32(h, K);
  } catch (e) {
    if (!(e instanceof NotPositiveDefiniteError)) throw e;
    u = Float32Array.from(await inverseCholeskyUpper(h, K));
  }
  opts.signal?.throwIfAborted();

  // Work on Wᵀ [K][N]: the columns W[:, rest] the lazy update touches are then one contiguous tail of rows.
  const wt = new Float32Array(K * N);
  transposeInto(w, 0, K, N, K, wt, 0, N);
  for (const k of dead) wt.fill(0, k * N, (k + 1) * N);

  // Blocking is exact (OBS updates to later columns commute into GEMMs), so the block sizes are free choices except
  // where they define the result: the unstructured mask is chosen per `blockSize` block, as in the reference.
  // Levels, largest first: the whole matrix, then ~512-column macro blocks (their error reaches the rest of W
  // through one GEMM with k = 512: MLAS is ~2× faster there than at the reference's k = 128), then `blockSize`
  // (unstructured) and/or 128, then ~32-column leaves swept row by row in JS. After each range finishes, its error
  // is pushed to the rest of its parent range. At the start of any range every column in it has received the
  // updates of all earlier columns, so masks chosen there see the same weights as the unblocked algorithm.
  const levels = blockLevels(K, o);
  const errT = new Float32Array(K * N); // Errᵀ [K][N]: each column's OBS error, read by the GEMMs above it
  const state = { loss: 0, keepBlock: null as null | { start: number; len: number; keep: Uint8Array } };

  const sweepLeaf = (c0: number, c1: number) => {
    const c = c1 - c0;
    // Leaf as [N][c] so each output row's sweep runs over contiguous memory.
    const blk = new Float32Array(N * c);
    transposeInto(wt, c0 * N, N, c, N, blk, 0, c);
    const ub = copyRect(u, K, c0, c1, c0, c1);
    const keep = new Uint8Array(N * c);
    const kb = state.keepBlock;
    if (kb)
      for (let r = 0; r < N; r++) for (let j = 0; j < c; j++) keep[r * c + j] = kb.keep[r * kb.len + c0 - kb.start + j];
    const err = new Float32Array(N * c);
    state.loss += sweepBlock(blk, ub, keep, err, N, c, o.nm);
    transposeInto(blk, 0, c, N, c, wt, c0 * N, N);
    transposeInto(err, 0, c, N, c, errT, c0 * N, N);
    // Short per-row copies as plain loops: a subarray per row would allocate N objects per leaf.
    for (let r = 0; r < N; r++) for (let j = 0; j < c; j++) mask[r * K + c0 + j] = keep[r * c + j];
  };

  const run = async (c0: number, c1: number, level: number): Promise<void> => {
    // An unstructured mask block starts here: at the blockSize level, or the whole matrix when blockSize ≥ K.
    if (!o.nm && c0 % o.blockSize === 0 && (levels[level] === o.blockSize || (level === 0 && o.blockSize >= K)))
      state.keepBlock = unstructuredBlockMask(wt, u, N, K, c0, Math.min(c0 + o.blockSize, K), o.sparsity);
    if (level === levels.length - 1) return sweepLeaf(c0, c1);
    const step = levels[level + 1];
    for (let s0 = c0; s0 < c1; s0 += step) {
      const s1 = Math.min(s0 + step, c1);
      await run(s0, s1, level + 1);
      if (s1 < c1) {
        // Rest of the parent range: W[:, s1:c1] −= Err[:, s0:s1]·U[s0:s1, s1:c1], i.e. on Wᵀ rows, one fp32 GEMM.
        const uRest = copyRect(u, K, s0, s1, s1, c1);
        await matmulSubtractInPlace(
          wt.subarray(s1 * N, c1 * N),
          uRest,
          errT.subarray(s0 * N, s1 * N),
          c1 - s1,
          s1 - s0,
          N,
          {
            transA: true,
          },
        );
      }
      if (level === 0) opts.signal?.throwIfAborted();
    }
  };
  await run(0, K, 0);
  transposeInto(wt, 0, N, K, N, w, 0, K);
  return { mask, error: state.loss / 2 };
}

/** Column counts per blocking level, largest first: [K, macro, (blockSize), 128, leaf], multiples of M for N:M. */
function blockLevels(K: number, o: ResolvedSparseGptOptions): number[] {
  const unit = o.nm ? o.nm.m : 1;
  const round = (target: number) => unit * Math.max(1, Math.round(target / unit));
  const sizes = o.nm
    ? [round(MACRO_BLOCK), round(128), round(LEAF_BLOCK)]
    : [o.blockSize * Math.max(1, Math.round(MACRO_BLOCK / o.blockSize)), o.blockSize, 128, LEAF_BLOCK];
  const levels = [K];
  // Keep strictly decreasing sizes; for unstructured, levels above blockSize stay multiples of it (so mask blocks
  // never straddle a range) and blockSize itself is a level unless it is ≥ K (then the whole matrix is one block).
  for (const size of sizes) {
    const last = levels[levels.length - 1];
    if (size >= last) continue;
    if (!o.nm && size > o.blockSize && size % o.blockSize !== 0) continue;
    levels.push(size);
  }
  return levels;
}

/**
 * Unstructured mask of one block [c0, c1): one threshold over the whole block on w²/U_jj², from the weights as
 * they stand at block start. Exactly floor(N·count·p) are pruned (ties: later entries first); the reference's
 * `tmp <= sorted[⌊numel·p⌋]` prunes one more plus any ties, which overshoots the requested sparsity.
 */
function unstructuredBlockMask(
  wt: Float32Array,
  u: Float32Array,
  N: number,
  K: number,
  c0: number,
  c1: number,
  p: number,
) {
  const len = c1 - c0;
  const scores = new Float32Array(N * len);
  transposeInto(wt, c0 * N, N, len, N, scores, 0, len);
  for (let r = 0; r < N; r++)
    for (let j = 0; j < len; j++) {
      const v = scores[r * len + j] / u[(c0 + j) * K + c0 + j];
      scores[r * len + j] = v * v;
    }
  const keep = new Uint8Array(N * len);
  pruneLowest(scores, 0, N * len, Math.floor(N * len * p), keep);
  return { start: c0, len, keep };
}

/** Target columns per macro block and per JS-swept leaf (rounded to multiples of M). */
const MACRO_BLOCK = 512;
const LEAF_BLOCK = 16;

/** Contiguous copy of rows r0..r1, cols c0..c1 of a row-major matrix with `ld` columns. */
function copyRect(a: Float32Array, ld: number, r0: number, r1: number, c0: number, c1: number): Float32Array {
  const w = c1 - c0;
  const out = new Float32Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * ld + c0, r * ld + c1), (r - r0) * w);
  return out;
}

/**
 * The in-block OBS sweep over a sub-block [N][c], row by row (rows are independent inside a block): for every pruned
 * column i, e = w_i/U_ii, w_i = 0, w_j −= e·U_ij for j > i in the sub-block. Kept columns have e = 0 and cost
 * nothing. With N:M, each group's mask is chosen when the sweep reaches it, from the weights as updated so far
 * (keep the n largest w²/U_jj², ties to the lower index). Returns Σ e². Weights and U are fp32 as in the reference;
 * the arithmetic of one update runs in double (JS numbers) and is rounded once on store.
 */
function sweepBlock(
  blk: Float32Array,
  ub: Float32Array,
  keep: Uint8Array,
  err: Float32Array,
  N: number,
  c: number,
  nm: { n: number; m: number } | null,
): number {
  const diag = new Float64Array(c);
  const invDiag = new Float64Array(c); // scores as (w·(1/U_jj))²: a multiply in the hot loop (ranking as w²/U_jj² up to one rounding)
  for (let j = 0; j < c; j++) {
    diag[j] = ub[j * c + j];
    invDiag[j] = 1 / diag[j];
  }
  const m = nm ? nm.m : c;
  const n = nm ? nm.n : 0;
  const sc = new Float64Array(m);
  let loss = 0;
  for (let r = 0; r < N; r++) {
    const rb = r * c;
    for (let g = 0; g < c; g += m) {
      if (m === 4 && nm) {
        // 2:4 and friends with the group in locals (the common case, and the hot loop).
        let v = blk[rb + g] * invDiag[g];
        const a = v * v;
        v = blk[rb + g + 1] * invDiag[g + 1];
        const b = v * v;
        v = blk[rb + g + 2] * invDiag[g + 2];
        const d2 = v * v;
        v = blk[rb + g + 3] * invDiag[g + 3];
        const e3 = v * v;
        keep[rb + g] = (b > a ? 1 : 0) + (d2 > a ? 1 : 0) + (e3 > a ? 1 : 0) < n ? 1 : 0;
        keep[rb + g + 1] = (a >= b ? 1 : 0) + (d2 > b ? 1 : 0) + (e3 > b ? 1 : 0) < n ? 1 : 0;
        keep[rb + g + 2] = (a >= d2 ? 1 : 0) + (b >= d2 ? 1 : 0) + (e3 > d2 ? 1 : 0) < n ? 1 : 0;
        keep[rb + g + 3] = (a >= e3 ? 1 : 0) + (b >= e3 ? 1 : 0) + (d2 >= e3 ? 1 : 0) < n ? 1 : 0;
      } else if (nm) {
        // Scores are finite and ≥ 0 here (inputs validated), so plain comparisons rank them.
        for (let j = 0; j < m; j++) {
          const v = blk[rb + g + j] * invDiag[g + j];
          sc[j] = v * v;
        }
        for (let j = 0; j < m; j++) {
          const sj = sc[j];
          let better = 0;
          for (let i = 0; i < m; i++) {
            const si = sc[i];
            if (si > sj || (si === sj && i < j)) better++;
          }
          keep[rb + g + j] = better < n ? 1 : 0;
        }
      }
      const gEnd = Math.min(g + m, c);
      for (let i = g; i < gEnd; i++) {
        if (keep[rb + i] === 1) continue;
        const e = blk[rb + i] / diag[i];
        if (e === 0) continue;
        loss += e * e;
        err[rb + i] = e;
        blk[rb + i] = 0;
        const ui = i * c;
        for (let j = i + 1; j < c; j++) blk[rb + j] -= e * ub[ui + j];
      }
    }
  }
  return loss;
}
