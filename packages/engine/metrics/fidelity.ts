// How close a compressed model's outputs are to the dense model's, accumulated batch by batch (float64 sums, no
// outputs kept): relative error ‖ŷ − y‖/‖y‖ over all elements, mean per-sample cosine similarity, and top-1
// agreement (argmax over the last axis at every position: one per sample for classifiers, one per token for LMs).
// Outputs with a last axis of 4 or more go through a WebAssembly SIMD kernel (metrics/fidelity-simd.ts: the same
// argmaxes, the sums up to float64 rounding); else, or without WebAssembly SIMD, the scalar loop below.

import { fidelityRows, type FidelityRows } from './fidelity-simd.js';

export interface FidelityResult {
  /** ‖ŷ − y‖ / ‖y‖ over every output element. */
  relativeError: number;
  /** Mean over samples of cos(y_i, ŷ_i) (each sample's output flattened). */
  cosineSimilarity: number;
  /** Fraction of positions where argmax over the last axis agrees. */
  top1Agreement: number;
  samples: number;
  positions: number;
}

export class FidelityAccumulator {
  private diff2 = 0;
  private ref2 = 0;
  private cosSum = 0;
  private samples = 0;
  private agree = 0;
  private positions = 0;

  /** y, yHat: one batch of outputs [samples, …, classes] (same shape). */
  add(y: Float32Array, yHat: Float32Array, dims: readonly number[]): void {
    if (y.length !== yHat.length) throw new Error(`output sizes differ: ${y.length} vs ${yHat.length}`);
    const batch = dims.length ? dims[0] : 1;
    const per = batch > 0 ? y.length / batch : 0;
    if (dims.length > 1 && y.length > 0 && this.addRows(y, yHat, batch, per, dims[dims.length - 1])) return;
    for (let s = 0; s < batch; s++) {
      let dot = 0;
      let a2 = 0;
      let b2 = 0;
      let d2 = 0;
      const base = s * per;
      for (let i = 0; i < per; i++) {
        const a = y[base + i];
        const b = yHat[base + i];
        dot += a * b;
        a2 += a * a;
        b2 += b * b;
        d2 += (a - b) * (a - b);
      }
      this.diff2 += d2;
      this.ref2 += a2;
      // Two all-zero outputs are identical: count them as cosine 1.
      this.cosSum += a2 === 0 && b2 === 0 ? 1 : a2 === 0 || b2 === 0 ? 0 : dot / Math.sqrt(a2 * b2);
      this.samples++;
    }
    const classes = dims.length > 1 ? dims[dims.length - 1] : y.length;
    if (classes > 1) {
      for (let p = 0; p + classes <= y.length; p += classes) {
        if (argmax(y, p, classes) === argmax(yHat, p, classes)) this.agree++;
        this.positions++;
      }
    }
  }

  /** add through metrics/fidelity-simd.ts (per-row sums, then per sample); false where the kernel does not run. */
  private addRows(y: Float32Array, yHat: Float32Array, batch: number, per: number, classes: number): boolean {
    if (classes < 2 || per % classes !== 0) return false;
    const rows = y.length / classes;
    const r: FidelityRows = { sums: new Float64Array(4 * rows), argmax: new Int32Array(2 * rows) };
    if (!fidelityRows(y, yHat, classes, r)) return false;
    const { sums, argmax } = r;
    const rowsPer = per / classes;
    for (let s = 0, row = 0; s < batch; s++) {
      let dot = 0;
      let a2 = 0;
      let b2 = 0;
      let d2 = 0;
      for (const end = row + rowsPer; row < end; row++) {
        dot += sums[4 * row];
        a2 += sums[4 * row + 1];
        b2 += sums[4 * row + 2];
        d2 += sums[4 * row + 3];
        if (argmax[2 * row] === argmax[2 * row + 1]) this.agree++;
      }
      this.diff2 += d2;
      this.ref2 += a2;
      this.cosSum += a2 === 0 && b2 === 0 ? 1 : a2 === 0 || b2 === 0 ? 0 : dot / Math.sqrt(a2 * b2);
      this.samples++;
    }
    this.positions += rows;
    return true;
  }

  result(): FidelityResult {
    return {
      relativeError: this.ref2 > 0 ? Math.sqrt(this.diff2 / this.ref2) : this.diff2 > 0 ? Infinity : 0,
      cosineSimilarity: this.samples ? this.cosSum / this.samples : NaN,
      top1Agreement: this.positions ? this.agree / this.positions : NaN,
      samples: this.samples,
      positions: this.positions,
    };
  }
}

/** Index of the largest value in a[off .. off+len) (first on ties; NaN never wins). */
export function argmax(a: ArrayLike<number>, off: number, len: number): number {
  let best = -1;
  let bv = -Infinity;
  for (let i = 0; i < len; i++) {
    const v = a[off + i];
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best < 0 ? 0 : best;
}
