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
import { create } from '@bufbuild/protobuf';
import {
  FunctionProtoSchema,
  OperatorSetIdProtoSchema,
  type FunctionProto,
  type NodeProto,
  type TensorProto,
} from '../onnx/gen/onnx_pb.js';
import type { LoadedModel } from '../onnx/model.js';
import { makeTensor, readTensorBytesInto, tensorByteLength } from '../onnx/tensor.js';
import { addUnpackCalls, constantNode, intAttr, node, PACKED_DOMAIN } from '../onnx/packed24.js';

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
 * The function body: (codes [N, G/2, 2], positions [N, G/2], shape) → B. Two table lookups: Gather of the positions
 * bytes gives each group's row offset, + its kept-codes byte indexes the 2-byte groups. Six compute nodes per layer,
 * because ONNX Runtime's constant folding costs mostly per folded node and per intermediate it materializes (the
 * previous 30-node int32 form — Mod/Div/Concat/ScatterElements/Gather — made session start 6–9× slower; see the
 * README's packed section), whereas Gather is a plain copy per index.
 */
export function unpackNBitsFunction(opset: number): FunctionProto {
  const INT32 = 6;
  const body: NodeProto[] = [
    constantNode('group_table', makeTensor('', 'uint8', [4096, 2], groupTable())),
    constantNode('position_table', makeTensor('', 'int32', [256, 2], positionTable())),
    node('Cast', ['positions'], ['p32'], [intAttr('to', INT32)]),
    node('Gather', ['position_table', 'p32'], ['offsets'], [intAttr('axis', 0)]),
    node('Cast', ['codes'], ['c32'], [intAttr('to', INT32)]),
    node('Add', ['offsets', 'c32'], ['rows']),
    node('Gather', ['group_table', 'rows'], ['groups'], [intAttr('axis', 0)]),
    node('Reshape', ['groups', 'shape'], ['B']),
  ];
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

/** The layers a method wrote, for packLayers: MatMulNBits nodes to try, and the others with the reason. */
export interface PackTargets {
  nodes: { name: string; node: NodeProto }[];
  other: { name: string; reason: string }[];
}

/**
 * Records a written layer: its main MatMulNBits node (the first one; adapters follow it), or why it is not one.
 *
 * QDQ layers are listed, not packed. A packed form is feasible on stock ONNX Runtime: with each int4
 * DequantizeLinear input replaced by the same codes as an int8 initializer + Cast(to: INT4), ORT 1.29 folds the
 * Cast and still fuses DequantizeLinear + MatMul into MatMulNBits (the optimized model of the 5M bench model's 14
 * QDQ MatMul layers had the same ops as the unpacked one, outputs identical). Not written yet: 2:4 runs along K,
 * which is axis 0 of a MatMul's [K, N] weight and I·kh·kw of a Conv's, so the lookup's groups need a Transpose back,
 * and the Conv fusion was not checked.
 */
export function addPackTarget(t: PackTargets, name: string, rep: { route: string; nbitsNodes: NodeProto[] }): void {
  if (rep.route.startsWith('MatMulNBits') && rep.nbitsNodes.length) t.nodes.push({ name, node: rep.nbitsNodes[0] });
  else
    t.other.push({
      name,
      reason: `${rep.route}: packing covers MatMulNBits codes (packed int4 DequantizeLinear inputs are not written yet)`,
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
