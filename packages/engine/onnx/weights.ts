// Weight discovery: every tensor that feeds a MatMul, Gemm or Conv as its weight, wherever it is stored
// (initializer, Constant node, sparse initializer, external data; main graph or If/Loop/Scan bodies), followed
// back through data-preserving ops (Identity, Cast, Reshape, Squeeze, Unsqueeze, Flatten, Transpose). Each weight
// can be read and written as a canonical [N][K] float32 matrix: row = output, K = reduction, Conv columns ordered
// (kh, kw, cin) so that consecutive input channels of one kernel position are contiguous (NVIDIA ASP layout).
import type { NodeProto, SparseTensorProto, TensorProto } from './gen/onnx_pb.js';
import { OnnxError } from './errors.js';
import type { DType } from './dtypes.js';
import { dtypeInfo, onnxFromDtype } from './dtypes.js';
import { isExternal } from './external.js';
import type { LoadedModel } from './loaded.js';
import type { Def, ScopeIndex } from './scopes.js';
import { buildScopeIndex } from './scopes.js';
import {
  elementCount,
  encodeFloats,
  makeTensor,
  setTensorRawData,
  storeRewrittenBytes,
  tensorDims,
  tensorDtype,
  tensorToFloat32,
  tensorToFloat64,
} from './tensor.js';
import type { GraphVisit } from './walk.js';
import { nodeKey } from './walk.js';
import { transposeInto } from '../math/transpose.js';

export interface WeightRef {
  /** Name of the stored value (initializer name, Constant output name, sparse initializer name). */
  name: string;
  op: 'MatMul' | 'Gemm' | 'Conv';
  /** First consuming node (name, or `<op>#<index>` when unnamed); `nodes` lists all of them. */
  node: string;
  nodes: string[];
  /** Graph holding the consumer: '' = main graph, else e.g. 'If_3/then_branch'. */
  graphPath: string;
  /** Graph holding the stored tensor (an outer graph when a subgraph reads an outer weight). */
  storeGraphPath: string;
  /** Shape and dtype of the STORED tensor. */
  shape: number[];
  dtype: DType;
  /** Shape the consumer sees after `via` (equals `shape` unless a Reshape/Squeeze/Unsqueeze/Flatten/Transpose sits in between). */
  consumerShape: number[];
  /**
   * Reduction and output axes. Axes of the stored tensor when `via` only holds Identity/Cast/Transpose; when a
   * shape-changing op sits in between they are axes of `consumerShape`.
   */
  kAxis: number;
  nAxis: number;
  /** K = reduction length per output (Conv: Cin/group·kh·kw), N = outputs. */
  K: number;
  N: number;
  group?: number;
  transB?: boolean;
  location: 'initializer' | 'constant' | 'external' | 'sparse-initializer';
  /** Ops between the store and the consumer, store side first. */
  via: string[];
  /** Data-reordering steps of `via` (Transposes), replayed by read/writeWeightMatrix. */
  transposes: { inShape: number[]; perm: number[] }[];
  /** The consumer's data input (MatMul A, Gemm A, Conv X), for calibration. */
  activation?: string;
  /** False when the activation lives in a subgraph (it cannot be made a graph output). */
  activationInMainGraph: boolean;
  /** Whether read/writeWeightMatrix can map it: a stored weight with a matrix layout (compressible implies it). */
  readable: boolean;
  compressible: boolean;
  reason?: string;
  /** Set when the operand is computed at run time from the stored tensor (the op on the way): not a weight. */
  computedBy?: string;
}

export interface DiscoverOptions {
  /** Weights with fewer elements are reported as not compressible ('too small'). @defaultValue 1024 */
  minElements?: number;
  /** When set, weights whose K is not a multiple of it are not compressible (e.g. 4 for 2:4). */
  multipleOf?: number;
}

const SHAPE_ONLY = new Set(['Identity', 'Cast', 'Reshape', 'Squeeze', 'Unsqueeze', 'Flatten']);
const WRITABLE: ReadonlySet<DType> = new Set(['float32', 'float16', 'bfloat16', 'float64']);

