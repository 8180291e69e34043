// N:M pruning by score in a weight's stored layout (the [outer][groups][M][inner] view of sparsity-stored.ts), for
// the criteria that score each weight by |w| times a per-input-channel factor: Wanda (|W[n,k]|·x_k) and magnitude
// (factor 1). It makes exactly the choice of nmMask(wandaScores(W, …)) on the canonical matrix — scores rounded to
// fp32 as wandaScores stores them, NaN ranked lowest, ties to the lower index — without the canonical copy, its
// transposes, or the score and mask arrays. It can also write Δ = W − Ŵ (the pruned-away part, in the same layout)
// for the layer error, so that no copy of the weights before pruning is kept. nmMaskScored makes the same choice on
// canonical rows as a mask (SLiM keeps its mask through the re-quantizations), without the score array.
import type { StridedLayout } from './sparsity-stored.js';
import { MaskInputError, validateNM } from './nm.js';
import { checkChannelNorms } from './wanda.js';
import { mask4Simd, prune4Simd } from './nm-scored-simd.js';

export interface ScoredPruneCounts {
  /** Zeros after pruning (±0). */
  zeros: number;
  /** NaN/±Inf among the weights before pruning. */
  nonFinite: number;
}

/**
 * Keeps the n best of every group of `v` (stored layout `l`) in place, by score fround(|w|·factor[g·M + j]) with g
 * the group's index along K and j its member (factor undefined: |w|, magnitude). `delta`, when given (same length as
 * v), receives w − ŵ at every position (w where pruned, w − w where kept). Throws MaskInputError on bad factors.
 */
export function pruneNMScored(
  v: Float32Array,
  l: StridedLayout,
  n: number,
  factor?: ArrayLike<number>,
  delta?: Float32Array,
): ScoredPruneCounts {
  const { outer, groups, m, inner } = l;
  if (v.length !== outer * groups * m * inner)
    throw new MaskInputError(`pruneNMScored: ${v.length} weights for a ${outer}×${groups}×${m}×${inner} layout`);
  if (!(Number.isInteger(n) && n > 0 && n < m)) throw new MaskInputError(`pruneNMScored: cannot keep ${n} of ${m}`);
  if (factor) checkChannelNorms('pruneNMScored', factor, groups * m);
  if (delta && delta.length !== v.length)
    throw new MaskInputError(`pruneNMScored: Δ has ${delta.length} values, expected ${v.length}`);
  return m === 4 ? prune4(v, l, n, factor, delta) : pruneM(v, l, n, factor, delta);
}

/** fround(|w|·f), NaN → −Infinity: the key nmMask ranks wandaScores' stored score by. */
function score(w: number, f: number): number {
  const s = Math.fround(Math.abs(w) * f);
  return s === s ? s : -Infinity;
}

/**
 * M = 4 with the group in locals; the same pairwise ranking as nmMask4 (rank = members that outrank it). Groups of
 * finite weights (all but a handful) are selected branch-free on the float bits, as sparsity-stored.ts's prune4 does:
 * keep = all ones when rank < n, and ŵ = w & keep, Δ = w & ~keep (w − w = +0 for a finite kept w). A group holding
 * NaN or ±Inf takes the float path with NaN scores ranked lowest and Δ = w − ŵ as it is.
 */
