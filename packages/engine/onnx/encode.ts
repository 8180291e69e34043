// Streaming encoder for ModelProto. protobuf-es's toBinary() would build the whole file in one buffer (a second
// full copy of every weight); instead the model is turned into a list of pieces: small encoded parts, plus
// references to large tensor bytes (in memory or in a source side file), written out one after another. Each
// message is encoded field by field in field-number order: runs of ordinary fields through toBinary, tensor- and
// graph-carrying fields recursively, unknown fields last — the same bytes toBinary would give, without the copy.
import { create, toBinary } from '@bufbuild/protobuf';
import type { DescField, DescMessage } from '@bufbuild/protobuf';
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
import * as path from 'node:path';
import type { ExternalRef } from './external.js';
import { checkRange, externalRef } from './external.js';
import type { LoadedModel } from './loaded.js';
import type { LazyRaw } from './lazy.js';
import { SpillFile, lazyRawOf } from './lazy.js';
import { tensorByteLength, tensorBytes, tensorDtype, tensorStorage } from './tensor.js';

/** Bytes of a source side file, or of the source model file (lazy inline raw_data), read only while writing. */
export type LazyPiece = { ref: ExternalRef; length: number } | { lazy: LazyRaw; length: number };
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
  /**
   * The side file will be this spill file (renamed): tensors whose bytes are a range of it at an aligned offset are
   * referenced there, and `data` holds what goes after its first `base` bytes (`base` a multiple of `alignment`).
   */
  adopt?: { spill: SpillFile; base: number };
}

export interface EncodedModel {
  model: PieceList;
  /** Side-file content (padding included) when an ExternalPlan was given; with `adopt`, what follows `base`. */
  data: PieceList;
  /** With `adopt`: bytes of the spill file that tensors reference (each range counted once). */
  adoptedBytes: number;
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

/**
 * A copy sharing the prototype (proto2 presence lives in own properties) without the listed fields. The left-out
 * fields are never read, so a lazy raw_data that is dropped is not loaded.
 */
function without<T extends object>(msg: T, fields: (keyof T)[]): T {
  const copy = Object.create(Object.getPrototypeOf(msg)) as Record<string | symbol, unknown>;
  const src = msg as Record<string | symbol, unknown>;
  const drop = new Set<string | symbol>(fields as (string | symbol)[]);
  for (const key of Reflect.ownKeys(src)) {
    if (!drop.has(key) && Object.prototype.propertyIsEnumerable.call(src, key)) copy[key] = src[key];
  }
  for (const f of drop) {
    const own = Object.getOwnPropertyDescriptor(src, f);
    const value = own ? own.value : src[f];
    if (Array.isArray(value)) copy[f] = [];
  }
  return copy as T;
}

const ZEROS = new Uint8Array(64 * 1024);

export interface EncodeOptions {
  /**
   * Main-graph tensors whose bytes already lie in a file directly inside this folder (the model's own side files,
   * or the model file itself for lazily read inline raw_data) are written as external-data entries pointing at that
   * file and range instead of being copied: the encoded model is then only valid next to those files (ONNX Runtime
   * given the folder as its external-data folder). For short-lived sessions on a model being edited, never for output.
   */
  referenceIn?: string;
  /** Only ranges whose offset is a multiple of this are referenced (ONNX Runtime maps page-aligned ones). @defaultValue 1 */
  referenceAlignment?: number;
}

export function encodeModel(model: LoadedModel, external?: ExternalPlan, opts: EncodeOptions = {}): EncodedModel {
  const data = new PieceList();
  const reference = opts.referenceIn
    ? { dir: path.resolve(opts.referenceIn), alignment: opts.referenceAlignment ?? 1 }
    : undefined;
  const enc = new Encoder(model, external, data, reference);
  const encoded = enc.model(model.proto);
  return { model: encoded, data, adoptedBytes: enc.adoptedBytes };
}

/** Where a tensor's bytes can be referenced in place: a file name inside the reference folder and a range. */
interface InPlace {
  location: string;
  offset: number;
  length: number;
}

type Emit = (out: PieceList) => void;

class Encoder {
  private inlineDepth = 0;
  private readonly adoptedRanges = new Map<number, number>();
  constructor(
    private readonly loaded: LoadedModel,
    private readonly plan: ExternalPlan | undefined,
    private readonly data: PieceList,
    private readonly reference?: { dir: string; alignment: number },
  ) {}

  private field(out: PieceList, no: number, sub: PieceList): void {
    out.push(lenHeader(no, sub.size));
    out.append(sub);
  }