interface Trace {
  store?: Def;
  /** Nodes between store and consumer, store side first. */
  chain: NodeProto[];
  /** Visit of the graph holding each chain node (for resolving their other inputs). */
  chainVisits: GraphVisit[];
  computedBy?: string;
  /** A value on the way is also read by someone else. */
  sharedVia?: string;
}

function attrInt(n: NodeProto, name: string, dflt: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : dflt;
}
function attrInts(n: NodeProto, name: string): number[] | undefined {
  const a = n.attribute.find((x) => x.name === name);
  return a ? a.ints.map(Number) : undefined;
}

function isDefaultDomain(n: NodeProto): boolean {
  return n.domain === '' || n.domain === 'ai.onnx';
}

function trace(index: ScopeIndex, visit: GraphVisit, name: string): Trace {
  const chain: NodeProto[] = [];
  const chainVisits: GraphVisit[] = [];
  let sharedVia: string | undefined;
  let def = index.resolve(visit, name);
  let defVisit = visit;
  for (let steps = 0; def && steps < 64; steps++) {
    if (def.kind === 'initializer' || def.kind === 'constant' || def.kind === 'sparse')
      return { store: def, chain, chainVisits, sharedVia };
    if (def.kind === 'input') return { chain, chainVisits, computedBy: 'a graph input' };
    const node = def.node!;
    const nodeVisit = index.visits.find((v) => v.graph === def!.graph) ?? defVisit;
    const transparent = isDefaultDomain(node) && (SHAPE_ONLY.has(node.opType) || node.opType === 'Transpose');
    if (!transparent) {
      // Follow the first input only to name the stored tensor in the report; it is not a usable weight.
      const upstream = node.input[0] ? trace(index, nodeVisit, node.input[0]) : undefined;
      return { store: upstream?.store, chain, chainVisits, computedBy: node.opType };
    }
    if ((index.uses.get(def)?.length ?? 0) > 1) sharedVia ??= def.name;
    chain.unshift(node);
    chainVisits.unshift(nodeVisit);
    defVisit = nodeVisit;
    def = index.resolve(nodeVisit, node.input[0]);
  }
  return { chain, chainVisits, computedBy: 'an unknown value' };
}

/** Integer values of a constant input (Reshape shape, Squeeze axes), or undefined when not constant. */
function constInts(
  model: LoadedModel,
  index: ScopeIndex,
  visit: GraphVisit,
  name: string | undefined,
): number[] | undefined {
  if (!name) return undefined;
  const t = trace(index, visit, name);
  if (!t.store?.tensor || t.chain.some((n) => n.opType !== 'Identity')) return undefined;
  return Array.from(tensorToFloat64(model, t.store.tensor));
}

function opsetOf(model: LoadedModel): number {
  const o = model.proto.opsetImport.find((x) => x.domain === '' || x.domain === 'ai.onnx');
  return o ? Number(o.version) : 1;
}

/** Shape after one data-preserving op, or a reason it cannot be known statically. */
function stepShape(
  model: LoadedModel,
  index: ScopeIndex,
  visit: GraphVisit,
  n: NodeProto,
  d: number[],
): number[] | string {
  switch (n.opType) {
    case 'Identity':
    case 'Cast':
      return d;
    case 'Transpose': {
      const perm = attrInts(n, 'perm') ?? d.map((_, i) => d.length - 1 - i);
      return perm.map((p) => d[p]);
    }
    case 'Flatten': {
      let axis = attrInt(n, 'axis', 1);
      if (axis < 0) axis += d.length;
      const a = d.slice(0, axis).reduce((x, y) => x * y, 1);
      return [a, d.slice(axis).reduce((x, y) => x * y, 1)];
    }
    case 'Reshape': {
      const shape = constInts(model, index, visit, n.input[1]);
      if (!shape) return 'Reshape to a shape computed at run time';
      const allowZero = attrInt(n, 'allowzero', 0) === 1;
      const out = shape.map((s, i) => (s === 0 && !allowZero ? d[i] : s));
      const total = d.reduce((x, y) => x * y, 1);
      const known = out.filter((s) => s !== -1).reduce((x, y) => x * y, 1);
      return out.map((s) => (s === -1 ? total / known : s));
    }
    case 'Squeeze':
    case 'Unsqueeze': {
      const axes = opsetOf(model) >= 13 ? constInts(model, index, visit, n.input[1]) : attrInts(n, 'axes');
      if (n.opType === 'Squeeze') {
        if (!axes) return d.filter((s) => s !== 1);
        const norm = new Set(axes.map((a) => (a < 0 ? a + d.length : a)));
        return d.filter((_, i) => !norm.has(i));
      }
      if (!axes) return 'Unsqueeze with axes computed at run time';
      const rank = d.length + axes.length;
      const norm = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
      const out: number[] = [];
      let j = 0;
      for (let i = 0; i < rank; i++) out.push(norm.has(i) ? 1 : d[j++]);
      return out;
    }
  }
  return `unsupported op ${n.opType}`;
}

