// Zero patterns of soup ingredients: extraction, comparison, union/intersection, re-application. A mask is a
// Uint8Array with 1 where the weight may be non-zero and 0 where it must stay zero (SMS: M = OR_i (W_i ≠ 0)).

/** Flat values a mask is taken from or applied to. */
export type FloatValues = Float32Array | Float64Array;

/** 1 where `values[i] !== 0` (NaN counts as non-zero: it is not a pruned weight). */
export function nonzeroMask(values: ArrayLike<number>): Uint8Array {
  const mask = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) mask[i] = values[i] === 0 ? 0 : 1;
  return mask;
}

/** Index of the first position where two masks differ, or -1 when they are equal (lengths must match). */
export function firstMaskDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`mask lengths differ: ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Number of positions where two masks differ. */
export function countMaskDifferences(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`mask lengths differ: ${a.length} vs ${b.length}`);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** acc ← acc OR mask (in place). */
export function orMaskInto(acc: Uint8Array, mask: Uint8Array): void {
  if (acc.length !== mask.length) throw new RangeError(`mask lengths differ: ${acc.length} vs ${mask.length}`);
  for (let i = 0; i < acc.length; i++) acc[i] |= mask[i];
}

/** acc ← acc AND mask (in place). */
export function andMaskInto(acc: Uint8Array, mask: Uint8Array): void {
  if (acc.length !== mask.length) throw new RangeError(`mask lengths differ: ${acc.length} vs ${mask.length}`);
  for (let i = 0; i < acc.length; i++) acc[i] &= mask[i];
}

/** Zeroes `values` wherever `mask` is 0 (in place). Returns how many entries were non-zero and got zeroed. */
export function applyMask(values: FloatValues, mask: Uint8Array): number {
  if (values.length !== mask.length) throw new RangeError(`mask length ${mask.length} ≠ tensor size ${values.length}`);
  let changed = 0;
  for (let i = 0; i < values.length; i++) {
    if (mask[i] === 0 && values[i] !== 0) {
      values[i] = 0;
      changed++;
    }
  }
  return changed;
}

/** Number of zero entries in a mask. */
export function maskZeros(mask: Uint8Array): number {
  let z = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] === 0) z++;
  return z;
}

/** Number of exact zeros in a tensor. */
export function countZeros(values: ArrayLike<number>): number {
  let z = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) z++;
  return z;
}

/** True when every zero of `mask` is a zero of `values` (the tensor respects the mask). */
export function respectsMask(values: ArrayLike<number>, mask: Uint8Array): boolean {
  for (let i = 0; i < mask.length; i++) if (mask[i] === 0 && values[i] !== 0) return false;
  return true;
}

/** Row-major flat index → multi-index, for error messages ("[3, 17]"). */
export function unravelIndex(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  let rest = index;
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d];
    if (size <= 0) return [index];
    out[d] = rest % size;
    rest = Math.floor(rest / size);
  }
  return out;
}
