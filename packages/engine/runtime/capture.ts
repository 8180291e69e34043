// Calibration statistics computed inside ONNX Runtime. For each statistics request the capture model gets a few
// nodes appended after the activation, so that a run returns only small reductions instead of the activation:
//   shape    Shape(X)                                  (rows and the last-dim check are done in JS)
//   sumSq    Σ_t X[t,k]² per input channel               [K]      (Conv: over batch and spatial axes, [C]) — as
//            ones[1,T]·(X⊙X), one MatMul: ONNX Runtime's ReduceSumSquare over the leading axis of [T, K] is 5–10 ×
//            slower (1024 × 2048, hot: 9.8 vs 0.9 ms). In a 1 B LLM capture run (ORT profile, 65 activations) these
//            nodes and the sample Slices took 0.83 s instead of 1.39 s, most of it the first touch of X⊙X's pages
//   hessian  XᵀX of the rows, as the tiles on and above its block diagonal (gramTiles; each [rows, cols], Conv:
//            [G, rows, cols] over im2col patch rows); stats.ts mirrors the rest
//   sample   up to R rows of X spread evenly over the batch [≤R, K] (Conv: [G, ≤R, K]) — the layer-error sample of
//            methods that need no Hessian
//   outSq    ‖X_s·W‖² per consumer MatMul of the sampled activation: the squares of the layer's own output over
//            the same sampled rows (a scalar each) — the layer error's reference, which the method would otherwise
//            recompute as one rows × K × N GEMM per layer
//   outTr    per consumer MatMul of an activation with a Hessian: ‖Y‖² of its output Y = X·W over ALL rows of the
//            batch, as per-row sums [T] (ReduceSumSquare over the contiguous last axis; JS adds the rows in float64):
//            (2/n)·Σ‖Y‖² = tr(W·H·Wᵀ), the layer error's denominator, which SparseGPT would otherwise compute as
//            ‖W·V‖² with V = U⁻¹ (~N·K² GEMM flops per layer); a few flops per output of a MatMul the pass runs anyway
// Activations that are not float32 (fp16, bf16, fp64) are Cast to float32 first, so every reduction runs and
// accumulates in fp32 on the session's execution provider (outTr: see outputRows); the runner then sums batches in
// float64.
// Conv patches are built in the graph too: a depthwise Conv with one-hot filters (group = C, C·kh·kw outputs, the
// layer's own strides/pads/dilations/auto_pad) copies every input pixel under each kernel tap to its own channel, so
// its output is exactly the im2col matrix (multiplications by 1 and 0 are exact) in the layout of the layer's Conv,
// padding included; Reshape/Transpose put the columns in readWeightMatrix's (ky, kx, ci) order.
// Opset differences handled: ReduceSumSquare takes `axes` as an input from opset 18 (an attribute before), Slice takes
// inputs from opset 10 (before that the sample is the first R rows).
import { create } from '@bufbuild/protobuf';
import { NodeProtoSchema, TensorProto_DataType, type NodeProto, type TensorProto } from '../onnx/gen/onnx_pb.js';
import { makeAttribute, type AttrValue } from '../onnx/builder.js';
import { tensorValueInfo, uniqueName, valueElemType } from '../onnx/graph.js';
import type { LoadedModel } from '../onnx/model.js';
import { makeTensor } from '../onnx/tensor.js';
import type { ConvGeometry } from './conv.js';

