// In-memory tensors of a calibration / evaluation dataset, and the one error class for bad dataset files.

export type DataDtype =
  | 'float16'
  | 'float32'
  | 'float64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool';

export type DataTypedArray =
  | Uint16Array // float16 bits, uint16
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array // uint8, bool
  | Uint32Array
  | BigUint64Array;

/** A dense C-order array; the first dimension is the sample (batch) axis. */
export interface DataArray {
  dtype: DataDtype;
  dims: number[];
  data: DataTypedArray;
}

/** Calibration or evaluation data: one array per model input (same first dimension), and optional labels. */
export interface Dataset {
  /** Arrays keyed by model input name. */
  inputs: Map<string, DataArray>;
  /** Labels for evaluation (class ids [S] or next-token targets [S, T]); first dimension = samples. */
  labels?: DataArray;
  /** Number of samples (the shared first dimension). */
  samples: number;
  /** Where the data came from: a path, or a description of the random generator. */
  source: string;
  /** True when the data is random (recipe.calibration.random): the report says so. */
  random?: boolean;
}

export type DatasetErrorCode =
  | 'not-found'
  | 'unsupported-format'
  | 'bad-npy'
  | 'bad-npz'
  | 'bad-tensor'
  | 'too-large'
  | 'missing-input'
  | 'unknown-input'
  | 'dtype-mismatch'
  | 'rank-mismatch'
  | 'dim-mismatch'
  | 'sample-count-mismatch'
  | 'empty';

/** Bad dataset file or data that does not fit the model. Recognised across process boundaries by `name`. */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
  constructor(
    readonly code: DatasetErrorCode,
    message: string,
    /** Every problem found, when validation found several (the message lists them all too). */
    readonly problems: string[] = [message],
  ) {
    super(message);
  }
}

export const DTYPE_BYTES: Record<DataDtype, number> = {
  float16: 2,
  float32: 4,
  float64: 8,
  int8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  uint8: 1,
  uint16: 2,
  uint32: 4,
  uint64: 8,
  bool: 1,
};

/** Allocates a typed array of `dtype` over `length` elements, or views an existing (aligned) buffer. */
export function typedArrayFor(
  dtype: DataDtype,
  length: number,
  buffer?: ArrayBufferLike,
  byteOffset = 0,
): DataTypedArray {
  const b = buffer ?? new ArrayBuffer(length * DTYPE_BYTES[dtype]);
  switch (dtype) {
    case 'float16':
    case 'uint16':
      return new Uint16Array(b, byteOffset, length);
    case 'float32':
      return new Float32Array(b, byteOffset, length);
    case 'float64':
      return new Float64Array(b, byteOffset, length);
    case 'int8':
      return new Int8Array(b, byteOffset, length);
    case 'int16':
      return new Int16Array(b, byteOffset, length);
    case 'int32':
      return new Int32Array(b, byteOffset, length);
    case 'int64':
      return new BigInt64Array(b, byteOffset, length);
    case 'uint8':
    case 'bool':
      return new Uint8Array(b, byteOffset, length);
    case 'uint32':
      return new Uint32Array(b, byteOffset, length);
    case 'uint64':
      return new BigUint64Array(b, byteOffset, length);
  }
}

/** Product of dims, checked to be a safe element count. */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}
