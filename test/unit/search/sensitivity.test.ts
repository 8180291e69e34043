// The cheap sensitivity stage (search/sensitivity.ts): the simulated choices give exactly the weights the methods
// write, the diagonal form is exact on a diagonal Hessian and close on independent rounding noise, twins keep the
// bytes, one probe per shape, and the clip space key (quant.clip) expands rtn and gptq codes only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relativeOutputError } from '../../../packages/engine/math/relerr.js';
import { dequantize, quantizeRtn } from '../../../packages/engine/quant/rtn.js';
import { slimLayer } from '../../../packages/engine/quant/slim-layer.js';
import { parseRecipe, type SearchRecipe } from '../../../packages/engine/recipe.js';
import {
  diagonalForms,
  isExpensive,
  probeLayers,
  simulate,
  twinOf,
} from '../../../packages/engine/search/sensitivity.js';
import { choiceBytes, choiceLabel, expandSpace, stepsOf } from '../../../packages/engine/search/space.js';
import type { LayerStats } from '../../../packages/engine/methods/types.js';
import type { WeightRef } from '../../../packages/engine/onnx/weights.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function layer(N: number, K: number, seed = 1) {
  const r = rng(seed);
  const w = Float32Array.from({ length: N * K }, () => r());
  // H = XᵀX/n of correlated inputs with a few loud channels.
  const n = 4 * K;
  const x = new Float64Array(n * K);
  for (let t = 0; t < n; t++) {
    const common = r();
    for (let k = 0; k < K; k++) x[t * K + k] = (r() + 0.3 * common) * (k % 17 === 0 ? 6 : 1);
  }
  const h = new Float64Array(K * K);
  for (let t = 0; t < n; t++)
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) h[i * K + j] += (2 / n) * x[t * K + i] * x[t * K + j];
  const xNorm = Float64Array.from({ length: K }, (_, k) => Math.sqrt(h[k * K + k] / 2));
  const stats: LayerStats = { activation: 'x', tokens: n, groups: 1, xNorm: [xNorm], hessian: [h] };
  return { w, h, stats };
}

test('simulated choices give the weights the methods write (RTN codes, N:M + RTN without adapter)', async () => {
  const N = 24;
  const K = 64;
  const { w, stats } = layer(N, K);
  const [q4] = expandSpace({ methods: ['quantize'], bits: [4], groupSize: [32], schemes: ['rtn'] });
  const sim = simulate(q4, w, N, K, stats)!;
  const ref = dequantize(quantizeRtn(w, N, K, { bits: 4, groupSize: 32, symmetric: true }));
  assert.deepEqual(sim, ref);
  for (const criterion of ['magnitude', 'wanda'] as const) {
    const [c] = expandSpace({
      methods: ['slim'],
      bits: [4],
      groupSize: [32],
      schemes: ['rtn'],
      criteria: [criterion],
      rankRatio: [0],
    });
    const res = await slimLayer(
      w,
      N,
      K,
      { xNorm: stats.xNorm[0], hessian: stats.hessian![0] },
      {
        n: 2,
        m: 4,
        criterion,
        quant: { bits: 4, groupSize: 32, symmetric: true, scheme: 'rtn' },
        rankRatio: 0,
        saliency: 'whitened',
        refitIterations: 0,
        quantizeAdapters: false,
      },
    );
    assert.deepEqual(simulate(c, w, N, K, stats), res.effective, criterion);
  }
  // Solvers are not simulated.
  const [gptq] = expandSpace({ methods: ['quantize'], bits: [4], groupSize: [32], schemes: ['gptq'] });
  assert.equal(simulate(gptq, w, N, K, stats), null);
});