/** What to accumulate for one activation. */
export interface StatsRequest {
  /** Unique key (activation name, plus Conv geometry when it reads the activation through a Conv). */
  key: string;
  activation: string;
  /** Columns per group: MatMul/Gemm K; Conv kh·kw·cg. */
  K: number;
  groups: number;
  /** Conv only: geometry (columns ordered (ky, kx, ci) like readWeightMatrix). */
  conv?: ConvGeometry;
  /** Accumulate the K×K Hessian per group. */
  hessian: boolean;
  /**
   * Keep up to this many rows of X (per group), spread evenly over the first calibration batch, for the layer error
   * of methods that need no Hessian (LayerStats.sample). @defaultValue none
   */
  sampleRows?: number;
  /**
   * MatMuls Y = X·W reading this activation as their first input and a weight as their second, whose ‖Y‖² over the
   * sampled rows the capture graph returns (LayerStats.sample.outputSquares; only where the activation is float32),
   * and with `hessian` also over every row (LayerStats.outputTraces; row sums Cast to float32 where Y is not). Only with
   * sampleRows or hessian; only where the MatMul runs in the pass anyway (calibration.ts drops the others).
   * @defaultValue none
   */
  outputs?: { weight: string; value: string; N: number }[];
}

/** One tile of XᵀX: rows [row, row + rows) × columns [col, col + cols), a graph output [(G,) rows, cols]. */
export interface GramTile {
  name: string;
  row: number;
  col: number;
  rows: number;
  cols: number;
}

/**
 * Where a later calibration pass starts. Every pass runs the model from its inputs to its last activation, so with
 * several passes (Hessians over the cap) the early layers ran once per pass: 3 full forward passes for the 1 B LLM's
 * 2 GiB cap, and one per ~1.4 GB of Hessians for a 7 B one. The first pass also fetches the values that cross the
 * cut in front of each later pass (the residual stream and masks of a transformer: a few MB per batch); a later pass
 * then runs only the nodes from its cut on, those values fed as inputs.
 */
export interface PassCut {
  /** Index in the main graph's node list of the earliest node producing one of the pass's activations. */
  start: number;
  /** Values read by the pass's nodes from `start` on but produced before it, with their ONNX element types. */
  frontier: { name: string; elemType: number }[];
}

/** Graph output names of one request's reductions. */
export interface CaptureOutputs {
  shape: string;
  sumSq: string;
  /** XᵀX: the tiles with col ≥ row (the full matrix when K ≤ GRAM_BLOCK). */
  hessian?: GramTile[];
  sample?: string;
  /** Per weight (StatsRequest.outputs): the graph output holding ‖X_s·W‖² (a scalar) and the MatMul output it reads. */
  outputSq?: { weight: string; name: string; value: string }[];
  /**
   * Per weight (StatsRequest.outputs, requests with a Hessian): the graph output holding the row sums of Y² over all
   * rows of the batch ([T], Y = X·W reshaped [T, N]) and the MatMul output it reads.
   */
  outputTrace?: { weight: string; name: string; value: string }[];
}

/**
 * Widest block of columns XᵀX is computed in. XᵀX is symmetric, so of its m × m blocks only the m(m+1)/2 on and above
 * the diagonal are computed, each by its own GEMM: fewer FLOPs (K = 2816: 4 blocks, 62.5 %) and smaller outputs to
 * allocate and copy out. A tile is what the full GEMM computes for those rows and columns, bit for bit (MLAS sums
 * each element over the tokens in the same order), and the full GEMM's XᵀX is exactly symmetric. One ORT run of
 * XᵀX at 1024 tokens (best of 10, load ~5): K = 2816 167 → 75 ms, K = 5632 1322 → 276 ms.
 */
export const GRAM_BLOCK = 768;

export interface AppendedStatistics {
  /** Per request key. */
  outputs: Map<string, CaptureOutputs>;
  /** Removes every node, initializer and output that was appended (the model is as it was before). */
  undo(): void;
}

const INT64_MAX = 2n ** 63n - 1n;

