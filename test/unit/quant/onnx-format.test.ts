// Format correctness: ONNX Runtime's output of our MatMulNBits / DequantizeLinear / adapter nodes equals a float64
// product with our own dequantized weights. Tolerance: |Δ| ≤ 1e-4·(Σ|a·w| + 1) per output (fp32 accumulation in
// MLAS over K ≤ 256 terms; accuracy_level 0/1 keeps activations in fp32).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { dequantize, quantizeRtn } from '../../../packages/engine/quant/rtn.js';
import {
  dequantizeMatMulNBits,
  packMatMulNBits,
  unpackMatMulNBits,
} from '../../../packages/engine/quant/matmulnbits.js';
import {
  adapterNodes,
  intAttr,
  matMulNBitsNode,
  node,
  qdqWeight,
  type NodesAndInitializers,
} from '../../../packages/engine/quant/onnx-nodes.js';
import type { QuantSpec } from '../../../packages/engine/quant/types.js';
import { float16ToFloat32, float32ToFloat16 } from '../../../packages/engine/onnx/floats.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}
function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2);
}

function vi(name: string, dims: number[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: TensorProto_DataType.FLOAT,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, { value: { case: 'dimValue', value: BigInt(d) } }),
            ),
          }),
        }),
      },
    }),
  });
}

async function run(
  parts: NodesAndInitializers,
  inputDims: number[],
  outputDims: number[],
  x: Float32Array,
  level: 'disabled' | 'all' = 'all',
): Promise<Float32Array> {
  const graph = create(GraphProtoSchema, {
    name: 't',
    node: parts.nodes,
    initializer: parts.initializers,
    input: [vi('X', inputDims)],
    output: [vi('Y', outputDims)],
  });
  const model = create(ModelProtoSchema, {
    irVersion: 10n,
    opsetImport: [
      create(OperatorSetIdProtoSchema, { domain: '', version: 21n }),
      create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n }),
    ],
    graph,
  });
  const s = await ort.InferenceSession.create(toBinary(ModelProtoSchema, model), { graphOptimizationLevel: level });
  const r = await s.run({ X: new ort.Tensor('float32', x, inputDims) });
  await s.release();
  return r.Y.data as Float32Array;
}

/** Y[m][n] = Σ_k x[m][k]·w[n][k] in float64, and the tolerance scale Σ|x·w|. */
function reference(x: Float32Array, w: ArrayLike<number>, M: number, K: number, N: number) {
  const y = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        s += x[m * K + k] * w[n * K + k];
        a += Math.abs(x[m * K + k] * w[n * K + k]);
      }
      y[m * N + n] = s;
      mag[m * N + n] = a;
    }
  return { y, mag };
}

function assertClose(got: Float32Array, ref: { y: Float64Array; mag: Float64Array }, what: string, rel = 1e-4) {
  assert.equal(got.length, ref.y.length);
  for (let i = 0; i < got.length; i++) {
    const tol = rel * (ref.mag[i] + 1);
    assert.ok(Math.abs(got[i] - ref.y[i]) <= tol, `${what}: [${i}] ${got[i]} vs ${ref.y[i]}`);
  }
}

const M = 3;

test('MatMulNBits: bytes decode to our codes, and ORT computes X·dequant(W)ᵀ', async () => {
  const cases: [number, number, QuantSpec][] = [
    [64, 24, { bits: 4, symmetric: true, groupSize: 32 }],
    [96, 8, { bits: 4, symmetric: false, groupSize: 16 }],
    [200, 5, { bits: 4, symmetric: true, groupSize: 64 }], // K not a multiple of the block: padded
    [128, 6, { bits: 4, symmetric: true, groupSize: 128 }],
    [80, 4, { bits: 4, symmetric: true, groupSize: 'channel' }], // one group of 80 written as block 128
    [64, 7, { bits: 8, symmetric: true, groupSize: 32 }],
    [64, 7, { bits: 8, symmetric: false, groupSize: 32 }],
  ];
  for (const [K, N, spec] of cases) {
    const w = rand(N * K, K + N);
    for (let i = 0; i < w.length; i += 4) w[i] = w[i + 1] = 0; // 2:4 zeros
    const q = quantizeRtn(w, N, K, spec);
    const packed = packMatMulNBits(q);
    const back = unpackMatMulNBits(packed);
    assert.deepEqual(back.codes, q.codes, `codes ${JSON.stringify(spec)}`);
    for (let n = 0; n < N; n++)
      for (let b = 0; b < q.blocksPerRow; b++)
        assert.equal(back.zeroPoints[n * packed.blocks + b], q.zeroPoints[n * q.blocksPerRow + b]);
    const wq = dequantize(q);
    assert.deepEqual(dequantizeMatMulNBits(packed), wq);
    for (let i = 0; i < w.length; i += 4) assert.ok(wq[i] === 0 && wq[i + 1] === 0, '2:4 zeros exact');
    const x = rand(M * K, 7);
    for (const level of [0, 1]) {
      const parts = matMulNBitsNode({ name: 'q', input: 'X', output: 'Y', weights: packed, accuracyLevel: level });
      const y = await run(parts, [M, K], [M, N], x);
      assertClose(y, reference(x, wq, M, K, N), `MatMulNBits ${K}x${N} ${JSON.stringify(spec)} level ${level}`);
    }
  }
});

