// Packed 2:4 + 4-bit (quant/packed24-nbits.ts) through the methods: outputs identical to the unpacked model, packed
// codes ≤ 0.75× the dense codes, the file shrinks by the saved bytes (a SLiM file with adapters and fp32 scales by
// ≥ 10 %), and ONNX Runtime's optimized model holds MatMulNBits over constant B (the unpack folded away). QDQ int4
// layers: the same, with ORT's optimized model equal to the unpacked QDQ model's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  FunctionProtoSchema,
  NodeProtoSchema,
  TensorProtoSchema,
  type NodeProto,
} from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { makeTensor, tensorDims, tensorDtype, tensorToFloat32 } from '../../../packages/engine/onnx/tensor.js';
import {
  groupTable,
  int4GroupTable,
  packNibbles24,
  positionTable,
} from '../../../packages/engine/quant/packed24-nbits.js';
import { convNet, mlp, randn, tokenData, transformer } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';

const dir = tempDir();
test.after(() => rmSync(dir, { recursive: true, force: true }));

interface PackedReport {
  layers: { name: string; codeBytesBefore: number; codeBytesAfter: number }[];
  notPacked: { name: string; reason: string }[];
  codeBytesBefore: number;
  codeBytesAfter: number;
}

async function outputs(path: string, feeds: Record<string, ort.Tensor>, optimized?: string) {
  const s = await ort.InferenceSession.create(path, {
    graphOptimizationLevel: 'extended',
    ...(optimized ? { optimizedModelFilePath: optimized } : {}),
  });
  const r = await s.run(feeds);
  await s.release();
  return r[s.outputNames[0]].data as Float32Array;
}

/** The optimized model ORT wrote: every MatMulNBits B is an initializer, nothing of the unpack is left. */
async function checkFolded(optimized: string, expected: number) {
  const m = await loadModel(optimized);
  const g = m.proto.graph!;
  const inits = new Set(g.initializer.map((t) => t.name));
  const nbits = g.node.filter((n) => n.opType === 'MatMulNBits');
  assert.equal(nbits.length, expected);
  for (const n of nbits) assert.ok(inits.has(n.input[1]), `${n.name}: B ${n.input[1]} is not a constant`);
  // nothing of the unpack is left: no function call, no inlined node, no packed initializer
  const left = g.node.filter((n) => n.opType === 'Unpack24NBits4' || n.name.includes('Unpack24NBits4'));
  assert.deepEqual(
    left.map((n) => n.name),
    [],
  );
  assert.deepEqual(
    g.initializer.filter((t) => /\.(c24|p24)$/.test(t.name)).map((t) => t.name),
    [],
  );
}

/** What the function computes (Cast, Gather, Add, Gather, Reshape), in JS over the same tables. */
function unpackLikeTheFunction(codes: Uint8Array, positions: Uint8Array): Uint8Array {
  const groups = groupTable();
  const offsets = positionTable();
  const b = new Uint8Array(codes.length * 2);
  for (let i = 0; i < codes.length; i++) {
    // group i: its kept-codes byte codes[i], its positions nibble (i & 1) of byte i >> 1
    const row = offsets[2 * positions[i >> 1] + (i & 1)] + codes[i];
    b[2 * i] = groups[2 * row];
    b[2 * i + 1] = groups[2 * row + 1];
  }
  return b;
}

test('packNibbles24: two kept codes + positions per group; 3 non-zero codes refused', () => {
  // row of 8 codes: groups (8, 3, 8, 12) and (8, 8, 8, 8): bytes are low nibble first
  const b = Uint8Array.from([0x38, 0xc8, 0x88, 0x88]);
  const p = packNibbles24(b, 1, 4);
  assert.ok(typeof p !== 'string');
  assert.deepEqual([...p.codes], [0xc3, 0x88]);
  assert.deepEqual([...p.positions], [1 | (3 << 2) | ((0 | (1 << 2)) << 4)]);
  assert.match(String(packNibbles24(Uint8Array.from([0x31, 0x88, 0x88, 0x88]).fill(0x12, 0, 2), 1, 4)), /not 2:4/);
});