function prune4(
  v: Float32Array,
  l: StridedLayout,
  n: number,
  factor: ArrayLike<number> | undefined,
  delta: Float32Array | undefined,
): ScoredPruneCounts {
  const { outer, groups, inner } = l;
  let zeros = 0;
  let nonFinite = 0;
  // The WebAssembly kernel (math/nm-scored-simd.ts) where it applies; its blocks holding NaN/±Inf come back here.
  const simdZeros = prune4Simd(v, outer, groups, inner, n, factor, delta, (at, g) => {
    const x0 = factor ? factor[4 * g] : 1;
    const x1 = factor ? factor[4 * g + 1] : 1;
    const x2 = factor ? factor[4 * g + 2] : 1;
    const x3 = factor ? factor[4 * g + 3] : 1;
    // nonFiniteGroup makes the fast path's choice and bits on finite columns as well.
    for (let col = at; col < at + 4; col++) {
      const r = nonFiniteGroup(v, delta, col, inner, n, x0, x1, x2, x3);
      zeros += r.zeros;
      nonFinite += r.nonFinite;
    }
  });
  if (simdZeros >= 0) return { zeros: zeros + simdZeros, nonFinite };
  const bits = new Int32Array(v.buffer, v.byteOffset, v.length);
  const dbits = delta && new Int32Array(delta.buffer, delta.byteOffset, delta.length);
  const i1 = inner;
  const i2 = 2 * inner;
  const i3 = 3 * inner;
  const EXP = 0x7f800000;
  let base = 0;
  for (let o = 0; o < outer; o++) {
    for (let g = 0; g < groups; g++, base += 4 * inner) {
      const x0 = factor ? factor[4 * g] : 1;
      const x1 = factor ? factor[4 * g + 1] : 1;
      const x2 = factor ? factor[4 * g + 2] : 1;
      const x3 = factor ? factor[4 * g + 3] : 1;
      for (let at = base, end = base + inner; at < end; at++) {
        const b0 = bits[at];
        const b1 = bits[at + i1];
        const b2 = bits[at + i2];
        const b3 = bits[at + i3];
        if ((b0 & EXP) === EXP || (b1 & EXP) === EXP || (b2 & EXP) === EXP || (b3 & EXP) === EXP) {
          const c = nonFiniteGroup(v, delta, at, inner, n, x0, x1, x2, x3);
          zeros += c.zeros;
          nonFinite += c.nonFinite;
          continue;
        }
        // Finite weights and factors: the scores are finite or +Inf (fp32 overflow), never NaN.
        const a = Math.fround(Math.abs(v[at]) * x0);
        const b = Math.fround(Math.abs(v[at + i1]) * x1);
        const c = Math.fround(Math.abs(v[at + i2]) * x2);
        const d = Math.fround(Math.abs(v[at + i3]) * x3);
        const k0 = (+(b > a) + +(c > a) + +(d > a) - n) >> 31;
        const k1 = (+(a >= b) + +(c > b) + +(d > b) - n) >> 31;
        const k2 = (+(a >= c) + +(b >= c) + +(d > c) - n) >> 31;
        const k3 = (+(a >= d) + +(b >= d) + +(c >= d) - n) >> 31;
        bits[at] = b0 & k0;
        bits[at + i1] = b1 & k1;
        bits[at + i2] = b2 & k2;
        bits[at + i3] = b3 & k3;
        if (dbits) {
          dbits[at] = b0 & ~k0;
          dbits[at + i1] = b1 & ~k1;
          dbits[at + i2] = b2 & ~k2;
          dbits[at + i3] = b3 & ~k3;
        }
        zeros += +((b0 & k0 & 0x7fffffff) === 0) + +((b1 & k1 & 0x7fffffff) === 0);
        zeros += +((b2 & k2 & 0x7fffffff) === 0) + +((b3 & k3 & 0x7fffffff) === 0);
      }
    }
  }
  return { zeros, nonFinite };
}

/** One group of prune4 holding NaN or ±Inf, on the floats. */
function nonFiniteGroup(
  v: Float32Array,
  delta: Float32Array | undefined,
  at: number,
  inner: number,
  n: number,
  x0: number,
  x1: number,
  x2: number,
  x3: number,
): ScoredPruneCounts {
  const w0 = v[at];
  const w1 = v[at + inner];
  const w2 = v[at + 2 * inner];
  const w3 = v[at + 3 * inner];
  const a = score(w0, x0);
  const b = score(w1, x1);
  const c = score(w2, x2);
  const d = score(w3, x3);
  const k0 = +(b > a) + +(c > a) + +(d > a) < n ? w0 : 0;
  const k1 = +(a >= b) + +(c > b) + +(d > b) < n ? w1 : 0;
  const k2 = +(a >= c) + +(b >= c) + +(d > c) < n ? w2 : 0;
  const k3 = +(a >= d) + +(b >= d) + +(c >= d) < n ? w3 : 0;
  v[at] = k0;
  v[at + inner] = k1;
  v[at + 2 * inner] = k2;
  v[at + 3 * inner] = k3;
  if (delta) {
    delta[at] = w0 - k0;
    delta[at + inner] = w1 - k1;
    delta[at + 2 * inner] = w2 - k2;
    delta[at + 3 * inner] = w3 - k3;
  }
  return {
    zeros: +(k0 === 0) + +(k1 === 0) + +(k2 === 0) + +(k3 === 0),
    // w − w is 0 for every finite w and NaN for NaN and ±Inf.
    nonFinite: +(w0 - w0 !== 0) + +(w1 - w1 !== 0) + +(w2 - w2 !== 0) + +(w3 - w3 !== 0),
  };
}

