// SparseGPT's N:4 leaf sweep (math/sparsegpt-sweep.ts: sweepGroupNM4 over each group of four columns of a leaf, each
// followed by its updates to the rest of the leaf) as a WebAssembly SIMD kernel, two rows of Wᵀ per f64x2 step.
//
// Same bits as the JavaScript: every operation is the same float64 operation (f64x2.mul/sub/div round as the scalar
// ones do), each stored weight is rounded to fp32 by f32x4.demote_f64x2_zero (round to nearest even, as Math.fround
// and Float32Array stores), the mask is the same twelve comparisons on float64 scores (b > a, a ≥ b, …: ties to the
// lower index) counted as i64 lanes, and `pick` is a bitselect (e = q & ~keep; a pruned weight is cleared unless its
// q is ±0). Rows are independent, so running a leaf's four groups over a chunk of rows, then the next chunk, gives
// every weight the operations of the group-by-group sweep in the same order. The loss (a sequential float64 sum)
// is summed here in JavaScript from the float64 errors in sweepGroupNM4's order (per group, column by column, rows in
// order), and Errᵀ takes the errors rounded to fp32.
//
// The leaf goes through the kernel's memory in chunks of rows of all its columns (one copy in and out per leaf).

import {
  BLOCK,
  br,
  brIf,
  c,
  demoteF64toF32Zero,
  END,
  ensureBytes,
  f64x2div,
  f64x2ge,
  f64x2gt,
  f64x2mul,
  f64x2ne,
  f64x2sub,
  get,
  I32,
  I32_ADD,
  I32_GE_S,
  I32_MUL,
  I32_SUB,
  i32c,
  i32x4const,
  I64_EXTEND_I32_S,
  i64x2add,
  i64x2gtS,
  i64x2splat,
  LazyKernel,
  load64splatAt,
  load64zeroAt,
  LOOP,
  moduleBytes,
  promoteLowF32toF64,
  set,
  shuffle,
  store32laneAt,
  store64laneAt,
  tee,
  V128,
  V128_ZERO,
  v128and,
  v128andnot,
  v128storeAt,
} from './wasm-simd.js';

/** Rows per chunk staged through the kernel's memory (a 16-column leaf: 17 bytes per weight, ~140 KB; 2048 ran ~25 % slower). */
const CHUNK_ROWS = 512;

/** Per group: d0..d3, 1/d0..1/d3, u01 u02 u03 u12 u13 u23, then four U entries per later column of the leaf. */
const GROUP_HEAD = 14;

type LeafFn = (
  rows: number,
  cols: number,
  groups: number,
  n: number,
  offP: number,
  offW: number,
  offE: number,
  offM: number,
  offE32: number,
) => void;

const kernel = new LazyKernel<LeafFn>(leafBytes, 'leaf4');

/** Turns the kernel off (the JavaScript runs) or back on, for this thread: tests compare the two. */
export function useSparseGptSweepSimd(on: boolean): void {
  kernel.use(on);
}

/** Whether the kernel runs on this thread (WebAssembly SIMD available and not turned off). */
export function sparseGptSweepSimdActive(): boolean {
  return kernel.get() !== null;
}

let eLeaf = new Float64Array(0);

/**
 * The groups of four columns [c0, c1) of a leaf (c1 − c0 a positive multiple of 4) swept as sweepGroupNM4 sweeps them
 * one after the other, each group's loss added to `loss` in turn; returns the new loss, or null where the kernel is
 * unavailable or turned off (the caller then runs the JavaScript).
 */
