// log Σ_v e^{x_v} over rows of logits (LM scoring, metrics/labels.ts) as a WebAssembly SIMD kernel. The scalar loop
// (a max pass, then Σ Math.exp(x − max) in float64) spends ~12 ns per logit in Math.exp: ~0.4 s for 1024 positions
// of a 32 000-word vocabulary, once for the dense logits and once for the compressed ones of every LM evaluation.
//
// The kernel keeps the scalar loop's float64 arithmetic: the row's maximum m (f32x4.max, NaN propagating), then
// Σ e^{x − m} with x − m formed in float64 exactly as the scalar loop forms it, e^y by Cody–Waite reduction
// y = n·ln2 + r (|r| ≤ ln2/2, ln2 split into a 24-bit head and its float64 remainder), the degree-13 Taylor
// polynomial of e^r (truncation below 1e-17) and 2^n put in the exponent bits. Each term is within ~2 ulp of
// Math.exp's; the terms are summed in four float64 lanes, then added. The sum (≥ 1: the maximum's own term) thus
// equals the scalar loop's up to float64 rounding of a sum (relative ~1e-15 at 32 000 terms), and so does the log.
// Terms below e^−708 are taken as 0 (they cannot change a float64 sum ≥ 1). A row whose maximum is not finite (NaN,
// ±Inf, or every logit −Inf) is flagged and redone by the scalar loop, which gives its NaN or ±Inf as before.
//
// Rows go through the kernel's memory in chunks (copied in, padded with −Inf to a multiple of 8 logits). One
// instance per thread (module state), made on first use; where WebAssembly SIMD is unavailable the scalar loop runs.
import {
  BLOCK,
  br,
  brIf,
  c,
  END,
  ensureBytes,
  F32,
  F32_EQ,
  F32_MAX,
  F32_MINUS_INF,
  F32_SUB,
  F32_ZERO,
  f32x4extract,
  f32x4max,
  f32x4splat,
  F64_ADD,
  F64_PROMOTE,
  F64_STORE,
  f64x2add,
  f64x2const,
  f64x2extract,
  f64x2ge,
  f64x2mul,
  f64x2pmax,
  f64x2splat,
  f64x2sub,
  get,
  HIGH_HALF,
  I32,
  I32_ADD,
  I32_GE_U,
  I32_LT_U,
  I32_MUL,
  I32_SHL,
  i32c,
  i64x2add,
  i64x2const,
  i64x2shl,
  IF,
  LazyKernel,
  LOOP,
  moduleBytes,
  promoteLowF32toF64,
  set,
  shuffle,
  tee,
  V128,
  v128and,
  v128loadAt,
} from '../math/wasm-simd.js';

/** Logits per chunk copied through the kernel's memory (whole rows; at least one row). */
const CHUNK = 1 << 18;

// Parameters of lse(src, rows, stride, dst): byte addresses; stride (floats per row) a multiple of 8; dst receives
// [max, Σ e^{x − max}] per row as two float64 (the sum left unwritten where the max is not finite).
const P = { src: 0, rows: 1, stride: 2, dst: 3 };
const L = { row: 4, p: 5, end: 6, mx: 7, m: 8, mxv: 9, acc0: 10, acc1: 11, x: 12, xc: 13, t: 14, n: 15, r: 16 };
const L_V = 17;

/** Below this e^y is taken as 0 (and y is clamped to it, so that 2^n stays a normal float64). */
const LOW = -708;
const MAGIC = 6755399441055744; // 1.5·2^52: y·log2e + MAGIC rounds to an integer n held in the low mantissa bits
const LN2_HI = Math.fround(Math.LN2); // 24 bits: n·LN2_HI is exact for |n| < 2^29
const LN2_LO = Math.LN2 - LN2_HI;
/** 1/k! for k = 13 down to 2. */
const TAYLOR: number[] = [];
for (let k = 13, f = 1; k >= 2; k--) {
  f = 1;
  for (let i = 2; i <= k; i++) f *= i;
  TAYLOR.push(1 / f);
}

/** e^y for the float64 lanes of local x (all ≤ 0, no NaN), on the stack; lanes below e^LOW are 0. */
const expOfX = c(
  c(f64x2const(LOW), get(L.x), f64x2pmax, tee(L.xc)), // max(x, LOW); −Inf → LOW
  c(f64x2const(Math.LOG2E), f64x2mul, f64x2const(MAGIC), f64x2add, tee(L.t), f64x2const(MAGIC), f64x2sub, set(L.n)),
  c(get(L.xc), get(L.n), f64x2const(LN2_HI), f64x2mul, f64x2sub),
  c(get(L.n), f64x2const(LN2_LO), f64x2mul, f64x2sub, set(L.r)),
  // q = 1/2! + r/3! + … + r^11/13! by Horner; e^r = 1 + (r + r²·q)
  f64x2const(TAYLOR[0]),
  ...TAYLOR.slice(1).map((k) => c(get(L.r), f64x2mul, f64x2const(k), f64x2add)),
  c(get(L.r), get(L.r), f64x2mul, f64x2mul, get(L.r), f64x2add, f64x2const(1), f64x2add),
  // · 2^n: the low bits of t hold n (MAGIC's low 12 bits are 0), so (t + 1023) << 52 is 2^n's bits
  c(get(L.t), i64x2const(1023), i64x2add, i32c(52), i64x2shl, f64x2mul),
  c(get(L.x), f64x2const(LOW), f64x2ge, v128and),
);

