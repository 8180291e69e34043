import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  dequantize,
  dequantizeResidual,
  quantizeMasked,
  quantizeRtn,
  quantizeWithClip,
} from '../../../packages/engine/quant/rtn.js';
import { storedBitsPerWeight, type QuantSpec } from '../../../packages/engine/quant/types.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
function randn(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return out;
}

/** Independent float64 reference: per group, scale and codes written out directly from the definition. */
function referenceDequant(w: Float32Array, rows: number, cols: number, spec: QuantSpec): Float64Array {
  const g = spec.groupSize === 'channel' ? cols : spec.groupSize;
  const out = new Float64Array(rows * cols);
  const qmax = 2 ** (spec.bits - 1) - 1;
  const levels = 2 ** spec.bits - 1;
  for (let r = 0; r < rows; r++) {
    for (let k0 = 0; k0 < cols; k0 += g) {
      const idx: number[] = [];
      for (let k = k0; k < Math.min(cols, k0 + g); k++) idx.push(r * cols + k);
      const vals = idx.map((i) => w[i]);
      if (spec.symmetric) {
        // The full signed range (ONNX Runtime's MatMul4BitsQuantizer): the value of largest magnitude → code −2^(b−1).
        const mx = Math.max(...vals);
        const mn = Math.min(...vals);
        const m = Math.abs(mx) > Math.abs(mn) ? mx : mn;
        const s = Math.fround(m / -(qmax + 1));
        for (const i of idx) out[i] = s === 0 ? 0 : Math.min(qmax, Math.max(-qmax - 1, Math.round(w[i] / s))) * s;
      } else {
        const lo = Math.min(0, ...vals);
        const hi = Math.max(0, ...vals);
        const s = Math.fround((hi - lo) / levels);
        if (s === 0) continue;
        const zp = Math.min(levels, Math.max(0, Math.round(-lo / s)));
        for (const i of idx) out[i] = (Math.min(levels, Math.max(0, Math.round(w[i] / s) + zp)) - zp) * s;
      }
    }
  }
  return out;
}

const specs: QuantSpec[] = [];
for (const bits of [4, 8] as const)
  for (const symmetric of [true, false])
    for (const groupSize of [16, 32, 64, 128, 'channel'] as const) specs.push({ bits, symmetric, groupSize });

test('RTN matches the float64 definition for 4/8 bits, sym/asym, groups 16..128 and per-channel', () => {
  const rows = 7;
  const cols = 200; // not a multiple of the group sizes: the last group is partial
  const w = randn(rows * cols, 1);
  for (const spec of specs) {
    const q = quantizeRtn(w, rows, cols, spec);
    const got = dequantize(q);
    const want = referenceDequant(w, rows, cols, spec);
    for (let i = 0; i < got.length; i++) {
      assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * Math.abs(want[i]) + 1e-7, `${JSON.stringify(spec)} at ${i}`);
    }
    // The error is bounded by half a step per group, except on the side opposite the extreme, which may clip by at
    // most one step (2^(b−1) − 1 codes there for a range of 2^(b−1) steps).
    const maxAbs = Math.max(...Array.from(w, Math.abs));
    const step = spec.symmetric ? maxAbs / 2 ** (spec.bits - 1) : (2 * maxAbs) / (2 ** spec.bits - 2);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - w[i]) <= step + 1e-6);
    if (spec.symmetric) {
      // Every group's extreme is exact (it lands on code −2^(b−1)): all 2^b codes are in use.
      assert.ok(q.codes.includes(0), `${JSON.stringify(spec)}: code 0 (−2^(b−1)) used`);
    }
  }
});

test('the fp32 symmetric fast path gives the codes of the generic loop and scales; dequantizeResidual = W − dequantize', () => {
  const rows = 9;
  const cols = 200;
  const w = Float32Array.from(randn(rows * cols, 4), (v, i) => (i % 5 === 0 ? 0 : v));
  for (const bits of [4, 8] as const)
    for (const groupSize of [16, 32, 64, 128]) {
      const spec: QuantSpec = { bits, symmetric: true, groupSize };
      const fast = quantizeRtn(w, rows, cols, spec); // Float32Array: the fast path
      const generic = quantizeRtn(Float64Array.from(w), rows, cols, spec); // Float64Array: the generic loop
      assert.deepEqual(fast.codes, generic.codes);
      assert.deepEqual(fast.scales, generic.scales);
      assert.deepEqual(fast.zeroPoints, generic.zeroPoints);
      const res = dequantizeResidual(fast, w, new Float32Array(rows * cols));
      const deq = dequantize(fast);
      for (let i = 0; i < res.length; i++)
        assert.ok(Math.abs(res[i] - (w[i] - deq[i])) <= 1e-7 * (Math.abs(w[i]) + Math.abs(deq[i])));
    }
  assert.throws(
    () => quantizeRtn(Float32Array.of(1, NaN), 1, 2, { bits: 4, symmetric: true, groupSize: 16 }),
    /non-finite/,
  );
});

