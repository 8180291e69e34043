// onnx/floats.ts float32ToFloat16: the bit-level route for Float32Arrays against floatToHalfBits per value (the same
// half bits), over every float32 exponent, the rounding boundaries and the special values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { float32ToFloat16, floatToHalfBits } from '../../../packages/engine/onnx/floats.js';
import { rng } from '../math/rng.js';

function bitsArray(pattern: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(pattern).buffer);
}

test('float32ToFloat16 on a Float32Array writes floatToHalfBits of every value', () => {
  const { uniform } = rng(11);
  const pattern: number[] = [];
  // Every exponent and sign, with random mantissas and the mantissas at the half's rounding boundaries.
  for (let e = 0; e < 256; e++)
    for (const sign of [0, 0x80000000]) {
      const top = (sign | (e << 23)) >>> 0;
      for (const low of [0, 1, 0xfff, 0x1000, 0x1001, 0x2fff, 0x3000, 0x3001, 0x7fe000, 0x7ff000, 0x7fefff, 0x7fffff])
        pattern.push((top | low) >>> 0);
      for (let i = 0; i < 64; i++) pattern.push((top | Math.floor(uniform() * 0x800000)) >>> 0);
    }
  const x = bitsArray(pattern);
  const want = Uint16Array.from(x, (v) => floatToHalfBits(v));
  assert.deepEqual(float32ToFloat16(x), want);
  // A view at an offset, and a plain array (the scalar route), give the same bits.
  const padded = new Float32Array(x.length + 3);
  padded.set(x, 3);
  assert.deepEqual(float32ToFloat16(padded.subarray(3)), want);
  assert.deepEqual(float32ToFloat16(Array.from(x)), want);
});

test('float32ToFloat16: overflow to ±Inf, the largest half, the smallest normal half, NaN', () => {
  const x = Float32Array.of(65504, 65519.99, 65520, -65520, 2 ** -14, -(2 ** -14), 2 ** -14 * (1 - 2 ** -12), NaN, -0);
  assert.deepEqual(
    Array.from(float32ToFloat16(x), (h) => h.toString(16)),
    ['7bff', '7bff', '7c00', 'fc00', '400', '8400', '400', '7e00', '8000'],
  );
});
