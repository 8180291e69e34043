// Fast path for magnitude N:M: prune weights directly in their stored layout, with no canonical [N][K] copy and
// no transposes (which cost more than the pruning itself on large models). fp32 weights are pruned on their own
// bytes; fp16/bf16 ones a chunk at a time through a reused fp32 buffer (decoded exactly, encoded back rounded as
// the canonical path's writeWeightMatrix does, so the same bytes). Every stored layout the model layer
// canonicalises is a view [outer][groups][M][inner] along K: MatMul B[K][N] → [1][K/M][M][N]; Gemm(transB=1) B[N][K]
// → [N][K/M][M][1]; Conv W[O][cg][kh][kw] → [O][cg/M][M][kh·kw]. Selection matches nmMask exactly: keep the n
// largest |w| of each group, ties to the lower index, NaN ranked lowest. The check that follows is a separate,
// independent count over the same view.
import type { LoadedModel } from '../onnx/model.js';
import { constantTensor } from '../onnx/scopes.js';
import { walkGraphs } from '../onnx/walk.js';
import {
  encodeFloatsInto,
  isStoredFloat,
  readFloatsInto,
  readTensorBytesInto,
  setTensorRawData,
  setTensorRawRange,
  spillFileOf,
  tensorByteLength,
  tensorBytes,
  tensorDtype,
  type StoredFloat,
} from '../onnx/tensor.js';
import { isExternal } from '../onnx/external.js';
import { lazyRawOf } from '../onnx/lazy.js';
import type { GraphProto, TensorProto } from '../onnx/gen/onnx_pb.js';
import type { WeightRef } from '../onnx/weights.js';

export interface StridedLayout {
  outer: number;
  groups: number;
  m: number;
  inner: number;
}

/** The [outer][groups][M][inner] view of a weight's stored tensor, or undefined when it has none. */
export function storedLayout(w: WeightRef, m: number): StridedLayout | undefined {
  if (w.transposes.length || w.consumerShape.length !== w.shape.length) return undefined;
  if (w.consumerShape.some((d, i) => d !== w.shape[i])) return undefined;
  if (w.op === 'Conv') {
    const [O, cg] = w.shape;
    const inner = w.shape.slice(2).reduce((a, b) => a * b, 1);
    return cg % m === 0 ? { outer: O, groups: cg / m, m, inner } : undefined;
  }
  if (w.shape.length !== 2 || w.K % m !== 0) return undefined;
  if (w.op === 'Gemm' && w.transB) return { outer: w.N, groups: w.K / m, m, inner: 1 };
  return { outer: 1, groups: w.K / m, m, inner: w.N };
}

/** |x| with NaN ranked below every real magnitude. */
function mag(x: number): number {
  const a = Math.abs(x);
  return a === a ? a : -1;
}

export interface PruneCounts {
  /** Zeros after pruning. */
  zeros: number;
  /** NaN/±Inf among the weights before pruning. */
  nonFinite: number;
}

/** Zeroes all but the n largest |w| of every group in place. */
export function pruneNMStrided(v: Float32Array, l: StridedLayout, n: number): PruneCounts {
  if (l.m === 4) return prune4(v, l, n);
  const { outer, groups, m, inner } = l;
  const mags = new Float64Array(m);
  const keep = new Uint8Array(m);
  let zeros = 0;
  let nonFinite = 0;
  for (let base = 0, end = outer * groups * m * inner; base < end; base += m * inner) {
    for (let c = 0; c < inner; c++) {
      for (let j = 0; j < m; j++) {
        const a = mag(v[base + j * inner + c]);
        if (a < 0 || a === Infinity) nonFinite++;
        mags[j] = a;
      }
      keep.fill(0);
      // n rounds of "largest not yet kept"; strict > keeps the lower index on ties (as nmMask does).
      for (let r = 0; r < n; r++) {
        let best = -1;
        let bv = -Infinity;
        for (let j = 0; j < m; j++) {
          if (keep[j] === 0 && mags[j] > bv) {
            bv = mags[j];
            best = j;
          }
        }
        keep[best] = 1;
      }
      for (let j = 0; j < m; j++) {
        const at = base + j * inner + c;
        if (keep[j] === 0) v[at] = 0;
        if (v[at] === 0) zeros++;
      }
    }
  }
  return { zeros, nonFinite };
}

