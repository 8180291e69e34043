// SLiM-Quant: one symmetric clip α per weight matrix, chosen to minimise the expected squared error of the
// quantizer = rounding error of the values below α + clipping error of those above, estimated over a histogram of
// |W| (reference: Mohammad-Mozaffari/slim, slim/quantization/quantization.py `find_optimal_quantiztion_cap`).
// Reproduced as the reference computes it, quirks included, because ALGORITHMS.md measures that objective:
//   bins = max(512, min(numel/1000, 20000)) over [min|W|, max|W|] (density), candidates at bin centres;
//   rounding error of a value v at candidate α modelled as v − floor(v/δ)·δ with δ = α/2^bits (not the real step);
//   a coarse pass over every ⌊bins/10⌋-th bin, then an exhaustive scan between the coarse neighbours of the best.
// The guard: with bins % 10 == 0 the coarse pass fills 10 of the reference's 11 slots, and when the best is the last
// one the scan's end reads the unfilled slot (0), the scan range is empty and the reference returns the first bin
// centre (≈ min|W|: almost every weight clipped). Here the scan ends at the next coarse candidate or at `bins`.
// The exact variant scores candidates α ∈ linspace(0, max|W|, candidates) by the true ‖Q_α(W) − W‖² instead.
import { QuantError, type QuantBits } from './types.js';

type Matrix = Float32Array | Float64Array;

export interface SlimQuantOptions {
  bits: QuantBits;
  /** 'histogram' (the reference objective) or 'exact' (true quantization error). @defaultValue 'histogram' */
  objective?: 'histogram' | 'exact';
  /** Histogram bins; default max(512, min(numel/1000, 20000)) as in the reference. */
  bins?: number;
  /** Candidate count for the exact objective (each costs one pass over W). @defaultValue 200 */
  candidates?: number;
}

export interface SlimQuantResult {
  alpha: number;
  /** Value of the objective at α (histogram: the reference's expected error; exact: ‖Q(W) − W‖²). */
  objective: number;
  /** How many candidates were evaluated (coarse + fine). */
  evaluated: number;
}

export function referenceBins(numel: number): number {
  return Math.max(512, Math.min(Math.floor(numel / 1000), 20000));
}

/**
 * Coarse-to-fine argmin over indices 0..count-1 as the reference does it (every ⌊count/10⌋-th, then all indices
 * between the neighbours of the coarse best), with the empty-range guard. Returns the best index.
 */
export function coarseToFine(count: number, score: (i: number) => number): { index: number; evaluated: number } {
  if (count <= 0) throw new QuantError('coarseToFine: nothing to search');
  const step = Math.max(1, Math.floor(count / 10));
  const coarse: number[] = [];
  for (let i = 0; i < count; i += step) coarse.push(i);
  let tp = 0;
  let best = Infinity;
  for (let j = 0; j < coarse.length; j++) {
    const s = score(coarse[j]);
    if (s < best) {
      best = s;
      tp = j;
    }
  }
  const start = coarse[Math.max(tp - 1, 0)];
  const end = tp + 1 < coarse.length ? coarse[tp + 1] : count; // the guard: never an empty or inverted range
  let index = coarse[tp];
  let evaluated = coarse.length;
  best = Infinity;
  for (let i = start; i < end; i++) {
    const s = score(i);
    evaluated++;
    if (s < best) {
      best = s;
      index = i;
    }
  }
  return { index, evaluated };
}

function absRange(w: Matrix): { lo: number; hi: number } {
  let lo = Infinity;
  let hi = 0;
  for (let i = 0; i < w.length; i++) {
    const a = Math.abs(w[i]);
    // One comparison rejects NaN and ±Infinity (this loop runs over every weight of the layer, twice per SLiM layer).
    if (!(a <= Number.MAX_VALUE)) throw new QuantError(`SLiM-Quant: non-finite weight at index ${i}`);
    if (a < lo) lo = a;
    if (a > hi) hi = a;
  }
  return { lo, hi };
}

