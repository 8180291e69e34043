import { test } from 'node:test';
import assert from 'node:assert/strict';
import { transposeCountNonFinite, transposeInto } from '../../../packages/engine/math/transpose.js';

function naive(
  src: ArrayLike<number>,
  srcOff: number,
  srcLd: number,
  rows: number,
  cols: number,
  dst: { [i: number]: number },
  dstOff: number,
  dstLd: number,
) {
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) dst[dstOff + c * dstLd + r] = src[srcOff + r * srcLd + c];
}

test('transposeInto: every shape, offset and leading dimension, as the element-wise definition (untouched elsewhere)', () => {
  for (const [rows, cols] of [
    [1, 1],
    [3, 5],
    [32, 32],
    [33, 67],
    [70, 4],
    [5, 130],
    [64, 3],
  ]) {
    for (const [srcPad, dstPad, srcOff, dstOff] of [
      [0, 0, 0, 0],
      [3, 1, 7, 2],
    ]) {
      const srcLd = cols + srcPad;
      const dstLd = rows + dstPad;
      const src = Float32Array.from({ length: srcOff + rows * srcLd }, (_, i) => i * 0.5 - 3);
      const got = new Float32Array(dstOff + cols * dstLd + 5).fill(-1);
      const want = got.slice();
      transposeInto(src, srcOff, srcLd, rows, cols, got, dstOff, dstLd);
      naive(src, srcOff, srcLd, rows, cols, want, dstOff, dstLd);
      assert.deepEqual(got, want, `${rows}×${cols} pad ${srcPad}/${dstPad} off ${srcOff}/${dstOff}`);
      const src8 = Uint8Array.from(src, (v) => v & 255);
      const got8 = new Uint8Array(got.length);
      const want8 = new Uint8Array(got.length);
      transposeInto(src8, srcOff, srcLd, rows, cols, got8, dstOff, dstLd);
      naive(src8, srcOff, srcLd, rows, cols, want8, dstOff, dstLd);
      assert.deepEqual(got8, want8);
    }
  }
});

test('transposeCountNonFinite: transposeInto bit for bit (NaN payloads included) and the NaN/±Inf it moved', () => {
  for (const [rows, cols] of [
    [1, 1],
    [3, 5],
    [33, 67],
    [70, 4],
    [5, 130],
  ]) {
    for (const [srcPad, dstPad, srcOff, dstOff] of [
      [0, 0, 0, 0],
      [3, 1, 7, 2],
    ]) {
      const srcLd = cols + srcPad;
      const dstLd = rows + dstPad;
      const src = Float32Array.from({ length: srcOff + rows * srcLd }, (_, i) => i * 0.5 - 3);
      const bits = new Uint32Array(src.buffer);
      // Inside the block: NaN (two payloads), ±Inf, the largest finite value; outside it: NaN that must not count.
      const at = (r: number, c: number) => srcOff + r * srcLd + c;
      bits[at(0, 0)] = 0x7fc00001;
      bits[at(rows - 1, cols - 1)] = 0xffa00000;
      if (rows * cols > 4) {
        src[at(1 % rows, 2 % cols)] = Infinity;
        src[at(2 % rows, 0)] = -Infinity;
      }
      src[at(rows - 1, 0)] = 3.4028234663852886e38;
      if (srcPad) src[at(0, cols)] = NaN;
      if (srcOff) src[0] = NaN;
      let want = 0;
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want += +!Number.isFinite(src[at(r, c)]);
      const got = new Float32Array(dstOff + cols * dstLd + 5).fill(-1);
      const ref = new Uint32Array(got.length).fill(new Uint32Array(got.buffer)[0]);
      naive(bits, srcOff, srcLd, rows, cols, ref, dstOff, dstLd);
      assert.equal(transposeCountNonFinite(src, srcOff, srcLd, rows, cols, got, dstOff, dstLd), want);
      assert.deepEqual(
        new Uint32Array(got.buffer),
        ref,
        `${rows}×${cols} pad ${srcPad}/${dstPad} off ${srcOff}/${dstOff}`,
      );
    }
  }
});