/** acc += e^{lanes of v (f32, low half or high half) − mx}. */
const accumulate = (acc: number, high: boolean) =>
  c(
    get(L_V),
    high ? c(get(L_V), shuffle(HIGH_HALF)) : [],
    promoteLowF32toF64,
    get(L.mxv),
    f64x2sub,
    set(L.x),
    get(acc),
    expOfX,
    f64x2add,
    set(acc),
  );

/** p = src + row·stride·4, end = p + stride·4. */
const rowRange = c(
  c(get(P.src), get(L.row), get(P.stride), I32_MUL, i32c(2), I32_SHL, I32_ADD, tee(L.p)),
  c(get(P.stride), i32c(2), I32_SHL, I32_ADD, set(L.end)),
);
/** p += 32; loop while p < end (closes the loop). */
const nextEight = c(get(L.p), i32c(32), I32_ADD, tee(L.p), get(L.end), I32_LT_U, brIf(0), END);
/** Byte address of dst's float64 `k` (0: max, 1: sum) of this row. */
const dstAt = (k: number) => c(get(P.dst), get(L.row), i32c(4), I32_SHL, I32_ADD, i32c(8 * k), I32_ADD);

const maxPass = c(
  c(F32_MINUS_INF, f32x4splat, set(L.m), rowRange, LOOP),
  c(get(L.m), get(L.p), v128loadAt(0), f32x4max, get(L.p), v128loadAt(16), f32x4max, set(L.m), nextEight),
  c(get(L.m), f32x4extract(0), get(L.m), f32x4extract(1), F32_MAX, get(L.m), f32x4extract(2), F32_MAX),
  c(get(L.m), f32x4extract(3), F32_MAX, set(L.mx), dstAt(0), get(L.mx), F64_PROMOTE, F64_STORE),
);

const sumPass = c(
  c(get(L.mx), get(L.mx), F32_SUB, F32_ZERO, F32_EQ, IF), // a finite maximum
  c(get(L.mx), F64_PROMOTE, f64x2splat, set(L.mxv), f64x2const(0), tee(L.acc0), set(L.acc1), rowRange, LOOP),
  c(get(L.p), v128loadAt(0), set(L_V), accumulate(L.acc0, false), accumulate(L.acc1, true)),
  c(get(L.p), v128loadAt(16), set(L_V), accumulate(L.acc0, false), accumulate(L.acc1, true)),
  nextEight,
  c(dstAt(1), get(L.acc0), get(L.acc1), f64x2add, tee(L.acc0), f64x2extract(0), get(L.acc0), f64x2extract(1)),
  c(F64_ADD, F64_STORE, END),
);

function kernelBytes(): Uint8Array {
  const body = c(
    c(i32c(0), set(L.row), BLOCK, LOOP, get(L.row), get(P.rows), I32_GE_U, brIf(1)),
    maxPass,
    sumPass,
    c(get(L.row), i32c(1), I32_ADD, set(L.row), br(0), END, END, END),
  );
  return moduleBytes(
    'lse',
    [I32, I32, I32, I32],
    [],
    [
      [3, I32],
      [1, F32],
      [10, V128],
    ],
    body,
  );
}

type Lse = (src: number, rows: number, stride: number, dst: number) => void;

const kernel = new LazyKernel<Lse>(kernelBytes, 'lse');

/** Turns the kernel off (the scalar loop runs) or back on, for this thread: tests compare the two. */
export function useLseSimd(on: boolean): void {
  kernel.use(on);
}

/** Whether the kernel runs on this thread (WebAssembly SIMD available and not turned off). */
export function lseSimdActive(): boolean {
  return kernel.get() !== null;
}

/** The scalar loop: max + log Σ e^{x − max} over out[base .. base+V) in float64 (NaN/±Inf as they fall). */
export function logSumExpScalar(out: Float32Array, base: number, V: number): number {
  let mx = -Infinity;
  for (let v = 0; v < V; v++) if (out[base + v] > mx) mx = out[base + v];
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(out[base + v] - mx);
  return mx + Math.log(sum);
}

/**
 * lse[i] = log Σ_v e^{out[rows[i]·V + v]} for i < n, as max + Math.log(Σ e^{x − max}) (logSumExpScalar's expression,
 * its sum up to float64 rounding through the kernel).
 */
export function logSumExpRows(out: Float32Array, V: number, rows: Int32Array, n: number, lse: Float64Array): void {
  const k = V > 0 ? kernel.get() : null;
  if (!k) {
    for (let i = 0; i < n; i++) lse[i] = logSumExpScalar(out, rows[i] * V, V);
    return;
  }
  const stride = Math.ceil(V / 8) * 8;
  const per = Math.max(1, Math.floor(CHUNK / stride));
  const offDst = 4 * per * stride;
  const buf = ensureBytes(k, offDst + 16 * per);
  const src = new Float32Array(buf, 0, per * stride);
  const dst = new Float64Array(buf, offDst, 2 * per);
  for (let i0 = 0; i0 < n; i0 += per) {
    const cnt = Math.min(per, n - i0);
    for (let j = 0; j < cnt; j++) {
      const base = rows[i0 + j] * V;
      src.set(out.subarray(base, base + V), j * stride);
      if (stride > V) src.fill(-Infinity, j * stride + V, (j + 1) * stride);
    }
    k.fn(0, cnt, stride, offDst);
    for (let j = 0; j < cnt; j++) {
      const mx = dst[2 * j];
      lse[i0 + j] = mx - mx === 0 ? mx + Math.log(dst[2 * j + 1]) : logSumExpScalar(out, rows[i0 + j] * V, V);
    }
  }
}
