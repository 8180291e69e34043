// SparseGPT (Frantar & Alistarh 2023; IST-DASLab/sparsegpt `fasterprune`): prune with an Optimal-Brain-Surgeon weight
// update, blocked so that almost all flops are GEMMs. Canonical weights W[N outputs][K inputs]; H = (2/n)·Σ x xᵀ.
// Precision follows the reference: W, U = chol(H⁻¹) and the updates run in fp32 (the reference does everything in
// fp32, on the GPU); the factorisation falls back to float64 when fp32 loses definiteness (ill-conditioned H), where
// the reference would raise. The small diagonal blocks of the factorisation and each OBS update's arithmetic run in
// JS doubles and are rounded once on store.
import { addDiffSquares32, addSquares32, firstNonFinite32, firstNonFinite64 } from './float-passes.js';
import { matmulInto, matmulSubtractInPlace } from './gemm.js';
import {
  FactorScratch,
  inverseCholeskyUpper,
  inverseCholeskyUpperF32Reversed,
  inverseCholeskyUpperWithFactor,
  NotPositiveDefiniteError,
} from './linalg.js';
import { quadraticTraces } from './relerr.js';
import { transposeInto } from './transpose.js';
import { pruneLowest } from './nm.js';
import { chooseGroupNM, sweepGroup, sweepGroupNM4, sweepLeafNM4 } from './sparsegpt-sweep.js';

import {
  checkHessianValues,
  checkWeightValues,
  dampedDiagonal,
  dampedHessian,
  dampedReversedF32,
  hessianFingerprint,
  resolveSparseGptOptions,
  SparseGptFactorCache,
  type ResolvedSparseGptOptions,
  type SparseGptOptions,
} from './sparsegpt-options.js';

// Re-exported so callers keep importing SparseGPT from one module.
export {
  dampedHessian,
  resolveSparseGptOptions,
  SparseGptFactorCache,
  SparseGptInputError,
  SparseGptWorkspace,
  type ResolvedSparseGptOptions,
  type ScratchArrays,
  type SparseGptOptions,
} from './sparsegpt-options.js';
export { sparseGptReference } from './sparsegpt-reference.js';

export interface SparseGptResult {
  /** 1 = kept, 0 = pruned; [N][K]. */
  mask: Uint8Array;
  /** The OBS loss estimate ½·Σ (w − q)²/U_jj² over all pruned weights (the reference's `Losses` sum). */
  error: number;
  /**
   * With `outputError`: num = tr(ΔHΔᵀ) and den = tr(WHWᵀ) for Δ = W − Ŵ and the undamped H, so that
   * ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ = sqrt(num/den) (math/relerr.ts errorRatio; groups add their terms).
   */
  outputError?: { num: number; den: number };
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
  // Values are checked below, inside passes that read them anyway (factorise's copy of H, the weights' norm).
  const o = resolveSparseGptOptions(w, rows, cols, hessian, opts, false);
  opts.signal?.throwIfAborted();
  const N = rows;
  const K = cols;
  const mask = new Uint8Array(opts.mask === false ? 0 : N * K);
  if (N === 0) {
    checkHessianValues(hessian, firstNonFinite64(hessian));
    return { mask, error: 0, ...(opts.outputError ? { outputError: { num: 0, den: 0 } } : {}) };
  }
  // With the denominator given (opts.referenceTrace), V = U⁻¹ is not needed: only the numerator comes from the sweep.
  const given = opts.outputError && Number.isFinite(opts.referenceTrace) ? opts.referenceTrace : undefined;
  const { u, v, dead, damp } = await factorise(
    hessian,
    K,
    o.dampening,
    !!opts.outputError && given === undefined,
    opts.factors,
    opts.workspace?.factorScratch,
  );
  opts.signal?.throwIfAborted();