test('the lookup tables rebuild every 2:4 group exactly (0, 1 or 2 kept codes, kept codes equal to 8 included)', () => {
  // every group of 4 codes with at most two codes other than 8, in rows of 8 codes (2 groups per positions byte)
  const groups: number[][] = [];
  for (let m = 0; m < 65536; m++) {
    const nib = [m & 15, (m >> 4) & 15, (m >> 8) & 15, m >> 12];
    if (nib.filter((x) => x !== 8).length <= 2) groups.push(nib);
  }
  const rows = Math.ceil(groups.length / 2);
  const b = new Uint8Array(rows * 4);
  groups.forEach((nib, i) => {
    b[2 * i] = nib[0] | (nib[1] << 4);
    b[2 * i + 1] = nib[2] | (nib[3] << 4);
  });
  if (groups.length % 2) b.fill(0x88, 2 * groups.length);
  const p = packNibbles24(b, rows, 4);
  assert.ok(typeof p !== 'string');
  assert.deepEqual(unpackLikeTheFunction(p.codes, p.positions), b);
});

test('slim packed: identical outputs, codes 0.75×, file ≥ 10 % smaller, unpack folded by ONNX Runtime', async () => {
  // layers of 256×256 and 256×1024 (lm_head included): big enough that each layer's node and names are small
  // beside its codes, and the fp32 embedding table (the one tensor slim leaves alone) ~10 % of the file
  const spec = { vocab: 96, d: 256, ff: 1024, layers: 1, seq: 16 };
  const model = await writeCase(dir, 'lm', transformer(spec), { ids: tokenData(32, spec) });
  const recipe = {
    method: 'slim',
    pattern: '2:4',
    criterion: 'wanda',
    quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
    lowRank: { rankRatio: 0.1, saliency: 'slim' },
    accuracyLevel: 1,
  };
  const io = { calibrationPath: model.dataPath };
  await run(recipe, model.modelPath, join(dir, 'plain'), io);
  const r = await run({ ...recipe, packed: true }, model.modelPath, join(dir, 'packed'), io);
  const packed = r.report.packed as PackedReport;
  assert.equal(packed.layers.length, 7);
  assert.deepEqual(packed.notPacked, []);
  for (const l of packed.layers) assert.ok(l.codeBytesAfter <= 0.75 * l.codeBytesBefore, l.name);
  const saved = packed.codeBytesBefore - packed.codeBytesAfter;
  const plainBytes = statSync(join(dir, 'plain', 'model.onnx')).size;
  const packedBytes = statSync(join(dir, 'packed', 'model.onnx')).size;
  // What the packed form adds besides the code bytes, measured on the written model: the function once, and per
  // layer the unpack node, the 3-element dims tensor and the headers (name, dims) of the two packed tensors.
  const written = await loadModel(join(dir, 'packed', 'model.onnx'));
  let overhead = written.proto.functions.reduce((s, f) => s + toBinary(FunctionProtoSchema, f).length, 0);
  for (const n of written.proto.graph!.node.filter((x) => x.opType === 'Unpack24NBits4')) {
    overhead += toBinary(NodeProtoSchema, n).length;
    for (const name of n.input) {
      const t = written.proto.graph!.initializer.find((x) => x.name === name)!;
      overhead += toBinary(TensorProtoSchema, t).length - (name.endsWith('.dims') ? 0 : t.rawData.length);
    }
  }
  console.log(
    `slim file ${plainBytes} → ${packedBytes} bytes (${((1 - packedBytes / plainBytes) * 100).toFixed(1)} % smaller); ` +
      `codes ${packed.codeBytesBefore} → ${packed.codeBytesAfter} (saved ${saved}); format overhead ≤ ${overhead}`,
  );
  assert.ok(
    plainBytes - packedBytes >= saved - overhead,
    `file shrank ${plainBytes - packedBytes}, codes saved ${saved}`,
  );
  assert.ok(packedBytes <= 0.9 * plainBytes, `${packedBytes} vs ${plainBytes}`);
  const ids = tokenData(3, spec, 77);
  const feeds = { ids: new ort.Tensor('int64', ids.data as BigInt64Array, ids.dims) };
  const a = await outputs(join(dir, 'plain', 'model.onnx'), feeds);
  const optimized = join(dir, 'packed-optimized.onnx');
  const b = await outputs(join(dir, 'packed', 'model.onnx'), feeds, optimized);
  assert.deepEqual(b, a);
  await checkFolded(optimized, 7);
});

