// SparseGPT's options, their validation and the damped Hessian: shared by the blocked kernel (sparsegpt.ts), its
// float64 oracle (sparsegpt-reference.ts) and GPTQ, so all read options identically. A file of its own so that
// the oracle does not import the kernel it checks (which re-exports the oracle: an import circle).
import { firstNonFinite32, firstNonFinite64, firstNonFiniteAny } from './float-passes.js';
import { FactorScratch } from './linalg.js';
import { MaskInputError, validateNM } from './nm.js';

export interface SparseGptOptions {
  /** Keep n of every m consecutive weights along K (N:M). Give n and m, or `sparsity`. */
  n?: number;
  m?: number;
  /** Unstructured: fraction of weights to prune, chosen per column block by w²/U_jj² (as the reference does). */
  sparsity?: number;
  /** Columns per lazy-update block; a multiple of m. @defaultValue 128 (rounded to a multiple of m) */
  blockSize?: number;
  /** λ in H += λ·mean(diag H)·I. @defaultValue 0.01 */
  dampening?: number;
  /**
   * Also return the layer's output error terms tr(ΔHΔᵀ) and tr(WHWᵀ) (SparseGptResult.outputError), from the sweep's
   * own quantities instead of a separate pass over H. @defaultValue false
   */
  outputError?: boolean;
  /**
   * With `outputError`: the denominator tr(W·H·Wᵀ) for the weights as given and the undamped H, computed by the
   * caller (e.g. the calibration pass's LayerStats.outputTraces); returned as `outputError.den`, and V = U⁻¹ and the
   * ~N·K² flops of ‖W·V‖² are skipped. @defaultValue computed from the factorisation
   */
  referenceTrace?: number;
  /**
   * `w` holds Wᵀ [cols][rows] — a MatMul weight as ONNX stores it — and is edited in place in that layout, saving
   * the transposes in and out (the mask stays [rows][cols]). @defaultValue false
   */
  transposed?: boolean;
  /**
   * With `transposed` and `outputError`: writes rows [k0, k1) of Wᵀ as it was given (the caller's untouched source,
   * e.g. the model's stored weight) into `out` ((k1 − k0)·rows values). The output error then re-reads them in small
   * chunks instead of keeping a K×N copy. @defaultValue a copy is kept
   */
  original?: (k0: number, k1: number, out: Float32Array) => void;
  /** Return the mask; false returns an empty one and skips writing it. @defaultValue true */
  mask?: boolean;
  /**
   * Scratch arrays kept between calls (one per job, e.g. a SparseGptWorkspace): saves the page faults of fresh large
   * arrays. Names used start with `sparsegpt.`. @defaultValue fresh arrays per call
   */
  workspace?: ScratchArrays;
  /** Reuse the previous call's factorisation when the Hessian and dampening are the same. @defaultValue none */
  factors?: SparseGptFactorCache;
  signal?: AbortSignal;
}

/** Named Float32Array scratch: `get` returns a view of `length` elements whose contents are unspecified. */
export interface ScratchArrays {
  get(name: string, length: number): Float32Array;
  /**
   * Arrays of the K³ factorisation, kept between calls; the factor cache's previous U and V are handed back to it
   * when they are replaced (calls sharing a workspace and a cache run one at a time). @defaultValue fresh per call
   */
  readonly factorScratch?: FactorScratch;
}

/**
 * Scratch arrays reused by successive sparseGpt calls, grown to the largest layer seen: on this machine a fresh
 * 128 MB Float32Array costs ~0.4 s of page faults and zeroing, as much as the layer's sweep. Drop it after the job.
 */
export class SparseGptWorkspace implements ScratchArrays {
  private readonly f32s = new Map<string, Float32Array>();
  readonly factorScratch = new FactorScratch();

  /** A view of `length` elements of the array named `name`; contents are whatever the last user left. */
  get(name: string, length: number): Float32Array {
    let a = this.f32s.get(name);
    if (!a || a.length < length) {
      a = new Float32Array(length);
      this.f32s.set(name, a);
    }
    return a.subarray(0, length);
  }
}

/**
 * The last factorisation sparseGpt made (U, V, dead inputs, λ), reused by the next call on the same Hessian with
 * the same dampening: q, k and v (or gate and up) read one activation, so one K³ factorisation serves them all.
 * A Hessian is recognised by identity and a fingerprint of its values (trace and 16 entries), so one rewritten in
 * place is factorised again. Holds one U and V (2·K² fp32) between calls; dropped before the next factorisation.
 */
export class SparseGptFactorCache {
  /** @internal */
  entry?: {
    /** Weak: the cache must not keep a released Hessian alive. */
    hessian: WeakRef<Float64Array>;
    fingerprint: number[];
    dampening: number;
    u: Float32Array;
    v?: Float32Array;
    dead: number[];
    damp: number;
  };
}

