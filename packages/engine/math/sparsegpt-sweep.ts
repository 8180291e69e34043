// The in-block OBS sweep of SparseGPT (math/sparsegpt.ts): JS loops over groups of columns of Wᵀ, all rows at once.
// Arithmetic of each update in double, rounded to fp32 on store, in the order of the one-column-at-a-time sweep.
// N:4 leaves run as a WebAssembly SIMD kernel where available (math/sparsegpt-sweep-simd.ts, same bits).

import { sweepLeafNM4Simd } from './sparsegpt-sweep-simd.js';

/**
 * N:M mask of the group of columns [g, g+m) for every row, from the weights as updated so far: keep the n largest
 * w²/U_jj² (as (w·(1/U_jj))², ranking as w²/U_jj² up to one rounding), ties to the lower index. Scores are finite and
 * ≥ 0 here (inputs validated), so plain comparisons rank them. keep[t·N + r] for column g+t of row r.
 */
export function chooseGroupNM(
  wt: Float32Array,
  u: Float32Array,
  N: number,
  K: number,
  g: number,
  m: number,
  n: number,
  keep: Uint8Array,
): void {
  if (m === 4) {
    // 2:4 and friends with the group in locals (the common case, and the hot loop).
    const i0 = 1 / u[g * K + g];
    const i1 = 1 / u[(g + 1) * K + g + 1];
    const i2 = 1 / u[(g + 2) * K + g + 2];
    const i3 = 1 / u[(g + 3) * K + g + 3];
    const b0 = g * N;
    for (let r = 0; r < N; r++) {
      let v = wt[b0 + r] * i0;
      const a = v * v;
      v = wt[b0 + N + r] * i1;
      const b = v * v;
      v = wt[b0 + 2 * N + r] * i2;
      const d2 = v * v;
      v = wt[b0 + 3 * N + r] * i3;
      const e3 = v * v;
      keep[r] = (b > a ? 1 : 0) + (d2 > a ? 1 : 0) + (e3 > a ? 1 : 0) < n ? 1 : 0;
      keep[N + r] = (a >= b ? 1 : 0) + (d2 > b ? 1 : 0) + (e3 > b ? 1 : 0) < n ? 1 : 0;
      keep[2 * N + r] = (a >= d2 ? 1 : 0) + (b >= d2 ? 1 : 0) + (e3 > d2 ? 1 : 0) < n ? 1 : 0;
      keep[3 * N + r] = (a >= e3 ? 1 : 0) + (b >= e3 ? 1 : 0) + (d2 >= e3 ? 1 : 0) < n ? 1 : 0;
    }
    return;
  }
  const inv = new Float64Array(m);
  for (let j = 0; j < m; j++) inv[j] = 1 / u[(g + j) * K + g + j];
  const sc = new Float64Array(m);
  for (let r = 0; r < N; r++) {
    for (let j = 0; j < m; j++) {
      const v = wt[(g + j) * N + r] * inv[j];
      sc[j] = v * v;
    }
    for (let j = 0; j < m; j++) {
      const sj = sc[j];
      let better = 0;
      for (let i = 0; i < m; i++) {
        const si = sc[i];
        if (si > sj || (si === sj && i < j)) better++;
      }
      keep[j * N + r] = better < n ? 1 : 0;
    }
  }
}

/**
 * The OBS sweep of the group of columns [g, g+gm) of a leaf ending at c1, on Wᵀ in place, all rows at once: for
 * every pruned column i, e = w_i/U_ii, w_i = 0, w_j −= e·U_ij for j > i up to c1. Kept weights have e = 0 (their
 * updates subtract zero: the same values, and a −0 weight may become +0). Inside the group the columns go one by
 * one (each e needs the updates of the columns before it); the rest of the leaf then takes the group's updates in
 * one pass per column, each rounded to fp32 as it is applied, so every weight sees exactly the roundings of the
 * one-column-at-a-time sweep (arithmetic of one update in double, rounded once on store, as in the reference).
 * Writes e to errT's row i − errBase (fp32; 0 for kept weights) and the mask; returns Σ e².
 */
