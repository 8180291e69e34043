// The tensors a soup touches: every initializer and every Constant node's value tensor, in the main graph and in
// If/Loop/Scan bodies, keyed `<graph path>|<value name>` so the same tensor can be found in every ingredient (the
// structure check has already made sure they line up). Values are read and written flat, in stored layout.
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import { TensorProto_DataType as DT } from '../onnx/gen/onnx_pb.js';
import { InputError } from '../job-parts.js';
import type { LoadedModel } from '../onnx/loaded.js';
import {
  elementCount,
  encodeFloats,
  setTensorRawData,
  tensorBytes,
  tensorDtype,
  tensorToFloat32,
  tensorToFloat64,
} from '../onnx/tensor.js';
import { walkGraphs } from '../onnx/walk.js';
import type { FloatValues } from './masks.js';
import { AVERAGED_DTYPES } from './structure.js';

export interface TensorSlot {
  /** `<graph path>|<value name>` ('' = main graph). */
  key: string;
  /** Value name, prefixed with the graph path inside subgraphs (for messages and the report). */
  label: string;
  dims: number[];
  dataType: number;
  /** Float tensors are averaged; every other tensor (and shape-setting floats) must be identical across ingredients. */
  averaged: boolean;
  size: number;
}

export function slotKey(graphPath: string, name: string): string {
  return `${graphPath}|${name}`;
}

/** Every stored tensor of a model by slot key. Sparse initializers are refused (a soup rewrites values densely). */
export function modelTensors(model: LoadedModel): Map<string, TensorProto> {
  const out = new Map<string, TensorProto>();
  walkGraphs(model.proto, (v) => {
    if (v.graph.sparseInitializer.length) {
      const names = v.graph.sparseInitializer.map((s) => s.values?.name ?? '?').join(', ');
      throw new InputError(
        'soup-unsupported',
        `sparse_initializer tensors (${names}) are not supported in soups: convert them to dense initializers first`,
      );
    }
    for (const t of v.graph.initializer) out.set(slotKey(v.path, t.name), t);
    for (const n of v.graph.node) {
      if (n.opType !== 'Constant' || (n.domain !== '' && n.domain !== 'ai.onnx')) continue;
      const value = n.attribute.find((a) => a.name === 'value' && a.t);
      if (value?.t && n.output[0]) out.set(slotKey(v.path, n.output[0]), value.t);
    }
  });
  return out;
}

/**
 * Float inputs that set shapes rather than hold learned values (Resize roi/scales, Upsample scales): averaging
 * different ones would silently change output sizes, so they must be identical like non-float tensors.
 */
const SHAPE_FLOAT_INPUTS: Record<string, number[]> = { Resize: [1, 2], Upsample: [1] };

/** Slot keys of tensors read by a shape-setting float input anywhere in the model. */
export function shapeSettingTensors(model: LoadedModel): Set<string> {
  const out = new Set<string>();
  walkGraphs(model.proto, (v) => {
    for (const n of v.graph.node) {
      for (const i of SHAPE_FLOAT_INPUTS[n.opType] ?? []) if (n.input[i]) out.add(slotKey(v.path, n.input[i]));
    }
  });
  return out;
}

export function describeSlots(tensors: Map<string, TensorProto>, fixed: Set<string> = new Set()): TensorSlot[] {
  return [...tensors].map(([key, t]) => {
    const [path, name] = [key.slice(0, key.indexOf('|')), key.slice(key.indexOf('|') + 1)];
    const dims = t.dims.map(Number);
    return {
      key,
      label: path ? `${path}/${name}` : name,
      dims,
      dataType: t.dataType,
      averaged: AVERAGED_DTYPES.has(t.dataType) && !fixed.has(key),
      size: elementCount(t.dims, `tensor '${name}'`),
    };
  });
}

/** Flat values of a float tensor (float64 tensors keep float64; narrower types widen to float32 exactly). */
export function readValues(model: LoadedModel, t: TensorProto): FloatValues {
  return t.dataType === DT.DOUBLE ? tensorToFloat64(model, t) : tensorToFloat32(model, t);
}

/** A buffer of the right float type for writing a slot's values. */
export function valueBuffer(slot: TensorSlot): FloatValues {
  return slot.dataType === DT.DOUBLE ? new Float64Array(slot.size) : new Float32Array(slot.size);
}

/** Replaces a float tensor's data in place (encoded back to its own dtype; external data becomes inline). */
export function writeValues(t: TensorProto, values: FloatValues): void {
  setTensorRawData(t, encodeFloats(tensorDtype(t), values));
}

/** Byte-equality of two non-float tensors (shape constants, int8 weights, …). */
export function sameBytes(a: LoadedModel, ta: TensorProto, b: LoadedModel, tb: TensorProto): boolean {
  if (tensorDtype(ta) === 'string' || tensorDtype(tb) === 'string') {
    const sa = ta.stringData;
    const sb = tb.stringData;
    return sa.length === sb.length && sa.every((s, i) => Buffer.compare(Buffer.from(s), Buffer.from(sb[i])) === 0);
  }
  const x = tensorBytes(a, ta);
  const y = tensorBytes(b, tb);
  return (
    x.length === y.length &&
    Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.length), Buffer.from(y.buffer, y.byteOffset, y.length)) === 0
  );
}
