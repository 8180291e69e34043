// Tensor access: raw little-endian bytes wherever a tensor's data lives, conversion to float32/float64, and
// building tensors from typed arrays. Shape and dtype cost no I/O; external data is read only when asked for.
import { create } from '@bufbuild/protobuf';
import type { TensorProto } from './gen/onnx_pb.js';
import { TensorProtoSchema } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';
import type { DType } from './dtypes.js';
import { dtypeFromOnnx, dtypeInfo, onnxFromDtype, rawByteLength, typedFieldLength } from './dtypes.js';
import { externalRef, isExternal } from './external.js';
import type { LazyRaw } from './lazy.js';
import { LAZY_MIN_BYTES, SpillFile, attachLazy, lazyRawOf, rawDataLength, readLazyInto } from './lazy.js';
import type { LoadedModel } from './loaded.js';
import {
  bfloatBitsToFloat,
  float32ToFloat16,
  floatToBfloatBits,
  floatToHalfBits,
  halfTable,
  narrowFloatTable,
} from './floats.js';

export type { DType } from './dtypes.js';
export { dtypeFromOnnx, onnxFromDtype, rawByteLength } from './dtypes.js';
export {
  float32ToFloat16,
  float16ToFloat32,
  float32ToBfloat16,
  bfloat16ToFloat32,
  halfBitsToFloat,
  floatToHalfBits,
  bfloatBitsToFloat,
  floatToBfloatBits,
} from './floats.js';

/** Typed-array views read and write the host's byte order; ONNX stores little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Largest tensor this engine materialises: one Node buffer. Larger claims are rejected as 'dims-too-large'. */
export const MAX_TENSOR_BYTES = 2 ** 32 - 1;

/** Element count from dims; rejects negative dims and counts that are not safe integers. */
export function elementCount(dims: readonly (bigint | number)[], what = 'tensor'): number {
  let n = 1n;
  for (const d of dims) {
    const b = BigInt(d);
    if (b < 0n) throw new OnnxError('dims-too-large', `${what} has a negative dimension ${b}`);
    n *= b;
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new OnnxError('dims-too-large', `${what} claims ${n}+ elements`);
  }
  return Number(n);
}

export function tensorDims(t: TensorProto): number[] {
  return t.dims.map((d) => Number(d));
}

export function tensorDtype(t: TensorProto): DType {
  return dtypeFromOnnx(t.dataType);
}

/** Bytes the tensor's data takes in raw form; throws 'dims-too-large' past MAX_TENSOR_BYTES. */
export function tensorByteLength(t: TensorProto): number {
  const dtype = tensorDtype(t);
  const n = elementCount(t.dims, `tensor '${t.name}'`);
  if (dtype === 'string') return 0;
  const bytes = rawByteLength(dtype, n);
  if (bytes > MAX_TENSOR_BYTES)
    throw new OnnxError(
      'dims-too-large',
      `tensor '${t.name}' claims ${n} elements (${bytes} bytes), more than one tensor can hold here (${MAX_TENSOR_BYTES} bytes)`,
    );
  return bytes;
}

/** Where the tensor's values are stored, without reading them. */
export function tensorStorage(t: TensorProto): 'external' | 'raw' | 'typed' | 'empty' {
  if (isExternal(t)) return 'external';
  if (rawDataLength(t) > 0) return 'raw';
  const f = dtypeInfo(tensorDtype(t)).field;
  return (t[f] as unknown[]).length > 0 ? 'typed' : 'empty';
}

