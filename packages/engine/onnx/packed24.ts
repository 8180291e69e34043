// Packed 2:4 storage: a 2:4-sparse weight is stored as its kept values [N, K/2] plus the 2-bit position of each kept
// value inside its group of 4 (4 positions per byte: [N, K/8] uint8), and rebuilt by an ONNX local function
// (FunctionProto in domain `onnx_compress`) made of standard ops only. ONNX Runtime inlines local functions and
// constant-folds nodes whose inputs are all initializers, so the session holds the same dense weight as before:
// identical outputs, a file ~47% smaller for fp32 weights, and no runtime speed-up (ORT has no sparse kernel).
//
// Bit layout of byte j of row n: bits 0–1 / 2–3 = positions of the 1st / 2nd kept value of group 2j, bits 4–5 / 6–7
// the same for group 2j+1. Groups with fewer than 2 non-zeros store explicit zeros at unused positions.
import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  FunctionProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  type FunctionProto,
  type NodeProto,
  type TensorProto,
} from './gen/onnx_pb.js';
import type { LoadedModel } from './model.js';
import { makeTensor, tensorByteLength } from './tensor.js';
import { readWeightMatrix, type WeightRef } from './weights.js';

export const PACKED_DOMAIN = 'onnx_compress';
/** Rebuilds [N, K] (Gemm transB=1 layout). */
export const UNPACK_OP = 'Unpack24';
/** Rebuilds [K, N] (MatMul / Gemm transB=0 layout). */
export const UNPACK_T_OP = 'Unpack24T';

export interface PackResult {
  packed: string[];
  notPacked: { name: string; reason: string }[];
  bytesBefore: number;
  bytesAfter: number;
}

// Builders shared with quant/packed24-nbits.ts (the 4-bit form): function-body nodes and the graph-side wiring.
export function node(opType: string, input: string[], output: string[], attrs: NodeProto['attribute'] = []): NodeProto {
  return create(NodeProtoSchema, { opType, input, output, attribute: attrs });
}

/** A Constant node holding `t` (inside a function body: ONNX Runtime turns it into an initializer when inlining). */
export function constantNode(output: string, t: TensorProto): NodeProto {
  return node(
    'Constant',
    [],
    [output],
    [create(AttributeProtoSchema, { name: 'value', type: AttributeProto_AttributeType.TENSOR, t })],
  );
}

function constInts(output: string, values: number[]): NodeProto {
  return constantNode(output, makeTensor('', 'int64', [values.length], BigInt64Array.from(values.map(BigInt))));
}

export function intsAttr(name: string, ints: number[]) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: ints.map(BigInt) });
}
export function intAttr(name: string, i: number) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(i) });
}

/**
 * Puts the unpack calls first in the graph (their inputs are initializers, so that is a valid topological place) and
 * declares the domain and each function the calls use, once per model.
 */
export function addUnpackCalls(model: LoadedModel, calls: NodeProto[], functionOf: (op: string) => FunctionProto) {
  if (!calls.length) return;
  model.proto.graph!.node.unshift(...calls);
  if (!model.proto.opsetImport.some((o) => o.domain === PACKED_DOMAIN))
    model.proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: PACKED_DOMAIN, version: 1n }));
  for (const op of new Set(calls.map((c) => c.opType)))
    if (!model.proto.functions.some((f) => f.domain === PACKED_DOMAIN && f.name === op))
      model.proto.functions.push(functionOf(op));
}

/** The function body: positions from the bytes (Div/Mod on int64), then ScatterElements into zeros. */
export function unpackFunction(transposed: boolean, opset: number): FunctionProto {
  const body: NodeProto[] = [
    node('Cast', ['idx'], ['idx64'], [intAttr('to', 7)]),
    constInts('unsq_axes', [2]),
    node('Unsqueeze', ['idx64', 'unsq_axes'], ['idx3']),
    constInts('divisors', [1, 4, 16, 64]),
    node('Div', ['idx3', 'divisors'], ['shifted']),
    constInts('four', [4]),
    node('Mod', ['shifted', 'four'], ['pos4']),
    constInts('pairs', [0, -1, 2]),
    node('Reshape', ['pos4', 'pairs'], ['positions']),
    node('Reshape', ['values', 'pairs'], ['kept']),
    node('Sub', ['kept', 'kept'], ['zeros2']),
    node('Concat', ['zeros2', 'zeros2'], ['zeros4'], [intAttr('axis', 2)]),
    node('ScatterElements', ['zeros4', 'positions', 'kept'], ['dense3'], [intAttr('axis', 2)]),
    constInts('rows', [0, -1]),
    node('Reshape', ['dense3', 'rows'], [transposed ? 'dense' : 'weight']),
  ];
  if (transposed) body.push(node('Transpose', ['dense'], ['weight'], [intsAttr('perm', [1, 0])]));
  return create(FunctionProtoSchema, {
    name: transposed ? UNPACK_T_OP : UNPACK_OP,
    domain: PACKED_DOMAIN,
    input: ['values', 'idx'],
    output: ['weight'],
    node: body,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })],
    docString:
      'Rebuilds a dense 2:4-sparse weight from kept values [N, K/2] and 2-bit in-group positions [N, K/8] (uint8).',
  });
}