test('quantizeMasked equals quantizeRtn / quantizeWithClip on the masked copy (pruned NaNs ignored)', () => {
  const rows = 6;
  const cols = 160;
  const w = Float32Array.from(randn(rows * cols, 8));
  const mask = Uint8Array.from({ length: rows * cols }, (_, i) => ((i * 7919) % 5 < 3 ? 1 : 0));
  for (let i = 0; i < mask.length; i += 17) if (!mask[i]) w[i] = NaN; // pruned entries are never read as values
  const masked = Float32Array.from(w, (v, i) => (mask[i] ? v : 0));
  for (const bits of [4, 8] as const)
    for (const groupSize of [16, 32, 'channel'] as const) {
      const spec: QuantSpec = { bits, symmetric: true, groupSize };
      const bs = groupSize === 'channel' ? cols : groupSize;
      const want = quantizeRtn(masked, rows, cols, spec);
      const got = quantizeMasked(w, mask, rows, cols, bits, bs);
      assert.deepEqual(got.codes, want.codes);
      assert.deepEqual(got.scales, want.scales);
      const wantClip = quantizeWithClip(masked, rows, cols, bits, 1.3, bs);
      const gotClip = quantizeMasked(w, mask, rows, cols, bits, bs, 1.3);
      assert.deepEqual(gotClip.codes, wantClip.codes);
      assert.deepEqual(gotClip.scales, wantClip.scales);
    }
});

test('quantizeMasked into reused codes with the residual in the same sweep: the fresh codes and dequantizeResidual', () => {
  const rows = 5;
  const cols = 96;
  const w = Float32Array.from(randn(rows * cols, 11));
  const mask = Uint8Array.from({ length: rows * cols }, (_, i) => ((i * 7919) % 4 < 2 ? 1 : 0));
  // Pruned ±Inf and NaN are read as 0 (their groups take the branchy loops); one all-pruned group.
  for (let i = 0; i < mask.length; i += 13) if (!mask[i]) w[i] = [NaN, Infinity, -Infinity][i % 3];
  mask.fill(0, 32, 64);
  const masked = Float32Array.from(w, (v, i) => (mask[i] ? v : 0));
  for (const [alpha, clip] of [
    [undefined, 'none'],
    [0.9, 'none'],
    [undefined, 'mse'],
  ] as const) {
    const spec: QuantSpec = { bits: 4, symmetric: true, groupSize: 32, clip };
    const want =
      alpha === undefined ? quantizeRtn(masked, rows, cols, spec) : quantizeWithClip(masked, rows, cols, 4, alpha, 32);
    const wantRes = dequantizeResidual(want, w, new Float32Array(w.length));
    const codes = new Uint8Array(w.length).fill(0xab);
    const out = new Float32Array(w.length).fill(7);
    const got = quantizeMasked(w, mask, rows, cols, 4, 32, alpha, clip, { codes, residual: { w, out } });
    assert.equal(got.codes, codes);
    assert.deepEqual(got.codes, want.codes);
    assert.deepEqual(got.scales, want.scales);
    assert.deepEqual(new Int32Array(out.buffer), new Int32Array(wantRes.buffer), `residual α=${alpha} ${clip}`);
    // In place: the target consumed, W − W_C left in it.
    const target = w.map((v) => v * 0.5);
    const wantHalf = dequantizeResidual(quantizeMasked(target, mask, rows, cols, 4, 32, alpha, clip), w, out);
    quantizeMasked(target, mask, rows, cols, 4, 32, alpha, clip, { residual: { w, out: target } });
    assert.deepEqual(new Int32Array(target.buffer), new Int32Array(wantHalf.buffer), `in place α=${alpha} ${clip}`);
  }
  const kept = w.slice();
  kept[0] = Infinity;
  mask[0] = 1;
  assert.throws(() => quantizeMasked(kept, mask, rows, cols, 4, 32), /non-finite/);
  kept[0] = NaN;
  assert.throws(() => quantizeMasked(kept, mask, rows, cols, 4, 32), /non-finite/);
});

