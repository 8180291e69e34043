// What a dataset file holds (format, and each tensor's name, dtype and shape), told by the readers of this folder so
// that an upload is accepted by the same parser that will load it. An .npy is read header-only: an array of any size
// is summarised in constant memory. An .npz or .pb is decoded (their arrays are checked as the loader checks them).
import { open, readFile } from 'node:fs/promises';
import type { DatasetFormat, TensorSummary } from './fit.js';
import { NPY_HEADER_READ_BYTES, npyDataBytes, parseNpyHeader } from './npy.js';
import { decodeNpz } from './npz.js';
import { decodeTensorProto } from './tensorpb.js';
import { DatasetError } from './types.js';

export interface DatasetInspection {
  format: DatasetFormat;
  tensors: TensorSummary[];
}

/** Reads the first `length` bytes of a file (fewer when it is shorter). */
async function readHead(path: string, length: number): Promise<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const head = new Uint8Array(length);
    const { bytesRead } = await fh.read(head, 0, length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Summarises an .npy from its header alone; the file must hold exactly the data bytes the header announces. The
 * array has no name of its own: it is called "array".
 */
export async function inspectNpyFile(path: string, sizeBytes: number, label: string): Promise<TensorSummary> {
  const h = parseNpyHeader(await readHead(path, Math.min(sizeBytes, NPY_HEADER_READ_BYTES)), label);
  npyDataBytes(h, sizeBytes - h.dataOffset, label, true);
  return { name: 'array', dtype: h.dtype, shape: h.shape };
}

/**
 * The format (told by the file's magic bytes; a TensorProto has none, so by the name's extension) and tensors of an
 * uploaded dataset file. `clientName` names the file in messages and tells a .pb apart.
 */
export async function inspectDatasetFile(args: {
  path: string;
  sizeBytes: number;
  clientName: string;
}): Promise<DatasetInspection> {
  const magic = await readHead(args.path, 6);
  const lower = args.clientName.toLowerCase();
  if (magic[0] === 0x93 && Buffer.from(magic).toString('latin1', 1, 6) === 'NUMPY') {
    return { format: 'npy', tensors: [await inspectNpyFile(args.path, args.sizeBytes, args.clientName)] };
  }
  if (magic[0] === 0x50 && magic[1] === 0x4b) {
    const arrays = decodeNpz(new Uint8Array(await readFile(args.path)), args.clientName);
    return { format: 'npz', tensors: [...arrays].map(([name, a]) => ({ name, dtype: a.dtype, shape: a.dims })) };
  }
  if (lower.endsWith('.pb') || lower.endsWith('.tensorproto')) {
    const t = decodeTensorProto(new Uint8Array(await readFile(args.path)), args.clientName);
    return { format: 'pb', tensors: [{ name: t.name || 'tensor', dtype: t.array.dtype, shape: t.array.dims }] };
  }
  throw new DatasetError(
    'unsupported-format',
    `${args.clientName}: unknown dataset format (send .npz keyed by input name, .npy, or an ONNX TensorProto .pb)`,
  );
}