test('QDQ: DequantizeLinear int4/uint4 blocked, int8 per-channel feeding MatMul, Gemm(transB) and Conv', async () => {
  const K = 64;
  const N = 6;
  const specs: QuantSpec[] = [
    { bits: 4, symmetric: true, groupSize: 32 },
    { bits: 4, symmetric: false, groupSize: 16 },
    { bits: 8, symmetric: true, groupSize: 'channel' },
    { bits: 8, symmetric: false, groupSize: 'channel' },
    { bits: 4, symmetric: true, groupSize: 'channel' },
  ];
  const x = rand(M * K, 3);
  for (const spec of specs) {
    const w = rand(N * K, 11);
    const q = quantizeRtn(w, N, K, spec);
    const wq = dequantize(q);
    const ref = reference(x, wq, M, K, N);
    const kn = qdqWeight(q, { kind: 'kn' }, 'w');
    kn.nodes.push(node('MatMul', ['X', kn.output], ['Y'], 'mm'));
    // Unoptimised: DequantizeLinear then an fp32 MatMul, the node's own semantics.
    assertClose(await run(kn, [M, K], [M, N], x, 'disabled'), ref, `QDQ MatMul ${JSON.stringify(spec)}`);
    // Optimised: ORT fuses DQ(int4 blocked)+MatMul into MatMulNBits with int8 activations (accuracy_level 4), so
    // the tolerance is that of 8-bit activation quantization per block (~2⁻⁷ of the block's range).
    assertClose(await run(kn, [M, K], [M, N], x, 'all'), ref, `QDQ MatMul fused ${JSON.stringify(spec)}`, 2e-2);
    const nk = qdqWeight(q, { kind: 'nk' }, 'w');
    nk.nodes.push(node('Gemm', ['X', nk.output], ['Y'], 'gemm', [intAttr('transB', 1)]));
    assertClose(await run(nk, [M, K], [M, N], x, 'disabled'), ref, `QDQ Gemm ${JSON.stringify(spec)}`);
  }
  // Conv 3×3, 16 input channels, 4 outputs, canonical K order (kh, kw, c); groups of 16 along c.
  const C = 16;
  const O = 4;
  const KC = 9 * C;
  const wc = rand(O * KC, 5);
  for (const spec of [
    { bits: 4, symmetric: true, groupSize: 16 },
    { bits: 8, symmetric: true, groupSize: 'channel' },
  ] as QuantSpec[]) {
    const q = quantizeRtn(wc, O, KC, spec);
    const wq = dequantize(q);
    const img = rand(C * 3 * 3, 9); // 1×C×3×3, no padding: one output pixel = Σ over the whole patch
    const patch = new Float32Array(KC);
    for (let y = 0; y < 3; y++)
      for (let xx = 0; xx < 3; xx++)
        for (let c = 0; c < C; c++) patch[(y * 3 + xx) * C + c] = img[(c * 3 + y) * 3 + xx];
    const parts = qdqWeight(q, { kind: 'conv', dims: [O, C, 3, 3] }, 'cw');
    parts.nodes.push(node('Conv', ['X', parts.output], ['Y'], 'conv'));
    const y = await run(parts, [1, C, 3, 3], [1, O, 1, 1], img, 'disabled');
    assertClose(y, reference(patch, wq, 1, KC, O), `QDQ Conv ${JSON.stringify(spec)}`);
  }
});

