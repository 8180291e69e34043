// The ONNX nodes and initializers a quantized layer becomes. Pure construction: nothing here touches a model; the
// methods splice the result into the graph. Three shapes:
//  - MatMulNBits (com.microsoft): Y = A·dequant(B)ᵀ-layout, one node replacing MatMul/Gemm(transB).
//  - QDQ: DequantizeLinear(codes, scale[, zero point]) → the original op's weight input (int4/uint4 block-wise needs
//    opset 21; int8 per-channel opset 13). Codes go back to the initializer's own layout (MatMul [K][N], Gemm
//    transB [N][K], Conv [O][C/G][kh][kw]).
//  - Low-rank adapter: Y = Yc + (X·A)·B next to the compressed op (A [K][r], B [r][N]; fp32, fp16, or 4-bit
//    MatMulNBits when quantized); for Conv, Conv(X, A as r k×k filters) → 1×1 Conv(B).
import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  NodeProtoSchema,
  type AttributeProto,
  type NodeProto,
  type TensorProto,
} from '../onnx/gen/onnx_pb.js';
import { makeTensor } from '../onnx/tensor.js';
import { float32ToFloat16 } from '../onnx/floats.js';
import type { MatMulNBitsWeights } from './matmulnbits.js';
import { QuantError, type QuantizedMatrix } from './types.js';

export const MS_DOMAIN = 'com.microsoft';

export interface NodesAndInitializers {
  nodes: NodeProto[];
  initializers: TensorProto[];
}

export type FloatDtype = 'float32' | 'float16';

export function intAttr(name: string, v: number): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(v) });
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attrs: AttributeProto[] = [],
  domain = '',
): NodeProto {
  return create(NodeProtoSchema, { opType, input: inputs, output: outputs, name, attribute: attrs, domain });
}

function floatTensor(name: string, dtype: FloatDtype, dims: number[], data: Float32Array): TensorProto {
  return dtype === 'float16'
    ? makeTensor(name, 'float16', dims, float32ToFloat16(data))
    : makeTensor(name, 'float32', dims, data);
}

export interface MatMulNBitsNodeOptions {
  /** Node name; initializer names derive from it. */
  name: string;
  input: string;
  output: string;
  weights: MatMulNBitsWeights;
  /** 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 activations. */
  accuracyLevel: number;
  /** Element type of A (and so of the scales). @defaultValue 'float32' */
  dtype?: FloatDtype;
  /** Optional bias [N] (MatMulNBits input 5, present from ORT 1.19). */
  bias?: string;
}

export function matMulNBitsNode(o: MatMulNBitsNodeOptions): NodesAndInitializers {
  const w = o.weights;
  const dtype = o.dtype ?? 'float32';
  const bName = `${o.name}_B`;
  const sName = `${o.name}_scales`;
  const initializers = [
    makeTensor(bName, 'uint8', [w.N, w.blocks, (w.blockSize * w.bits) / 8], w.B),
    floatTensor(sName, dtype, [w.N * w.blocks], w.scales),
  ];
  const inputs = [o.input, bName, sName];
  if (w.zeroPoints) {
    const zName = `${o.name}_zero_points`;
    initializers.push(makeTensor(zName, 'uint8', [w.zeroPoints.length], w.zeroPoints));
    inputs.push(zName);
  }
  if (o.bias) {
    while (inputs.length < 5) inputs.push(''); // zero_points, g_idx left empty
    inputs.push(o.bias);
  }
  const attrs = [
    intAttr('K', w.K),
    intAttr('N', w.N),
    intAttr('bits', w.bits),
    intAttr('block_size', w.blockSize),
    intAttr('accuracy_level', o.accuracyLevel),
  ];
  return { nodes: [node('MatMulNBits', inputs, [o.output], o.name, attrs, MS_DOMAIN)], initializers };
}

/** How the original op stores its weight. */
export type WeightLayout =
  | { kind: 'kn' } // MatMul B, Gemm transB=0: [K][N]
  | { kind: 'nk' } // Gemm transB=1: [N][K]
  | { kind: 'conv'; dims: number[] }; // [O][Cg][k…] (Conv1d/2d/3d), canonical K order (spatial position s, c)

export interface QdqResult extends NodesAndInitializers {
  /** The DequantizeLinear output: wire it to the op's weight input. */
  output: string;
  /** Minimum default-domain opset the node needs (21 for 4-bit or blocked, 13 for int8 per-channel). */
  opset: number;
}

/**
 * DequantizeLinear for a quantized canonical matrix, in the weight's own layout. Symmetric codes are written
 * signed (int4/int8, zero point 0 omitted); asymmetric unsigned (uint4/uint8) with zero points. One group per row
 * is written per-axis (1-D scale); smaller groups block-wise along K.
 */