function storeTensorInfo(def: Def): { dims: number[]; dtype: DType; tensor?: TensorProto; sparse?: SparseTensorProto } {
  if (def.kind === 'sparse') {
    const s = def.sparse!;
    return { dims: s.dims.map(Number), dtype: tensorDtype(s.values!), sparse: s };
  }
  return { dims: tensorDims(def.tensor!), dtype: tensorDtype(def.tensor!), tensor: def.tensor };
}

export function discoverWeights(model: LoadedModel, opts: DiscoverOptions = {}): WeightRef[] {
  const minElements = opts.minElements ?? 1024;
  const index = buildScopeIndex(model);
  const byStore = new Map<Def | string, WeightRef>();
  const order: WeightRef[] = [];
  for (const visit of index.visits) {
    visit.graph.node.forEach((node, ni) => {
      if (!isDefaultDomain(node) || !['MatMul', 'Gemm', 'Conv'].includes(node.opType)) return;
      const op = node.opType as WeightRef['op'];
      let weightInput = 1;
      let t = node.input[1] ? trace(index, visit, node.input[1]) : undefined;
      if (!t?.store && op !== 'Conv' && node.input[0]) {
        const left = trace(index, visit, node.input[0]);
        if (left.store) {
          t = left;
          weightInput = 0;
        }
      }
      if (!t?.store) return;
      const ref = describe(model, index, visit, node, ni, op, t, weightInput, minElements, opts.multipleOf);
      const existing = byStore.get(t.store);
      if (existing) {
        existing.nodes.push(ref.node);
        existing.compressible = false;
        existing.reason ??= `shared by ${existing.nodes.length} consumers`;
        return;
      }
      byStore.set(t.store, ref);
      order.push(ref);
    });
  }
  return order;
}