export function sweepGroup(
  wt: Float32Array,
  u: Float32Array,
  errT: Float32Array,
  errBase: number,
  mask: Uint8Array,
  N: number,
  K: number,
  g: number,
  gm: number,
  c1: number,
  buf: { e: Float64Array; keep: Uint8Array; u: Float64Array },
): number {
  const { e, keep, u: us } = buf;
  let loss = 0;
  for (let t = 0; t < gm; t++) {
    const i = g + t;
    const d = u[i * K + i];
    const row = i * N;
    const er = (i - errBase) * N;
    const eb = t * N;
    if (mask.length) for (let r = 0; r < N; r++) mask[r * K + i] = keep[eb + r];
    for (let r = 0; r < N; r++) {
      if (keep[eb + r] === 1) {
        e[eb + r] = 0;
        errT[er + r] = 0;
        continue;
      }
      const v = wt[row + r] / d;
      e[eb + r] = v;
      errT[er + r] = v;
      if (v === 0) continue;
      loss += v * v;
      wt[row + r] = 0;
    }
    for (let j = i + 1; j < g + gm; j++) {
      const uij = u[i * K + j];
      const rj = j * N;
      for (let r = 0; r < N; r++) wt[rj + r] -= e[eb + r] * uij;
    }
  }
  if (gm === 4) {
    restOfLeaf4(wt, u, e, N, K, g, c1);
    return loss;
  }
  for (let j = g + gm; j < c1; j++) {
    const rj = j * N;
    for (let t = 0; t < gm; t++) us[t] = u[(g + t) * K + j];
    for (let r = 0; r < N; r++) {
      let x = wt[rj + r];
      for (let t = 0; t < gm; t++) x = Math.fround(x - e[t * N + r] * us[t]);
      wt[rj + r] = x;
    }
  }
  return loss;
}

/**
 * chooseGroupNM (m = 4) and sweepGroup of the group [g, g+4) fused into one pass over the rows, the group's four
 * weights in locals: the same operations on every weight in the same order (masks from the weights at group start;
 * each column's e, then its updates to the later columns of the group, each rounded to fp32), so the same bits,
 * with one pass over the group's rows instead of eleven. The loss is summed afterwards in sweepGroup's order
 * (column by column; kept weights add e² = +0, which leaves a sum ≥ 0 unchanged).
 */
export function sweepGroupNM4(
  wt: Float32Array,
  u: Float32Array,
  errT: Float32Array,
  errBase: number,
  mask: Uint8Array,
  N: number,
  K: number,
  g: number,
  c1: number,
  n: number,
  e: Float64Array,
): number {
  const d0 = u[g * K + g];
  const d1 = u[(g + 1) * K + g + 1];
  const d2 = u[(g + 2) * K + g + 2];
  const d3 = u[(g + 3) * K + g + 3];
  const [i0, i1, i2, i3] = [1 / d0, 1 / d1, 1 / d2, 1 / d3];
  const u01 = u[g * K + g + 1];
  const u02 = u[g * K + g + 2];
  const u03 = u[g * K + g + 3];
  const u12 = u[(g + 1) * K + g + 2];
  const u13 = u[(g + 1) * K + g + 3];
  const u23 = u[(g + 2) * K + g + 3];
  const b0 = g * N;
  const er = (g - errBase) * N;
  const withMask = mask.length > 0;
  const pk = new Float64Array(2);
  for (let r = 0; r < N; r++) {
    let w0 = wt[b0 + r];
    let w1 = wt[b0 + N + r];
    let w2 = wt[b0 + 2 * N + r];
    let w3 = wt[b0 + 3 * N + r];
    let v = w0 * i0;
    const a = v * v;
    v = w1 * i1;
    const b = v * v;
    v = w2 * i2;
    const c = v * v;
    v = w3 * i3;
    const d = v * v;
    // keep = 1 when fewer than n of the others rank above (count − n < 0: its sign bit), as 0/1 ints.
    const k0 = (+(b > a) + +(c > a) + +(d > a) - n) >>> 31;
    const k1 = (+(a >= b) + +(c > b) + +(d > b) - n) >>> 31;
    const k2 = (+(a >= c) + +(b >= c) + +(d > c) - n) >>> 31;
    const k3 = (+(a >= d) + +(b >= d) + +(c >= d) - n) >>> 31;
    // e = +0 if kept, else w/U_jj; a pruned weight becomes +0 unless e is ±0 (then it already is ±0 and stays as it
    // was, as in sweepGroup). Chosen by `pick` (below), not by a branch on the mask.
    let q = w0 / d0;
    const e0 = pick(pk, k0, q, 0);
    w0 = pick(pk, k0, q !== 0 ? 0 : w0, w0);
    w1 = Math.fround(w1 - e0 * u01);
    w2 = Math.fround(w2 - e0 * u02);
    w3 = Math.fround(w3 - e0 * u03);
    q = w1 / d1;
    const e1 = pick(pk, k1, q, 0);
    w1 = pick(pk, k1, q !== 0 ? 0 : w1, w1);
    w2 = Math.fround(w2 - e1 * u12);
    w3 = Math.fround(w3 - e1 * u13);
    q = w2 / d2;
    const e2 = pick(pk, k2, q, 0);
    w2 = pick(pk, k2, q !== 0 ? 0 : w2, w2);
    w3 = Math.fround(w3 - e2 * u23);
    q = w3 / d3;
    const e3 = pick(pk, k3, q, 0);
    w3 = pick(pk, k3, q !== 0 ? 0 : w3, w3);
    wt[b0 + r] = w0;
    wt[b0 + N + r] = w1;
    wt[b0 + 2 * N + r] = w2;
    wt[b0 + 3 * N + r] = w3;
    e[r] = e0;
    e[N + r] = e1;
    e[2 * N + r] = e2;
    e[3 * N + r] = e3;
    errT[er + r] = e0;
    errT[er + N + r] = e1;
    errT[er + 2 * N + r] = e2;
    errT[er + 3 * N + r] = e3;
    if (withMask) {
      const m = r * K + g;
      mask[m] = k0;
      mask[m + 1] = k1;
      mask[m + 2] = k2;
      mask[m + 3] = k3;
    }
  }
  let loss = 0;
  for (let i = 0; i < 4 * N; i++) loss += e[i] * e[i];
  restOfLeaf4(wt, u, e, N, K, g, c1);
  return loss;
}