  // Work on Wᵀ [K][N]: the columns W[:, rest] the lazy update touches are then one contiguous tail of rows.
  const scratch = (name: string, n: number) =>
    opts.workspace ? opts.workspace.get(`sparsegpt.${name}`, n) : new Float32Array(n);
  const wt = opts.transposed ? w : scratch('wt', K * N);
  if (!opts.transposed) transposeInto(w, 0, K, N, K, wt, 0, N);
  // Every weight finite (else SparseGptInputError, before any is changed): ‖W₀‖² over the live rows, which the
  // output error needs anyway (without V, as the finiteness check), is finite exactly when theirs are (fp32 squares
  // cannot overflow a float64 sum).
  const withError = !!opts.outputError;
  const norm2 = withError ? liveSquares(wt, N, K, dead) : 0;
  if (!withError || !Number.isFinite(norm2) || dead.some((k) => firstNonFinite32(wt.subarray(k * N, (k + 1) * N)) >= 0))
    checkWeightValues(firstNonFinite32(w));
  for (const k of dead) wt.fill(0, k * N, (k + 1) * N);
  // For the error: W₀ᵀ (W₀: W with dead columns zeroed), copied or re-read later, and, unless given,
  // tr(W₀·H_d·W₀ᵀ) = ‖W₀·V‖².
  const w0t = withError ? originalRows(wt, N, K, dead, opts, scratch) : undefined;
  // (A small factorisation returns V whether asked or not: a given trace still wins.)
  const dense =
    given !== undefined ? { given } : v && withError ? await denseTerms(wt, v, N, K, norm2, scratch) : undefined;

  // Blocking is exact (OBS updates to later columns commute into GEMMs), so the block sizes are free choices except
  // where they define the result: the unstructured mask is chosen per `blockSize` block, as in the reference.
  // Levels, largest first: the whole matrix, then ~512-column macro blocks (their error reaches the rest of W
  // through one GEMM with k = 512: MLAS is ~2× faster there than at the reference's k = 128), then `blockSize`
  // (unstructured) and/or 128, then ~16-column leaves swept in JS. After each macro block finishes, its error
  // is pushed to the rest of W; inside a macro block, each range first takes its earlier siblings' errors (below).
  // At the start of any range every column in it has received the updates of all earlier columns, so masks
  // chosen there see the same weights as the unblocked algorithm.
  const levels = blockLevels(K, o);
  // Errᵀ: each column's OBS error, read by the GEMMs above it; only the current macro block's rows are ever read
  // (the whole matrix's GEMMs take a finished macro block's), so it holds those: row i − errBase for column i.
  const errT = scratch('errT', (levels.length > 1 ? levels[1] : K) * N);
  const state = {
    loss: 0,
    errBase: 0,
    keepBlock: null as null | { start: number; len: number; keep: Uint8Array },
  };

  // Leaves are swept in place on Wᵀ, a group of columns at a time, all rows at once (rows are independent inside a
  // block): the inner loops run over contiguous rows of Wᵀ, and no leaf is transposed or copied.
  const gw = o.nm ? o.nm.m : UNSTRUCTURED_GROUP;
  const sweep = { e: new Float64Array(gw * N), keep: new Uint8Array(gw * N), u: new Float64Array(gw) };
  const sweepLeaf = (c0: number, c1: number) => {
    if (o.nm && gw === 4 && (c1 - c0) % 4 === 0) {
      // N:4 (the hot case): the whole leaf at once, a SIMD kernel where available.
      state.loss = sweepLeafNM4(wt, u, errT, state.errBase, mask, N, K, c0, c1, o.nm.n, sweep.e, state.loss);
      return;
    }
    for (let g = c0; g < c1; g += gw) {
      const gm = Math.min(gw, c1 - g);
      const kb = state.keepBlock;
      if (o.nm && gm === 4) {
        state.loss += sweepGroupNM4(wt, u, errT, state.errBase, mask, N, K, g, c1, o.nm.n, sweep.e);
        continue;
      }
      if (o.nm) chooseGroupNM(wt, u, N, K, g, gm, o.nm.n, sweep.keep);
      else if (kb)
        for (let t = 0; t < gm; t++) {
          const off = g + t - kb.start;
          for (let r = 0; r < N; r++) sweep.keep[t * N + r] = kb.keep[r * kb.len + off];
        }
      state.loss += sweepGroup(wt, u, errT, state.errBase, mask, N, K, g, gm, c1, sweep);
    }
  };