function describe(
  model: LoadedModel,
  index: ScopeIndex,
  visit: GraphVisit,
  node: NodeProto,
  nodeIndex: number,
  op: WeightRef['op'],
  t: Trace,
  weightInput: number,
  minElements: number,
  multipleOf: number | undefined,
): WeightRef {
  const store = t.store!;
  const info = storeTensorInfo(store);
  const location: WeightRef['location'] =
    store.kind === 'sparse'
      ? 'sparse-initializer'
      : info.tensor && isExternal(info.tensor)
        ? 'external'
        : store.kind === 'constant'
          ? 'constant'
          : 'initializer';
  const reasons: string[] = [];
  let readable = !t.computedBy;
  // Follow the chain forward to the shape the consumer sees.
  let shape = info.dims;
  const transposes: WeightRef['transposes'] = [];
  let shapeChanged = false;
  for (let i = 0; i < t.chain.length && !t.computedBy; i++) {
    const n = t.chain[i];
    const next = stepShape(model, index, t.chainVisits[i], n, shape);
    if (typeof next === 'string') {
      reasons.push(`weight is computed at run time (${next})`);
      readable = false;
      break;
    }
    if (n.opType === 'Transpose')
      transposes.push({ inShape: shape, perm: attrInts(n, 'perm') ?? shape.map((_, j) => shape.length - 1 - j) });
    else if (next.length !== shape.length || next.some((s, j) => s !== shape[j])) shapeChanged = true;
    shape = next;
  }
  const c = shape;
  const storedCount = info.dims.reduce((x, y) => x * y, 1);
  if (c.some((d) => !Number.isSafeInteger(d) || d < 0) || c.reduce((x, y) => x * y, 1) !== storedCount) {
    reasons.push(
      `shape after ${t.chain.map((n) => n.opType).join('>')} ([${c.join(', ')}]) does not match the stored tensor`,
    );
    readable = false;
  }
  let K = 0;
  let N = 0;
  let kC = 0;
  let nC = 1;
  let group: number | undefined;
  let transB: boolean | undefined;
  if (op === 'Conv') {
    group = attrInt(node, 'group', 1);
    N = c[0] ?? 0;
    K = c.slice(1).reduce((x, y) => x * y, 1);
    kC = 1;
    nC = 0;
    if (c.length < 3) {
      reasons.push(`Conv weight of rank ${c.length}`);
      readable = false;
    }
  } else if (op === 'Gemm') {
    transB = attrInt(node, 'transB', 0) === 1;
    [kC, nC] = transB ? [1, 0] : [0, 1];
    K = c[kC] ?? 0;
    N = c[nC] ?? 0;
    if (attrInt(node, 'transA', 0) === 1) reasons.push('Gemm with transA=1 (activation layout not supported)');
  } else {
    K = c[0] ?? 0;
    N = c[1] ?? 0;
    if (c.length === 1) reasons.push('weight is a vector (rank 1)');
    else if (c.length > 2) reasons.push(`batched weight (rank ${c.length})`);
  }
  if (op !== 'Conv' && c.length !== 2) readable = false;
  if (weightInput === 0) {
    reasons.unshift(`weight is the left operand of ${op}`);
    readable = false;
  }
  // Stored-tensor axes: map consumer axes back through the Transposes when no shape change intervenes.
  let kAxis = kC;
  let nAxis = nC;
  if (!shapeChanged)
    for (let i = transposes.length - 1; i >= 0; i--) {
      kAxis = transposes[i].perm[kAxis];
      nAxis = transposes[i].perm[nAxis];
    }
  if (t.computedBy) reasons.unshift(`weight is computed at run time (via ${t.computedBy})`);
  if (store.overridable) reasons.unshift('initializer is also a graph input (can be overridden at run time)');
  if (!dtypeInfo(info.dtype).float) reasons.push(`not float (${info.dtype})`);
  else if (!WRITABLE.has(info.dtype)) reasons.push(`dtype ${info.dtype} is not supported for rewriting`);
  const storeUses = index.uses.get(store)?.length ?? 0;
  if (storeUses > 1) reasons.push(`shared by ${storeUses} consumers`);
  else if (t.sharedVia) reasons.push(`shared: intermediate value '${t.sharedVia}' has other consumers`);
  const elements = info.dims.reduce((x, y) => x * y, 1);
  if (elements < minElements) reasons.push(`too small (${elements} elements < ${minElements})`);
  if (multipleOf && K % multipleOf !== 0) reasons.push(`K=${K} not divisible by ${multipleOf}`);
  const activationName = node.input[weightInput === 1 ? 0 : 1];
  const ref: WeightRef = {
    name: store.name,
    op,
    node: nodeKey(node, nodeIndex),
    nodes: [nodeKey(node, nodeIndex)],
    graphPath: visit.path,
    storeGraphPath: store.graphPath,
    shape: info.dims,
    dtype: info.dtype,
    consumerShape: c,
    kAxis,
    nAxis,
    K,
    N,
    location,
    via: t.chain.map((n) => n.opType),
    transposes,
    activationInMainGraph: activationName ? index.resolve(visit, activationName)?.graphPath === '' : false,
    readable,
    compressible: readable && reasons.length === 0,
  };
  if (activationName) ref.activation = activationName;
  if (t.computedBy) ref.computedBy = t.computedBy;
  if (group !== undefined) ref.group = group;
  if (transB !== undefined) ref.transB = transB;
  if (reasons.length) ref.reason = reasons.join('; ');
  return ref;
}

interface CachedStore {
  def: Def;
  visit: GraphVisit;
}

/** Stores found by the last full index of each model, re-verified on every use (the proto may have been edited). */
const storeCache = new WeakMap<LoadedModel, Map<string, CachedStore>>();