test('Conv adapter (QDQ Conv + Conv(k×k, r) → Conv(1×1)) equals a float64 conv with W_C + (A·B)ᵀ', async () => {
  // 8 input channels, 6 outputs, 3×3 kernel, stride 2, pads 1, input 7×7 → output 4×4; rank 3.
  const C = 8;
  const O = 6;
  const H = 7;
  const r = 3;
  const KC = 9 * C;
  const OH = 4;
  const q = quantizeRtn(rand(O * KC, 21), O, KC, { bits: 4, symmetric: true, groupSize: 8 });
  const a = rand(KC * r, 22);
  const b = rand(r * O, 23);
  const ints = (name: string, v: number[]) =>
    create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: v.map(BigInt) });
  const attrs = [ints('strides', [2, 2]), ints('pads', [1, 1, 1, 1])];
  for (const storage of ['float32', 'float16'] as const) {
    const core = qdqWeight(q, { kind: 'conv', dims: [O, C, 3, 3] }, 'cw');
    core.nodes.push(node('Conv', ['X', core.output], ['Yc'], 'conv', attrs));
    const ad = adapterNodes({
      name: 'lr',
      input: 'X',
      base: 'Yc',
      output: 'Y',
      K: KC,
      N: O,
      rank: r,
      a,
      b,
      storage,
      conv: { channels: C, kernel: [3, 3], attributes: attrs },
    });
    const img = rand(C * H * H, 24);
    const y = await run(
      { nodes: [...core.nodes, ...ad.nodes], initializers: [...core.initializers, ...ad.initializers] },
      [1, C, H, H],
      [1, O, OH, OH],
      img,
      'disabled',
    );
    // Reference: im2col rows in canonical K order (ky, kx, c), zero padding, times W_eff = W_C + (A·B)ᵀ.
    const as = storage === 'float16' ? float16ToFloat32(float32ToFloat16(a)) : a;
    const bs = storage === 'float16' ? float16ToFloat32(float32ToFloat16(b)) : b;
    const wq = dequantize(q);
    const eff = new Float64Array(O * KC);
    for (let n = 0; n < O; n++)
      for (let k = 0; k < KC; k++) {
        let s = wq[n * KC + k];
        for (let j = 0; j < r; j++) s += as[k * r + j] * bs[j * O + n];
        eff[n * KC + k] = s;
      }
    const patches = new Float32Array(OH * OH * KC);
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OH; ox++)
        for (let ky = 0; ky < 3; ky++)
          for (let kx = 0; kx < 3; kx++)
            for (let c = 0; c < C; c++) {
              const iy = oy * 2 - 1 + ky;
              const ix = ox * 2 - 1 + kx;
              const inside = iy >= 0 && iy < H && ix >= 0 && ix < H;
              patches[(oy * OH + ox) * KC + (ky * 3 + kx) * C + c] = inside ? img[(c * H + iy) * H + ix] : 0;
            }
    const ref = reference(patches, eff, OH * OH, KC, O); // [pixel][n]; ORT gives [n][pixel]
    const t = { y: new Float64Array(ref.y.length), mag: new Float64Array(ref.y.length) };
    for (let p = 0; p < OH * OH; p++)
      for (let n = 0; n < O; n++) {
        t.y[n * OH * OH + p] = ref.y[p * O + n];
        t.mag[n * OH * OH + p] = ref.mag[p * O + n];
      }
    assertClose(y, t, `Conv adapter (${storage})`);
  }
  assert.throws(
    () =>
      adapterNodes({
        name: 'lr',
        input: 'X',
        base: 'Yc',
        output: 'Y',
        K: KC,
        N: O,
        rank: r,
        a,
        b,
        conv: { channels: C + 1, kernel: [3, 3], attributes: [] },
      }),
    /Conv/,
  );
});

test('adapter nodes: Y = X·W_C + (X·A)·B', async () => {
  const K = 32;
  const N = 8;
  const r = 3;
  const w = rand(N * K, 1);
  const q = quantizeRtn(w, N, K, { bits: 4, symmetric: true, groupSize: 32 });
  const a = rand(K * r, 2);
  const b = rand(r * N, 3);
  const base = matMulNBitsNode({ name: 'q', input: 'X', output: 'Yc', weights: packMatMulNBits(q), accuracyLevel: 0 });
  const ad = adapterNodes({ name: 'lr', input: 'X', base: 'Yc', output: 'Y', K, N, rank: r, a, b });
  const x = rand(M * K, 4);
  const y = await run(
    { nodes: [...base.nodes, ...ad.nodes], initializers: [...base.initializers, ...ad.initializers] },
    [M, K],
    [M, N],
    x,
  );
  // Effective weight W_C + (A·B)ᵀ in canonical [N][K].
  const wq = dequantize(q);
  const eff = new Float64Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      let s = wq[n * K + k];
      for (let j = 0; j < r; j++) s += a[k * r + j] * b[j * N + n];
      eff[n * K + k] = s;
    }
  assertClose(y, reference(x, eff, M, K, N), 'adapter');
  // float16 storage + Cast: the same computation with A and B rounded to float16.
  const a16 = float16ToFloat32(float32ToFloat16(a));
  const b16 = float16ToFloat32(float32ToFloat16(b));
  const ad16 = adapterNodes({
    name: 'lr',
    input: 'X',
    base: 'Yc',
    output: 'Y',
    K,
    N,
    rank: r,
    a,
    b,
    storage: 'float16',
  });
  assert.equal(ad16.nodes.filter((n) => n.opType === 'Cast').length, 2);
  const y16 = await run(
    { nodes: [...base.nodes, ...ad16.nodes], initializers: [...base.initializers, ...ad16.initializers] },
    [M, K],
    [M, N],
    x,
  );
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      let s = wq[n * K + k];
      for (let j = 0; j < r; j++) s += a16[k * r + j] * b16[j * N + n];
      eff[n * K + k] = s;
    }
  assertClose(y16, reference(x, eff, M, K, N), 'adapter float16 storage');
});
