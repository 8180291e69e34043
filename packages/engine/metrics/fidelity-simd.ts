// FidelityAccumulator's sweep (metrics/fidelity.ts) as a WebAssembly SIMD kernel: per row of `classes` outputs the
// float64 sums Σ y·ŷ, Σ y², Σ ŷ², Σ (y − ŷ)² and the argmax of y and of ŷ. The scalar loop spends ~5 ns per output
// on it (four float64 sums, then two argmax passes): ~0.2 s for an LM's 1024 × 32 000 logits.
//
// The products and differences are those of the scalar loop (fp32 values promoted to float64: exact products); the
// sums run in float64 lanes, so they equal the scalar loop's up to float64 rounding of a sum. The argmax is the
// scalar one exactly: each of four lanes keeps its first strictly greater value (a NaN never compares greater) and
// its index; the row's argmax is the smallest index among the lanes holding the largest value, then the row's last
// classes % 4 outputs are compared in JavaScript as the scalar loop would (later indices win only when greater).
//
// Rows go through the kernel's memory in chunks (copied in). One instance per thread (module state), made on first
// use; where WebAssembly SIMD is unavailable the scalar loop runs.
import {
  BLOCK,
  br,
  brIf,
  c,
  END,
  ensureBytes,
  F32_MINUS_INF,
  f32x4gt,
  f32x4splat,
  f64x2add,
  f64x2const,
  f64x2mul,
  f64x2sub,
  get,
  HIGH_HALF,
  I32,
  I32_ADD,
  I32_EQZ,
  I32_GE_U,
  I32_LT_U,
  I32_MUL,
  I32_SHL,
  i32c,
  i32x4add,
  i32x4const,
  i32x4splat,
  LazyKernel,
  LOOP,
  moduleBytes,
  promoteLowF32toF64,
  set,
  shuffle,
  tee,
  V128,
  v128bitselect,
  v128loadAt,
  v128storeAt,
} from '../math/wasm-simd.js';

/** Outputs per chunk of each of y and ŷ copied through the kernel's memory (whole rows; at least one row). */
const CHUNK = 1 << 17;
/** Bytes the kernel writes per row: four float64x2 sums, then best and index lanes of y and of ŷ. */
const ROW_BYTES = 128;

// Parameters of fid(y, yh, rows, classes, body, dst): byte addresses; `body` = classes rounded down to a multiple
// of 4 (the outputs the kernel takes).
const P = { y: 0, yh: 1, rows: 2, classes: 3, body: 4, dst: 5 };
const L = { row: 6, py: 7, ph: 8, end: 9, a: 10, b: 11, x: 12, z: 13, d: 14, off: 28 };
// Accumulators (lo/hi halves), then the argmax lanes and the running index.
const A = { dotL: 15, dotH: 16, a2L: 17, a2H: 18, b2L: 19, b2H: 20, d2L: 21, d2H: 22 };
const M = { bestA: 23, idxA: 24, bestB: 25, idxB: 26, cur: 27 };

/** acc += product of locals p and q (float64 lanes). */
const mulAdd = (acc: number, p: number, q: number) => c(get(acc), get(p), get(q), f64x2mul, f64x2add, set(acc));

/** The four sums over the float64 lanes of x (y) and z (ŷ) into the accumulators of half `h`. */
const sums = (h: 'L' | 'H') =>
  c(
    mulAdd(h === 'L' ? A.dotL : A.dotH, L.x, L.z),
    mulAdd(h === 'L' ? A.a2L : A.a2H, L.x, L.x),
    mulAdd(h === 'L' ? A.b2L : A.b2H, L.z, L.z),
    c(get(L.x), get(L.z), f64x2sub, set(L.d)),
    mulAdd(h === 'L' ? A.d2L : A.d2H, L.d, L.d),
  );

/** Promotes the low (or high) halves of a and b into x and z. */
const halves = (high: boolean) =>
  c(
    get(L.a),
    high ? c(get(L.a), shuffle(HIGH_HALF)) : [],
    promoteLowF32toF64,
    set(L.x),
    get(L.b),
    high ? c(get(L.b), shuffle(HIGH_HALF)) : [],
    promoteLowF32toF64,
    set(L.z),
  );