/** Checks that stored data matches dims (raw_data size, typed field length, external range). No allocation. */
export function checkTensorData(model: LoadedModel | undefined, t: TensorProto): void {
  const dtype = tensorDtype(t);
  const n = elementCount(t.dims, `tensor '${t.name}'`);
  const bytes = tensorByteLength(t);
  const storage = tensorStorage(t);
  if (storage === 'external') {
    const ref = externalRef(t);
    if (!model) throw new OnnxError('external-missing', `tensor '${t.name}' has external data but no model folder`);
    const file = model.external.open(ref.location);
    if (ref.length !== undefined && ref.length !== bytes)
      throw new OnnxError(
        'raw-data-size-mismatch',
        `tensor '${t.name}': external length ${ref.length} but dims ${JSON.stringify(tensorDims(t))} need ${bytes} bytes`,
      );
    if (ref.offset + bytes > file.size)
      throw new OnnxError(
        'external-out-of-range',
        `tensor '${t.name}': external data [${ref.offset}, ${ref.offset + bytes}) lies past the end of '${ref.location}' (${file.size} bytes)`,
      );
    return;
  }
  if (storage === 'raw') {
    const have = rawDataLength(t);
    if (have !== bytes)
      throw new OnnxError(
        'raw-data-size-mismatch',
        `tensor '${t.name}': raw_data has ${have} bytes but dims ${JSON.stringify(tensorDims(t))} of ${dtype} need ${bytes}`,
      );
    return;
  }
  const field = dtypeInfo(dtype).field;
  const have = (t[field] as unknown[]).length;
  const want = dtype === 'string' ? n : typedFieldLength(dtype, n);
  if (have !== want)
    throw new OnnxError(
      'raw-data-size-mismatch',
      `tensor '${t.name}': ${field} has ${have} entries but dims ${JSON.stringify(tensorDims(t))} of ${dtype} need ${want}`,
    );
}

/**
 * Little-endian raw bytes of a numeric tensor, wherever they live: a view of raw_data (lazily read raw_data is read
 * now and kept, so in-place edits stay with the tensor), a fresh buffer for external data and typed fields. To read
 * without keeping a copy, use readTensorBytesInto or scanTensorBytes.
 */
export function tensorBytes(model: LoadedModel | undefined, t: TensorProto): Uint8Array {
  const dtype = tensorDtype(t);
  if (dtype === 'string') throw new OnnxError('unsupported-dtype', `tensor '${t.name}' holds strings, not bytes`);
  const bytes = tensorByteLength(t);
  const storage = tensorStorage(t);
  if (storage === 'external') {
    if (!model) throw new OnnxError('external-missing', `tensor '${t.name}' has external data but no model was given`);
    checkTensorData(model, t);
    return model.external.read(externalRef(t), bytes);
  }
  if (storage === 'raw' || bytes === 0) {
    if (rawDataLength(t) !== bytes) checkTensorData(model, t);
    return t.rawData;
  }
  checkTensorData(model, t);
  return typedFieldToBytes(t, dtype, bytes);
}

/**
 * Copies `into.length` raw bytes of a numeric tensor, starting `at` bytes into it, without keeping a copy of the
 * tensor: lazily read raw_data and external data are read from their files, in-memory bytes copied.
 */
export function readTensorBytesInto(
  model: LoadedModel | undefined,
  t: TensorProto,
  at: number,
  into: Uint8Array,
): void {
  const length = tensorByteLength(t);
  if (at < 0 || at + into.length > length)
    throw new OnnxError('invalid-argument', `read of [${at}, ${at + into.length}) outside tensor '${t.name}'`);
  const storage = tensorStorage(t);
  if (storage === 'external') {
    if (!model) throw new OnnxError('external-missing', `tensor '${t.name}' has external data but no model was given`);
    checkTensorData(model, t);
    model.external.readInto(externalRef(t), length, into, at);
    return;
  }
  const lazy = lazyRawOf(t);
  if (lazy) {
    if (lazy.length !== length) checkTensorData(model, t);
    readLazyInto(lazy, into, at);
    return;
  }
  into.set(tensorBytes(model, t).subarray(at, at + into.length));
}

/** The float dtypes a weight can be read as float32 from and written back to without loss of what it stored. */
export type StoredFloat = 'float32' | 'float16' | 'bfloat16';

export function isStoredFloat(dtype: DType): dtype is StoredFloat {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16';
}

/**
 * Decodes `out.length` elements of a float32/float16/bfloat16 tensor, from element `at`, into `out` without a copy of
 * the tensor: fp32 bytes land in `out` itself; 2-byte floats are read into `scratch` (the caller's reused buffer, at
 * least 2·out.length bytes) and widened exactly. The narrow-float path is what lets fp16 checkpoints take the
 * engine's stored-layout fast paths (sparsity-stored.ts, methods/slim.ts) instead of a canonical copy per layer.
 */
