// Dense float64 linear algebra on row-major n×n matrices. float64 throughout: these factor Hessians whose condition
// numbers reach 1e6–1e8 after dampening, where fp32 Cholesky fails or loses every digit of the small pivots.
// Large sizes are blocked recursively so that ~all flops land in ORT's double Gemm (MLAS dgemm, tens of GFLOP/s)
// instead of a JS loop (~1 GFLOP/s): at n = 4096 an unblocked Cholesky would be 23 GFLOP of JS, tens of seconds.
import {
  matmulF64,
  matmulInto,
  matmulIntoF64,
  matmulSubtractInPlace,
  matmulSubtractInPlaceF64,
  type MatmulOptions,
} from './gemm.js';
import { transposeInto } from './transpose.js';

export class NotPositiveDefiniteError extends Error {
  override name = 'NotPositiveDefiniteError';
  constructor(
    readonly pivot: number,
    readonly value: number,
  ) {
    super(`matrix is not positive definite: pivot ${pivot} is ${value} (add dampening, or check for dead inputs)`);
  }
}

export class LinalgShapeError extends Error {
  override name = 'LinalgShapeError';
}

/** Sub-problems at or below this size run the JS loops; above it the recursion splits and calls GEMM. */
const BASE = 96;

function checkSquare(a: Float64Array, n: number, what: string) {
  if (!Number.isSafeInteger(n) || n < 0) throw new LinalgShapeError(`${what}: n = ${n} is not a size`);
  if (a.length !== n * n) throw new LinalgShapeError(`${what}: expected ${n}×${n} = ${n * n} values, got ${a.length}`);
}

/** The recursive factorisation runs in the precision of its input array: float64, or fp32 where a caller opts in. */
type Vec = Float32Array | Float64Array;

function alloc<T extends Vec>(like: T, n: number): T {
  return (like instanceof Float32Array ? new Float32Array(n) : new Float64Array(n)) as T;
}

/**
 * Scratch arrays recycled inside the recursive factorisation. Every level used to take fresh blocks, products and
 * assembled factors; first touches of fresh memory (page faults, ~3 ns/byte here) cost about as much as the GEMM
 * flops at n ≈ 3000. Arrays go back with `give` once dead and come out again by exact length; only whole-buffer
 * arrays are kept (never views). Each factorisation uses a fresh one unless its caller passes one to keep between
 * calls (SparseGPT, layer after layer: the next factorisation of the same size then pages in nothing); such a
 * caller runs its factorisations one at a time and drops the object (or calls `clear`) when done.
 */
export class FactorScratch {
  private readonly free = new Map<string, Vec[]>();

  /** An array of length n in `like`'s precision: recycled where one is free, zeroed unless `dirty` is allowed. */
  take<T extends Vec>(like: T, n: number, dirty = false): T {
    const x = this.free.get(poolKey(like instanceof Float32Array, n))?.pop();
    if (!x) return alloc(like, n);
    if (!dirty) x.fill(0);
    return x as T;
  }

  /** Hands arrays back for reuse (views and small arrays are ignored); the caller no longer reads or writes them. */
  give(...xs: (Vec | null | undefined)[]): void {
    for (const x of xs) {
      if (!x || x.length < POOL_MIN || x.byteOffset !== 0 || x.buffer.byteLength !== x.byteLength) continue;
      const key = poolKey(x instanceof Float32Array, x.length);
      const list = this.free.get(key);
      if (!list) this.free.set(key, [x]);
      else if (!list.includes(x)) list.push(x);
    }
  }

  /** Bytes of the arrays held for reuse. */
  get bytes(): number {
    let b = 0;
    for (const list of this.free.values()) for (const x of list) b += x.byteLength;
    return b;
  }

  clear(): void {
    this.free.clear();
  }
}

const POOL_MIN = 1024;

function poolKey(f32: boolean, n: number): string {
  return (f32 ? 's' : 'd') + n;
}