/** best, idx = v > best ? (v, cur) : (best, idx), lane by lane. */
const argmaxStep = (v: number, best: number, idx: number) =>
  c(
    c(get(v), get(best), f32x4gt, set(L.d)),
    c(get(v), get(best), get(L.d), v128bitselect, set(best)),
    c(get(M.cur), get(idx), get(L.d), v128bitselect, set(idx)),
  );

/** The row's start: py = y + row·classes·4, ph likewise, end = py + body·4. */
const rowStart = c(
  c(get(L.row), get(P.classes), I32_MUL, i32c(2), I32_SHL, tee(L.off), get(P.y), I32_ADD, set(L.py)),
  c(get(L.off), get(P.yh), I32_ADD, set(L.ph), get(L.py), get(P.body), i32c(2), I32_SHL, I32_ADD, set(L.end)),
);

const resetRow = c(
  c(f64x2const(0), tee(A.dotL), tee(A.dotH), tee(A.a2L), tee(A.a2H), tee(A.b2L), tee(A.b2H), tee(A.d2L), set(A.d2H)),
  c(F32_MINUS_INF, f32x4splat, tee(M.bestA), set(M.bestB), i32c(-1), i32x4splat, tee(M.idxA), set(M.idxB)),
  c(i32x4const([0, 1, 2, 3]), set(M.cur)),
);

const sweep = c(
  c(BLOCK, get(P.body), I32_EQZ, brIf(0), LOOP),
  c(get(L.py), v128loadAt(0), set(L.a), get(L.ph), v128loadAt(0), set(L.b)),
  c(halves(false), sums('L'), halves(true), sums('H')),
  c(argmaxStep(L.a, M.bestA, M.idxA), argmaxStep(L.b, M.bestB, M.idxB)),
  c(get(M.cur), i32c(4), i32x4splat, i32x4add, set(M.cur)),
  c(get(L.ph), i32c(16), I32_ADD, set(L.ph)),
  c(get(L.py), i32c(16), I32_ADD, tee(L.py), get(L.end), I32_LT_U, brIf(0), END, END),
);

/** dst + row·ROW_BYTES + 16·k ← the v128 on top of the fragment `value`. */
const store = (k: number, value: number[]) =>
  c(get(P.dst), get(L.row), i32c(7), I32_SHL, I32_ADD, value, v128storeAt(16 * k));

const writeRow = c(
  store(0, c(get(A.dotL), get(A.dotH), f64x2add)),
  store(1, c(get(A.a2L), get(A.a2H), f64x2add)),
  store(2, c(get(A.b2L), get(A.b2H), f64x2add)),
  store(3, c(get(A.d2L), get(A.d2H), f64x2add)),
  store(4, get(M.bestA)),
  store(5, get(M.idxA)),
  store(6, get(M.bestB)),
  store(7, get(M.idxB)),
);

function kernelBytes(): Uint8Array {
  const body = c(
    c(i32c(0), set(L.row), BLOCK, LOOP, get(L.row), get(P.rows), I32_GE_U, brIf(1)),
    rowStart,
    resetRow,
    sweep,
    writeRow,
    c(get(L.row), i32c(1), I32_ADD, set(L.row), br(0), END, END, END),
  );
  return moduleBytes(
    'fid',
    [I32, I32, I32, I32, I32, I32],
    [],
    [
      [4, I32],
      [18, V128],
      [1, I32],
    ],
    body,
  );
}

type Fid = (y: number, yh: number, rows: number, classes: number, body: number, dst: number) => void;

const kernel = new LazyKernel<Fid>(kernelBytes, 'fid');

/** Turns the kernel off (the scalar loop runs) or back on, for this thread: tests compare the two. */
export function useFidelitySimd(on: boolean): void {
  kernel.use(on);
}

