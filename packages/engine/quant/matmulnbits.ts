// com.microsoft MatMulNBits weight layout (ONNX Runtime ContribOperators.md): B uint8 [N][⌈K/bs⌉][bs·bits/8], the
// code of element (k, n) at B[n][k/bs][(k%bs)·bits/8], low nibble first for 4 bits; scales [N·blocks] (the 1-D form
// every ORT version accepts; same bytes as [N][blocks]); zero points optional — packed [N][⌈blocks·bits/8⌉] with
// 4 bits, default 2^(bits−1), which is exactly our symmetric zero point, so symmetric weights omit them.
// block_size must be a power of two ≥ 16; a per-channel matrix (one group per row) is written with the next power
// of two ≥ K and padded with the zero-point code.
import { QuantError, type QuantBits, type QuantizedMatrix } from './types.js';

export interface MatMulNBitsWeights {
  K: number;
  N: number;
  bits: QuantBits;
  blockSize: number;
  blocks: number;
  /** [N][blocks][blockSize·bits/8] */
  B: Uint8Array;
  /** [N·blocks] fp32 */
  scales: Float32Array;
  /** null when every zero point is the default 2^(bits−1). */
  zeroPoints: Uint8Array | null;
}

export function isPow2AtLeast16(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 16 && (x & (x - 1)) === 0;
}

/** The MatMulNBits block size for a quantized matrix (error when its groups cannot be expressed). */
export function matMulNBitsBlockSize(q: Pick<QuantizedMatrix, 'blockSize' | 'blocksPerRow' | 'cols'>): number {
  if (isPow2AtLeast16(q.blockSize)) return q.blockSize;
  if (q.blocksPerRow === 1) {
    let bs = 16;
    while (bs < q.cols) bs *= 2;
    return bs;
  }
  throw new QuantError(`MatMulNBits needs a power-of-two group size ≥ 16 (got ${q.blockSize}); use qdq instead`);
}

/** Whether typed-array words hold their bytes lowest first (packRow4's byte positions). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

export function packMatMulNBits(q: QuantizedMatrix): MatMulNBitsWeights {
  const { rows: N, cols: K, bits, codes } = q;
  const bs = matMulNBitsBlockSize(q);
  const blocks = Math.ceil(K / bs);
  const bytesPerBlock = (bs * bits) / 8;
  const rowBytes = blocks * bytesPerBlock;
  const B = new Uint8Array(N * rowBytes);
  const def = 1 << (bits - 1);
  let allDefault = true;
  for (let i = 0; i < q.zeroPoints.length; i++) if (q.zeroPoints[i] !== def) allDefault = false;
  const words =
    bits === 4 && LITTLE_ENDIAN && codes.byteOffset % 4 === 0
      ? new Uint32Array(codes.buffer, codes.byteOffset, codes.length >> 2)
      : null;
  const out32 = words ? new Uint32Array(B.buffer, B.byteOffset, B.length >> 2) : null;
  for (let n = 0; n < N; n++) {
    const src = n * K;
    const dst = n * rowBytes;
    const zp = q.zeroPoints[n * q.blocksPerRow];
    if (bits === 8) {
      B.set(codes.subarray(src, src + K), dst);
      if (K < rowBytes) B.fill(zp, dst + K, dst + rowBytes);
    } else {
      const pairs = K >> 1;
      let p = words && (src & 3) === 0 && (dst & 3) === 0 ? packRow4(words, src >> 2, out32!, dst >> 2, K >> 3) : 0;
      for (; p < pairs; p++) B[dst + p] = codes[src + 2 * p] | (codes[src + 2 * p + 1] << 4);
      if (K & 1) B[dst + pairs] = codes[src + K - 1] | (zp << 4);
      const padFrom = dst + ((K + 1) >> 1);
      if (padFrom < dst + rowBytes) B.fill(zp | (zp << 4), padFrom, dst + rowBytes);
    }
  }
  // Scales / zero points: the quantized groups map 1:1 to MatMulNBits blocks, or one group spans the padded block.
  if (q.blocksPerRow !== blocks) throw new QuantError('MatMulNBits: group layout does not match the blocks');
  let zeroPoints: Uint8Array | null = null;
  if (!allDefault) {
    if (bits === 8) zeroPoints = q.zeroPoints.slice();
    else {
      const zpRow = (blocks + 1) >> 1;
      zeroPoints = new Uint8Array(N * zpRow);
      for (let n = 0; n < N; n++) {
        for (let b = 0; b < blocks; b++) {
          const z = q.zeroPoints[n * blocks + b];
          zeroPoints[n * zpRow + (b >> 1)] |= b & 1 ? z << 4 : z;
        }
      }
    }
  }
  return { K, N, bits, blockSize: bs, blocks, B, scales: q.scales.slice(), zeroPoints };
}

/**
 * 4-bit pairs of `count`·8 codes from words[from..] into out[to..] a word at a time: of x = w | w >>> 4 (codes
 * c0..c3 in the bytes of w), bytes 0 and 2 are c0 | c1 << 4 and c2 | c3 << 4. Returns the pairs done: all of them, or
 * 0 when a code is ≥ 16 (the bytes would then differ from the per-pair loop's; the caller redoes the row).
 */
