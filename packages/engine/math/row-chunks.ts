// C − A·op(B) in row blocks of about ROW_CHUNK_FLOATS outputs per ONNX Runtime call. onnxruntime-node 1.29 hands
// every output back through a fresh buffer, pre-allocated outputs included, and a fresh buffer of megabytes is fresh
// pages: one call writing a 2816×1024 fp32 result into a buffer that is already paged in still takes ~2,800 minor
// faults (~13 µs each here) — more than its arithmetic when the inner dimension is an adapter's rank. Blocks of
// ~256 KB come back through memory the allocator reuses. Each output entry is the same dot product over the same k
// as in one call (MLAS splits only M and N across threads and blocks k by K and N alone), so the values are the
// same bit for bit; every block keeps at least SMALL_FLOPS multiply-adds so none takes gemm.ts's JS loop instead.
import { matmulSubtract, type MatmulOptions } from './gemm.js';

/** Output values per call (256 KB of fp32). */
export const ROW_CHUNK_FLOATS = 1 << 16;

/**
 * Where the row blocks of an m×n output start: m split into ⌊m·n / ROW_CHUNK_FLOATS⌋ near-equal blocks (one block
 * when the whole output is under two chunks), each of at least ROW_CHUNK_FLOATS/2 outputs. Ends with m.
 */
export function rowBlocks(m: number, n: number): number[] {
  const blocks = blockCount(m, n);
  const starts: number[] = [];
  for (let j = 0; j <= blocks; j++) starts.push(Math.floor((j * m) / blocks));
  return starts;
}

/** The most rows a block of rowBlocks(m, n) holds. */
export function maxBlockRows(m: number, n: number): number {
  return Math.ceil(m / blockCount(m, n));
}

function blockCount(m: number, n: number): number {
  return Math.max(1, Math.min(m, Math.floor((m * n) / ROW_CHUNK_FLOATS)));
}

/**
 * out = C − A·op(B) for A [m][k] (not transposed), op(B) [k][n], C and out [m][n] (out may be C), computed in the
 * row blocks of rowBlocks(m, n); `each(part, i0, i1)` sees every finished block (rows i0..i1) in order. Given
 * `{work}` (at least maxBlockRows(m, n)·n values) instead of out, every block is written there, overwriting the last:
 * for callers that only read the blocks.
 */
export async function subtractByRows(
  c: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  opts: Pick<MatmulOptions, 'transB'>,
  out: Float32Array | { work: Float32Array },
  each?: (part: Float32Array, i0: number, i1: number) => void,
): Promise<void> {
  const starts = rowBlocks(m, n);
  for (let j = 0; j + 1 < starts.length; j++) {
    const i0 = starts[j];
    const i1 = starts[j + 1];
    const dst = out instanceof Float32Array ? out.subarray(i0 * n, i1 * n) : out.work.subarray(0, (i1 - i0) * n);
    await matmulSubtract(c.subarray(i0 * n, i1 * n), a.subarray(i0 * k, i1 * k), b, i1 - i0, k, n, opts, dst);
    each?.(dst, i0, i1);
  }
}
