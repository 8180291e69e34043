import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matmul, matmulSubtract } from '../../../packages/engine/math/gemm.js';
import { maxBlockRows, ROW_CHUNK_FLOATS, rowBlocks, subtractByRows } from '../../../packages/engine/math/row-chunks.js';
import { subtractAdapter } from '../../../packages/engine/math/lowrank.js';
import { RowErrors } from '../../../packages/engine/math/row-errors.js';
import { randomF32, rng } from './rng.js';

function sameBits(got: Float32Array, want: Float32Array, what: string) {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++)
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: [${i}] ${got[i]} vs ${want[i]}`);
}

test('rowBlocks: covers 0..m in near-equal blocks of at least half a chunk, one block for small outputs', () => {
  for (const [m, n] of [
    [0, 10],
    [1, 1 << 20],
    [7, 100],
    [256, 2816],
    [256, 32000],
    [2816, 1024],
    [32000, 1024],
    [1000, 131],
  ]) {
    const s = rowBlocks(m, n);
    assert.equal(s[0], 0);
    assert.equal(s[s.length - 1], m);
    const blocks = s.length - 1;
    if (m * n < 2 * ROW_CHUNK_FLOATS) assert.equal(blocks, 1, `${m}×${n}`);
    for (let j = 0; j < blocks; j++) {
      const rows = s[j + 1] - s[j];
      assert.ok(rows <= maxBlockRows(m, n), `${m}×${n} block ${j}`);
      if (blocks > 1) assert.ok(rows * n >= ROW_CHUNK_FLOATS / 2, `${m}×${n} block ${j}: ${rows} rows`);
    }
  }
  assert.deepEqual(rowBlocks(256, 2816), [0, 23, 46, 69, 93, 116, 139, 162, 186, 209, 232, 256]);
});

test('subtractByRows: C − A·op(B) in row blocks equals one Gemm call bit for bit (into out, in place, via work)', async () => {
  const { normal } = rng(41);
  for (const [m, k, n, transB] of [
    [300, 40, 700, false],
    [700, 30, 300, true],
    [256, 102, 1024, false],
  ] as const) {
    const c = randomF32(m * n, normal);
    const a = randomF32(m * k, normal);
    const b = randomF32(k * n, normal);
    assert.ok(rowBlocks(m, n).length > 2, 'several blocks');
    const want = await matmulSubtract(c, a, b, m, k, n, { transB });
    const out = new Float32Array(m * n);
    await subtractByRows(c, a, b, m, k, n, { transB }, out);
    sameBits(out, want, `${m}×${k}×${n} into out`);
    const inPlace = c.slice();
    await subtractByRows(inPlace, a, b, m, k, n, { transB }, inPlace);
    sameBits(inPlace, want, `${m}×${k}×${n} in place`);
    const seen = new Float32Array(m * n);
    const work = new Float32Array(maxBlockRows(m, n) * n);
    let next = 0;
    await subtractByRows(c, a, b, m, k, n, { transB }, { work }, (part, i0, i1) => {
      assert.equal(i0, next);
      next = i1;
      seen.set(part, i0 * n);
    });
    assert.equal(next, m);
    sameBits(seen, want, `${m}×${k}×${n} via work`);
  }
});

test('subtractAdapter: W − (A·B)ᵀ equals one matmulSubtract(W, B, A, {transA, transB}) bit for bit', async () => {
  const { normal } = rng(42);
  for (const [N, K, r] of [
    [700, 300, 30],
    [96, 64, 6], // one block
  ]) {
    const w = randomF32(N * K, normal);
    const a = randomF32(K * r, normal);
    const b = randomF32(r * N, normal);
    const want = await matmulSubtract(w, b, a, N, r, K, { transA: true, transB: true });
    const ad = { rank: r, K, N, a, b };
    sameBits(await subtractAdapter(w, ad, new Float32Array(N * K)), want, `${N}×${K} r=${r}`);
    const inPlace = w.slice();
    sameBits(await subtractAdapter(inPlace, ad, inPlace), want, `${N}×${K} r=${r} in place`);
  }
  const w = Float32Array.from([1, 2, 3, 4]);
  const empty = { rank: 0, K: 2, N: 2, a: new Float32Array(0), b: new Float32Array(0) };
  sameBits(await subtractAdapter(w, empty, new Float32Array(4)), w, 'rank 0');
  await assert.rejects(subtractAdapter(w, { ...empty, rank: 1 }, new Float32Array(4)), /factors must be 2×1/);
});

test('RowErrors: the squared error summed over row blocks equals the sum over one P − (X·A)·B', async () => {
  const { normal } = rng(43);
  const [rows, N, K, r] = [256, 600, 96, 20];
  assert.ok(rowBlocks(rows, N).length > 2, 'several blocks');
  const x = randomF32(rows * K, normal);
  const w = randomF32(N * K, normal);
  const e = randomF32(N * K, normal);
  const a = randomF32(K * r, normal);
  const b = randomF32(r * N, normal);
  const errs = await RowErrors.of(w, N, K, x, rows);
  const p = await errs.residual(e);
  const d = await matmulSubtract(p, await matmul(x, a, rows, K, r), b, rows, r, N);
  let want = 0;
  for (let i = 0; i < d.length; i++) want += d[i] * d[i];
  assert.equal(await errs.squared(p, { rank: r, a, b }), want);
});

test('RowErrors: X·Wᵀ and X·Eᵀ in blocks of W rows, into one kept buffer, equal one Gemm call bit for bit', async () => {
  const { normal } = rng(44);
  for (const [rows, N, K] of [
    [256, 600, 96], // 2 blocks
    [256, 1100, 130], // 4 blocks, uneven
    [5, 7, 3], // one block, JS path
  ]) {
    const x = randomF32(rows * K, normal);
    const w = randomF32(N * K, normal);
    const errs = await RowErrors.of(w, N, K, x, rows);
    const ref = await matmul(x, w, rows, K, N, { transB: true });
    let want = 0;
    for (let i = 0; i < ref.length; i++) want += ref[i] * ref[i];
    assert.equal(errs.reference, want, `${rows}×${N}×${K} reference`);
    const e1 = randomF32(N * K, normal);
    const p1 = await errs.residual(e1);
    sameBits(p1, await matmul(x, e1, rows, K, N, { transB: true }), `${rows}×${N}×${K} P`);
    const e2 = randomF32(N * K, normal);
    const p2 = await errs.residual(e2);
    assert.equal(p2, p1, 'the same buffer, overwritten');
    sameBits(p2, await matmul(x, e2, rows, K, N, { transB: true }), `${rows}×${N}×${K} second P`);
  }
});