/**
 * M = 4 unrolled, on the float bits: for IEEE floats |a| < |b| ⇔ (bits_a & 0x7fffffff) < (bits_b & 0x7fffffff),
 * so magnitudes compare as integers (no float conversions); NaN (above the infinity pattern) maps to −1 so it ranks
 * lowest. rank = how many of the group beat a weight (larger, or equal with a lower index).
 */
function prune4(v: Float32Array, l: StridedLayout, n: number): PruneCounts {
  const b = new Int32Array(v.buffer, v.byteOffset, v.length);
  const { outer, groups, inner } = l;
  const i1 = inner;
  const i2 = 2 * inner;
  const i3 = 3 * inner;
  const INF = 0x7f800000;
  let zeros = 0;
  let nonFinite = 0;
  for (let base = 0, end = outer * groups * 4 * inner; base < end; base += 4 * inner) {
    for (let c = 0, at = base; c < inner; c++, at++) {
      let a0 = b[at] & 0x7fffffff;
      let a1 = b[at + i1] & 0x7fffffff;
      let a2 = b[at + i2] & 0x7fffffff;
      let a3 = b[at + i3] & 0x7fffffff;
      if (a0 >= INF || a1 >= INF || a2 >= INF || a3 >= INF) {
        nonFinite += +(a0 >= INF) + +(a1 >= INF) + +(a2 >= INF) + +(a3 >= INF);
        if (a0 > INF) a0 = -1;
        if (a1 > INF) a1 = -1;
        if (a2 > INF) a2 = -1;
        if (a3 > INF) a3 = -1;
      }
      // keep mask = all ones when rank < n, else 0: branch-free, since on real weights keep/prune is a coin flip
      // that a branch predictor cannot learn.
      const k0 = (+(a1 > a0) + +(a2 > a0) + +(a3 > a0) - n) >> 31;
      const k1 = (+(a0 >= a1) + +(a2 > a1) + +(a3 > a1) - n) >> 31;
      const k2 = (+(a0 >= a2) + +(a1 >= a2) + +(a3 > a2) - n) >> 31;
      const k3 = (+(a0 >= a3) + +(a1 >= a3) + +(a2 >= a3) - n) >> 31;
      b[at] &= k0;
      b[at + i1] &= k1;
      b[at + i2] &= k2;
      b[at + i3] &= k3;
      zeros += (1 + k0) | +(a0 === 0);
      zeros += (1 + k1) | +(a1 === 0);
      zeros += (1 + k2) | +(a2 === 0);
      zeros += (1 + k3) | +(a3 === 0);
    }
  }
  return { zeros, nonFinite };
}

/** Independent check: the number of groups in the view holding more than n non-zeros. */
export function countNMViolationsStrided(v: Float32Array, l: StridedLayout, n: number): number {
  let bad = 0;
  if (l.m === 4) {
    const s = l.inner;
    for (let start = 0; start < v.length; start += 4 * s) {
      for (let at = start, end = start + s; at < end; at++) {
        if (+(v[at] !== 0) + +(v[at + s] !== 0) + +(v[at + 2 * s] !== 0) + +(v[at + 3 * s] !== 0) > n) bad++;
      }
    }
    return bad;
  }
  const groupSpan = l.m * l.inner;
  for (let start = 0; start < v.length; start += groupSpan) {
    for (let c = 0; c < l.inner; c++) {
      let nz = 0;
      for (let j = 0; j < l.m; j++) if (v[start + j * l.inner + c] !== 0) nz++;
      if (nz > n) bad++;
    }
  }
  return bad;
}

let scratch = new Uint8Array(0);
function scratchBytes(length: number): Uint8Array {
  if (scratch.length < length) scratch = new Uint8Array(length);
  return scratch.subarray(0, length);
}

export interface StoredFloatTensor {
  tensor: TensorProto;
  dtype: StoredFloat;
}

/** The stored float32/float16/bfloat16 tensor of a weight (initializer or Constant) and its dtype, or undefined. */
export function storedFloatTensor(model: LoadedModel, w: WeightRef): StoredFloatTensor | undefined {
  if (w.location === 'sparse-initializer' || !isStoredFloat(w.dtype)) return undefined;
  let graph: GraphProto | undefined;
  walkGraphs(model.proto, (v) => {
    if (!graph && v.path === w.storeGraphPath) graph = v.graph;
  });
  const tensor = graph && definedTensor(graph, w.name);
  const dtype = tensor && tensorDtype(tensor);
  return dtype && isStoredFloat(dtype) ? { tensor, dtype } : undefined;
}

