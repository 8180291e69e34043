// Dense GEMM through onnxruntime-node. ORT's CPU Gemm runs MLAS (fp32: tens of GFLOP/s on 2 cores) where a JS scalar
// loop manages ~1 GFLOP/s, so every large product in the maths goes through here. One tiny in-memory ONNX model per
// (dtype, transA, transB, C mode) with symbolic dims; its session is created once and cached. Products below
// SMALL_FLOPS run a JS loop (session.run has ~20 µs of fixed overhead and a copy of the inputs).
// session.run executes synchronously on the calling thread (inside a setImmediate), so the engine calls these from
// worker threads, never from the API's event loop.
// Execution provider: CPU (MLAS) unless setGemmExecutionProvider('cuda') is called — the runner does so for a job
// whose sessions run on CUDA, so SparseGPT's block updates, the randomized SVD's products, blocked factorisations
// and relative errors run on the GPU (fp32 and float64 Gemm are both CUDA kernels; inputs and outputs are copied
// between host and device per call). A CUDA session that cannot be created falls back to CPU once, with the reason
// kept for the report (gemmExecutionProvider). The setting is per thread (module state; jobs run in worker threads).
import type * as ort from 'onnxruntime-node';
import { ort as loadOrt } from '../runtime/ort.js';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from '../onnx/gen/onnx_pb.js';
import { transposeInto } from './transpose.js';

export interface MatmulOptions {
  /** Use Aᵀ: `a` is stored [k][m]. @defaultValue false */
  transA?: boolean;
  /** Use Bᵀ: `b` is stored [n][k]. @defaultValue false */
  transB?: boolean;
}

export class GemmShapeError extends Error {
  override name = 'GemmShapeError';
}

/** Below this many multiply-adds the JS loop beats the ORT call overhead. */
const SMALL_FLOPS = 32 * 1024;

type Dtype = 'float32' | 'float64';
/** What happens to C: none (Y = AB), subtract (Y = C − AB), add (Y = C + AB). */
type Mode = 0 | 1 | 2;
type Key = `${'cpu' | 'cuda'}:${Dtype}:${0 | 1}:${0 | 1}:${Mode}`;
const sessions = new Map<Key, Promise<ort.InferenceSession>>();

let provider: 'cpu' | 'cuda' = 'cpu';
let fallback: string | undefined;

/**
 * Runs the GEMMs on `ep` from now on (this thread). For 'cuda' a probe session is created at once: when CUDA is not
 * available the provider stays 'cpu' and the reason is returned (and kept for gemmExecutionProvider()).
 */
export async function setGemmExecutionProvider(
  ep: 'cpu' | 'cuda',
): Promise<{ executionProvider: 'cpu' | 'cuda'; fallback?: string }> {
  fallback = undefined;
  provider = ep;
  if (ep === 'cuda') {
    try {
      await session('float32', false, false, 0);
    } catch (e) {
      provider = 'cpu';
      fallback = `cuda: ${String((e as Error).message ?? e)
        .split('\n')[0]
        .slice(0, 300)}`;
    }
  }
  return { executionProvider: provider, ...(fallback ? { fallback } : {}) };
}

/** Where the GEMMs run now, and why not on CUDA when it was asked for and failed. */
export function gemmExecutionProvider(): { executionProvider: 'cpu' | 'cuda'; fallback?: string } {
  return { executionProvider: provider, ...(fallback ? { fallback } : {}) };
}

/** Threads for ORT's intra-op pool; defaults to ORT's own choice (one per physical core). */
let intraOpThreads: number | undefined;
export function setGemmThreads(threads: number | undefined): void {
  if (threads !== intraOpThreads) {
    intraOpThreads = threads;
    sessions.clear();
  }
}

function dim(name: string) {
  return create(TensorShapeProto_DimensionSchema, { value: { case: 'dimParam', value: name } });
}

function valueInfo(name: string, elemType: TensorProto_DataType, dims: string[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType,
          shape: create(TensorShapeProtoSchema, { dim: dims.map(dim) }),
        }),
      },
    }),
  });
}

