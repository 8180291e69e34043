// NumPy .npy reader and writer (format versions 1.0, 2.0 and 3.0). The header is a Python dict literal:
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }. Only plain numeric and bool dtypes are accepted;
// big-endian data is byte-swapped and Fortran-order data transposed to C order on read.
import {
  DatasetError,
  DTYPE_BYTES,
  elementCount,
  typedArrayFor,
  type DataArray,
  type DataDtype,
  type DataTypedArray,
} from './types.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const MAX_HEADER_BYTES = 1 << 20;

/** Bytes at the start of an .npy that always hold its whole header (magic, version, length, the dict). */
export const NPY_HEADER_READ_BYTES = 12 + MAX_HEADER_BYTES;

/** Largest array accepted from one .npy (2 GiB: a JS ArrayBuffer and one ORT feed stay practical). */
export const MAX_NPY_BYTES = 2 ** 31;

const KIND_TO_DTYPE: Record<string, DataDtype> = {
  f2: 'float16',
  f4: 'float32',
  f8: 'float64',
  i1: 'int8',
  i2: 'int16',
  i4: 'int32',
  i8: 'int64',
  u1: 'uint8',
  u2: 'uint16',
  u4: 'uint32',
  u8: 'uint64',
  b1: 'bool',
};

export interface NpyHeader {
  dtype: DataDtype;
  bigEndian: boolean;
  fortran: boolean;
  shape: number[];
  dataOffset: number;
}

function bad(label: string, message: string): DatasetError {
  return new DatasetError('bad-npy', `${label}: ${message}`);
}

/**
 * Parses the header at the start of an .npy (only its first bytes are needed: header-only inspection reads
 * NPY_HEADER_READ_BYTES of a file of any size).
 */
export function parseNpyHeader(bytes: Uint8Array, label: string): NpyHeader {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw bad(label, 'not a .npy file (bad magic)');
  const major = bytes[6];
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = bytes[8] | (bytes[9] << 8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw bad(label, 'truncated header');
    headerLen = (bytes[8] | (bytes[9] << 8) | (bytes[10] << 16)) + bytes[11] * 2 ** 24;
    start = 12;
  } else {
    throw bad(label, `unsupported .npy format version ${major}`);
  }
  if (headerLen > MAX_HEADER_BYTES) throw bad(label, `header of ${headerLen} bytes is implausibly large`);
  if (start + headerLen > bytes.length) throw bad(label, 'truncated header');
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));

  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  if (!descr) {
    throw bad(label, 'header has no simple descr (structured/record dtypes are not supported)');
  }
  const fortranMatch = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text);
  if (!fortranMatch) throw bad(label, 'header has no fortran_order');
  const shapeMatch = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (!shapeMatch) throw bad(label, 'header has no shape');
  const shape: number[] = [];
  for (const part of shapeMatch[1].split(',')) {
    const t = part.trim().replace(/L$/, '');
    if (t === '') continue;
    if (!/^\d+$/.test(t)) throw bad(label, `bad dimension "${t}" in shape`);
    const d = Number(t);
    if (!Number.isSafeInteger(d)) throw bad(label, `dimension ${t} is too large`);
    shape.push(d);
  }

  const d = descr[1];
  const order = d[0];
  const kind = d.slice(1);
  const dtype = KIND_TO_DTYPE[kind];
  if (!'<>|='.includes(order) || !dtype) {
    throw bad(
      label,
      `dtype "${d}" is not supported (use float16/32/64, int8/16/32/64, uint8/16/32/64 or bool; ` +
        'object and string arrays cannot be model inputs)',
    );
  }
  const bigEndian = order === '>' && DTYPE_BYTES[dtype] > 1;
  return { dtype, bigEndian, fortran: fortranMatch[1] === 'True', shape, dataOffset: start + headerLen };
}

function byteSwap(src: Uint8Array, itemBytes: number): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += itemBytes) {
    for (let j = 0; j < itemBytes; j++) out[i + j] = src[i + itemBytes - 1 - j];
  }
  return out;
}

