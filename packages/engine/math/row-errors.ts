// Layer output errors of low-rank-compensated candidates on explicit rows X [rows][K] (the runner's row sample), from
// shared products instead of one X·(W − Ŵ)ᵀ per candidate. For Ŵ = W_C + (A·B)ᵀ (A [K][r], B [r][N]):
//   X·(W − Ŵ)ᵀ = X·(W − W_C)ᵀ − X·(A·B) = P − (X·A)·B,
// so the reference ‖X·Wᵀ‖² is computed once per layer, P = X·(W − W_C)ᵀ once per sparse part W_C, and each adapter
// enters through the thin X·A [rows][r] and one rows×r×N product — never through an N×K matrix. Same conventions
// as math/relerr.ts relativeOutputErrorOnRows (whose numbers these equal up to fp32 rounding): squares summed in
// float64, 0 for an exact match, Infinity when only the reference is 0.
import { matmul } from './gemm.js';
import { maxBlockRows, rowBlocks, subtractByRows } from './row-chunks.js';

/** The adapter's factors as math/lowrank.ts stores them: a [K][r], b [r][N]. */
export interface LowRankFactors {
  rank: number;
  a: Float32Array;
  b: Float32Array;
}

export class RowErrorsShapeError extends Error {
  override readonly name = 'RowErrorsShapeError';
}

function sumSquares(y: Float32Array): number {
  return addSquares(0, y);
}

/** s + Σ y_i², summed in order (a sum over consecutive blocks equals the sum over their concatenation). */
function addSquares(s: number, y: Float32Array): number {
  for (let i = 0; i < y.length; i++) s += y[i] * y[i];
  return s;
}

/**
 * out = X·Mᵀ [rows][N] for M [N][K], in blocks of M's rows (math/row-chunks.ts rowBlocks: ≥ 128 of them at 256 rows,
 * ~256 KB of output per call) scattered into out: no rows×N output through a fresh buffer per product. Every entry is
 * the same dot product over K as in one call (MLAS blocks K by K and N alone, and the same way for ≥ 128 columns).
 */
async function productInto(
  out: Float32Array,
  x: Float32Array,
  m: Float32Array,
  rows: number,
  K: number,
  N: number,
): Promise<Float32Array> {
  const starts = rowBlocks(N, rows);
  for (let j = 0; j + 1 < starts.length; j++) {
    const n0 = starts[j];
    const nb = starts[j + 1] - n0;
    const y = await matmul(x, m.subarray(n0 * K, (n0 + nb) * K), rows, K, nb, { transB: true });
    if (nb === N) out.set(y);
    else for (let i = 0; i < rows; i++) out.set(y.subarray(i * nb, (i + 1) * nb), i * N + n0);
  }
  return out;
}

/** One layer W [N][K] measured on rows X [rows][K]: holds X and ‖X·Wᵀ‖². */
export class RowErrors {
  /** One row block of P − (X·A)·B (reused by every measurement). */
  private work: Float32Array | undefined;
  /** The rows×N buffer every product X·Mᵀ is written to. */
  private p: Float32Array = new Float32Array(0);

  private constructor(
    readonly x: Float32Array,
    readonly rows: number,
    readonly N: number,
    readonly K: number,
    /** ‖X·Wᵀ‖², float64 sum of fp32 products. */
    readonly reference: number,
  ) {}

  /**
   * Measures ‖X·Wᵀ‖² (one rows×K×N product), unless the caller already has it (`reference`: the calibration pass
   * reduced it from the layer's own output, LayerStats.sample.outputSquares). `buffer` (at least rows·N values,
   * contents overwritten) holds the products instead of a fresh rows×N array: a caller measuring many layers pages it
   * in once (the fresh arrays came to ~190 MB over a 245 M-parameter model, ~0.5 s of page faults).
   */
  static async of(
    w: Float32Array,
    N: number,
    K: number,
    x: Float32Array,
    rows: number,
    reference?: number,
    buffer?: Float32Array,
  ): Promise<RowErrors> {
    if (w.length !== N * K) throw new RowErrorsShapeError(`RowErrors: W must be ${N}×${K}, got ${w.length} values`);
    if (x.length !== rows * K)
      throw new RowErrorsShapeError(`RowErrors: X must be ${rows}×${K}, got ${x.length} values`);
    if (buffer && buffer.length < rows * N)
      throw new RowErrorsShapeError(`RowErrors: buffer holds ${buffer.length} values, the products need ${rows * N}`);
    const p = buffer ? buffer.subarray(0, rows * N) : new Float32Array(rows * N);
    const errs = new RowErrors(x, rows, N, K, reference ?? sumSquares(await productInto(p, x, w, rows, K, N)));
    errs.p = p;
    return errs;
  }

  /**
   * P = X·Eᵀ [rows][N] for a residual E = W − W_C [N][K], in the one rows×N buffer this object keeps (the reference
   * product's): the next call overwrites it.
   */
  async residual(e: Float32Array): Promise<Float32Array> {
    if (e.length !== this.N * this.K)
      throw new RowErrorsShapeError(`RowErrors: residual must be ${this.N}×${this.K}, got ${e.length} values`);
    return productInto(this.p, this.x, e, this.rows, this.K, this.N);
  }