/** Trace and 16 evenly spread entries of a K×K matrix. */
export function hessianFingerprint(h: Float64Array, K: number): number[] {
  let trace = 0;
  for (let k = 0; k < K; k++) trace += h[k * K + k];
  const f = [trace];
  for (let i = 0; i < 16; i++) f.push(h[Math.floor((i * h.length) / 16)]);
  return f;
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

/**
 * Validate shapes and options; shared with the reference so both read options identically. With `values` (the
 * default) also every weight and Hessian entry (finite); sparseGpt passes false and checks them inside passes that
 * read those arrays anyway (dampedReversedF32, the weights' norm), with the same errors.
 */
export function resolveSparseGptOptions(
  w: { length: number },
  rows: number,
  cols: number,
  hessian: Float64Array,
  opts: SparseGptOptions,
  values = true,
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
  // Default 128 as in the reference, rounded to a multiple of M (e.g. 129 for 3:... patterns) so groups never straddle.
  const blockSize = opts.blockSize ?? (nm ? nm.m * Math.max(1, Math.round(128 / nm.m)) : 128);
  if (!Number.isInteger(blockSize) || blockSize <= 0 || (nm && blockSize % nm.m !== 0))
    throw new SparseGptInputError(`sparseGpt: blockSize ${blockSize} must be a positive multiple of M`);
  const dampening = opts.dampening ?? 0.01;
  if (!(dampening >= 0 && dampening < Infinity))
    throw new SparseGptInputError(`sparseGpt: dampening must be finite and ≥ 0, got ${dampening}`);
  if (values) {
    checkHessianValues(hessian, firstNonFinite64(hessian));
    checkWeightValues(w instanceof Float32Array ? firstNonFinite32(w) : firstNonFiniteAny(w as ArrayLike<number>));
  }
  return { nm, sparsity: opts.sparsity ?? 0, blockSize, dampening };
}

/** Throws SparseGptInputError naming Hessian entry `bad` (the first NaN/±Infinity, or −1 for none). */
export function checkHessianValues(hessian: Float64Array, bad: number): void {
  if (bad >= 0) throw new SparseGptInputError(`sparseGpt: Hessian entry ${bad} is ${hessian[bad]}`);
}

/** Throws SparseGptInputError naming weight `bad` (the first NaN/±Infinity, or −1 for none). */
export function checkWeightValues(bad: number): void {
  if (bad >= 0) throw new SparseGptInputError(`sparseGpt: weight ${bad} is not finite`);
}

/**
 * The damping of H: its dead inputs (H_kk = 0), λ·mean(diag H) over the diagonal with those set to 1 (as the
 * reference does), and the damped diagonal (H_kk, or 1 where dead, + λ·mean), without copying H.
 */
export function dampedDiagonal(hessian: Float64Array, cols: number, dampening: number) {
  const diag = new Float64Array(cols);
  const dead: number[] = [];
  let diagSum = 0;
  for (let k = 0; k < cols; k++) {
    diag[k] = hessian[k * cols + k];
    if (diag[k] === 0) {
      diag[k] = 1;
      dead.push(k);
    }
    diagSum += diag[k];
  }
  const damp = (dampening * diagSum) / cols;
  for (let k = 0; k < cols; k++) diag[k] += damp;
  return { diag, dead, damp };
}

/**
 * Copy of H with dead inputs (H_kk = 0) set to H_kk = 1 and λ·mean(diag H) added to the diagonal (in that order,
 * as the reference does). Returns the dead columns, whose weights the caller zeroes, and the λ·mean(diag H) added.
 */
export function dampedHessian(hessian: Float64Array, cols: number, dampening: number) {
  const h = Float64Array.from(hessian);
  const { diag, dead, damp } = dampedDiagonal(hessian, cols, dampening);
  for (let k = 0; k < cols; k++) h[k * cols + k] = diag[k];
  return { h, dead, damp };
}

/**
 * J·H_d·J in fp32 into `out` (out[i·K + j] = H_d[K−1−i][K−1−j], H_d the damped Hessian with the damped diagonal
 * `diag`): the same values as Float32Array.from(dampedHessian(…).h).reverse(), without the float64 copy. Checks
 * H's values on the way (SparseGptInputError for the first NaN/±Infinity, as resolveSparseGptOptions would): each
 * row's float64 sum is finite unless an entry is not (or the sum overflows, when the exact search finds nothing), so
 * the separate pass over H goes (K = 2816: 8.8 ms → ~0.9 ms more here).
 */
export function dampedReversedF32(hessian: Float64Array, K: number, diag: Float64Array, out: Float32Array) {
  let check = 0;
  for (let i = 0; i < K; i++) {
    const src = (K - 1 - i) * K + K - 1;
    const row = i * K;
    let sum = 0;
    for (let j = 0; j < K; j++) {
      const x = hessian[src - j];
      out[row + j] = x;
      sum += x;
    }
    check += sum - sum; // 0, or NaN once a row's sum is not finite
    out[row + i] = diag[K - 1 - i];
  }
  if (check !== 0) checkHessianValues(hessian, firstNonFinite64(hessian));
  return out;
}