function intAttr(name: string, i: number) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(i) });
}

function floatAttr(name: string, f: number) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f });
}

/** Y = op(A)·op(B), or Y = C ∓ op(A)·op(B) (Gemm alpha = ∓1, beta = 1) for mode 1 (subtract) / 2 (add). */
function buildGemmModel(dtype: Dtype, transA: boolean, transB: boolean, mode: Mode): Uint8Array {
  const withC = mode !== 0;
  const elem = dtype === 'float32' ? TensorProto_DataType.FLOAT : TensorProto_DataType.DOUBLE;
  const aDims = transA ? ['k', 'm'] : ['m', 'k'];
  const bDims = transB ? ['n', 'k'] : ['k', 'n'];
  const inputs = [valueInfo('A', elem, aDims), valueInfo('B', elem, bDims)];
  const attrs = [intAttr('transA', transA ? 1 : 0), intAttr('transB', transB ? 1 : 0)];
  if (withC) {
    inputs.push(valueInfo('C', elem, ['m', 'n']));
    attrs.push(floatAttr('alpha', mode === 1 ? -1 : 1), floatAttr('beta', 1));
  }
  const node = create(NodeProtoSchema, {
    opType: 'Gemm',
    input: withC ? ['A', 'B', 'C'] : ['A', 'B'],
    output: ['Y'],
    attribute: attrs,
  });
  const graph = create(GraphProtoSchema, {
    name: 'gemm',
    node: [node],
    input: inputs,
    output: [valueInfo('Y', elem, ['m', 'n'])],
  });
  const model = create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 13n })],
    producerName: 'onnx-compress-gemm',
    graph,
  });
  return toBinary(ModelProtoSchema, model);
}

function session(dtype: Dtype, transA: boolean, transB: boolean, mode: Mode) {
  const key: Key = `${provider}:${dtype}:${transA ? 1 : 0}:${transB ? 1 : 0}:${mode}`;
  let s = sessions.get(key);
  if (!s) {
    const opts: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionProviders: [provider],
      logSeverityLevel: 3,
    };
    // Idle pool threads sleep instead of spinning: the engine runs JS between its GEMMs, and on 2 shared cores a
    // spinning thread takes the core from whatever else runs (slim.bench paper 3.85 → 3.4 s at load 2, CPU −1.2 s).
    opts.extra = { session: { intra_op: { allow_spinning: '0' } } };
    if (intraOpThreads !== undefined) opts.intraOpNumThreads = intraOpThreads;
    s = loadOrt().InferenceSession.create(buildGemmModel(dtype, transA, transB, mode), opts);
    s.catch(() => sessions.delete(key));
    sessions.set(key, s);
  }
  return s;
}

function checkDims(m: number, k: number, n: number) {
  for (const [name, v] of [
    ['m', m],
    ['k', k],
    ['n', n],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new GemmShapeError(`matmul: ${name} = ${v} is not a size`);
  }
}

function checkLen(name: string, arr: { length: number }, want: number) {
  if (arr.length !== want) throw new GemmShapeError(`matmul: ${name} has ${arr.length} elements, expected ${want}`);
}

/** JS reference/fallback: C = op(A)·op(B), accumulating in the array's own precision (float64 locals). */
export function matmulJs<T extends Float32Array | Float64Array>(
  a: T,
  b: T,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
  out?: T,
): T {
  const c = (out ?? new (a.constructor as { new (len: number): T })(m * n)) as T;
  c.fill(0);
  const tA = !!opts.transA;
  const tB = !!opts.transB;
  // i-p-j order for unit stride over B and C rows when B is not transposed.
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    if (!tB) {
      for (let p = 0; p < k; p++) {
        const av = tA ? a[p * m + i] : a[i * k + p];
        if (av === 0) continue;
        const bp = p * n;
        for (let j = 0; j < n; j++) c[ci + j] += av * b[bp + j];
      }
    } else {
      for (let j = 0; j < n; j++) {
        let s = 0;
        const bj = j * k;
        if (tA) for (let p = 0; p < k; p++) s += a[p * m + i] * b[bj + p];
        else for (let p = 0; p < k; p++) s += a[i * k + p] * b[bj + p];
        c[ci + j] = s;
      }
    }
  }
  return c;
}

