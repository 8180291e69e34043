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
import { maskedSweepSimd } from './masked-sweep.js';
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

/** A matrix to quantize into; `codes` (every entry is overwritten) instead of a fresh array when given. */
function emptyMatrix(
  rows: number,
  cols: number,
  bits: QuantBits,
  blockSize: number,
  symmetric: boolean,
  codes?: Uint8Array,
) {
  const blocksPerRow = cols === 0 ? 0 : Math.ceil(cols / blockSize);
  const q: QuantizedMatrix = {
    rows,
    cols,
    bits,
    blockSize,
    blocksPerRow,
    symmetric,
    codes: codes ?? new Uint8Array(rows * cols),
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
 * `alpha`, every group uses the per-tensor clip s = α/qmax instead of its signed extreme / −half. With `residual`,
 * residual.out[i] = residual.w[i] − (code − zp)·s is written in the same sweep (dequantizeResidual's numbers; out may
 * be `w` itself, each entry is read before it is written).
 */
function quantizeSymmetricF32(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: QuantBits,
  q: QuantizedMatrix,
  mask?: Uint8Array,
  alpha?: number,
  residual?: Residual,
) {
  const { codes, scales, zeroPoints, blocksPerRow, blockSize: bs } = q;
  const half = 1 << (bits - 1);
  zeroPoints.fill(half);
  if (mask && alpha === undefined && residual) return maskedWithResidual(w, rows, cols, bits, q, mask, residual);
  const clip = alpha === undefined ? 0 : Math.fround(alpha / (half - 1));
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const k0 = base + b * bs;
      const k1 = base + Math.min(cols, (b + 1) * bs);
      // A masked group holding a non-finite weight (kept: an error; pruned: read as 0) takes the branchy loops: w·0
      // is NaN for ±Inf and NaN, so a NaN extreme (or, with α, a NaN probe) sends the group there.
      let plain = true;
      let s = clip;
      if (alpha === undefined) {
        let m = signedExtreme(w, mask, k0, k1);
        if (mask && m !== m) {
          plain = false;
          m = signedExtremeBranchy(w, mask, k0, k1);
        }
        s = symmetricScale(m, half);
        if (m !== m || !Number.isFinite(s))
          throw new QuantError(`quantizeRtn: non-finite weight in row ${r}, group ${b}`);
      } else if (mask) plain = maskedFinite(w, mask, k0, k1);
      scales[r * blocksPerRow + b] = s;
      if (s === 0) codes.fill(half, k0, k1);
      else if (plain) roundGroup(w, mask, k0, k1, 1 / s, half, codes);
      else roundGroupBranchy(w, mask!, k0, k1, 1 / s, half, codes);
      if (residual) residualGroup(residual, codes, k0, k1, half, s);
    }
  }
}

/**
 * quantizeSymmetricF32 with a mask, the groups' own extremes and the residual (every SLiM sparse part), group by group
 * in maskedGroup: the loops of signedExtreme, roundGroup and residualGroup inline (three calls per group of 32 cost as
 * much as the arithmetic). Where WebAssembly SIMD runs (quant/masked-sweep.ts) the kernel does the sweep instead, with
 * the same values bit for bit (~2.5× faster), and hands the groups it does not take to maskedGroup; the per-group loop
 * here is the reference it is tested against.
 */
function maskedWithResidual(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: QuantBits,
  q: QuantizedMatrix,
  mask: Uint8Array,
  residual: Residual,
): void {
  const { codes, scales, blocksPerRow, blockSize: bs } = q;
  const { w: w0, out } = residual;
  const half = 1 << (bits - 1);
  const simd = maskedSweepSimd(w, mask, w0, out, codes, scales, rows, cols, bits, bs, (g) =>
    maskedGroup(
      g.w,
      g.mask,
      { w: g.w0, out: g.out },
      g.codes,
      g.scales,
      g.scaleIndex,
      g.k0,
      g.k1,
      half,
      Math.floor(g.group / blocksPerRow),
      g.group % blocksPerRow,
    ),
  );
  if (simd) return;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocksPerRow; b++) {
      const k0 = r * cols + b * bs;
      const k1 = r * cols + Math.min(cols, (b + 1) * bs);
      maskedGroup(w, mask, residual, codes, scales, r * blocksPerRow + b, k0, k1, half, r, b);
    }
  }
}

/**
 * One group [k0, k1) of maskedWithResidual (scale at scales[si]; row and group name it in errors): the loop where
 * WebAssembly SIMD does not run, and the groups the kernel hands back (a non-finite extreme, a mask byte other than 0
 * or 1).
 */
function maskedGroup(
  w: Float32Array,
  mask: Uint8Array,
  residual: Residual,
  codes: Uint8Array,
  scales: Float32Array,
  si: number,
  k0: number,
  k1: number,
  half: number,
  row: number,
  group: number,
): void {
  let mn = 0;
  let mx = 0;
  for (let i = k0; i < k1; i++) {
    const v = w[i] * mask[i];
    mn = Math.min(mn, v);
    mx = Math.max(mx, v);
  }
  const m = -mn >= mx ? mn : mx;
  if (m !== m) {
    const e = signedExtremeBranchy(w, mask, k0, k1);
    const s = symmetricScale(e, half);
    if (e !== e || !Number.isFinite(s))
      throw new QuantError(`quantizeRtn: non-finite weight in row ${row}, group ${group}`);
    scales[si] = s;
    if (s === 0) codes.fill(half, k0, k1);
    else roundGroupBranchy(w, mask, k0, k1, 1 / s, half, codes);
    residualGroup(residual, codes, k0, k1, half, s);
    return;
  }
  const s = symmetricScale(m, half);
  if (!Number.isFinite(s)) throw new QuantError(`quantizeRtn: non-finite weight in row ${row}, group ${group}`);
  scales[si] = s;
  const inv = s === 0 ? 0 : 1 / s;
  const { w: w0, out } = residual;
  const shift = half + 0.5;
  for (let i = k0; i < k1; i++) {
    const c = Math.min(Math.max(w[i] * mask[i] * inv + shift, 0.5), 2 * half - 0.5) | 0;
    codes[i] = c;
    out[i] = w0[i] - (c - half) * s;
  }
}

