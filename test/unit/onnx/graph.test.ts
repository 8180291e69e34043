// Graph edits keep the model valid and runnable: activation capture outputs, opset imports, rewiring with
// inserted nodes, removing what became unused, adapter branches on graph outputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { NodeProtoSchema } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { loadModel } from '../../../packages/engine/onnx/model.js';
import {
  addGraphOutputs,
  addInitializer,
  ensureOpset,
  findNode,
  insertNodesBefore,
  liveNodes,
  removeInitializerIfUnused,
  renameProducerOutput,
  replaceAllUses,
  uniqueName,
  usedNames,
} from '../../../packages/engine/onnx/graph.js';
import { makeTensor } from '../../../packages/engine/onnx/tensor.js';
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import { discoverWeights } from '../../../packages/engine/onnx/weights.js';
import { PPOCR_REC, ifModel, mlpModel, randomFloats } from '../../helpers/onnx-fixtures.js';
import { runOrt } from '../../helpers/ort.js';

const x16 = { x: { type: 'float32' as const, data: randomFloats(16, 5), dims: [1, 16] } };

test('addGraphOutputs: ORT returns the captured activations of PP-OCRv4 rec (types inferred, no value_info)', async () => {
  const model = await loadModel(PPOCR_REC);
  const acts = [
    ...new Set(
      discoverWeights(model)
        .filter((w) => w.compressible)
        .map((w) => w.activation!),
    ),
  ].slice(0, 4);
  assert.equal(model.proto.graph!.valueInfo.length, 0);
  const mainOut = model.proto.graph!.output[0].name;
  const feeds = { x: { type: 'float32' as const, data: randomFloats(3 * 48 * 96, 1), dims: [1, 3, 48, 96] } };
  const before = await runOrt(model, feeds);
  addGraphOutputs(model, acts);
  addGraphOutputs(model, acts); // idempotent
  assert.equal(model.proto.graph!.output.length, 1 + acts.length);
  const after = await runOrt(model, feeds);
  for (const a of acts) assert.ok(after[a].length > 0, a);
  assert.deepEqual(Array.from(after[mainOut]), Array.from(before[mainOut]));
  assert.throws(() => addGraphOutputs(model, ['no_such_value']), { code: 'not-found' });
});

test('addGraphOutputs refuses values that live inside a subgraph', () => {
  assert.throws(() => addGraphOutputs(ifModel(), ['then_out']), { code: 'not-found' });
});

test('ensureOpset: adds domains, raises safely, refuses upgrades that would change existing ops', async () => {
  const m = mlpModel();
  ensureOpset(m, 'com.microsoft', 1);
  ensureOpset(m, 'com.microsoft', 1);
  assert.equal(m.proto.opsetImport.filter((o) => o.domain === 'com.microsoft').length, 1);
  ensureOpset(m, '', 21);
  assert.equal(Number(m.proto.opsetImport.find((o) => o.domain === '')!.version), 21);
  ensureOpset(m, 'ai.onnx', 19); // never lowers
  assert.equal(Number(m.proto.opsetImport.find((o) => o.domain === '')!.version), 21);
  await runOrt(m, x16);
  const rec = await loadModel(PPOCR_REC);
  assert.throws(
    () => ensureOpset(rec, '', 21),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'opset-upgrade-unsafe');
      assert.match(e.message, /Clip.*Squeeze/);
      return true;
    },
  );
});

test('uniqueName never repeats and avoids every existing name', () => {
  const m = mlpModel();
  const a = uniqueName(m, 'W1');
  const b = uniqueName(m, 'W1');
  assert.notEqual(a, 'W1');
  assert.notEqual(a, b);
  assert.equal(uniqueName(m, 'fresh'), 'fresh');
});

test('uniqueName/addInitializer with a usedNames set pick the same names as the full scan, subgraphs included', () => {
  for (const make of [mlpModel, ifModel]) {
    const scan = make();
    const indexed = make();
    const used = usedNames(indexed);
    const bases = [...used].filter((n) => n).slice(0, 12);
    for (const b of [...bases, ...bases, 'fresh', 'fresh'])
      assert.equal(uniqueName(indexed, b, used), uniqueName(scan, b), b);
    const t = makeTensor(uniqueName(scan, 'init'), 'float32', [], [1]);
    assert.ok(!used.has(t.name));
    addInitializer(indexed, t, undefined, used);
    assert.ok(used.has(t.name));
    assert.throws(() => addInitializer(indexed, t, undefined, used), /already used/);
    assert.throws(
      () => addInitializer(indexed, makeTensor(bases[0], 'float32', [], [1]), undefined, used),
      /already used/,
    );
  }
});