export function sweepLeafNM4Simd(
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
  loss: number,
): number | null {
  const L = c1 - c0;
  if (L <= 0 || L % 4 !== 0 || N < 1) return null;
  const k = kernel.get();
  if (!k) return null;
  const G = L / 4;
  const chunk = Math.min(N, CHUNK_ROWS);
  const maxRows = chunk + (chunk & 1);
  const stride = GROUP_HEAD + 4 * L;
  const offP = 0;
  const offW = align16(G * stride * 8);
  const offE = align16(offW + L * maxRows * 4);
  const offE32 = align16(offE + L * maxRows * 8);
  const offM = align16(offE32 + L * maxRows * 4);
  const buf = ensureBytes(k, offM + L * maxRows + 16);
  const params = new Float64Array(buf, offP, G * stride);
  for (let gi = 0; gi < G; gi++) {
    const g = c0 + 4 * gi;
    const p = gi * stride;
    for (let t = 0; t < 4; t++) {
      const d = u[(g + t) * K + g + t];
      params[p + t] = d;
      params[p + 4 + t] = 1 / d;
    }
    params[p + 8] = u[g * K + g + 1];
    params[p + 9] = u[g * K + g + 2];
    params[p + 10] = u[g * K + g + 3];
    params[p + 11] = u[(g + 1) * K + g + 2];
    params[p + 12] = u[(g + 1) * K + g + 3];
    params[p + 13] = u[(g + 2) * K + g + 3];
    for (let j = g + 4, q = p + GROUP_HEAD; j < c1; j++, q += 4)
      for (let t = 0; t < 4; t++) params[q + t] = u[(g + t) * K + j];
  }
  if (eLeaf.length < L * N) eLeaf = new Float64Array(L * N);
  const e = eLeaf;
  for (let r0 = 0; r0 < N; r0 += chunk) {
    const R = Math.min(chunk, N - r0);
    const Rp = R + (R & 1);
    const w32 = new Float32Array(buf, offW, L * Rp);
    for (let j = 0; j < L; j++) {
      const src = (c0 + j) * N + r0;
      w32.set(wt.subarray(src, src + R), j * Rp);
      if (Rp > R) w32[j * Rp + R] = 0;
    }
    k.fn(Rp, L, G, n, offP, offW, offE, offM, offE32);
    for (let j = 0; j < L; j++) wt.set(w32.subarray(j * Rp, j * Rp + R), (c0 + j) * N + r0);
    const e64 = new Float64Array(buf, offE, L * Rp);
    for (let j = 0; j < L; j++) e.set(e64.subarray(j * Rp, j * Rp + R), j * N + r0);
    const e32 = new Float32Array(buf, offE32, L * Rp);
    for (let j = 0; j < L; j++) errT.set(e32.subarray(j * Rp, j * Rp + R), (c0 + j - errBase) * N + r0);
    if (mask.length) {
      const m8 = new Uint8Array(buf, offM, L * Rp);
      for (let r = 0; r < R; r++) {
        const dst = (r0 + r) * K + c0;
        const src = r * L;
        for (let j = 0; j < L; j++) mask[dst + j] = m8[src + j];
      }
    }
  }
  // Each group's loss is its own sequential sum (sweepGroupNM4's order); a 16-column leaf runs its four at once.
  if (G === 4) {
    const M = 4 * N;
    let l0 = 0;
    let l1 = 0;
    let l2 = 0;
    let l3 = 0;
    for (let i = 0; i < M; i++) {
      const a = e[i];
      const b = e[M + i];
      const d = e[2 * M + i];
      const f = e[3 * M + i];
      l0 += a * a;
      l1 += b * b;
      l2 += d * d;
      l3 += f * f;
    }
    return loss + l0 + l1 + l2 + l3;
  }
  for (let gi = 0; gi < G; gi++) {
    let l = 0;
    for (let i = 4 * gi * N, end = i + 4 * N; i < end; i++) l += e[i] * e[i];
    loss += l;
  }
  return loss;
}

function align16(x: number): number {
  return (x + 15) & ~15;
}

// leaf4's parameters and locals (i32, then v128).
const [ROWS, COLS, GROUPS, NN, OFF_P, OFF_W, OFF_E, OFF_M, OFF_E32] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
// i32 locals
const [GI, P, R, CS, A, J, EA, JA, PJ, NREST, WG, EG, MA, E32G] = [
  9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
];
// v128 locals
const W = [23, 24, 25, 26];
const E = [27, 28, 29, 30];
const KP = [31, 32, 33, 34];
const S = [35, 36, 37, 38];
const [Q, NEGN, ONES] = [39, 40, 41];

const param = (i: number) => c(get(P), load64splatAt(8 * i));
const round = c(demoteF64toF32Zero, promoteLowF32toF64);
const col = (t: number) => c(get(A), get(CS), i32c(t), I32_MUL, I32_ADD);
const cmp = (x: number, y: number, op: number[]) => c(get(x), get(y), op); // x op y: all ones where true
// keep = (count of the others ranking above) < n, with each true comparison −1: −count > −n.
const keep = (a: number[], b: number[], d: number[], k: number) =>
  c(a, b, i64x2add, d, i64x2add, get(NEGN), i64x2gtS, set(k));