/** Fortran (column-major) → C (row-major) order, for any rank, by walking C indices with an odometer. */
function fortranToC(src: DataTypedArray, dims: number[], dtype: DataDtype): DataTypedArray {
  const n = src.length;
  const out = typedArrayFor(dtype, n);
  const rank = dims.length;
  const fStride = new Array<number>(rank);
  let s = 1;
  for (let i = 0; i < rank; i++) {
    fStride[i] = s;
    s *= dims[i];
  }
  const idx = new Array<number>(rank).fill(0);
  let f = 0;
  for (let c = 0; c < n; c++) {
    (out as unknown as unknown[])[c] = (src as unknown as unknown[])[f];
    for (let a = rank - 1; a >= 0; a--) {
      idx[a]++;
      f += fStride[a];
      if (idx[a] < dims[a]) break;
      f -= fStride[a] * dims[a];
      idx[a] = 0;
    }
  }
  return out;
}

/**
 * The data bytes the header announces, checked against the limit and against the `available` bytes after the
 * header. `exact`: trailing bytes are refused too (an upload must be exactly one array).
 */
export function npyDataBytes(h: NpyHeader, available: number, label: string, exact = false): number {
  const byteLength = elementCount(h.shape) * DTYPE_BYTES[h.dtype];
  if (!Number.isSafeInteger(byteLength) || byteLength > MAX_NPY_BYTES) {
    throw new DatasetError(
      'too-large',
      `${label}: shape (${h.shape.join(', ')}) needs ${byteLength} bytes; the limit is ${MAX_NPY_BYTES}`,
    );
  }
  if (available < byteLength) {
    throw bad(label, `truncated: shape (${h.shape.join(', ')}) needs ${byteLength} data bytes, file has ${available}`);
  }
  if (exact && available > byteLength) {
    throw bad(label, `shape (${h.shape.join(', ')}) needs ${byteLength} data bytes, file has ${available}`);
  }
  return byteLength;
}

/** Decodes a .npy file. `label` names it in error messages. */
export function decodeNpy(bytes: Uint8Array, label = 'array'): DataArray {
  const h = parseNpyHeader(bytes, label);
  const count = elementCount(h.shape);
  const itemBytes = DTYPE_BYTES[h.dtype];
  const byteLength = npyDataBytes(h, bytes.length - h.dataOffset, label);
  let raw = bytes.subarray(h.dataOffset, h.dataOffset + byteLength);
  if (h.bigEndian) raw = byteSwap(raw, itemBytes);
  else if (raw.byteOffset % itemBytes !== 0) raw = raw.slice(); // typed-array views need aligned offsets
  let data = typedArrayFor(h.dtype, count, raw.buffer, raw.byteOffset);
  if (h.fortran && h.shape.length > 1) data = fortranToC(data, h.shape, h.dtype);
  if (h.dtype === 'bool') {
    for (const v of data as Uint8Array) if (v > 1) throw bad(label, `bool array holds the byte ${v}`);
  }
  return { dtype: h.dtype, dims: h.shape, data };
}

const DTYPE_TO_DESCR: Record<DataDtype, string> = {
  float16: '<f2',
  float32: '<f4',
  float64: '<f8',
  int8: '|i1',
  int16: '<i2',
  int32: '<i4',
  int64: '<i8',
  uint8: '|u1',
  uint16: '<u2',
  uint32: '<u4',
  uint64: '<u8',
  bool: '|b1',
};

/** Encodes a C-order array as .npy version 1.0 (little-endian hosts only, like every platform Node runs on). */
export function encodeNpy(arr: DataArray): Uint8Array {
  const shape = arr.dims.length === 1 ? `(${arr.dims[0]},)` : `(${arr.dims.join(', ')})`;
  let header = `{'descr': '${DTYPE_TO_DESCR[arr.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const data = new Uint8Array(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength);
  const out = new Uint8Array(10 + header.length + data.length);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  out[8] = header.length & 0xff;
  out[9] = header.length >> 8;
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(data, 10 + header.length);
  return out;
}
