// The 2:4 choices of math/nm-scored.ts as WebAssembly SIMD kernels: nmMaskScored's mask over canonical rows (four
// groups of four consecutive weights per step, transposed so that each lane holds one group) and pruneNMScored's
// in-place pruning in the stored [outer][groups][4][inner] layout (four columns of one group row per step, members
// `inner` apart, no transpose). The JavaScript spends ~3–5 ns per weight on either.
//
// Same choices bit for bit as the JavaScript: each score is fround(|w|·f) formed as the float64 product of the
// promoted |w| and the float64 factor, demoted once (round to nearest, as Math.fround); NaN scores become −Infinity
// (the mask kernel; the pruning kernel takes only groups of finite weights, where no score is NaN); the ranks are the
// same twelve comparisons (b > a, a ≥ b, …: ties to the lower index). The pruning keeps or clears the float bits
// (ŵ = w & keep, Δ = w & ~keep) and counts ±0 as the JavaScript does. A four-column block of the pruning holding NaN
// or ±Inf is left as it is and flagged; the caller redoes its columns in JavaScript.
//
// The data goes through the kernel's memory in chunks of about CHUNK weights. One instance of each kernel per thread,
// made on first use; where WebAssembly SIMD is unavailable (or the kernels are turned off) the callers keep their
// JavaScript.

import {
  BLOCK,
  br,
  brIf,
  c,
  demoteF64toF32Zero,
  END,
  ensureBytes,
  f32x4abs,
  f32x4eq,
  f32x4ge,
  f32x4gt,
  f64x2mul,
  get,
  HIGH_HALF,
  i16x8narrowS32,
  I32,
  I32_ADD,
  I32_EQZ,
  I32_GE_S,
  I32_STORE8,
  i32c,
  i32x4add,
  i32x4const,
  i32x4eq,
  i32x4extract,
  i32x4gtS,
  i32x4splat,
  i32x4sub,
  i8x16narrowS16,
  IF,
  LazyKernel,
  load64splatAt,
  LOOP,
  LOW_HALVES,
  moduleBytes,
  promoteLowF32toF64,
  set,
  shuffle,
  tee,
  V128,
  V128_ZERO,
  v128and,
  v128andnot,
  v128anyTrue,
  v128bitselect,
  v128loadAt,
  v128or,
  v128storeAt,
} from './wasm-simd.js';

/** Weights per chunk copied through the kernel's memory (whole rows or group rows, at least one). */
const CHUNK = 1 << 15;

type MaskFn = (rows: number, cols: number, n: number, offF: number, offW: number, offM: number) => void;
type PruneFn = (slabs: number, innerBytes: number, n: number, offD: number, offFlags: number, offX: number) => number;

const maskKernel = new LazyKernel<MaskFn>(maskBytes, 'mask4');
const pruneKernel = new LazyKernel<PruneFn>(pruneBytes, 'prune4');

/** Turns the kernels off (the JavaScript runs) or back on, for this thread: tests compare the two. */
export function useNMScoredSimd(on: boolean): void {
  maskKernel.use(on);
  pruneKernel.use(on);
}

/** Whether the kernels run on this thread (WebAssembly SIMD available and not turned off). */
export function nmScoredSimdActive(): boolean {
  return maskKernel.get() !== null;
}

/** f32 lane indices → the byte lanes of i8x16.shuffle. */
const lanes = (l: number[]) => l.flatMap((i) => [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]);

/**
 * fround(|w|·f) for the four floats `w` pushes, with the float64 factors of lanes 0–1 and 2–3 pushed by `fLo`, `fHi`;
 * `tmp` is a v128 scratch local.
 */
function scores(w: number[], fLo: number[], fHi: number[], tmp: number): number[] {
  return c(
    w,
    f32x4abs,
    tee(tmp),
    promoteLowF32toF64,
    fLo,
    f64x2mul,
    demoteF64toF32Zero,
    get(tmp),
    get(tmp),
    shuffle(HIGH_HALF),
    promoteLowF32toF64,
    fHi,
    f64x2mul,
    demoteF64toF32Zero,
    shuffle(LOW_HALVES),
  );
}