export function readFloatsInto(
  model: LoadedModel | undefined,
  t: TensorProto,
  at: number,
  out: Float32Array,
  scratch?: Uint8Array,
): void {
  const dtype = tensorDtype(t);
  if (dtype === 'float32') {
    readTensorBytesInto(model, t, at * 4, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
    return;
  }
  if (dtype !== 'float16' && dtype !== 'bfloat16')
    throw new OnnxError('unsupported-dtype', `tensor '${t.name}' is ${dtype}, not a float32/float16/bfloat16 weight`);
  const bytes = 2 * out.length;
  if (!scratch || scratch.length < bytes)
    throw new OnnxError('invalid-argument', `readFloatsInto: ${dtype} needs ${bytes} bytes of scratch`);
  const raw = scratch.subarray(0, bytes);
  readTensorBytesInto(model, t, at * 2, raw);
  decodeInto(dtype, raw, out.length, out, t.name);
}

/**
 * The stored bytes of float32 values in `dtype`: fp32 as a view of `values` (no copy), fp16/bf16 rounded to nearest
 * even into `into` (at least 2·values.length bytes; a fresh buffer without it). Bit-identical to encodeFloats.
 */
export function encodeFloatsInto(dtype: StoredFloat, values: Float32Array, into?: Uint8Array): Uint8Array {
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bytes = 2 * values.length;
  if (into && into.length < bytes)
    throw new OnnxError('invalid-argument', `encodeFloatsInto: ${dtype} needs ${bytes} bytes, got ${into.length}`);
  if (!into || !LITTLE_ENDIAN || into.byteOffset % 2 !== 0) {
    const enc = encodeFloats(dtype, values);
    if (!into) return enc;
    into.set(enc);
    return into.subarray(0, bytes);
  }
  const out = into.subarray(0, bytes);
  const h = new Uint16Array(out.buffer, out.byteOffset, values.length);
  if (dtype === 'float16') float32ToFloat16(values, h);
  else for (let i = 0; i < values.length; i++) h[i] = floatToBfloatBits(values[i]);
  return out;
}

/** In-memory raw_data of a tensor as it is (no read, no copy), or undefined when its bytes live elsewhere. */
export function residentRawData(t: TensorProto): Uint8Array | undefined {
  return !isExternal(t) && !lazyRawOf(t) && t.rawData.length > 0 ? t.rawData : undefined;
}

/** Bytes per chunk of scanTensorBytes: small enough to stay in cache and to cost nothing fresh, few enough calls. */
const SCAN_CHUNK = 1 << 20;
let scanScratch: Uint8Array | undefined;
let scanBusy = false;

/**
 * Calls `visit` on consecutive chunks of a numeric tensor's raw little-endian bytes, in order, without making a
 * copy of the tensor: in-memory bytes are passed as views when 8-byte aligned, otherwise (protobuf puts raw_data at
 * any offset; lazy and external bytes are on disk) read chunk by chunk into one reused 1 MiB scratch. Every chunk
 * but the last is a multiple of 8 bytes and starts 8-byte aligned, so callers may view it as Uint32Array /
 * Float64Array; no element straddles two chunks. A chunk is only valid during its `visit` call.
 */
export function scanTensorBytes(
  model: LoadedModel | undefined,
  t: TensorProto,
  visit: (chunk: Uint8Array, at: number) => void,
): void {
  const storage = tensorStorage(t);
  if (storage === 'typed' || storage === 'empty') {
    const bytes = tensorBytes(model, t);
    visit(bytes.byteOffset % 8 === 0 ? bytes : bytes.slice(), 0);
    return;
  }
  const length = tensorByteLength(t);
  const resident = residentRawData(t);
  if (resident && resident.length !== length) checkTensorData(model, t);
  if (resident && resident.byteOffset % 8 === 0) {
    for (let at = 0; at < length; at += SCAN_CHUNK) visit(resident.subarray(at, Math.min(length, at + SCAN_CHUNK)), at);
    return;
  }
  // Reentrant calls (a visitor that scans another tensor) get their own scratch.
  const owner = !scanBusy;
  const scratch = owner ? (scanScratch ??= new Uint8Array(SCAN_CHUNK)) : new Uint8Array(SCAN_CHUNK);
  scanBusy = true;
  try {
    for (let at = 0; at < length; at += SCAN_CHUNK) {
      const chunk = scratch.subarray(0, Math.min(SCAN_CHUNK, length - at));
      readTensorBytesInto(model, t, at, chunk);
      visit(chunk, at);
    }
  } finally {
    if (owner) scanBusy = false;
  }
}

function typedFieldToBytes(t: TensorProto, dtype: DType, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const dv = new DataView(out.buffer);
  const info = dtypeInfo(dtype);
  switch (info.field) {
    case 'floatData':
      t.floatData.forEach((v, i) => dv.setFloat32(i * 4, v, true));
      break;
    case 'doubleData':
      t.doubleData.forEach((v, i) => dv.setFloat64(i * 8, v, true));
      break;
    case 'int64Data':
      t.int64Data.forEach((v, i) => dv.setBigInt64(i * 8, BigInt.asIntN(64, v), true));
      break;
    case 'uint64Data':
      if (dtype === 'uint32') t.uint64Data.forEach((v, i) => dv.setUint32(i * 4, Number(v), true));
      else t.uint64Data.forEach((v, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, v), true));
      break;
    case 'int32Data': {
      const d = t.int32Data;
      if (info.bits === 8 || info.bits < 8) for (let i = 0; i < d.length; i++) out[i] = d[i] & 0xff;
      else if (info.bits === 16) for (let i = 0; i < d.length; i++) dv.setUint16(i * 2, d[i] & 0xffff, true);
      else for (let i = 0; i < d.length; i++) dv.setInt32(i * 4, d[i], true);
      break;
    }
    default:
      throw new OnnxError('unsupported-dtype', `tensor '${t.name}' of ${dtype} has no byte form`);
  }
  return out;
}