test('insert a node before a consumer, rewire, and drop what became unused: ORT matches the algebra', async () => {
  const m = mlpModel();
  const y0 = (await runOrt(m, x16)).y as Float32Array;
  const b2 = Array.from(
    new Float32Array(m.proto.graph!.initializer.find((t) => t.name === 'B2')!.rawData.slice().buffer),
  );
  // W1 → Mul(W1, 2) → mm1: y' = 2·(y − B2) + B2 since Relu and the Gemm product are linear in W1's scale.
  const two = uniqueName(m, 'two');
  addInitializer(m, makeTensor(two, 'float32', [], [2]));
  const scaled = uniqueName(m, 'W1_scaled');
  const mul = create(NodeProtoSchema, { opType: 'Mul', input: ['W1', two], output: [scaled] });
  insertNodesBefore(m, findNode(m, 'mm1')!.node, [mul]);
  assert.ok(mul.name, 'inserted node got a name');
  assert.equal(replaceAllUses(m, 'W1', scaled, { except: [mul] }), 1);
  assert.equal(removeInitializerIfUnused(m, 'W1'), false);
  const y1 = (await runOrt(m, x16)).y as Float32Array;
  y0.forEach((v, i) => assert.ok(Math.abs(y1[i] - (2 * (v - b2[i]) + b2[i])) < 1e-4));
  // Replace the Constant-node weight W2 by a new initializer; the Constant node goes away.
  const w2 = findNode(m, 'Constant_W2')!.node.attribute[0].t!;
  addInitializer(m, makeTensor('W2_new', 'float32', [8, 32], new Float32Array(w2.rawData.slice().buffer)));
  assert.equal(replaceAllUses(m, 'W2', 'W2_new'), 1);
  assert.equal(removeInitializerIfUnused(m, 'W2'), true);
  assert.equal(findNode(m, 'Constant_W2'), undefined);
  assert.deepEqual(Array.from((await runOrt(m, x16)).y), Array.from(y1));
  assert.throws(() => addInitializer(m, makeTensor('W2_new', 'float32', [1], [0])), { code: 'invalid-argument' });
});

test('adapter branch on a graph output: the producer writes a fresh name, the output keeps its name', async () => {
  const m = mlpModel();
  const y0 = (await runOrt(m, x16)).y as Float32Array;
  const fresh = renameProducerOutput(m, 'y');
  addInitializer(m, makeTensor('one', 'float32', [], [1]));
  m.proto.graph!.node.push(
    create(NodeProtoSchema, { name: 'adapter_add', opType: 'Add', input: [fresh, 'one'], output: ['y'] }),
  );
  const y1 = (await runOrt(m, x16)).y as Float32Array;
  y0.forEach((v, i) => assert.ok(Math.abs(y1[i] - (v + 1)) < 1e-6));
});

test('replaceAllUses reaches readers inside subgraphs', () => {
  const m = ifModel();
  addInitializer(m, makeTensor('Wouter2', 'float32', [8, 8], new Float32Array(64)));
  assert.equal(replaceAllUses(m, 'Wouter', 'Wouter2'), 1);
  assert.deepEqual(findNode(m, 'mm_then')!.node.input, ['x', 'Wouter2']);
  assert.equal(findNode(m, 'mm_then')!.graphPath, 'If_0/then_branch');
  assert.equal(removeInitializerIfUnused(m, 'Wouter'), true);
});

test('liveNodes: what the named values depend on, in graph order, outer-scope reads of subgraphs included', () => {
  const then = new GraphBuilder({ name: 'then' });
  then.output(then.node('Neg', ['relu_x'], {}, { name: 'neg_then', output: 'then_out' }), 'float32', [1, 8]);
  const other = new GraphBuilder({ name: 'else' });
  other.output(other.node('Identity', ['x'], {}, { name: 'id_else', output: 'else_out' }), 'float32', [1, 8]);
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', [1, 8]);
  b.input('cond', 'bool', []);
  b.node('Relu', ['x'], {}, { name: 'relu', output: 'relu_x' }); // read only inside the then-branch
  b.node('Sigmoid', ['x'], {}, { name: 'unused', output: 'sig' });
  b.node('Tanh', ['x'], {}, { name: 'tanh', output: 't' });
  b.node(
    'If',
    ['cond'],
    { then_branch: then.buildGraph(), else_branch: other.buildGraph() },
    { name: 'if', output: 'y' },
  );
  b.node('Abs', ['t'], {}, { name: 'abs', output: 'z' });
  b.output('y', 'float32', [1, 8]);
  b.output('z', 'float32', [1, 8]);
  const g = b.build().proto.graph!;
  assert.deepEqual(
    liveNodes(g, ['y']).map((n) => n.name),
    ['relu', 'if'],
  );
  assert.deepEqual(
    liveNodes(g, ['z']).map((n) => n.name),
    ['tanh', 'abs'],
  );
  assert.deepEqual(
    liveNodes(g, ['y', 'z']).map((n) => n.name),
    ['relu', 'tanh', 'if', 'abs'],
  );
  assert.deepEqual(liveNodes(g, ['x']), [], 'a graph input needs no node');
});