/** op(A)·op(B) into a recycled output array. */
function mul<T extends Vec>(
  ps: FactorScratch,
  a: T,
  b: T,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions = {},
): Promise<T> {
  const out = ps.take(a, m * n, true);
  return (
    a instanceof Float32Array
      ? matmulInto(out as Float32Array, a, b as Float32Array, m, k, n, opts)
      : matmulIntoF64(out as Float64Array, a as Float64Array, b as Float64Array, m, k, n, opts)
  ) as Promise<T>;
}

function subIn<T extends Vec>(c: T, a: T, b: T, m: number, k: number, n: number, opts: MatmulOptions = {}) {
  return c instanceof Float32Array
    ? matmulSubtractInPlace(c, a as Float32Array, b as Float32Array, m, k, n, opts)
    : matmulSubtractInPlaceF64(c as Float64Array, a as Float64Array, b as Float64Array, m, k, n, opts);
}

/** Copy rows r0..r1, cols c0..c1 of a row-major matrix with `ld` columns into a new contiguous array. */
export function getBlock<T extends Vec>(a: T, ld: number, r0: number, r1: number, c0: number, c1: number): T {
  return copyBlockInto(alloc(a, (r1 - r0) * (c1 - c0)), a, ld, r0, r1, c0, c1);
}

/** getBlock into a recycled array (internal). */
function block<T extends Vec>(ps: FactorScratch, a: T, ld: number, r0: number, r1: number, c0: number, c1: number): T {
  return copyBlockInto(ps.take(a, (r1 - r0) * (c1 - c0), true), a, ld, r0, r1, c0, c1);
}

function copyBlockInto<T extends Vec>(out: T, a: T, ld: number, r0: number, r1: number, c0: number, c1: number): T {
  const w = c1 - c0;
  if (w === ld) out.set(a.subarray(r0 * ld, r1 * ld));
  else if (w >= 32) for (let r = r0; r < r1; r++) out.set(a.subarray(r * ld + c0, r * ld + c1), (r - r0) * w);
  else
    for (let r = r0, o = 0; r < r1; r++) {
      const base = r * ld;
      for (let c = c0; c < c1; c++, o++) out[o] = a[base + c];
    }
  return out;
}

/** Write a contiguous block into rows r0.., cols c0.. of a row-major matrix with `ld` columns. */
export function setBlock<T extends Vec>(a: T, ld: number, r0: number, c0: number, block: T, w: number) {
  const h = w === 0 ? 0 : block.length / w;
  if (w === ld && c0 === 0) a.set(block, r0 * ld);
  else if (w >= 32) for (let r = 0; r < h; r++) a.set(block.subarray(r * w, (r + 1) * w), (r0 + r) * ld + c0);
  else
    for (let r = 0, o = 0; r < h; r++) {
      const base = (r0 + r) * ld + c0;
      for (let c = 0; c < w; c++, o++) a[base + c] = block[o];
    }
}

/** Unblocked lower Cholesky and the inverse of the factor, both in place of fresh arrays. */
function cholInvSmall<T extends Vec>(ps: FactorScratch, a: T, n: number, pivotOffset: number): { l: T; li: T } {
  // Arithmetic in JS doubles; results stored in the working precision (a's array type).
  const l = ps.take(a, n * n);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j];
    for (let p = 0; p < j; p++) d -= l[rj + p] * l[rj + p];
    if (!(d > 0)) throw new NotPositiveDefiniteError(pivotOffset + j, d);
    const ljj = Math.sqrt(d);
    l[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j];
      for (let p = 0; p < j; p++) s -= l[ri + p] * l[rj + p];
      l[ri + j] = s / ljj;
    }
  }
  // L⁻¹ by forward substitution, column by column of the identity: li[i][j] for i ≥ j.
  const li = ps.take(a, n * n);
  for (let j = 0; j < n; j++) {
    li[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = 0;
      for (let p = j; p < i; p++) s -= l[ri + p] * li[p * n + j];
      li[ri + j] = s / l[ri + i];
    }
  }
  return { l, li };
}

/** Triangular operands at or below this size multiply as full GEMMs (wasting their zero half, cheaply). */
const TRI_BASE = 256;

