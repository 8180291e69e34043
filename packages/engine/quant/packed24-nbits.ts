// Packed 2:4 + 4-bit: a MatMulNBits weight whose 4-bit codes are 2:4 along K (at most 2 codes per group of 4 differ
// from the zero code 8) is stored as, per group of 4, the two kept codes in one byte and their two 2-bit positions
// in half a byte — 12 bits per 4 weights, 0.75× the bytes of the dense codes — and rebuilt by an ONNX local function
// (domain `onnx_compress`, as onnx/packed24.ts does for fp32) of six standard ops: two table lookups (Gather) over
// constant tables held once in the function (8 KiB + 2 KiB), two Casts, an Add and a Reshape to MatMulNBits' B
// [N][blocks][blockSize/2]. Every input is an initializer, so ONNX Runtime inlines the function and constant-folds
// it at session start: the running session holds MatMulNBits with the same constant B as the unpacked model
// (outputs identical; checked in ORT's optimized model by the tests).
//
// Why lookups: ORT (1.29, measured in bench/packed24-nbits.bench.ts and the README) folds every inlined node in its
// first ConstantFolding pass (level 1, `basic`), and the cost grows with the number of folded nodes and the int
// intermediates each one materializes. The first form — 30 int32/int64 nodes per layer (Mod/Div nibble splits,
// Concat, ScatterElements into groups of 8s, Gather/Mul/Add repacking) — made session start 6–9× slower than the
// unpacked model; six nodes whose only sizeable work is a copy per index cut that to a small constant.
//
// The dense row is B's padded row (blocks·blockSize nibbles; padding nibbles are the zero code), so K need not be a
// multiple of the block. Only symmetric layers are packed (no zero_points input: the zero code is 8 everywhere).
// Layout: codes [N, G/2, 2] uint8 (low nibble = first kept code, high = second), positions [N, G/2] uint8 (bits 0–1 /
// 2–3 = positions of group 2j's codes, bits 4–7 the same for group 2j+1: packed24's index layout), G = groups per row.
//
// QDQ layers (int4 DequantizeLinear → MatMul/Gemm/Conv, symmetric) are packed the same way (packQdqInt4): their
// canonical [N][K] rows (codes + 8) go through packNibbles24, and Unpack24Int4 / Unpack24Int4T / Unpack24Int4Conv
// rebuild the int4 tensor by the same two lookups over a table of signed codes (int8), a Reshape, a Transpose back to
// the stored layout (MatMul's [K, N]: 2:4 runs along axis 0; Conv's [O, C, k…]: K = (position, channel), channels
// innermost) and Cast(to: INT4). ORT folds it all and its QDQ handling sees the same constant int4 input (same
// optimized graph — DequantizeLinear + MatMul fused into MatMulNBits where the unpacked model's is — identical
// outputs; checked by the tests).
import { create } from '@bufbuild/protobuf';
import {
  FunctionProtoSchema,
  OperatorSetIdProtoSchema,
  type FunctionProto,
  type NodeProto,
  type TensorProto,
} from '../onnx/gen/onnx_pb.js';
import type { LoadedModel } from '../onnx/model.js';
import {
  makeTensor,
  readTensorBytesInto,
  tensorByteLength,
  tensorDims,
  tensorDtype,
  tensorToFloat32,
} from '../onnx/tensor.js';
import { addUnpackCalls, constantNode, intAttr, intsAttr, node, PACKED_DOMAIN } from '../onnx/packed24.js';

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

/**
 * The two bytes of B for every (positions nibble, kept-codes byte): entry pn·256 + c holds the group of 4 codes with
 * c's low / high nibble at positions pn & 3 / pn >> 2 and the zero code elsewhere, two codes per byte, low first.
 * Nibbles with equal positions never come out of packNibbles24 (the second code wins, as a scatter would).
 */
export function groupTable(): Uint8Array {
  const table = new Uint8Array(4096 * 2);
  const nib = [0, 0, 0, 0];
  for (let pn = 0; pn < 16; pn++) {
    for (let c = 0; c < 256; c++) {
      nib.fill(ZERO_CODE);
      nib[pn & 3] = c & 15;
      nib[pn >> 2] = c >> 4;
      table[(pn * 256 + c) * 2] = nib[0] | (nib[1] << 4);
      table[(pn * 256 + c) * 2 + 1] = nib[2] | (nib[3] << 4);
    }
  }
  return table;
}

/** Per positions byte, its two nibbles times 256 (the row offset of each group in groupTable). */
export function positionTable(): Int32Array {
  const table = new Int32Array(256 * 2);
  for (let b = 0; b < 256; b++) {
    table[2 * b] = (b & 15) * 256;
    table[2 * b + 1] = (b >> 4) * 256;
  }
  return table;
}

