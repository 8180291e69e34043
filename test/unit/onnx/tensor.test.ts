// Tensor access: narrow-float conversions checked exhaustively against independent bit-level references,
// sub-byte packing, every storage form (raw_data, typed fields), and dims/data consistency checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import {
  bfloatBitsToFloat,
  checkTensorData,
  dtypeFromOnnx,
  encodeFloats,
  encodeFloatsInto,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  floatToBfloatBits,
  floatToHalfBits,
  halfBitsToFloat,
  makeTensor,
  onnxFromDtype,
  readFloatsInto,
  tensorBytes,
  tensorToFloat32,
  tensorToFloat64,
} from '../../../packages/engine/onnx/tensor.js';
import type { DType } from '../../../packages/engine/onnx/tensor.js';
import { narrowFloatTable } from '../../../packages/engine/onnx/floats.js';
import { rng } from '../math/rng.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Independent fp16 decode: re-bias the exponent into a float32 bit pattern (subnormals via exact scaling). */
function halfRef(h: number): number {
  const s = (h >> 15) & 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return (s ? -1 : 1) * m * 2 ** -24;
  if (e === 31) return m ? NaN : s ? -Infinity : Infinity;
  u32[0] = (s << 31) | ((e - 15 + 127) << 23) | (m << 13);
  return f32[0];
}

test('fp16: all 65536 patterns decode like the bit-level reference and re-encode to themselves', () => {
  for (let h = 0; h < 65536; h++) {
    const v = halfBitsToFloat(h);
    const r = halfRef(h);
    if (Number.isNaN(r)) {
      assert.ok(Number.isNaN(v));
      assert.ok(Number.isNaN(halfBitsToFloat(floatToHalfBits(v))));
      continue;
    }
    assert.ok(Object.is(v, r), `0x${h.toString(16)}: ${v} vs ${r}`);
    assert.equal(floatToHalfBits(v), h);
  }
});

test('fp16: float32 → half rounds to nearest, ties to even, across every adjacent pair', () => {
  const next = (x: number, dir: 1 | -1) => {
    f32[0] = x;
    u32[0] += dir;
    return f32[0];
  };
  for (let h = 0; h < 0x7bff; h++) {
    const a = halfRef(h);
    const b = halfRef(h + 1);
    const mid = (a + b) / 2; // exact in float32 (half has 11 significant bits)
    assert.equal(floatToHalfBits(mid), h % 2 === 0 ? h : h + 1, `tie between 0x${h.toString(16)} and next`);
    assert.equal(floatToHalfBits(next(mid, 1)), h + 1);
    if (mid > 0) assert.equal(floatToHalfBits(next(mid, -1)), h);
  }
  assert.equal(floatToHalfBits(65519), 0x7bff);
  assert.equal(floatToHalfBits(65520), 0x7c00); // rounds past the largest half → +Inf
  assert.equal(floatToHalfBits(-1e9), 0xfc00);
  assert.equal(floatToHalfBits(2 ** -25), 0); // tie between 0 and the smallest subnormal → even (0)
  assert.equal(floatToHalfBits(1.5 * 2 ** -25), 1);
  assert.deepEqual(Array.from(float16ToFloat32(float32ToFloat16(new Float32Array([1, -2, 0.1])))), [
    1,
    -2,
    halfRef(floatToHalfBits(0.1)),
  ]);
});