export function qdqWeight(
  q: QuantizedMatrix,
  layout: WeightLayout,
  name: string,
  dtype: FloatDtype = 'float32',
  /**
   * '' = the standard op; 'com.microsoft' = ONNX Runtime's contrib DequantizeLinear (per-axis int4/int8 at any
   * opset), the route for models whose default opset cannot be raised to 13/21. It has no block_size.
   */
  domain: '' | typeof MS_DOMAIN = '',
): QdqResult {
  const { rows: N, cols: K, codes, blockSize, blocksPerRow: nb } = q;
  if (domain === MS_DOMAIN && nb !== 1)
    throw new QuantError('the com.microsoft DequantizeLinear has no block_size: only per-channel groups');
  const half = 1 << (q.bits - 1);
  const perAxis = nb === 1;
  const codeType = q.symmetric ? (q.bits === 4 ? 'int4' : 'int8') : q.bits === 4 ? 'uint4' : 'uint8';
  const shift = q.symmetric ? half : 0;
  let dims: number[];
  let axis: number;
  let scaleDims: number[];
  const outCodes = new Int16Array(N * K);
  const outScales = new Float32Array(N * nb);
  const outZp = q.symmetric ? null : new Uint8Array(N * nb);
  if (layout.kind === 'kn') {
    dims = [K, N];
    axis = perAxis ? 1 : 0;
    scaleDims = perAxis ? [N] : [nb, N];
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) outCodes[k * N + n] = codes[n * K + k] - shift;
    for (let n = 0; n < N; n++)
      for (let b = 0; b < nb; b++) {
        outScales[b * N + n] = q.scales[n * nb + b];
        if (outZp) outZp[b * N + n] = q.zeroPoints[n * nb + b];
      }
  } else if (layout.kind === 'nk') {
    dims = [N, K];
    axis = perAxis ? 0 : 1;
    scaleDims = perAxis ? [N] : [N, nb];
    for (let i = 0; i < N * K; i++) outCodes[i] = codes[i] - shift;
    outScales.set(q.scales);
    if (outZp) outZp.set(q.zeroPoints);
  } else {
    const [O, C, ...spatial] = layout.dims;
    const S = spatial.reduce((a, b) => a * b, 1);
    if (O !== N || C * S !== K) throw new QuantError(`qdq: conv dims ${layout.dims} do not match ${N}×${K}`);
    dims = [O, C, ...spatial];
    if (perAxis) {
      axis = 0;
      scaleDims = [O];
      outScales.set(q.scales);
      if (outZp) outZp.set(q.zeroPoints);
    } else {
      // Canonical K = (s, c) with c innermost (s = flat spatial position); a K-group of g is g consecutive channels
      // at one position: exactly a DequantizeLinear block along axis 1 when g divides C.
      if (C % blockSize !== 0) throw new QuantError(`qdq: conv group ${blockSize} must divide ${C} input channels`);
      axis = 1;
      const cb = C / blockSize;
      scaleDims = [O, cb, ...spatial];
      for (let o = 0; o < O; o++)
        for (let sp = 0; sp < S; sp++)
          for (let j = 0; j < cb; j++) {
            const src = o * nb + sp * cb + j;
            const dst = (o * cb + j) * S + sp;
            outScales[dst] = q.scales[src];
            if (outZp) outZp[dst] = q.zeroPoints[src];
          }
    }
    for (let o = 0; o < O; o++)
      for (let c = 0; c < C; c++)
        for (let sp = 0; sp < S; sp++) outCodes[(o * C + c) * S + sp] = codes[o * K + sp * C + c] - shift;
  }
  const xName = `${name}_quantized`;
  const sName = `${name}_scale`;
  const codeData = q.bits === 4 ? outCodes : q.symmetric ? Int8Array.from(outCodes) : Uint8Array.from(outCodes);
  const initializers = [makeTensor(xName, codeType, dims, codeData), floatTensor(sName, dtype, scaleDims, outScales)];
  const inputs = [xName, sName];
  if (outZp) {
    const zName = `${name}_zero_point`;
    initializers.push(makeTensor(zName, codeType, scaleDims, outZp));
    inputs.push(zName);
  }
  const attrs = [intAttr('axis', axis)];
  if (!perAxis) attrs.push(intAttr('block_size', blockSize));
  const output = `${name}_dequantized`;
  const opset = q.bits === 4 || !perAxis ? 21 : 13;
  return {
    nodes: [node('DequantizeLinear', inputs, [output], `${name}_DequantizeLinear`, attrs, domain)],
    initializers,
    output,
    opset,
  };
}