test('quantize packed: the 2:4 layer is packed, the dense ones listed; outputs identical to the unpacked model', async () => {
  const c = await writeCase(dir, 'mlp', mlp(), { x: { dtype: 'float32', dims: [24, 16], data: randn(24 * 16, 2) } });
  // w2 (Gemm, K = 32) made 2:4 first; w1 (K = 16) and head stay dense
  await run({ method: 'sparsity', pattern: '2:4', include: ['w2'] }, c.modelPath, join(dir, 'sp'));
  const sparse = join(dir, 'sp', 'model.onnx');
  const recipe = { method: 'quantize', quant: { bits: 4, groupSize: 16 }, accuracyLevel: 1 };
  await run(recipe, sparse, join(dir, 'q-plain'));
  const r = await run({ ...recipe, packed: true }, sparse, join(dir, 'q-packed'));
  const packed = r.report.packed as PackedReport;
  assert.deepEqual(
    packed.layers.map((l) => l.name),
    ['w2'],
  );
  assert.deepEqual(
    packed.notPacked.map((l) => l.name),
    ['w1'],
  );
  assert.ok(packed.notPacked.every((l) => /not 2:4 along K/.test(l.reason)));
  assert.ok(packed.codeBytesAfter <= 0.75 * packed.codeBytesBefore);
  const feeds = { x: new ort.Tensor('float32', randn(5 * 16, 7), [5, 16]) };
  const a = await outputs(join(dir, 'q-plain', 'model.onnx'), feeds);
  const optimized = join(dir, 'q-optimized.onnx');
  assert.deepEqual(await outputs(join(dir, 'q-packed', 'model.onnx'), feeds, optimized), a);
  await checkFolded(optimized, 2);
});

/** ORT's optimized model: op counts, and the element type of each DequantizeLinear input that is a constant. */
async function optimizedOps(path: string, optimized: string) {
  await outputs(path, { x: new ort.Tensor('float32', randn(5 * 16, 7), [5, 16]) }, optimized);
  const g = (await loadModel(optimized)).proto.graph!;
  const ops: Record<string, number> = {};
  for (const n of g.node) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
  const inits = new Map(g.initializer.map((t) => [t.name, tensorDtype(t)]));
  const dq = g.node.filter((n) => n.opType === 'DequantizeLinear').map((n) => inits.get(n.input[0]) ?? 'computed');
  return { ops, dq };
}

test('QDQ packing is feasible on stock ONNX Runtime: int8 codes + Cast(to INT4) fold into the same optimized graph', async () => {
  // The premise of the QDQ packed form (Unpack24Int4 ends in this Cast): each int4 DequantizeLinear input rebuilt in
  // the graph from int8 folds, and ORT's QDQ fusions see the same graph.
  const c = await writeCase(dir, 'mlp-qdq', mlp(), {
    x: { dtype: 'float32', dims: [24, 16], data: randn(24 * 16, 2) },
  });
  await run({ method: 'quantize', quant: { bits: 4, groupSize: 16 }, format: 'qdq' }, c.modelPath, join(dir, 'qdq'));
  const m = await loadModel(join(dir, 'qdq', 'model.onnx'));
  const g = m.proto.graph!;
  const casts: NodeProto[] = [];
  for (const dq of g.node.filter((n) => n.opType === 'DequantizeLinear')) {
    const i = g.initializer.findIndex((t) => t.name === dq.input[0] && tensorDtype(t) === 'int4');
    if (i < 0) continue;
    const t = g.initializer[i];
    const codes = Int8Array.from(tensorToFloat32(m, t));
    g.initializer[i] = makeTensor(`${t.name}.i8`, 'int8', tensorDims(t), codes);
    casts.push(create(NodeProtoSchema, { opType: 'Cast', input: [`${t.name}.i8`], output: [t.name] }));
    casts.at(-1)!.attribute.push(
      create(AttributeProtoSchema, { name: 'to', type: AttributeProto_AttributeType.INT, i: 22n }), // INT4
    );
  }
  assert.ok(casts.length >= 2, `${casts.length} int4 DequantizeLinear inputs`);
  g.node.unshift(...casts);
  const cast = join(dir, 'qdq-cast.onnx');
  await saveModel(m, cast);
  const plain = await optimizedOps(join(dir, 'qdq', 'model.onnx'), join(dir, 'qdq-opt.onnx'));
  const rebuilt = await optimizedOps(cast, join(dir, 'qdq-cast-opt.onnx'));
  console.log(`QDQ optimized graph, int4 codes in the file vs int8 + Cast: ${JSON.stringify(rebuilt)}`);
  assert.deepEqual(rebuilt, plain);
  assert.ok(!rebuilt.dq.includes('computed') && !('Cast' in rebuilt.ops), JSON.stringify(rebuilt));
  const feeds = { x: new ort.Tensor('float32', randn(5 * 16, 9), [5, 16]) };
  assert.deepEqual(await outputs(cast, feeds), await outputs(join(dir, 'qdq', 'model.onnx'), feeds));
});