test('bf16: every pattern round-trips; ties go to even; NaN stays NaN', () => {
  for (let b = 0; b < 65536; b++) {
    const v = bfloatBitsToFloat(b);
    if (Number.isNaN(v)) assert.ok(Number.isNaN(bfloatBitsToFloat(floatToBfloatBits(v))));
    else assert.equal(floatToBfloatBits(v), b);
  }
  assert.equal(bfloatBitsToFloat(floatToBfloatBits(1 + 2 ** -8)), 1); // tie → even mantissa
  assert.equal(bfloatBitsToFloat(floatToBfloatBits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
  assert.equal(bfloatBitsToFloat(floatToBfloatBits(1 + 2 ** -8 + 2 ** -20)), 1 + 2 ** -7);
  assert.deepEqual(Array.from(float32ToBfloat16(new Float32Array([1, -2]))), [0x3f80, 0xc000]);
});

test('float8 / float4 / e8m0 decode tables at their landmarks', () => {
  const t = narrowFloatTable;
  assert.equal(t('float8e4m3fn')[0x7e], 448);
  assert.ok(Number.isNaN(t('float8e4m3fn')[0x7f]));
  assert.equal(t('float8e4m3fn')[0x01], 2 ** -9);
  assert.equal(t('float8e4m3fn')[0x38], 1);
  assert.equal(t('float8e4m3fnuz')[0x7f], 240);
  assert.ok(Number.isNaN(t('float8e4m3fnuz')[0x80]));
  assert.equal(t('float8e5m2')[0x7b], 57344);
  assert.equal(t('float8e5m2')[0x7c], Infinity);
  assert.equal(t('float8e5m2')[0x3c], 1);
  assert.equal(t('float8e5m2fnuz')[0x7f], 57344);
  assert.ok(Number.isNaN(t('float8e5m2fnuz')[0x80]));
  assert.deepEqual(
    Array.from(t('float4e2m1').subarray(0, 16)),
    [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6],
  );
  assert.equal(t('float8e8m0')[127], 1);
  assert.ok(Number.isNaN(t('float8e8m0')[255]));
});

test('int4/uint4 pack two per byte, low nibble first, and unpack with sign', () => {
  const i4 = makeTensor('a', 'int4', [3], new Int8Array([-1, -8, 7]));
  assert.deepEqual(Array.from(i4.rawData), [0x8f, 0x07]);
  assert.deepEqual(Array.from(tensorToFloat32(undefined, i4)), [-1, -8, 7]);
  const u4 = makeTensor('b', 'uint4', [2, 2], [1, 2, 3, 15]);
  assert.deepEqual(Array.from(u4.rawData), [0x21, 0xf3]);
  assert.deepEqual(Array.from(tensorToFloat32(undefined, u4)), [1, 2, 3, 15]);
  const u2 = makeTensor('c', 'uint2', [5], [0, 1, 2, 3, 1]);
  assert.deepEqual(Array.from(u2.rawData), [0b11100100, 0b01]);
  assert.deepEqual(Array.from(tensorToFloat64(undefined, u2)), [0, 1, 2, 3, 1]);
  assert.deepEqual(
    Array.from(tensorToFloat64(undefined, makeTensor('d', 'int2', [4], [-2, -1, 0, 1]))),
    [-2, -1, 0, 1],
  );
});

test('every numeric dtype: makeTensor → tensorToFloat64 gives the values back; ONNX codes round-trip', () => {
  const cases: [DType, number[]][] = [
    ['float32', [1.5, -2, 0]],
    ['float64', [1e300, -1e-300, 3]],
    ['float16', [1, -0.5, 65504]],
    ['bfloat16', [1, -256, 0.5]],
    ['int8', [-128, 127, 0]],
    ['uint8', [0, 255, 7]],
    ['int16', [-32768, 32767, 1]],
    ['uint16', [65535, 0, 9]],
    ['int32', [-(2 ** 31), 2 ** 31 - 1, 5]],
    ['uint32', [2 ** 32 - 1, 0, 3]],
    ['int64', [-(2 ** 53), 2 ** 53, -1]],
    ['uint64', [2 ** 53, 0, 1]],
    ['bool', [1, 0, 1]],
  ];
  for (const [dtype, values] of cases) {
    const t = makeTensor('t', dtype, [3], values);
    assert.deepEqual(Array.from(tensorToFloat64(undefined, t)), values, dtype);
    assert.equal(dtypeFromOnnx(onnxFromDtype(dtype)), dtype);
  }
  assert.throws(() => dtypeFromOnnx(99), { code: 'unsupported-dtype' });
  assert.throws(() => tensorToFloat32(undefined, makeTensor('s', 'string', [1], ['x'])), { code: 'unsupported-dtype' });
});

test('typed-field storage (float_data, int32_data for fp16/int8/int4, int64_data, double_data, uint64_data)', () => {
  const mk = (dataType: number, dims: number[], init: Record<string, unknown>) =>
    create(TensorProtoSchema, { name: 't', dataType, dims: dims.map(BigInt), ...init });
  assert.deepEqual(Array.from(tensorToFloat32(undefined, mk(1, [2], { floatData: [1.5, -3] }))), [1.5, -3]);
  assert.deepEqual(Array.from(tensorToFloat32(undefined, mk(10, [2], { int32Data: [0x3c00, 0xc000] }))), [1, -2]);
  assert.deepEqual(Array.from(tensorToFloat32(undefined, mk(3, [2], { int32Data: [-5, 100] }))), [-5, 100]);
  assert.deepEqual(Array.from(tensorToFloat32(undefined, mk(22, [3], { int32Data: [0x8f, 0x07] }))), [-1, -8, 7]);
  assert.deepEqual(Array.from(tensorToFloat64(undefined, mk(7, [2], { int64Data: [-7n, 9n] }))), [-7, 9]);
  assert.deepEqual(Array.from(tensorToFloat64(undefined, mk(11, [1], { doubleData: [0.1] }))), [0.1]);
  assert.deepEqual(
    Array.from(tensorToFloat64(undefined, mk(12, [2], { uint64Data: [4294967295n, 1n] }))),
    [4294967295, 1],
  );
  assert.deepEqual(Array.from(tensorBytes(undefined, mk(10, [1], { int32Data: [0x3c00] }))), [0x00, 0x3c]);
  assert.throws(() => checkTensorData(undefined, mk(1, [3], { floatData: [1, 2] })), {
    code: 'raw-data-size-mismatch',
  });
  assert.throws(() => checkTensorData(undefined, mk(1, [3], {})), { code: 'raw-data-size-mismatch' });
  assert.throws(() => checkTensorData(undefined, mk(1, [2], { rawData: new Uint8Array(7) })), {
    code: 'raw-data-size-mismatch',
  });
  checkTensorData(undefined, mk(1, [0, 5], {}));
});

/** raw_data of `bits` (2-byte patterns) at byte offset `shift` into its buffer (protobuf puts raw_data anywhere). */
function narrowTensor(dtype: 'float16' | 'bfloat16', bits: Uint16Array, shift: number) {
  const t = makeTensor('w', dtype, [bits.length], bits);
  const buf = new Uint8Array(bits.byteLength + shift);
  buf.set(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength), shift);
  t.rawData = buf.subarray(shift);
  return t;
}

test('fp16/bf16 tensors decode through the lookup table and the bit shift like the scalar decoders, aligned or not', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const cases = [
    ['float16', halfBitsToFloat],
    ['bfloat16', bfloatBitsToFloat],
  ] as const;
  for (const [dtype, scalar] of cases)
    for (const shift of [0, 1]) {
      const t = narrowTensor(dtype, all, shift);
      const got32 = tensorToFloat32(undefined, t);
      const got64 = tensorToFloat64(undefined, t);
      for (let h = 0; h < 65536; h++) {
        const want = Math.fround(scalar(h));
        if (Number.isNaN(want))
          assert.ok(Number.isNaN(got32[h]) && Number.isNaN(got64[h]), `${dtype} 0x${h.toString(16)}`);
        else
          assert.ok(Object.is(got32[h], want) && Object.is(got64[h], want), `${dtype} 0x${h.toString(16)} +${shift}`);
      }
      // The shift keeps a bf16 NaN's payload (the scalar path goes through a float and may not).
      if (dtype === 'bfloat16' && shift === 0) {
        const u = new Uint32Array(got32.buffer);
        for (let h = 0; h < 65536; h++) assert.equal(u[h], (h << 16) >>> 0);
      }
    }
});

