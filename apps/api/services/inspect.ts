// Inspection of uploaded files. Runs inside a worker thread (see inspect-client.ts): decoding a model protobuf or a
// dataset is CPU work that must not stall the API's event loop. Errors are the engine's typed input errors
// (OnnxError / DatasetError), recognised by name on the other side.
import { open, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { loadModel, closeModel } from '../../../packages/engine/onnx/model.js';
import { graphTensors, walkGraphs } from '../../../packages/engine/onnx/walk.js';
import { inspectModel, type InspectReport } from '../../../packages/engine/onnx/inspect.js';
import { decodeNpz } from '../../../packages/engine/data/npz.js';
import { decodeTensorProto } from '../../../packages/engine/data/tensorpb.js';
import { DatasetError } from '../../../packages/engine/data/types.js';

/** The CLI's `inspect --json` report (one summary for both), plus the external data files the model names. */
export type ModelInspection = Omit<InspectReport, 'path'> & { externalDataFiles: string[] };

export async function inspectModelFile(args: { path: string }): Promise<ModelInspection> {
  const model = await loadModel(args.path);
  try {
    const { path: _path, ...report } = inspectModel(model);
    const external = new Set<string>();
    // Every tensor that can live outside the protobuf: initializers, sparse ones, Constant attributes, subgraphs.
    walkGraphs(model.proto, (v) => {
      for (const t of graphTensors(v.graph)) {
        for (const e of t.externalData) if (e.key === 'location') external.add(e.value);
      }
    });
    return { ...report, externalDataFiles: [...external].sort() };
  } finally {
    closeModel(model);
  }
}

export interface TensorSummary {
  name: string;
  dtype: string;
  shape: number[];
}

export interface DatasetInspection {
  format: 'npy' | 'npz' | 'pb';
  tensors: TensorSummary[];
}

const NPY_DTYPES: Record<string, string> = {
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

/**
 * Reads only the header of an .npy file (format 1.0–3.0), so an array of any size is summarised in constant memory;
 * checks that the file holds exactly the bytes the header announces.
 */
export async function npyHeader(path: string, fileSize: number): Promise<TensorSummary> {
  const label = basename(path);
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(fileSize, 65_536 + 12));
    await fh.read(head, 0, head.length, 0);
    if (head.length < 10 || head.toString('latin1', 1, 6) !== 'NUMPY' || head[0] !== 0x93) {
      throw new DatasetError('bad-npy', `${label}: not an .npy file (bad magic)`);
    }
    const major = head[6];
    const lenBytes = major === 1 ? 2 : 4;
    const headerLen = lenBytes === 2 ? head.readUInt16LE(8) : head.readUInt32LE(8);
    const dataOffset = 8 + lenBytes + headerLen;
    if (![1, 2, 3].includes(major) || dataOffset > head.length) {
      throw new DatasetError('bad-npy', `${label}: unsupported or oversized .npy header`);
    }
    const header = head.toString(major === 3 ? 'utf8' : 'latin1', 8 + lenBytes, dataOffset);
    const descr = /'descr'\s*:\s*'([<>|=])([a-z][0-9]+)'/.exec(header);
    const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
    const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
    if (!descr || !fortran || !shapeMatch) throw new DatasetError('bad-npy', `${label}: malformed .npy header`);
    const dtype = NPY_DTYPES[descr[2]];
    if (!dtype) throw new DatasetError('bad-npy', `${label}: dtype ${descr[1]}${descr[2]} is not supported`);
    const shape = shapeMatch[1]
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => {
        if (!/^\d{1,15}$/.test(s)) throw new DatasetError('bad-npy', `${label}: bad dimension "${s}"`);
        return Number(s);
      });
    const itemBytes = Number(descr[2].slice(1));
    const expected = shape.reduce((a, d) => a * d, 1) * itemBytes;
    if (fileSize - dataOffset !== expected) {
      throw new DatasetError(
        'bad-npy',
        `${label}: the header announces ${expected} data bytes but the file holds ${fileSize - dataOffset}`,
      );
    }
    return { name: 'array', dtype, shape };
  } finally {
    await fh.close();
  }
}

export async function inspectDatasetFile(args: {
  path: string;
  sizeBytes: number;
  clientName: string;
}): Promise<DatasetInspection> {
  const fh = await open(args.path, 'r');
  const magic = Buffer.alloc(6);
  await fh.read(magic, 0, 6, 0);
  await fh.close();
  const lower = args.clientName.toLowerCase();
  if (magic[0] === 0x93 && magic.toString('latin1', 1, 6) === 'NUMPY') {
    return { format: 'npy', tensors: [await npyHeader(args.path, args.sizeBytes)] };
  }
  if (magic[0] === 0x50 && magic[1] === 0x4b) {
    const arrays = decodeNpz(new Uint8Array(await readFile(args.path)), args.clientName);
    return {
      format: 'npz',
      tensors: [...arrays].map(([name, a]) => ({ name, dtype: a.dtype, shape: a.dims })),
    };
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
