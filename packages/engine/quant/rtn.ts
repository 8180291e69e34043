// Round-to-nearest group-wise quantization (the baseline, and what ONNX Runtime's own 4-bit quantizer does): one
// scale per group of `blockSize` consecutive weights along K in each output row. Symmetric, on the full signed range
// as ONNX Runtime's MatMul4BitsQuantizer does: m = the group's value of largest magnitude (signed; the negative one on
// a tie), s = m / −2^(b−1), so m lands exactly on code −2^(b−1) and all 2^b codes are used (s is negative when m is
// positive); codes q = clamp(round(w/s), −2^(b−1), 2^(b−1)−1) stored as u = q + 2^(b−1). (absmax/(2^(b−1)−1) left
// code −8 unused: 15 of the 16 levels.) Asymmetric: the range [min(w,0), max(w,0)] is split in 2^b − 1 steps with
// an integer zero point, so 0 is always representable. In both schemes a zero weight is coded as u = zeroPoint
// exactly and dequantizes to exactly 0: N:M zeros survive quantization. `clip: "mse"` (quant/clip-search.ts) shrinks
// each group's range where that lowers the group's squared error.
import { quantizeRtnMse } from './clip-search.js';
import {
  checkMatrix,
  QuantError,
  resolveBlockSize,
  type QuantBits,
  type QuantizedMatrix,
  type QuantSpec,
} from './types.js';

type Matrix = Float32Array | Float64Array;

function checkBits(bits: number): asserts bits is QuantBits {
  if (bits !== 4 && bits !== 8) throw new QuantError(`bits must be 4 or 8 (got ${bits})`);
}

function emptyMatrix(rows: number, cols: number, bits: QuantBits, blockSize: number, symmetric: boolean) {
  const blocksPerRow = cols === 0 ? 0 : Math.ceil(cols / blockSize);
  const q: QuantizedMatrix = {
    rows,
    cols,
    bits,
    blockSize,
    blocksPerRow,
    symmetric,
    codes: new Uint8Array(rows * cols),
    scales: new Float32Array(rows * blocksPerRow),
    zeroPoints: new Uint8Array(rows * blocksPerRow),
  };
  return q;
}

/** The symmetric scale of a group whose signed extreme (value of largest magnitude) is `m`: m/−2^(b−1), in fp32. */
export function symmetricScale(m: number, half: number): number {
  return m === 0 ? 0 : Math.fround(m / -half);
}

/** Group-wise RTN of W [rows=N][cols=K] (canonical layout). */
export function quantizeRtn(w: Matrix, rows: number, cols: number, spec: QuantSpec): QuantizedMatrix {
  checkMatrix('quantizeRtn', w, rows, cols);
  checkBits(spec.bits);
  const bs = resolveBlockSize(spec, cols);
  const q = emptyMatrix(rows, cols, spec.bits, bs, spec.symmetric);
  if (spec.clip === 'mse') {
    quantizeRtnMse(w, q);
    return q;
  }
  const { codes, scales, zeroPoints, blocksPerRow } = q;
  if (spec.symmetric && w instanceof Float32Array) {
    quantizeSymmetricF32(w, rows, cols, spec.bits, q);
    return q;
  }
  const levels = (1 << spec.bits) - 1;
  const half = 1 << (spec.bits - 1);
  const qmaxSym = half - 1;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const k0 = base + b * bs;
      const k1 = base + Math.min(cols, (b + 1) * bs);
      const gi = r * blocksPerRow + b;
      if (spec.symmetric) {
        let lo = 0;
        let hi = 0;
        for (let i = k0; i < k1; i++) {
          const v = w[i];
          if (v < lo) lo = v;
          else if (v > hi) hi = v;
          else if (v !== v) hi = NaN; // NaN never compares: mark the group
        }
        if (hi !== hi) throw new QuantError(`quantizeRtn: non-finite weight in row ${r}, group ${b}`);
        const s = symmetricScale(Math.abs(hi) > Math.abs(lo) ? hi : lo, half);
        scales[gi] = s;
        zeroPoints[gi] = half;
        if (s === 0 || !Number.isFinite(s)) {
          if (!Number.isFinite(s)) throw new QuantError(`quantizeRtn: non-finite weight in row ${r}, group ${b}`);
          codes.fill(half, k0, k1);
          continue;
        }
        const inv = 1 / s;
        for (let i = k0; i < k1; i++) {
          let v = Math.round(w[i] * inv);
          if (v > qmaxSym) v = qmaxSym;
          else if (v < -half) v = -half;
          codes[i] = v + half;
        }
      } else {
        let lo = 0;
        let hi = 0;
        for (let i = k0; i < k1; i++) {
          const v = w[i];
          if (v < lo) lo = v;
          else if (v > hi) hi = v;
          else if (v !== v) hi = NaN;
        }
        const s = Math.fround((hi - lo) / levels);
        if (!Number.isFinite(s)) throw new QuantError(`quantizeRtn: non-finite weight in row ${r}, group ${b}`);
        scales[gi] = s;
        if (s === 0) {
          zeroPoints[gi] = 0;
          codes.fill(0, k0, k1);
          continue;
        }
        const inv = 1 / s;
        let zp = Math.round(-lo * inv);
        if (zp < 0) zp = 0;
        else if (zp > levels) zp = levels;
        zeroPoints[gi] = zp;
        for (let i = k0; i < k1; i++) {
          let v = Math.round(w[i] * inv) + zp;
          if (v > levels) v = levels;
          else if (v < 0) v = 0;
          codes[i] = v;
        }
      }
    }
  }
  return q;
}

