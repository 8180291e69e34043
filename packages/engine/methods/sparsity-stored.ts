// Fast path for magnitude N:M: prune fp32 weights directly in their stored layout, with no canonical [N][K] copy and
// no transposes (which cost more than the pruning itself on large models). Every stored layout the model layer
// canonicalises is a view [outer][groups][M][inner] along K: MatMul B[K][N] → [1][K/M][M][N]; Gemm(transB=1) B[N][K]
// → [N][K/M][M][1]; Conv W[O][cg][kh][kw] → [O][cg/M][M][kh·kw]. Selection matches nmMask exactly: keep the n
// largest |w| of each group, ties to the lower index, NaN ranked lowest. The check that follows is a separate,
// independent count over the same view.
import type { LoadedModel } from '../onnx/model.js';
import { buildScopeIndex } from '../onnx/scopes.js';
import { setTensorRawData, tensorBytes, tensorDtype } from '../onnx/tensor.js';
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
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

/** M = 4 unrolled: the rank of each of the four among the others, counted with lower-index tie-breaking. */
function prune4(v: Float32Array, l: StridedLayout, n: number): PruneCounts {
  const { outer, groups, inner } = l;
  const i1 = inner;
  const i2 = 2 * inner;
  const i3 = 3 * inner;
  let zeros = 0;
  let nonFinite = 0;
  for (let base = 0, end = outer * groups * 4 * inner; base < end; base += 4 * inner) {
    for (let c = 0, at = base; c < inner; c++, at++) {
      const a0 = mag(v[at]);
      const a1 = mag(v[at + i1]);
      const a2 = mag(v[at + i2]);
      const a3 = mag(v[at + i3]);
      // NaN maps to −1 and ±Inf stays Infinity: one sum and one min flag both cases cheaply.
      if (a0 + a1 + a2 + a3 === Infinity || Math.min(a0, a1, a2, a3) < 0) {
        nonFinite += +(a0 < 0 || a0 === Infinity) + +(a1 < 0 || a1 === Infinity);
        nonFinite += +(a2 < 0 || a2 === Infinity) + +(a3 < 0 || a3 === Infinity);
      }
      // rank = how many of the group beat it (larger, or equal with a lower index)
      const r0 = +(a1 > a0) + +(a2 > a0) + +(a3 > a0);
      const r1 = +(a0 >= a1) + +(a2 > a1) + +(a3 > a1);
      const r2 = +(a0 >= a2) + +(a1 >= a2) + +(a3 > a2);
      const r3 = +(a0 >= a3) + +(a1 >= a3) + +(a2 >= a3);
      if (r0 >= n) v[at] = 0;
      if (r1 >= n) v[at + i1] = 0;
      if (r2 >= n) v[at + i2] = 0;
      if (r3 >= n) v[at + i3] = 0;
      zeros += +(v[at] === 0) + +(v[at + i1] === 0) + +(v[at + i2] === 0) + +(v[at + i3] === 0);
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

/** The stored fp32 tensor of a weight (initializer or Constant), or undefined (sparse, other dtypes). */
export function storedFloat32Tensor(model: LoadedModel, w: WeightRef): TensorProto | undefined {
  if (w.location === 'sparse-initializer' || w.dtype !== 'float32') return undefined;
  const index = buildScopeIndex(model);
  const visit = index.visits.find((x) => x.path === w.storeGraphPath);
  const def = visit ? index.scopes.get(visit)?.get(w.name) : undefined;
  const t = def?.tensor;
  return t && tensorDtype(t) === 'float32' ? t : undefined;
}

/**
 * Prunes one fp32 weight in its stored layout and writes it back (in place when the bytes are aligned, else as
 * fresh raw data). Returns zeros fraction and the independent check's violation count.
 */
export function pruneStoredMagnitudeNM(
  model: LoadedModel,
  t: TensorProto,
  layout: StridedLayout,
  n: number,
): { sparsity: number; violations: number; nonFinite: number } {
  const bytes = tensorBytes(model, t);
  // raw_data is edited in place (the loaded file buffer belongs to this model); typed-array views need 4-byte
  // alignment, so unaligned bytes are copied first. Bytes that were not raw_data (external, typed fields) are fresh.
  const buf = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const v = new Float32Array(buf.buffer, buf.byteOffset, buf.length >> 2);
  // Prune and check chunk by chunk (a few MB each) so the check reads memory the pruning just left in cache.
  const groupSpan = layout.m * layout.inner;
  const groupsTotal = layout.outer * layout.groups;
  const perChunk = Math.max(1, Math.floor((1 << 20) / groupSpan));
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
  if (buf !== t.rawData) setTensorRawData(t, buf);
  return { sparsity: zeros / v.length, violations, nonFinite };
}
