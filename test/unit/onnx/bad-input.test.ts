// Hostile and broken model files: each class gives its own typed OnnxError, quickly, without a crash, hang or a
// large allocation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  FunctionProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
} from '../../../packages/engine/onnx/gen/onnx_pb.js';
import type { ModelProto } from '../../../packages/engine/onnx/gen/onnx_pb.js';
import { decodeModel, loadModel, saveModel } from '../../../packages/engine/onnx/model.js';
import { GraphBuilder, makeAttribute } from '../../../packages/engine/onnx/builder.js';
import { makeTensor } from '../../../packages/engine/onnx/tensor.js';
import {
  PPOCR_DET,
  convModel,
  ifModel,
  loopScanModel,
  mlpModel,
  randomFloats,
  removeDir,
  tempDir,
  viaModel,
} from '../../helpers/onnx-fixtures.js';
import { discoverWeights, readWeightMatrix } from '../../../packages/engine/onnx/weights.js';

const fails = (fn: () => unknown, code: string) =>
  assert.throws(fn, (e: Error & { code?: string }) => {
    assert.equal(e.name, 'OnnxError', `${e.name}: ${e.message}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
const failsAsync = (p: Promise<unknown>, code: string) =>
  assert.rejects(p, (e: Error & { code?: string }) => {
    assert.equal(e.name, 'OnnxError', `${e.name}: ${e.message}`);
    assert.equal(e.code, code, e.message);
    return true;
  });

test('empty file and missing file', async () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, 'e.onnx'), '');
    await failsAsync(loadModel(path.join(dir, 'e.onnx')), 'empty-file');
    await failsAsync(loadModel(path.join(dir, 'nope.onnx')), 'not-found');
    fails(() => decodeModel(new Uint8Array(0)), 'empty-file');
  } finally {
    removeDir(dir);
  }
});

test('truncated file: cut anywhere inside the graph gives "truncated"', () => {
  const bytes = fs.readFileSync(PPOCR_DET);
  for (const frac of [0.01, 0.25, 0.5, 0.75, 0.999])
    fails(() => decodeModel(bytes.subarray(0, Math.floor(bytes.length * frac))), 'truncated');
});

test('random bytes are rejected as not protobuf / not a model, never accepted', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const n = 64 + seed * 997;
    const bytes = new Uint8Array(randomFloats(n, seed).map((v) => Math.floor((v + 1) * 128)));
    assert.throws(
      () => decodeModel(bytes),
      (e: Error & { code?: string }) =>
        e.name === 'OnnxError' && ['not-protobuf', 'truncated', 'not-a-model'].includes(e.code ?? ''),
    );
  }
  // Valid protobuf that decodes as a ModelProto without a graph is not a model either.
  fails(
    () => decodeModel(toBinary(ModelProtoSchema, create(ModelProtoSchema, { irVersion: 8n, producerName: 'x' }))),
    'not-a-model',
  );
  const tensor = toBinary(TensorProtoSchema, makeTensor('t', 'float32', [2], [1, 2]));
  assert.throws(() => decodeModel(tensor), { name: 'OnnxError' });
});

test('a tensor whose dims claim 10^12 elements is rejected without allocating', () => {
  const model = mlpModel();
  const w = model.proto.graph!.initializer[0];
  w.dims = [1_000_000n, 1_000_000n];
  const before = process.memoryUsage().rss;
  fails(() => decodeModel(toBinary(ModelProtoSchema, model.proto)), 'dims-too-large');
  w.dims = [-1n, 16n];
  fails(() => decodeModel(toBinary(ModelProtoSchema, model.proto)), 'dims-too-large');
  w.dims = [2n ** 40n, 2n ** 40n];
  fails(() => decodeModel(toBinary(ModelProtoSchema, model.proto)), 'dims-too-large');
  assert.ok(process.memoryUsage().rss - before < 64 * 2 ** 20, 'no large allocation');
  // Plausible dims that disagree with the stored bytes.
  w.dims = [16n, 33n];
  fails(() => decodeModel(toBinary(ModelProtoSchema, model.proto)), 'raw-data-size-mismatch');
});

async function externalFixture(dir: string): Promise<{ file: string; proto: ModelProto }> {
  const file = path.join(dir, 'm.onnx');
  await saveModel(mlpModel(), file, { externalData: { sizeThreshold: 16 } });
  const m = await loadModel(file);
  return { file, proto: m.proto };
}

function setExternal(proto: ModelProto, key: string, value: string): void {
  const t = proto.graph!.initializer.find((x) => x.name === 'W1')!;
  const e = t.externalData.find((x) => x.key === key);
  if (e) e.value = value;
  else t.externalData.push({ ...t.externalData[0], key, value });
}

test('external data: absolute path, "..", escaping symlink, hard link, past EOF, missing, not a file', async () => {
  const root = tempDir();
  const dir = path.join(root, 'model');
  const outside = path.join(root, 'outside');
  fs.mkdirSync(dir);
  fs.mkdirSync(outside);
  try {
    const { file, proto } = await externalFixture(dir);
    const write = () => fs.writeFileSync(file, toBinary(ModelProtoSchema, proto));
    const secret = path.join(outside, 'secret.bin');
    fs.writeFileSync(secret, new Uint8Array(1 << 16));
    const cases: [string, string, () => void][] = [
      ['/etc/passwd', 'external-absolute-path', () => {}],
      [secret, 'external-absolute-path', () => {}],
      ['C:\\Windows\\x.bin', 'external-absolute-path', () => {}],
      ['../outside/secret.bin', 'external-path-traversal', () => {}],
      ['sub/../../outside/secret.bin', 'external-path-traversal', () => {}],
      ['..\\outside\\secret.bin', 'external-path-traversal', () => {}],
      ['link.bin', 'external-symlink-escape', () => fs.symlinkSync(secret, path.join(dir, 'link.bin'))],
      ['hard.bin', 'external-hard-link', () => fs.linkSync(secret, path.join(dir, 'hard.bin'))],
      ['absent.bin', 'external-missing', () => {}],
      ['adir', 'external-not-a-file', () => fs.mkdirSync(path.join(dir, 'adir'))],
    ];
    for (const [location, code, prepare] of cases) {
      prepare();
      setExternal(proto, 'location', location);
      write();
      await failsAsync(loadModel(file), code);
    }
    // A symlink that stays inside the folder is fine.
    fs.symlinkSync('m.onnx.data', path.join(dir, 'inside.bin'));
    setExternal(proto, 'location', 'inside.bin');
    write();
    await loadModel(file);
    const size = fs.statSync(path.join(dir, 'm.onnx.data')).size;
    setExternal(proto, 'location', 'm.onnx.data');
    setExternal(proto, 'offset', String(size));
    write();
    await failsAsync(loadModel(file), 'external-out-of-range');
    setExternal(proto, 'offset', String(2 ** 52));
    write();
    await failsAsync(loadModel(file), 'external-out-of-range');
    setExternal(proto, 'offset', 'abc');
    write();
    await failsAsync(loadModel(file), 'external-invalid');
    setExternal(proto, 'offset', '0');
    setExternal(proto, 'length', '12');
    write();
    await failsAsync(loadModel(file), 'raw-data-size-mismatch');
    // Bytes from memory with external references but no folder.
    fails(() => decodeModel(fs.readFileSync(file)), 'external-missing');
  } finally {
    removeDir(root);
  }
});

function modelWithFunctions(fns: { name: string; calls: string[]; inSubgraph?: boolean }[]): Uint8Array {
  const b = new GraphBuilder({ opset: 17, domains: { local: 1 } });
  const x = b.input('x', 'float32', [1]);
  b.output(b.node(fns[0].name, [x], {}, { domain: 'local', output: 'y' }), 'float32', [1]);
  const proto = b.build().proto;
  for (const f of fns) {
    const calls = f.calls.map((c, i) =>
      create(NodeProtoSchema, { opType: c, domain: 'local', input: ['a'], output: [`c${i}`] }),
    );
    let nodes = calls;
    if (f.inSubgraph) {
      const body = create(GraphProtoSchema, { name: 'then', node: calls });
      nodes = [
        create(NodeProtoSchema, {
          opType: 'If',
          input: ['cond'],
          output: ['o'],
          attribute: [makeAttribute('then_branch', body), makeAttribute('else_branch', body)],
        }),
      ];
    }
    proto.functions.push(
      create(FunctionProtoSchema, {
        name: f.name,
        domain: 'local',
        input: ['a'],
        output: ['b'],
        node: [...nodes, create(NodeProtoSchema, { opType: 'Identity', input: ['a'], output: ['b'] })],
        opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
      }),
    );
  }
  return toBinary(ModelProtoSchema, proto);
}

test('a local function calling itself (directly, through another, or from a subgraph) is rejected', () => {
  fails(() => decodeModel(modelWithFunctions([{ name: 'F', calls: ['F'] }])), 'function-recursion');
  fails(
    () =>
      decodeModel(
        modelWithFunctions([
          { name: 'A', calls: ['B'] },
          { name: 'B', calls: ['A'] },
        ]),
      ),
    'function-recursion',
  );
  fails(() => decodeModel(modelWithFunctions([{ name: 'F', calls: ['F'], inSubgraph: true }])), 'function-recursion');
  // A call chain without a cycle is fine.
  decodeModel(
    modelWithFunctions([
      { name: 'A', calls: ['B'] },
      { name: 'B', calls: [] },
    ]),
  );
});

test('subgraphs nested too deep are rejected (both past the limit and past the decoder stack)', () => {
  const nest = (levels: number) => {
    let g = create(GraphProtoSchema, { name: 'leaf' });
    for (let i = 0; i < levels; i++)
      g = create(GraphProtoSchema, {
        name: `g${i}`,
        node: [
          create(NodeProtoSchema, {
            opType: 'If',
            input: ['c'],
            output: ['o'],
            attribute: [makeAttribute('then_branch', g)],
          }),
        ],
      });
    return g;
  };
  const model = (g: ReturnType<typeof nest>) =>
    toBinary(
      ModelProtoSchema,
      create(ModelProtoSchema, {
        irVersion: 8n,
        opsetImport: [create(OperatorSetIdProtoSchema, { version: 17n })],
        graph: g,
      }),
    );
  fails(() => decodeModel(model(nest(65))), 'graph-too-deep'); // decodes, then the graph walker refuses (limit 64)
  fails(() => decodeModel(model(nest(100))), 'graph-too-deep'); // the decoder's own recursion limit
  decodeModel(model(nest(10)));
  // Hand-built bytes nested far deeper than any stack: GraphProto.node → NodeProto.attribute → AttributeProto.g.
  const levels = 20000;
  const chunks: number[][] = [];
  const varint = (v: number) => {
    const out: number[] = [];
    while (v > 127) {
      out.push((v & 127) | 128);
      v >>>= 7;
    }
    out.push(v);
    return out;
  };
  // Build sizes inside out without materialising every level: each level adds fixed headers around the inner size.
  let size = 0;
  const headers: number[][] = [];
  for (let i = 0; i < levels; i++) {
    const attr = [0x32, ...varint(size)]; // AttributeProto.g (field 6)
    const attrSize = attr.length + size;
    const node = [0x2a, ...varint(attrSize)]; // NodeProto.attribute (field 5)
    const nodeSize = node.length + attrSize;
    const graph = [0x0a, ...varint(nodeSize)]; // GraphProto.node (field 1)
    headers.push([...graph, ...node, ...attr]);
    size = graph.length + nodeSize;
  }
  for (let i = levels - 1; i >= 0; i--) chunks.push(headers[i]);
  const body = Uint8Array.from(chunks.flat());
  const head = [0x08, 0x08, 0x3a, ...varint(body.length)]; // ir_version 8, graph (field 7)
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  fails(() => decodeModel(bytes), 'graph-too-deep');
});

test('a FIFO planted as external data is refused without blocking', async () => {
  const dir = tempDir();
  try {
    const { file, proto } = await externalFixture(dir);
    const fifo = path.join(dir, 'pipe.bin');
    const r = spawnSync('mkfifo', [fifo]);
    if (r.status !== 0) return; // no mkfifo on this system
    setExternal(proto, 'location', 'pipe.bin');
    fs.writeFileSync(file, toBinary(ModelProtoSchema, proto));
    await failsAsync(loadModel(file), 'external-not-a-file');
  } finally {
    removeDir(dir);
  }
});

test('sizes past protobuf 2 GiB: a .onnx that large, and inline saving of > 2 GiB of weights (sparse files)', async () => {
  const dir = tempDir();
  try {
    const big = path.join(dir, 'big.onnx');
    fs.closeSync(fs.openSync(big, 'w'));
    fs.truncateSync(big, 2 ** 31 + 10); // sparse: no disk space used
    await failsAsync(loadModel(big), 'file-too-large');
    // A 2.25 GiB external tensor is fine to load and reference, but cannot be saved inline.
    const b = new GraphBuilder();
    b.output(b.node('Identity', [b.input('x', 'float32', [1])], {}, { output: 'y' }), 'float32', [1]);
    const model = b.build();
    const t = makeTensor('huge', 'float32', [0], []);
    t.dims = [BigInt(9 * 2 ** 26)];
    t.dataLocation = 1;
    t.externalData = [create(StringStringEntryProtoSchema, { key: 'location', value: 'huge.bin' })];
    model.proto.graph!.initializer.push(t);
    const hugeFile = path.join(dir, 'huge.bin');
    fs.closeSync(fs.openSync(hugeFile, 'w'));
    fs.truncateSync(hugeFile, 9 * 2 ** 28);
    const file = path.join(dir, 'm.onnx');
    fs.writeFileSync(file, toBinary(ModelProtoSchema, model.proto));
    const loaded = await loadModel(file);
    await failsAsync(saveModel(loaded, path.join(dir, 'inline.onnx'), { externalData: false }), 'too-large-for-inline');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['big.onnx', 'huge.bin', 'm.onnx'], 'nothing half-written');
  } finally {
    removeDir(dir);
  }
});

test('bit-flipped models: load, discover, read and save either work or throw OnnxError (never anything else)', async () => {
  const dir = tempDir();
  try {
    let seed = 1;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const bases = [mlpModel, viaModel, ifModel, loopScanModel, convModel].map((f) =>
      toBinary(ModelProtoSchema, f().proto),
    );
    const seen = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const b = new Uint8Array(bases[i % bases.length]);
      for (let j = 0, flips = 1 + Math.floor(rnd() * 4); j < flips; j++)
        b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 8);
      try {
        const m = decodeModel(b, dir);
        for (const w of discoverWeights(m, { minElements: 0 })) if (w.readable) readWeightMatrix(m, w);
        await saveModel(m, path.join(dir, 'fuzz.onnx'));
        seen.add('ok');
      } catch (e) {
        assert.equal((e as Error).name, 'OnnxError', `case ${i}: ${(e as Error).stack}`);
        seen.add((e as { code: string }).code);
      }
    }
    assert.ok(seen.has('ok') && seen.has('not-protobuf') && seen.size >= 4, [...seen].join(', '));
  } finally {
    removeDir(dir);
  }
});
