// Whole-array passes over fp32/fp64 arrays (counts, sums of squares, finiteness), each a small monomorphic function
// with one element type, for the per-layer passes of SparseGPT and the sparsity method. Sums run in index order with
// the float64 accumulator passed in and returned, so a caller's running sum keeps its exact rounding sequence.
// SparseGPT 250M CPU profile (2 loaded cores): the zero count after pruning 2.1 s → ~0.3 s (no branch on random
// zeros), the finiteness checks 1.45 → ~0.9 s (no polymorphic ArrayLike reads).

/**
 * Number of elements equal to ±0, read as int32 bits without a branch per element: pruned weights fall at random
 * positions, so `if (a[i] === 0)` mispredicted about half the time (7.6 ns per weight in the 250M profile).
 * For x = bits & 0x7fffffff (0 exactly for ±0), (x − 1) >>> 31 is 1 for x = 0 and 0 for 1 ≤ x ≤ 2³¹ − 1.
 */
export function countZeros32(a: Float32Array): number {
  const bits = new Int32Array(a.buffer, a.byteOffset, a.length);
  let z = 0;
  for (let i = 0; i < bits.length; i++) z += ((bits[i] & 0x7fffffff) - 1) >>> 31;
  return z;
}

/** acc + Σ a[i]² over i in [from, to), added one term at a time in index order (float64). */
export function addSquares32(acc: number, a: Float32Array, from = 0, to = a.length): number {
  for (let i = from; i < to; i++) acc += a[i] * a[i];
  return acc;
}

/** acc + Σ (a[aOff + t] − b[bOff + t])² for t in [0, n), one term at a time in order (float64). */
export function addDiffSquares32(
  acc: number,
  a: Float32Array,
  aOff: number,
  b: Float32Array,
  bOff: number,
  n: number,
): number {
  for (let t = 0; t < n; t++) {
    const d = a[aOff + t] - b[bOff + t];
    acc += d * d;
  }
  return acc;
}

/** Index of the first NaN/±Infinity, or −1 (x − x is NaN exactly for those). */
export function firstNonFinite32(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return i;
  return -1;
}

/** firstNonFinite32 for float64 arrays. */
export function firstNonFinite64(a: Float64Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return i;
  return -1;
}

/** firstNonFinite32 for any other array-like (slow: reads through a polymorphic element access). */
export function firstNonFiniteAny(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return i;
  return -1;
}
