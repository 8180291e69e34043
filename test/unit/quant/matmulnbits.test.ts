// packMatMulNBits' 4-bit bytes against the pair-by-pair packing it replaced (codes[2p] | codes[2p+1] << 4 per row,
// the odd last code paired with the zero point, the padding filled with it): the word-at-a-time loop must write the
// same bytes for every layout it takes and hand the others to the pair loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packMatMulNBits } from '../../../packages/engine/quant/matmulnbits.js';
import type { QuantizedMatrix } from '../../../packages/engine/quant/types.js';

function pairBytes(q: QuantizedMatrix, bs: number): Uint8Array {
  const { rows: N, cols: K, codes } = q;
  const blocks = Math.ceil(K / bs);
  const rowBytes = (blocks * bs) / 2;
  const B = new Uint8Array(N * rowBytes);
  for (let n = 0; n < N; n++) {
    const src = n * K;
    const dst = n * rowBytes;
    const zp = q.zeroPoints[n * q.blocksPerRow];
    const pairs = K >> 1;
    for (let p = 0; p < pairs; p++) B[dst + p] = codes[src + 2 * p] | (codes[src + 2 * p + 1] << 4);
    if (K & 1) B[dst + pairs] = codes[src + K - 1] | (zp << 4);
    B.fill(zp | (zp << 4), dst + ((K + 1) >> 1), dst + rowBytes);
  }
  return B;
}

test('packMatMulNBits: 4-bit bytes equal the pair-by-pair packing (aligned, unaligned, odd K, per-channel)', () => {
  let s = 3;
  const r = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  for (const [N, K, groupSize, offset] of [
    [5, 64, 32, 0],
    [3, 96, 16, 0],
    [4, 36, 'channel', 0], // K % 8 = 4: the last pairs by the pair loop; padded to 64
    [3, 33, 'channel', 0], // odd K: the last code with the zero point
    [6, 64, 32, 1], // codes at an odd byte offset: the pair loop throughout
    [2, 40, 'channel', 2],
  ] as const) {
    const bs = groupSize === 'channel' ? K : groupSize;
    const blocksPerRow = Math.ceil(K / bs);
    const codes = new Uint8Array(N * K + offset).subarray(offset);
    for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(r() * 16);
    const q: QuantizedMatrix = {
      rows: N,
      cols: K,
      bits: 4,
      blockSize: bs,
      blocksPerRow,
      symmetric: true,
      codes,
      scales: Float32Array.from({ length: N * blocksPerRow }, () => r()),
      zeroPoints: new Uint8Array(N * blocksPerRow).fill(8),
    };
    const packed = packMatMulNBits(q);
    assert.deepEqual(packed.B, pairBytes(q, packed.blockSize), `${N}×${K} g${groupSize} +${offset}`);
    // A code out of the 4-bit range: the word loop hands the row back, and the bytes stay the pair loop's.
    codes[K + 3] = 0x1f;
    assert.deepEqual(packMatMulNBits(q).B, pairBytes(q, packed.blockSize), `${N}×${K} code ≥ 16`);
  }
});