function negate<T extends Vec>(a: T): T {
  for (let i = 0; i < a.length; i++) a[i] = -a[i];
  return a;
}

/** Split point for recursive halving, a multiple of 32 where possible (keeps GEMM dims friendly). */
function half(n: number): number {
  return Math.min(n - 1, Math.max(1, Math.ceil(n / 2 / 32) * 32));
}

/** X·Tᵀ (or X·T with `transT` false) for X p×h and lower-triangular T h×h; skips T's zero half recursively. */
async function mulRightLower<T extends Vec>(
  ps: FactorScratch,
  x: T,
  p: number,
  t: T,
  h: number,
  transT: boolean,
): Promise<T> {
  if (h <= TRI_BASE || p === 0) return mul(ps, x, t, p, h, h, { transB: transT });
  const h1 = half(h);
  const h2 = h - h1;
  const x1 = block(ps, x, h, 0, p, 0, h1);
  const x2 = block(ps, x, h, 0, p, h1, h);
  const t11 = block(ps, t, h, 0, h1, 0, h1);
  const t21 = negate(block(ps, t, h, h1, h, 0, h1));
  const t22 = block(ps, t, h, h1, h, h1, h);
  const y = ps.take(x, p * h, true);
  if (transT) {
    // [X1 X2]·[[T11ᵀ T21ᵀ] [0 T22ᵀ]] = [X1·T11ᵀ | X1·T21ᵀ + X2·T22ᵀ]
    const y1 = await mulRightLower(ps, x1, p, t11, h1, true);
    const y2 = await mulRightLower(ps, x2, p, t22, h2, true);
    await subIn(y2, x1, t21, p, h1, h2, { transB: true });
    setBlock(y, h, 0, 0, y1, h1);
    setBlock(y, h, 0, h1, y2, h2);
    ps.give(y1, y2);
  } else {
    // [X1 X2]·[[T11 0] [T21 T22]] = [X1·T11 + X2·T21 | X2·T22]
    const y1 = await mulRightLower(ps, x1, p, t11, h1, false);
    await subIn(y1, x2, t21, p, h2, h1);
    const y2 = await mulRightLower(ps, x2, p, t22, h2, false);
    setBlock(y, h, 0, 0, y1, h1);
    setBlock(y, h, 0, h1, y2, h2);
    ps.give(y1, y2);
  }
  ps.give(x1, x2, t11, t21, t22);
  return y;
}

/** T·Y for lower-triangular T r×r and Y r×q (row blocks of Y are contiguous, so no copies of Y). */
async function mulLeftLower<T extends Vec>(ps: FactorScratch, t: T, r: number, y: T, q: number): Promise<T> {
  if (r <= TRI_BASE || q === 0) return mul(ps, t, y, r, r, q);
  const r1 = half(r);
  const r2 = r - r1;
  const y1 = y.subarray(0, r1 * q) as T;
  const y2 = y.subarray(r1 * q) as T;
  // [[T11 0] [T21 T22]]·[Y1; Y2] = [T11·Y1; T21·Y1 + T22·Y2]
  const t11 = block(ps, t, r, 0, r1, 0, r1);
  const t22 = block(ps, t, r, r1, r, r1, r);
  const t21 = negate(block(ps, t, r, r1, r, 0, r1));
  const z1 = await mulLeftLower(ps, t11, r1, y1, q);
  const z2 = await mulLeftLower(ps, t22, r2, y2, q);
  await subIn(z2, t21, y1, r2, r1, q);
  const z = ps.take(t, r * q, true);
  z.set(z1, 0);
  z.set(z2, r1 * q);
  ps.give(t11, t22, t21, z1, z2);
  return z;
}