/** Whether the kernel runs on this thread (WebAssembly SIMD available and not turned off). */
export function fidelitySimdActive(): boolean {
  return kernel.get() !== null;
}

/** Per-row results of fidelityRows, filled for rows [0, rows). */
export interface FidelityRows {
  /** Σ y·ŷ, Σ y², Σ ŷ², Σ (y − ŷ)² per row (4 per row). */
  sums: Float64Array;
  /** argmax of y and of ŷ per row (2 per row; first on ties, NaN never wins, 0 when nothing wins). */
  argmax: Int32Array;
}

/**
 * The sums and argmaxes of each row of `classes` outputs of y and ŷ (same length, a whole number of rows) through
 * the kernel; false (nothing written) where the kernel does not run or classes < 4.
 */
export function fidelityRows(y: Float32Array, yHat: Float32Array, classes: number, into: FidelityRows): boolean {
  const k = classes >= 4 ? kernel.get() : null;
  if (!k) return false;
  const rows = y.length / classes;
  const body = classes & ~3;
  const per = Math.max(1, Math.floor(CHUNK / classes));
  const offYh = 4 * per * classes;
  const offDst = 2 * offYh;
  const buf = ensureBytes(k, offDst + ROW_BYTES * per);
  const sy = new Float32Array(buf, 0, per * classes);
  const sh = new Float32Array(buf, offYh, per * classes);
  const f64 = new Float64Array(buf, offDst, (ROW_BYTES / 8) * per);
  const f32 = new Float32Array(buf, offDst, (ROW_BYTES / 4) * per);
  const i32 = new Int32Array(buf, offDst, (ROW_BYTES / 4) * per);
  const { sums, argmax } = into;
  for (let r0 = 0; r0 < rows; r0 += per) {
    const cnt = Math.min(per, rows - r0);
    sy.set(y.subarray(r0 * classes, (r0 + cnt) * classes));
    sh.set(yHat.subarray(r0 * classes, (r0 + cnt) * classes));
    k.fn(0, offYh, cnt, classes, body, offDst);
    for (let j = 0; j < cnt; j++) {
      const r = r0 + j;
      const o = (ROW_BYTES / 8) * j;
      let dot = f64[o] + f64[o + 1];
      let a2 = f64[o + 2] + f64[o + 3];
      let b2 = f64[o + 4] + f64[o + 5];
      let d2 = f64[o + 6] + f64[o + 7];
      const q = (ROW_BYTES / 4) * j;
      let bestA = laneArgmax(f32, i32, q + 16);
      let bestB = laneArgmax(f32, i32, q + 24);
      let bvA = bestA < 0 ? -Infinity : y[r * classes + bestA];
      let bvB = bestB < 0 ? -Infinity : yHat[r * classes + bestB];
      for (let i = body; i < classes; i++) {
        const a = y[r * classes + i];
        const b = yHat[r * classes + i];
        dot += a * b;
        a2 += a * a;
        b2 += b * b;
        d2 += (a - b) * (a - b);
        if (a > bvA) {
          bvA = a;
          bestA = i;
        }
        if (b > bvB) {
          bvB = b;
          bestB = i;
        }
      }
      sums[4 * r] = dot;
      sums[4 * r + 1] = a2;
      sums[4 * r + 2] = b2;
      sums[4 * r + 3] = d2;
      argmax[2 * r] = bestA < 0 ? 0 : bestA;
      argmax[2 * r + 1] = bestB < 0 ? 0 : bestB;
    }
  }
  return true;
}

/** The smallest index among the lanes holding the largest value (values at f32[q..q+4), indices 4 further); −1: none. */
function laneArgmax(f32: Float32Array, i32: Int32Array, q: number): number {
  let best = -1;
  let bv = -Infinity;
  for (let l = 0; l < 4; l++) {
    const idx = i32[q + 4 + l];
    if (idx < 0) continue;
    const v = f32[q + l];
    if (best < 0 || v > bv || (v === bv && idx < best)) {
      bv = v;
      best = idx;
    }
  }
  return best;
}