test('zeros stay exactly zero (2:4 zeros survive quantization) in every scheme', () => {
  const rows = 4;
  const cols = 64;
  const w = randn(rows * cols, 2);
  for (let i = 0; i < w.length; i += 2) w[i] = 0; // every other weight pruned
  for (let i = 0; i < 16; i++) w[i + 64] = 0; // one all-zero group
  for (const spec of specs) {
    const d = dequantize(quantizeRtn(w, rows, cols, spec));
    for (let i = 0; i < w.length; i++) if (w[i] === 0) assert.equal(d[i], 0, `${JSON.stringify(spec)} at ${i}`);
  }
  const c = dequantize(quantizeWithClip(w, rows, cols, 4, 0.5, 32));
  for (let i = 0; i < w.length; i++) if (w[i] === 0) assert.equal(c[i], 0);
});

test('clip quantization clamps to [-8, 7]·α/7 and bits per weight count scales and zero points', () => {
  const w = new Float32Array([10, -10, 0.5, -0.5, 0, 0.25, 0, 0]);
  const q = quantizeWithClip(w, 1, 8, 4, 0.7, 8);
  const d = dequantize(q);
  assert.ok(Math.abs(d[0] - 0.7) < 1e-6 && Math.abs(d[1] + (0.7 * 8) / 7) < 1e-6);
  assert.equal(storedBitsPerWeight(quantizeRtn(randn(64, 3), 2, 32, { bits: 4, symmetric: true, groupSize: 32 })), 5);
  // A group's extreme sets the sign of its scale: the positive extreme 4 → s = −0.5 (code −8 ↔ 4), −4 → s = 0.5.
  const pos = quantizeRtn(new Float32Array([4, -1, 0.5, 0]), 1, 4, { bits: 4, symmetric: true, groupSize: 16 });
  assert.deepEqual(Array.from(pos.scales), [-0.5]);
  assert.deepEqual(Array.from(dequantize(pos)), [4, -1, 0.5, 0]);
  assert.ok(Object.is(dequantize(pos)[3], 0), 'a zero weight dequantizes to +0, not −0');
  const neg = quantizeRtn(new Float32Array([-4, 4, 3.9, 0]), 1, 4, { bits: 4, symmetric: true, groupSize: 16 });
  assert.deepEqual(Array.from(neg.scales), [0.5]); // a tie takes the negative extreme, as ONNX Runtime does
  assert.deepEqual(Array.from(dequantize(neg)), [-4, 3.5, 3.5, 0]); // +4 clips to code 7
  assert.equal(
    storedBitsPerWeight(quantizeRtn(randn(64, 3), 2, 32, { bits: 4, symmetric: false, groupSize: 32 })),
    4 + 36 / 32,
  );
  assert.throws(() => quantizeRtn(new Float32Array(3), 1, 4, specs[0]), /expected 1×4/);
  assert.throws(() => quantizeRtn(new Float32Array([NaN, 1]), 1, 2, specs[0]), /non-finite/);
});

test('fused [K][N] 4-bit RTN + MatMulNBits packing equals quantizeRtn + packMatMulNBits byte for byte', async () => {
  const { quantizePackKN4 } = await import('../../../packages/engine/quant/fast-kn.js');
  const { packMatMulNBits } = await import('../../../packages/engine/quant/matmulnbits.js');
  for (const [K, N, bs] of [
    [64, 24, 32],
    [200, 7, 64],
    [33, 5, 16],
    [128, 9, 128],
  ]) {
    const kn = randn(K * N, K + N);
    for (let i = 0; i < kn.length; i += 5) kn[i] = 0;
    const nk = new Float32Array(N * K);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) nk[n * K + k] = kn[k * N + n];
    const want = packMatMulNBits(quantizeRtn(nk, N, K, { bits: 4, symmetric: true, groupSize: bs }));
    const got = quantizePackKN4(kn, K, N, bs);
    assert.deepEqual(got.B, want.B, `B ${K}x${N}/${bs}`);
    assert.deepEqual(got.scales, want.scales);
    assert.equal(got.zeroPoints, null);
  }
});