/** Lower triangle (with diagonal) of C r×r −= A·Aᵀ for A r×h; C's strict upper triangle is left stale. */
async function syrkLowerSubtract<T extends Vec>(ps: FactorScratch, c: T, r: number, a: T, h: number): Promise<void> {
  if (r <= TRI_BASE) return subIn(c, a, a, r, h, r, { transB: true });
  const r1 = half(r);
  const a1 = a.subarray(0, r1 * h) as T;
  const a2 = a.subarray(r1 * h) as T;
  const c11 = block(ps, c, r, 0, r1, 0, r1);
  await syrkLowerSubtract(ps, c11, r1, a1, h);
  setBlock(c, r, 0, 0, c11, r1);
  const c21 = block(ps, c, r, r1, r, 0, r1);
  await subIn(c21, a2, a1, r - r1, h, r1, { transB: true });
  setBlock(c, r, r1, 0, c21, r1);
  const c22 = block(ps, c, r, r1, r, r1, r);
  await syrkLowerSubtract(ps, c22, r - r1, a2, h);
  setBlock(c, r, r1, r1, c22, r - r1);
  ps.give(c11, c21, c22);
}

/**
 * Recursive blocked Cholesky that also returns L⁻¹ (SparseGPT and the inverse both need it):
 * L11 = chol(A11); L21 = A21·L11⁻ᵀ; L22 = chol(A22 − L21·L21ᵀ); (L⁻¹)21 = −L22⁻¹·L21·L11⁻¹. Triangular factors
 * and the symmetric update skip their zero halves recursively, so the total is ~2n³/3 flops (the floor for a
 * Cholesky plus a triangular inverse), all but O(n·BASE²) of them in GEMM. Only A's lower triangle is read.
 */
async function cholInv<T extends Vec>(
  ps: FactorScratch,
  a: T,
  n: number,
  pivotOffset: number,
  wantL: boolean,
): Promise<{ l: T | null; li: T }> {
  if (n <= BASE) return cholInvSmall(ps, a, n, pivotOffset);
  const h = half(n);
  const r = n - h;
  const a11 = block(ps, a, n, 0, h, 0, h);
  const a21 = block(ps, a, n, h, n, 0, h);
  const a22 = block(ps, a, n, h, n, h, n);
  const top = await cholInv(ps, a11, h, pivotOffset, wantL);
  ps.give(a11);
  const l21 = await mulRightLower(ps, a21, r, top.li, h, true);
  ps.give(a21);
  await syrkLowerSubtract(ps, a22, r, l21, h);
  const bottom = await cholInv(ps, a22, r, pivotOffset + h, wantL);
  ps.give(a22);
  const t = await mulRightLower(ps, l21, r, top.li, h, false);
  const li21 = negate(await mulLeftLower(ps, bottom.li, r, t, h));
  ps.give(t);
  // The recursion itself only needs L⁻¹; L is assembled only when the caller asked for it.
  let l: T | null = null;
  if (wantL) {
    l = ps.take(a, n * n);
    setBlock(l, n, 0, 0, top.l!, h);
    setBlock(l, n, h, 0, l21, h);
    setBlock(l, n, h, h, bottom.l!, r);
  }
  const li = ps.take(a, n * n);
  setBlock(li, n, 0, 0, top.li, h);
  setBlock(li, n, h, 0, li21, h);
  setBlock(li, n, h, h, bottom.li, r);
  ps.give(top.l, top.li, bottom.l, bottom.li, l21, li21);
  return { l, li };
}

/** Lower-triangular L with A = L·Lᵀ and its inverse. Only the lower triangle of A is read. */
export async function choleskyWithInverse(a: Float64Array, n: number): Promise<{ l: Float64Array; li: Float64Array }> {
  checkSquare(a, n, 'cholesky');
  const { l, li } = await cholInv(new FactorScratch(), a, n, 0, true);
  return { l: l!, li };
}

/** L⁻¹ for A = L·Lᵀ, without assembling L. */
export async function inverseCholeskyLower(a: Float64Array, n: number): Promise<Float64Array> {
  checkSquare(a, n, 'inverseCholeskyLower');
  return (await cholInv(new FactorScratch(), a, n, 0, false)).li;
}

/** Lower L with A = L·Lᵀ. Throws NotPositiveDefiniteError on a non-positive pivot. */
export async function cholesky(a: Float64Array, n: number): Promise<Float64Array> {
  return (await choleskyWithInverse(a, n)).l;
}