function packRow4(words: Uint32Array, from: number, out: Uint32Array, to: number, count: number): number {
  let high = 0;
  for (let i = 0; i < count; i++) {
    const w0 = words[from + 2 * i];
    const w1 = words[from + 2 * i + 1];
    high |= w0 | w1;
    const x0 = w0 | (w0 >>> 4);
    const x1 = w1 | (w1 >>> 4);
    out[to + i] = (x0 & 0xff) | ((x0 >>> 8) & 0xff00) | ((x1 & 0xff) << 16) | ((x1 << 8) & 0xff000000);
  }
  return high & 0xf0f0f0f0 ? 0 : count * 4;
}

/** Reads codes [N][K] and per-block zero points back out of MatMulNBits bytes (the inverse of packMatMulNBits). */
export function unpackMatMulNBits(m: MatMulNBitsWeights): { codes: Uint8Array; zeroPoints: Uint8Array } {
  const { K, N, bits, blockSize, blocks, B } = m;
  const rowBytes = (blocks * blockSize * bits) / 8;
  if (B.length !== N * rowBytes) throw new QuantError(`MatMulNBits: B has ${B.length} bytes, expected ${N * rowBytes}`);
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / blockSize);
      const off = n * rowBytes + b * ((blockSize * bits) / 8);
      const within = k % blockSize;
      codes[n * K + k] = bits === 8 ? B[off + within] : (B[off + (within >> 1)] >> ((within & 1) * 4)) & 0x0f;
    }
  }
  const zeroPoints = new Uint8Array(N * blocks);
  const def = 1 << (bits - 1);
  if (!m.zeroPoints) zeroPoints.fill(def);
  else if (bits === 8) zeroPoints.set(m.zeroPoints);
  else {
    const zpRow = (blocks + 1) >> 1;
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < blocks; b++) {
        zeroPoints[n * blocks + b] = (m.zeroPoints[n * zpRow + (b >> 1)] >> ((b & 1) * 4)) & 0x0f;
      }
    }
  }
  return { codes, zeroPoints };
}

/** Dense fp32 [N][K] from MatMulNBits bytes: what the kernel multiplies by (for checks and round trips). */
export function dequantizeMatMulNBits(m: MatMulNBitsWeights): Float32Array {
  const { codes, zeroPoints } = unpackMatMulNBits(m);
  const out = new Float32Array(m.N * m.K);
  for (let n = 0; n < m.N; n++) {
    for (let k = 0; k < m.K; k++) {
      const g = n * m.blocks + Math.floor(k / m.blockSize);
      out[n * m.K + k] = (codes[n * m.K + k] - zeroPoints[g]) * m.scales[g] + 0; // + 0: no −0 under a negative scale
    }
  }
  return out;
}

/** How many of the K·N weights dequantize to exactly 0 (code = zero point, or a zero scale); padding not counted. */
export function matMulNBitsZeros(m: MatMulNBitsWeights): number {
  const { K, N, blocks, blockSize, B, scales } = m;
  let zeros = 0;
  if (m.bits === 4 && !m.zeroPoints) {
    // The fused path's output (symmetric 4-bit, default zero point 8): one pass over the packed bytes.
    const half = blockSize >> 1;
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < blocks; b++) {
        const valid = Math.min(blockSize, K - b * blockSize);
        if (scales[n * blocks + b] === 0) {
          zeros += valid;
          continue;
        }
        const off = (n * blocks + b) * half;
        for (let j = 0; j < valid; j++) if (((B[off + (j >> 1)] >> ((j & 1) << 2)) & 0x0f) === 8) zeros++;
      }
    }
    return zeros;
  }
  const { codes, zeroPoints } = unpackMatMulNBits(m);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = n * blocks + Math.floor(k / blockSize);
      if (codes[n * K + k] === zeroPoints[g] || scales[g] === 0) zeros++;
    }
  }
  return zeros;
}
