// Streaming encoder for ModelProto. protobuf-es's toBinary() would build the whole file in one buffer (a second
// full copy of every weight); instead the model is turned into a list of pieces: small encoded parts, plus
// references to large tensor bytes (in memory or in a source side file), written out one after another. Each
// message is encoded as "its light fields via toBinary" followed by its tensor/graph-carrying fields, so field
// order can differ from the input, while meaning, repeated-field order and unknown fields are kept.
import { create, toBinary } from '@bufbuild/protobuf';
import type {
  AttributeProto,
  FunctionProto,
  GraphProto,
  ModelProto,
  NodeProto,
  SparseTensorProto,
  TensorProto,
  TrainingInfoProto,
} from './gen/onnx_pb.js';
import {
  AttributeProtoSchema,
  FunctionProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  SparseTensorProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
  TrainingInfoProtoSchema,
} from './gen/onnx_pb.js';
import type { ExternalRef } from './external.js';
import { externalRef } from './external.js';
import type { LoadedModel } from './loaded.js';
import { tensorByteLength, tensorBytes, tensorDtype, tensorStorage } from './tensor.js';

/** Bytes of a source side file, read only while writing. */
export interface LazyPiece {
  ref: ExternalRef;
  length: number;
}
export type Piece = Uint8Array | LazyPiece;

export class PieceList {
  readonly pieces: Piece[] = [];
  size = 0;
  push(p: Piece): void {
    this.pieces.push(p);
    this.size += p instanceof Uint8Array ? p.length : p.length;
  }
  append(other: PieceList): void {
    for (const p of other.pieces) this.pieces.push(p);
    this.size += other.size;
  }
}

export interface ExternalPlan {
  /** File name of the side file, relative to the model's folder. */
  location: string;
  /** Tensors of at least this many bytes go to the side file. */
  sizeThreshold: number;
  /** Offsets are multiples of this. */
  alignment: number;
}

export interface EncodedModel {
  model: PieceList;
  /** Side-file content (padding included) when an ExternalPlan was given. */
  data: PieceList;
}

/** Raw bytes at least this long are referenced rather than copied into the encoded output. */
const BIG_BYTES = 64 * 1024;

