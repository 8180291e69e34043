// Singular value decompositions for the low-rank adapters. Three routes, one result type (top-`rank` triplets,
// singular values descending, U m×r and V n×r row-major float64):
//  - svdJacobi: one-sided (Hestenes) Jacobi, float64 in JS. Accurate to working precision including the small
//    singular values; O(sweeps·m·n²) so only for small matrices — it is the reference the others are tested against.
//  - svdGram: exact top-r from the eigen-decomposition of the smaller Gram matrix (AᵀA or AAᵀ, float64 GEMM through
//    ORT, tred2+tql2 in JS). Squaring loses relative accuracy only in singular values below ~1e-8·σ₁, which a
//    rank-r approximation does not keep. O(m·n·min + min³): the default up to min(m,n) = EXACT_MAX.
//  - randomizedSvd: Halko–Martinsson–Tropp range finder — Y = A·Ω with l = r + oversample Gaussian columns, `power`
//    subspace iterations (orthonormalised each time), then the exact SVD of the small l×n matrix QᵀA. All the
//    m·n·l products are fp32 GEMMs in ORT (MLAS); orthonormalisation is CholeskyQR2 (Gram in fp32, its Cholesky and
//    inverse in float64, a tiny diagonal shift when Y is rank-deficient). Error against the exact SVD is measured in
//    test/unit/slim/svd.test.ts.
import { matmul, matmulF64, matmulInto, type MatmulOptions } from './gemm.js';
import { choleskyWithInverse, symmetricEigen, NotPositiveDefiniteError } from './linalg.js';

export interface Svd {
  m: number;
  n: number;
  rank: number;
  /** m×rank row-major. */
  u: Float64Array;
  /** rank, descending. */
  s: Float64Array;
  /** n×rank row-major. */
  v: Float64Array;
}

export class SvdError extends Error {
  override readonly name = 'SvdError';
}

/** Largest min(m, n) for which truncatedSvd uses the exact (Gram-eigen) route by default. */
export const EXACT_MAX = 512;

function checkArgs(a: { length: number }, m: number, n: number, rank: number) {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || n < 0)
    throw new SvdError(`svd: ${m}×${n} is not a matrix shape`);
  if (a.length !== m * n) throw new SvdError(`svd: expected ${m * n} values, got ${a.length}`);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank > Math.min(m, n))
    throw new SvdError(`svd: rank ${rank} must be in [0, ${Math.min(m, n)}]`);
}