/** Whether a cached store is still where it was: same tensor object under the same name, graph still attached. */
function stillValid(model: LoadedModel, c: CachedStore): boolean {
  const { def } = c;
  const g = def.graph;
  if (def.kind === 'initializer' && (def.tensor!.name !== def.name || !g.initializer.includes(def.tensor!)))
    return false;
  if (def.kind === 'sparse' && (def.sparse!.values?.name !== def.name || !g.sparseInitializer.includes(def.sparse!)))
    return false;
  if (def.kind === 'constant' && (!def.node!.output.includes(def.name) || !g.node.includes(def.node!))) return false;
  if (def.kind === 'constant' && !def.node!.attribute.some((a) => a.name === 'value' && a.t === def.tensor))
    return false;
  // The graph itself must still hang where it did: each owner node still in its parent graph, holding the subgraph.
  for (let v: GraphVisit | undefined = c.visit; v; v = v.parent) {
    if (!v.parent) return model.proto.graph === v.graph;
    const owner = v.owner!.node;
    if (!v.parent.graph.node.includes(owner)) return false;
    if (!owner.attribute.some((a) => a.g === v!.graph || a.graphs.includes(v!.graph))) return false;
  }
  return true;
}

/** Finds the stored tensor behind a WeightRef again (by graph path and name), without re-indexing when unchanged. */
function locateStore(model: LoadedModel, w: WeightRef): Def {
  const key = `${w.storeGraphPath}\u0000${w.name}`;
  const hit = storeCache.get(model)?.get(key);
  if (hit && stillValid(model, hit)) return hit.def;
  const index = buildScopeIndex(model);
  const cache = new Map<string, CachedStore>();
  for (const visit of index.visits)
    for (const def of index.scopes.get(visit)!.values())
      if (def.kind === 'initializer' || def.kind === 'constant' || def.kind === 'sparse')
        cache.set(`${visit.path}\u0000${def.name}`, { def, visit });
  storeCache.set(model, cache);
  const found = cache.get(key);
  if (!found)
    throw new OnnxError('not-found', `weight '${w.name}' is no longer stored in graph '${w.storeGraphPath || 'main'}'`);
  return found.def;
}

function transpose(src: Float32Array, shape: number[], perm: number[]): Float32Array {
  const rank = shape.length;
  const out = new Float32Array(src.length);
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  const outShape = perm.map((p) => shape[p]);
  const strides = perm.map((p) => inStrides[p]);
  const idx = new Array<number>(rank).fill(0);
  let off = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = src[off];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      off += strides[d];
      if (idx[d] < outShape[d]) break;
      off -= strides[d] * outShape[d];
      idx[d] = 0;
    }
  }
  return out;
}

function readStore(model: LoadedModel, def: Def): Float32Array {
  if (def.kind !== 'sparse') return tensorToFloat32(model, def.tensor!);
  const s = def.sparse!;
  const dims = s.dims.map(Number);
  const dense = new Float32Array(elementCount(dims, `sparse tensor '${def.name}'`));
  const values = tensorToFloat32(model, s.values!);
  const idx = tensorToFloat64(model, s.indices!);
  const rank = dims.length;
  const linear = s.indices!.dims.length === 1;
  for (let i = 0; i < values.length; i++) {
    let at = 0;
    if (linear) at = idx[i];
    else for (let d = 0; d < rank; d++) at = at * dims[d] + idx[i * rank + d];
    if (!(at >= 0 && at < dense.length))
      throw new OnnxError('raw-data-size-mismatch', `sparse tensor '${def.name}': index ${at} out of range`);
    dense[at] = values[i];
  }
  return dense;
}

function checkReadable(w: WeightRef): void {
  if (!w.readable)
    throw new OnnxError('invalid-argument', `weight '${w.name}' has no static matrix layout: ${w.reason ?? 'unknown'}`);
}