/**
 * The symmetric branch of quantizeRtn for fp32 input (every big layer), and of quantizeMasked: monomorphic array
 * access and the rounding done as ⌊x + half + 0.5⌋ by truncation of a positive number, as quantizeWithClip does —
 * 3× less CPU than the generic loop at 16.8M weights. Same codes as Math.round (half toward +∞) up to double
 * round-off at exact ties. With `mask`, pruned entries count as 0 (zero-point code, excluded from the extreme); with
 * `alpha`, every group uses the per-tensor clip s = α/qmax instead of its signed extreme / −half.
 */
function quantizeSymmetricF32(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: QuantBits,
  q: QuantizedMatrix,
  mask?: Uint8Array,
  alpha?: number,
) {
  const { codes, scales, zeroPoints, blocksPerRow, blockSize: bs } = q;
  const half = 1 << (bits - 1);
  const qmax = half - 1;
  const lo = 0.5;
  const hi = qmax + half + 0.5;
  const shift = half + 0.5;
  zeroPoints.fill(half);
  const clip = alpha === undefined ? 0 : Math.fround(alpha / qmax);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const k0 = base + b * bs;
      const k1 = base + Math.min(cols, (b + 1) * bs);
      let s = clip;
      if (alpha === undefined) {
        let mn = 0;
        let mx = 0;
        let bad = false;
        for (let i = k0; i < k1; i++) {
          const v = !mask || mask[i] ? w[i] : 0;
          if (v < mn) mn = v;
          else if (v > mx) mx = v;
          bad ||= v !== v;
        }
        s = symmetricScale(-mn >= mx ? mn : mx, half);
        if (bad || !Number.isFinite(s)) throw new QuantError(`quantizeRtn: non-finite weight in row ${r}, group ${b}`);
      }
      scales[r * blocksPerRow + b] = s;
      if (s === 0) {
        codes.fill(half, k0, k1);
        continue;
      }
      const inv = 1 / s;
      for (let i = k0; i < k1; i++) {
        let x = !mask || mask[i] ? w[i] * inv + shift : shift;
        if (x < lo) x = lo;
        else if (x > hi) x = hi;
        codes[i] = x | 0;
      }
    }
  }
}

/**
 * Symmetric quantization of M ⊙ W without forming M ⊙ W (the sparse part of every SLiM step; saves a 64 MB pass at
 * 4096²): pruned entries get the zero-point code (they dequantize to exactly 0), kept ones are rounded with the
 * group's signed extreme over kept entries (RTN; with `clip: 'mse'` the least-error clip of it) or with the per-tensor
 * clip `alpha` (SLiM-Quant) when given. The same codes and scales as quantizeRtn / quantizeWithClip on the masked copy.
 */