async function runGemm<T extends Float32Array | Float64Array>(
  dtype: Dtype,
  a: T,
  b: T,
  c: T | undefined,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions,
  inPlace = false,
  out?: T,
  add = false,
): Promise<T> {
  checkDims(m, k, n);
  checkLen('A', a, m * k);
  checkLen('B', b, k * n);
  if (c) checkLen('C', c, m * n);
  if (out) checkLen('out', out, m * n);
  if (inPlace) out = c;
  const tA = !!opts.transA;
  const tB = !!opts.transB;
  const Ctor = (dtype === 'float32' ? Float32Array : Float64Array) as unknown as { new (len: number): T };
  if (m === 0 || n === 0 || k === 0) {
    const y = out ?? new Ctor(m * n);
    if (c) {
      if (y !== c) y.set(c);
    } else y.fill(0);
    return y;
  }
  if (m * k * n < SMALL_FLOPS) {
    const prod = matmulJs(a, b, m, k, n, opts);
    const y = out ?? prod;
    if (!c) {
      if (y !== prod) y.set(prod);
    } else if (add) for (let i = 0; i < prod.length; i++) y[i] = c[i] + prod[i];
    else for (let i = 0; i < prod.length; i++) y[i] = c[i] - prod[i];
    return y;
  }
  const s = await session(dtype, tA, tB, c ? (add ? 2 : 1) : 0);
  const feeds: Record<string, ort.Tensor> = {
    A: new (loadOrt().Tensor)(dtype, a, tA ? [k, m] : [m, k]),
    B: new (loadOrt().Tensor)(dtype, b, tB ? [n, k] : [k, n]),
  };
  if (c) feeds.C = new (loadOrt().Tensor)(dtype, c, [m, n]);
  if (out) {
    // Pre-allocated output: ORT writes straight into it (no fresh output buffer to page in, no copy back). When it
    // aliases C, ORT's Gemm copies C into Y (a no-op here) and then runs sgemm with beta = 1, each output element
    // read and written by one thread. Verified in test/unit/math/gemm.test.ts for 1.29.
    await s.run(feeds, { Y: new (loadOrt().Tensor)(dtype, out, [m, n]) });
    return out;
  }
  const r = await s.run(feeds);
  return r.Y.data as T;
}