/** The written model's unpack nodes and packed initializers, and the optimized model's leftovers of them. */
async function unpackLeft(optimized: string) {
  const g = (await loadModel(optimized)).proto.graph!;
  return [
    ...g.node.filter((n) => n.domain === 'onnx_compress' || n.name.includes('Unpack24')).map((n) => n.name),
    ...g.initializer.filter((t) => /\.(c24|p24|dims|wdims)$/.test(t.name)).map((t) => t.name),
  ];
}

test('quantize qdq packed: int4 DequantizeLinear inputs of 2:4 layers packed, same optimized graph and outputs', async () => {
  const c = await writeCase(dir, 'mlp-qdqp', mlp(), {
    x: { dtype: 'float32', dims: [24, 16], data: randn(24 * 16, 2) },
  });
  const recipe = { method: 'quantize', quant: { bits: 4, groupSize: 16 }, format: 'qdq' };
  // w2 only 2:4 (Gemm transB=1: [N, K], no transpose) with w1 dense, then w1 too (MatMul: [K, N], 2:4 along axis 0)
  for (const [tag, include, packedNames, listed] of [
    ['w2', ['w2'], ['w2'], ['w1']],
    ['both', ['w1', 'w2'], ['w1', 'w2'], []],
  ] as const) {
    const sp = join(dir, `qdqp-sp-${tag}`);
    await run({ method: 'sparsity', pattern: '2:4', include: [...include] }, c.modelPath, sp);
    const sparse = join(sp, 'model.onnx');
    const plain = join(dir, `qdqp-plain-${tag}`);
    const packedDir = join(dir, `qdqp-packed-${tag}`);
    await run(recipe, sparse, plain);
    const r = await run({ ...recipe, packed: true }, sparse, packedDir);
    const packed = r.report.packed as PackedReport;
    assert.deepEqual(packed.layers.map((l) => l.name).sort(), [...packedNames]);
    assert.deepEqual(
      packed.notPacked.map((l) => l.name),
      [...listed],
    );
    assert.ok(
      packed.notPacked.every((l) => /not 2:4 along K/.test(l.reason)),
      JSON.stringify(packed.notPacked),
    );
    for (const l of packed.layers) assert.ok(l.codeBytesAfter <= 0.75 * l.codeBytesBefore, JSON.stringify(l));
    const written = (await loadModel(join(packedDir, 'model.onnx'))).proto.graph!;
    assert.equal(written.node.filter((n) => n.opType.startsWith('Unpack24Int4')).length, packedNames.length);
    const plainBytes = statSync(join(plain, 'model.onnx')).size;
    const packedBytes = statSync(join(packedDir, 'model.onnx')).size;
    console.log(
      `qdq packed (${tag}): codes ${packed.codeBytesBefore} → ${packed.codeBytesAfter} bytes; ` +
        `file ${plainBytes} → ${packedBytes} (the tables, 18 KiB once, outweigh the saving on this toy model)`,
    );
    // ORT's optimized models: same ops (the QDQ fusions), every DequantizeLinear input a constant int4, no unpack left
    const a = await optimizedOps(join(plain, 'model.onnx'), join(dir, `qdqp-plain-opt-${tag}.onnx`));
    const optPacked = join(dir, `qdqp-packed-opt-${tag}.onnx`);
    const b = await optimizedOps(join(packedDir, 'model.onnx'), optPacked);
    console.log(`qdq packed (${tag}) optimized graph: ${JSON.stringify(b)}`);
    assert.deepEqual(b, a);
    assert.deepEqual(await unpackLeft(optPacked), []);
    const feeds = { x: new ort.Tensor('float32', randn(5 * 16, 9), [5, 16]) };
    assert.deepEqual(
      await outputs(join(packedDir, 'model.onnx'), feeds),
      await outputs(join(plain, 'model.onnx'), feeds),
    );
  }
});