/**
 * The two table lookups both unpack forms share: Gather of the positions byte gives each group's row offset, + its
 * kept-codes byte indexes `groupTable` (one row per 2:4 group), Reshape to the function's `shape` input → `output`.
 */
function lookupNodes(groupTable: TensorProto, output: string): NodeProto[] {
  const INT32 = 6;
  return [
    constantNode('group_table', groupTable),
    constantNode('position_table', makeTensor('', 'int32', [256, 2], positionTable())),
    node('Cast', ['positions'], ['p32'], [intAttr('to', INT32)]),
    node('Gather', ['position_table', 'p32'], ['offsets'], [intAttr('axis', 0)]),
    node('Cast', ['codes'], ['c32'], [intAttr('to', INT32)]),
    node('Add', ['offsets', 'c32'], ['rows']),
    node('Gather', ['group_table', 'rows'], ['groups'], [intAttr('axis', 0)]),
    node('Reshape', ['groups', 'shape'], [output]),
  ];
}

/**
 * The function body: (codes [N, G/2, 2], positions [N, G/2], shape) → B. Two table lookups: Gather of the positions
 * bytes gives each group's row offset, + its kept-codes byte indexes the 2-byte groups. Six compute nodes per layer,
 * because ONNX Runtime's constant folding costs mostly per folded node and per intermediate it materializes (the
 * previous 30-node int32 form — Mod/Div/Concat/ScatterElements/Gather — made session start 6–9× slower; see the
 * README's packed section), whereas Gather is a plain copy per index.
 */
export function unpackNBitsFunction(opset: number): FunctionProto {
  const body = lookupNodes(makeTensor('', 'uint8', [4096, 2], groupTable()), 'B');
  return create(FunctionProtoSchema, {
    name: UNPACK_NBITS_OP,
    domain: PACKED_DOMAIN,
    input: ['codes', 'positions', 'shape'],
    output: ['B'],
    node: body,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })],
    docString:
      'Rebuilds MatMulNBits 4-bit B [N, blocks, blockSize/2] from 2:4 kept codes [N, G/2, 2] (two per byte) and ' +
      '2-bit positions [N, G/2] by two table lookups; unkept codes are 8 (zero).',
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
    const codes = makeTensor(`${t.name}.c24`, 'uint8', [N, G / 2, 2], packed.codes);
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
  addUnpackCalls(model, unpackNodes, () => unpackNBitsFunction(opset));
  return res;
}

export const UNPACK_QDQ_OP = 'Unpack24Int4';
/** The same for a [K, N] weight (MatMul, Gemm transB=0): the rows come out [N, K] and are transposed. */
export const UNPACK_QDQ_T_OP = 'Unpack24Int4T';
/** The same for a Conv weight [O, C, k…]: the rows come out [O, S·C] (canonical K = (s, c), c innermost). */
export const UNPACK_QDQ_CONV_OP = 'Unpack24Int4Conv';
const INT4 = 22;

/** How the int4 tensor holds the canonical [N][K] codes: [N, K], [K, N], or a Conv's [O, C, k…] (K = (s, c)). */
type QdqKind = 'nk' | 'kn' | 'conv';
const QDQ_OPS: Record<QdqKind, string> = { nk: UNPACK_QDQ_OP, kn: UNPACK_QDQ_T_OP, conv: UNPACK_QDQ_CONV_OP };

/** groupTable as signed int4 values (one int8 per code, code − 8): entry pn·256 + c holds one group of 4. */
export function int4GroupTable(): Int8Array {
  const bytes = groupTable();
  const table = new Int8Array(4096 * 4);
  for (let i = 0; i < bytes.length; i++) {
    table[2 * i] = (bytes[i] & 15) - ZERO_CODE;
    table[2 * i + 1] = (bytes[i] >> 4) - ZERO_CODE;
  }
  return table;
}

/**
 * The QDQ function body: (codes [N, G/2, 2], positions [N, G/2], shape) → the int4 DequantizeLinear input. The same
 * two lookups as unpackNBitsFunction, over a table of signed codes (int8, 16 KiB), then Reshape to `shape`: [N, K]
 * (done), [N, K] + Transpose for a [K, N] weight (2:4 runs along K, axis 0 there), or [O, S, C] + Transpose to
 * [O, C, S] + Reshape to the Conv weight's `dims` (input 4). Last a Cast(to: INT4). All standard ops that ONNX
 * Runtime constant-folds (Cast to INT4 included, opset 21), so it sees the same constant int4 tensor as in the
 * unpacked model.
 */
