// ONNX TensorProto files (the ONNX test-data layout: input_0.pb, input_1.pb, …) → DataArray. Only what a model input
// can be: numeric and bool tensors stored inline (raw_data or the typed repeated fields). External data is refused:
// a dataset file must be self-contained.
import { fromBinary } from '@bufbuild/protobuf';
import { TensorProto_DataLocation, TensorProto_DataType, TensorProtoSchema } from '../onnx/gen/onnx_pb.js';
import { MAX_NPY_BYTES } from './npy.js';
import { DatasetError, DTYPE_BYTES, elementCount, typedArrayFor, type DataArray, type DataDtype } from './types.js';

const ONNX_TO_DTYPE = new Map<number, DataDtype>([
  [TensorProto_DataType.FLOAT, 'float32'],
  [TensorProto_DataType.DOUBLE, 'float64'],
  [TensorProto_DataType.FLOAT16, 'float16'],
  [TensorProto_DataType.INT8, 'int8'],
  [TensorProto_DataType.INT16, 'int16'],
  [TensorProto_DataType.INT32, 'int32'],
  [TensorProto_DataType.INT64, 'int64'],
  [TensorProto_DataType.UINT8, 'uint8'],
  [TensorProto_DataType.UINT16, 'uint16'],
  [TensorProto_DataType.UINT32, 'uint32'],
  [TensorProto_DataType.UINT64, 'uint64'],
  [TensorProto_DataType.BOOL, 'bool'],
]);

/** ONNX TensorProto.DataType number → dataset dtype (undefined for types a dataset cannot hold). */
export function dtypeFromOnnx(elemType: number): DataDtype | undefined {
  return ONNX_TO_DTYPE.get(elemType);
}

export interface DecodedTensorFile {
  name: string;
  array: DataArray;
}

export function decodeTensorProto(bytes: Uint8Array, label = 'tensor'): DecodedTensorFile {
  let t;
  try {
    t = fromBinary(TensorProtoSchema, bytes);
  } catch (e) {
    throw new DatasetError('bad-tensor', `${label}: not an ONNX TensorProto (${(e as Error).message})`);
  }
  const dtype = ONNX_TO_DTYPE.get(t.dataType);
  if (!dtype) {
    const typeName = TensorProto_DataType[t.dataType] ?? String(t.dataType);
    throw new DatasetError('bad-tensor', `${label}: element type ${typeName} cannot be a dataset tensor`);
  }
  if (t.dataLocation === TensorProto_DataLocation.EXTERNAL || t.externalData.length) {
    throw new DatasetError('bad-tensor', `${label}: external data is not allowed in a dataset tensor`);
  }
  const dims = t.dims.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) throw new DatasetError('bad-tensor', `${label}: bad dimension ${d}`);
    return n;
  });
  const count = elementCount(dims);
  const bytesNeeded = count * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(bytesNeeded) || bytesNeeded > MAX_NPY_BYTES) {
    throw new DatasetError('too-large', `${label}: dims [${dims.join(', ')}] need ${bytesNeeded} bytes`);
  }
  const array: DataArray = { dtype, dims, data: typedArrayFor(dtype, count) };
  const out = array.data;
  if (t.rawData.length) {
    if (t.rawData.length !== bytesNeeded) {
      throw new DatasetError(
        'bad-tensor',
        `${label}: raw_data has ${t.rawData.length} bytes, dims [${dims.join(', ')}] need ${bytesNeeded}`,
      );
    }
    new Uint8Array(out.buffer).set(t.rawData);
  } else {
    const field = fieldFor(dtype, t);
    if (field.length !== count) {
      throw new DatasetError('bad-tensor', `${label}: holds ${field.length} values, dims need ${count}`);
    }
    for (let i = 0; i < count; i++) (out as unknown as (number | bigint)[])[i] = field[i];
  }
  return { name: t.name, array };
}

function fieldFor(
  dtype: DataDtype,
  t: { floatData: number[]; doubleData: number[]; int32Data: number[]; int64Data: bigint[]; uint64Data: bigint[] },
): (number | bigint)[] {
  switch (dtype) {
    case 'float32':
      return t.floatData;
    case 'float64':
      return t.doubleData;
    case 'int64':
      return t.int64Data;
    case 'uint32':
    case 'uint64':
      // ONNX stores uint32 and uint64 in uint64_data.
      return dtype === 'uint64' ? t.uint64Data : t.uint64Data.map(Number);
    default:
      // float16 (bits), int8/16/32, uint8/16, bool all live in int32_data.
      return t.int32Data;
  }
}