/**
 * The tensor `graph` itself defines as `name` (initializer or Constant), as buildScopeIndex's scope of that graph
 * resolves it (the last of inputs, initializers, sparse initializers, node outputs wins; inputs come first, so they
 * never win over a tensor), without building the index of the whole model once per layer.
 */
function definedTensor(graph: GraphProto, name: string): TensorProto | undefined {
  let t: TensorProto | undefined;
  for (const x of graph.initializer) if (x.name === name) t = x;
  for (const s of graph.sparseInitializer) if (s.values?.name === name) t = undefined;
  for (const n of graph.node)
    if (n.output.includes(name))
      t = n.opType === 'Constant' && (n.domain === '' || n.domain === 'ai.onnx') ? constantTensor(n) : undefined;
  return t;
}

export interface StoredPruneResult {
  sparsity: number;
  violations: number;
  nonFinite: number;
}

/** Prunes and checks one chunk of whole groups in place, adding to the running counts. */
function pruneChunk(v: Float32Array, layout: StridedLayout, groups: number, n: number, acc: StoredPruneResult): number {
  const sub: StridedLayout = { outer: 1, groups, m: layout.m, inner: layout.inner };
  const c = pruneNMStrided(v, sub, n);
  acc.nonFinite += c.nonFinite;
  acc.violations += countNMViolationsStrided(v, sub, n);
  return c.zeros;
}

/** The stored float dtype of a weight's tensor (the stored-layout paths take these only). */
function storedDtype(t: TensorProto): StoredFloat {
  const dtype = tensorDtype(t);
  if (!isStoredFloat(dtype))
    throw new TypeError(`tensor '${t.name}' is ${dtype}, not a float32/float16/bfloat16 weight`);
  return dtype;
}

/**
 * Reads the whole groups [g0, g0 + count) of a weight into the reused scratch, prunes and checks them there (adding
 * to acc) and returns their stored bytes, still in the scratch: fp32 as read; fp16/bf16 decoded into an fp32 part
 * of the scratch and encoded back into its byte part.
 */
function pruneStoredChunk(
  model: LoadedModel,
  t: TensorProto,
  dtype: StoredFloat,
  layout: StridedLayout,
  g0: number,
  count: number,
  n: number,
  acc: StoredPruneResult & { zeros: number },
): Uint8Array {
  const values = count * layout.m * layout.inner;
  const at = g0 * layout.m * layout.inner;
  if (dtype === 'float32') {
    const chunk = scratchBytes(values * 4);
    readTensorBytesInto(model, t, at * 4, chunk);
    acc.zeros += pruneChunk(new Float32Array(chunk.buffer, chunk.byteOffset, values), layout, count, n, acc);
    return chunk;
  }
  const buf = scratchBytes(values * 6);
  const v = new Float32Array(buf.buffer, buf.byteOffset, values);
  const raw = buf.subarray(values * 4);
  readFloatsInto(model, t, at, v, raw);
  acc.zeros += pruneChunk(v, layout, count, n, acc);
  return encodeFloatsInto(dtype, v, raw);
}

/** Whole groups per chunk: a few MB, so the check reads memory the pruning just left in cache. */
function groupsPerChunk(layout: StridedLayout): number {
  return Math.max(1, Math.floor((1 << 20) / (layout.m * layout.inner)));
}

class SpillFailed extends Error {}

/**
 * Weights still on disk (lazily loaded or external): read a few MB at a time into the reused scratch, prune and
 * check there, and append the result to the model's spill file; the tensor then points at it until the model is
 * saved. The weight never occupies fresh process memory. Undefined when the spill file cannot be written (the
 * caller then prunes in memory).
 */