export interface AdapterOptions {
  name: string;
  /** The layer input X [..., K]. */
  input: string;
  /** Output of the compressed op (X·W_C). */
  base: string;
  /** Final output name (the original op's output, so consumers need no rewiring). */
  output: string;
  K: number;
  N: number;
  rank: number;
  /** A [K][r] row-major (X·A). */
  a: Float32Array;
  /** B [r][N] row-major. */
  b: Float32Array;
  dtype?: FloatDtype;
  /**
   * How unquantized A and B are stored. float16 under float32 activations adds a Cast per factor, which ONNX
   * Runtime constant-folds at load: half the file bytes, fp32 compute. @defaultValue same as dtype
   */
  storage?: FloatDtype;
  /** Quantized adapters as MatMulNBits (SLiM-LoRA^Q), built by the caller. */
  quantized?: { a: MatMulNBitsWeights; b: MatMulNBitsWeights; accuracyLevel: number };
  /**
   * The layer is a Conv (group 1) with C input channels and this kernel: the adapter becomes Conv(X, A) with the
   * layer's own geometry (`attributes`: strides, pads, dilations, auto_pad — not group) and r output channels,
   * then a 1×1 Conv with B. A's rows follow the canonical Conv K order (kernel position, then channel).
   */
  conv?: { channels: number; kernel: number[]; attributes: AttributeProto[] };
}

/** Y = base + (X·A)·B. */
export function adapterNodes(o: AdapterOptions): NodesAndInitializers {
  const dtype = o.dtype ?? 'float32';
  const xa = `${o.name}_xa`;
  const xab = `${o.name}_xab`;
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  if (o.quantized) {
    if (o.conv) throw new QuantError('adapter: 4-bit adapters are written for MatMul/Gemm only, not Conv');
    for (const [part, w, inp, out] of [
      ['A', o.quantized.a, o.input, xa],
      ['B', o.quantized.b, xa, xab],
    ] as const) {
      const r = matMulNBitsNode({
        name: `${o.name}_${part}`,
        input: inp,
        output: out,
        weights: w,
        accuracyLevel: o.quantized.accuracyLevel,
        dtype,
      });
      nodes.push(...r.nodes);
      initializers.push(...r.initializers);
    }
  } else {
    if (o.a.length !== o.K * o.rank || o.b.length !== o.rank * o.N)
      throw new QuantError('adapter: A/B sizes do not match K, N, rank');
    const storage = o.storage ?? dtype;
    let aName = `${o.name}_A`;
    let bName = `${o.name}_B`;
    if (o.conv) {
      const { channels: C, kernel } = o.conv;
      const S = kernel.reduce((x, y) => x * y, 1);
      if (C * S !== o.K) throw new QuantError(`adapter: Conv ${C} channels × kernel ${kernel} ≠ K = ${o.K}`);
      // A [K][r] with K = s·C + c → Conv weight [r][C][...kernel]; B [r][N] → 1×1 Conv weight [N][r][1…].
      const aConv = new Float32Array(o.K * o.rank);
      for (let j = 0; j < o.rank; j++)
        for (let c = 0; c < C; c++)
          for (let sp = 0; sp < S; sp++) aConv[(j * C + c) * S + sp] = o.a[(sp * C + c) * o.rank + j];
      const bConv = new Float32Array(o.rank * o.N);
      for (let n = 0; n < o.N; n++) for (let j = 0; j < o.rank; j++) bConv[n * o.rank + j] = o.b[j * o.N + n];
      const ones = kernel.map(() => 1);
      initializers.push(
        floatTensor(aName, storage, [o.rank, C, ...kernel], aConv),
        floatTensor(bName, storage, [o.N, o.rank, ...ones], bConv),
      );
    } else
      initializers.push(
        floatTensor(aName, storage, [o.K, o.rank], o.a),
        floatTensor(bName, storage, [o.rank, o.N], o.b),
      );
    if (storage !== dtype) {
      const to = dtype === 'float32' ? 1 : 10; // TensorProto FLOAT / FLOAT16
      nodes.push(node('Cast', [aName], [`${aName}_cast`], `${o.name}_Cast_A`, [intAttr('to', to)]));
      nodes.push(node('Cast', [bName], [`${bName}_cast`], `${o.name}_Cast_B`, [intAttr('to', to)]));
      aName = `${aName}_cast`;
      bName = `${bName}_cast`;
    }
    if (o.conv) {
      nodes.push(node('Conv', [o.input, aName], [xa], `${o.name}_Conv_A`, o.conv.attributes));
      nodes.push(node('Conv', [xa, bName], [xab], `${o.name}_Conv_B`));
    } else {
      nodes.push(node('MatMul', [o.input, aName], [xa], `${o.name}_MatMul_A`));
      nodes.push(node('MatMul', [xa, bName], [xab], `${o.name}_MatMul_B`));
    }
  }
  nodes.push(node('Add', [o.base, xab], [o.output], `${o.name}_Add`));
  return { nodes, initializers };
}