/** Any M: nmMask's ranking (member i outranks j when its key is larger, or equal with i < j) over local keys. */
function pruneM(
  v: Float32Array,
  l: StridedLayout,
  n: number,
  factor: ArrayLike<number> | undefined,
  delta: Float32Array | undefined,
): ScoredPruneCounts {
  const { outer, groups, m, inner } = l;
  const key = new Float64Array(m);
  const beaten = new Int32Array(m);
  let zeros = 0;
  let nonFinite = 0;
  let base = 0;
  for (let o = 0; o < outer; o++) {
    for (let g = 0; g < groups; g++, base += m * inner) {
      for (let c = 0; c < inner; c++) {
        for (let j = 0; j < m; j++) {
          key[j] = score(v[base + j * inner + c], factor ? factor[g * m + j] : 1);
          beaten[j] = 0;
        }
        for (let i = 0; i < m - 1; i++) {
          const ki = key[i];
          for (let j = i + 1; j < m; j++) {
            if (ki >= key[j]) beaten[j]++;
            else beaten[i]++;
          }
        }
        for (let j = 0; j < m; j++) {
          const at = base + j * inner + c;
          const w = v[at];
          const kept = beaten[j] < n ? w : 0;
          v[at] = kept;
          if (delta) delta[at] = w - kept;
          if (kept === 0) zeros++;
          if (w - w !== 0) nonFinite++;
        }
      }
    }
  }
  return { zeros, nonFinite };
}

/**
 * nmMask(wandaScores(w, rows, cols, factor), rows, cols, n, m) — or nmMask(magnitudeScores(w), …) without `factor` —
 * over canonical rows [rows][cols], groups of m consecutive entries of a row, in one pass and without the score
 * array: the same fp32 scores, NaN ranked lowest, ties to the lower index. Writes into `out` when given.
 */
export function nmMaskScored(
  w: Float32Array,
  rows: number,
  cols: number,
  n: number,
  m: number,
  factor?: ArrayLike<number>,
  out?: Uint8Array,
): Uint8Array {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols < 0 || w.length !== rows * cols)
    throw new MaskInputError(`nmMaskScored: expected ${rows}×${cols} weights, got ${w.length}`);
  validateNM(n, m, cols);
  if (factor) checkChannelNorms('nmMaskScored', factor, cols);
  if (out && out.length !== w.length)
    throw new MaskInputError(`nmMaskScored: mask has ${out.length} entries, expected ${w.length}`);
  const mask = out ?? new Uint8Array(w.length);
  const f = factor ?? new Float64Array(cols).fill(1); // fround(|w|·1) = |w|: magnitudeScores' score
  if (m === 4) {
    if (!mask4Simd(w, rows, cols, n, f, mask)) mask4(w, rows, cols, n, f, mask);
  } else maskM(w, rows, cols, n, m, f, mask);
  return mask;
}

/** M = 4: nmMask4's pairwise ranks on the scores in locals, the keep bytes set without a branch. */
function mask4(w: Float32Array, rows: number, cols: number, n: number, f: ArrayLike<number>, mask: Uint8Array): void {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let k = 0; k < cols; k += 4) {
      const at = base + k;
      const a = score(w[at], f[k]);
      const b = score(w[at + 1], f[k + 1]);
      const c = score(w[at + 2], f[k + 2]);
      const d = score(w[at + 3], f[k + 3]);
      mask[at] = (+(b > a) + +(c > a) + +(d > a) - n) >>> 31;
      mask[at + 1] = (+(a >= b) + +(c > b) + +(d > b) - n) >>> 31;
      mask[at + 2] = (+(a >= c) + +(b >= c) + +(d > c) - n) >>> 31;
      mask[at + 3] = (+(a >= d) + +(b >= d) + +(c >= d) - n) >>> 31;
    }
  }
}

/** Any M: nmMask's ranking over local keys. */
function maskM(
  w: Float32Array,
  rows: number,
  cols: number,
  n: number,
  m: number,
  f: ArrayLike<number>,
  mask: Uint8Array,
): void {
  const key = new Float64Array(m);
  const beaten = new Int32Array(m);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let k = 0; k < cols; k += m) {
      for (let j = 0; j < m; j++) {
        key[j] = score(w[base + k + j], f[k + j]);
        beaten[j] = 0;
      }
      for (let i = 0; i < m - 1; i++)
        for (let j = i + 1; j < m; j++) {
          if (key[i] >= key[j]) beaten[j]++;
          else beaten[i]++;
        }
      for (let j = 0; j < m; j++) mask[base + k + j] = beaten[j] < n ? 1 : 0;
    }
  }
}
