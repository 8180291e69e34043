// The masked symmetric 4/8-bit sweep of every SLiM sparse part (quant/rtn.ts maskedWithResidual: per group of
// blockSize along K the signed extreme of w·mask, the scale, the codes and the residual w0 − dequantized) as a
// WebAssembly SIMD kernel. Scalar JavaScript spends ~8 ns per weight on it (two passes of float64 arithmetic with a
// bounds check per access; unrolling does not help), ~5.5 s of a 245 M-parameter model's compress stage.
//
// Same values bit for bit as the JavaScript loop: the extremes are f32x4 pmin/pmax over the exact products w·mask
// (the extremes of Math.min/Math.max but for the sign of a zero one, whose scale is 0 either way; a NaN lane is
// flagged); the scale is fround(m / −half) and the inverse 1/s in float64; each code is
// trunc(min(max(w·mask·inv + half + ½, ½), 2·half − ½)) in float64 lanes (the same two roundings as the scalar
// expression; pmin/pmax clamp as min/max do, nothing there being NaN or a zero), and the residual w0 − (code − half)·s
// is formed in float64 and rounded to fp32 once, as a store into a Float32Array does. Groups the kernel does not take
// (a non-finite extreme, a mask byte other than 0 or 1) are flagged and handed back to the scalar code, which then
// also raises its errors with their row and group.
//
// The data goes through the kernel's own memory in chunks of CHUNK weights (copies in and out: ~14 bytes per weight
// of memcpy). One instance per thread (module state), made on first use; where WebAssembly SIMD is unavailable the
// caller keeps its scalar loop.

import {
  BLOCK,
  br,
  brIf,
  c,
  demoteF64toF32Zero,
  END,
  ensureBytes,
  F32,
  F32_DEMOTE,
  F32_EQ,
  F32_GE,
  F32_MAX,
  F32_MIN,
  F32_NE,
  F32_NEG,
  F32_SUB,
  F32_ZERO,
  f32x4convertS32,
  f32x4extract,
  f32x4mul,
  f32x4ne,
  f32x4pmax,
  f32x4pmin,
  f32x4splat,
  F64,
  F64_DIV,
  F64_NEG,
  F64_PROMOTE,
  f64c,
  f64x2add,
  f64x2convertLowI32,
  f64x2mul,
  f64x2pmax,
  f64x2pmin,
  f64x2splat,
  f64x2sub,
  get,
  HIGH_HALF,
  i16x8extendLowU8,
  i16x8narrowU32,
  I32,
  I32_ADD,
  I32_GE_U,
  I32_LT_U,
  I32_MUL,
  I32_OR,
  I32_SHL,
  i32c,
  i32x4extendLowU16,
  i32x4splat,
  i32x4sub,
  i8x16narrowU16,
  IF,
  LazyKernel,
  load32zero,
  LOOP,
  LOW_HALVES,
  moduleBytes,
  promoteLowF32toF64,
  SELECT,
  set,
  shuffle,
  store32lane0,
  tee,
  truncSatF64toI32Zero,
  V128,
  V128_ZERO,
  v128and,
  v128anyTrue,
  v128load,
  v128or,
  v128store,
} from '../math/wasm-simd.js';

/** Weights per chunk copied through the kernel's memory (whole groups; ~0.9 MB of memory in all). */
const CHUNK = 1 << 16;

/** One group of the chunk the kernel flagged, for the scalar code: indices into the chunk's staging arrays. */
export interface StagedGroup {
  w: Float32Array;
  w0: Float32Array;
  mask: Uint8Array;
  codes: Uint8Array;
  out: Float32Array;
  scales: Float32Array;
  /** The group's first weight in the staging arrays, its scale's index there, and its index in the whole matrix. */
  k0: number;
  k1: number;
  scaleIndex: number;
  group: number;
}

// Parameters of sweep(groups, bs, half, shift, lo, hi, halfInt, w, mask, w0, codes, out, scales, flags); byte
// addresses, bs a multiple of 4.
const P = { groups: 0, bs: 1, half: 2, shift: 3, lo: 4, hi: 5, halfInt: 6, w: 7, mask: 8, w0: 9, codes: 10, out: 11 };
const PS = { scales: 12, flags: 13 };
// Locals after the 14 parameters.
const L = { g: 14, j: 15, end: 16, maskOr: 17, mn: 18, mx: 19, v: 20, m: 21, s: 22, inv: 23, a: 24, b: 25, c: 26 };
// v128 locals holding the splats of pass 2, set once per group.
const V = { inv: 27, shift: 28, lo: 29, hi: 30, s: 31 };

/** Byte address of element j of the fp32 array at parameter `base`. */
const f32At = (base: number) => c(get(base), get(L.j), i32c(2), I32_SHL, I32_ADD);
/** j = g·bs, end = j + bs. */
const groupRange = c(get(L.g), get(P.bs), I32_MUL, tee(L.j), get(P.bs), I32_ADD, set(L.end));
/** j += 4; loop while j < end (closes the loop). */
const nextFour = c(get(L.j), i32c(4), I32_ADD, tee(L.j), get(L.end), I32_LT_U, brIf(0), END);
/** g += 1. */
const nextGroup = c(get(L.g), i32c(1), I32_ADD, set(L.g));

