// Direct, unblocked SparseGPT / OBS in float64 — the test oracle for sparsegpt.ts. Written for obviousness, not
// speed (O(N·K²) JS, O(K³) Gauss–Jordan): no GEMM, no blocking of the updates, no code shared with linalg.ts.
// The only "blocking" it keeps is the unstructured mask choice, which the algorithm defines per column block.
import { dampedHessian, resolveSparseGptOptions, type SparseGptOptions } from './sparsegpt-options.js';

/** Gauss–Jordan inverse with partial pivoting. */
function invert(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]) > Math.abs(m[p * n + c])) p = r;
    if (m[p * n + c] === 0) throw new Error('sparseGptReference: singular Hessian');
    if (p !== c)
      for (let j = 0; j < n; j++) {
        [m[p * n + j], m[c * n + j]] = [m[c * n + j], m[p * n + j]];
        [inv[p * n + j], inv[c * n + j]] = [inv[c * n + j], inv[p * n + j]];
      }
    const d = m[c * n + c];
    for (let j = 0; j < n; j++) {
      m[c * n + j] /= d;
      inv[c * n + j] /= d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c];
      if (f === 0) continue;
      for (let j = 0; j < n; j++) {
        m[r * n + j] -= f * m[c * n + j];
        inv[r * n + j] -= f * inv[c * n + j];
      }
    }
  }
  return inv;
}

/** Upper U with S = Uᵀ·U, textbook row-by-row. */
function upperCholesky(s: Float64Array, n: number): Float64Array {
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    let d = s[i * n + i];
    for (let p = 0; p < i; p++) d -= u[p * n + i] * u[p * n + i];
    if (!(d > 0)) throw new Error(`sparseGptReference: H⁻¹ not positive definite at ${i}`);
    u[i * n + i] = Math.sqrt(d);
    for (let j = i + 1; j < n; j++) {
      let v = s[i * n + j];
      for (let p = 0; p < i; p++) v -= u[p * n + i] * u[p * n + j];
      u[i * n + j] = v / u[i * n + i];
    }
  }
  return u;
}

/** Returns the pruned and OBS-updated weights in float64 (the input is not modified), the mask and the loss. */
export function sparseGptReference(
  w: Float32Array | Float64Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  opts: SparseGptOptions,
): { weights: Float64Array; mask: Uint8Array; error: number } {
  const o = resolveSparseGptOptions(w, rows, cols, hessian, opts);
  const K = cols;
  const { h, dead } = dampedHessian(hessian, K, o.dampening);
  const u = upperCholesky(invert(h, K), K);
  const W = Float64Array.from(w);
  for (const k of dead) for (let r = 0; r < rows; r++) W[r * K + k] = 0;
  const mask = new Uint8Array(rows * K).fill(1);
  const score = (r: number, j: number) => (W[r * K + j] / u[j * K + j]) ** 2;
  let loss = 0;
  for (let i = 0; i < K; i++) {
    if (!o.nm && i % o.blockSize === 0) {
      // Block mask: the floor(rows·count·p) lowest scores of the block; ties prune the later (row, col) first.
      const end = Math.min(i + o.blockSize, K);
      const count = end - i;
      const entries: { s: number; r: number; j: number; flat: number }[] = [];
      for (let r = 0; r < rows; r++)
        for (let j = i; j < end; j++) entries.push({ s: score(r, j), r, j, flat: r * count + (j - i) });
      entries.sort((a, b) => a.s - b.s || b.flat - a.flat);
      const prune = Math.floor(rows * count * o.sparsity);
      for (let t = 0; t < prune; t++) mask[entries[t].r * K + entries[t].j] = 0;
    }
    if (o.nm && i % o.nm.m === 0) {
      for (let r = 0; r < rows; r++) {
        const group = Array.from({ length: o.nm.m }, (_, t) => ({ s: score(r, i + t), j: i + t }));
        group.sort((a, b) => b.s - a.s || a.j - b.j); // best first; ties keep the lower index
        for (let t = o.nm.n; t < o.nm.m; t++) mask[r * K + group[t].j] = 0;
      }
    }
    for (let r = 0; r < rows; r++) {
      if (mask[r * K + i] === 1) continue;
      const e = W[r * K + i] / u[i * K + i];
      loss += e * e;
      for (let j = i; j < K; j++) W[r * K + j] -= e * u[i * K + j];
      W[r * K + i] = 0;
    }
  }
  return { weights: W, mask, error: loss / 2 };
}