test('the QDQ lookup table rebuilds every 2:4 group as signed int4 codes', () => {
  const groups = groupTable();
  const signed = int4GroupTable();
  for (let i = 0; i < groups.length; i++) {
    assert.equal(signed[2 * i], (groups[i] & 15) - 8);
    assert.equal(signed[2 * i + 1], (groups[i] >> 4) - 8);
  }
});

test('quantize qdq packed on a transformer: ORT fuses the folded int4 inputs into MatMulNBits as unpacked', async () => {
  // 2:4 everywhere, then QDQ 4-bit: every MatMul weight is [K, N] (the transposed unpack); ORT's QDQ fusion turns
  // DequantizeLinear + MatMul into MatMulNBits in both models, over constant weights, with identical outputs.
  const spec = { vocab: 96, d: 256, ff: 1024, layers: 1, seq: 16 };
  const model = await writeCase(dir, 'lm-qdq', transformer(spec), { ids: tokenData(32, spec) });
  const io = { calibrationPath: model.dataPath };
  await run({ method: 'sparsity', pattern: '2:4' }, model.modelPath, join(dir, 'lmq-sp'), io);
  const sparse = join(dir, 'lmq-sp', 'model.onnx');
  const recipe = { method: 'quantize', quant: { bits: 4, groupSize: 32 }, format: 'qdq' };
  await run(recipe, sparse, join(dir, 'lmq-plain'), io);
  const r = await run({ ...recipe, packed: true }, sparse, join(dir, 'lmq-packed'), io);
  const packed = r.report.packed as PackedReport;
  assert.equal(packed.layers.length, 7);
  assert.deepEqual(packed.notPacked, []);
  for (const l of packed.layers) assert.ok(l.codeBytesAfter <= 0.75 * l.codeBytesBefore, l.name);
  const plainBytes = statSync(join(dir, 'lmq-plain', 'model.onnx')).size;
  const packedBytes = statSync(join(dir, 'lmq-packed', 'model.onnx')).size;
  const saved = packed.codeBytesBefore - packed.codeBytesAfter;
  console.log(
    `qdq packed transformer: file ${plainBytes} → ${packedBytes} bytes; ` +
      `codes ${packed.codeBytesBefore} → ${packed.codeBytesAfter} (saved ${saved})`,
  );
  // What the format adds, measured on the written model: the function once (its 16 KiB + 2 KiB tables), and per
  // layer the unpack node, the dims tensor and the headers of the two packed tensors.
  const written = await loadModel(join(dir, 'lmq-packed', 'model.onnx'));
  let overhead = written.proto.functions.reduce((s, f) => s + toBinary(FunctionProtoSchema, f).length, 0);
  for (const n of written.proto.graph!.node.filter((x) => x.opType === 'Unpack24Int4T')) {
    overhead += toBinary(NodeProtoSchema, n).length;
    for (const name of n.input) {
      const t = written.proto.graph!.initializer.find((x) => x.name === name)!;
      overhead += toBinary(TensorProtoSchema, t).length - (name.endsWith('.dims') ? 0 : t.rawData.length);
    }
  }
  console.log(`qdq packed transformer: format overhead ${overhead} bytes`);
  assert.ok(
    plainBytes - packedBytes >= saved - overhead,
    `file shrank ${plainBytes - packedBytes}, codes saved ${saved}, overhead ${overhead}`,
  );
  const ids = tokenData(3, spec, 77);
  const feeds = { ids: new ort.Tensor('int64', ids.data as BigInt64Array, ids.dims) };
  const opt = async (k: string) => {
    const optimized = join(dir, `lmq-${k}-opt.onnx`);
    const out = await outputs(join(dir, `lmq-${k}`, 'model.onnx'), feeds, optimized);
    const ops: Record<string, number> = {};
    for (const n of (await loadModel(optimized)).proto.graph!.node) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    return { out, ops, optimized };
  };
  const a = await opt('plain');
  const b = await opt('packed');
  console.log(`qdq packed transformer optimized ops: ${JSON.stringify(b.ops)}`);
  assert.deepEqual(b.ops, a.ops);
  assert.equal(b.ops.MatMulNBits, 7);
  await checkFolded(b.optimized, 7);
  assert.deepEqual(await unpackLeft(b.optimized), []);
  assert.deepEqual(b.out, a.out);
});