  const run = async (c0: number, c1: number, level: number): Promise<void> => {
    // An unstructured mask block starts here: at the blockSize level, or the whole matrix when blockSize ≥ K.
    if (!o.nm && c0 % o.blockSize === 0 && (levels[level] === o.blockSize || (level === 0 && o.blockSize >= K)))
      state.keepBlock = unstructuredBlockMask(wt, u, N, K, c0, Math.min(c0 + o.blockSize, K), o.sparsity);
    if (level === 1) state.errBase = c0;
    if (level === levels.length - 1) return sweepLeaf(c0, c1);
    const step = levels[level + 1];
    // Inside a macro block (Errᵀ holds its rows) the updates are left-looking: before each sub-range, one GEMM
    // gives its columns the errors of all the range's earlier sub-ranges, W[:, s0:s1] −= Err[:, c0:s0]·U[c0:s0,
    // s0:s1] (m = sub-range width, k grows). Right-looking, each finished sub-range updated the whole rest of the
    // range instead (m up to 112, k = 16 under the leaves): the same flops and as many calls, but MLAS ran those
    // shapes about half as fast (245 M model, 2:4, loaded 2-core machine: the 6.9k GEMMs with a 16-wide side
    // 7.8 → 15.3 GFLOP/s, all 7.8k update GEMMs 6.3 → 3.8 s), and a weight took one fp32 rounding per earlier
    // sub-range where it now takes one per level. Either way every column has received the updates of all earlier
    // columns when its sub-range starts (masks are chosen there). The whole matrix stays right-looking: Errᵀ holds
    // one macro block, and the macro blocks' GEMMs have k = 512 already.
    const leftLooking = level >= 1;
    for (let s0 = c0; s0 < c1; s0 += step) {
      const s1 = Math.min(s0 + step, c1);
      if (leftLooking && s0 > c0) {
        const uLeft = copyRect(u, K, c0, s0, s0, s1, scratch('uRest', (s0 - c0) * (s1 - s0)));
        await matmulSubtractInPlace(
          wt.subarray(s0 * N, s1 * N),
          uLeft,
          errT.subarray((c0 - state.errBase) * N, (s0 - state.errBase) * N),
          s1 - s0,
          s0 - c0,
          N,
          { transA: true },
        );
      }
      await run(s0, s1, level + 1);
      if (!leftLooking && s1 < c1) {
        // Rest of the parent range: W[:, s1:c1] −= Err[:, s0:s1]·U[s0:s1, s1:c1], i.e. on Wᵀ rows, one fp32 GEMM.
        const uRest = copyRect(u, K, s0, s1, s1, c1, scratch('uRest', (s1 - s0) * (c1 - s1)));
        await matmulSubtractInPlace(
          wt.subarray(s1 * N, c1 * N),
          uRest,
          errT.subarray((s0 - state.errBase) * N, (s1 - state.errBase) * N),
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
  if (!opts.transposed) transposeInto(wt, 0, N, K, N, w, 0, K);
  if (!dense) return { mask, error: state.loss / 2 };
  const outputError = await outputErrorTerms(w0t!, wt, N, K, hessian, dead, damp, state.loss, dense);
  return { mask, error: state.loss / 2, outputError };
}

/**
 * The output error terms without a pass over H. Numerator: the sweep leaves Ŵ = W₀ − E·U (row by row, E the OBS
 * errors e = (w − q)/U_jj, 0 for kept weights), and U·H_d·Uᵀ = I, so tr(Δ₀·H_d·Δ₀ᵀ) = Σe² exactly (up to fp32
 * rounding of U and of the updates); H_d = H + λI on the live columns and Δ₀ = W − Ŵ there, while H's dead rows
 * and columns are zero, so tr(ΔHΔᵀ) = Σe² − λ‖Δ₀‖². Denominator: ‖W₀V‖² − λ‖W₀‖² likewise. When λ‖·‖² is most of
 * the total, the difference would lose the digits the rounding left (cancellation: e.g. an error mostly in H's
 * near-null space, where only the dampening weighs it); there the term is computed as a plain trace through H (one
 * fp32 GEMM, as relativeOutputError does) from W₀ᵀ and Ŵᵀ.
 */
async function outputErrorTerms(
  w0t: OriginalRows,
  wt: Float32Array,
  N: number,
  K: number,
  hessian: Float64Array,
  dead: number[],
  damp: number,
  sumE2: number,
  dense: { vNorm2: number; norm2: number } | { given: number },
): Promise<{ num: number; den: number }> {
  const live = new Uint8Array(K).fill(1);
  for (const k of dead) live[k] = 0;
  let d2 = 0;
  for (let k0 = 0; k0 < K; k0 += w0t.step) {
    const k1 = Math.min(k0 + w0t.step, K);
    const w0 = w0t.read(k0, k1);
    for (let k = k0; k < k1; k++) if (live[k] !== 0) d2 = addDiffSquares32(d2, w0, (k - k0) * N, wt, k * N, N);
  }
  let num = sumE2 - damp * d2;
  let den = 'given' in dense ? dense.given : dense.vNorm2 - damp * dense.norm2;
  // The traces take rows [N][K]; dead columns contribute nothing (H's rows and columns there are zero).
  const rows = (t: Float32Array) => {
    const r = new Float32Array(N * K);
    transposeInto(t, 0, N, K, N, r, 0, K);
    return r;
  };
  if ('vNorm2' in dense && !(den >= dense.vNorm2 * SAFE_FRACTION))
    den = (await quadraticTraces(rows(w0t.read(0, K)), N, K, hessian)).num;
  if (!(num >= sumE2 * SAFE_FRACTION)) {
    const delta = rows(wt);
    const w0 = rows(w0t.read(0, K));
    for (let i = 0; i < delta.length; i++) delta[i] = w0[i] - delta[i];
    num = (await quadraticTraces(delta, N, K, hessian)).num;
  }
  return { num, den };
}

/** Rows [k0, k1) of W₀ᵀ, `step` rows at a time (read(0, K) for all of them, in a fresh array where re-read). */
interface OriginalRows {
  step: number;
  read(k0: number, k1: number): Float32Array;
}

/** Values per re-read of the original weights (1 MB: stays in cache, costs no fresh pages). */
const ORIGINAL_CHUNK = 1 << 18;

/**
 * W₀ᵀ for the output error: a copy of Wᵀ taken now (K×N scratch), or, with `transposed` and `original`, the rows
 * re-read from the caller's untouched source when needed, in small chunks, dead rows zeroed as in Wᵀ.
 */
function originalRows(
  wt: Float32Array,
  N: number,
  K: number,
  dead: number[],
  opts: SparseGptOptions,
  scratch: (name: string, n: number) => Float32Array,
): OriginalRows {
  const read = opts.transposed ? opts.original : undefined;
  if (!read) {
    const copy = scratch('w0t', K * N);
    copy.set(wt);
    return { step: K, read: (k0, k1) => copy.subarray(k0 * N, k1 * N) };
  }
  const isDead = new Uint8Array(K);
  for (const k of dead) isDead[k] = 1;
  const step = Math.max(1, Math.floor(ORIGINAL_CHUNK / Math.max(1, N)));
  return {
    step,
    read: (k0, k1) => {
      const n = (k1 - k0) * N;
      const out = k1 - k0 <= step ? scratch('w0chunk', n) : new Float32Array(n);
      read(k0, k1, out);
      for (let k = k0; k < k1; k++) if (isDead[k]) out.fill(0, (k - k0) * N, (k - k0 + 1) * N);
      return out;
    },
  };
}

/**
 * The identities above are used while the undamped part is at least this fraction of the damped total: their
 * rounding error (~1e-6 of the total) is then amplified at most 16× in the difference.
 */
const SAFE_FRACTION = 1 / 16;

/**
 * ‖W₀‖² from Wᵀ before its dead rows are zeroed: the rows in order, dead ones skipped (the same sum as over W₀ᵀ,
 * whose dead rows add +0 to a sum ≥ 0).
 */
function liveSquares(wt: Float32Array, N: number, K: number, dead: number[]): number {
  let acc = 0;
  let from = 0;
  for (const k of dead) {
    acc = addSquares32(acc, wt, from * N, k * N);
    from = k + 1;
  }
  return addSquares32(acc, wt, from * N, K * N);
}

/** Column panels of V for the blocked product W₀·V (V upper: panel j needs only rows 0..j1 of V). */
const TRMM_PANEL = 256;

/**
 * ‖W₀·V‖² and ‖W₀‖² from W₀ᵀ [K][N]. V upper, so (W₀V)[:, j0:j1] = W₀[:, 0:j1]·V[0:j1, j0:j1]: one fp32 GEMM per
 * panel over a contiguous head of W₀ᵀ's rows, ~N·K²·(1 + 1/p) flops for p panels (a full W·H product is 2·N·K²).
 */
async function denseTerms(
  wt: Float32Array,
  v: Float32Array,
  N: number,
  K: number,
  norm2: number,
  scratch: (name: string, n: number) => Float32Array,
) {
  const y = scratch('y', Math.min(TRMM_PANEL, K) * N);
  let vNorm2 = 0;
  for (let j0 = 0; j0 < K; j0 += TRMM_PANEL) {
    const j1 = Math.min(j0 + TRMM_PANEL, K);
    const out = y.subarray(0, (j1 - j0) * N);
    const panel = copyRect(v, K, 0, j1, j0, j1, scratch('vPanel', j1 * (j1 - j0)));
    await matmulInto(out, panel, wt.subarray(0, j1 * N), j1 - j0, j1, N, { transA: true });
    vNorm2 = addSquares32(vNorm2, out);
  }
  return { vNorm2, norm2 };
}

/**
 * The damped Hessian's dead inputs, λ, U = chol(H_d⁻¹) upper and, for the output error, V = U⁻¹ (H_d = V·Vᵀ), which
 * the same factorisation gives; from `cache` when it holds this Hessian's (same values, same dampening). With `ps`
 * (kept by the caller between calls) the factorisation's arrays, and the cache's previous U and V, are recycled.
 * H's values are checked (finite) by the copy the factorisation starts from; a cached entry's Hessian passed that
 * check when it was factorised (q/k/v: one pass over H instead of four).
 */
async function factorise(
  hessian: Float64Array,
  K: number,
  dampening: number,
  withV: boolean,
  cache: SparseGptFactorCache | undefined,
  ps: FactorScratch | undefined,
): Promise<{ u: Float32Array; v?: Float32Array; dead: number[]; damp: number }> {
  const e = cache?.entry;
  const fingerprint = cache ? hessianFingerprint(hessian, K) : [];
  if (
    e &&
    e.hessian.deref() === hessian &&
    e.dampening === dampening &&
    (e.v || !withV) &&
    e.fingerprint.every((x, i) => Object.is(x, fingerprint[i]))
  )
    return e;
  if (cache) cache.entry = undefined; // not two factorisations alive at once
  if (e && ps) ps.give(e.u, e.v);
  const { diag, dead, damp } = dampedDiagonal(hessian, K, dampening);
  // U = chol(H⁻¹) upper, in fp32 like the reference (torch fp32 cholesky → cholesky_inverse → cholesky); where fp32
  // loses definiteness on an ill-conditioned H, redo it in float64 instead of failing as the reference would.
  let u: Float32Array;
  let v: Float32Array | undefined;
  try {
    const scratch = ps ?? new FactorScratch();
    const rev = dampedReversedF32(hessian, K, diag, scratch.take(new Float32Array(0), K * K, true));
    const r = await inverseCholeskyUpperF32Reversed(rev, K, withV, scratch);
    u = r.u;
    v = r.v ?? undefined;
  } catch (err) {
    if (!(err instanceof NotPositiveDefiniteError)) throw err;
    const { h } = dampedHessian(hessian, K, dampening);
    if (withV) ({ u, v } = await inverseCholeskyUpperWithFactor(h, K, false));
    else u = Float32Array.from(await inverseCholeskyUpper(h, K));
  }
  if (cache) cache.entry = { hessian: new WeakRef(hessian), fingerprint, dampening, u, v, dead, damp };
  return { u, v, dead, damp };
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
/** Columns per group of the unstructured sweep (its mask is known up front; the group only batches updates). */
const UNSTRUCTURED_GROUP = 4;

/** Contiguous copy of rows r0..r1, cols c0..c1 of a row-major matrix with `ld` columns, into `out` (that size). */
function copyRect(
  a: Float32Array,
  ld: number,
  r0: number,
  r1: number,
  c0: number,
  c1: number,
  out: Float32Array,
): Float32Array {
  const w = c1 - c0;
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * ld + c0, r * ld + c1), (r - r0) * w);
  return out;
}
