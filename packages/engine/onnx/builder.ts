// A small builder for models in code (tests, method outputs):
//   const b = new GraphBuilder({ opset: 17 });
//   const x = b.input('x', 'float32', [1, 8]);
//   const y = b.node('MatMul', [x, b.initializer('W', 'float32', [8, 4], data)]);
//   b.output(y, 'float32', [1, 4]);
//   const model = b.build();
import { create } from '@bufbuild/protobuf';
import type { AttributeProto, GraphProto, NodeProto, TensorProto } from './gen/onnx_pb.js';
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType as AT,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
} from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';
import type { DType } from './dtypes.js';
import { onnxFromDtype, rawByteLength } from './dtypes.js';
import type { LoadedModel } from './loaded.js';
import { makeLoadedModel } from './loaded.js';
import { tensorValueInfo } from './graph.js';
import { elementCount, makeTensor } from './tensor.js';
import { validateModel } from './validate.js';

/** Attribute values: integers → INT(S), `float(x)` → FLOAT, strings → STRING, tensors, graphs, or a ready AttributeProto. */
export type AttrValue =
  | number
  | number[]
  | string
  | string[]
  | { float: number }
  | { floats: number[] }
  | TensorProto
  | GraphProto
  | AttributeProto;

/** Marks a number as a FLOAT attribute (plain numbers become INT). */
export const float = (x: number): { float: number } => ({ float: x });
export const floats = (x: number[]): { floats: number[] } => ({ floats: x });

export function makeAttribute(name: string, v: AttrValue): AttributeProto {
  const a = create(AttributeProtoSchema, { name });
  if (typeof v === 'number') {
    if (!Number.isInteger(v))
      throw new OnnxError('invalid-argument', `attribute '${name}': use float(${v}) for floats`);
    a.type = AT.INT;
    a.i = BigInt(v);
  } else if (typeof v === 'string') {
    a.type = AT.STRING;
    a.s = new TextEncoder().encode(v);
  } else if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number')) {
      a.type = AT.INTS;
      a.ints = (v as number[]).map((x) => BigInt(x));
    } else {
      a.type = AT.STRINGS;
      a.strings = (v as string[]).map((x) => new TextEncoder().encode(x));
    }
  } else if ('float' in v && typeof v.float === 'number') {
    a.type = AT.FLOAT;
    a.f = v.float;
  } else if ('floats' in v && Array.isArray(v.floats)) {
    a.type = AT.FLOATS;
    a.floats = v.floats;
  } else if ((v as { $typeName?: string }).$typeName === 'onnx.TensorProto') {
    a.type = AT.TENSOR;
    a.t = v as TensorProto;
  } else if ((v as { $typeName?: string }).$typeName === 'onnx.GraphProto') {
    a.type = AT.GRAPH;
    a.g = v as GraphProto;
  } else if ((v as { $typeName?: string }).$typeName === 'onnx.AttributeProto') return v as AttributeProto;
  else throw new OnnxError('invalid-argument', `attribute '${name}': unsupported value`);
  return a;
}

export interface GraphBuilderOptions {
  /** Default-domain opset. @defaultValue 17 */
  opset?: number;
  /** @defaultValue 8 (accepted by onnxruntime 1.29; IR 14 is not) */
  irVersion?: number;
  /** Extra domains, e.g. { 'com.microsoft': 1 }. */
  domains?: Record<string, number>;
  name?: string;
  /** Folder external-data locations resolve against when the model is built (models with `externalInitializer`). @defaultValue '' (none) */
  dir?: string;
}

export class GraphBuilder {
  readonly graph: GraphProto;
  private counter = 0;
  private readonly names = new Set<string>();

  constructor(private readonly opts: GraphBuilderOptions = {}) {
    this.graph = create(GraphProtoSchema, { name: opts.name ?? 'graph' });
  }

  private fresh(base: string): string {
    let n = base;
    while (this.names.has(n)) n = `${base}_${++this.counter}`;
    this.names.add(n);
    return n;
  }

  input(name: string, dtype: DType, shape?: (number | string)[]): string {
    this.names.add(name);
    this.graph.input.push(tensorValueInfo(name, dtype, shape));
    return name;
  }

  initializer(name: string, dtype: DType, dims: number[], data: ArrayBufferView | number[]): string {
    this.names.add(name);
    this.graph.initializer.push(makeTensor(name, dtype, dims, data));
    return name;
  }

  /**
   * An initializer whose bytes already lie in a side file next to the model (`dir`), at `offset`: how a generator
   * writes a model larger than memory (weights streamed to the side file, the graph built here).
   */
  externalInitializer(name: string, dtype: DType, dims: number[], ref: { location: string; offset: number }): string {
    this.names.add(name);
    const length = rawByteLength(dtype, elementCount(dims, `tensor '${name}'`));
    const entry = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
    this.graph.initializer.push(
      create(TensorProtoSchema, {
        name,
        dataType: onnxFromDtype(dtype),
        dims: dims.map((d) => BigInt(d)),
        dataLocation: TensorProto_DataLocation.EXTERNAL,
        externalData: [
          entry('location', ref.location),
          entry('offset', String(ref.offset)),
          entry('length', String(length)),
        ],
      }),
    );
    return name;
  }

  /** A Constant node holding the tensor (how PaddleOCR exports keep weights). */
  constant(name: string, dtype: DType, dims: number[], data: ArrayBufferView | number[]): string {
    this.names.add(name);
    const t = makeTensor('', dtype, dims, data);
    this.graph.node.push(
      create(NodeProtoSchema, {
        opType: 'Constant',
        name: this.fresh(`Constant_${name}`),
        output: [name],
        attribute: [makeAttribute('value', t)],
      }),
    );
    return name;
  }

  /** Adds a node; returns its output names (one unless `outputs` says otherwise). */
  nodeMulti(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { outputs?: number | string[]; name?: string; domain?: string } = {},
  ): string[] {
    const name = this.fresh(opts.name ?? opType);
    const outputs = Array.isArray(opts.outputs)
      ? opts.outputs
      : Array.from({ length: opts.outputs ?? 1 }, (_, i) => this.fresh(`${name}_out${i}`));
    for (const o of outputs) this.names.add(o);
    const node = create(NodeProtoSchema, {
      opType,
      name,
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
    });
    if (opts.domain) node.domain = opts.domain;
    this.graph.node.push(node);
    return outputs;
  }

  node(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { output?: string; name?: string; domain?: string } = {},
  ): string {
    const o: { outputs?: string[]; name?: string; domain?: string } = { ...opts };
    if (opts.output) o.outputs = [opts.output];
    return this.nodeMulti(opType, inputs, attrs, o)[0];
  }

  rawNode(node: NodeProto): void {
    this.graph.node.push(node);
  }

  output(name: string, dtype: DType, shape?: (number | string)[]): void {
    this.graph.output.push(tensorValueInfo(name, dtype, shape));
  }

  /** The graph alone, for If/Loop/Scan bodies. */
  buildGraph(): GraphProto {
    return this.graph;
  }

  build(): LoadedModel {
    const opsetImport = [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(this.opts.opset ?? 17) })];
    for (const [domain, version] of Object.entries(this.opts.domains ?? {}))
      opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
    const proto = create(ModelProtoSchema, {
      irVersion: BigInt(this.opts.irVersion ?? 8),
      producerName: 'onnx-compress',
      opsetImport,
      graph: this.graph,
    });
    const model = makeLoadedModel(proto, this.opts.dir ?? '');
    validateModel(model);
    return model;
  }
}