  /**
   * Encodes `msg` field by field in field-number order (as protobuf-es and C++ protobuf do, so an unchanged model
   * re-encodes byte for byte): runs of ordinary fields through toBinary, `heavy` fields through their emitters,
   * unknown fields last.
   */
  private ordered(schema: DescMessage, msg: object, heavy: Map<number, Emit>): PieceList {
    const out = new PieceList();
    const src = msg as Record<string, unknown>;
    const fields = sortedFields(schema);
    let pending: DescField[] = [];
    const flush = (withUnknown: boolean) => {
      if (!pending.length && !(withUnknown && src.$unknown)) return;
      const part = Object.create(Object.getPrototypeOf(msg)) as Record<string, unknown>;
      part.$typeName = src.$typeName;
      for (const f of fields) {
        if (f.fieldKind === 'list') part[f.localName] = [];
        if (f.oneof) part[f.oneof.localName] = { case: undefined };
      }
      for (const f of pending) {
        if (f.oneof) {
          const o = src[f.oneof.localName] as { case?: string };
          if (o?.case === f.localName) part[f.oneof.localName] = o;
        } else if (Object.prototype.hasOwnProperty.call(src, f.localName)) part[f.localName] = src[f.localName];
      }
      if (withUnknown && src.$unknown) part.$unknown = src.$unknown;
      const bytes = toBinary(schema, part as never);
      if (bytes.length) out.push(bytes);
      pending = [];
    };
    for (const f of fields) {
      const emit = heavy.get(f.number);
      if (emit) {
        flush(false);
        emit(out);
      } else pending.push(f);
    }
    flush(true);
    return out;
  }

  private each<T>(no: number, items: readonly T[], enc: (x: T) => PieceList): Emit {
    return (out) => {
      for (const x of items) this.field(out, no, enc(x));
    };
  }

  private one<T>(no: number, item: T | undefined, enc: (x: T) => PieceList): Emit {
    return (out) => {
      if (item !== undefined) this.field(out, no, enc(item));
    };
  }

  model(m: ModelProto): PieceList {
    return this.ordered(
      ModelProtoSchema,
      m,
      new Map([
        [7, this.one(7, m.graph, (g) => this.graph(g))],
        [20, this.each(20, m.trainingInfo, (t) => this.training(t))],
        [25, this.each(25, m.functions, (f) => this.function(f))],
      ]),
    );
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
    return this.inlineOnly(() =>
      this.ordered(
        TrainingInfoProtoSchema,
        t,
        new Map([
          [1, this.one(1, t.initialization, (g) => this.graph(g))],
          [2, this.one(2, t.algorithm, (g) => this.graph(g))],
        ]),
      ),
    );
  }

  private function(f: FunctionProto): PieceList {
    return this.inlineOnly(() =>
      this.ordered(FunctionProtoSchema, f, new Map([[7, this.each(7, f.node, (n) => this.node(n))]])),
    );
  }

  private graph(g: GraphProto): PieceList {
    return this.ordered(
      GraphProtoSchema,
      g,
      new Map([
        [1, this.each(1, g.node, (n) => this.node(n))],
        [5, this.each(5, g.initializer, (t) => this.tensor(t, false))],
        [15, this.each(15, g.sparseInitializer, (s) => this.sparse(s))],
      ]),
    );
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
    return this.ordered(NodeProtoSchema, n, new Map([[5, this.each(5, n.attribute, (a) => this.attribute(a))]]));
  }

  private attribute(a: AttributeProto): PieceList {
    return this.ordered(
      AttributeProtoSchema,
      a,
      new Map([
        [5, this.one(5, a.t, (t) => this.tensor(t, false))],
        [6, this.one(6, a.g, (g) => this.graph(g))],
        [10, this.each(10, a.tensors, (t) => this.tensor(t, false))],
        [11, this.each(11, a.graphs, (g) => this.graph(g))],
        [22, this.one(22, a.sparseTensor, (s) => this.sparse(s))],
        [23, this.each(23, a.sparseTensors, (s) => this.sparse(s))],
      ]),
    );
  }

  private sparse(s: SparseTensorProto): PieceList {
    // Sparse parts stay inline: runtimes resolve external data for dense tensors only.
    return this.ordered(
      SparseTensorProtoSchema,
      s,
      new Map([
        [1, this.one(1, s.values, (t) => this.tensor(t, true))],
        [2, this.one(2, s.indices, (t) => this.tensor(t, true))],
      ]),
    );
  }

