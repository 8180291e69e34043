// Bit-exact conversions between float32 and the narrow float formats ONNX stores (fp16, bf16, float8, float4).
// float32 → narrow rounds to nearest, ties to even, like numpy / ONNX reference; NaN stays NaN.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half (binary16) bits → float32 value. */
export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 value → IEEE half bits, round to nearest even; overflow → ±Inf. */
export function floatToHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0 even after rounding
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++; // carry into the exponent is the correct rounding
  return sign | r;
}

/** bfloat16 bits → float32 value. */
export function bfloatBitsToFloat(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** float32 value → bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
export function floatToBfloatBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/**
 * floatToHalfBits over an array. A Float32Array's values in the half's normal range (float32 exponents 113–142) are
 * rounded on their bits in place, without a branch on the rounding: adding 0xfff plus the kept part's lowest bit
 * carries out of the 13 dropped bits exactly when they exceed half, or equal it on odd (a carry into the exponent is
 * the correct rounding, into exponent 143 the half's Inf); the rest take floatToHalfBits. The same bits either way.
 */
export function float32ToFloat16(values: Float32Array | ArrayLike<number>, into?: Uint16Array): Uint16Array {
  const out = into ? into.subarray(0, values.length) : new Uint16Array(values.length);
  if (out.length !== values.length)
    throw new RangeError(`float32ToFloat16: ${values.length} values, room for ${into!.length}`);
  if (!(values instanceof Float32Array)) {
    for (let i = 0; i < values.length; i++) out[i] = floatToHalfBits(values[i]);
    return out;
  }
  const u = new Int32Array(values.buffer, values.byteOffset, values.length); // int32: no uint32 heap numbers
  for (let i = 0; i < u.length; i++) {
    const bits = u[i];
    const e = (bits >>> 23) & 0xff;
    if (e >= 113 && e <= 142) {
      const r = (bits & 0x7fffffff) + 0xfff + ((bits >>> 13) & 1);
      out[i] = ((bits >>> 16) & 0x8000) | ((r >>> 13) - (112 << 10));
    } else if ((bits & 0x7fffffff) === 0)
      out[i] = (bits >>> 16) & 0x8000; // ±0: half of a 2:4-pruned weight, so not through the scalar call
    else out[i] = floatToHalfBits(values[i]);
  }
  return out;
}

let HALF_TABLE: Float32Array | undefined;
/**
 * Every IEEE half value as float32 (exact), indexed by its bits (256 KiB, built once): a lookup per element where
 * halfBitsToFloat's power of two costs ~75 ns (fp16 weights of a 100M model: 6 s of a 13 s magnitude job).
 */
export function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) HALF_TABLE[b] = halfBitsToFloat(b);
  }
  return HALF_TABLE;
}

export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const t = halfTable();
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
  return out;
}

export function float32ToBfloat16(values: Float32Array | ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToBfloatBits(values[i]);
  return out;
}

export function bfloat16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) o32[i] = bits[i] << 16;
  return out;
}

/** Decode table for an 8-bit (or narrower) float format: 256 float values indexed by the byte. */
function minifloatTable(expBits: number, mantBits: number, bias: number, kind: 'ieee' | 'fn' | 'fnuz'): Float32Array {
  const t = new Float32Array(256);
  const expMax = (1 << expBits) - 1;
  const total = 1 + expBits + mantBits;
  for (let b = 0; b < 1 << total; b++) {
    const sign = b >> (total - 1) ? -1 : 1;
    const exp = (b >> mantBits) & expMax;
    const mant = b & ((1 << mantBits) - 1);
    let v: number;
    if (kind === 'fnuz' && b === 1 << (total - 1))
      v = NaN; // the "negative zero" pattern is the only NaN
    else if (kind === 'fn' && exp === expMax && mant === (1 << mantBits) - 1 && mantBits === 3)
      v = NaN; // e4m3fn
    else if (kind === 'ieee' && exp === expMax) v = mant ? NaN : sign * Infinity;
    else if (exp === 0) v = sign * mant * 2 ** (1 - bias - mantBits);
    else v = sign * (1 + mant / (1 << mantBits)) * 2 ** (exp - bias);
    t[b] = v;
  }
  return t;
}

/** Lazily built decode tables, keyed by the DType name they decode. */
const tables = new Map<string, Float32Array>();
export function narrowFloatTable(
  dtype: 'float8e4m3fn' | 'float8e4m3fnuz' | 'float8e5m2' | 'float8e5m2fnuz' | 'float4e2m1' | 'float8e8m0',
): Float32Array {
  let t = tables.get(dtype);
  if (t) return t;
  switch (dtype) {
    case 'float8e4m3fn':
      t = minifloatTable(4, 3, 7, 'fn');
      break;
    case 'float8e4m3fnuz':
      t = minifloatTable(4, 3, 8, 'fnuz');
      break;
    case 'float8e5m2':
      t = minifloatTable(5, 2, 15, 'ieee');
      break;
    case 'float8e5m2fnuz':
      t = minifloatTable(5, 2, 16, 'fnuz');
      break;
    case 'float4e2m1':
      t = minifloatTable(2, 1, 1, 'fn'); // no NaN/Inf in e2m1: 'fn' with mantBits 1 never matches the NaN rule
      break;
    case 'float8e8m0': {
      t = new Float32Array(256);
      for (let b = 0; b < 256; b++) t[b] = b === 255 ? NaN : 2 ** (b - 127);
      break;
    }
  }
  tables.set(dtype, t);
  return t;
}