/** Thin SVD by one-sided Jacobi (float64). Returns all min(m, n) triplets. */
export function svdJacobi(a: Float64Array | Float32Array, m: number, n: number, maxSweeps = 60): Svd {
  checkArgs(a, m, n, Math.min(m, n));
  const tall = m >= n;
  // Work on the columns of T = A (tall) or Aᵀ (wide): p columns of length q, stored column-contiguous.
  const q = tall ? m : n;
  const p = tall ? n : m;
  const cols = new Float64Array(p * q);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      if (tall) cols[j * q + i] = a[i * n + j];
      else cols[i * q + j] = a[i * n + j];
    }
  const vcols = new Float64Array(p * p);
  for (let j = 0; j < p; j++) vcols[j * p + j] = 1;
  const eps = 1e-15;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    for (let j = 0; j < p - 1; j++) {
      for (let k = j + 1; k < p; k++) {
        const oj = j * q;
        const ok = k * q;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < q; i++) {
          const x = cols[oj + i];
          const y = cols[ok + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < q; i++) {
          const x = cols[oj + i];
          const y = cols[ok + i];
          cols[oj + i] = c * x - s * y;
          cols[ok + i] = s * x + c * y;
        }
        const vj = j * p;
        const vk = k * p;
        for (let i = 0; i < p; i++) {
          const x = vcols[vj + i];
          const y = vcols[vk + i];
          vcols[vj + i] = c * x - s * y;
          vcols[vk + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const sig = new Float64Array(p);
  for (let j = 0; j < p; j++) {
    let ss = 0;
    for (let i = 0; i < q; i++) ss += cols[j * q + i] ** 2;
    sig[j] = Math.sqrt(ss);
  }
  const order = Array.from({ length: p }, (_, j) => j).sort((x, y) => sig[y] - sig[x]);
  // Left vectors of T are the normalised columns; right vectors are the accumulated rotations.
  const left = new Float64Array(q * p);
  const right = new Float64Array(p * p);
  const s = new Float64Array(p);
  order.forEach((j, r) => {
    s[r] = sig[j];
    const inv = sig[j] > 0 ? 1 / sig[j] : 0;
    for (let i = 0; i < q; i++) left[i * p + r] = cols[j * q + i] * inv;
    for (let i = 0; i < p; i++) right[i * p + r] = vcols[j * p + i];
  });
  return tall ? { m, n, rank: p, u: left, s, v: right } : { m, n, rank: p, u: right, s, v: left };
}

/** Keeps the first `rank` columns of an rows×cols row-major matrix. */
function firstColumns(x: Float64Array, rows: number, cols: number, rank: number): Float64Array {
  if (rank === cols) return x;
  const out = new Float64Array(rows * rank);
  for (let i = 0; i < rows; i++) for (let j = 0; j < rank; j++) out[i * rank + j] = x[i * cols + j];
  return out;
}

/**
 * Exact top-`rank` SVD via the eigen-decomposition of the smaller Gram matrix (float64 throughout). The other side's
 * vectors come from one GEMM: U = A·V·Σ⁻¹ (or V = Aᵀ·U·Σ⁻¹); columns with σ = 0 are left zero (they carry no weight
 * in U·Σ·Vᵀ).
 */
export async function svdGram(
  a: Float64Array,
  m: number,
  n: number,
  rank: number,
  /**
   * Precision of the two products (the eigen-decomposition is float64 either way). 'float32' runs them in MLAS
   * (~30× faster than ORT's Eigen-backed double Gemm here) for inputs that are fp32 products anyway (the
   * randomized route's small matrix); singular values below ~3e-4·σ₁ then lose accuracy. @defaultValue 'float64'
   */
  precision: 'float32' | 'float64' = 'float64',
): Promise<Svd> {
  checkArgs(a, m, n, rank);
  const f32 = precision === 'float32';
  const a32 = f32 ? Float32Array.from(a) : undefined;
  const mm = async (x: Float64Array, y: Float64Array, r: number, k: number, c: number, o: MatmulOptions) =>
    f32 ? Float64Array.from(await matmul(a32!, Float32Array.from(y), r, k, c, o)) : matmulF64(x, y, r, k, c, o);
  const tall = m >= n;
  const p = tall ? n : m;
  if (rank === 0 || p === 0)
    return { m, n, rank: 0, u: new Float64Array(0), s: new Float64Array(0), v: new Float64Array(0) };
  const g = tall ? await mm(a, a, n, m, n, { transA: true }) : await mm(a, a, m, n, m, { transB: true });
  const { values, vectors } = symmetricEigen(g, p);
  // Eigenvalues ascending: the top `rank` are the last columns, taken in reverse.
  const s = new Float64Array(rank);
  const side = new Float64Array(p * rank);
  for (let r = 0; r < rank; r++) {
    const j = p - 1 - r;
    s[r] = Math.sqrt(Math.max(values[j], 0));
    for (let i = 0; i < p; i++) side[i * rank + r] = vectors[i * p + j];
  }
  // Other side: tall → U = A·V / σ (m×rank); wide → V = Aᵀ·U / σ (n×rank).
  const other = tall ? await mm(a, side, m, n, rank, {}) : await mm(a, side, n, m, rank, { transA: true });
  const rows = tall ? m : n;
  const tol = s[0] * 1e-13 * Math.max(m, n);
  for (let r = 0; r < rank; r++) {
    const inv = s[r] > tol ? 1 / s[r] : 0;
    if (inv === 0) s[r] = s[r] > tol ? s[r] : 0;
    for (let i = 0; i < rows; i++) other[i * rank + r] *= inv;
  }
  return tall ? { m, n, rank, u: other, s, v: side } : { m, n, rank, u: side, s, v: other };
}

export interface RandomizedSvdOptions {
  /** Extra columns beyond the rank. @defaultValue 10 */
  oversample?: number;
  /** Subspace (power) iterations. @defaultValue 2 */
  power?: number;
  /** PRNG seed for Ω (results are deterministic). @defaultValue 1 */
  seed?: number;
}

/**
 * The last few test matrices drawn, most recent first: the layers of a model cycle through a few widths (an LLM block
 * is K = hidden for q/k/v/o/gate/up, K = mlp for down), and each width draws the same Ω every time (callers get a copy
 * they may scale). The newest is always kept; older ones while there are at most RECENT_GAUSSIANS and they hold at
 * most RECENT_GAUSSIAN_VALUES values together besides it (16 MB).
 */
const recentGaussians: { count: number; seed: number; values: Float32Array }[] = [];
const RECENT_GAUSSIANS = 4;
const RECENT_GAUSSIAN_VALUES = 1 << 22;

export function gaussian(count: number, seed: number): Float32Array {
  return recentGaussian(count, seed).slice();
}

/** gaussian(out.length, seed) copied into `out` (no fresh array). */
export function gaussianInto(out: Float32Array, seed: number): Float32Array {
  out.set(recentGaussian(out.length, seed));
  return out;
}

function recentGaussian(count: number, seed: number): Float32Array {
  const at = recentGaussians.findIndex((g) => g.count === count && g.seed === seed);
  const hit = at >= 0 ? recentGaussians.splice(at, 1)[0] : { count, seed, values: drawGaussian(count, seed) };
  recentGaussians.unshift(hit);
  let held = 0;
  let keep = 1;
  while (
    keep < Math.min(recentGaussians.length, RECENT_GAUSSIANS) &&
    (held += recentGaussians[keep].count) <= RECENT_GAUSSIAN_VALUES
  )
    keep++;
  recentGaussians.length = keep;
  return hit.values;
}

function drawGaussian(count: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    // xorshift32: fast, deterministic; quality is ample for a random test matrix.
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const t = 2 * Math.PI * next();
    out[i] = r * Math.cos(t);
    if (i + 1 < count) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/**
 * Orthonormal basis of the columns of Y (rows×l, fp32) by CholeskyQR2: Q = Y·R⁻¹ with RᵀR = YᵀY, twice. With
 * `spare` (rows×l) the passes write alternately into spare and y (y is then overwritten by an even pass) and the
 * result is one of the two, instead of a fresh array per pass; the same values either way.
 */
export async function orthonormalize(
  y: Float32Array,
  rows: number,
  l: number,
  passes = 2,
  spare?: Float32Array,
): Promise<Float32Array> {
  let q = y;
  for (let pass = 0; pass < passes; pass++) {
    const g32 = await matmul(q, q, l, rows, l, { transA: true });
    const g = Float64Array.from(g32);
    let trace = 0;
    for (let i = 0; i < l; i++) trace += g[i * l + i];
    let shift = 0;
    let li: Float64Array | undefined;
    for (let attempt = 0; attempt < 8 && !li; attempt++) {
      const gs = shift ? g.slice() : g;
      if (shift) for (let i = 0; i < l; i++) gs[i * l + i] += shift;
      try {
        li = (await choleskyWithInverse(gs, l)).li;
      } catch (e) {
        if (!(e instanceof NotPositiveDefiniteError)) throw e;
        // Rank-deficient Y (A has rank < l, or fp32 round-off): shift and let the second pass fix orthogonality.
        shift = shift ? shift * 100 : Math.max(trace, 1e-30) * 1e-6;
      }
    }
    if (!li) throw new SvdError('randomized SVD: could not orthonormalise the range (matrix of NaNs?)');
    // Y = Q·R with R = Lᵀ → Q = Y·L⁻ᵀ.
    const into = spare && (q === spare ? y : spare);
    q = into
      ? await matmulInto(into, q, Float32Array.from(li), rows, l, l, { transB: true })
      : await matmul(q, Float32Array.from(li), rows, l, l, { transB: true });
  }
  return q;
}

/** Top-`rank` SVD of A (m×n, fp32) by randomized range finding. */
export async function randomizedSvd(
  a: Float32Array,
  m: number,
  n: number,
  rank: number,
  opts: RandomizedSvdOptions = {},
): Promise<Svd> {
  checkArgs(a, m, n, rank);
  if (rank === 0) return { m, n, rank: 0, u: new Float64Array(0), s: new Float64Array(0), v: new Float64Array(0) };
  const l = Math.min(rank + (opts.oversample ?? 10), m, n);
  const power = opts.power ?? 2;
  const omega = gaussian(n * l, opts.seed ?? 1);
  // Between power steps one CholeskyQR pass is enough (the basis only has to stay well conditioned); the basis the
  // result is built on gets the second pass (CholeskyQR2: orthonormal to working precision).
  const passesAt = (last: boolean) => (last ? 2 : 1);
  let q = await orthonormalize(await matmul(a, omega, m, n, l), m, l, passesAt(power === 0)); // m×l
  for (let it = 0; it < power; it++) {
    const z = await orthonormalize(await matmul(a, q, n, m, l, { transA: true }), n, l, 1); // Aᵀ·Q: n×l
    q = await orthonormalize(await matmul(a, z, m, n, l), m, l, passesAt(it === power - 1));
  }
  // B = Qᵀ·A (l×n); its exact SVD B = Ũ·Σ·Vᵀ gives A ≈ (Q·Ũ)·Σ·Vᵀ.
  const b = await matmul(q, a, l, m, n, { transA: true });
  const small = await svdGram(Float64Array.from(b), l, n, rank, 'float32');
  const u = await matmul(q, Float32Array.from(small.u), m, l, rank);
  return { m, n, rank, u: Float64Array.from(u), s: small.s, v: small.v };
}

export interface TruncatedSvdOptions extends RandomizedSvdOptions {
  /** 'auto': exact (Gram) up to min(m,n) ≤ EXACT_MAX, randomized above. @defaultValue 'auto' */
  method?: 'auto' | 'exact' | 'randomized' | 'jacobi';
}

/** Top-`rank` SVD choosing the route by size; returns which route ran. */
export async function truncatedSvd(
  a: Float32Array,
  m: number,
  n: number,
  rank: number,
  opts: TruncatedSvdOptions = {},
): Promise<Svd & { method: 'exact' | 'randomized' | 'jacobi' }> {
  const method = opts.method ?? 'auto';
  if (method === 'jacobi') {
    const full = svdJacobi(a, m, n);
    return {
      m,
      n,
      rank,
      u: firstColumns(full.u, m, full.rank, rank),
      s: full.s.slice(0, rank),
      v: firstColumns(full.v, n, full.rank, rank),
      method,
    };
  }
  if (method === 'exact' || (method === 'auto' && Math.min(m, n) <= EXACT_MAX)) {
    return { ...(await svdGram(Float64Array.from(a), m, n, rank)), method: 'exact' };
  }
  return { ...(await randomizedSvd(a, m, n, rank, opts)), method: 'randomized' };
}