/** Where quantizeSymmetricF32 writes W − dequantize(codes) as it goes. */
interface Residual {
  w: Float32Array;
  out: Float32Array;
}

/** Whether w·mask is finite over [k0, k1). */
function maskedFinite(w: Float32Array, mask: Uint8Array, k0: number, k1: number): boolean {
  let acc = 0;
  for (let i = k0; i < k1; i++) acc += w[i] * mask[i] * 0; // 0, or NaN once any product is non-finite
  return acc === 0;
}

/**
 * The group's value of largest magnitude (the negative one on a tie; 0 for an all-zero group; NaN when a value is
 * NaN), over w·mask without a branch per entry (the 2:4 masks are unpredictable: a branch on them mispredicts half
 * the time). ±0 never moves the extremes off 0 in a way symmetricScale sees.
 */
function signedExtreme(w: Float32Array, mask: Uint8Array | undefined, k0: number, k1: number): number {
  let mn = 0;
  let mx = 0;
  if (mask) {
    for (let i = k0; i < k1; i++) {
      const v = w[i] * mask[i];
      mn = Math.min(mn, v);
      mx = Math.max(mx, v);
    }
  } else {
    for (let i = k0; i < k1; i++) {
      const v = w[i];
      mn = Math.min(mn, v);
      mx = Math.max(mx, v);
    }
  }
  return -mn >= mx ? mn : mx;
}

/** signedExtreme reading pruned entries as 0 whatever they hold (NaN when a kept value is NaN). */
function signedExtremeBranchy(w: Float32Array, mask: Uint8Array, k0: number, k1: number): number {
  let mn = 0;
  let mx = 0;
  for (let i = k0; i < k1; i++) {
    const v = mask[i] ? w[i] : 0;
    if (v < mn) mn = v;
    else if (v > mx) mx = v;
    else if (v !== v) return NaN;
  }
  return -mn >= mx ? mn : mx;
}

/** codes = clamp(round(w·mask·inv), −half, half − 1) + half as ⌊x + half + 0.5⌋ (x shifted positive, |0 floors). */
function roundGroup(
  w: Float32Array,
  mask: Uint8Array | undefined,
  k0: number,
  k1: number,
  inv: number,
  half: number,
  codes: Uint8Array,
): void {
  const lo = 0.5;
  const hi = 2 * half - 0.5;
  const shift = half + 0.5;
  if (mask) {
    for (let i = k0; i < k1; i++) {
      // w·1 is w exactly and w·0 is ±0 (finite groups only): the kept entries round as without a mask.
      const x = Math.min(Math.max(w[i] * mask[i] * inv + shift, lo), hi);
      codes[i] = x | 0;
    }
  } else {
    for (let i = k0; i < k1; i++) codes[i] = Math.min(Math.max(w[i] * inv + shift, lo), hi) | 0;
  }
}

/** roundGroup reading pruned entries as 0 whatever they hold. */
function roundGroupBranchy(
  w: Float32Array,
  mask: Uint8Array,
  k0: number,
  k1: number,
  inv: number,
  half: number,
  codes: Uint8Array,
): void {
  const shift = half + 0.5;
  for (let i = k0; i < k1; i++) {
    const x = mask[i] ? w[i] * inv + shift : shift;
    codes[i] = Math.min(Math.max(x, 0.5), 2 * half - 0.5) | 0;
  }
}

function residualGroup(res: Residual, codes: Uint8Array, k0: number, k1: number, zp: number, s: number): void {
  const { w, out } = res;
  for (let i = k0; i < k1; i++) out[i] = w[i] - (codes[i] - zp) * s;
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
  into: {
    /** Also write residual.out = residual.w − dequantize(q) (out may be `w` itself: it is consumed). */
    residual?: { w: Float32Array; out: Float32Array };
    /** rows·cols bytes to hold the codes (q.codes is then this array) instead of a fresh one. */
    codes?: Uint8Array;
  } = {},
): QuantizedMatrix {
  const { residual, codes } = into;
  checkMatrix('quantizeMasked', w, rows, cols);
  checkMatrix('quantizeMasked', mask, rows, cols);
  checkBits(bits);
  if (alpha !== undefined && (!(alpha >= 0) || !Number.isFinite(alpha)))
    throw new QuantError(`clip α must be finite and ≥ 0 (got ${alpha})`);
  if (residual) {
    checkMatrix('quantizeMasked residual', residual.w, rows, cols);
    checkMatrix('quantizeMasked residual', residual.out, rows, cols);
  }
  if (codes) checkMatrix('quantizeMasked codes', codes, rows, cols);
  const q = emptyMatrix(rows, cols, bits, blockSize, true, codes);
  if (alpha === undefined && clip === 'mse') {
    quantizeRtnMse(w, q, mask);
    if (residual) dequantizeResidual(q, residual.w, residual.out);
  } else quantizeSymmetricF32(w, rows, cols, bits, q, mask, alpha, residual);
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
