// Fused RTN + MatMulNBits packing straight from a MatMul weight as stored, B[K][N] row-major fp32: one pass per block
// of `blockSize` rows computes the per-column absmax (unit stride over N), a second writes the codes of two rows at
// a time into one byte of the packed [N][blocks][blockSize/2] layout. No canonical [N][K] copy, no code array, no
// separate packing pass: this is the path the `quantize` method takes for large models (bench/quantize.bench.ts).
// Same results, bit for bit, as quantizeRtn + packMatMulNBits (tested): symmetric 4-bit on the full signed range,
// s = m/−8 rounded to fp32 with m the block's signed extreme (ONNX Runtime's choice), code = clamp(round(w/s), −8, 7)
// + 8, Math.round semantics (half toward +∞).
import type { MatMulNBitsWeights } from './matmulnbits.js';
import { isPow2AtLeast16 } from './matmulnbits.js';
import { QuantError } from './types.js';

/** Columns per tile of the coding pass. */
const TILE = 64;

/**
 * Supplies rows [k0, k1) of B[K][N] (one quantization block): the array holding them and the index of B[k0][0] in
 * it. Lets the kernel read a weight block by block from wherever it is stored (a file, through a small buffer).
 */
export type KNRowSource = (k0: number, k1: number) => { data: Float32Array; base: number };

/** Symmetric 4-bit RTN of B[K][N] into MatMulNBits bytes (block size a power of two ≥ 16). */
export function quantizePackKN4(src: Float32Array, K: number, N: number, blockSize: number): MatMulNBitsWeights {
  if (src.length !== K * N) throw new QuantError(`quantizePackKN4: expected ${K}×${N} values, got ${src.length}`);
  return quantizePackKN4Rows((k0) => ({ data: src, base: k0 * N }), K, N, blockSize);
}

/**
 * quantizePackKN4 over rows supplied one block at a time (same results). `into`, when given, receives the packed
 * codes and scales (every element is written) and the result's B and scales are views of it: a caller that copies
 * them out before the next call can reuse one pair of buffers for all layers instead of fresh ones per layer.
 */
export function quantizePackKN4Rows(
  rows: KNRowSource,
  K: number,
  N: number,
  blockSize: number,
  into?: { codes: Uint8Array; scales: Float32Array },
): MatMulNBitsWeights {
  if (!isPow2AtLeast16(blockSize)) throw new QuantError(`block size ${blockSize} must be a power of two ≥ 16`);
  const blocks = Math.ceil(K / blockSize);
  const half = blockSize >> 1;
  const rowBytes = blocks * half;
  if (into && (into.codes.length < N * rowBytes || into.scales.length < N * blocks))
    throw new QuantError(`quantizePackKN4Rows: output buffers too small for ${K}×${N} in blocks of ${blockSize}`);
  const B = into ? into.codes.subarray(0, N * rowBytes) : new Uint8Array(N * rowBytes);
  const scales = into ? into.scales.subarray(0, N * blocks) : new Float32Array(N * blocks);
  const mn = new Float32Array(N);
  const mx = new Float32Array(N);
  const inv = new Float64Array(N); // 1/s in float64, as quantizeRtn computes it
  for (let b = 0; b < blocks; b++) {
    const k0 = b * blockSize;
    const k1 = Math.min(K, k0 + blockSize);
    const { data: src, base } = rows(k0, k1);
    // Index of B[k][n] in src: base + (k - k0)·N + n.
    const shift = base - k0 * N;
    mn.fill(0);
    mx.fill(0);
    for (let k = k0; k < k1; k++) {
      const off = shift + k * N;
      for (let n = 0; n < N; n++) {
        const v = src[off + n];
        if (v < mn[n]) mn[n] = v;
        else if (v > mx[n]) mx[n] = v;
        else if (v !== v) throw new QuantError(`non-finite weight at row ${k}, column ${n}`);
      }
    }
    for (let n = 0; n < N; n++) {
      // The signed extreme (the negative one on a tie) lands on code −8: all 16 codes are used.
      const m = -mn[n] >= mx[n] ? mn[n] : mx[n];
      const s = m === 0 ? 0 : Math.fround(m / -8);
      if (!Number.isFinite(s)) throw new QuantError(`non-finite weight in column ${n}, block ${b}`);
      scales[n * blocks + b] = s;
      inv[n] = s === 0 ? 0 : 1 / s;
    }
    const byteBase = b * half;
    // Column tiles keep the written bytes (TILE rows of B × blockSize/2) in L1 while the block's rows stream by.
    for (let n0 = 0; n0 < N; n0 += TILE) {
      const n1 = Math.min(N, n0 + TILE);
      for (let k = k0; k < k1; k += 2) {
        const lo = shift + k * N;
        let bi = n0 * rowBytes + byteBase + ((k - k0) >> 1);
        // w/s ∈ [−8, 8]·(1 + 2⁻²³) since s = fround(m/−8): x + 8.5 ∈ (0.4999…, 16.5…), so |0 (floor of a number
        // > −1) gives round(x) + 8 ≥ 0 and only the top needs clamping (the extreme's opposite side reaches +8 → 7).
        if (k + 1 < k1) {
          const hi = lo + N;
          for (let n = n0; n < n1; n++, bi += rowBytes) {
            const f = inv[n];
            const a = (src[lo + n] * f + 8.5) | 0;
            const c = (src[hi + n] * f + 8.5) | 0;
            B[bi] = (a > 15 ? 15 : a) | ((c > 15 ? 15 : c) << 4);
          }
        } else {
          for (let n = n0; n < n1; n++, bi += rowBytes) {
            const a = (src[lo + n] * inv[n] + 8.5) | 0;
            B[bi] = (a > 15 ? 15 : a) | 0x80;
          }
        }
      }
    }
    // Rows past K in the last block hold the zero-point code (8 | 8 << 4).
    if (k1 - k0 < blockSize) {
      const from = byteBase + ((k1 - k0 + 1) >> 1);
      for (let n = 0; n < N; n++) B.fill(0x88, n * rowBytes + from, n * rowBytes + byteBase + half);
    }
  }
  return { K, N, bits: 4, blockSize, blocks, B, scales, zeroPoints: null };
}