/** The reference's expected error at candidate index i over (density, centres); dx = bin width. */
function histogramError(pdf: Float64Array, val: Float64Array, i: number, bits: number, dx: number): number {
  const alpha = val[i];
  const delta = alpha / 2 ** bits;
  let quant = 0;
  if (delta > 0) {
    for (let j = 0; j < i; j++) {
      const d = val[j] - Math.floor(val[j] / delta) * delta;
      quant += pdf[j] * d * d;
    }
  } else {
    for (let j = 0; j < i; j++) quant += pdf[j] * val[j] * val[j];
  }
  let clip = 0;
  for (let j = i; j < val.length; j++) {
    const d = val[j] - alpha;
    clip += pdf[j] * d * d;
  }
  return (quant + clip) * dx;
}

/** ‖Q_α(W) − W‖² for symmetric per-tensor quantization with clip α (the quantizer SLiM applies). */
export function clipQuantError(w: Matrix, alpha: number, bits: QuantBits): number {
  const half = 1 << (bits - 1);
  const qmax = half - 1;
  if (!(alpha > 0)) {
    let s = 0;
    for (let i = 0; i < w.length; i++) s += w[i] * w[i];
    return s;
  }
  const scale = Math.fround(alpha / qmax);
  const inv = 1 / scale;
  let err = 0;
  for (let i = 0; i < w.length; i++) {
    let v = Math.round(w[i] * inv);
    if (v > qmax) v = qmax;
    else if (v < -half) v = -half;
    const d = v * scale - w[i];
    err += d * d;
  }
  return err;
}

/** Chooses SLiM-Quant's per-tensor clip α on the dense W (fit before pruning, as the paper does). */
export function slimQuantAlpha(w: Matrix, opts: SlimQuantOptions): SlimQuantResult {
  const { bits } = opts;
  if (bits !== 4 && bits !== 8) throw new QuantError(`SLiM-Quant: bits must be 4 or 8 (got ${bits})`);
  if (w.length === 0) return { alpha: 0, objective: 0, evaluated: 0 };
  const { lo, hi } = absRange(w);
  if (hi === 0) return { alpha: 0, objective: 0, evaluated: 0 };
  if (opts.objective === 'exact') {
    const count = opts.candidates ?? 200;
    if (!Number.isSafeInteger(count) || count < 2) throw new QuantError('SLiM-Quant: candidates must be ≥ 2');
    const alphaAt = (i: number) => (hi * i) / (count - 1);
    const { index, evaluated } = coarseToFine(count, (i) => clipQuantError(w, alphaAt(i), bits));
    return { alpha: alphaAt(index), objective: clipQuantError(w, alphaAt(index), bits), evaluated };
  }
  const bins = opts.bins ?? referenceBins(w.length);
  if (!Number.isSafeInteger(bins) || bins < 10) throw new QuantError('SLiM-Quant: bins must be an integer ≥ 10');
  if (hi === lo) return { alpha: hi, objective: 0, evaluated: 0 };
  // torch.histogram(density=True): counts / (numel · width), bins over [lo, hi], the last one closed.
  const width = (hi - lo) / bins;
  const counts = new Float64Array(bins);
  const invWidth = 1 / width;
  for (let i = 0; i < w.length; i++) {
    let b = ((Math.abs(w[i]) - lo) * invWidth) | 0; // ≥ 0 (lo is the minimum), so truncation is the floor
    if (b >= bins) b = bins - 1;
    counts[b]++;
  }
  const pdf = new Float64Array(bins);
  const val = new Float64Array(bins);
  for (let b = 0; b < bins; b++) {
    pdf[b] = counts[b] / (w.length * width);
    val[b] = lo + (b + 0.5) * width;
  }
  const { index, evaluated } = coarseToFine(bins, (i) => histogramError(pdf, val, i, bits, width));
  return { alpha: val[index], objective: histogramError(pdf, val, index, bits, width), evaluated };
}
