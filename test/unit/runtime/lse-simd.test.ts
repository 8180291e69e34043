import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  logSumExpRows,
  logSumExpScalar,
  lseSimdActive,
  useLseSimd,
} from '../../../packages/engine/metrics/lse-simd.js';
import { LmAccumulator } from '../../../packages/engine/metrics/labels.js';
import { rng } from '../math/rng.js';

after(() => useLseSimd(true));

/** log Σ e^x over one row in float64, the sum compensated (Neumaier) over Math.exp terms: the reference. */
function lseRef(x: ArrayLike<number>, base: number, V: number): number {
  let mx = -Infinity;
  for (let v = 0; v < V; v++) mx = Math.max(mx, x[base + v]);
  let s = 0;
  let comp = 0;
  for (let v = 0; v < V; v++) {
    const t = Math.exp(x[base + v] - mx);
    const u = s + t;
    comp += Math.abs(s) >= t ? s - u + t : t - u + s;
    s = u;
  }
  return mx + Math.log(s + comp);
}

function rows(out: Float32Array, V: number, simd: boolean, which?: number[]): Float64Array {
  const n = which ? which.length : out.length / V;
  const idx = Int32Array.from(which ?? Array.from({ length: n }, (_, i) => i));
  const lse = new Float64Array(n).fill(12345);
  useLseSimd(simd);
  try {
    logSumExpRows(out, V, idx, n, lse);
  } finally {
    useLseSimd(true);
  }
  return lse;
}