/** Decodes raw little-endian bytes of `dtype` into `out` (float32 or float64), element by element. */
function decodeInto(dtype: DType, raw: Uint8Array, n: number, out: Float32Array | Float64Array, name: string): void {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case 'float32':
      if (raw.byteOffset % 4 === 0 && out instanceof Float32Array)
        out.set(new Float32Array(raw.buffer, raw.byteOffset, n));
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return;
    case 'float64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return;
    case 'float16': {
      const t = halfTable();
      if (LITTLE_ENDIAN && raw.byteOffset % 2 === 0) {
        const h = new Uint16Array(raw.buffer, raw.byteOffset, n);
        for (let i = 0; i < n; i++) out[i] = t[h[i]];
      } else for (let i = 0; i < n; i++) out[i] = t[dv.getUint16(i * 2, true)];
      return;
    }
    case 'bfloat16':
      if (LITTLE_ENDIAN && raw.byteOffset % 2 === 0 && out instanceof Float32Array) {
        // bf16 is the top half of a float32: the bits shift into place (NaN payloads kept).
        const h = new Uint16Array(raw.buffer, raw.byteOffset, n);
        const o = new Int32Array(out.buffer, out.byteOffset, n);
        for (let i = 0; i < n; i++) o[i] = h[i] << 16;
      } else for (let i = 0; i < n; i++) out[i] = bfloatBitsToFloat(dv.getUint16(i * 2, true));
      return;
    case 'int8':
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      return;
    case 'uint8':
    case 'bool':
      for (let i = 0; i < n; i++) out[i] = raw[i];
      return;
    case 'int16':
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true);
      return;
    case 'uint16':
      for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true);
      return;
    case 'int32':
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
      return;
    case 'uint32':
      for (let i = 0; i < n; i++) out[i] = dv.getUint32(i * 4, true);
      return;
    case 'int64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(i * 8, true));
      return;
    case 'uint64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigUint64(i * 8, true));
      return;
    case 'int4':
      for (let i = 0; i < n; i++) out[i] = ((raw[i >> 1] >> ((i & 1) * 4)) << 28) >> 28;
      return;
    case 'uint4':
      for (let i = 0; i < n; i++) out[i] = (raw[i >> 1] >> ((i & 1) * 4)) & 0xf;
      return;
    case 'int2':
      for (let i = 0; i < n; i++) out[i] = ((raw[i >> 2] >> ((i & 3) * 2)) << 30) >> 30;
      return;
    case 'uint2':
      for (let i = 0; i < n; i++) out[i] = (raw[i >> 2] >> ((i & 3) * 2)) & 3;
      return;
    case 'float4e2m1': {
      const table = narrowFloatTable(dtype);
      for (let i = 0; i < n; i++) out[i] = table[(raw[i >> 1] >> ((i & 1) * 4)) & 0xf];
      return;
    }
    case 'float8e4m3fn':
    case 'float8e4m3fnuz':
    case 'float8e5m2':
    case 'float8e5m2fnuz':
    case 'float8e8m0': {
      const table = narrowFloatTable(dtype);
      for (let i = 0; i < n; i++) out[i] = table[raw[i]];
      return;
    }
    default:
      throw new OnnxError('unsupported-dtype', `tensor '${name}' of ${dtype} cannot be read as real numbers`);
  }
}