test('readFloatsInto: fp32 into the output itself, fp16/bf16 through scratch, any element range; bad calls rejected', () => {
  const { uniform } = rng(12);
  const values = Float32Array.from({ length: 1000 }, () => (uniform() - 0.5) * 8);
  for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
    const t = makeTensor('w', dtype, [values.length], encodeFloats(dtype, values));
    const want = tensorToFloat32(undefined, t);
    const out = new Float32Array(300);
    readFloatsInto(undefined, t, 123, out, new Uint8Array(700));
    assert.deepEqual(out, want.subarray(123, 423), dtype);
    if (dtype !== 'float32')
      assert.throws(() => readFloatsInto(undefined, t, 0, out, new Uint8Array(10)), /needs 600 bytes of scratch/);
  }
  const ints = makeTensor('i', 'int8', [4], Int8Array.of(1, 2, 3, 4));
  assert.throws(() => readFloatsInto(undefined, ints, 0, new Float32Array(4)), /not a float32\/float16\/bfloat16/);
});

test('encodeFloatsInto equals encodeFloats byte for byte (fp32 as a view, fp16 on the bits, bf16), into any buffer', () => {
  const { uniform, normal } = rng(13);
  const values = Float32Array.from({ length: 4099 }, (_, i) =>
    i % 4 < 2
      ? i % 8 === 1
        ? -0
        : 0
      : i % 97 === 0
        ? [NaN, Infinity, -Infinity, 1e-8, 65520][i % 5]
        : normal() * 10 ** (uniform() * 6 - 4),
  );
  for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
    const want = encodeFloats(dtype, values);
    assert.deepEqual(encodeFloatsInto(dtype, values), want, `${dtype} fresh`);
    if (dtype === 'float32') {
      assert.equal(encodeFloatsInto(dtype, values).buffer, values.buffer, 'a view, no copy');
      continue;
    }
    for (const shift of [0, 1]) {
      const room = new Uint8Array(want.length + 8);
      const got = encodeFloatsInto(dtype, values, room.subarray(shift));
      assert.deepEqual(got, want, `${dtype} into +${shift}`);
    }
    assert.throws(() => encodeFloatsInto(dtype, values, new Uint8Array(10)), /needs 8198 bytes/);
  }
});
