// Quantized weight matrices in the engine's canonical layout: rows = outputs (N), columns = the reduction axis (K),
// groups of `blockSize` consecutive K entries per row. Codes are unsigned integers u ∈ [0, 2^bits − 1] with one
// integer zero point per group, so value = (u − zeroPoint)·scale and a zero weight is stored as u = zeroPoint
// exactly. That is the MatMulNBits convention; signed ONNX int4/int8 codes are u − 2^(bits−1) with zero point 0.

export type QuantBits = 4 | 8;

export interface QuantSpec {
  bits: QuantBits;
  /** Group size along K, or 'channel' (one group per output row). @defaultValue 32 */
  groupSize: number | 'channel';
  /**
   * Symmetric (zero point 2^(bits−1), scale = the group's signed extreme / −2^(bits−1): the full signed range, as
   * ONNX Runtime's quantizer) or asymmetric (integer zero point).
   */
  symmetric: boolean;
  /** Per-group clip search: 'mse' keeps the shrunk range with the least squared error (quant/clip-search.ts). @defaultValue 'none' */
  clip?: 'none' | 'mse';
}

export interface QuantizedMatrix {
  /** N: output rows. */
  rows: number;
  /** K: reduction length. */
  cols: number;
  bits: QuantBits;
  /** Elements per group along K (for 'channel' this is K itself). */
  blockSize: number;
  /** ceil(K / blockSize). */
  blocksPerRow: number;
  symmetric: boolean;
  /** [rows][cols] unsigned codes, one byte each (packing to nibbles happens at write time). */
  codes: Uint8Array;
  /** [rows][blocksPerRow] fp32 scales (symmetric ones are negative where the group's extreme is positive). */
  scales: Float32Array;
  /** [rows][blocksPerRow] integer zero points. */
  zeroPoints: Uint8Array;
}

export class QuantError extends Error {
  override readonly name = 'QuantError';
}

export function checkMatrix(what: string, w: { length: number }, rows: number, cols: number): void {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols < 0) {
    throw new QuantError(`${what}: ${rows}×${cols} is not a matrix shape`);
  }
  if (w.length !== rows * cols) {
    throw new QuantError(`${what}: expected ${rows}×${cols} = ${rows * cols} values, got ${w.length}`);
  }
}

/** Resolves the group size for a K-long row ('channel' → K). */
export function resolveBlockSize(spec: Pick<QuantSpec, 'groupSize'>, cols: number): number {
  if (spec.groupSize === 'channel') return Math.max(1, cols);
  const g = spec.groupSize;
  if (!Number.isSafeInteger(g) || g < 1) throw new QuantError(`group size ${g} must be a positive integer`);
  return g;
}

/** Bits per weight actually stored: codes + fp32 scales + zero points (bits each when asymmetric). */
export function storedBitsPerWeight(q: QuantizedMatrix, scaleBits = 32): number {
  const n = q.rows * q.cols;
  if (n === 0) return 0;
  const groups = q.rows * q.blocksPerRow;
  return (n * q.bits + groups * scaleBits + (q.symmetric ? 0 : groups * q.bits)) / n;
}
