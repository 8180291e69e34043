// GPTQ (math/gptq.ts) against a plain float64 OBS loop written here (no blocking, no GEMM, Gauss–Jordan inverse and
// a textbook Cholesky), and against RTN on correlated, LLM-like inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  actOrderPermutation,
  gptq,
  GptqInputError,
  gptqBlockSize,
  type GptqOptions,
} from '../../../packages/engine/math/gptq.js';
import { dequantize, quantizeRtn } from '../../../packages/engine/quant/rtn.js';
import { resolveBlockSize, type QuantSpec } from '../../../packages/engine/quant/types.js';
import { nmMask } from '../../../packages/engine/math/nm.js';
import { hessianF64, llmLikeActivations, outputErrorF64, randomF32, rng } from './rng.js';

function invert(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]) > Math.abs(m[p * n + c])) p = r;
    for (let j = 0; j < n; j++) {
      [m[p * n + j], m[c * n + j]] = [m[c * n + j], m[p * n + j]];
      [inv[p * n + j], inv[c * n + j]] = [inv[c * n + j], inv[p * n + j]];
    }
    const d = m[c * n + c];
    for (let j = 0; j < n; j++) {
      m[c * n + j] /= d;
      inv[c * n + j] /= d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c];
      for (let j = 0; j < n; j++) {
        m[r * n + j] -= f * m[c * n + j];
        inv[r * n + j] -= f * inv[c * n + j];
      }
    }
  }
  return inv;
}

function upperCholesky(s: Float64Array, n: number): Float64Array {
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    let d = s[i * n + i];
    for (let p = 0; p < i; p++) d -= u[p * n + i] ** 2;
    u[i * n + i] = Math.sqrt(d);
    for (let j = i + 1; j < n; j++) {
      let v = s[i * n + j];
      for (let p = 0; p < i; p++) v -= u[p * n + i] * u[p * n + j];
      u[i * n + j] = v / u[i * n + i];
    }
  }
  return u;
}

/**
 * Unblocked float64 GPTQ: columns in `order`, each quantized with its group's RTN scale (fixed from the current
 * weights when the group's first column comes up, or from the start weights with static groups), the error
 * spread over every later column at once.
 */
function gptqReference(w: Float32Array, N: number, K: number, hessian: Float64Array, o: GptqOptions) {
  const h = Float64Array.from(hessian);
  const dead: number[] = [];
  let tr = 0;
  for (let k = 0; k < K; k++) {
    if (h[k * K + k] === 0) {
      h[k * K + k] = 1;
      dead.push(k);
    }
    tr += h[k * K + k];
  }
  for (let k = 0; k < K; k++) h[k * K + k] += ((o.dampening ?? 0.01) * tr) / K;
  const order = o.actOrder
    ? Array.from({ length: K }, (_, i) => i).sort((a, b) => h[b * K + b] - h[a * K + a] || a - b)
    : Array.from({ length: K }, (_, i) => i);
  const hp = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) hp[i * K + j] = h[order[i] * K + order[j]];
  const u = upperCholesky(invert(hp, K), K);
  const W = Float64Array.from(w);
  for (const k of dead) for (let n = 0; n < N; n++) W[n * K + k] = 0;
  const keep = (n: number, k: number) => !o.mask || o.mask[n * K + k] === 1;
  const gs = resolveBlockSize(o.quant, K);
  const groups = Math.ceil(K / gs);
  const scale = new Float64Array(N * groups);
  const zero = new Float64Array(N * groups);
  const fix = (g: number) => {
    const k0 = g * gs;
    const len = Math.min(K, k0 + gs) - k0;
    const slice = new Float32Array(N * len);
    for (let n = 0; n < N; n++)
      for (let j = 0; j < len; j++) slice[n * len + j] = keep(n, k0 + j) ? W[n * K + k0 + j] : 0;
    const s = quantizeRtn(slice, N, len, { ...o.quant, groupSize: len });
    for (let n = 0; n < N; n++) {
      scale[n * groups + g] = s.scales[n];
      zero[n * groups + g] = s.zeroPoints[n];
    }
  };
  if (o.actOrder) for (let g = 0; g < groups; g++) fix(g);
  const maxq = (1 << o.quant.bits) - 1;
  const codes = new Uint8Array(N * K);
  for (let p = 0; p < K; p++) {
    const col = order[p];
    const g = Math.floor(col / gs);
    if (!o.actOrder && col % gs === 0) fix(g);
    for (let n = 0; n < N; n++) {
      const x = W[n * K + col];
      const s = scale[n * groups + g];
      const zp = zero[n * groups + g];
      const c = s === 0 || !keep(n, col) ? zp : Math.min(maxq, Math.max(0, Math.round(x / s) + zp));
      codes[n * K + col] = c;
      const e = (x - (c - zp) * s) / u[p * K + p];
      for (let t = p; t < K; t++) W[n * K + order[t]] -= e * u[p * K + t];
    }
  }
  return { codes, scale: Float32Array.from(scale) };
}

function problem(N: number, K: number, tokens: number, seed: number) {
  const x = llmLikeActivations(tokens, K, seed);
  return { x, h: hessianF64(x, tokens, K), w: randomF32(N * K, rng(seed + 7).normal) };
}

const sym4: QuantSpec = { bits: 4, groupSize: 16, symmetric: true };