  /** ‖P − (X·A)·B‖² (‖P‖² without an adapter). */
  async squared(p: Float32Array, ad?: LowRankFactors): Promise<number> {
    const { x, rows, N, K } = this;
    if (p.length !== rows * N) throw new RowErrorsShapeError(`RowErrors: P must be ${rows}×${N}, got ${p.length}`);
    if (!ad || ad.rank === 0) return sumSquares(p);
    const r = ad.rank;
    if (ad.a.length !== K * r || ad.b.length !== r * N)
      throw new RowErrorsShapeError(`RowErrors: adapter factors must be ${K}×${r} and ${r}×${N}`);
    const xa = await matmul(x, ad.a, rows, K, r);
    // In row blocks (math/row-chunks.ts): no rows×N output through a fresh buffer; the squares are summed in the
    // same order as over the whole P − (X·A)·B.
    this.work ??= new Float32Array(maxBlockRows(rows, N) * N);
    let sum = 0;
    await subtractByRows(p, xa, ad.b, rows, r, N, {}, { work: this.work }, (part) => {
      sum = addSquares(sum, part);
    });
    return sum;
  }

  /** ‖X·(W − W_C − (A·B)ᵀ)ᵀ‖ / ‖X·Wᵀ‖ from P = X·(W − W_C)ᵀ. */
  async relative(p: Float32Array, ad?: LowRankFactors): Promise<number> {
    const num = await this.squared(p, ad);
    if (num <= 0) return 0;
    if (this.reference <= 0) return Infinity;
    return Math.sqrt(num / this.reference);
  }
}

/**
 * The same shared products for the Hessian form of the error, tr(Δ·H·Δᵀ)/tr(W·H·Wᵀ) (math/relerr.ts
 * relativeOutputError): with E = W − W_C and L = (A·B)ᵀ = Bᵀ·Aᵀ,
 *   tr((E − L)·H·(E − L)ᵀ) = ⟨E·H, E⟩ − 2·⟨B·(E·H), Aᵀ⟩ + ⟨Aᵀ·H·A, B·Bᵀ⟩,
 * so each sparse part costs one N×K×K product E·H and each adapter r×N×K + K×K×r + r×N×r. Sums in float64 over fp32
 * products, as relativeOutputError's GEMM route.
 */
export class HessianErrors {
  private constructor(
    readonly h: Float32Array,
    readonly N: number,
    readonly K: number,
    /** tr(W·H·Wᵀ). */
    readonly reference: number,
  ) {}

  /**
   * `reference`: tr(W·H·Wᵀ) when the caller already has it (the calibration pass reduced it from the layer's own output,
   * LayerStats.outputTraces); else measured here, one N×K×K product.
   */
  static async of(
    w: Float32Array,
    N: number,
    K: number,
    hessian: Float64Array,
    reference?: number,
  ): Promise<HessianErrors> {
    if (w.length !== N * K) throw new RowErrorsShapeError(`HessianErrors: W must be ${N}×${K}, got ${w.length}`);
    if (hessian.length !== K * K)
      throw new RowErrorsShapeError(`HessianErrors: H must be ${K}×${K}, got ${hessian.length} values`);
    const h = Float32Array.from(hessian);
    const given = reference !== undefined && Number.isFinite(reference);
    return new HessianErrors(h, N, K, given ? reference : dot(await matmul(w, h, N, K, K), w));
  }

  /** E·H and ⟨E·H, E⟩ for a residual E = W − W_C [N][K] (E may be overwritten afterwards). */
  async residual(e: Float32Array): Promise<{ eh: Float32Array; quad: number }> {
    if (e.length !== this.N * this.K)
      throw new RowErrorsShapeError(`HessianErrors: residual must be ${this.N}×${this.K}, got ${e.length} values`);
    const eh = await matmul(e, this.h, this.N, this.K, this.K);
    return { eh, quad: dot(eh, e) };
  }

  /** tr((E − L)·H·(E − L)ᵀ). */
  async squared(p: { eh: Float32Array; quad: number }, ad?: LowRankFactors): Promise<number> {
    const { h, N, K } = this;
    if (!ad || ad.rank === 0) return p.quad;
    const r = ad.rank;
    if (ad.a.length !== K * r || ad.b.length !== r * N)
      throw new RowErrorsShapeError(`HessianErrors: adapter factors must be ${K}×${r} and ${r}×${N}`);
    const beh = await matmul(ad.b, p.eh, r, N, K); // B·(E·H): r×K
    let cross = 0;
    for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) cross += beh[j * K + k] * ad.a[k * r + j];
    const ha = await matmul(h, ad.a, K, K, r); // H·A: K×r
    const aha = await matmul(ad.a, ha, r, K, r, { transA: true }); // Aᵀ·H·A: r×r
    const bbt = await matmul(ad.b, ad.b, r, N, r, { transB: true }); // B·Bᵀ: r×r
    return p.quad - 2 * cross + dot(aha, bbt);
  }

  /** sqrt(tr(Δ·H·Δᵀ)/tr(W·H·Wᵀ)) for Ŵ = W_C + (A·B)ᵀ, from residual(W − W_C). */
  async relative(p: { eh: Float32Array; quad: number }, ad?: LowRankFactors): Promise<number> {
    const num = await this.squared(p, ad);
    if (num <= 0) return 0;
    if (this.reference <= 0) return Infinity;
    return Math.sqrt(num / this.reference);
  }
}

function dot(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
}