/** Appends the reductions of `reqs` to the main graph and declares them as graph outputs. */
export function appendStatistics(model: LoadedModel, reqs: StatsRequest[]): AppendedStatistics {
  const graph = model.proto.graph!;
  const before = { node: graph.node.length, init: graph.initializer.length, output: graph.output.length };
  const opset = Number(model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 1n);
  const e = new Emitter(model, opset);
  const float32Of = new Map<string, string>();
  const shapeOf = new Map<string, string>();
  const outputs = new Map<string, CaptureOutputs>();
  try {
    for (const req of latestFirst(model, reqs)) {
      let x = float32Of.get(req.activation);
      if (!x) {
        const t = valueElemType(model, req.activation);
        x = t === TensorProto_DataType.FLOAT ? req.activation : e.node('Cast', [req.activation], { to: 1 });
        float32Of.set(req.activation, x);
        shapeOf.set(req.activation, e.output(e.node('Shape', [req.activation]), TensorProto_DataType.INT64));
      }
      const out: CaptureOutputs = { shape: shapeOf.get(req.activation)!, sumSq: '' };
      const rows = req.conv ? convPatches(e, x, req) : matmulRows(e, x, req.K);
      out.sumSq = e.output(
        req.conv ? e.reduceSumSquare(x, req.conv.spatial === 2 ? [0, 2, 3] : [0, 2]) : e.columnSquares(rows!),
        TensorProto_DataType.FLOAT,
      );
      if (req.hessian) out.hessian = gramTiles(e, rows!, req);
      if (req.sampleRows) out.sample = e.output(e.sampleRows(rows!, req.conv ? 1 : 0, req.sampleRows), 1);
      if (req.sampleRows && req.outputs?.length && x === req.activation) out.outputSq = outputSquares(e, req);
      if (req.hessian && !req.conv && req.outputs?.length) out.outputTrace = outputRows(e, req, x !== req.activation);
      outputs.set(req.key, out);
    }
  } catch (err) {
    restore();
    throw err;
  }
  function restore() {
    graph.node.splice(before.node);
    graph.initializer.splice(before.init);
    graph.output.splice(before.output);
  }
  return { outputs, undo: restore };
}

/**
 * The requests latest activation first. ONNX Runtime's default execution order is a reverse depth-first walk from the
 * graph's leaf nodes that starts at the LAST leaf in node order and emits each leaf's ancestors before it. Appended
 * after the model in this order, the reductions of the first activation are the last leaves, so the walk runs the
 * forward pass up to that activation, reduces it, and frees it before going on — instead of running the whole model
 * first (the model's own output is the last original leaf) with every captured activation kept alive until then:
 * measured on the 245 M LLM at 8 × 128 tokens, +420 MB for 57 activations at the end vs +90 MB for one.
 */
function latestFirst(model: LoadedModel, reqs: StatsRequest[]): StatsRequest[] {
  const at = new Map<string, number>();
  model.proto.graph!.node.forEach((n, i) => {
    for (const o of n.output) at.set(o, i);
  });
  const pos = (r: StatsRequest) => at.get(r.activation) ?? -1;
  return reqs
    .map((r, i) => ({ r, i }))
    .sort((a, b) => pos(b.r) - pos(a.r) || a.i - b.i)
    .map((x) => x.r);
}

/** ‖Y_s‖² of each consumer MatMul's output Y = X·W over the rows sampleRows takes from X (same T, same step). */
function outputSquares(e: Emitter, req: StatsRequest): NonNullable<CaptureOutputs['outputSq']> {
  return req.outputs!.map((o) => {
    const rows = e.sampleRows(e.node('Reshape', [o.value, e.int64([-1, o.N])]), 0, req.sampleRows!);
    return {
      weight: o.weight,
      name: e.output(e.reduceSumSquare(rows, []), TensorProto_DataType.FLOAT),
      value: o.value,
    };
  });
}