/** Upper U with A = Uᵀ·U (the transpose of the lower factor). */
export async function choleskyUpper(a: Float64Array, n: number): Promise<Float64Array> {
  return transpose((await choleskyWithInverse(a, n)).l, n);
}

/** A⁻¹ for SPD A, as L⁻ᵀ·L⁻¹. */
export async function choleskyInverse(a: Float64Array, n: number): Promise<Float64Array> {
  const li = await inverseCholeskyLower(a, n);
  const inv = await matmulF64(li, li, n, n, n, { transA: true });
  symmetrize(inv, n);
  return inv;
}

/**
 * Upper U with A⁻¹ = Uᵀ·U — what SparseGPT uses (`chol(H⁻¹, upper)`) — without forming A⁻¹. With J the reversal
 * permutation and J·A·J = L'·L'ᵀ, A = (J L' J)(J L' J)ᵀ where J L' J is upper; so A⁻¹ = Uᵀ·U with
 * U = (J L' J)⁻¹ = J·L'⁻¹·J. One factorisation instead of SparseGPT's three (chol, cholesky_inverse, chol).
 */
export async function inverseCholeskyUpper(a: Float64Array, n: number): Promise<Float64Array> {
  checkSquare(a, n, 'inverseCholeskyUpper');
  return (await reversedCholInv(new FactorScratch(), a.slice().reverse(), n, false)).u;
}

/**
 * inverseCholeskyUpper with the recursive factorisation in fp32 (JS doubles inside the small diagonal blocks): the
 * precision SparseGPT's reference uses for this step (torch fp32 cholesky / cholesky_inverse), at about twice the
 * GEMM speed and half the memory traffic. Throws NotPositiveDefiniteError where fp32 loses definiteness; callers that
 * want robustness retry with the float64 version.
 */
export async function inverseCholeskyUpperF32(a: Float64Array, n: number): Promise<Float32Array> {
  checkSquare(a, n, 'inverseCholeskyUpperF32');
  return (await reversedCholInv(new FactorScratch(), Float32Array.from(a).reverse(), n, false)).u;
}

/**
 * U as inverseCholeskyUpperF32 (`f32`) or inverseCholeskyUpper (float64, then rounded), and V = U⁻¹ = J·L'·J: the
 * upper factor with A = V·Vᵀ, which the same factorisation produces (no extra flops). Both returned in fp32.
 */
export async function inverseCholeskyUpperWithFactor(
  a: Float64Array,
  n: number,
  f32: boolean,
): Promise<{ u: Float32Array; v: Float32Array }> {
  checkSquare(a, n, 'inverseCholeskyUpperWithFactor');
  const ps = new FactorScratch();
  const { u, v } = f32
    ? await reversedCholInv(ps, Float32Array.from(a).reverse(), n, true)
    : await reversedCholInv(ps, a.slice().reverse(), n, true);
  const f = (x: Vec) => (x instanceof Float32Array ? x : Float32Array.from(x));
  return { u: f(u), v: f(v!) };
}

/**
 * The fp32 factorisation of inverseCholeskyUpperF32 (`wantV` false) or inverseCholeskyUpperWithFactor (`wantV`)
 * from J·A·J as the caller built it in fp32 (rev[i·n + j] = A[n−1−i][n−1−j], i.e. Float32Array.from(A).reverse():
 * the same values, so the same U and V), with every array taken from and handed back to `ps`: `rev` is consumed, and
 * U and V come from it (give them back once dead, and the next call of this size allocates nothing).
 */
export async function inverseCholeskyUpperF32Reversed(
  rev: Float32Array,
  n: number,
  wantV: boolean,
  ps: FactorScratch,
): Promise<{ u: Float32Array; v: Float32Array | null }> {
  if (rev.length !== n * n) throw new LinalgShapeError(`inverseCholeskyUpperF32Reversed: expected ${n}×${n} values`);
  try {
    return await reversedCholInv(ps, rev, n, wantV);
  } finally {
    ps.give(rev);
  }
}