/**
 * The groups of four columns of the leaf [c0, c1) (c1 − c0 a multiple of 4) swept by sweepGroupNM4 one after the
 * other, each group's loss added to `loss` in turn; returns the new loss. Runs the SIMD kernel where available (the
 * same bits: rows are independent, so it takes all of a leaf's groups for a chunk of rows at a time), else the
 * JavaScript. `e` holds 4·N float64.
 */
export function sweepLeafNM4(
  wt: Float32Array,
  u: Float32Array,
  errT: Float32Array,
  errBase: number,
  mask: Uint8Array,
  N: number,
  K: number,
  c0: number,
  c1: number,
  n: number,
  e: Float64Array,
  loss: number,
): number {
  const simd = sweepLeafNM4Simd(wt, u, errT, errBase, mask, N, K, c0, c1, n, loss);
  if (simd !== null) return simd;
  for (let g = c0; g < c1; g += 4) loss += sweepGroupNM4(wt, u, errT, errBase, mask, N, K, g, c1, n, e);
  return loss;
}

/**
 * `k` ? `ifOne` : `ifZero` for k ∈ {0, 1}, through two stores and an indexed load instead of a branch: the masks
 * fall at random, so a branch on them mispredicted about half the time (sweepGroupNM4 ~26 → ~15 ns per weight,
 * same bits). The values pass through float64 storage unchanged, ±0 included.
 */
function pick(scratch: Float64Array, k: number, ifZero: number, ifOne: number): number {
  scratch[0] = ifZero;
  scratch[1] = ifOne;
  return scratch[k];
}

/**
 * The rest of the leaf, columns [g+4, c1), takes the updates of the group [g, g+4) (errors e, 4 rows of N): per
 * weight the four updates in column order, each rounded to fp32. Two columns per pass share the loads of e.
 */
function restOfLeaf4(wt: Float32Array, u: Float32Array, e: Float64Array, N: number, K: number, g: number, c1: number) {
  const [g0, g1, g2, g3] = [g * K, (g + 1) * K, (g + 2) * K, (g + 3) * K];
  let j = g + 4;
  for (; j + 1 < c1; j += 2) {
    const [u0, u1, u2, u3] = [u[g0 + j], u[g1 + j], u[g2 + j], u[g3 + j]];
    const [v0, v1, v2, v3] = [u[g0 + j + 1], u[g1 + j + 1], u[g2 + j + 1], u[g3 + j + 1]];
    const rj = j * N;
    const rk = rj + N;
    for (let r = 0; r < N; r++) {
      const e0 = e[r];
      const e1 = e[N + r];
      const e2 = e[2 * N + r];
      const e3 = e[3 * N + r];
      let x = Math.fround(wt[rj + r] - e0 * u0);
      x = Math.fround(x - e1 * u1);
      x = Math.fround(x - e2 * u2);
      wt[rj + r] = x - e3 * u3;
      let y = Math.fround(wt[rk + r] - e0 * v0);
      y = Math.fround(y - e1 * v1);
      y = Math.fround(y - e2 * v2);
      wt[rk + r] = y - e3 * v3;
    }
  }
  for (; j < c1; j++) {
    const [u0, u1, u2, u3] = [u[g0 + j], u[g1 + j], u[g2 + j], u[g3 + j]];
    const rj = j * N;
    for (let r = 0; r < N; r++) {
      let x = Math.fround(wt[rj + r] - e[r] * u0);
      x = Math.fround(x - e[N + r] * u1);
      x = Math.fround(x - e[2 * N + r] * u2);
      wt[rj + r] = x - e[3 * N + r] * u3;
    }
  }
}
