// Low-rank compensation (SLiM-LoRA and variants). Canonical error E = W − W_C [N][K] (row = output); the adapter
// runs as Y += (X·A)·B with A [K][r], B [r][N], i.e. it adds (A·B)ᵀ to the canonical weight. With a saliency
// factor C (K×K), the best rank-r adapter under ‖(E − (AB)ᵀ)·C‖_F comes from the SVD of S = E·C = U·Σ·Vᵀ:
// A = C⁻ᵀ·V_r·Σ_r, B = U_rᵀ (Eckart–Young in the weighted norm). Saliencies:
//  - 'none'     C = I (naive LoRA: best in plain Frobenius norm).
//  - 'slim'     C = diag(x), x_k = sqrt(s_k + min_{s>0} s) with s_k = mean X[:,k]² (the SLiM paper; the shift
//               makes every x_k > 0 so C is invertible — dead inputs get the smallest live weight).
//  - 'whitened' C = L with H = L·Lᵀ (Cholesky of the damped Hessian): ‖X·M‖² = tr(MᵀHM)·n/2, so this minimises
//               the layer-output error itself. Any square root of H gives the same optimum; Cholesky is the cheap
//               one (GEMM-blocked, and its inverse comes with it).
// Big layers (the randomized route) never form C, S or C⁻¹: the truncated SVD only needs the top-r LEFT singular
// subspace U_r of S, and the optimum is then (AB)ᵀ = U_r·U_rᵀ·E (U_r U_rᵀ S = U_r Σ_r V_rᵀ, times C⁻¹), i.e.
// B = U_rᵀ, A = Eᵀ·U_r (= C⁻ᵀ V_r Σ_r, the same factors). U_r is range-found on S·Sᵀ = E·M·Eᵀ with the metric
// M = C·Cᵀ: diag(x²) for 'slim', the damped H itself for 'whitened' — no Cholesky, no K×K·K product, no inverse.
import { matmul, matmulInto } from './gemm.js';
import { subtractByRows } from './row-chunks.js';
import { transposeInto } from './transpose.js';
import { choleskyWithInverse, symmetricEigenRows } from './linalg.js';
import { EXACT_MAX, gaussianInto, orthonormalize, truncatedSvd, type TruncatedSvdOptions } from './svd.js';

export type Saliency = 'slim' | 'whitened' | 'none';

export class LowRankError extends Error {
  override readonly name = 'LowRankError';
}

export interface Adapter {
  rank: number;
  K: number;
  N: number;
  /** [K][r] */
  a: Float32Array;
  /** [r][N] */
  b: Float32Array;
  /** Which SVD route ran ('exact' | 'randomized' | 'jacobi'). */
  svd: string;
  /** The r singular values of the saliency-weighted error kept by the adapter. */
  singularValues: Float64Array;
}

export interface LowRankOptions {
  saliency: Saliency;
  rank: number;
  /** Per-input RMS x_k (length K); required for 'slim'. */
  xNorm?: Float64Array;
  /** H (K×K float64); required for 'whitened'. */
  hessian?: Float64Array;
  /** λ in H + λ·mean(diag H)·I before the Cholesky (whitened). @defaultValue 0.01 */
  dampening?: number;
  /** A whitening factor computed earlier by whiteningFactor (callers that fit several adapters reuse it). */
  whitening?: { l: Float64Array; li: Float64Array };
  /** The damped Hessian in fp32 from whiteningMetric (the randomized route's 'whitened' metric; reused likewise). */
  whiteningMetric?: Float32Array;
  svd?: TruncatedSvdOptions;
  /**
   * Named working buffers for the randomized route (its four N×l / K×l products), grown and reused across calls by a
   * caller that fits many adapters: each call otherwise takes four fresh ones (they were ~14 before, one per GEMM and
   * per orthonormalisation pass, each paged in afresh). The returned factors never live in them.
   */
  scratch?: LowRankScratch;
}

/** Where the randomized route takes its working buffers (contents overwritten; at least `size` values). */
export interface LowRankScratch {
  f32(name: string, size: number): Float32Array;
}

/** Fresh buffers: a call without a scratch of its own. */
const freshScratch: LowRankScratch = { f32: (_name, size) => new Float32Array(size) };

