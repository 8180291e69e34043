// What a model is made of (IR, opsets, I/O, ops, parameters) and every weight the compression methods could touch,
// with the reason when one cannot be. Shared by `onnx-compress inspect` and the API's upload inspection.
import type { TensorProto, ValueInfoProto } from './gen/onnx_pb.js';
import type { LoadedModel } from './model.js';
import { discoverWeights, type WeightRef } from './weights.js';
import { dtypeFromOnnx, elementCount, rawByteLength, tensorDtype } from './tensor.js';
import { graphTensors, walkGraphs } from './walk.js';

export interface ValueSummary {
  name: string;
  dtype: string;
  /** Numbers for fixed dims, strings for symbolic ones, null for unknown. */
  shape: (number | string | null)[] | null;
}

export interface InspectReport {
  path: string;
  irVersion: number;
  producer: string;
  opsets: { domain: string; version: number }[];
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  ops: Record<string, number>;
  parameters: number;
  parameterBytes: number;
  parametersByDtype: Record<string, { count: number; bytes: number }>;
  weights: {
    name: string;
    op: string;
    node: string;
    graphPath: string;
    shape: number[];
    dtype: string;
    kAxis: number;
    nAxis: number;
    K: number;
    N: number;
    group?: number;
    location: string;
    via: string[];
    /** read/writeWeightMatrix can map it (a stored weight with a matrix layout). */
    readable: boolean;
    compressible: boolean;
    reason: string | null;
  }[];
  /**
   * Operands of MatMul/Gemm/Conv that trace back to a stored tensor but are no weight matrix a method could compress:
   * computed at run time from it (e.g. a bias reached through Add/Slice/Split on the way to an attention MatMul) or
   * not a matrix at all (a vector or scalar). Listed apart, with the reason, instead of as weights with K × N 0.
   */
  otherOperands: { name: string; op: string; node: string; shape: number[]; reason: string }[];
}

function valueSummary(vi: ValueInfoProto): ValueSummary {
  const t = vi.type?.value;
  if (t?.case !== 'tensorType') return { name: vi.name, dtype: t?.case ?? 'unknown', shape: null };
  const shape = t.value.shape
    ? t.value.shape.dim.map((d) =>
        d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null,
      )
    : null;
  let dtype = 'unknown';
  try {
    dtype = dtypeFromOnnx(t.value.elemType);
  } catch {
    dtype = `type ${t.value.elemType}`;
  }
  return { name: vi.name, dtype, shape };
}

export function inspectModel(model: LoadedModel): InspectReport {
  const g = model.proto.graph!;
  const found = discoverWeights(model);
  const ops: Record<string, number> = {};
  const byDtype: Record<string, { count: number; bytes: number }> = {};
  let parameters = 0;
  let parameterBytes = 0;
  const count = (t: TensorProto) => {
    const dtype = tensorDtype(t);
    const n = elementCount(t.dims);
    const bytes = dtype === 'string' ? 0 : rawByteLength(dtype, n);
    parameters += n;
    parameterBytes += bytes;
    const row = (byDtype[dtype] ??= { count: 0, bytes: 0 });
    row.count += n;
    row.bytes += bytes;
  };
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) {
      const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
      ops[key] = (ops[key] ?? 0) + 1;
    }
    for (const t of graphTensors(v.graph)) count(t);
  });
  const initNames = new Set(g.initializer.map((t) => t.name));
  return {
    path: model.path ?? '',
    irVersion: Number(model.proto.irVersion),
    producer: [model.proto.producerName, model.proto.producerVersion].filter(Boolean).join(' '),
    opsets: model.proto.opsetImport.map((o) => ({ domain: o.domain || 'ai.onnx', version: Number(o.version) })),
    inputs: g.input.filter((i) => !initNames.has(i.name)).map(valueSummary),
    outputs: g.output.map(valueSummary),
    ops,
    parameters,
    parameterBytes,
    parametersByDtype: byDtype,
    weights: found
      .filter((w) => !notAWeight(w))
      .map((w) => {
        const row: InspectReport['weights'][number] = {
          name: w.name,
          op: w.op,
          node: w.node,
          graphPath: w.graphPath,
          shape: w.shape,
          dtype: w.dtype,
          kAxis: w.kAxis,
          nAxis: w.nAxis,
          K: w.K,
          N: w.N,
          location: w.location,
          via: w.via,
          readable: w.readable,
          compressible: w.compressible,
          reason: w.reason ?? null,
        };
        if (w.group !== undefined) row.group = w.group;
        return row;
      }),
    otherOperands: found.filter(notAWeight).map((w) => ({
      name: w.name,
      op: w.op,
      node: w.node,
      shape: w.shape,
      reason: w.computedBy
        ? `computed at run time from this tensor (via ${w.computedBy}), not a stored weight`
        : `a tensor of rank ${w.shape.length} (${w.shape.length ? 'a vector, e.g. a bias' : 'a scalar'}), not a matrix`,
    })),
  };
}

/** A MatMul/Gemm operand that is no weight matrix: computed at run time, or a vector / scalar. */
function notAWeight(w: WeightRef): boolean {
  return !!w.computedBy || (w.op !== 'Conv' && w.shape.length < 2);
}