/**
 * Σ_j Y[t, j]² per row t of each consumer MatMul's output Y = X·W (reshaped [T, N]) over the whole batch: reduced
 * along the contiguous last axis (ORT's fast path), N terms per fp32 sum; the T row sums are added in float64. With
 * `cast` (X, hence Y, not float32: an fp16 model) Y is reduced as it is, along axis -1 (no Reshape), and the row
 * sums are Cast to float32: a Cast or Reshape reading Y makes ONNX Runtime 1.29 (CPU) run the fp16 MatMuls it
 * otherwise runs in fp32 with fp16 kernels (250M16 SparseGPT: calibrate 14.5 → 22 s), while ReduceSumSquare has no
 * fp16 CPU kernel, so it joins the fp32 region and reads the fp32 Y (the Cast of its output then reads fp32 too: no
 * fp16 rounding, no overflow). An EP that reduces in fp16 may round the row sums to fp16, or overflow to ∞ (the layer
 * error then computes the trace itself).
 */
function outputRows(e: Emitter, req: StatsRequest, cast: boolean): NonNullable<CaptureOutputs['outputTrace']> {
  return req.outputs!.map((o) => {
    const rows =
      cast && e.opset >= 11
        ? e.reduceSumSquare(o.value, [-1])
        : e.reduceSumSquare(e.node('Reshape', [o.value, e.int64([-1, o.N])]), [1]);
    const sums = cast ? e.node('Cast', [rows], { to: TensorProto_DataType.FLOAT }) : rows;
    return { weight: o.weight, name: e.output(sums, TensorProto_DataType.FLOAT), value: o.value };
  });
}

/** X reshaped to [T, K] (every axis but the last folded into rows). */
function matmulRows(e: Emitter, x: string, K: number): string {
  return e.node('Reshape', [x, e.int64([-1, K])]);
}

/** XᵀX of `rows` ([T, K], Conv: [G, T, K]) as the tiles on and above its block diagonal (GRAM_BLOCK). */
function gramTiles(e: Emitter, rows: string, req: StatsRequest): GramTile[] {
  const m = Math.ceil(req.K / GRAM_BLOCK);
  const b = Math.ceil(req.K / m);
  const start = (i: number) => i * b;
  const size = (i: number) => Math.min(req.K, start(i + 1)) - start(i);
  const axis = req.conv ? 2 : 1;
  const parts = Array.from({ length: m }, (_, i) =>
    m === 1 ? rows : e.slice(rows, axis, start(i), start(i) + size(i)),
  );
  // Batched for Conv groups; ORT fuses each Transpose + MatMul into one transposed GEMM (a Transpose per product:
  // the fusion wants the Transpose to have no other reader).
  const perm = req.conv ? [0, 2, 1] : [1, 0];
  const tiles: GramTile[] = [];
  for (let i = 0; i < m; i++)
    for (let j = i; j < m; j++) {
      const product = e.node('MatMul', [e.node('Transpose', [parts[i]], { perm }), parts[j]]);
      const name = e.output(product, TensorProto_DataType.FLOAT);
      tiles.push({ name, row: start(i), col: start(j), rows: size(i), cols: size(j) });
    }
  return tiles;
}

/** Conv: im2col patch rows per group, [G, T, K] with columns (ky, kx, ci), T = batch · output pixels. */
function convPatches(e: Emitter, x: string, req: StatsRequest): string | undefined {
  if (!req.hessian && !req.sampleRows) return undefined;
  const g = req.conv!;
  const C = g.cg * g.group;
  const S = g.kh * g.kw;
  // One-hot filter: output channel c·S + s copies input channel c at kernel tap s.
  const onehot = new Float32Array(C * S * S);
  for (let c = 0; c < C; c++) for (let s = 0; s < S; s++) onehot[(c * S + s) * S + s] = 1;
  const two = g.spatial === 2;
  const attrs: Record<string, AttrValue> = {
    group: C,
    kernel_shape: two ? [g.kh, g.kw] : [g.kw],
    strides: two ? [g.strideH, g.strideW] : [g.strideW],
    dilations: two ? [g.dilH, g.dilW] : [g.dilW],
  };
  if (g.autoPad === 'NOTSET') attrs.pads = two ? g.pads : [g.pads[1], g.pads[3]];
  else attrs.auto_pad = g.autoPad;
  const w = e.initializer('float32', two ? [C * S, 1, g.kh, g.kw] : [C * S, 1, g.kw], onehot);
  const unfolded = e.node('Conv', [x, w], attrs); // [B, C·S, oh(, ow)]
  const split = e.node('Reshape', [unfolded, e.int64([0, g.group, g.cg, S, -1])]); // [B, G, cg, S, P]
  const ordered = e.node('Transpose', [split], { perm: [1, 0, 4, 3, 2] }); // [G, B, P, S, cg]
  return e.node('Reshape', [ordered, e.int64([g.group, -1, S * g.cg])]);
}