/** r = ⌊ρ·min(K, N)⌋. */
export function rankFor(rankRatio: number, rows: number, cols: number): number {
  if (!(rankRatio > 0 && rankRatio <= 1)) throw new LowRankError(`rankRatio must be in (0, 1] (got ${rankRatio})`);
  return Math.floor(rankRatio * Math.min(rows, cols));
}

/** SLiM's saliency vector: x_k = sqrt(s_k + min_{s>0}(s)), s_k = xNorm_k². All ones when no input is live. */
export function slimSaliency(xNorm: Float64Array): Float64Array {
  let minPos = Infinity;
  for (let k = 0; k < xNorm.length; k++) {
    const s = xNorm[k] * xNorm[k];
    if (!(s >= 0 && s < Infinity)) throw new LowRankError(`input norm ${k} is ${xNorm[k]}: must be finite`);
    if (s > 0 && s < minPos) minPos = s;
  }
  const x = new Float64Array(xNorm.length);
  if (minPos === Infinity) return x.fill(1);
  for (let k = 0; k < xNorm.length; k++) x[k] = Math.sqrt(xNorm[k] * xNorm[k] + minPos);
  return x;
}

/** H + λ·mean(diag H)·I (identity when H is all zero), and the Cholesky factor with its inverse. */
export async function whiteningFactor(
  hessian: Float64Array,
  K: number,
  dampening = 0.01,
): Promise<{ l: Float64Array; li: Float64Array }> {
  if (hessian.length !== K * K) throw new LowRankError(`Hessian must be ${K}×${K}, got ${hessian.length} values`);
  const h = hessian.slice();
  let mean = 0;
  for (let i = 0; i < K; i++) mean += h[i * K + i];
  mean /= Math.max(K, 1);
  if (!(mean > 0)) {
    for (let i = 0; i < K; i++) h[i * K + i] = 1;
  } else {
    const lambda = Math.max(dampening, 1e-6) * mean;
    for (let i = 0; i < K; i++) {
      // Dead inputs (H_kk = 0): the damping alone keeps the factor positive definite.
      h[i * K + i] += lambda;
    }
  }
  return choleskyWithInverse(h, K);
}

/** The damped Hessian H + λ·mean(diag H)·I (identity when H is all zero) in fp32: the whitened metric C·Cᵀ. */
export function whiteningMetric(hessian: Float64Array, K: number, dampening = 0.01): Float32Array {
  if (hessian.length !== K * K) throw new LowRankError(`Hessian must be ${K}×${K}, got ${hessian.length} values`);
  // fp32 is enough: M only ever enters fp32 GEMMs whose results feed a range finder and an l×l Gram matrix.
  const m = Float32Array.from(hessian);
  let mean = 0;
  for (let i = 0; i < K; i++) mean += hessian[i * K + i];
  mean /= Math.max(K, 1);
  if (!(mean > 0)) for (let i = 0; i < K; i++) m[i * K + i] = 1;
  else {
    const lambda = Math.max(dampening, 1e-6) * mean;
    for (let i = 0; i < K; i++) m[i * K + i] = hessian[i * K + i] + lambda;
  }
  return m;
}

/** Whether lowRankAdapter takes the randomized (metric) route for this shape and these options. */
export function usesRandomizedRoute(N: number, K: number, o: TruncatedSvdOptions | undefined): boolean {
  const method = o?.method ?? 'auto';
  return method === 'randomized' || (method === 'auto' && Math.min(N, K) > EXACT_MAX);
}

/**
 * Randomized route (see the header): U_r of S = E·C from the metric M = C·Cᵀ only. Range finder Y = E·(C·Ω) with
 * `power` subspace steps Y ← E·M·(EᵀQ) (orthonormalised in between: that only changes the basis, not the span),
 * then Rayleigh–Ritz on G = Qᵀ·E·M·Eᵀ·Q = (QᵀE)·M·(QᵀE)ᵀ (l×l, its eigenvalues are the σ²). For 'whitened' the
 * start uses M·Ω in place of C·Ω (any full-rank test matrix finds the range; this one leans to the top of S).
 */