/** For rev = J·A·J: U = J·L'⁻¹·J and, with `wantV`, V = J·L'·J; pivots reported in A's order; fp32 checked finite. */
async function reversedCholInv<T extends Vec>(
  ps: FactorScratch,
  rev: T,
  n: number,
  wantV: boolean,
): Promise<{ u: T; v: T | null }> {
  let r: { l: T | null; li: T };
  try {
    r = await cholInv(ps, rev, n, 0, wantV);
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) throw new NotPositiveDefiniteError(n - 1 - e.pivot, e.value);
    throw e;
  }
  const li = r.li;
  if (li instanceof Float32Array)
    for (let i = 0; i < li.length; i++)
      if (!Number.isFinite(li[i])) {
        ps.give(r.l, li);
        throw new NotPositiveDefiniteError(-1, li[i]);
      }
  return { u: li.reverse() as T, v: r.l ? (r.l.reverse() as T) : null };
}

export function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  transposeInto(a, 0, n, n, n, t, 0, n);
  return t;
}

/** Replace A by (A + Aᵀ)/2 in place. */
export function symmetrize(a: Float64Array, n: number): void {
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (a[i * n + j] + a[j * n + i]);
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
}

/**
 * Solve op(T)·X = B for triangular T (n×n) and B (n×nrhs, row-major), in place in B. `lower` says which triangle of
 * T holds the factor; `transpose` solves with Tᵀ (so an upper solve with a lower factor). JS loops: O(n²·nrhs).
 */
export function triangularSolve(
  t: Float64Array,
  n: number,
  b: Float64Array,
  nrhs: number,
  opts: { lower: boolean; transpose?: boolean; unitDiagonal?: boolean },
): void {
  checkSquare(t, n, 'triangularSolve');
  if (b.length !== n * nrhs) throw new LinalgShapeError(`triangularSolve: B must be ${n}×${nrhs}`);
  // Effective matrix E = op(T); E[i][p] = transpose ? T[p][i] : T[i][p]. E is lower iff lower XOR transpose.
  const tr = !!opts.transpose;
  const effLower = opts.lower !== tr;
  const e = (i: number, p: number) => (tr ? t[p * n + i] : t[i * n + p]);
  const order = effLower ? [0, n, 1] : [n - 1, -1, -1];
  for (let i = order[0]; i !== order[1]; i += order[2]) {
    const d = opts.unitDiagonal ? 1 : e(i, i);
    if (d === 0) throw new NotPositiveDefiniteError(i, 0);
    const lo = effLower ? 0 : i + 1;
    const hi = effLower ? i : n;
    for (let p = lo; p < hi; p++) {
      const f = e(i, p);
      if (f === 0) continue;
      for (let c = 0; c < nrhs; c++) b[i * nrhs + c] -= f * b[p * nrhs + c];
    }
    if (d !== 1) for (let c = 0; c < nrhs; c++) b[i * nrhs + c] /= d;
  }
}

/**
 * Eigen-decomposition of a symmetric matrix: Householder tridiagonalisation then implicit QL with shifts (the
 * JAMA / EISPACK tred2 + tql2 pair). Values ascending; `vectors` holds the eigenvectors as COLUMNS (row-major n×n,
 * A = V·diag(λ)·Vᵀ). O(n³) in JS (~9n³ flops with vectors): fine to n ≈ 1000 (seconds); at n = 4096 prefer a
 * Cholesky factor where any square root of H will do (‖Lᵀ·E‖ = ‖H^{1/2}·E‖ for H = L·Lᵀ).
 */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const { values, vectors } = symmetricEigenRows(a, n);
  return { values, vectors: transpose(vectors, n) };
}

/**
 * symmetricEigen with the eigenvectors as ROWS (vectors[j·n + i] = component i of eigenvector j): what the
 * algorithm computes natively. tred2/tql2 below are JAMA's with every V index pair swapped (they run on Vᵀ, exact
 * same arithmetic), so that their inner loops walk rows: ~3× faster at n ≈ 400 than the column-strided original.
 * Their latency-bound loops then run several independent chains at once (tred2: two or four rows' dot products
 * together; tql2: each column down the whole sweep of rotations): 48 → 26 ms at n = 214, the same bits
 * (test/unit/math/eigen-reference.ts keeps the plain loops).
 */