/** C[m,n] = op(A)·op(B), row-major fp32 (MLAS sgemm; fp32 accumulation inside the kernel). */
export function matmul(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<Float32Array> {
  return runGemm('float32', a, b, undefined, m, k, n, opts);
}

/** C[m,n] = op(A)·op(B) written into `out` (fp32): no fresh output buffer — for products of 64 MB and more. */
export function matmulInto(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<Float32Array> {
  return runGemm('float32', a, b, undefined, m, k, n, opts, false, out);
}

/**
 * Returns C − op(A)·op(B), fp32, in a new array or in `out` (`c` is not modified unless it is `out`). One fused
 * Gemm call, no extra pass.
 */
export function matmulSubtract(
  c: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
  out?: Float32Array,
): Promise<Float32Array> {
  return runGemm('float32', a, b, c, m, k, n, opts, false, out);
}

/** C += op(A)·op(B) in place (fp32, one Gemm with beta = 1 writing into C). */
export async function matmulAddInPlace(
  c: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<void> {
  await runGemm('float32', a, b, c, m, k, n, opts, true, undefined, true);
}

/** C −= op(A)·op(B) in place (fp32): no output allocation, no copy back — for the big SparseGPT lazy updates. */
export async function matmulSubtractInPlace(
  c: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<void> {
  await runGemm('float32', a, b, c, m, k, n, opts, true);
}

/** C[m,n] = op(A)·op(B) written into `out`, float64 (matmulInto's double twin). */
export function matmulIntoF64(
  out: Float64Array,
  a: Float64Array,
  b: Float64Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<Float64Array> {
  return runGemm('float64', a, b, undefined, m, k, n, opts, false, out);
}

/** C −= op(A)·op(B) in place, float64. */
export async function matmulSubtractInPlaceF64(
  c: Float64Array,
  a: Float64Array,
  b: Float64Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<void> {
  await runGemm('float64', a, b, c, m, k, n, opts, true);
}

/**
 * C[m,n] = op(A)·op(B) in float64 through ORT's double Gemm. Measured (bench/sparsity-kernels.bench.ts, quiet
 * 2-core machine, 2048³): ~40–70 GFLOP/s, about half the fp32 rate and ~100× a JS loop — the best route for float64.
 */
export function matmulF64(
  a: Float64Array,
  b: Float64Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<Float64Array> {
  return runGemm('float64', a, b, undefined, m, k, n, opts);
}

/** Returns C − op(A)·op(B) in float64 (new array). */
export function matmulSubtractF64(
  c: Float64Array,
  a: Float64Array,
  b: Float64Array,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<Float64Array> {
  return runGemm('float64', a, b, c, m, k, n, opts);
}

/** Panel width for gramAccumulate's symmetric split (inputs narrower than two panels take one GEMM). */
const GRAM_PANEL = 1024;

/**
 * acc[cols×cols] += XᵀX for one batch X[rows][cols]. The batch product runs fp32 in MLAS (its error is ~rows·2⁻²⁴
 * relative, fine for a Hessian); the running sum across batches is float64 so that many batches do not drift.
 * X is transposed once (tiled) so that panels of Xᵀ are contiguous row ranges and every product is the A·Bᵀ form;
 * wide inputs multiply only the panel pairs on and above the diagonal and mirror the rest: (p+1)/2p of the flops
 * for p panels (62.5% at K = 4096). Callers scale by 2/n at the end (H = (2/n)·Σ x xᵀ).
 */
export async function gramAccumulate(x: Float32Array, rows: number, cols: number, acc: Float64Array): Promise<void> {
  checkLen('X', x, rows * cols);
  checkLen('acc', acc, cols * cols);
  if (rows === 0) return;
  const xt = new Float32Array(rows * cols);
  transposeInto(x, 0, cols, rows, cols, xt, 0, rows);
  if (cols < 2 * GRAM_PANEL) {
    const g = await matmul(xt, xt, cols, rows, cols, { transB: true });
    for (let i = 0; i < g.length; i++) acc[i] += g[i];
    return;
  }
  for (let i0 = 0; i0 < cols; i0 += GRAM_PANEL) {
    const i1 = Math.min(i0 + GRAM_PANEL, cols);
    for (let j0 = i0; j0 < cols; j0 += GRAM_PANEL) {
      const j1 = Math.min(j0 + GRAM_PANEL, cols);
      const g = await matmul(
        xt.subarray(i0 * rows, i1 * rows),
        xt.subarray(j0 * rows, j1 * rows),
        i1 - i0,
        rows,
        j1 - j0,
        {
          transB: true,
        },
      );
      addBlock(acc, cols, i0, j0, g, i1 - i0, j1 - j0, i0 !== j0);
    }
  }
}

/** acc[r0+a][c0+b] += g[a][b] and, with `mirror`, acc[c0+b][r0+a] += g[a][b] — in 32×32 tiles for the mirror. */
function addBlock(
  acc: Float64Array,
  ld: number,
  r0: number,
  c0: number,
  g: Float32Array,
  h: number,
  w: number,
  mirror: boolean,
) {
  for (let a = 0; a < h; a++) {
    const base = (r0 + a) * ld + c0;
    for (let b = 0; b < w; b++) acc[base + b] += g[a * w + b];
  }
  if (!mirror) return;
  for (let a0 = 0; a0 < h; a0 += 32)
    for (let b0 = 0; b0 < w; b0 += 32) {
      const a1 = Math.min(a0 + 32, h);
      const b1 = Math.min(b0 + 32, w);
      for (let b = b0; b < b1; b++) {
        const base = (c0 + b) * ld + r0;
        for (let a = a0; a < a1; a++) acc[base + a] += g[a * w + b];
      }
    }
}