// w_t −= e_s · U_st, rounded to fp32.
const upd = (t: number, s: number, pi: number) =>
  c(get(W[t]), get(E[s]), param(pi), f64x2mul, f64x2sub, round, set(W[t]));
// Column t's error and its pruning: q = w/d; e = q & ~keep; w cleared where pruned and q ≠ 0.
const prune = (t: number) =>
  c(
    get(W[t]),
    param(t),
    f64x2div,
    tee(Q),
    get(KP[t]),
    v128andnot,
    set(E[t]),
    get(W[t]),
    get(Q),
    V128_ZERO,
    f64x2ne,
    get(KP[t]),
    v128andnot,
    v128andnot,
    set(W[t]),
  );
// Bytes 0 and 8 of the four keep masks (rows r, r+1) → [k0 k1 k2 k3](r) [k0 k1 k2 k3](r+1) in bytes 0..7.
const pairLanes = [0, 16, 8, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const quadLanes = [0, 1, 16, 17, 2, 3, 18, 19, 0, 0, 0, 0, 0, 0, 0, 0];

/** One group (locals W, E, KP) on the row pair at A: mask, errors, in-group updates, stores of weights, errors, keep bytes. */
function groupRowPair(): number[] {
  return c(
    // The group's weights, and their scores (w·(1/d))².
    ...[0, 1, 2, 3].flatMap((t) =>
      c(
        col(t),
        load64zeroAt(0),
        promoteLowF32toF64,
        tee(W[t]),
        param(4 + t),
        f64x2mul,
        tee(Q),
        get(Q),
        f64x2mul,
        set(S[t]),
      ),
    ),
    keep(cmp(S[1], S[0], f64x2gt), cmp(S[2], S[0], f64x2gt), cmp(S[3], S[0], f64x2gt), KP[0]),
    keep(cmp(S[0], S[1], f64x2ge), cmp(S[2], S[1], f64x2gt), cmp(S[3], S[1], f64x2gt), KP[1]),
    keep(cmp(S[0], S[2], f64x2ge), cmp(S[1], S[2], f64x2ge), cmp(S[3], S[2], f64x2gt), KP[2]),
    keep(cmp(S[0], S[3], f64x2ge), cmp(S[1], S[3], f64x2ge), cmp(S[2], S[3], f64x2ge), KP[3]),
    prune(0),
    upd(1, 0, 8),
    upd(2, 0, 9),
    upd(3, 0, 10),
    prune(1),
    upd(2, 1, 11),
    upd(3, 1, 12),
    prune(2),
    upd(3, 2, 13),
    prune(3),
    ...[0, 1, 2, 3].flatMap((t) => c(col(t), get(W[t]), demoteF64toF32Zero, store64laneAt(0, 0))),
    ...[0, 1, 2, 3].flatMap((t) => c(get(EA), get(CS), i32c(2 * t), I32_MUL, I32_ADD, get(E[t]), v128storeAt(0))),
    // The errors rounded to fp32 (Errᵀ's values).
    ...[0, 1, 2, 3].flatMap((t) =>
      c(
        get(E32G),
        get(R),
        i32c(4),
        I32_MUL,
        I32_ADD,
        get(CS),
        i32c(t),
        I32_MUL,
        I32_ADD,
        get(E[t]),
        demoteF64toF32Zero,
        store64laneAt(0, 0),
      ),
    ),
    // Keep bytes (0/1) of rows r and r + 1.
    get(MA),
    get(R),
    get(COLS),
    I32_MUL,
    I32_ADD,
    tee(J),
    get(KP[0]),
    get(KP[1]),
    shuffle(pairLanes),
    get(KP[2]),
    get(KP[3]),
    shuffle(pairLanes),
    shuffle(quadLanes),
    get(ONES),
    v128and,
    tee(Q),
    store32laneAt(0, 0),
    get(J),
    get(COLS),
    I32_ADD,
    get(Q),
    store32laneAt(0, 1),
  );
}

/** The rest of the leaf after the group, for the row pair at A: per column the group's four updates. */
function restColumns(): number[] {
  return c(
    // The rest of the leaf: per column the four updates in order, each rounded to fp32.
    col(4),
    set(JA),
    get(P),
    i32c(8 * GROUP_HEAD),
    I32_ADD,
    set(PJ),
    i32c(0),
    set(J),
    BLOCK,
    LOOP,
    get(J),
    get(NREST),
    I32_GE_S,
    brIf(1),
    get(JA),
    get(JA),
    load64zeroAt(0),
    promoteLowF32toF64,
    ...[0, 1, 2, 3].flatMap((t) =>
      c(
        get(E[t]),
        get(PJ),
        load64splatAt(8 * t),
        f64x2mul,
        f64x2sub,
        demoteF64toF32Zero,
        t < 3 ? promoteLowF32toF64 : [],
      ),
    ),
    store64laneAt(0, 0),
    get(JA),
    get(CS),
    I32_ADD,
    set(JA),
    get(PJ),
    i32c(32),
    I32_ADD,
    set(PJ),
    get(J),
    i32c(1),
    I32_ADD,
    set(J),
    br(0),
    END,
    END,
  );
}

/**
 * leaf4(rows, cols, groups, n, offP, offW, offE, offM, offE32): `cols` fp32 columns of `rows` (even) rows at offW
 * (column j at offW + 4·j·rows), swept in place group by group; float64 errors to offE (same layout, 8 bytes a row)
 * and rounded to fp32 at offE32 (the layout of the weights), the keep bytes row-major (`cols` a row) to offM; the
 * per-group constants at offP (GROUP_HEAD + 4·cols float64 each).
 */
function leafBytes(): Uint8Array {
  const body = c(
    get(ROWS),
    i32c(4),
    I32_MUL,
    set(CS),
    i32c(0),
    get(NN),
    I32_SUB,
    I64_EXTEND_I32_S,
    i64x2splat,
    set(NEGN),
    i32x4const([0x01010101, 0x01010101, 0x01010101, 0x01010101]),
    set(ONES),
    get(OFF_P),
    set(P),
    i32c(0),
    set(GI),
    BLOCK,
    LOOP,
    get(GI),
    get(GROUPS),
    I32_GE_S,
    brIf(1),
    // WG, EG: column 4·gi of the weights and of the errors; NREST: the leaf's columns after the group.
    get(OFF_W),
    get(GI),
    get(CS),
    I32_MUL,
    i32c(4),
    I32_MUL,
    I32_ADD,
    set(WG),
    get(OFF_E),
    get(GI),
    get(CS),
    I32_MUL,
    i32c(8),
    I32_MUL,
    I32_ADD,
    set(EG),
    get(OFF_E32),
    get(GI),
    get(CS),
    I32_MUL,
    i32c(4),
    I32_MUL,
    I32_ADD,
    set(E32G),
    get(COLS),
    get(GI),
    i32c(4),
    I32_MUL,
    I32_SUB,
    i32c(4),
    I32_SUB,
    set(NREST),
    get(OFF_M),
    get(GI),
    i32c(4),
    I32_MUL,
    I32_ADD,
    set(MA),
    i32c(0),
    set(R),
    BLOCK,
    LOOP,
    get(R),
    get(ROWS),
    I32_GE_S,
    brIf(1),
    get(WG),
    get(R),
    i32c(4),
    I32_MUL,
    I32_ADD,
    set(A),
    get(EG),
    get(R),
    i32c(8),
    I32_MUL,
    I32_ADD,
    set(EA),
    groupRowPair(),
    restColumns(),
    get(R),
    i32c(2),
    I32_ADD,
    set(R),
    br(0),
    END,
    END,
    get(P),
    get(COLS),
    i32c(32),
    I32_MUL,
    i32c(8 * GROUP_HEAD),
    I32_ADD,
    I32_ADD,
    set(P),
    get(GI),
    i32c(1),
    I32_ADD,
    set(GI),
    br(0),
    END,
    END,
    END,
  );
  return moduleBytes(
    'leaf4',
    [I32, I32, I32, I32, I32, I32, I32, I32, I32],
    [],
    [
      [14, I32],
      [19, V128],
    ],
    body,
  );
}
