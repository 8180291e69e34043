// `quant.clip: "mse"`: per group, the clip ratio of the range with the least squared error ‖w − Q(w)‖². Shrinking a
// group's range clips its few largest weights but gives every other weight a finer step; which wins depends on the
// group, so it is measured per group over a grid of ratios (1, 0.975, …, 0.5, as AWQ's and llama.cpp's clip searches
// do) and a ratio < 1 is kept only when its error is strictly lower than the unclipped one's — so the result is never
// worse than plain RTN on any group. Symmetric groups scale their signed extreme m to r·m (s = r·m/−2^(b−1));
// asymmetric groups scale both ends of [min(w,0), max(w,0)] (zero stays representable). A zero weight still codes
// as the zero point exactly, so N:M zeros survive; masked (pruned) entries count as 0 and are never read.
import { QuantError, type QuantizedMatrix } from './types.js';

/** Ratios tried, largest first (the unclipped range is the first, so ties keep it). */
export const CLIP_RATIOS: readonly number[] = Array.from({ length: 21 }, (_, i) => 1 - i / 40);

interface GroupScale {
  s: number;
  zp: number;
}

/** Scale and zero point of a group whose range is shrunk by `r` (fp32 scale, as stored). */
function scaleFor(symmetric: boolean, lo: number, hi: number, r: number, half: number, levels: number): GroupScale {
  if (symmetric) {
    const m = Math.abs(hi) > Math.abs(lo) ? hi : lo;
    return { s: m === 0 ? 0 : Math.fround((r * m) / -half), zp: half };
  }
  const s = Math.fround((r * (hi - lo)) / levels);
  if (s === 0) return { s: 0, zp: 0 };
  const zp = Math.round((-r * lo) / s);
  return { s, zp: zp < 0 ? 0 : zp > levels ? levels : zp };
}

/** Σ (w − Q(w))² over one group (float64). */
function groupError(
  w: ArrayLike<number>,
  mask: Uint8Array | undefined,
  k0: number,
  k1: number,
  g: GroupScale,
  levels: number,
): number {
  if (g.s === 0) {
    let e = 0;
    for (let i = k0; i < k1; i++) if (!mask || mask[i]) e += w[i] * w[i];
    return e;
  }
  const inv = 1 / g.s;
  let e = 0;
  for (let i = k0; i < k1; i++) {
    if (mask && !mask[i]) continue;
    let u = Math.round(w[i] * inv) + g.zp;
    if (u < 0) u = 0;
    else if (u > levels) u = levels;
    const d = w[i] - (u - g.zp) * g.s;
    e += d * d;
  }
  return e;
}

/** Fills q (codes, scales, zero points; its shape and scheme already set) with the least-error clip per group. */
export function quantizeRtnMse(w: ArrayLike<number>, q: QuantizedMatrix, mask?: Uint8Array): void {
  const { rows, cols, bits, blockSize: bs, blocksPerRow, symmetric, codes, scales, zeroPoints } = q;
  const half = 1 << (bits - 1);
  const levels = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let b = 0; b < blocksPerRow; b++) {
      const k0 = base + b * bs;
      const k1 = base + Math.min(cols, (b + 1) * bs);
      let lo = 0;
      let hi = 0;
      for (let i = k0; i < k1; i++) {
        const v = !mask || mask[i] ? w[i] : 0;
        if (v < lo) lo = v;
        else if (v > hi) hi = v;
        else if (v !== v) hi = NaN;
      }
      if (!Number.isFinite(hi) || !Number.isFinite(lo))
        throw new QuantError(`quantizeRtn: non-finite weight in row ${r}, group ${b}`);
      let best = scaleFor(symmetric, lo, hi, 1, half, levels);
      if (best.s !== 0) {
        let bestErr = groupError(w, mask, k0, k1, best, levels);
        for (let c = 1; c < CLIP_RATIOS.length && bestErr > 0; c++) {
          const cand = scaleFor(symmetric, lo, hi, CLIP_RATIOS[c], half, levels);
          if (cand.s === 0) continue;
          const e = groupError(w, mask, k0, k1, cand, levels);
          if (e < bestErr) {
            bestErr = e;
            best = cand;
          }
        }
      }
      const gi = r * blocksPerRow + b;
      scales[gi] = best.s;
      zeroPoints[gi] = best.s === 0 ? (symmetric ? half : 0) : best.zp;
      if (best.s === 0) {
        codes.fill(zeroPoints[gi], k0, k1);
        continue;
      }
      const inv = 1 / best.s;
      for (let i = k0; i < k1; i++) {
        if (mask && !mask[i]) {
          codes[i] = best.zp;
          continue;
        }
        let u = Math.round(w[i] * inv) + best.zp;
        if (u < 0) u = 0;
        else if (u > levels) u = levels;
        codes[i] = u;
      }
    }
  }
}
