// Importance scores for pruning, over canonical weights [N outputs][K inputs], row-major.
import { MaskInputError } from './nm.js';

/**
 * Wanda: score[n,k] = |W[n,k]|·x_k with x_k the root mean square of input channel k over the calibration tokens
 * (x_k = ‖X[:,k]‖₂/√tokens; a common scale factor does not change the masks). Compared inside each output row.
 */
export function wandaScores(
  w: Float32Array,
  rows: number,
  cols: number,
  xNorm: Float64Array | Float32Array,
  /** Write the scores here instead of a new array (callers reuse a scratch buffer). */
  out?: Float32Array,
): Float32Array {
  if (w.length !== rows * cols)
    throw new MaskInputError(`wandaScores: expected ${rows}×${cols} weights, got ${w.length}`);
  checkChannelNorms('wandaScores', xNorm, cols);
  if (out && out.length !== w.length)
    throw new MaskInputError(`wandaScores: output has ${out.length} values, expected ${w.length}`);
  const s = out ?? new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let k = 0; k < cols; k++) s[base + k] = Math.abs(w[base + k]) * xNorm[k];
  }
  return s;
}

/** Wanda's channel norms are one per input channel, finite and ≥ 0 (else MaskInputError naming `what`). */
export function checkChannelNorms(what: string, xNorm: ArrayLike<number>, cols: number): void {
  if (xNorm.length !== cols)
    throw new MaskInputError(`${what}: ${xNorm.length} channel norms for ${cols} input channels`);
  for (let k = 0; k < cols; k++)
    if (!(xNorm[k] >= 0 && xNorm[k] < Infinity))
      throw new MaskInputError(`${what}: channel norm ${k} is ${xNorm[k]}, must be finite and ≥ 0`);
}

/** Magnitude: score = |W|. */
export function magnitudeScores(w: Float32Array, out?: Float32Array): Float32Array {
  if (out && out.length !== w.length)
    throw new MaskInputError(`magnitudeScores: output has ${out.length} values, expected ${w.length}`);
  const s = out ?? new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) s[i] = Math.abs(w[i]);
  return s;
}