test('diagonal form: exact on a diagonal Hessian, within a few % of the exact error on rounding noise', async () => {
  const N = 32;
  const K = 64;
  const { w, h } = layer(N, K, 3);
  const wHat = dequantize(quantizeRtn(w, N, K, { bits: 4, groupSize: 32, symmetric: true }));
  const diagOnly = new Float64Array(K * K);
  for (let k = 0; k < K; k++) diagOnly[k * K + k] = h[k * K + k];
  const d = diagonalForms(w, wHat, N, K, h);
  const exactDiag = await relativeOutputError(w, wHat, N, K, diagOnly);
  assert.ok(Math.abs(Math.sqrt(d.num / d.den) - exactDiag) < 1e-6 * exactDiag);
  // The full (correlated) Hessian: the off-diagonal terms of independent rounding errors nearly cancel in the
  // numerator; κ (exact/diagonal, measured once per layer) absorbs what is left, which differs little between
  // two choices of the same layer.
  const exact4 = (await relativeOutputError(w, wHat, N, K, h)) ** 2;
  const w8 = dequantize(quantizeRtn(w, N, K, { bits: 8, groupSize: 32, symmetric: true }));
  const exact8 = (await relativeOutputError(w, w8, N, K, h)) ** 2;
  const d8 = diagonalForms(w, w8, N, K, h);
  const kappa = exact4 / (d.num / d.den);
  const predicted8 = kappa * (d8.num / d8.den);
  assert.ok(Math.abs(predicted8 - exact8) < 0.15 * exact8, `κ-scaled ${predicted8} vs exact ${exact8}`);
});

test('twins keep the bytes and drop only the solver; expensive = GPTQ, SparseGPT or an adapter', () => {
  const space = expandSpace(undefined);
  for (const c of space) {
    const t = twinOf(c);
    assert.equal(isExpensive(t), false, choiceLabel(t));
    if (!isExpensive(c)) assert.deepEqual(t, c);
    const adapter = c.kind === 'slim' && c.rankRatio > 0;
    if (!adapter) assert.equal(choiceBytes(t, 512, 256, 4), choiceBytes(c, 512, 256, 4), choiceLabel(c));
    else assert.ok(choiceBytes(t, 512, 256, 4) < choiceBytes(c, 512, 256, 4));
  }
  assert.equal(space.filter(isExpensive).length, 17);
  assert.equal(space.filter((c) => !isExpensive(c)).length, 10);
});

test('probe layers: one per (op, N, K), from the middle of its layers', () => {
  const w = (name: string, N: number, K: number) => ({ name, op: 'MatMul', N, K }) as WeightRef;
  const ws = [w('q0', 8, 8), w('up0', 16, 8), w('q1', 8, 8), w('up1', 16, 8), w('q2', 8, 8), w('down', 8, 16)];
  const p = probeLayers(ws);
  assert.deepEqual(
    [...p].map(([k, i]) => [k, ws[i].name]),
    [
      ['MatMul 8×8', 'q1'],
      ['MatMul 16×8', 'up1'],
      ['MatMul 8×16', 'down'],
    ],
  );
});

test('space.clips: quant.clip "mse" doubles the rtn and gptq codes (not SLiM-Quant), and reaches the recipe', () => {
  const base = { methods: ['quantize', 'slim'], bits: [4], groupSize: [32], criteria: ['wanda'], rankRatio: [0] };
  const one = expandSpace({ ...base, schemes: ['rtn', 'slim'] } as never);
  const two = expandSpace({ ...base, schemes: ['rtn', 'slim'], clips: ['none', 'mse'] } as never);
  assert.equal(two.length, one.length + 2); // rtn quantize and rtn slim gain an mse twin; SLiM-Quant does not
  const mse = two.filter((c) => choiceLabel(c).includes('clip-mse'));
  assert.deepEqual(mse.map(choiceLabel), ['int4 g32 clip-mse', '2:4 wanda + int4 g32 clip-mse']);
  for (const c of mse) {
    const [step] = stepsOf(c, 'size') as { quant?: { clip?: string } }[];
    assert.equal(step.quant?.clip, 'mse');
  }
  const r = parseRecipe({
    method: 'search',
    budget: { metric: 'fidelity', maxOutputError: 0.1 },
    space: { clips: ['none', 'mse'] },
  }) as SearchRecipe;
  assert.deepEqual(r.space?.clips, ['none', 'mse']);
  assert.deepEqual((parseRecipe({ method: 'search', budget: r.budget }) as SearchRecipe).space?.clips, ['none']);
  assert.throws(() => parseRecipe({ method: 'search', budget: r.budget, space: { clips: ['max'] } }));
});