test('fused packing over rows supplied block by block (as read from a file) equals the whole-array kernel', async () => {
  const { quantizePackKN4, quantizePackKN4Rows } = await import('../../../packages/engine/quant/fast-kn.js');
  for (const [K, N, bs] of [
    [200, 7, 64],
    [33, 5, 16],
    [96, 40, 32],
  ]) {
    const kn = randn(K * N, 3 * K + N);
    const want = quantizePackKN4(kn, K, N, bs);
    const block = new Float32Array(bs * N);
    const asked: number[] = [];
    const got = quantizePackKN4Rows(
      (k0, k1) => {
        asked.push(k0);
        block.fill(NaN); // rows past k1 must not be read
        block.set(kn.subarray(k0 * N, k1 * N));
        return { data: block, base: 0 };
      },
      K,
      N,
      bs,
    );
    assert.deepEqual(
      asked,
      Array.from({ length: Math.ceil(K / bs) }, (_, b) => b * bs),
    );
    assert.deepEqual(got.B, want.B, `B ${K}x${N}/${bs}`);
    assert.deepEqual(got.scales, want.scales);
    // Into reused (dirty, larger) output buffers: every element written, views of them returned.
    const into = {
      codes: new Uint8Array(want.B.length + 9).fill(0x5a),
      scales: new Float32Array(want.scales.length + 3).fill(-1),
    };
    const reused = quantizePackKN4Rows((k0) => ({ data: kn, base: k0 * N }), K, N, bs, into);
    assert.deepEqual(reused.B, want.B);
    assert.deepEqual(reused.scales, want.scales);
    assert.equal(reused.B.buffer, into.codes.buffer);
  }
});

test('clip "mse": per group never worse than the full range, better on groups with an outlier, zeros exact', async () => {
  const { CLIP_RATIOS } = await import('../../../packages/engine/quant/clip-search.js');
  const rows = 8;
  const cols = 256;
  const w = randn(rows * cols, 11);
  for (let r = 0; r < rows; r++) w[r * cols + 5] = 9; // one outlier per row: clipping it pays in its group
  for (let i = 0; i < w.length; i += 4) w[i] = 0;
  const sqErr = (d: Float32Array, k0: number, k1: number) => {
    let e = 0;
    for (let i = k0; i < k1; i++) e += (w[i] - d[i]) ** 2;
    return e;
  };
  for (const spec of specs) {
    const plain = dequantize(quantizeRtn(w, rows, cols, spec));
    const q = quantizeRtn(w, rows, cols, { ...spec, clip: 'mse' });
    const mse = dequantize(q);
    const g = spec.groupSize === 'channel' ? cols : spec.groupSize;
    let better = 0;
    for (let r = 0; r < rows; r++)
      for (let k0 = 0; k0 < cols; k0 += g) {
        const a = r * cols + k0;
        const b = r * cols + Math.min(cols, k0 + g);
        const ep = sqErr(plain, a, b);
        const em = sqErr(mse, a, b);
        assert.ok(em <= ep * (1 + 1e-9), `${JSON.stringify(spec)} row ${r} group ${k0}: ${em} > ${ep}`);
        if (em < ep) better++;
      }
    // At 4 bits the outlier groups gain from a clip; at 8 bits the step is already fine and the gain can be nil.
    if (spec.bits === 4) assert.ok(better > 0, `${JSON.stringify(spec)}: the search found no better clip anywhere`);
    for (let i = 0; i < w.length; i++) if (w[i] === 0) assert.equal(mse[i], 0);
    // Independent check of one group: brute force over the same ratios gives the same least error.
    if (spec.symmetric && spec.bits === 4 && spec.groupSize === 32) {
      const vals = Array.from(w.subarray(0, 32));
      const m = vals.reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), 0);
      let best = Infinity;
      for (const ratio of CLIP_RATIOS) {
        const s = Math.fround((ratio * m) / -8);
        let e = 0;
        for (const v of vals) e += (v - Math.min(7, Math.max(-8, Math.round(v / s))) * s) ** 2;
        best = Math.min(best, e);
      }
      assert.ok(Math.abs(sqErr(mse, 0, 32) - best) <= 1e-9 * best);
    }
  }
  // Masked: the same codes as the clip search on the masked copy.
  const mask = Uint8Array.from({ length: rows * cols }, (_, i) => (i % 4 < 2 ? 1 : 0));
  const masked = Float32Array.from(w, (v, i) => (mask[i] ? v : 0));
  const want = quantizeRtn(masked, rows, cols, { bits: 4, symmetric: true, groupSize: 32, clip: 'mse' });
  const got = quantizeMasked(w, mask, rows, cols, 4, 32, undefined, 'mse');
  assert.deepEqual(got.codes, want.codes);
  assert.deepEqual(got.scales, want.scales);
});
