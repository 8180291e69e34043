// Float64 Hessians [G, K, K] from ONNX Runtime's fp32 XᵀX tiles (capture.ts gramTiles: the tiles on and above the
// block diagonal). Each batch's tiles are folded into the rows and columns they cover (fp32 within a batch, float64
// across batches, the 2/rows scale with the last one); once the last batch is in, the tiles below the diagonal are
// written as the mirror image of those above (XᵀX is symmetric; ORT's full GEMM gives exactly that too).
import type { GramTile } from './capture.js';
import { transposeInto } from '../math/transpose.js';

/** Where ORT writes each tile of the first batch: fp32 offsets packed from the start of the float64 Hessian. */
export function tileOffsets(tiles: GramTile[], groups: number): number[] {
  let off = 0;
  return tiles.map((t) => {
    const at = off;
    off += groups * t.rows * t.cols;
    return at;
  });
}

/**
 * Folds one batch's tile `x` ([G, rows, cols]) into `h`: on the `first` batch h = 0 + x (what adding to zeros
 * gives), else h + x; with `scale` (the last batch) the sum is then multiplied, rounded after each step.
 */
export function foldTile(
  h: Float64Array,
  x: Float32Array,
  t: GramTile,
  K: number,
  groups: number,
  first: boolean,
  scale: number | undefined,
  what: string,
): void {
  const n = groups * t.rows * t.cols;
  if (x.length !== n) throw new Error(`${what}: ${x.length} values from ONNX Runtime, expected ${n}`);
  for (let g = 0; g < groups; g++)
    for (let r = 0; r < t.rows; r++) {
      foldRow(h, g * K * K + (t.row + r) * K + t.col, x, (g * t.rows + r) * t.cols, t.cols, first, scale);
    }
}

function foldRow(
  h: Float64Array,
  hb: number,
  x: Float32Array,
  xb: number,
  n: number,
  first: boolean,
  s: number | undefined,
): void {
  if (s === undefined) {
    if (first) for (let c = 0; c < n; c++) h[hb + c] = 0 + x[xb + c];
    else for (let c = 0; c < n; c++) h[hb + c] += x[xb + c];
  } else if (first) for (let c = 0; c < n; c++) h[hb + c] = (0 + x[xb + c]) * s;
  else for (let c = 0; c < n; c++) h[hb + c] = (h[hb + c] + x[xb + c]) * s;
}

/** H[c][r] = H[r][c] for every tile right of the block diagonal (the diagonal tiles are whole already). */
export function mirrorTiles(h: Float64Array, tiles: GramTile[], K: number, groups: number): void {
  for (const t of tiles) {
    if (t.col === t.row) continue;
    // The tile above the diagonal copied transposed into its mirror below it (the two never overlap).
    for (let g = 0; g < groups; g++) {
      const base = g * K * K;
      transposeInto(h, base + t.row * K + t.col, K, t.rows, t.cols, h, base + t.col * K + t.row, K);
    }
  }
}