async function metricAdapter(
  e: Float32Array,
  N: number,
  K: number,
  r: number,
  scaleRows: Float64Array | null,
  metric: Float32Array | null,
  o: TruncatedSvdOptions,
  scratch: LowRankScratch,
): Promise<Adapter> {
  const l = Math.min(r + (o.oversample ?? 10), N, K);
  const power = o.power ?? 2;
  // Two N×l and two K×l buffers carry every product in turn (each GEMM writes where nothing live is): the range
  // Y/Q ping-pongs between y1 and y2, Ω, EᵀQ and M·Z between z1 and z2, then QᵀE and (QᵀE)·M take z1 and z2.
  const y1 = scratch.f32('lowrank y1', N * l);
  const y2 = scratch.f32('lowrank y2', N * l);
  const z1 = scratch.f32('lowrank z1', K * l);
  const z2 = scratch.f32('lowrank z2', K * l);
  const other = (x: Float32Array, a: Float32Array, b: Float32Array) => (x === a ? b : a);
  // M·Z for Z [K][l] (in place for the diagonal metrics, else into the other K×l buffer).
  const applyMetric = async (z: Float32Array): Promise<Float32Array> => {
    if (metric) return matmulInto(other(z, z1, z2), metric, z, K, K, l);
    if (scaleRows) for (let k = 0; k < K; k++) for (let j = 0, s = scaleRows[k] ** 2; j < l; j++) z[k * l + j] *= s;
    return z;
  };
  const omega = gaussianInto(z2, o.seed ?? 1);
  let start: Float32Array = omega;
  if (metric) start = await applyMetric(omega);
  else if (scaleRows) for (let k = 0; k < K; k++) for (let j = 0, s = scaleRows[k]; j < l; j++) omega[k * l + j] *= s;
  let q = await orthonormalize(await matmulInto(y1, e, start, N, K, l), N, l, power === 0 ? 2 : 1, y2); // N×l
  for (let it = 0; it < power; it++) {
    const ez = await matmulInto(z1, e, q, K, N, l, { transA: true }); // Eᵀ·Q: K×l
    const z = await orthonormalize(ez, K, l, 1, z2);
    const y = other(q, y1, y2);
    q = await orthonormalize(await matmulInto(y, e, await applyMetric(z), N, K, l), N, l, it === power - 1 ? 2 : 1, q);
  }
  const c1 = await matmulInto(z1, q, e, l, N, K, { transA: true }); // QᵀE: l×K
  let mc1: Float32Array; // (QᵀE)·M: l×K
  if (metric) mc1 = await matmulInto(z2, c1, metric, l, K, K);
  else if (scaleRows) {
    const sq = scaleRows.map((v) => v ** 2);
    mc1 = z2;
    for (let j = 0; j < l; j++) for (let k = 0; k < K; k++) mc1[j * K + k] = c1[j * K + k] * sq[k];
  } else mc1 = c1;
  const g = Float64Array.from(await matmul(mc1, c1, l, K, l, { transB: true }));
  const { values, vectors } = symmetricEigenRows(g, l); // ascending, eigenvectors as rows
  const s = new Float64Array(r);
  const ut = new Float32Array(r * l); // Ũ_rᵀ: the top r eigenvectors, descending
  for (let j = 0; j < r; j++) {
    const src = l - 1 - j;
    s[j] = Math.sqrt(Math.max(values[src], 0));
    for (let i = 0; i < l; i++) ut[j * l + i] = vectors[src * l + i];
  }
  const b = await matmul(ut, q, r, l, N, { transB: true }); // U_rᵀ = Ũ_rᵀ·Qᵀ: r×N
  const a = await matmul(c1, ut, K, l, r, { transA: true, transB: true }); // Eᵀ·U_r = (QᵀE)ᵀ·Ũ_r: K×r
  return { rank: r, K, N, a, b, svd: 'randomized', singularValues: s };
}

