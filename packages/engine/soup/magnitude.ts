// Magnitude pruning over one or several tensors: zero exactly k eligible entries of smallest |w|. Used to re-prune a
// soup to one mask (per matrix) and to prune a soup further for the next SMS phase (global or per layer).
import type { FloatValues } from './masks.js';

/**
 * Picks, among the entries where `eligible[t][i]` is 1, the `k` of smallest |tensors[t][i]| over all tensors together,
 * ties broken by tensor order then index (deterministic). Returns one keep-mask per tensor: 0 for the picked entries
 * and for every entry that was not eligible, 1 elsewhere.
 */
export function pruneSmallest(
  tensors: readonly FloatValues[],
  eligible: readonly Uint8Array[],
  k: number,
): Uint8Array[] {
  if (tensors.length !== eligible.length) throw new RangeError('one eligibility mask per tensor is required');
  let total = 0;
  for (let t = 0; t < tensors.length; t++) {
    if (tensors[t].length !== eligible[t].length) {
      throw new RangeError(`tensor ${t}: size ${tensors[t].length} ≠ mask size ${eligible[t].length}`);
    }
    for (let i = 0; i < eligible[t].length; i++) total += eligible[t][i];
  }
  if (!Number.isInteger(k) || k < 0 || k > total) throw new RangeError(`cannot prune ${k} of ${total} entries`);
  const keep = eligible.map((e) => Uint8Array.from(e));
  if (k === 0) return keep;

  // Threshold = k-th smallest eligible magnitude (float64 holds float32 and float64 magnitudes exactly).
  const mags = new Float64Array(total);
  let p = 0;
  for (let t = 0; t < tensors.length; t++) {
    const w = tensors[t];
    const e = eligible[t];
    for (let i = 0; i < w.length; i++) if (e[i]) mags[p++] = Math.abs(w[i]);
  }
  const threshold = kthSmallest(mags, k - 1);
  // After selection every entry left of k−1 is ≤ the threshold: count the strictly smaller ones.
  let below = 0;
  for (let i = 0; i < k - 1; i++) if (mags[i] < threshold) below++;
  let tiesLeft = k - below; // entries equal to the threshold still to prune, taken in scan order

  for (let t = 0; t < tensors.length; t++) {
    const w = tensors[t];
    const m = keep[t];
    for (let i = 0; i < w.length; i++) {
      if (!m[i]) continue;
      const a = Math.abs(w[i]);
      if (a < threshold) m[i] = 0;
      else if (a === threshold && tiesLeft > 0) {
        m[i] = 0;
        tiesLeft--;
      }
    }
  }
  return keep;
}

/**
 * The (k+1)-th smallest value of `a` (0-based rank k), rearranging `a` so that a[0..k] ≤ a[k] ≤ a[k+1..] (Hoare
 * quickselect, median-of-three pivots; O(n) expected). Degenerate partitioning falls back to sorting the range.
 */
export function kthSmallest(a: Float64Array, k: number): number {
  if (!(k >= 0 && k < a.length)) throw new RangeError(`rank ${k} outside 0..${a.length - 1}`);
  let lo = 0;
  let hi = a.length - 1;
  for (let rounds = 0; hi > lo; rounds++) {
    if (rounds > 64 || hi - lo < 16) {
      a.subarray(lo, hi + 1).sort();
      break;
    }
    const mid = (lo + hi) >>> 1;
    // median of a[lo], a[mid], a[hi] as the pivot
    if (a[mid] < a[lo]) swap(a, mid, lo);
    if (a[hi] < a[lo]) swap(a, hi, lo);
    if (a[hi] < a[mid]) swap(a, hi, mid);
    const pivot = a[mid];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        swap(a, i, j);
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break; // j < k < i: a[k] equals the pivot
  }
  return a[k];
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}

/** Number of entries to prune from `count` for a fraction p (round half up, as torch.nn.utils.prune does). */
export function pruneCount(count: number, fraction: number): number {
  if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`fraction ${fraction} is not in [0, 1]`);
  return Math.min(count, Math.round(fraction * count));
}

/** Keep-masks that zero `fraction` of all entries of each tensor separately (per-matrix magnitude threshold). */
export function magnitudeMaskPerTensor(tensors: readonly FloatValues[], fraction: number): Uint8Array[] {
  return tensors.map((w) => pruneSmallest([w], [new Uint8Array(w.length).fill(1)], pruneCount(w.length, fraction))[0]);
}

/**
 * Keep-masks that prune `fraction` of the *remaining non-zero* entries (SMS / iterative magnitude pruning: each phase
 * removes p_phase of what is left), over all tensors at once (`global`) or each tensor separately (`layer`).
 */
export function pruneRemaining(
  tensors: readonly FloatValues[],
  fraction: number,
  scope: 'global' | 'layer',
): Uint8Array[] {
  const alive = tensors.map((w) => {
    const m = new Uint8Array(w.length);
    for (let i = 0; i < w.length; i++) m[i] = w[i] === 0 ? 0 : 1;
    return m;
  });
  const countOf = (m: Uint8Array) => {
    let c = 0;
    for (let i = 0; i < m.length; i++) c += m[i];
    return c;
  };
  if (scope === 'layer') {
    return tensors.map((w, t) => pruneSmallest([w], [alive[t]], pruneCount(countOf(alive[t]), fraction))[0]);
  }
  const total = alive.reduce((s, m) => s + countOf(m), 0);
  return pruneSmallest(tensors, alive, pruneCount(total, fraction));
}