function varint(v: number, out: number[]): void {
  while (v > 127) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function lenHeader(field: number, length: number): Uint8Array {
  const out: number[] = [];
  varint(field * 8 + 2, out);
  varint(length, out);
  return new Uint8Array(out);
}

/** A copy sharing the prototype (proto2 presence lives in own properties) without the listed fields. */
function without<T extends object>(msg: T, fields: (keyof T)[]): T {
  const copy = Object.assign(Object.create(Object.getPrototypeOf(msg)), msg) as T;
  for (const f of fields) {
    if (Array.isArray(copy[f])) (copy as Record<keyof T, unknown>)[f] = [];
    else delete copy[f];
  }
  return copy;
}

const ZEROS = new Uint8Array(64 * 1024);

export function encodeModel(model: LoadedModel, external?: ExternalPlan): EncodedModel {
  const data = new PieceList();
  const enc = new Encoder(model, external, data);
  return { model: enc.model(model.proto), data };
}

class Encoder {
  private inlineDepth = 0;
  constructor(
    private readonly loaded: LoadedModel,
    private readonly plan: ExternalPlan | undefined,
    private readonly data: PieceList,
  ) {}

  private field(out: PieceList, no: number, sub: PieceList): void {
    out.push(lenHeader(no, sub.size));
    out.append(sub);
  }

  private light<T extends object>(schema: Parameters<typeof toBinary>[0], msg: T, fields: (keyof T)[]): PieceList {
    const out = new PieceList();
    const bytes = toBinary(schema, without(msg, fields) as never);
    if (bytes.length) out.push(bytes);
    return out;
  }

  model(m: ModelProto): PieceList {
    const out = this.light(ModelProtoSchema, m, ['graph', 'trainingInfo', 'functions']);
    if (m.graph) this.field(out, 7, this.graph(m.graph));
    for (const t of m.trainingInfo) this.field(out, 20, this.training(t));
    for (const f of m.functions) this.field(out, 25, this.function(f));
    return out;
  }

  /** Function bodies and training graphs keep their tensors inline: runtimes resolve external data for the main graph. */
  private inlineOnly<T>(fn: () => T): T {
    this.inlineDepth++;
    try {
      return fn();
    } finally {
      this.inlineDepth--;
    }
  }

  private training(t: TrainingInfoProto): PieceList {
    return this.inlineOnly(() => {
      const out = this.light(TrainingInfoProtoSchema, t, ['initialization', 'algorithm']);
      if (t.initialization) this.field(out, 1, this.graph(t.initialization));
      if (t.algorithm) this.field(out, 2, this.graph(t.algorithm));
      return out;
    });
  }

  private function(f: FunctionProto): PieceList {
    return this.inlineOnly(() => {
      const out = this.light(FunctionProtoSchema, f, ['node']);
      for (const n of f.node) this.field(out, 7, this.node(n));
      return out;
    });
  }

  private graph(g: GraphProto): PieceList {
    const out = this.light(GraphProtoSchema, g, ['node', 'initializer', 'sparseInitializer']);
    for (const n of g.node) this.field(out, 1, this.node(n));
    for (const t of g.initializer) this.field(out, 5, this.tensor(t, false));
    for (const s of g.sparseInitializer) this.field(out, 15, this.sparse(s));
    return out;
  }

  private node(n: NodeProto): PieceList {
    const heavy = n.attribute.some(
      (a) => a.t || a.g || a.sparseTensor || a.tensors.length || a.graphs.length || a.sparseTensors.length,
    );
    if (!heavy) {
      const out = new PieceList();
      out.push(toBinary(NodeProtoSchema, n));
      return out;
    }
    const out = this.light(NodeProtoSchema, n, ['attribute']);
    for (const a of n.attribute) this.field(out, 5, this.attribute(a));
    return out;
  }

  private attribute(a: AttributeProto): PieceList {
    const out = this.light(AttributeProtoSchema, a, ['t', 'g', 'sparseTensor', 'tensors', 'graphs', 'sparseTensors']);
    if (a.t) this.field(out, 5, this.tensor(a.t, false));
    if (a.g) this.field(out, 6, this.graph(a.g));
    for (const t of a.tensors) this.field(out, 10, this.tensor(t, false));
    for (const g of a.graphs) this.field(out, 11, this.graph(g));
    if (a.sparseTensor) this.field(out, 22, this.sparse(a.sparseTensor));
    for (const s of a.sparseTensors) this.field(out, 23, this.sparse(s));
    return out;
  }

  private sparse(s: SparseTensorProto): PieceList {
    const out = this.light(SparseTensorProtoSchema, s, ['values', 'indices']);
    // Sparse parts stay inline: runtimes resolve external data for dense tensors only.
    if (s.values) this.field(out, 1, this.tensor(s.values, true));
    if (s.indices) this.field(out, 2, this.tensor(s.indices, true));
    return out;
  }

  private tensor(t: TensorProto, inSparse: boolean): PieceList {
    const storage = tensorStorage(t);
    const plan = this.inlineDepth ? undefined : this.plan;
    if (plan && !inSparse && tensorDtype(t) !== 'string' && storage !== 'empty') {
      const bytes = tensorByteLength(t);
      if (bytes >= plan.sizeThreshold) return this.toSideFile(t, bytes, storage, plan);
    }
    if (storage === 'external') {
      const bytes = tensorByteLength(t);
      const out = this.light(TensorProtoSchema, t, ['externalData', 'dataLocation', 'rawData']);
      out.push(lenHeader(9, bytes));
      out.push({ ref: externalRef(t), length: bytes });
      return out;
    }
    if (t.rawData.length >= BIG_BYTES) {
      const out = this.light(TensorProtoSchema, t, ['rawData']);
      out.push(lenHeader(9, t.rawData.length));
      out.push(t.rawData);
      return out;
    }
    const out = new PieceList();
    out.push(toBinary(TensorProtoSchema, t));
    return out;
  }

  private toSideFile(t: TensorProto, bytes: number, storage: string, plan: ExternalPlan): PieceList {
    const pad = (plan.alignment - (this.data.size % plan.alignment)) % plan.alignment;
    for (let left = pad; left > 0; left -= ZEROS.length)
      this.data.push(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
    const offset = this.data.size;
    if (storage === 'external') this.data.push({ ref: externalRef(t), length: bytes });
    else this.data.push(tensorBytes(this.loaded, t));
    const light = without(t, [
      'rawData',
      'floatData',
      'int32Data',
      'int64Data',
      'doubleData',
      'uint64Data',
      'externalData',
      'dataLocation',
    ]);
    light.externalData = [
      create(StringStringEntryProtoSchema, { key: 'location', value: plan.location }),
      create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
      create(StringStringEntryProtoSchema, { key: 'length', value: String(bytes) }),
    ];
    light.dataLocation = TensorProto_DataLocation.EXTERNAL;
    const out = new PieceList();
    out.push(toBinary(TensorProtoSchema, light));
    return out;
  }
}