export function unpackQdqFunction(kind: QdqKind, opset: number): FunctionProto {
  const body = lookupNodes(makeTensor('', 'int8', [4096, 4], int4GroupTable()), 'canonical');
  let w8 = 'canonical';
  if (kind === 'kn') {
    body.push(node('Transpose', ['canonical'], ['kn'], [intsAttr('perm', [1, 0])]));
    w8 = 'kn';
  } else if (kind === 'conv') {
    body.push(node('Transpose', ['canonical'], ['ocs'], [intsAttr('perm', [0, 2, 1])]));
    body.push(node('Reshape', ['ocs', 'dims'], ['conv']));
    w8 = 'conv';
  }
  body.push(node('Cast', [w8], ['W'], [intAttr('to', INT4)]));
  const out = { nk: '[N, K]', kn: '[K, N]', conv: 'Conv [O, C, k…] (rows [O, S, C])' }[kind];
  return create(FunctionProtoSchema, {
    name: QDQ_OPS[kind],
    domain: PACKED_DOMAIN,
    input: kind === 'conv' ? ['codes', 'positions', 'shape', 'dims'] : ['codes', 'positions', 'shape'],
    output: ['W'],
    node: body,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })],
    docString:
      `Rebuilds an int4 DequantizeLinear input ${out} from 2:4 kept codes [N, G/2, 2] ` +
      '(two per byte, stored code + 8) and 2-bit positions [N, G/2] by two table lookups; unkept codes are 0.',
  });
}

/** The weight's consumer (MatMul / Gemm / Conv reading the DequantizeLinear output as input 1) and its layout. */
function qdqLayout(model: LoadedModel, dq: NodeProto): QdqKind | string {
  const consumer = model.proto.graph!.node.find((n) => n.input[1] === dq.output[0]);
  if (!consumer) return 'the DequantizeLinear output is not read as a weight in the main graph';
  if (consumer.opType === 'MatMul') return 'kn';
  if (consumer.opType === 'Conv') return 'conv';
  if (consumer.opType === 'Gemm')
    return Number(consumer.attribute.find((a) => a.name === 'transB')?.i ?? 0) === 1 ? 'nk' : 'kn';
  return `${consumer.opType}: packing covers MatMul/Gemm/Conv weights`;
}

function qdqReason(model: LoadedModel, dq: NodeProto, opset: number): string | undefined {
  if (dq.domain !== '' && dq.domain !== 'ai.onnx')
    return `${dq.domain} DequantizeLinear (opset ${opset}): Cast to INT4 needs the standard op at opset 21`;
  if (opset < 21) return `opset ${opset} < 21 (Cast to INT4)`;
  if (dq.input[2]) return 'asymmetric codes (zero points): packing needs the zero code 0';
  if (model.proto.irVersion < 8n) return `IR version ${model.proto.irVersion} < 8 has no local functions`;
  return undefined;
}

/** The canonical rows [N][K] of the int4 tensor as MatMulNBits nibbles (code + 8, low nibble first). */
function canonicalNibbles(v: Float32Array, kind: QdqKind, dims: number[]): { rows: Uint8Array; N: number; K: number } {
  const N = kind === 'kn' ? dims[1] : dims[0];
  const C = kind === 'conv' ? dims[1] : 0;
  const S = kind === 'conv' ? dims.slice(2).reduce((a, b) => a * b, 1) : 0;
  const K = kind === 'kn' ? dims[0] : kind === 'nk' ? dims[1] : C * S;
  const rows = new Uint8Array((N * K) / 2);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      // conv: canonical k = s·C + c is element (n, c, s) of [O, C, S]
      const at = kind === 'kn' ? k * N + n : kind === 'nk' ? n * K + k : (n * C + (k % C)) * S + Math.floor(k / C);
      const nib = v[at] + ZERO_CODE;
      rows[(n * K + k) >> 1] |= k & 1 ? nib << 4 : nib;
    }
  return { rows, N, K };
}

/**
 * Packs the int4 input of each listed DequantizeLinear node whose codes are 2:4 along K (reusing packNibbles24 on
 * the canonical rows, codes + 8: MatMulNBits' layout without the block padding); the others are listed with the
 * reason.
 */