  private tensor(t: TensorProto, inSparse: boolean): PieceList {
    const storage = tensorStorage(t);
    const inPlace = this.reference && !this.inlineDepth && !inSparse ? this.inPlace(t, storage) : undefined;
    if (inPlace) return externalEntry(t, inPlace);
    const plan = this.inlineDepth ? undefined : this.plan;
    if (plan && !inSparse && tensorDtype(t) !== 'string' && storage !== 'empty') {
      const bytes = tensorByteLength(t);
      if (bytes >= plan.sizeThreshold) return this.toSideFile(t, bytes, storage, plan);
    }
    if (storage === 'external') {
      // Bring the bytes back inline, read from the source side file while writing.
      const bytes = tensorByteLength(t);
      const ref = externalRef(t);
      const rawField: Emit = (out) => {
        out.push(lenHeader(9, bytes));
        out.push({ ref, length: bytes });
      };
      return this.ordered(TensorProtoSchema, without(t, ['externalData', 'dataLocation']), new Map([[9, rawField]]));
    }
    const lazy = lazyRawOf(t);
    if (lazy) {
      // Still in the source model file: copied from there while writing.
      const rawField: Emit = (out) => {
        out.push(lenHeader(9, lazy.length));
        out.push({ lazy, length: lazy.length });
      };
      return this.ordered(TensorProtoSchema, t, new Map([[9, rawField]]));
    }
    if (t.rawData.length >= BIG_BYTES) {
      const rawField: Emit = (out) => {
        out.push(lenHeader(9, t.rawData.length));
        out.push(t.rawData);
      };
      return this.ordered(TensorProtoSchema, t, new Map([[9, rawField]]));
    }
    const out = new PieceList();
    out.push(toBinary(TensorProtoSchema, t));
    return out;
  }

  get adoptedBytes(): number {
    let sum = 0;
    for (const length of this.adoptedRanges.values()) sum += length;
    return sum;
  }

  private toSideFile(t: TensorProto, bytes: number, storage: string, plan: ExternalPlan): PieceList {
    const lazy = lazyRawOf(t);
    const adopt = plan.adopt;
    if (adopt && lazy && lazy.source === adopt.spill && lazy.length === bytes && lazy.offset % plan.alignment === 0) {
      // Already in the file that becomes the side file: referenced where it is.
      this.adoptedRanges.set(lazy.offset, Math.max(bytes, this.adoptedRanges.get(lazy.offset) ?? 0));
      return externalEntry(t, { location: plan.location, offset: lazy.offset, length: bytes });
    }
    const base = adopt?.base ?? 0;
    const pad = (plan.alignment - ((base + this.data.size) % plan.alignment)) % plan.alignment;
    for (let left = pad; left > 0; left -= ZEROS.length)
      this.data.push(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
    const offset = base + this.data.size;
    if (storage === 'external') this.data.push({ ref: externalRef(t), length: bytes });
    else if (lazy && lazy.length === bytes) this.data.push({ lazy, length: bytes });
    else this.data.push(tensorBytes(this.loaded, t));
    return externalEntry(t, { location: plan.location, offset, length: bytes });
  }

  /**
   * The file range holding `t`'s bytes when that file sits directly in the reference folder: a side file of the
   * model (checked for containment and range as any read would be), or the model file behind a lazy raw_data (still
   * unchanged since it was loaded). Scratch files (rewritten weights) are private and never referenced.
   */
  private inPlace(t: TensorProto, storage: string): InPlace | undefined {
    const { dir, alignment } = this.reference!;
    if (tensorDtype(t) === 'string' || storage === 'empty') return undefined;
    if (storage === 'external') {
      if (!this.loaded.dir || path.resolve(this.loaded.dir) !== dir) return undefined;
      const ref = externalRef(t);
      if (/[\\/]/.test(ref.location) || ref.offset % alignment !== 0) return undefined;
      const length = tensorByteLength(t);
      checkRange(ref, length, this.loaded.external.open(ref.location).size);
      return { location: ref.location, offset: ref.offset, length };
    }
    const lazy = lazyRawOf(t);
    if (!lazy || lazy.source instanceof SpillFile || path.dirname(path.resolve(lazy.source.path)) !== dir)
      return undefined;
    if (lazy.length !== tensorByteLength(t) || lazy.offset % alignment !== 0) return undefined;
    lazy.source.check();
    return { location: path.basename(lazy.source.path), offset: lazy.offset, length: lazy.length };
  }
}

/** `t` with its bytes replaced by an external-data entry. */
function externalEntry(t: TensorProto, at: InPlace): PieceList {
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
    create(StringStringEntryProtoSchema, { key: 'location', value: at.location }),
    create(StringStringEntryProtoSchema, { key: 'offset', value: String(at.offset) }),
    create(StringStringEntryProtoSchema, { key: 'length', value: String(at.length) }),
  ];
  light.dataLocation = TensorProto_DataLocation.EXTERNAL;
  const out = new PieceList();
  out.push(toBinary(TensorProtoSchema, light));
  return out;
}

const sortedCache = new Map<DescMessage, DescField[]>();
function sortedFields(schema: DescMessage): DescField[] {
  let f = sortedCache.get(schema);
  if (!f) sortedCache.set(schema, (f = schema.fields.concat().sort((a, b) => a.number - b.number)));
  return f;
}
