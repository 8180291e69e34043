import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relativeOutputError, relativeOutputErrorOnRows } from '../../../packages/engine/math/relerr.js';
import { hessianF64, llmLikeActivations, outputErrorF64, randomF32, rng } from './rng.js';

test('relativeOutputError from H equals ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ from the activations (JS and GEMM paths)', async () => {
  for (const [tokens, N, K] of [
    [50, 4, 8],
    [300, 40, 130], // 2·N·K² above the GEMM threshold
  ]) {
    const x = llmLikeActivations(tokens, K, N + K);
    const h = hessianF64(x, tokens, K);
    const { normal } = rng(31);
    const w = randomF32(N * K, normal);
    const wHat = w.map((v, i) => (i % 3 === 0 ? 0 : v + 0.01 * normal()));
    const want = outputErrorF64(x, tokens, w, wHat, N, K);
    const got = await relativeOutputError(w, wHat, N, K, h);
    assert.ok(Math.abs(got - want) < 1e-4 * want, `${N}×${K}: ${got} vs ${want}`);
  }
  const w = Float32Array.from([1, 2]);
  assert.equal(await relativeOutputError(w, w, 1, 2, Float64Array.from([1, 0, 0, 1])), 0);
  assert.equal(await relativeOutputError(new Float32Array(2), w, 1, 2, Float64Array.from([1, 0, 0, 1])), Infinity);
  await assert.rejects(relativeOutputError(w, w, 1, 2, new Float64Array(3)), /Hessian must be 2×2/);
});

test('relativeOutputErrorOnRows equals ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ in float64 (JS and GEMM paths)', async () => {
  for (const [tokens, N, K] of [
    [5, 4, 8],
    [256, 96, 130],
  ]) {
    const x = llmLikeActivations(tokens, K, 3 * N + K);
    const { normal } = rng(37);
    const w = randomF32(N * K, normal);
    const wHat = w.map((v, i) => (i % 3 === 0 ? 0 : v + 0.01 * normal()));
    const want = outputErrorF64(x, tokens, w, wHat, N, K);
    const got = await relativeOutputErrorOnRows(w, wHat, N, K, x, tokens);
    assert.ok(Math.abs(got - want) < 1e-5 * want, `${N}×${K}: ${got} vs ${want}`);
  }
  const w = Float32Array.from([1, 2]);
  const x = Float32Array.from([1, 1]);
  assert.equal(await relativeOutputErrorOnRows(w, w, 1, 2, x, 1), 0);
  assert.equal(await relativeOutputErrorOnRows(new Float32Array(2), w, 1, 2, x, 1), Infinity);
  await assert.rejects(relativeOutputErrorOnRows(w, w, 1, 2, new Float32Array(3), 1), /X must be 1×2/);
});