export function tensorToFloat32(model: LoadedModel | undefined, t: TensorProto): Float32Array {
  const n = elementCount(t.dims, `tensor '${t.name}'`);
  const out = new Float32Array(n);
  if (tensorDtype(t) === 'float32' && (lazyRawOf(t) || isExternal(t))) {
    // Still on disk: read straight into the result (no second copy kept as raw_data).
    readTensorBytesInto(model, t, 0, new Uint8Array(out.buffer));
    return out;
  }
  decodeInto(tensorDtype(t), tensorBytes(model, t), n, out, t.name);
  return out;
}

export function tensorToFloat64(model: LoadedModel | undefined, t: TensorProto): Float64Array {
  const n = elementCount(t.dims, `tensor '${t.name}'`);
  const out = new Float64Array(n);
  decodeInto(tensorDtype(t), tensorBytes(model, t), n, out, t.name);
  return out;
}

/** Encodes real values into raw little-endian bytes of a float dtype (round to nearest even for narrow types). */
export function encodeFloats(dtype: DType, values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(rawByteLength(dtype, n));
  const dv = new DataView(out.buffer);
  switch (dtype) {
    case 'float32':
      new Float32Array(out.buffer).set(values);
      break;
    case 'float64':
      new Float64Array(out.buffer).set(values);
      break;
    case 'float16':
      // A Float32Array takes float32ToFloat16's branch-free rounding on its bits; other arrays (float64 values) keep
      // the scalar conversion. The same bits either way.
      if (LITTLE_ENDIAN && values instanceof Float32Array) float32ToFloat16(values, new Uint16Array(out.buffer));
      else for (let i = 0; i < n; i++) dv.setUint16(i * 2, floatToHalfBits(values[i]), true);
      break;
    case 'bfloat16':
      for (let i = 0; i < n; i++) dv.setUint16(i * 2, floatToBfloatBits(values[i]), true);
      break;
    default:
      throw new OnnxError('unsupported-dtype', `writing real values as ${dtype} is not supported`);
  }
  return out;
}

/** Raw bytes for `data` given as numbers or a typed array of the element type (int4/uint4: unpacked, one per value). */
function toRawBytes(dtype: DType, count: number, data: ArrayBufferView | number[]): Uint8Array {
  const info = dtypeInfo(dtype);
  if (info.bits < 8) {
    const src = ArrayBuffer.isView(data) ? (data as unknown as ArrayLike<number>) : data;
    if (src.length !== count)
      throw new OnnxError('invalid-argument', `${dtype} tensor needs ${count} unpacked values, got ${src.length}`);
    const per = 8 / info.bits;
    const mask = (1 << info.bits) - 1;
    const out = new Uint8Array(Math.ceil(count / per));
    for (let i = 0; i < count; i++) out[Math.floor(i / per)] |= (src[i] & mask) << ((i % per) * info.bits);
    return out;
  }
  const bytes = rawByteLength(dtype, count);
  if (ArrayBuffer.isView(data)) {
    if (data.byteLength !== bytes)
      throw new OnnxError('invalid-argument', `${dtype} tensor of ${count} elements needs ${bytes} bytes`);
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  }
  if (data.length !== count)
    throw new OnnxError('invalid-argument', `${dtype} tensor of ${count} elements got ${data.length} values`);
  if (info.float) {
    if (dtype.startsWith('float8'))
      throw new OnnxError('unsupported-dtype', `${dtype} from numbers: pass the encoded bytes as a Uint8Array`);
    return encodeFloats(dtype, data);
  }
  const out = new Uint8Array(bytes);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    const v = data[i];
    switch (dtype) {
      case 'int8':
        dv.setInt8(i, v);
        break;
      case 'uint8':
      case 'bool':
        dv.setUint8(i, v ? (dtype === 'bool' ? 1 : v) : 0);
        break;
      case 'int16':
        dv.setInt16(i * 2, v, true);
        break;
      case 'uint16':
        dv.setUint16(i * 2, v, true);
        break;
      case 'int32':
        dv.setInt32(i * 4, v, true);
        break;
      case 'uint32':
        dv.setUint32(i * 4, v, true);
        break;
      case 'int64':
        dv.setBigInt64(i * 8, BigInt(v), true);
        break;
      case 'uint64':
        dv.setBigUint64(i * 8, BigInt(v), true);
        break;
      default:
        throw new OnnxError('unsupported-dtype', `${dtype} tensors cannot be built from numbers`);
    }
  }
  return out;
}

