// Packed 2:4 + 4-bit: a MatMulNBits weight whose 4-bit codes are 2:4 along K (at most 2 codes per group of 4 differ
// from the zero code 8) is stored as, per group of 4, the two kept codes in one byte and their two 2-bit positions
// in half a byte — 12 bits per 4 weights, 0.75× the bytes of the dense codes — and rebuilt by an ONNX local function
// (domain `onnx_compress`, as methods/packed24.ts does for fp32) of standard int32 ops: Mod/Div split the bytes,
// ScatterElements puts the kept codes at their positions in a group full of 8s, Mul/Add/Cast pack two nibbles per
// byte, Reshape gives MatMulNBits' B [N][blocks][blockSize/2]. Every input is an initializer, so ONNX Runtime inlines
// the function and constant-folds it at session start: the running session holds MatMulNBits with the same
// constant B as the unpacked model (outputs identical; checked in ORT's optimized model by the tests).
//
// The dense row is B's padded row (blocks·blockSize nibbles; padding nibbles are the zero code), so K need not be a
// multiple of the block. Only symmetric layers are packed (no zero_points input: the zero code is 8 everywhere).
// Layout: codes [N, G] uint8 (low nibble = first kept code, high = second), positions [N, G/2] uint8 (bits 0–1 /
// 2–3 = positions of group 2j's codes, bits 4–7 the same for group 2j+1: packed24's index layout), G = groups per row.
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
} from '../onnx/gen/onnx_pb.js';
import type { LoadedModel } from '../onnx/model.js';
import { makeTensor, readTensorBytesInto, tensorByteLength } from '../onnx/tensor.js';
import { PACKED_DOMAIN } from '../onnx/packed24.js';

export const UNPACK_NBITS_OP = 'Unpack24NBits4';
const ZERO_CODE = 8;

export interface PackedNBitsLayer {
  /** The layer (weight) name. */
  name: string;
  /** Bytes of the dense codes (B) and of the packed codes + positions. */
  codeBytesBefore: number;
  codeBytesAfter: number;
}

export interface PackNBitsResult {
  packed: PackedNBitsLayer[];
  notPacked: { name: string; reason: string }[];
  codeBytesBefore: number;
  codeBytesAfter: number;
}

function node(opType: string, input: string[], output: string[], attrs: NodeProto['attribute'] = []): NodeProto {
  return create(NodeProtoSchema, { opType, input, output, attribute: attrs });
}
function intAttr(name: string, i: number) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(i) });
}
function constant(output: string, dtype: 'int64' | 'int32', dims: number[], values: number[]): NodeProto {
  const data = dtype === 'int64' ? BigInt64Array.from(values.map(BigInt)) : Int32Array.from(values);
  const t = makeTensor('', dtype, dims, data);
  return node(
    'Constant',
    [],
    [output],
    [create(AttributeProtoSchema, { name: 'value', type: AttributeProto_AttributeType.TENSOR, t })],
  );
}