/** The keep masks (all ones where kept) of members A..D (v128 locals, one group per lane) into locals K[0..3]. */
function keeps(A: number, B: number, C: number, D: number, negN: number, K: number[]): number[] {
  const cmp = (x: number, y: number, op: number[]) => c(get(x), get(y), op); // x op y
  const keep = (a: number[], b: number[], d: number[], k: number) =>
    c(a, b, i32x4add, d, i32x4add, get(negN), i32x4gtS, set(k));
  return c(
    keep(cmp(B, A, f32x4gt), cmp(C, A, f32x4gt), cmp(D, A, f32x4gt), K[0]),
    keep(cmp(A, B, f32x4ge), cmp(C, B, f32x4gt), cmp(D, B, f32x4gt), K[1]),
    keep(cmp(A, C, f32x4ge), cmp(B, C, f32x4ge), cmp(D, C, f32x4gt), K[2]),
    keep(cmp(A, D, f32x4ge), cmp(B, D, f32x4ge), cmp(C, D, f32x4ge), K[3]),
  );
}

/**
 * mask4(rows, cols, n, offF, offW, offM): canonical rows of cols (a multiple of 16) fp32 weights at offW, float64
 * factors per column at offF, mask bytes (0/1) to offM.
 */
function maskBytes(): Uint8Array {
  const [ROWS, COLS, N, OFF_F, OFF_W, OFF_M] = [0, 1, 2, 3, 4, 5];
  const [R, K, PW, PM, PF] = [6, 7, 8, 9, 10];
  const S = [11, 12, 13, 14];
  const T = [15, 16, 17, 18];
  const [A, B, C, D] = [19, 20, 21, 22];
  const KEEP = [23, 24, 25, 26];
  const [NEGN, TMP, NEGINF] = [27, 28, 29];
  const score = (g: number) =>
    c(
      scores(c(get(PW), v128loadAt(16 * g)), c(get(PF), v128loadAt(0)), c(get(PF), v128loadAt(16)), TMP),
      tee(S[g]),
      get(NEGINF),
      get(S[g]),
      get(S[g]),
      f32x4eq,
      v128bitselect,
      set(S[g]),
    );
  const pair = (x: number, y: number, l: number[], out: number) => c(get(x), get(y), shuffle(lanes(l)), set(out));
  const body = c(
    i32c(0),
    get(N),
    0x6b, // i32.sub
    i32x4splat,
    set(NEGN),
    i32x4const([0xff800000 | 0, 0xff800000 | 0, 0xff800000 | 0, 0xff800000 | 0]),
    set(NEGINF),
    get(OFF_W),
    set(PW),
    get(OFF_M),
    set(PM),
    BLOCK,
    LOOP,
    get(R),
    get(ROWS),
    I32_GE_S,
    brIf(1),
    get(OFF_F),
    set(PF),
    i32c(0),
    set(K),
    BLOCK,
    LOOP,
    get(K),
    get(COLS),
    I32_GE_S,
    brIf(1),
    // Four groups (16 columns) share the factors of their four columns: each group is one vector of scores.
    score(0),
    get(PF),
    i32c(32),
    I32_ADD,
    set(PF),
    score(1),
    get(PF),
    i32c(32),
    I32_ADD,
    set(PF),
    score(2),
    get(PF),
    i32c(32),
    I32_ADD,
    set(PF),
    score(3),
    get(PF),
    i32c(32),
    I32_ADD,
    set(PF),
    // Transpose: lane g of A..D = member 0..3 of group g.
    pair(S[0], S[1], [0, 4, 1, 5], T[0]),
    pair(S[2], S[3], [0, 4, 1, 5], T[1]),
    pair(S[0], S[1], [2, 6, 3, 7], T[2]),
    pair(S[2], S[3], [2, 6, 3, 7], T[3]),
    pair(T[0], T[1], [0, 1, 4, 5], A),
    pair(T[0], T[1], [2, 3, 6, 7], B),
    pair(T[2], T[3], [0, 1, 4, 5], C),
    pair(T[2], T[3], [2, 3, 6, 7], D),
    keeps(A, B, C, D, NEGN, KEEP),
    // Bytes [a0..a3 b0..b3 c0..c3 d0..d3] → [a0 b0 c0 d0 a1 …], all ones → 1.
    get(PM),
    get(KEEP[0]),
    get(KEEP[1]),
    i16x8narrowS32,
    get(KEEP[2]),
    get(KEEP[3]),
    i16x8narrowS32,
    i8x16narrowS16,
    get(KEEP[0]),
    shuffle([0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]),
    i32x4const([0x01010101, 0x01010101, 0x01010101, 0x01010101]),
    v128and,
    v128storeAt(0),
    get(PW),
    i32c(64),
    I32_ADD,
    set(PW),
    get(PM),
    i32c(16),
    I32_ADD,
    set(PM),
    get(K),
    i32c(16),
    I32_ADD,
    set(K),
    br(0),
    END,
    END,
    get(R),
    i32c(1),
    I32_ADD,
    set(R),
    br(0),
    END,
    END,
    END,
  );
  return moduleBytes(
    'mask4',
    [I32, I32, I32, I32, I32, I32],
    [],
    [
      [5, I32],
      [19, V128],
    ],
    body,
  );
}

