// Layer output error from the Hessian alone: with H = (2/n)·XᵀX (K×K) and canonical rows W[N][K] (Y = X·Wᵀ),
// ‖X(W−Ŵ)ᵀ‖²_F / ‖XWᵀ‖²_F = tr(Δ·H·Δᵀ) / tr(W·H·Wᵀ) — the 2/n cancels.
import { matmul, matmulInto } from './gemm.js';
import { MaskInputError } from './nm.js';

/** Above this many multiply-adds the quadratic forms go through the fp32 GEMM. */
const GEMM_FLOPS = 1 << 22;

/**
 * ‖X(W−Ŵ)‖/‖XW‖ = sqrt(tr(ΔHΔᵀ)/tr(WHWᵀ)). Small layers: float64 JS. Large layers: one fp32 GEMM [W;Δ]·H (MLAS),
 * then the row dot products reduced in float64; fp32 products give ~1e-6 relative error on each trace, far below
 * what a layer-error report needs. Returns 0 when both traces are 0 and Infinity when only the reference is.
 */
export async function relativeOutputError(
  w: Float32Array,
  wHat: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
): Promise<number> {
  if (w.length !== rows * cols || wHat.length !== rows * cols)
    throw new MaskInputError(`relativeOutputError: weights must both be ${rows}×${cols}`);
  if (hessian.length !== cols * cols)
    throw new MaskInputError(`relativeOutputError: Hessian must be ${cols}×${cols}, got ${hessian.length} values`);
  const { num, den } = await quadraticTraces(stackWithDelta(w, wHat), 2 * rows, cols, hessian, rows);
  return errorRatio(num, den);
}

/**
 * Σ over rows r of v_r·H·v_rᵀ for V [rows][cols], the first `split` rows summed into den and the rest into num
 * (relativeOutputError's two traces; with split = 0 everything is num). Small products in float64 JS; large ones
 * through one fp32 GEMM V·H (MLAS), the row dot products reduced in float64.
 */
export async function quadraticTraces(
  v: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  split = 0,
): Promise<{ num: number; den: number }> {
  if (rows * cols * cols <= GEMM_FLOPS) {
    // Row r's quadratic form v·H·vᵀ in float64.
    return traces(rows, split, (r) => {
      const base = r * cols;
      let q = 0;
      for (let i = 0; i < cols; i++) {
        const vi = v[base + i];
        if (vi === 0) continue;
        let s = 0;
        for (let j = 0; j < cols; j++) s += hessian[i * cols + j] * v[base + j];
        q += vi * s;
      }
      return q;
    });
  }
  const p = await matmul(v, Float32Array.from(hessian), rows, cols, cols);
  // Row r of V·H dotted with row r of V.
  return traces(rows, split, (r) => {
    const base = r * cols;
    let q = 0;
    for (let i = 0; i < cols; i++) q += p[base + i] * v[base + i];
    return q;
  });
}

/** [W; W − Ŵ] as 2·rows rows, so that one product serves both the reference and the error. */
function stackWithDelta(w: Float32Array, wHat: Float32Array): Float32Array {
  const stacked = new Float32Array(2 * w.length);
  stacked.set(w);
  for (let i = 0; i < w.length; i++) stacked[w.length + i] = w[i] - wHat[i];
  return stacked;
}

/** Sums a per-row quantity: rows below `split` into den, the rest into num. */
function traces(rows: number, split: number, perRow: (r: number) => number): { num: number; den: number } {
  let num = 0;
  let den = 0;
  for (let r = 0; r < rows; r++) {
    if (r < split) den += perRow(r);
    else num += perRow(r);
  }
  return { num, den };
}

/** sqrt(num/den): 0 for an exact match (or round-off below zero on a PSD form), Infinity when only den is 0. */
export function errorRatio(num: number, den: number): number {
  if (num <= 0) return 0;
  if (den <= 0) return Infinity;
  return Math.sqrt(num / den);
}

/**
 * ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ on explicit rows X [rows][cols] (a bounded sample of the calibration activations): fp32 GEMMs
 * X·Wᵀ and X·Δᵀ, squares summed in float64. Same conventions as relativeOutputError (0 for an exact match, Infinity when
 * only the reference is 0).
 */
export async function relativeOutputErrorOnRows(
  w: Float32Array,
  wHat: Float32Array,
  n: number,
  cols: number,
  x: Float32Array,
  rows: number,
): Promise<number> {
  const { num, den } = await outputErrorOnRows(w, wHat, n, cols, x, rows);
  return errorRatio(num, den);
}

/** The squared norms behind relativeOutputErrorOnRows: num = ‖X(W−Ŵ)ᵀ‖², den = ‖XWᵀ‖² (grouped Conv sums them). */
export async function outputErrorOnRows(
  w: Float32Array,
  wHat: Float32Array,
  n: number,
  cols: number,
  x: Float32Array,
  rows: number,
): Promise<{ num: number; den: number }> {
  if (w.length !== n * cols || wHat.length !== n * cols)
    throw new MaskInputError(`relativeOutputErrorOnRows: weights must both be ${n}×${cols}`);
  if (x.length !== rows * cols)
    throw new MaskInputError(`relativeOutputErrorOnRows: X must be ${rows}×${cols}, got ${x.length} values`);
  // Two products into one buffer (X·Wᵀ, then X·Δᵀ): half the memory of one X·[W;Δ]ᵀ, the same sums.
  const delta = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) delta[i] = w[i] - wHat[i];
  const y = new Float32Array(rows * n);
  const den = await outputSquaresOnRows(x, rows, cols, w, n, true, y);
  const num = await outputSquaresOnRows(x, rows, cols, delta, n, true, y);
  return { num, den };
}

/**
 * ‖X·op(B)‖²_F on explicit rows X [rows][cols] with B as a weight is stored: [cols][n] (MatMul, Y = X·B) or, with
 * transB, [n][cols] (Gemm transB = 1, canonical rows). One fp32 GEMM, squares summed in float64 — the same products
 * as outputErrorOnRows without stacking [W;Δ]: the layer error is sqrt(outputSquaresOnRows(X, Δ) / (…X, W)),
 * with the ratio's conventions in errorRatio.
 */
export async function outputSquaresOnRows(
  x: Float32Array,
  rows: number,
  cols: number,
  b: Float32Array,
  n: number,
  transB: boolean,
  /** At least rows·n floats for the product (a reused buffer), else a fresh one. */
  scratch?: Float32Array,
): Promise<number> {
  if (b.length !== n * cols) throw new MaskInputError(`outputSquaresOnRows: B must be ${cols}×${n} values`);
  if (x.length !== rows * cols)
    throw new MaskInputError(`outputSquaresOnRows: X must be ${rows}×${cols}, got ${x.length} values`);
  if (scratch && scratch.length < rows * n)
    throw new MaskInputError(`outputSquaresOnRows: scratch holds ${scratch.length} values, needs ${rows * n}`);
  const y = scratch
    ? await matmulInto(scratch.subarray(0, rows * n), x, b, rows, cols, n, { transB })
    : await matmul(x, b, rows, cols, n, { transB });
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * y[i];
  return s;
}