/** The function body: (codes, positions, shape) → B. Standard ops of opset ≥ 13, all foldable on constants. */
export function unpackNBitsFunction(opset: number): FunctionProto {
  const INT32 = 6;
  const INT64 = 7;
  const UINT8 = 2;
  const body: NodeProto[] = [
    // kept codes [N, G, 2]
    node('Cast', ['codes'], ['c32'], [intAttr('to', INT32)]),
    constant('sixteen', 'int32', [1], [16]),
    node('Mod', ['c32', 'sixteen'], ['lo']),
    node('Div', ['c32', 'sixteen'], ['hi']),
    constant('axis2', 'int64', [1], [2]),
    node('Unsqueeze', ['lo', 'axis2'], ['lo3']),
    node('Unsqueeze', ['hi', 'axis2'], ['hi3']),
    node('Concat', ['lo3', 'hi3'], ['kept'], [intAttr('axis', 2)]),
    // positions [N, G, 2]
    node('Cast', ['positions'], ['p64'], [intAttr('to', INT64)]),
    node('Unsqueeze', ['p64', 'axis2'], ['p3']),
    constant('divisors', 'int64', [4], [1, 4, 16, 64]),
    node('Div', ['p3', 'divisors'], ['shifted']),
    constant('four', 'int64', [1], [4]),
    node('Mod', ['shifted', 'four'], ['pos4']),
    constant('pairs', 'int64', [3], [0, -1, 2]),
    node('Reshape', ['pos4', 'pairs'], ['pos']),
    // groups of 4 full of the zero code, the kept codes scattered in
    node('Sub', ['kept', 'kept'], ['zeros2']),
    node('Concat', ['zeros2', 'zeros2'], ['zeros4'], [intAttr('axis', 2)]),
    constant('zero_code', 'int32', [1], [ZERO_CODE]),
    node('Add', ['zeros4', 'zero_code'], ['base']),
    node('ScatterElements', ['base', 'pos', 'kept'], ['dense'], [intAttr('axis', 2)]),
    // two nibbles per byte, low first
    node('Reshape', ['dense', 'pairs'], ['nib2']),
    constant('first', 'int64', [], [0]),
    constant('second', 'int64', [], [1]),
    node('Gather', ['nib2', 'first'], ['even'], [intAttr('axis', 2)]),
    node('Gather', ['nib2', 'second'], ['odd'], [intAttr('axis', 2)]),
    node('Mul', ['odd', 'sixteen'], ['odd16']),
    node('Add', ['even', 'odd16'], ['byte32']),
    node('Cast', ['byte32'], ['bytes'], [intAttr('to', UINT8)]),
    node('Reshape', ['bytes', 'shape'], ['B']),
  ];
  return create(FunctionProtoSchema, {
    name: UNPACK_NBITS_OP,
    domain: PACKED_DOMAIN,
    input: ['codes', 'positions', 'shape'],
    output: ['B'],
    node: body,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })],
    docString:
      'Rebuilds MatMulNBits 4-bit B [N, blocks, blockSize/2] from 2:4 kept codes [N, G] (two per byte) and 2-bit ' +
      'positions [N, G/2]; unkept codes are 8 (zero).',
  });
}

/**
 * Splits dense 4-bit rows (`rowBytes` bytes each, two codes per byte, low nibble first) into kept codes and
 * positions. Returns a reason instead when a group of 4 has more than 2 codes other than 8.
 */
export function packNibbles24(
  b: Uint8Array,
  N: number,
  rowBytes: number,
): { codes: Uint8Array; positions: Uint8Array } | string {
  if (rowBytes % 4 !== 0) return `row of ${rowBytes} bytes is not a whole number of index bytes (8 codes)`;
  const G = rowBytes / 2; // groups of 4 codes per row
  const codes = new Uint8Array(N * G);
  const positions = new Uint8Array((N * G) / 2);
  const nib = [0, 0, 0, 0];
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const at = n * rowBytes + 2 * g;
      nib[0] = b[at] & 15;
      nib[1] = b[at] >> 4;
      nib[2] = b[at + 1] & 15;
      nib[3] = b[at + 1] >> 4;
      let p0 = -1;
      let p1 = -1;
      for (let j = 0; j < 4; j++) {
        if (nib[j] === ZERO_CODE) continue;
        if (p0 < 0) p0 = j;
        else if (p1 < 0) p1 = j;
        else return `not 2:4 along K: row ${n}, codes ${4 * g}..${4 * g + 3} hold 3 or more non-zero codes`;
      }
      // Unused slots point at distinct zero-code positions (ScatterElements must not write one slot twice).
      if (p0 < 0) {
        p0 = 0;
        p1 = 1;
      } else if (p1 < 0) {
        p1 = p0 === 0 ? 1 : 0;
        if (p1 < p0) [p0, p1] = [p1, p0];
      }
      codes[n * G + g] = nib[p0] | (nib[p1] << 4);
      const bits = p0 | (p1 << 2);
      positions[(n * G) / 2 + (g >> 1)] |= (g & 1) === 0 ? bits : bits << 4;
    }
  }
  return { codes, positions };
}

function reasonFor(model: LoadedModel, n: NodeProto, opset: number): string | undefined {
  const attr = (name: string) => Number(n.attribute.find((a) => a.name === name)?.i ?? -1);
  if (attr('bits') !== 4) return `${attr('bits')}-bit codes (packing covers 4-bit)`;
  if (n.input[3]) return 'asymmetric codes (zero points per group): packing needs the zero code 8';
  if (opset < 13) return `opset ${opset} < 13`;
  if (model.proto.irVersion < 8n) return `IR version ${model.proto.irVersion} < 8 has no local functions`;
  return undefined;
}