/** Appends nodes and constants with fresh names; knows the opset's operator signatures. */
class Emitter {
  private n = 0;
  constructor(
    private readonly model: LoadedModel,
    readonly opset: number,
  ) {}

  private name(base: string): string {
    return uniqueName(this.model, `__calib_${base}_${this.n++}`);
  }

  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    const output = this.name(op.toLowerCase());
    const node: NodeProto = create(NodeProtoSchema, {
      opType: op,
      name: output,
      input: inputs,
      output: [output],
      attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
    });
    this.model.proto.graph!.node.push(node);
    return output;
  }

  initializer(dtype: 'float32' | 'int64', dims: number[], data: ArrayBufferView): string {
    const name = this.name('const');
    const t: TensorProto = makeTensor(name, dtype, dims, data);
    this.model.proto.graph!.initializer.push(t);
    return name;
  }

  int64(values: (number | bigint)[]): string {
    return this.initializer(
      'int64',
      [values.length],
      BigInt64Array.from(values, (v) => BigInt(v)),
    );
  }

  output(name: string, elemType: number): string {
    this.model.proto.graph!.output.push(tensorValueInfo(name, elemType));
    return name;
  }

  /** ReduceSumSquare over `axes` (none: over every axis, a scalar). */
  reduceSumSquare(x: string, axes: number[]): string {
    if (axes.length === 0) return this.node('ReduceSumSquare', [x], { keepdims: 0 });
    return this.opset >= 18
      ? this.node('ReduceSumSquare', [x, this.int64(axes)], { keepdims: 0 })
      : this.node('ReduceSumSquare', [x], { axes, keepdims: 0 });
  }

  /** Σ over rows of x² for x [T, K], as ones[1, T]·(x⊙x) → [1, K] (file comment; opset < 9: ReduceSumSquare). */
  columnSquares(x: string): string {
    if (this.opset < 9) return this.reduceSumSquare(x, [0]);
    const t = this.slice(this.node('Shape', [x]), 0, 0, 1);
    const ones = this.node('ConstantOfShape', [this.node('Concat', [this.int64([1]), t], { axis: 0 })], {
      value: makeTensor('one', 'float32', [1], new Float32Array([1])),
    });
    return this.node('MatMul', [ones, this.node('Mul', [x, x])]);
  }

  /** x[start:end] along `axis`. */
  slice(x: string, axis: number, start: number, end: number): string {
    if (this.opset < 10) return this.node('Slice', [x], { starts: [start], ends: [end], axes: [axis] });
    return this.node('Slice', [x, this.int64([start]), this.int64([end]), this.int64([axis])]);
  }

  /** Up to `r` rows along `axis`, every ⌈T/r⌉-th (opset < 10: the first r). */
  sampleRows(x: string, axis: number, r: number): string {
    if (this.opset < 10) return this.node('Slice', [x], { starts: [0], ends: [r], axes: [axis] });
    const t = this.node('Slice', [this.node('Shape', [x]), this.int64([axis]), this.int64([axis + 1])]);
    const step = this.node('Div', [this.node('Add', [t, this.int64([r - 1])]), this.int64([r])]);
    return this.node('Slice', [x, this.int64([0]), this.int64([INT64_MAX]), this.int64([axis]), step]);
  }
}
