// The bad-input corpus, generated in code (no binaries committed): every file is built from a small valid model
// (x[1,64] → MatMul W1[64,64] → Relu → MatMul W2[64,32] → y; the engine skips layers under 1024 weights) and then broken in exactly one way. Each builder
// returns the bytes a client would upload.
import { create, toBinary } from '@bufbuild/protobuf';
import { strToU8, zipSync } from 'fflate';
import {
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
} from '../../packages/engine/onnx/gen/onnx_pb.js';
import type { ModelProto } from '../../packages/engine/onnx/gen/onnx_pb.js';
import { GraphBuilder } from '../../packages/engine/onnx/builder.js';
import { makeTensor } from '../../packages/engine/onnx/tensor.js';

/** Deterministic floats in [-1, 1) (mulberry32), so every run uploads the same bytes. */
export function floats(n: number, seed = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

export function pseudoRandomBytes(n: number, seed = 7): Uint8Array {
  const f = floats(n, seed);
  return Uint8Array.from(f, (v) => Math.floor((v + 1) * 128) & 0xff);
}

const encode = (p: ModelProto) => toBinary(ModelProtoSchema, p);

/** The valid base: a two-layer MLP whose K (64, 64) fits 2:4. `k1`/`k2` change the reduction sizes. */
export function mlpProto(opts: { k1?: number; k2?: number; w1?: Float32Array; inputDtype?: 'float32' | 'int32' } = {}) {
  const k1 = opts.k1 ?? 64;
  const k2 = opts.k2 ?? 64;
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', opts.inputDtype ?? 'float32', [1, k1]);
  const h = b.node(
    'MatMul',
    [x, b.initializer('W1', 'float32', [k1, k2], opts.w1 ?? floats(k1 * k2, 1))],
    {},
    {
      name: 'mm1',
    },
  );
  const r = b.node('Relu', [h], {}, { name: 'relu' });
  const y = b.node(
    'MatMul',
    [r, b.initializer('W2', 'float32', [k2, 32], floats(k2 * 32, 2))],
    {},
    {
      name: 'mm2',
      output: 'y',
    },
  );
  b.output(y, 'float32', [1, 32]);
  return b.build().proto;
}

export const validModel = () => encode(mlpProto());

/** Same node list, rewired so that relu feeds mm1 and mm1 feeds relu: a cycle ORT cannot sort. */
export function cycleModel(): Uint8Array {
  const p = mlpProto();
  const g = p.graph!;
  const mm1 = g.node.find((n) => n.name === 'mm1')!;
  const relu = g.node.find((n) => n.name === 'relu')!;
  // mm1(relu_out, W1) → h; relu(h) → relu_out; x feeds nothing.
  mm1.input[0] = relu.output[0];
  return encode(p);
}

/** mm2 reads a value nothing produces and no input or initializer declares. */
export function missingInputModel(): Uint8Array {
  const p = mlpProto();
  p.graph!.node.find((n) => n.name === 'mm2')!.input[0] = 'does_not_exist';
  return encode(p);
}

/** W1 claims 10^6 × 10^6 = 10^12 elements while holding 512. */
export function dimsBombModel(): Uint8Array {
  const p = mlpProto();
  p.graph!.initializer.find((t) => t.name === 'W1')!.dims = [1_000_000n, 1_000_000n];
  return encode(p);
}

/** W1's dims say 64×65 but raw_data holds 64×64 floats. */
export function rawDataMismatchModel(): Uint8Array {
  const p = mlpProto();
  p.graph!.initializer.find((t) => t.name === 'W1')!.dims = [64n, 65n];
  return encode(p);
}

/** The model input is int32 but feeds a float MatMul: a type error at session creation. */
export const wrongDtypeModel = () => encode(mlpProto({ inputDtype: 'int32' }));

/** W1 holds NaN, +Inf and −Inf among finite weights. */
export function nonFiniteModel(): Uint8Array {
  const w1 = floats(64 * 64, 1);
  w1[0] = NaN;
  w1[33] = Infinity;
  w1[100] = -Infinity;
  return encode(mlpProto({ w1 }));
}

/** A node of an operator no ONNX opset defines, in the default domain. */
export function unsupportedOpModel(): Uint8Array {
  const p = mlpProto();
  const g = p.graph!;
  const relu = g.node.find((n) => n.name === 'relu')!;
  relu.opType = 'FrobnicateDefinitelyNotAnOp';
  return encode(p);
}

/** K = 66 and 70: no layer's reduction axis is a multiple of M = 4. */
export const kNotDivisibleModel = () => encode(mlpProto({ k1: 66, k2: 70 }));

/** A TensorProto: valid protobuf, not a model. */
export const tensorProtoBytes = () => toBinary(TensorProtoSchema, makeTensor('t', 'float32', [2, 2], [1, 2, 3, 4]));

/** W1 moved to an external file `location` (offset/length as given); returns the model and the side file. */
export function externalModel(
  location: string,
  opts: { offset?: number; length?: number } = {},
): { model: Uint8Array; data: Uint8Array } {
  const p = mlpProto();
  const w1 = p.graph!.initializer.find((t) => t.name === 'W1')!;
  const data = new Uint8Array(w1.rawData);
  w1.rawData = new Uint8Array(0);
  w1.dataLocation = 1; // EXTERNAL
  w1.externalData = [
    { key: 'location', value: location },
    { key: 'offset', value: String(opts.offset ?? 0) },
    { key: 'length', value: String(opts.length ?? data.length) },
  ].map((e) => create(StringStringEntryProtoSchema, e));
  return { model: encode(p), data };
}

/** The base model with a wider hidden layer (64 → 68): a soup ingredient that does not match the base. */
export function widerModel(): Uint8Array {
  return encode(mlpProto({ k2: 68 }));
}

/** A zip whose entries climb out of the extraction folder. */
export function zipWithTraversal(): Uint8Array {
  return zipSync({
    '../../evil.onnx': validModel(),
    '/etc/cron.d/evil': strToU8('* * * * * root true\n'),
    'ok.onnx': validModel(),
  });
}

/** A ustar archive with one entry named `name` (512-byte header + data padded to 512). */
export function tarWithEntry(name: string, data: Uint8Array): Uint8Array {
  const header = new Uint8Array(512);
  const put = (s: string, off: number) => header.set(strToU8(s), off);
  put(name, 0);
  put('0000644\0', 100);
  put('0000000\0', 108);
  put('0000000\0', 116);
  put(data.length.toString(8).padStart(11, '0') + '\0', 124);
  put('00000000000\0', 136);
  put('        ', 148);
  header[156] = 0x30; // regular file
  put('ustar\0', 257);
  put('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
  padded.set(data);
  const out = new Uint8Array(512 + padded.length + 1024);
  out.set(header);
  out.set(padded, 512);
  return out;
}

// ---- datasets -------------------------------------------------------------------------------------------------

const DESCR: Record<string, string> = { float32: '<f4', float64: '<f8', int32: '<i4', int64: '<i8' };

/** An .npy (format 1.0) file. */
export function npy(dtype: keyof typeof DESCR, shape: number[], data?: ArrayBufferView): Uint8Array {
  const n = shape.reduce((a, d) => a * d, 1);
  const bytes = { float32: 4, float64: 8, int32: 4, int64: 8 }[dtype]!;
  const body = data ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(n * bytes);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + body.length);
  out.set([0x93, ...strToU8('NUMPY'), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(strToU8(header), 10);
  out.set(body, 10 + header.length);
  return out;
}

/** An .npz holding the given arrays by name. */
export function npz(arrays: Record<string, Uint8Array>): Uint8Array {
  return zipSync(Object.fromEntries(Object.entries(arrays).map(([k, v]) => [`${k}.npy`, v])));
}

export const goodCalibration = () => npz({ x: npy('float32', [4, 64], floats(256, 3)) });