export function quantizeMasked(
  w: Float32Array,
  mask: Uint8Array,
  rows: number,
  cols: number,
  bits: QuantBits,
  blockSize: number,
  alpha?: number,
  clip: 'none' | 'mse' = 'none',
): QuantizedMatrix {
  checkMatrix('quantizeMasked', w, rows, cols);
  checkMatrix('quantizeMasked', mask, rows, cols);
  checkBits(bits);
  if (alpha !== undefined && (!(alpha >= 0) || !Number.isFinite(alpha)))
    throw new QuantError(`clip α must be finite and ≥ 0 (got ${alpha})`);
  const q = emptyMatrix(rows, cols, bits, blockSize, true);
  if (alpha === undefined && clip === 'mse') quantizeRtnMse(w, q, mask);
  else quantizeSymmetricF32(w, rows, cols, bits, q, mask, alpha);
  return q;
}

/**
 * Symmetric quantization with one given per-tensor clip α (SLiM-Quant): s = α/(2^(b−1)−1) in every group, codes
 * clamped to [−2^(b−1), 2^(b−1)−1]. `blockSize` only sets the storage layout (MatMulNBits needs groups); every
 * group carries the same scale.
 */
export function quantizeWithClip(
  w: Matrix,
  rows: number,
  cols: number,
  bits: QuantBits,
  alpha: number,
  blockSize: number,
): QuantizedMatrix {
  checkMatrix('quantizeWithClip', w, rows, cols);
  checkBits(bits);
  if (!(alpha >= 0) || !Number.isFinite(alpha)) throw new QuantError(`clip α must be finite and ≥ 0 (got ${alpha})`);
  const q = emptyMatrix(rows, cols, bits, blockSize, true);
  const half = 1 << (bits - 1);
  const qmax = half - 1;
  const s = Math.fround(alpha / qmax);
  q.scales.fill(s);
  q.zeroPoints.fill(half);
  const { codes } = q;
  if (s === 0) {
    codes.fill(half);
    return q;
  }
  const inv = 1 / s;
  // Shifted so the argument of floor is positive: code = floor(clamp(w/s, −half, qmax) + half + 0.5) = round + half
  // (Math.round's half-toward-+∞ rule), with |0 as floor.
  const lo = 0.5;
  const hi = qmax + half + 0.5;
  const shift = half + 0.5;
  for (let i = 0; i < w.length; i++) {
    let x = w[i] * inv + shift;
    if (x < lo) x = lo;
    else if (x > hi) x = hi;
    codes[i] = x | 0;
  }
  return q;
}

/** W' [rows][cols] = (u − zp)·s, fp32. */
export function dequantize(q: QuantizedMatrix, out?: Float32Array): Float32Array {
  const { rows, cols, blockSize, blocksPerRow, codes, scales, zeroPoints } = q;
  const w = out ?? new Float32Array(rows * cols);
  checkMatrix('dequantize', w, rows, cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const gi = r * blocksPerRow + b;
      const s = scales[gi];
      const zp = zeroPoints[gi];
      const k1 = base + Math.min(cols, (b + 1) * blockSize);
      // + 0 turns the −0 of a zero code under a negative scale into +0 (a zero weight stays +0).
      for (let i = base + b * blockSize; i < k1; i++) w[i] = (codes[i] - zp) * s + 0;
    }
  }
  return w;
}

/** out = W − dequantize(q) in one pass (the quantization residual E), fp32. */
export function dequantizeResidual(q: QuantizedMatrix, w: Float32Array, out: Float32Array): Float32Array {
  const { rows, cols, blockSize, blocksPerRow, codes, scales, zeroPoints } = q;
  checkMatrix('dequantizeResidual', w, rows, cols);
  checkMatrix('dequantizeResidual', out, rows, cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const gi = r * blocksPerRow + b;
      const s = scales[gi];
      const zp = zeroPoints[gi];
      const k1 = base + Math.min(cols, (b + 1) * blockSize);
      for (let i = base + b * blockSize; i < k1; i++) out[i] = w[i] - (codes[i] - zp) * s;
    }
  }
  return out;
}

/** Quantizes with the scheme in `spec`, zeroes nothing: callers mask first (zeros stay exact). */
export function quantizeMatrix(
  w: Matrix,
  rows: number,
  cols: number,
  spec: QuantSpec & { scheme?: 'rtn' | 'slim'; alpha?: number },
): QuantizedMatrix {
  if (spec.scheme === 'slim') {
    if (spec.alpha === undefined) throw new QuantError('SLiM-Quant needs a clip α (fit it on the dense W)');
    return quantizeWithClip(w, rows, cols, spec.bits, spec.alpha, resolveBlockSize(spec, cols));
  }
  return quantizeRtn(w, rows, cols, spec);
}