/**
 * Packs the B input of each listed MatMulNBits node whose codes are 2:4 along K; the others are listed with the
 * reason. `layers` pairs a node with the layer name the report uses.
 */
export function packMatMulNBits24(model: LoadedModel, layers: { name: string; node: NodeProto }[]): PackNBitsResult {
  const graph = model.proto.graph!;
  const opset = Number(model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0);
  const res: PackNBitsResult = { packed: [], notPacked: [], codeBytesBefore: 0, codeBytesAfter: 0 };
  const unpackNodes: NodeProto[] = [];
  for (const { name, node: mm } of layers) {
    const reason = reasonFor(model, mm, opset);
    if (reason) {
      res.notPacked.push({ name, reason });
      continue;
    }
    const bIdx = graph.initializer.findIndex((t) => t.name === mm.input[1]);
    if (bIdx < 0) {
      res.notPacked.push({ name, reason: 'B is not an initializer' });
      continue;
    }
    const t: TensorProto = graph.initializer[bIdx];
    const dims = t.dims.map(Number);
    const bytes = new Uint8Array(tensorByteLength(t));
    readTensorBytesInto(model, t, 0, bytes);
    const N = dims[0];
    const rowBytes = bytes.length / N;
    const packed = packNibbles24(bytes, N, rowBytes);
    if (typeof packed === 'string') {
      res.notPacked.push({ name, reason: packed });
      continue;
    }
    const G = rowBytes / 2;
    const codes = makeTensor(`${t.name}.c24`, 'uint8', [N, G], packed.codes);
    const positions = makeTensor(`${t.name}.p24`, 'uint8', [N, G / 2], packed.positions);
    const shape = makeTensor(`${t.name}.dims`, 'int64', [dims.length], BigInt64Array.from(dims.map(BigInt)));
    graph.initializer.splice(bIdx, 1, codes, positions, shape);
    const un = node(UNPACK_NBITS_OP, [codes.name, positions.name, shape.name], [t.name]);
    un.domain = PACKED_DOMAIN;
    unpackNodes.push(un);
    const after = tensorByteLength(codes) + tensorByteLength(positions);
    res.packed.push({ name, codeBytesBefore: bytes.length, codeBytesAfter: after });
    res.codeBytesBefore += bytes.length;
    res.codeBytesAfter += after;
  }
  if (unpackNodes.length) {
    graph.node.unshift(...unpackNodes); // inputs are initializers: valid at the front of the topological order
    if (!model.proto.opsetImport.some((o) => o.domain === PACKED_DOMAIN))
      model.proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: PACKED_DOMAIN, version: 1n }));
    if (!model.proto.functions.some((f) => f.domain === PACKED_DOMAIN && f.name === UNPACK_NBITS_OP))
      model.proto.functions.push(unpackNBitsFunction(opset));
  }
  return res;
}

/** The layers a method wrote, for packLayers: MatMulNBits nodes to try, and the others with the reason. */
export interface PackTargets {
  nodes: { name: string; node: NodeProto }[];
  other: { name: string; reason: string }[];
}

/** Records a written layer: its main MatMulNBits node (the first one; adapters follow it), or why it is not one. */
export function addPackTarget(t: PackTargets, name: string, rep: { route: string; nbitsNodes: NodeProto[] }): void {
  if (rep.route.startsWith('MatMulNBits') && rep.nbitsNodes.length) t.nodes.push({ name, node: rep.nbitsNodes[0] });
  else
    t.other.push({
      name,
      reason: `${rep.route}: packing covers MatMulNBits codes (packed int4 DequantizeLinear inputs are not implemented)`,
    });
}

/** Packs what can be packed and returns the report section (`packed` in report.json). */
export function packLayers(model: LoadedModel, t: PackTargets) {
  const r = packMatMulNBits24(model, t.nodes);
  return {
    format: '2:4 + 4-bit: two kept codes + 2-bit positions per group of 4 along K, expanded at session start',
    layers: r.packed,
    notPacked: [...r.notPacked, ...t.other],
    codeBytesBefore: r.codeBytesBefore,
    codeBytesAfter: r.codeBytesAfter,
    codeRatio: r.codeBytesBefore ? r.codeBytesAfter / r.codeBytesBefore : null,
  };
}