export function symmetricEigenRows(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  checkSquare(a, n, 'symmetricEigen');
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) V[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 0) return { values: d, vectors: V };
  tred2(n, V, d, e);
  tql2(n, V, d, e);
  return { values: d, vectors: V };
}

function tred2(n: number, V: Float64Array, d: Float64Array, e: Float64Array) {
  for (let j = 0; j < n; j++) d[j] = V[j * n + (n - 1)];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[j * n + (i - 1)];
        V[j * n + i] = 0;
        V[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // Rows j and j+1 together: two independent dot-product chains (each add waits for the last one otherwise);
      // every e[k] and g still takes its terms in the same order as row by row.
      let j = 0;
      for (; j + 1 < i; j += 2) {
        const f0 = d[j];
        const f1 = d[j + 1];
        const r0 = j * n;
        const r1 = r0 + n;
        V[i * n + j] = f0;
        V[i * n + j + 1] = f1;
        let g0 = e[j] + V[r0 + j] * f0;
        const a = V[r0 + j + 1];
        g0 += a * d[j + 1];
        e[j + 1] += a * f0;
        let g1 = e[j + 1] + V[r1 + j + 1] * f1;
        for (let k = j + 2; k <= i - 1; k++) {
          const v0 = V[r0 + k];
          const v1 = V[r1 + k];
          const dk = d[k];
          g0 += v0 * dk;
          g1 += v1 * dk;
          e[k] = e[k] + v0 * f0 + v1 * f1;
        }
        e[j] = g0;
        e[j + 1] = g1;
      }
      for (; j < i; j++) {
        f = d[j];
        V[i * n + j] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[j * n + k] * d[k];
          e[k] += V[j * n + k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[j * n + k] -= f * e[k] + g * d[k];
        d[j] = V[j * n + (i - 1)];
        V[j * n + i] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[i * n + (n - 1)] = V[i * n + i];
    V[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[(i + 1) * n + k] / h;
      // Four rows' dot products at once (independent chains, row i+1 read once); no row's update feeds another's dot.
      const p = (i + 1) * n;
      let j = 0;
      for (; j + 4 <= i + 1; j += 4) {
        const r0 = j * n;
        const r1 = r0 + n;
        const r2 = r1 + n;
        const r3 = r2 + n;
        let g0 = 0;
        let g1 = 0;
        let g2 = 0;
        let g3 = 0;
        for (let k = 0; k <= i; k++) {
          const x = V[p + k];
          g0 += x * V[r0 + k];
          g1 += x * V[r1 + k];
          g2 += x * V[r2 + k];
          g3 += x * V[r3 + k];
        }
        for (let k = 0; k <= i; k++) {
          const dk = d[k];
          V[r0 + k] -= g0 * dk;
          V[r1 + k] -= g1 * dk;
          V[r2 + k] -= g2 * dk;
          V[r3 + k] -= g3 * dk;
        }
      }
      for (; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[p + k] * V[j * n + k];
        for (let k = 0; k <= i; k++) V[j * n + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) V[(i + 1) * n + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[j * n + (n - 1)];
    V[j * n + (n - 1)] = 0;
  }
  V[(n - 1) * n + (n - 1)] = 1;
  e[0] = 0;
}

/**
 * The QL sweep's rotations applied to the eigenvector rows: for i = m−1 down to l, rows (i+1, i) ←
 * (s·V_i + c·V_{i+1}, c·V_i − s·V_{i+1}) with (c, s) = (cs[2i], cs[2i+1]). Row i+1 is final once rotation i is done
 * and rotation i−1 reads the new row i, so each column runs down the chain with the new row i in a register: one load
 * and one store per element instead of two each, the same operations in the same order (the same bits as the
 * rotation-by-rotation loop). Two columns at a time for independent chains.
 */
function rotateRows(V: Float64Array, n: number, l: number, m: number, cs: Float64Array) {
  let k = 0;
  for (; k + 2 <= n; k += 2) {
    let h0 = V[m * n + k];
    let h1 = V[m * n + k + 1];
    for (let i = m - 1, at = i * n + k; i >= l; i--, at -= n) {
      const c = cs[2 * i];
      const s = cs[2 * i + 1];
      const v0 = V[at];
      const v1 = V[at + 1];
      V[at + n] = s * v0 + c * h0;
      V[at + n + 1] = s * v1 + c * h1;
      h0 = c * v0 - s * h0;
      h1 = c * v1 - s * h1;
    }
    V[l * n + k] = h0;
    V[l * n + k + 1] = h1;
  }
  for (; k < n; k++) {
    let h = V[m * n + k];
    for (let i = m - 1; i >= l; i--) {
      const c = cs[2 * i];
      const s = cs[2 * i + 1];
      const v = V[i * n + k];
      V[(i + 1) * n + k] = s * v + c * h;
      h = c * v - s * h;
    }
    V[l * n + k] = h;
  }
}

function tql2(n: number, V: Float64Array, d: Float64Array, e: Float64Array) {
  const cs = new Float64Array(2 * n);
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m === n) m = n - 1;
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60 * n) throw new Error('symmetricEigen: QL iteration did not converge');
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          cs[2 * i] = c;
          cs[2 * i + 1] = s;
        }
        rotateRows(V, n, l, m, cs);
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  // Sort ascending, permuting the eigenvector columns with the values.
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    let p = d[i];
    for (let j = i + 1; j < n; j++)
      if (d[j] < p) {
        k = j;
        p = d[j];
      }
    if (k !== i) {
      d[k] = d[i];
      d[i] = p;
      for (let j = 0; j < n; j++) {
        const t = V[i * n + j];
        V[i * n + j] = V[k * n + j];
        V[k * n + j] = t;
      }
    }
  }
}

/** f(A) = V·diag(f(λ))·Vᵀ for symmetric A; f also sees the largest |λ| to judge round-off. */
async function spectralFunction(
  a: Float64Array,
  n: number,
  f: (x: number, maxAbs: number) => number,
): Promise<Float64Array> {
  const { values, vectors } = symmetricEigen(a, n);
  let maxAbs = 0;
  for (let j = 0; j < n; j++) maxAbs = Math.max(maxAbs, Math.abs(values[j]));
  const scaled = new Float64Array(n * n); // V·diag(f(λ))
  for (let j = 0; j < n; j++) {
    const fj = f(values[j], maxAbs);
    for (let i = 0; i < n; i++) scaled[i * n + j] = vectors[i * n + j] * fj;
  }
  const out = await matmulF64(scaled, vectors, n, n, n, { transB: true });
  symmetrize(out, n);
  return out;
}

/** Eigenvalues within this many ulps (relative to the largest) of zero are round-off, not signal. */
const roundoff = (n: number, maxAbs: number) => 64 * Math.max(1, n) * 2 ** -52 * maxAbs;

/**
 * Principal square root of a symmetric positive semi-definite matrix. Negative eigenvalues beyond round-off are an
 * error (not PSD); round-off ones are clamped to 0.
 */
export function sqrtmSPD(a: Float64Array, n: number): Promise<Float64Array> {
  checkSquare(a, n, 'sqrtmSPD');
  return spectralFunction(a, n, (x, maxAbs) => {
    if (x < -roundoff(n, maxAbs)) throw new NotPositiveDefiniteError(-1, x);
    return Math.sqrt(Math.max(x, 0));
  });
}

/** A^{-1/2} for symmetric positive definite A; an eigenvalue ≤ round-off of zero throws NotPositiveDefiniteError. */
export function invSqrtmSPD(a: Float64Array, n: number): Promise<Float64Array> {
  checkSquare(a, n, 'invSqrtmSPD');
  return spectralFunction(a, n, (x, maxAbs) => {
    if (!(x > roundoff(n, maxAbs))) throw new NotPositiveDefiniteError(-1, x);
    return 1 / Math.sqrt(x);
  });
}