test('quantize qdq packed Conv: 2:4 along K = (position, channel) packed, same optimized graph and outputs', async () => {
  // conv1 (weights in a Constant node) and grouped conv2, 2:4 along K = kh·kw·C (channels innermost); the depthwise
  // conv3 (K = 9) and fc_w are left as they are by quantize
  const x = { dtype: 'float32' as const, dims: [6, 8, 12, 12], data: randn(6 * 8 * 144, 9) };
  const c = await writeCase(dir, 'conv-qdqp', convNet(), { x });
  await run({ method: 'sparsity', pattern: '2:4' }, c.modelPath, join(dir, 'convq-sp'));
  const sparse = join(dir, 'convq-sp', 'model.onnx');
  const feeds = { x: new ort.Tensor('float32', randn(2 * 8 * 144, 3), [2, 8, 12, 12]) };
  // per-channel scales: block-wise Conv groups must divide C (8 here) and start at 16; the codes' layout is the same
  for (const groupSize of ['channel'] as const) {
    const recipe = { method: 'quantize', quant: { bits: 4, groupSize, symmetric: true }, format: 'qdq' };
    const plain = join(dir, `convq-plain-${groupSize}`);
    const packedDir = join(dir, `convq-packed-${groupSize}`);
    await run(recipe, sparse, plain);
    const r = await run({ ...recipe, packed: true }, sparse, packedDir);
    const packed = r.report.packed as PackedReport;
    assert.deepEqual(packed.layers.map((l) => l.name).sort(), ['c1_w', 'c2_w'], JSON.stringify(packed));
    for (const l of packed.layers) assert.ok(l.codeBytesAfter <= 0.75 * l.codeBytesBefore, JSON.stringify(l));
    const optimized = async (dirOf: string, tag: string) => {
      const o = join(dir, `convq-${tag}-${groupSize}-opt.onnx`);
      const out = await outputs(join(dirOf, 'model.onnx'), feeds, o);
      const g = (await loadModel(o)).proto.graph!;
      const ops: Record<string, number> = {};
      for (const n of g.node) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
      const inits = new Map(g.initializer.map((t) => [t.name, tensorDtype(t)]));
      const dq = g.node.filter((n) => n.opType === 'DequantizeLinear').map((n) => inits.get(n.input[0]) ?? 'computed');
      return { out, ops, dq, o };
    };
    const a = await optimized(plain, 'plain');
    const b = await optimized(packedDir, 'packed');
    console.log(
      `qdq packed Conv (${groupSize}): codes ${packed.codeBytesBefore} → ${packed.codeBytesAfter}; optimized ${JSON.stringify(b.ops)} ${JSON.stringify(b.dq)}`,
    );
    assert.deepEqual(b.ops, a.ops);
    assert.deepEqual(b.dq, a.dq);
    assert.deepEqual(await unpackLeft(b.o), []);
    assert.deepEqual(b.out, a.out);
  }
});