/** Splits a 2:4 canonical matrix into kept values and packed positions. Throws if a group has > 2 non-zeros. */
export function pack24(w: Float32Array, N: number, K: number): { values: Float32Array; idx: Uint8Array } {
  if (K % 8 !== 0) throw new Error(`pack24 needs K % 8 == 0, got ${K}`);
  const values = new Float32Array((N * K) / 2);
  const idx = new Uint8Array((N * K) / 8);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < K / 4; g++) {
      const base = n * K + g * 4;
      let p0 = -1;
      let p1 = -1;
      for (let j = 0; j < 4; j++) {
        if (w[base + j] === 0) continue;
        if (p0 < 0) p0 = j;
        else if (p1 < 0) p1 = j;
        else throw new Error(`row ${n} group ${g} has more than 2 non-zeros`);
      }
      // Fill unused slots with distinct zero positions (ScatterElements must not write one slot twice).
      if (p0 < 0) {
        p0 = 0;
        p1 = 1;
      } else if (p1 < 0) {
        p1 = p0 === 0 ? 1 : 0;
        if (p1 < p0) [p0, p1] = [p1, p0];
      }
      const v = (n * K) / 2 + g * 2;
      values[v] = w[base + p0];
      values[v + 1] = w[base + p1];
      const bits = p0 | (p1 << 2);
      idx[(n * K) / 8 + (g >> 1)] |= (g & 1) === 0 ? bits : bits << 4;
    }
  }
  return { values, idx };
}

function packReason(model: LoadedModel, w: WeightRef, opset: number): string | undefined {
  if (w.op === 'Conv') return 'Conv weights are kept dense (packing covers MatMul/Gemm)';
  if (w.storeGraphPath !== '') return 'stored inside a subgraph';
  if (w.location === 'sparse-initializer') return 'stored as a sparse initializer already';
  if (w.dtype !== 'float32' && w.dtype !== 'float16') return `dtype ${w.dtype} is not packed`;
  if (w.transposes.length || w.shape.length !== 2) return 'reaches its consumer through a reshape/transpose';
  if (w.K % 8 !== 0) return `K=${w.K} is not a multiple of 8 (two groups of 4 per index byte)`;
  if (opset < 13) return `opset ${opset} < 13`;
  if (model.proto.irVersion < 8n) return `IR version ${model.proto.irVersion} < 8 has no local functions`;
  if (model.proto.graph?.input.some((i) => i.name === w.name)) return 'also a graph input';
  return undefined;
}

/**
 * Replaces each 2:4 weight by packed initializers + an Unpack24(T) node producing the original value name. Weights
 * that cannot be packed stay dense and are listed with the reason.
 */
export function packWeights24(model: LoadedModel, weights: WeightRef[]): PackResult {
  const graph = model.proto.graph!;
  const opset = Number(model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0);
  const res: PackResult = { packed: [], notPacked: [], bytesBefore: 0, bytesAfter: 0 };
  const newNodes: NodeProto[] = [];
  for (const w of weights) {
    const reason = packReason(model, w, opset);
    if (reason) {
      res.notPacked.push({ name: w.name, reason });
      continue;
    }
    const dense = readWeightMatrix(model, w);
    const { N, K } = w;
    let packed;
    try {
      packed = pack24(dense, N, K);
    } catch (e) {
      res.notPacked.push({ name: w.name, reason: `not 2:4 (${(e as Error).message})` });
      continue;
    }
    // Remove the stored tensor (initializer or Constant node).
    const initIdx = graph.initializer.findIndex((t) => t.name === w.name);
    let before = 0;
    if (initIdx >= 0) {
      before = tensorByteLength(graph.initializer[initIdx]);
      graph.initializer.splice(initIdx, 1);
    } else {
      const ci = graph.node.findIndex((n) => n.opType === 'Constant' && n.output[0] === w.name);
      if (ci < 0) {
        res.notPacked.push({ name: w.name, reason: 'stored tensor not found in the main graph' });
        continue;
      }
      const t = graph.node[ci].attribute.find((a) => a.name === 'value')?.t;
      before = t ? tensorByteLength(t) : 0;
      graph.node.splice(ci, 1);
    }
    const valuesName = `${w.name}.packed_values`;
    const idxName = `${w.name}.packed_idx`;
    const values =
      w.dtype === 'float16'
        ? makeTensor(valuesName, 'float16', [N, K / 2], packed.values)
        : makeTensor(valuesName, 'float32', [N, K / 2], packed.values);
    const idx = makeTensor(idxName, 'uint8', [N, K / 8], packed.idx);
    graph.initializer.push(values, idx);
    const transposed = !(w.op === 'Gemm' && w.transB);
    const op = transposed ? UNPACK_T_OP : UNPACK_OP;
    const n = node(op, [valuesName, idxName], [w.name]);
    n.domain = PACKED_DOMAIN;
    n.name = `${w.name}.unpack24`;
    newNodes.push(n);
    res.packed.push(w.name);
    res.bytesBefore += before;
    res.bytesAfter += tensorByteLength(values) + tensorByteLength(idx);
  }
  addUnpackCalls(model, newNodes, (op) => unpackFunction(op === UNPACK_T_OP, opset));
  return res;
}