test('blocked fp32 GPTQ matches the unblocked float64 OBS loop (codes and scales)', async () => {
  const cases: [number, number, GptqOptions][] = [
    [10, 64, { quant: sym4, blockSize: 32 }],
    [10, 64, { quant: sym4, blockSize: 16 }],
    [8, 72, { quant: { bits: 4, groupSize: 32, symmetric: false }, blockSize: 24 }], // 24 does not tile g32: block 32
    [8, 64, { quant: { bits: 4, groupSize: 'channel', symmetric: true }, blockSize: 16 }],
    [8, 64, { quant: { bits: 8, groupSize: 16, symmetric: true } }],
    [10, 64, { quant: sym4, blockSize: 16, actOrder: true }],
    [10, 80, { quant: { bits: 4, groupSize: 16, symmetric: false }, blockSize: 32, actOrder: true }],
  ];
  for (const [N, K, o] of cases) {
    const { h, w } = problem(N, K, 256, N * K);
    h[3 * K + 3] = 0; // one dead input (its row and column of H are 0 in real data; the diagonal is what counts)
    for (let j = 0; j < K; j++) h[3 * K + j] = h[j * K + 3] = 0;
    const got = await gptq(w, N, K, h, o);
    const ref = gptqReference(w, N, K, h, o);
    let same = 0;
    for (let i = 0; i < N * K; i++) if (got.q.codes[i] === ref.codes[i]) same++;
    // fp32 against float64: a code may flip where a value sits on a rounding boundary; nearly all must agree
    assert.ok(same / (N * K) > 0.99, `${JSON.stringify(o)}: ${same}/${N * K} codes agree`);
    let scaleDiff = 0;
    for (let i = 0; i < ref.scale.length; i++)
      scaleDiff = Math.max(scaleDiff, Math.abs(got.q.scales[i] - ref.scale[i]) / Math.abs(ref.scale[i] || 1));
    assert.ok(scaleDiff < 1e-3, `${JSON.stringify(o)}: scales differ by ${scaleDiff}`);
    for (let n = 0; n < N; n++) {
      const zp = got.q.zeroPoints[n * got.q.blocksPerRow + Math.floor(3 / got.q.blockSize)];
      assert.equal(got.q.codes[n * K + 3], zp, 'a dead input dequantizes to 0');
    }
  }
});

test('GPTQ under a 2:4 mask: masked entries are exactly 0, kept ones absorb the error', async () => {
  const N = 12;
  const K = 64;
  const { x, h, w } = problem(N, K, 512, 3);
  const mask = nmMask(
    Float32Array.from(w, (v) => Math.abs(v)),
    N,
    K,
    2,
    4,
  );
  const o: GptqOptions = { quant: sym4, blockSize: 32, mask };
  const got = await gptq(w, N, K, h, o);
  const ref = gptqReference(w, N, K, h, o);
  const deq = dequantize(got.q);
  let same = 0;
  for (let i = 0; i < N * K; i++) {
    if (!mask[i]) assert.equal(deq[i], 0);
    if (got.q.codes[i] === ref.codes[i]) same++;
  }
  assert.ok(same / (N * K) > 0.99);
  // against RTN of the masked weights (what quantizeMasked does)
  const masked = Float32Array.from(w, (v, i) => (mask[i] ? v : 0));
  const rtn = dequantize(quantizeRtn(masked, N, K, sym4));
  assert.ok(outputErrorF64(x, 512, w, deq, N, K) < outputErrorF64(x, 512, w, rtn, N, K));
});

test("GPTQ's layer error ‖X(W−Q)‖ is below RTN's on correlated inputs, at every group size", async () => {
  const N = 48;
  const K = 256;
  const tokens = 1024;
  const { x, h, w } = problem(N, K, tokens, 11);
  for (const groupSize of [32, 128] as const) {
    for (const actOrder of [false, true]) {
      const spec: QuantSpec = { bits: 4, groupSize, symmetric: true };
      const g = await gptq(w, N, K, h, { quant: spec, actOrder });
      const eG = outputErrorF64(x, tokens, w, dequantize(g.q), N, K);
      const eR = outputErrorF64(x, tokens, w, dequantize(quantizeRtn(w, N, K, spec)), N, K);
      assert.ok(eG < 0.8 * eR, `g${groupSize} actOrder ${actOrder}: GPTQ ${eG} vs RTN ${eR}`);
    }
  }
});

test('block sizes, act order and bad input', async () => {
  assert.equal(gptqBlockSize(128, 32, 4096, false), 128);
  assert.equal(gptqBlockSize(100, 32, 4096, false), 96);
  assert.equal(gptqBlockSize(48, 128, 4096, false), 128);
  assert.equal(gptqBlockSize(64, 128, 4096, false), 64);
  assert.equal(gptqBlockSize(100, 4096, 4096, false), 100);
  assert.equal(gptqBlockSize(100, 32, 4096, true), 100);
  const h = Float64Array.from([1, 0, 0, 0, 3, 0, 0, 0, 3]);
  assert.deepEqual([...actOrderPermutation(h, 3)], [1, 2, 0]);
  const w = new Float32Array(6);
  await assert.rejects(gptq(w, 2, 3, new Float64Array(4), { quant: sym4 }), GptqInputError);
  await assert.rejects(gptq(w, 2, 3, h, { quant: sym4, dampening: -1 }), /dampening/);
  await assert.rejects(gptq(Float32Array.from([NaN, 0, 0, 0, 0, 0]), 2, 3, h, { quant: sym4 }), /not finite/);
  await assert.rejects(gptq(w, 2, 3, h, { quant: sym4, blockSize: 0 }), /blockSize/);
});
