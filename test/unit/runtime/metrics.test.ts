// Evaluation metrics against direct float64 computations: fidelity (relative error, cosine, top-1 agreement),
// accuracy, and LM negative log-likelihood from logits and from probabilities, accumulated over uneven batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FidelityAccumulator } from '../../../packages/engine/metrics/fidelity.js';
import {
  AccuracyAccumulator,
  LmAccumulator,
  looksLikeProbabilities,
  shiftedTargets,
} from '../../../packages/engine/metrics/labels.js';
import { randn } from '../sparsity/models.js';

const close = (a: number, b: number, tol = 1e-9) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test('fidelity over batches equals the whole-set formulas', () => {
  const S = 7;
  const C = 5;
  const y = randn(S * C, 1);
  const yh = randn(S * C, 2).map((v, i) => y[i] + 0.3 * v);
  const acc = new FidelityAccumulator();
  acc.add(y.subarray(0, 3 * C), yh.subarray(0, 3 * C), [3, C]);
  acc.add(y.subarray(3 * C), yh.subarray(3 * C), [4, C]);
  const r = acc.result();
  let d2 = 0;
  let r2 = 0;
  let cos = 0;
  let agree = 0;
  for (let s = 0; s < S; s++) {
    let dot = 0;
    let a2 = 0;
    let b2 = 0;
    let ia = 0;
    let ib = 0;
    for (let c = 0; c < C; c++) {
      const a = y[s * C + c];
      const b = yh[s * C + c];
      d2 += (a - b) ** 2;
      r2 += a * a;
      dot += a * b;
      a2 += a * a;
      b2 += b * b;
      if (a > y[s * C + ia]) ia = c;
      if (b > yh[s * C + ib]) ib = c;
    }
    cos += dot / Math.sqrt(a2 * b2);
    if (ia === ib) agree++;
  }
  close(r.relativeError, Math.sqrt(d2 / r2));
  close(r.cosineSimilarity, cos / S);
  close(r.top1Agreement, agree / S);
  assert.equal(r.samples, S);
});

test('accuracy counts argmax hits and ignores negative labels', () => {
  const a = new AccuracyAccumulator();
  a.add(new Float32Array([0.1, 0.9, 0.8, 0.2, 0.5, 0.4]), [3, 2], [1n, 1n, -100n]);
  assert.deepEqual(a.result(), { accuracy: 0.5, samples: 2 });
});

test('LM NLL from logits equals log-softmax by hand; probabilities give the same NLL', () => {
  const B = 2;
  const T = 3;
  const V = 4;
  const logits = randn(B * T * V, 3, 2);
  const ids = [1, 3, 0, 2, 2, 1];
  const targets = shiftedTargets(ids, B, T);
  assert.deepEqual([...targets], [3, 0, -1, 2, 1, -1]);
  const lm = new LmAccumulator();
  lm.add(logits, [B, T, V], targets, false);
  let nll = 0;
  let n = 0;
  const probs = new Float32Array(logits.length);
  for (let p = 0; p < B * T; p++) {
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[p * V + v]);
    for (let v = 0; v < V; v++) probs[p * V + v] = Math.exp(logits[p * V + v]) / z;
    if (targets[p] < 0) continue;
    nll -= Math.log(Math.exp(logits[p * V + targets[p]]) / z);
    n++;
  }
  const r = lm.result();
  assert.equal(r.tokens, 4);
  close(r.nll, nll / n, 1e-12);
  close(r.perplexity, Math.exp(nll / n), 1e-12);
  close(r.bitsPerToken, nll / n / Math.LN2, 1e-12);
  assert.ok(looksLikeProbabilities(probs, V));
  assert.ok(!looksLikeProbabilities(logits, V));
  const fromProbs = new LmAccumulator();
  fromProbs.add(probs, [B, T, V], targets, true);
  close(fromProbs.result().nll, nll / n, 1e-6);
  assert.throws(() => new LmAccumulator().add(logits, [B, T, V], [9, 0, 0, 0, 0, 0], false), /outside the vocabulary/);
});
