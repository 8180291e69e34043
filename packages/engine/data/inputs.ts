// What a model expects as input: name, dtype, dims (number = fixed, string = symbolic, null = unknown). Read from
// graph.input minus initializers (inputs with an initializer are optional overrides, never required data).
import type { ModelProto, ValueInfoProto } from '../onnx/gen/onnx_pb.js';
import { TensorProto_DataType } from '../onnx/gen/onnx_pb.js';
import { dtypeFromOnnx } from './tensorpb.js';
import type { DataDtype } from './types.js';

export interface ModelInputSpec {
  name: string;
  /** Dataset dtype, or the ONNX type name when a dataset cannot hold it (e.g. "STRING", "BFLOAT16"). */
  dtype: DataDtype | string;
  dims: (number | string | null)[] | null;
}

export function valueInfoSpec(v: ValueInfoProto): ModelInputSpec {
  const t = v.type?.value;
  if (!t || t.case !== 'tensorType') return { name: v.name, dtype: `non-tensor (${t?.case ?? 'untyped'})`, dims: null };
  const elem = t.value.elemType;
  const dtype = dtypeFromOnnx(elem) ?? TensorProto_DataType[elem] ?? `type ${elem}`;
  const shape = t.value.shape;
  const dims = shape
    ? shape.dim.map((d) =>
        d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null,
      )
    : null;
  return { name: v.name, dtype, dims };
}

/** The inputs a caller must feed (graph inputs that are not initializers). */
export function modelInputSpecs(model: ModelProto): ModelInputSpec[] {
  const graph = model.graph;
  if (!graph) return [];
  const inits = new Set(graph.initializer.map((t) => t.name));
  return graph.input.filter((v) => !inits.has(v.name)).map(valueInfoSpec);
}

export function modelOutputSpecs(model: ModelProto): ModelInputSpec[] {
  return model.graph?.output.map(valueInfoSpec) ?? [];
}

export function formatDims(dims: readonly (number | string | null)[] | null): string {
  if (!dims) return '[?]';
  return `[${dims.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}
