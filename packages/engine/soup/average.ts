// Averaging ingredient tensors. Sums are kept in float64 so a soup of many ingredients does not lose precision, and
// the result is masked after averaging (average(W_i ⊙ M) ⊙ M = average(W_i) ⊙ M, so masking once is enough).
import type { FloatValues } from './masks.js';

/** Running float64 sum of one tensor over the ingredients accepted into a soup so far. */
export class TensorSum {
  readonly sum: Float64Array;
  count = 0;

  constructor(readonly size: number) {
    this.sum = new Float64Array(size);
  }

  add(values: FloatValues): void {
    if (values.length !== this.size) throw new RangeError(`tensor size ${values.length} ≠ ${this.size}`);
    const s = this.sum;
    for (let i = 0; i < s.length; i++) s[i] += values[i];
    this.count++;
  }

  /**
   * Writes the mean of the accepted tensors — plus `candidate` when given, as one more member — into `out`, then
   * zeroes it wherever `mask` is 0. Returns `out`.
   */
  meanInto<T extends FloatValues>(out: T, mask: Uint8Array | null, candidate?: FloatValues): T {
    const n = this.count + (candidate ? 1 : 0);
    if (n === 0) throw new RangeError('mean of an empty soup');
    if (out.length !== this.size) throw new RangeError(`output size ${out.length} ≠ ${this.size}`);
    if (mask && mask.length !== this.size) throw new RangeError(`mask size ${mask.length} ≠ ${this.size}`);
    if (candidate && candidate.length !== this.size) {
      throw new RangeError(`candidate size ${candidate.length} ≠ ${this.size}`);
    }
    const s = this.sum;
    const len = s.length;
    // A true division (not ·1/n) keeps a soup of one bit-identical to its ingredient. One loop per case keeps the
    // hot loops free of per-element branches on the options.
    if (candidate) for (let i = 0; i < len; i++) out[i] = (s[i] + candidate[i]) / n;
    else for (let i = 0; i < len; i++) out[i] = s[i] / n;
    if (mask) for (let i = 0; i < len; i++) if (mask[i] === 0) out[i] = 0;
    return out;
  }
}

/** Plain masked mean of several tensors (float64 accumulation). */
export function averageTensors(tensors: readonly FloatValues[], mask: Uint8Array | null): Float32Array {
  if (tensors.length === 0) throw new RangeError('no tensors to average');
  const acc = new TensorSum(tensors[0].length);
  for (const t of tensors) acc.add(t);
  return acc.meanInto(new Float32Array(acc.size), mask);
}