/**
 * prune4(slabs, innerBytes, n, offD, offFlags, offX) → zeros: `slabs` group rows [4][inner] of fp32 weights from
 * address 0 (inner a multiple of 4, innerBytes = 4·inner), four float64 factors per slab at offX; pruned in place, Δ at
 * offD + the same offset, a flag byte per four-column block at offFlags (1: NaN/±Inf there, nothing written).
 */
function pruneBytes(): Uint8Array {
  const [SLABS, IB, N, OFF_D, OFF_FL, OFF_X] = [0, 1, 2, 3, 4, 5];
  const [S, E, END_E, FL, PX, BAD, I2, I3] = [6, 7, 8, 9, 10, 11, 12, 13];
  const W = [14, 15, 16, 17];
  const X = [18, 19, 20, 21];
  const SC = [22, 23, 24, 25];
  const KEEP = [26, 27, 28, 29];
  const [NEGN, TMP, ACC] = [30, 31, 32];
  const addr = (j: number) => (j === 0 ? get(E) : c(get(E), get([0, IB, I2, I3][j]), I32_ADD));
  const EXP = i32x4const([0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000]);
  const ABS = i32x4const([0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff]);
  const expAll = (j: number) => c(get(W[j]), EXP, v128and, EXP, i32x4eq);
  const member = (j: number) => c(scores(get(W[j]), get(X[j]), get(X[j]), TMP), set(SC[j]));
  const write = (j: number) =>
    c(
      addr(j),
      get(W[j]),
      get(KEEP[j]),
      v128and,
      tee(TMP),
      v128storeAt(0),
      addr(j),
      get(OFF_D),
      I32_ADD,
      get(W[j]),
      get(KEEP[j]),
      v128andnot,
      v128storeAt(0),
      get(ACC),
      get(TMP),
      ABS,
      v128and,
      V128_ZERO,
      i32x4eq,
      i32x4sub,
      set(ACC),
    );
  const body = c(
    i32c(0),
    get(N),
    0x6b, // i32.sub
    i32x4splat,
    set(NEGN),
    get(IB),
    get(IB),
    I32_ADD,
    tee(I2),
    get(IB),
    I32_ADD,
    set(I3),
    get(OFF_FL),
    set(FL),
    get(OFF_X),
    set(PX),
    BLOCK,
    LOOP,
    get(S),
    get(SLABS),
    I32_GE_S,
    brIf(1),
    c(...[0, 1, 2, 3].map((j) => c(get(PX), load64splatAt(8 * j), set(X[j])))),
    get(E),
    get(IB),
    I32_ADD,
    set(END_E),
    BLOCK,
    LOOP,
    get(E),
    get(END_E),
    I32_GE_S,
    brIf(1),
    c(...[0, 1, 2, 3].map((j) => c(addr(j), v128loadAt(0), set(W[j])))),
    get(FL),
    expAll(0),
    expAll(1),
    v128or,
    expAll(2),
    v128or,
    expAll(3),
    v128or,
    v128anyTrue,
    tee(BAD),
    I32_STORE8,
    get(BAD),
    I32_EQZ,
    IF,
    member(0),
    member(1),
    member(2),
    member(3),
    keeps(SC[0], SC[1], SC[2], SC[3], NEGN, KEEP),
    write(0),
    write(1),
    write(2),
    write(3),
    END,
    get(E),
    i32c(16),
    I32_ADD,
    set(E),
    get(FL),
    i32c(1),
    I32_ADD,
    set(FL),
    br(0),
    END,
    END,
    // The block loop stopped after member 0's row: skip members 1–3.
    get(E),
    get(I3),
    I32_ADD,
    set(E),
    get(PX),
    i32c(32),
    I32_ADD,
    set(PX),
    get(S),
    i32c(1),
    I32_ADD,
    set(S),
    br(0),
    END,
    END,
    get(ACC),
    i32x4extract(0),
    get(ACC),
    i32x4extract(1),
    I32_ADD,
    get(ACC),
    i32x4extract(2),
    I32_ADD,
    get(ACC),
    i32x4extract(3),
    I32_ADD,
    END,
  );
  return moduleBytes(
    'prune4',
    [I32, I32, I32, I32, I32, I32],
    [I32],
    [
      [8, I32],
      [19, V128],
    ],
    body,
  );
}