/** w·mask for the 4 weights at element j (v128 on the stack); the mask's i32 lanes are or-ed into maskOr. */
const maskedAt = c(
  f32At(P.w),
  v128load,
  get(P.mask),
  get(L.j),
  I32_ADD,
  load32zero,
  i16x8extendLowU8,
  i32x4extendLowU16,
  tee(L.c),
  get(L.maskOr),
  v128or,
  set(L.maskOr),
  get(L.c),
  f32x4convertS32,
  f32x4mul,
);

/**
 * Pass 1: mn, mx = the lane-wise extremes of w·mask over the group (from 0), by pmin/pmax (one instruction each; they
 * differ from min/max only in the sign of a zero extreme, which gives the same scale 0, and in NaN, flagged here).
 */
const pass1 = c(
  c(F32_ZERO, f32x4splat, tee(L.mn), set(L.mx), V128_ZERO, set(L.maskOr), LOOP, maskedAt, set(L.v)),
  c(get(L.mn), get(L.v), f32x4pmin, set(L.mn), get(L.mx), get(L.v), f32x4pmax, set(L.mx)),
  c(get(L.v), get(L.v), f32x4ne, get(L.maskOr), v128or, set(L.maskOr)), // a NaN lane: all ones → flagged
  nextFour,
);

/** The lanes of a v128 local reduced by a scalar f32 op (min/max: any order gives the same value). */
const reduce = (v: number, op: number) =>
  c(get(v), f32x4extract(0), get(v), f32x4extract(1), op, get(v), f32x4extract(2), get(v), f32x4extract(3), op, op);

/** m = −mn ≥ mx ? mn : mx (mn, mx reduced; s holds mx for the moment). */
const extreme = c(
  reduce(L.mn, F32_MIN),
  reduce(L.mx, F32_MAX),
  set(L.s),
  tee(L.m),
  get(L.s),
  get(L.m),
  F32_NEG,
  get(L.s),
  F32_GE,
  SELECT,
  set(L.m),
);

/** flags[g] = m not finite (m − m ≠ 0) or a mask byte above 1; such a group skips to the next (end holds the flag). */
const flagOrSkip = c(
  c(get(PS.flags), get(L.g), I32_ADD, get(L.m), get(L.m), F32_SUB, F32_ZERO, F32_NE),
  c(get(L.maskOr), i32c(-2), i32x4splat, v128and, v128anyTrue, I32_OR, tee(L.end), 0x3a, 0, 0),
  c(get(L.end), IF, nextGroup, br(1), END),
);

/** s = m == 0 ? 0 : fround(m / −half); scales[g] = s; inv = s == 0 ? 0 : 1/s. */
const scale = c(
  c(F32_ZERO, get(L.m), F64_PROMOTE, get(P.half), F64_NEG, F64_DIV, F32_DEMOTE, get(L.m), F32_ZERO, F32_EQ, SELECT),
  c(set(L.s), get(PS.scales), get(L.g), i32c(2), I32_SHL, I32_ADD, get(L.s), 0x38, 2, 0),
  c(f64c(0), f64c(1), get(L.s), F64_PROMOTE, F64_DIV, get(L.s), F32_ZERO, F32_EQ, SELECT, set(L.inv)),
);

/** The codes of the two float64 lanes (promoted w·mask) in local `src`: i32x4 [c, c, 0, 0]. */
const codeOf = (src: number) =>
  c(
    get(src),
    get(V.inv),
    f64x2mul,
    get(V.shift),
    f64x2add,
    get(V.lo),
    f64x2pmax,
    get(V.hi),
    f64x2pmin,
    truncSatF64toI32Zero,
  );

/** w0 − (c − half)·s for the two lanes of w0 (v128 f32 local v, lanes from `hi`) in float64, rounded to fp32. */
const residualOf = (hi: boolean) =>
  c(
    get(L.v),
    hi ? c(get(L.v), shuffle(HIGH_HALF)) : [],
    promoteLowF32toF64,
    get(L.c),
    hi ? c(get(L.c), shuffle(HIGH_HALF)) : [],
    f64x2convertLowI32,
    c(get(V.s), f64x2mul, f64x2sub, demoteF64toF32Zero),
  );

/** Pass 2: the codes (4 bytes per step) and the residual (4 fp32 per step). */
const pass2 = c(
  c(get(L.inv), f64x2splat, set(V.inv), get(P.shift), f64x2splat, set(V.shift), get(P.lo), f64x2splat, set(V.lo)),
  c(get(P.hi), f64x2splat, set(V.hi), get(L.s), F64_PROMOTE, f64x2splat, set(V.s)),
  groupRange,
  LOOP,
  c(maskedAt, tee(L.v), promoteLowF32toF64, set(L.a)),
  c(get(L.v), get(L.v), shuffle(HIGH_HALF), promoteLowF32toF64, set(L.b)),
  c(codeOf(L.a), codeOf(L.b), shuffle(LOW_HALVES), tee(L.c)),
  c(get(L.c), i16x8narrowU32, get(L.c), i8x16narrowU16, set(L.v)),
  c(get(P.codes), get(L.j), I32_ADD, get(L.v), store32lane0),
  c(get(L.c), get(P.halfInt), i32x4splat, i32x4sub, set(L.c)),
  c(f32At(P.w0), v128load, set(L.v), f32At(P.out)),
  c(residualOf(false), residualOf(true), shuffle(LOW_HALVES), v128store),
  nextFour,
);