function pruneToSpill(
  model: LoadedModel,
  t: TensorProto,
  layout: StridedLayout,
  n: number,
): StoredPruneResult | undefined {
  const dtype = storedDtype(t);
  const groupsTotal = layout.outer * layout.groups;
  const perChunk = groupsPerChunk(layout);
  const length = tensorByteLength(t);
  const acc = { sparsity: 0, violations: 0, nonFinite: 0, zeros: 0 };
  let offset = -1;
  try {
    const spill = (() => {
      try {
        return spillFileOf(model);
      } catch (e) {
        throw new SpillFailed((e as Error).message);
      }
    })();
    for (let g0 = 0; g0 < groupsTotal; g0 += perChunk) {
      const chunk = pruneStoredChunk(model, t, dtype, layout, g0, Math.min(perChunk, groupsTotal - g0), n, acc);
      try {
        const at = spill.append(chunk, offset < 0); // only the tensor's start is aligned
        if (offset < 0) offset = at;
      } catch (e) {
        throw new SpillFailed((e as Error).message);
      }
    }
    setTensorRawRange(t, { source: spill, offset: Math.max(0, offset), length });
  } catch (e) {
    if (e instanceof SpillFailed) return undefined;
    throw e;
  }
  const values = groupsTotal * layout.m * layout.inner;
  return { sparsity: acc.zeros / values, violations: acc.violations, nonFinite: acc.nonFinite };
}

/**
 * fp16/bf16 weights in memory: chunk by chunk through the scratch (decode, prune, check, encode), each chunk's bytes
 * written back over the ones it was read from.
 */
function pruneNarrowInMemory(
  model: LoadedModel,
  t: TensorProto,
  dtype: StoredFloat,
  layout: StridedLayout,
  n: number,
): StoredPruneResult {
  const bytes = tensorBytes(model, t);
  if (bytes !== t.rawData) setTensorRawData(t, bytes); // typed fields (or unspillable external data) → raw_data
  const groupSpan = layout.m * layout.inner;
  const groupsTotal = layout.outer * layout.groups;
  const perChunk = groupsPerChunk(layout);
  const acc = { sparsity: 0, violations: 0, nonFinite: 0, zeros: 0 };
  for (let g0 = 0; g0 < groupsTotal; g0 += perChunk) {
    const chunk = pruneStoredChunk(model, t, dtype, layout, g0, Math.min(perChunk, groupsTotal - g0), n, acc);
    bytes.set(chunk, g0 * groupSpan * 2);
  }
  return { sparsity: acc.zeros / (groupsTotal * groupSpan), violations: acc.violations, nonFinite: acc.nonFinite };
}

/**
 * Prunes one float32/float16/bfloat16 weight in its stored layout and writes it back: through the spill file when
 * the bytes are still on disk; in memory, fp32 in place when aligned, through one reused scratch when unaligned, and
 * fp16/bf16 chunk by chunk through the scratch. Returns zeros fraction and the independent check's violation count.
 */
export function pruneStoredMagnitudeNM(
  model: LoadedModel,
  t: TensorProto,
  layout: StridedLayout,
  n: number,
): StoredPruneResult {
  if (lazyRawOf(t) || isExternal(t)) {
    const spilled = pruneToSpill(model, t, layout, n);
    if (spilled) return spilled;
  }
  const dtype = storedDtype(t);
  if (dtype !== 'float32') return pruneNarrowInMemory(model, t, dtype, layout, n);
  const bytes = tensorBytes(model, t);
  // raw_data is edited in place (the loaded file buffer belongs to this model). Typed-array views need 4-byte
  // alignment: unaligned bytes go through one reused scratch buffer and are copied back (two memcpys, and no fresh
  // allocation per layer, which on large models cost more in page faults and GC than the pruning).
  const aligned = bytes.byteOffset % 4 === 0;
  const buf = aligned ? bytes : scratchBytes(bytes.length);
  if (!aligned) buf.set(bytes);
  const v = new Float32Array(buf.buffer, buf.byteOffset, buf.length >> 2);
  // Prune and check chunk by chunk (a few MB each) so the check reads memory the pruning just left in cache.
  const groupSpan = layout.m * layout.inner;
  const groupsTotal = layout.outer * layout.groups;
  const perChunk = groupsPerChunk(layout);
  let zeros = 0;
  let nonFinite = 0;
  let violations = 0;
  for (let g0 = 0; g0 < groupsTotal; g0 += perChunk) {
    const count = Math.min(perChunk, groupsTotal - g0);
    const chunk = v.subarray(g0 * groupSpan, (g0 + count) * groupSpan);
    const sub: StridedLayout = { outer: 1, groups: count, m: layout.m, inner: layout.inner };
    const c = pruneNMStrided(chunk, sub, n);
    zeros += c.zeros;
    nonFinite += c.nonFinite;
    violations += countNMViolationsStrided(chunk, sub, n);
  }
  if (!aligned) bytes.set(buf);
  if (bytes !== t.rawData) setTensorRawData(t, bytes);
  return { sparsity: zeros / v.length, violations, nonFinite };
}