/** |a − b| within `ulps` float64 ulps of max(|b|, 1) (log Σ: an absolute error of the sum's relative rounding). */
function closeUlps(a: number, b: number, ulps: number, what: string): void {
  const tol = ulps * Number.EPSILON * Math.max(Math.abs(b), 1);
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (diff ${a - b}, tol ${tol})`);
}

test('the kernel is available here (WebAssembly SIMD), so the tests below exercise it', () => {
  assert.ok(lseSimdActive());
});

test('log Σ e^x through the kernel equals a compensated float64 reference to float64 rounding, as the scalar loop does', () => {
  const r = rng(7).uniform;
  for (const [V, scale, shift] of [
    [32000, 4, 0],
    [50257, 12, -3],
    [1, 1, 0],
    [3, 2, 1e4],
    [13, 1, 0],
    [8, 30, 0],
    [1000, 1e-30, 0],
    [1000, 3e38, 0],
    [777, 200, -1e4],
  ]) {
    const P = V > 10000 ? 20 : 37; // several chunks of rows at V = 32 000
    const out = new Float32Array(P * V);
    for (let i = 0; i < out.length; i++) out[i] = (r() * 2 - 1) * scale + shift;
    const simd = rows(out, V, true);
    const scalar = rows(out, V, false);
    for (let p = 0; p < P; p++) {
      const ref = lseRef(out, p * V, V);
      // ~√V·ε typical for a sum of V positive terms; both routes stay well inside 64 ulps here
      closeUlps(simd[p], ref, 64, `simd V=${V} scale=${scale} row ${p}`);
      closeUlps(scalar[p], ref, 64, `scalar V=${V} scale=${scale} row ${p}`);
      assert.equal(scalar[p], logSumExpScalar(out, p * V, V));
    }
  }
});

test('each term e^y is float64-accurate across the whole range, and terms below e^−708 vanish as they do in a sum ≥ 1', () => {
  // Rows [0, y]: log(1 + e^y) = log1p(e^y), the term e^y alone carrying the row.
  const ys: number[] = [];
  for (let y = -760; y <= 0; y += 0.37) ys.push(y);
  for (const y of [-0.5 * Math.LN2, 0.5 * Math.LN2 - 1e-9, -Math.LN2, -1e-12, -707.9, -708.1, -745, -1e30]) ys.push(y);
  // fp32 logits: y must be an fp32 value so that the row holds it exactly
  const out = new Float32Array(ys.length * 2);
  ys.forEach((y, i) => (out[2 * i + 1] = y));
  const simd = rows(out, 2, true);
  for (let i = 0; i < ys.length; i++) {
    const y = out[2 * i + 1];
    const want = Math.log1p(Math.exp(y));
    // the sum 1 + e^y is rounded once either way; the kernel's term is within ~2 ulp of e^y
    assert.ok(Math.abs(simd[i] - want) <= 2 * Number.EPSILON, `y=${y}: ${simd[i]} vs ${want}`);
  }
  // Many equal terms: Σ = V exactly on both routes.
  const flat = new Float32Array(32000).fill(-3.25);
  assert.equal(rows(flat, 32000, true)[0], -3.25 + Math.log(32000));
});

test('rows with a non-finite maximum (NaN, +Inf, all −Inf) give the scalar loop’s value; −Inf entries count 0', () => {
  const V = 21;
  const out = new Float32Array(5 * V);
  const r = rng(3).uniform;
  for (let i = 0; i < out.length; i++) out[i] = r() * 4 - 2;
  out[0 * V + 5] = NaN;
  out[1 * V + 20] = Infinity;
  out.fill(-Infinity, 2 * V, 3 * V);
  out[3 * V + 7] = -Infinity;
  out[3 * V + 8] = -Infinity;
  out[4 * V + 0] = -Infinity;
  out[4 * V + 1] = Infinity;
  const simd = rows(out, V, true);
  for (let p = 0; p < 5; p++) {
    const s = logSumExpScalar(out, p * V, V);
    if (p === 3) closeUlps(simd[p], s, 8, 'row with −Inf entries');
    else assert.ok(Object.is(simd[p], s), `row ${p}: ${simd[p]} vs ${s}`);
  }
  assert.ok(Number.isNaN(simd[0]) && Number.isNaN(simd[2]));
});

test('listed rows only, in list order', () => {
  const V = 40;
  const r = rng(11).uniform;
  const out = new Float32Array(9 * V);
  for (let i = 0; i < out.length; i++) out[i] = r() * 6;
  const which = [8, 0, 3, 3];
  const got = rows(out, V, true, which);
  which.forEach((p, i) => closeUlps(got[i], lseRef(out, p * V, V), 8, `row ${p}`));
});

/** LmAccumulator.add before the kernel (position by position, log Σ by the scalar loop): bit for bit the old NLL. */
function oldNll(out: Float32Array, V: number, targets: ArrayLike<number>, probabilities: boolean): number {
  let nll = 0;
  for (let p = 0; p < out.length / V; p++) {
    const t = targets[p];
    if (t < 0) continue;
    const base = p * V;
    if (probabilities) nll -= Math.log(Math.max(out[base + t], 1e-30));
    else {
      let mx = -Infinity;
      for (let v = 0; v < V; v++) if (out[base + v] > mx) mx = out[base + v];
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(out[base + v] - mx);
      nll += mx + Math.log(sum) - out[base + t];
    }
  }
  return nll;
}

test('LM NLL: bit for bit the previous loop without the kernel, float64 rounding with it; −100 targets ignored', () => {
  const r = rng(5).uniform;
  const [B, T, V] = [2, 9, 1003];
  const logits = new Float32Array(B * T * V);
  for (let i = 0; i < logits.length; i++) logits[i] = (r() * 2 - 1) * 9;
  const targets = Array.from({ length: B * T }, (_, i) => (i % 4 === 3 ? -100 : (i * 37) % V));
  const probs = new Float32Array(logits.length);
  for (let i = 0; i < probs.length; i++) probs[i] = r();
  const tokens = targets.filter((t) => t >= 0).length;
  for (const probabilities of [false, true]) {
    const out = probabilities ? probs : logits;
    const want = oldNll(out, V, targets, probabilities) / tokens;
    useLseSimd(false);
    const off = new LmAccumulator();
    off.add(out, [B, T, V], targets, probabilities);
    useLseSimd(true);
    const on = new LmAccumulator();
    on.add(out, [B, T, V], targets.map(BigInt), probabilities);
    assert.equal(off.result().nll, want);
    assert.equal(off.result().tokens, tokens);
    assert.equal(on.result().tokens, tokens);
    if (probabilities) assert.equal(on.result().nll, want);
    else closeUlps(on.result().nll, want, 16, 'NLL through the kernel');
  }
});