function kernelBytes(): Uint8Array {
  const params = [I32, I32, F64, F64, F64, F64, I32, I32, I32, I32, I32, I32, I32, I32];
  const body = c(
    c(i32c(0), set(L.g), BLOCK, LOOP, get(L.g), get(P.groups), I32_GE_U, brIf(1)),
    groupRange,
    pass1,
    extreme,
    flagOrSkip,
    scale,
    pass2,
    c(nextGroup, br(0), END, END, END),
  );
  // Locals: g j end (i32), maskOr mn mx v (v128), m s (f32), inv (f64), a b c and the splats (v128).
  const locals: [number, number][] = [
    [3, I32],
    [4, V128],
    [2, F32],
    [1, F64],
    [8, V128],
  ];
  return moduleBytes('sweep', params, [], locals, body);
}

type Sweep = (
  groups: number,
  bs: number,
  half: number,
  shift: number,
  lo: number,
  hi: number,
  halfInt: number,
  w: number,
  mask: number,
  w0: number,
  codes: number,
  out: number,
  scales: number,
  flags: number,
) => void;

// null where WebAssembly SIMD is unavailable: the scalar loop runs.
const kernel = new LazyKernel<Sweep>(kernelBytes, 'sweep');

/** Turns the kernel off (the scalar loop runs) or back on, for this thread: tests compare the two. */
export function useMaskedSweepSimd(on: boolean): void {
  kernel.use(on);
}

/** Whether the kernel runs on this thread (WebAssembly SIMD available and not turned off). */
export function maskedSweepSimdActive(): boolean {
  return kernel.get() !== null;
}

/**
 * quant/rtn.ts maskedWithResidual's sweep through the kernel: fills codes, scales and residual.out for a rows×cols
 * matrix whose groups of blockSize (a multiple of 4 dividing cols) tile each row. `general` redoes one flagged group
 * in the staging arrays with the scalar code. Returns false (nothing written) where the kernel does not apply.
 */
export function maskedSweepSimd(
  w: Float32Array,
  mask: Uint8Array,
  w0: Float32Array,
  out: Float32Array,
  codes: Uint8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  bits: number,
  blockSize: number,
  general: (g: StagedGroup) => void,
): boolean {
  const bs = blockSize;
  if (bs < 4 || bs % 4 !== 0 || cols % bs !== 0 || rows * cols === 0) return false;
  const k = kernel.get();
  if (!k) return false;
  const total = rows * cols;
  const per = Math.max(bs, Math.floor(CHUNK / bs) * bs); // weights per chunk, whole groups
  const gPer = per / bs;
  // Layout: w, w0, out (fp32), mask, codes (bytes), scales (fp32), flags (bytes).
  const offW = 0;
  const offW0 = 4 * per;
  const offOut = 8 * per;
  const offMask = 12 * per;
  const offCodes = 13 * per;
  const offScales = 14 * per;
  const offFlags = offScales + 4 * gPer;
  const need = offFlags + gPer;
  const buf = ensureBytes(k, need);
  const sw = new Float32Array(buf, offW, per);
  const sw0 = new Float32Array(buf, offW0, per);
  const sOut = new Float32Array(buf, offOut, per);
  const sMask = new Uint8Array(buf, offMask, per);
  const sCodes = new Uint8Array(buf, offCodes, per);
  const sScales = new Float32Array(buf, offScales, gPer);
  const sFlags = new Uint8Array(buf, offFlags, gPer);
  const half = 1 << (bits - 1);
  for (let e0 = 0; e0 < total; e0 += per) {
    const n = Math.min(per, total - e0);
    const groups = n / bs;
    const g0 = e0 / bs;
    sw.set(w.subarray(e0, e0 + n));
    sw0.set(w0.subarray(e0, e0 + n));
    sMask.set(mask.subarray(e0, e0 + n));
    k.fn(
      groups,
      bs,
      half,
      half + 0.5,
      0.5,
      2 * half - 0.5,
      half,
      offW,
      offMask,
      offW0,
      offCodes,
      offOut,
      offScales,
      offFlags,
    );
    for (let g = 0; g < groups; g++) {
      if (sFlags[g] === 0) continue;
      general({
        w: sw,
        w0: sw0,
        mask: sMask,
        codes: sCodes,
        out: sOut,
        scales: sScales,
        k0: g * bs,
        k1: (g + 1) * bs,
        scaleIndex: g,
        group: g0 + g,
      });
    }
    codes.set(sCodes.subarray(0, n), e0);
    out.set(sOut.subarray(0, n), e0);
    scales.set(sScales.subarray(0, groups), g0);
  }
  return true;
}