export function readWeightMatrix(model: LoadedModel, w: WeightRef): Float32Array {
  checkReadable(w);
  const def = locateStore(model, w);
  let v = readStore(model, def);
  const { N, K } = w;
  if (v.length !== N * K)
    throw new OnnxError(
      'invalid-argument',
      `weight '${w.name}' holds ${v.length} values, not ${N}×${K}; rediscover it`,
    );
  for (const step of w.transposes) v = transpose(v, step.inShape, step.perm);
  const out = new Float32Array(N * K);
  if (w.op === 'Conv') {
    const cg = w.consumerShape[1];
    const S = K / cg;
    for (let n = 0; n < N; n++)
      for (let ci = 0; ci < cg; ci++) {
        const src = n * K + ci * S;
        for (let s = 0; s < S; s++) out[n * K + s * cg + ci] = v[src + s];
      }
  } else if (w.op === 'Gemm' && w.transB) out.set(v.subarray(0, N * K));
  else transposeInto(v, 0, N, K, N, out, 0, K); // stored [K][N] → rows [N][K], tiled
  return out;
}

export function writeWeightMatrix(model: LoadedModel, w: WeightRef, rows: Float32Array): void {
  checkReadable(w);
  const { N, K } = w;
  if (rows.length !== N * K)
    throw new OnnxError('invalid-argument', `weight '${w.name}' needs ${N}×${K} = ${N * K} values, got ${rows.length}`);
  const def = locateStore(model, w);
  const stored = def.kind === 'sparse' ? def.sparse!.dims : def.tensor!.dims;
  if (elementCount(stored) !== N * K)
    throw new OnnxError(
      'invalid-argument',
      `weight '${w.name}' holds ${elementCount(stored)} values, not ${N}×${K}; rediscover it`,
    );
  const dtype = def.kind === 'sparse' ? tensorDtype(def.sparse!.values!) : tensorDtype(def.tensor!);
  if (!WRITABLE.has(dtype))
    throw new OnnxError(
      'unsupported-dtype',
      `weight '${w.name}' is ${dtype}; only float32/16, bfloat16, float64 can be written`,
    );
  let v: Float32Array = new Float32Array(N * K);
  if (w.op === 'Conv') {
    const cg = w.consumerShape[1];
    const S = K / cg;
    for (let n = 0; n < N; n++)
      for (let ci = 0; ci < cg; ci++) {
        const dst = n * K + ci * S;
        for (let s = 0; s < S; s++) v[dst + s] = rows[n * K + s * cg + ci];
      }
  } else if (w.op === 'Gemm' && w.transB) v.set(rows);
  else transposeInto(rows, 0, K, N, K, v, 0, N); // rows [N][K] → stored [K][N], tiled
  // Undo the Transposes, consumer side first.
  for (let i = w.transposes.length - 1; i >= 0; i--) {
    const { inShape, perm } = w.transposes[i];
    const outShape = perm.map((p) => inShape[p]);
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, j) => (inverse[p] = j));
    v = transpose(v, outShape, inverse);
  }
  if (def.kind === 'sparse') {
    writeSparse(def.sparse!, v, dtype);
    return;
  }
  // v is this function's own array: float32 bytes are handed over as they are, not copied once more.
  const raw = dtype === 'float32' ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : encodeFloats(dtype, v);
  storeRewrittenBytes(model, def.tensor!, raw);
}

/** Rewrites a sparse initializer from dense values: nonzeros only, int64 linear indices. */
function writeSparse(s: SparseTensorProto, dense: Float32Array, dtype: DType): void {
  let nnz = 0;
  for (let i = 0; i < dense.length; i++) if (dense[i] !== 0) nnz++;
  const values = new Float32Array(nnz);
  const indices = new BigInt64Array(nnz);
  for (let i = 0, j = 0; i < dense.length; i++)
    if (dense[i] !== 0) {
      values[j] = dense[i];
      indices[j++] = BigInt(i);
    }
  const name = s.values!.name;
  s.values = makeTensor(name, 'float32', [nnz], values);
  if (dtype !== 'float32') {
    s.values.dataType = onnxFromDtype(dtype);
    setTensorRawData(s.values, encodeFloats(dtype, values));
  }
  s.indices = makeTensor(s.indices?.name ?? '', 'int64', [nnz], indices);
}

/** For each canonical column k, the input channel of the activation it multiplies (Conv: within its group). */
export function weightColumnChannel(w: WeightRef): Int32Array {
  const out = new Int32Array(w.K);
  if (w.op === 'Conv') {
    const cg = w.consumerShape[1];
    for (let k = 0; k < w.K; k++) out[k] = k % cg;
  } else for (let k = 0; k < w.K; k++) out[k] = k;
  return out;
}