export function packQdqInt4(model: LoadedModel, layers: { name: string; node: NodeProto }[]): PackNBitsResult {
  const graph = model.proto.graph!;
  const opset = Number(model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0);
  const res: PackNBitsResult = { packed: [], notPacked: [], codeBytesBefore: 0, codeBytesAfter: 0 };
  const unpackNodes: NodeProto[] = [];
  for (const { name, node: dq } of layers) {
    const kind = qdqLayout(model, dq);
    const reason = kind === 'nk' || kind === 'kn' || kind === 'conv' ? qdqReason(model, dq, opset) : kind;
    if (reason) {
      res.notPacked.push({ name, reason });
      continue;
    }
    const k = kind as QdqKind;
    const tIdx = graph.initializer.findIndex((t) => t.name === dq.input[0]);
    const t: TensorProto | undefined = graph.initializer[tIdx];
    const rank = k === 'conv' ? t?.dims.length >= 3 : t?.dims.length === 2;
    if (!t || tensorDtype(t) !== 'int4' || !rank) {
      const what = t ? `${tensorDtype(t)} [${tensorDims(t)}]` : 'not an initializer';
      res.notPacked.push({ name, reason: `DequantizeLinear input ${what}: packing covers int4 codes` });
      continue;
    }
    const dims = tensorDims(t);
    const K = k === 'kn' ? dims[0] : k === 'nk' ? dims[1] : dims.slice(1).reduce((a, b) => a * b, 1);
    if (K % 8 !== 0) {
      res.notPacked.push({ name, reason: `K=${K} is not a multiple of 8 (two groups of 4 per positions byte)` });
      continue;
    }
    const { rows, N } = canonicalNibbles(tensorToFloat32(model, t), k, dims);
    const packed = packNibbles24(rows, N, K / 2);
    if (typeof packed === 'string') {
      res.notPacked.push({ name, reason: packed });
      continue;
    }
    const codes = makeTensor(`${t.name}.c24`, 'uint8', [N, K / 8, 2], packed.codes);
    const positions = makeTensor(`${t.name}.p24`, 'uint8', [N, K / 8], packed.positions);
    const shapeOf = k === 'conv' ? [N, K / dims[1], dims[1]] : [N, K];
    const shape = makeTensor(`${t.name}.dims`, 'int64', [shapeOf.length], BigInt64Array.from(shapeOf.map(BigInt)));
    const extra =
      k === 'conv' ? [makeTensor(`${t.name}.wdims`, 'int64', [dims.length], BigInt64Array.from(dims.map(BigInt)))] : [];
    graph.initializer.splice(tIdx, 1, codes, positions, shape, ...extra);
    const un = node(QDQ_OPS[k], [codes.name, positions.name, shape.name, ...extra.map((e) => e.name)], [t.name]);
    un.domain = PACKED_DOMAIN;
    un.name = `${t.name}.unpack24`;
    unpackNodes.push(un);
    const before = tensorByteLength(t);
    const after = tensorByteLength(codes) + tensorByteLength(positions);
    res.packed.push({ name, codeBytesBefore: before, codeBytesAfter: after });
    res.codeBytesBefore += before;
    res.codeBytesAfter += after;
  }
  const kindOf = Object.fromEntries(Object.entries(QDQ_OPS).map(([kk, op]) => [op, kk as QdqKind]));
  addUnpackCalls(model, unpackNodes, (op) => unpackQdqFunction(kindOf[op], opset));
  return res;
}

/** The layers a method wrote, for packLayers: MatMulNBits and DequantizeLinear nodes to try, the others with why. */
export interface PackTargets {
  nodes: { name: string; node: NodeProto }[];
  qdq: { name: string; node: NodeProto }[];
  other: { name: string; reason: string }[];
}

/**
 * Records a written layer: its main MatMulNBits node (the first one; adapters follow it), its weight's
 * DequantizeLinear node (QDQ MatMul/Gemm/Conv), or why it is neither.
 */
export function addPackTarget(
  t: PackTargets,
  name: string,
  rep: { route: string; nbitsNodes: NodeProto[]; dqNodes?: NodeProto[] },
): void {
  if (rep.route.startsWith('MatMulNBits') && rep.nbitsNodes.length) t.nodes.push({ name, node: rep.nbitsNodes[0] });
  else if (rep.route.startsWith('DequantizeLinear') && rep.dqNodes?.length) t.qdq.push({ name, node: rep.dqNodes[0] });
  else
    t.other.push({
      name,
      reason: `${rep.route}: packing covers MatMulNBits codes and int4 DequantizeLinear inputs`,
    });
}

/** Packs what can be packed and returns the report section (`packed` in report.json). */
export function packLayers(model: LoadedModel, t: PackTargets) {
  const r = packMatMulNBits24(model, t.nodes);
  const q = packQdqInt4(model, t.qdq);
  const before = r.codeBytesBefore + q.codeBytesBefore;
  const after = r.codeBytesAfter + q.codeBytesAfter;
  return {
    format: '2:4 + 4-bit: two kept codes + 2-bit positions per group of 4 along K, expanded at session start',
    layers: [...r.packed, ...q.packed],
    notPacked: [...r.notPacked, ...q.notPacked, ...t.other],
    codeBytesBefore: before,
    codeBytesAfter: after,
    codeRatio: before ? after / before : null,
  };
}