/**
 * nm-scored.ts mask4 through the kernel: the mask of canonical rows×cols weights with per-column float64 factors.
 * Returns false (nothing written) where the kernel does not apply (cols not a multiple of 16, no SIMD).
 */
export function mask4Simd(
  w: Float32Array,
  rows: number,
  cols: number,
  n: number,
  f: ArrayLike<number>,
  mask: Uint8Array,
): boolean {
  if (cols % 16 !== 0 || rows * cols === 0) return false;
  const k = maskKernel.get();
  if (!k) return false;
  const rowsPer = Math.max(1, Math.floor(CHUNK / cols));
  const per = rowsPer * cols;
  const offW = 8 * cols;
  const offM = offW + 4 * per;
  const buf = ensureBytes(k, offM + per);
  const sf = new Float64Array(buf, 0, cols);
  for (let i = 0; i < cols; i++) sf[i] = f[i];
  const sw = new Float32Array(buf, offW, per);
  const sm = new Uint8Array(buf, offM, per);
  for (let r0 = 0; r0 < rows; r0 += rowsPer) {
    const r1 = Math.min(rows, r0 + rowsPer);
    const len = (r1 - r0) * cols;
    sw.set(w.subarray(r0 * cols, r0 * cols + len));
    k.fn(r1 - r0, cols, n, 0, offW, offM);
    mask.set(sm.subarray(0, len), r0 * cols);
  }
  return true;
}

/** A four-column block the pruning kernel left to the caller: the index of its first weight and its group along K. */
export type RedoBlock = (at: number, g: number) => void;

/**
 * nm-scored.ts prune4 through the kernel for layouts with inner a multiple of 4: prunes v in place (Δ into `delta`
 * when given) and returns the zeros it made, calling `redo` for every four-column block holding NaN or ±Inf (left
 * as it was, Δ there unwritten). Returns −1 (nothing written) where the kernel does not apply.
 */
export function prune4Simd(
  v: Float32Array,
  outer: number,
  groups: number,
  inner: number,
  n: number,
  factor: ArrayLike<number> | undefined,
  delta: Float32Array | undefined,
  redo: RedoBlock,
): number {
  if (inner % 4 !== 0 || inner === 0 || outer * groups === 0) return -1;
  const k = pruneKernel.get();
  if (!k) return -1;
  const slab = 4 * inner;
  const slabsPer = Math.max(1, Math.floor(CHUNK / slab));
  const per = slabsPer * slab;
  const blocks = slabsPer * (inner / 4);
  const offD = 4 * per;
  const offFl = 8 * per;
  const offX = offFl + ((blocks + 15) & ~15);
  const buf = ensureBytes(k, offX + 32 * slabsPer);
  const sw = new Float32Array(buf, 0, per);
  const sd = new Float32Array(buf, offD, per);
  const sfl = new Uint8Array(buf, offFl, blocks);
  const sx = new Float64Array(buf, offX, 4 * slabsPer);
  const slabs = outer * groups;
  const blocksPerSlab = inner / 4;
  let zeros = 0;
  for (let s0 = 0; s0 < slabs; s0 += slabsPer) {
    const s1 = Math.min(slabs, s0 + slabsPer);
    const e0 = s0 * slab;
    const len = (s1 - s0) * slab;
    for (let s = s0; s < s1; s++) {
      const g = s % groups;
      for (let j = 0; j < 4; j++) sx[4 * (s - s0) + j] = factor ? factor[4 * g + j] : 1;
    }
    sw.set(v.subarray(e0, e0 + len));
    zeros += k.fn(s1 - s0, 4 * inner, n, offD, offFl, offX);
    v.set(sw.subarray(0, len), e0);
    if (delta) delta.set(sd.subarray(0, len), e0);
    const nb = (s1 - s0) * blocksPerSlab;
    for (let b = 0; b < nb; b++) {
      if (sfl[b] === 0) continue;
      const s = Math.floor(b / blocksPerSlab);
      redo(e0 + s * slab + 4 * (b - s * blocksPerSlab), (s0 + s) % groups);
    }
  }
  return zeros;
}
