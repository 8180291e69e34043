// The one table mapping ONNX element types to names, bit widths and how TensorProto stores them.
import { OnnxError } from './errors.js';

export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'int4'
  | 'uint4'
  | 'bool'
  | 'string'
  | 'float8e4m3fn'
  | 'float8e4m3fnuz'
  | 'float8e5m2'
  | 'float8e5m2fnuz'
  | 'float4e2m1'
  | 'float8e8m0'
  | 'uint2'
  | 'int2'
  | 'complex64'
  | 'complex128';

/** Which repeated field of TensorProto holds the values when raw_data is not used (ONNX spec). */
export type TypedField = 'floatData' | 'int32Data' | 'int64Data' | 'doubleData' | 'uint64Data' | 'stringData';

export interface DTypeInfo {
  name: DType;
  onnx: number;
  /** Bits per element (0 for string). */
  bits: number;
  field: TypedField;
  /** A real floating-point type (fp32/fp16/bf16/f64/float8/float4): what weight compression may rewrite. */
  float: boolean;
}

const rows: [DType, number, number, TypedField, boolean][] = [
  ['float32', 1, 32, 'floatData', true],
  ['uint8', 2, 8, 'int32Data', false],
  ['int8', 3, 8, 'int32Data', false],
  ['uint16', 4, 16, 'int32Data', false],
  ['int16', 5, 16, 'int32Data', false],
  ['int32', 6, 32, 'int32Data', false],
  ['int64', 7, 64, 'int64Data', false],
  ['string', 8, 0, 'stringData', false],
  ['bool', 9, 8, 'int32Data', false],
  ['float16', 10, 16, 'int32Data', true],
  ['float64', 11, 64, 'doubleData', true],
  ['uint32', 12, 32, 'uint64Data', false],
  ['uint64', 13, 64, 'uint64Data', false],
  ['complex64', 14, 64, 'floatData', false],
  ['complex128', 15, 128, 'doubleData', false],
  ['bfloat16', 16, 16, 'int32Data', true],
  ['float8e4m3fn', 17, 8, 'int32Data', true],
  ['float8e4m3fnuz', 18, 8, 'int32Data', true],
  ['float8e5m2', 19, 8, 'int32Data', true],
  ['float8e5m2fnuz', 20, 8, 'int32Data', true],
  ['uint4', 21, 4, 'int32Data', false],
  ['int4', 22, 4, 'int32Data', false],
  ['float4e2m1', 23, 4, 'int32Data', true],
  ['float8e8m0', 24, 8, 'int32Data', true],
  ['uint2', 25, 2, 'int32Data', false],
  ['int2', 26, 2, 'int32Data', false],
];

const byOnnx = new Map<number, DTypeInfo>();
const byName = new Map<DType, DTypeInfo>();
for (const [name, onnx, bits, field, float] of rows) {
  const info = { name, onnx, bits, field, float };
  byOnnx.set(onnx, info);
  byName.set(name, info);
}

export function dtypeInfo(d: DType): DTypeInfo {
  const info = byName.get(d);
  if (!info) throw new OnnxError('unsupported-dtype', `unknown dtype '${d}'`);
  return info;
}

export function dtypeFromOnnx(dataType: number): DType {
  const info = byOnnx.get(dataType);
  if (!info) throw new OnnxError('unsupported-dtype', `unknown ONNX data_type ${dataType}`);
  return info.name;
}

export function onnxFromDtype(d: DType): number {
  return dtypeInfo(d).onnx;
}

/** Bytes that `count` elements take in raw_data (sub-byte types packed, rounded up to whole bytes). */
export function rawByteLength(d: DType, count: number): number {
  const bits = dtypeInfo(d).bits;
  if (bits === 0) throw new OnnxError('unsupported-dtype', 'string tensors have no fixed byte size');
  return bits >= 8 ? count * (bits / 8) : Math.ceil((count * bits) / 8);
}

/** Entries the typed field (float_data, int32_data, …) must hold for `count` elements. */
export function typedFieldLength(d: DType, count: number): number {
  const info = dtypeInfo(d);
  if (d === 'complex64' || d === 'complex128') return 2 * count;
  if (info.bits === 4) return Math.ceil(count / 2); // int4/uint4/float4 are packed two per int32_data entry
  if (info.bits === 2) return Math.ceil(count / 4);
  return count;
}
