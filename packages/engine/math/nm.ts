// Masks over canonical weights [rows = outputs N][cols = reduction axis K], row-major. A mask byte is 1 = keep,
// 0 = prune. N:M groups are M consecutive columns of one row. Scores: larger = more important. NaN scores rank as
// −Infinity (pruned first), so a NaN never survives in place of a real weight.

export class MaskInputError extends Error {
  override name = 'MaskInputError';
}

/** Validate an "keep n of every m" pattern for a row length `cols`. */
export function validateNM(n: number, m: number, cols?: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(m) || !(n > 0 && n < m && m <= 32))
    throw new MaskInputError(`N:M pattern ${n}:${m} is invalid: need integers 0 < N < M ≤ 32`);
  if (cols !== undefined && cols % m !== 0)
    throw new MaskInputError(`N:M pattern ${n}:${m} needs the reduction axis to be a multiple of ${m}, got ${cols}`);
}

function checkMatrix(what: string, arr: { length: number }, rows: number, cols: number) {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols < 0)
    throw new MaskInputError(`${what}: shape ${rows}×${cols} is not a matrix shape`);
  if (arr.length !== rows * cols)
    throw new MaskInputError(`${what}: expected ${rows}×${cols} = ${rows * cols} values, got ${arr.length}`);
}

function checkSparsity(sparsity: number) {
  if (!(sparsity >= 0 && sparsity < 1)) throw new MaskInputError(`sparsity must be in [0, 1), got ${sparsity}`);
}

/** Ranking key: NaN ranks as −Infinity (pruned first, ties with −Infinity broken by index like any tie). */
function key(s: number): number {
  return s !== s ? -Infinity : s;
}

/**
 * In one group scores[off .. off+m), set keep[keepOff + j] = 1 for the n best (larger score, ties to the lower
 * index), 0 for the rest. By rank counting: O(m²) per group, no allocation; m ≤ 32.
 */
export function keepTopNInGroup(
  scores: ArrayLike<number>,
  off: number,
  m: number,
  n: number,
  keep: Uint8Array,
  keepOff = off,
): void {
  for (let j = 0; j < m; j++) {
    const sj = key(scores[off + j]);
    let better = 0;
    for (let i = 0; i < m && better < n; i++) {
      const si = key(scores[off + i]);
      if (si > sj || (si === sj && i < j)) better++;
    }
    keep[keepOff + j] = better < n ? 1 : 0;
  }
}

/** Keep the n largest scores of every m consecutive along each row; ties broken by the lower column index. */
export function nmMask(scores: Float32Array, rows: number, cols: number, n: number, m: number): Uint8Array {
  checkMatrix('nmMask', scores, rows, cols);
  validateNM(n, m, cols);
  const mask = new Uint8Array(rows * cols);
  // Rank by pairwise comparison over a local key copy: m(m−1)/2 comparisons per group (6 for 2:4), each deciding
  // which of the two outranks the other (larger key; on equal keys the lower index). Keep the n with rank < n.
  // This is the Wanda/magnitude hot loop (16M weights at K = 4096).
  if (m === 4) {
    nmMask4(scores, n, mask);
    return mask;
  }
  const k = new Float64Array(m);
  const beaten = new Int32Array(m); // how many group members outrank j
  for (let off = 0; off < scores.length; off += m) {
    for (let j = 0; j < m; j++) {
      const v = scores[off + j];
      k[j] = v !== v ? -Infinity : v;
      beaten[j] = 0;
    }
    for (let i = 0; i < m - 1; i++) {
      const ki = k[i];
      for (let j = i + 1; j < m; j++) {
        if (ki >= k[j]) beaten[j]++;
        else beaten[i]++;
      }
    }
    for (let j = 0; j < m; j++) mask[off + j] = beaten[j] < n ? 1 : 0;
  }
  return mask;
}

/** nmMask for m = 4 with the group in locals: the same pairwise ranking, no scratch arrays. */
function nmMask4(scores: Float32Array, n: number, mask: Uint8Array) {
  for (let off = 0; off < scores.length; off += 4) {
    let a = scores[off];
    let b = scores[off + 1];
    let c = scores[off + 2];
    let d = scores[off + 3];
    if (a !== a) a = -Infinity;
    if (b !== b) b = -Infinity;
    if (c !== c) c = -Infinity;
    if (d !== d) d = -Infinity;
    // Rank of each = how many others outrank it (larger, or equal with a lower index).
    const ra = (b > a ? 1 : 0) + (c > a ? 1 : 0) + (d > a ? 1 : 0);
    const rb = (a >= b ? 1 : 0) + (c > b ? 1 : 0) + (d > b ? 1 : 0);
    const rc = (a >= c ? 1 : 0) + (b >= c ? 1 : 0) + (d > c ? 1 : 0);
    const rd = (a >= d ? 1 : 0) + (b >= d ? 1 : 0) + (c >= d ? 1 : 0);
    mask[off] = ra < n ? 1 : 0;
    mask[off + 1] = rb < n ? 1 : 0;
    mask[off + 2] = rc < n ? 1 : 0;
    mask[off + 3] = rd < n ? 1 : 0;
  }
}

