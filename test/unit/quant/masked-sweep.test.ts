import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { quantizeMasked } from '../../../packages/engine/quant/rtn.js';
import { maskedSweepSimdActive, useMaskedSweepSimd } from '../../../packages/engine/quant/masked-sweep.js';
import type { QuantBits } from '../../../packages/engine/quant/types.js';
import { rng } from '../math/rng.js';

after(() => useMaskedSweepSimd(true));

/** quantizeMasked with its residual, through the SIMD kernel or the scalar loop; codes, scales and residual. */
function sweep(
  simd: boolean,
  w: Float32Array,
  mask: Uint8Array,
  w0: Float32Array,
  rows: number,
  cols: number,
  bits: QuantBits,
  bs: number,
  inPlace = false,
) {
  useMaskedSweepSimd(simd);
  const target = inPlace ? w.slice() : w;
  const out = inPlace ? target : new Float32Array(rows * cols).fill(NaN);
  try {
    const q = quantizeMasked(target, mask, rows, cols, bits, bs, undefined, 'none', { residual: { w: w0, out } });
    return { codes: q.codes, scales: q.scales, out };
  } finally {
    useMaskedSweepSimd(true);
  }
}

function sameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string) {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++)
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: [${i}] ${got[i]} vs ${want[i]}`);
}

function nmMask(n: number, r: () => number): Uint8Array {
  const mask = new Uint8Array(n);
  for (let i = 0; i + 3 < n; i += 4) {
    const a = Math.floor(r() * 4);
    const b = (a + 1 + Math.floor(r() * 3)) % 4;
    mask[i + a] = 1;
    mask[i + b] = 1;
  }
  return mask;
}

test('masked sweep: the SIMD kernel gives the scalar loop’s codes, scales and residual bit for bit', () => {
  assert.ok(maskedSweepSimdActive(), 'WebAssembly SIMD kernel compiled');
  const { uniform, normal } = rng(7);
  for (const [rows, cols, bs] of [
    [3, 64, 32],
    [7, 96, 4],
    [5, 256, 128],
    [300, 512, 32], // several chunks, the last one partial
    [2, 8192, 64],
    [4, 48, 16],
  ]) {
    for (const bits of [4, 8] as const) {
      const n = rows * cols;
      const w = Float32Array.from({ length: n }, () => normal() * (uniform() < 0.05 ? 1e-40 : 1));
      const w0 = Float32Array.from({ length: n }, () => normal());
      for (let i = 0; i < n; i += 97) w[i] = -0;
      for (let i = 0; i < Math.min(n, 2 * bs); i++) w[i] = 0; // all-zero groups (scale 0)
      for (let i = 3 * bs; i < Math.min(n, 4 * bs); i++) w[i] = i % 2 ? 1e-45 : -1e-45; // subnormal extremes
      const mask = nmMask(n, uniform);
      for (const inPlace of [false, true]) {
        const a = sweep(false, w, mask, w0, rows, cols, bits, bs, inPlace);
        const b = sweep(true, w, mask, w0, rows, cols, bits, bs, inPlace);
        const what = `${rows}×${cols} g${bs} ${bits}-bit${inPlace ? ' in place' : ''}`;
        sameBits(b.codes, a.codes, `${what} codes`);
        sameBits(b.scales, a.scales, `${what} scales`);
        sameBits(b.out, a.out, `${what} residual`);
      }
    }
  }
});

test('masked sweep: groups the kernel hands back (pruned NaN/Inf, mask bytes above 1) and a kept Inf, as the scalar loop', () => {
  const { normal, uniform } = rng(11);
  const rows = 6;
  const cols = 128;
  const n = rows * cols;
  const w = Float32Array.from({ length: n }, () => normal());
  const w0 = Float32Array.from({ length: n }, () => normal());
  const mask = nmMask(n, uniform);
  const prunedAt = (g: number) => g * 32 + [0, 1, 2, 3].find((j) => mask[g * 32 + j] === 0)!;
  w[prunedAt(1)] = NaN;
  w[prunedAt(5)] = Infinity;
  w[prunedAt(9)] = -Infinity;
  mask[13 * 32 + 5] = 2;
  const a = sweep(false, w, mask, w0, rows, cols, 4, 32);
  const b = sweep(true, w, mask, w0, rows, cols, 4, 32);
  sameBits(b.codes, a.codes, 'codes');
  sameBits(b.scales, a.scales, 'scales');
  sameBits(b.out, a.out, 'residual');
  const kept = [0, 1, 2, 3].find((j) => mask[17 * 32 + j] === 1)!;
  w[17 * 32 + kept] = Infinity; // row 4, group 1
  for (const simd of [false, true])
    assert.throws(() => sweep(simd, w, mask, w0, rows, cols, 4, 32), /non-finite weight in row 4, group 1/);
});

test('masked sweep: shapes the kernel does not take run the scalar loop (same answers)', () => {
  const { normal, uniform } = rng(3);
  for (const [rows, cols, bs] of [
    [3, 40, 32], // cols not a multiple of the block
    [2, 36, 6], // block not a multiple of 4
  ]) {
    const n = rows * cols;
    const w = Float32Array.from({ length: n }, () => normal());
    const w0 = Float32Array.from({ length: n }, () => normal());
    const mask = nmMask(n, uniform);
    const a = sweep(false, w, mask, w0, rows, cols, 4, bs);
    const b = sweep(true, w, mask, w0, rows, cols, 4, bs);
    sameBits(b.codes, a.codes, 'codes');
    sameBits(b.scales, a.scales, 'scales');
    sameBits(b.out, a.out, 'residual');
  }
});