/** Best rank-r adapter for the canonical error E [N][K] under the chosen saliency. */
export async function lowRankAdapter(e: Float32Array, N: number, K: number, o: LowRankOptions): Promise<Adapter> {
  if (e.length !== N * K) throw new LowRankError(`error matrix must be ${N}×${K}, got ${e.length} values`);
  const r = o.rank;
  if (!Number.isSafeInteger(r) || r < 0 || r > Math.min(N, K))
    throw new LowRankError(`rank ${r} must be in [0, ${Math.min(N, K)}]`);
  const empty = (): Adapter => ({
    rank: 0,
    K,
    N,
    a: new Float32Array(0),
    b: new Float32Array(0),
    svd: 'none',
    singularValues: new Float64Array(0),
  });
  if (r === 0) return empty();
  if (usesRandomizedRoute(N, K, o.svd)) {
    if (o.saliency === 'none') return metricAdapter(e, N, K, r, null, null, o.svd ?? {}, o.scratch ?? freshScratch);
    if (o.saliency === 'slim') {
      if (!o.xNorm || o.xNorm.length !== K) throw new LowRankError(`saliency 'slim' needs ${K} input norms`);
      return metricAdapter(e, N, K, r, slimSaliency(o.xNorm), null, o.svd ?? {}, o.scratch ?? freshScratch);
    }
    if (o.saliency === 'whitened') {
      if (!o.hessian && !o.whiteningMetric) throw new LowRankError(`saliency 'whitened' needs the ${K}×${K} Hessian`);
      const metric = o.whiteningMetric ?? whiteningMetric(o.hessian!, K, o.dampening);
      return metricAdapter(e, N, K, r, null, metric, o.svd ?? {}, o.scratch ?? freshScratch);
    }
    throw new LowRankError(`unknown saliency ${String(o.saliency)}`);
  }
  let s: Float32Array;
  let x: Float64Array | undefined;
  let li: Float64Array | undefined;
  if (o.saliency === 'none') s = e;
  else if (o.saliency === 'slim') {
    if (!o.xNorm || o.xNorm.length !== K) throw new LowRankError(`saliency 'slim' needs ${K} input norms`);
    x = slimSaliency(o.xNorm);
    s = new Float32Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) s[n * K + k] = e[n * K + k] * x[k];
  } else if (o.saliency === 'whitened') {
    if (!o.hessian) throw new LowRankError(`saliency 'whitened' needs the ${K}×${K} Hessian`);
    const f = o.whitening ?? (await whiteningFactor(o.hessian, K, o.dampening));
    li = f.li;
    s = await matmul(e, Float32Array.from(f.l), N, K, K);
  } else throw new LowRankError(`unknown saliency ${String(o.saliency)}`);
  const svd = await truncatedSvd(s, N, K, r, o.svd);
  // V_r·Σ_r [K][r]; then A = C⁻ᵀ·(V_r Σ_r).
  let vs: Float32Array = new Float32Array(K * r);
  for (let k = 0; k < K; k++) for (let j = 0; j < r; j++) vs[k * r + j] = svd.v[k * r + j] * svd.s[j];
  if (x) for (let k = 0; k < K; k++) for (let j = 0; j < r; j++) vs[k * r + j] /= x[k];
  if (li) vs = await matmul(Float32Array.from(li), vs, K, K, r, { transA: true });
  const b = new Float32Array(r * N);
  for (let n = 0; n < N; n++) for (let j = 0; j < r; j++) b[j * N + n] = svd.u[n * r + j];
  return { rank: r, K, N, a: vs, b, svd: svd.method, singularValues: svd.s };
}

/** The adapter's canonical contribution (A·B)ᵀ [N][K] = Bᵀ·Aᵀ. */
export async function adapterMatrix(ad: Pick<Adapter, 'a' | 'b' | 'rank' | 'K' | 'N'>): Promise<Float32Array> {
  if (ad.rank === 0) return new Float32Array(ad.N * ad.K);
  return matmul(ad.b, ad.a, ad.N, ad.rank, ad.K, { transA: true, transB: true });
}

/**
 * out = W − (A·B)ᵀ [N][K] (out may be W): the product Bᵀ·Aᵀ in row blocks (math/row-chunks.ts) from Bᵀ [N][r], so
 * that no N×K output comes back from ONNX Runtime in one fresh buffer; the same values as one
 * matmulSubtract(W, B, A, N, r, K, {transA, transB}).
 */
export async function subtractAdapter(
  w: Float32Array,
  ad: Pick<Adapter, 'a' | 'b' | 'rank' | 'K' | 'N'>,
  out: Float32Array,
): Promise<Float32Array> {
  const { N, K, rank: r } = ad;
  if (w.length !== N * K || out.length !== N * K)
    throw new LowRankError(`subtractAdapter: W and out must be ${N}×${K} (got ${w.length} and ${out.length} values)`);
  if (r === 0) {
    if (out !== w) out.set(w);
    return out;
  }
  if (ad.a.length !== K * r || ad.b.length !== r * N)
    throw new LowRankError(`subtractAdapter: factors must be ${K}×${r} and ${r}×${N}`);
  const bt = new Float32Array(N * r);
  transposeInto(ad.b, 0, N, r, N, bt, 0, r);
  await subtractByRows(w, bt, ad.a, N, r, K, { transB: true }, out);
  return out;
}