/**
 * A TensorProto with raw_data. `data` is a typed array of the element type (its bytes are copied), or numbers.
 * int4/uint4 (and int2/uint2, float4) take one unpacked value per element and are packed low nibble first.
 * Strings: pass `string[]`.
 */
export function makeTensor(
  name: string,
  dtype: DType,
  dims: number[],
  data: ArrayBufferView | number[] | string[],
): TensorProto {
  const count = elementCount(dims, `tensor '${name}'`);
  const t = create(TensorProtoSchema, { name, dataType: onnxFromDtype(dtype), dims: dims.map((d) => BigInt(d)) });
  if (dtype === 'string') {
    if (!Array.isArray(data) || data.length !== count || data.some((s) => typeof s !== 'string'))
      throw new OnnxError('invalid-argument', `string tensor '${name}' needs ${count} strings`);
    t.stringData = (data as string[]).map((s) => new TextEncoder().encode(s));
    return t;
  }
  if (Array.isArray(data) && data.some((v) => typeof v !== 'number'))
    throw new OnnxError('invalid-argument', `tensor '${name}' of ${dtype} takes numbers`);
  t.rawData = toRawBytes(dtype, count, data as ArrayBufferView | number[]);
  return t;
}

/** Replaces a tensor's data with raw bytes in place: clears typed fields and any external reference. */
export function setTensorRawData(t: TensorProto, raw: Uint8Array): void {
  t.rawData = raw;
  t.floatData = [];
  t.int32Data = [];
  t.int64Data = [];
  t.doubleData = [];
  t.uint64Data = [];
  t.externalData = [];
  delete (t as Partial<TensorProto>).dataLocation;
}

/**
 * The model's scratch file for rewritten tensor bytes (created on first use, closed by closeModel): named in
 * `model.spillDir` when it is set and writable, else unlinked in os.tmpdir().
 */
export function spillFileOf(model: LoadedModel): SpillFile {
  if (!model.spill) {
    let named: SpillFile | undefined;
    if (model.spillDir !== undefined) {
      try {
        named = SpillFile.createNamed(model.spillDir);
      } catch {
        named = undefined; // the unlinked kind still keeps the weights out of process memory
      }
    }
    model.spill = named ?? SpillFile.create();
  }
  return model.spill;
}

/** Like setTensorRawData, with the new raw bytes at a file range (a spill file) instead of in memory. */
export function setTensorRawRange(t: TensorProto, raw: LazyRaw): void {
  setTensorRawData(t, new Uint8Array(0));
  attachLazy(t, raw);
}

/**
 * Sets a rewritten weight's bytes: large ones go to the model's spill file (the tensor reads them from there when
 * used, and the writer streams them out), so a method that rewrites every weight of a billion-parameter model does
 * not hold a second copy of the model in process memory until the write stage. Small ones, or any when the spill
 * file cannot be written, stay in memory. `raw` is not kept when spilled; a `borrowed` one (a caller's reused buffer)
 * is copied when it stays in memory.
 */
export function storeRewrittenBytes(model: LoadedModel, t: TensorProto, raw: Uint8Array, borrowed = false): void {
  if (raw.length >= LAZY_MIN_BYTES) {
    let spill: SpillFile | undefined;
    let offset = -1;
    try {
      spill = spillFileOf(model);
      offset = spill.append(raw);
    } catch {
      offset = -1;
    }
    if (spill && offset >= 0) {
      setTensorRawRange(t, { source: spill, offset, length: raw.length });
      return;
    }
  }
  setTensorRawData(t, borrowed ? raw.slice() : raw);
}