/**
 * Prune the `count` lowest entries of scores[off .. off+len) (keep = 0 there, 1 elsewhere); among entries equal to
 * the cut-off score the higher indices go first, matching nmMask's tie rule. O(len) expected (quickselect).
 */
export function pruneLowest(scores: ArrayLike<number>, off: number, len: number, count: number, keep: Uint8Array) {
  keep.fill(1, off, off + len);
  if (count <= 0) return;
  const keys = new Float64Array(len);
  for (let j = 0; j < len; j++) keys[j] = key(scores[off + j]);
  const cut = kthSmallest(keys, count - 1);
  let below = 0;
  for (let j = 0; j < len; j++) if (key(scores[off + j]) < cut) below++;
  let atCut = count - below; // how many entries equal to the cut-off are among the `count` lowest
  for (let j = 0; j < len; j++) if (key(scores[off + j]) < cut) keep[off + j] = 0;
  for (let j = len - 1; j >= 0 && atCut > 0; j--)
    if (key(scores[off + j]) === cut) {
      keep[off + j] = 0;
      atCut--;
    }
}

/**
 * The k-th smallest (0-based) of `a` by quickselect (Hoare partition, median-of-three pivot); reorders `a`.
 * Expected O(n); no NaN in `a` (keys map NaN to −Infinity).
 */
export function kthSmallest(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // Median of three as pivot value.
    const x = a[lo];
    const y = a[mid];
    const z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    // Now a[lo..j] ≤ pivot ≤ a[i..hi], and a[j+1..i-1] = pivot.
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/** Per row, prune floor(cols·sparsity) lowest scores (Wanda's unstructured rule: comparison inside each output). */
export function unstructuredMaskPerRow(scores: Float32Array, rows: number, cols: number, sparsity: number): Uint8Array {
  checkMatrix('unstructuredMaskPerRow', scores, rows, cols);
  checkSparsity(sparsity);
  const mask = new Uint8Array(rows * cols);
  const count = Math.floor(cols * sparsity);
  for (let r = 0; r < rows; r++) pruneLowest(scores, r * cols, cols, count, mask);
  return mask;
}

/** Prune floor(rows·cols·sparsity) lowest scores of the whole matrix (magnitude's per-matrix threshold). */
export function unstructuredMaskGlobal(scores: Float32Array, rows: number, cols: number, sparsity: number): Uint8Array {
  checkMatrix('unstructuredMaskGlobal', scores, rows, cols);
  checkSparsity(sparsity);
  const mask = new Uint8Array(rows * cols);
  pruneLowest(scores, 0, scores.length, Math.floor(scores.length * sparsity), mask);
  return mask;
}

/** w[i] = 0 wherever mask[i] = 0. */
export function applyMask(w: Float32Array, mask: Uint8Array): void {
  if (w.length !== mask.length) throw new MaskInputError(`applyMask: ${w.length} weights, ${mask.length} mask bytes`);
  for (let i = 0; i < w.length; i++) w[i] = mask[i] === 0 ? 0 : w[i];
}

/**
 * Independent N:M checker (deliberately shares no code with nmMask): counts non-zeros (anything but ±0; NaN counts)
 * in every group of m consecutive weights along each row; a short last group (cols % m ≠ 0) is checked too.
 */
export function checkNM(
  w: Float32Array,
  rows: number,
  cols: number,
  n: number,
  m: number,
): { ok: boolean; firstViolation?: { row: number; group: number; nonzeros: number } } {
  checkMatrix('checkNM', w, rows, cols);
  if (!(Number.isInteger(m) && m > 0 && Number.isInteger(n) && n >= 0))
    throw new MaskInputError(`checkNM: invalid pattern ${n}:${m}`);
  for (let row = 0; row < rows; row++) {
    const base = row * cols;
    for (let start = 0, group = 0; start < cols; start += m, group++) {
      const end = Math.min(start + m, cols);
      let nonzeros = 0;
      for (let c = start; c < end; c++) if (w[base + c] !== 0) nonzeros++;
      if (nonzeros > n) return { ok: false, firstViolation: { row, group, nonzeros } };
    }
  }
  return { ok: true };
}
