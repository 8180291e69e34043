// Sparsity kernels on one large layer: SparseGPT and Wanda on W[K][K] with T calibration tokens, plus the GEMM rates
// they stand on (ORT/MLAS vs a JS loop measured in the same run). Each row prints the floor in flops next to the time.
// Run: npx tsx bench/sparsity-kernels.bench.ts [--size 4096] [--tokens 4096] [--threads 2]
// Targets (issue 3, 2 cores): SparseGPT 2:4 ≤ 10 s including H from the activations; Wanda 2:4 ≤ 1 s.
// Timings on a shared machine are noisy: re-run when it is quiet before quoting them.
import { gramAccumulate, matmul, matmulF64, matmulJs, setGemmThreads } from '../packages/engine/math/gemm.js';
import { inverseCholeskyUpper } from '../packages/engine/math/linalg.js';
import { checkNM, nmMask, applyMask } from '../packages/engine/math/nm.js';
import { relativeOutputError } from '../packages/engine/math/relerr.js';
import { dampedHessian, sparseGpt } from '../packages/engine/math/sparsegpt.js';
import { magnitudeScores, wandaScores } from '../packages/engine/math/wanda.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const K = arg('size', 4096);
const T = arg('tokens', 4096);
const threads = arg('threads', 2);
setGemmThreads(threads);

// Deterministic generator (mulberry32 + Box–Muller) so runs are comparable.
let seed = 12345;
function uniform() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function randn() {
  return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

async function time<T>(fn: () => Promise<T> | T): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

const rows: [string, string, string, string][] = [];
function row(what: string, seconds: number, flops: number, note = '') {
  const rate = flops > 0 ? `${(flops / seconds / 1e9).toFixed(1)} GFLOP/s` : '';
  rows.push([
    what,
    `${seconds.toFixed(3)} s`,
    flops > 0 ? `${(flops / 1e9).toFixed(1)} GFLOP` : '-',
    `${rate} ${note}`,
  ]);
  console.log(`${what}: ${seconds.toFixed(3)} s ${rate} ${note}`);
}

// --- GEMM baseline: JS loop vs ORT on the same 512³ product, then ORT at larger sizes.
{
  const n = 512;
  const a = Float32Array.from({ length: n * n }, randn);
  const b = Float32Array.from({ length: n * n }, randn);
  const [, tJs] = await time(() => matmulJs(a, b, n, n, n));
  await matmul(a, b, n, n, n); // session creation
  const [, tOrt] = await time(() => matmul(a, b, n, n, n));
  row(`GEMM fp32 ${n}³ JS loop`, tJs, 2 * n ** 3);
  row(`GEMM fp32 ${n}³ ORT`, tOrt, 2 * n ** 3, `(${(tJs / tOrt).toFixed(0)}× the JS loop)`);
  for (const m of [2048]) {
    const a2 = Float32Array.from({ length: m * m }, randn);
    const b2 = Float32Array.from({ length: m * m }, randn);
    await matmul(a2, b2, m, m, m);
    const [, t32] = await time(() => matmul(a2, b2, m, m, m));
    row(`GEMM fp32 ${m}³ ORT`, t32, 2 * m ** 3);
    const a64 = Float64Array.from(a2);
    const b64 = Float64Array.from(b2);
    await matmulF64(a64, b64, m, m, m); // session creation
    const [, t64] = await time(() => matmulF64(a64, b64, m, m, m));
    row(`GEMM fp64 ${m}³ ORT`, t64, 2 * m ** 3);
  }
}

// --- A layer with LLM-like activations: a few channels with ~20× the scale of the rest.
const x = new Float32Array(T * K);
const chanScale = Float32Array.from({ length: K }, (_, k) => (k % 97 === 0 ? 20 : 0.5 + uniform()));
for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) x[t * K + k] = randn() * chanScale[k];
const w = Float32Array.from({ length: K * K }, () => randn() * 0.02);

const [xNorm, tNorm] = await time(() => {
  const s = new Float64Array(K);
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) s[k] += x[t * K + k] * x[t * K + k];
  for (let k = 0; k < K; k++) s[k] = Math.sqrt(s[k] / T);
  return s;
});
row(`x_k (channel RMS) from ${T}×${K} activations`, tNorm, 2 * T * K);

const [H, tH] = await time(async () => {
  const acc = new Float64Array(K * K);
  const batch = 1024; // stream in batches, as calibration does
  for (let t0 = 0; t0 < T; t0 += batch) {
    const b = Math.min(batch, T - t0);
    await gramAccumulate(x.subarray(t0 * K, (t0 + b) * K), b, K, acc);
  }
  for (let i = 0; i < acc.length; i++) acc[i] *= 2 / T;
  return acc;
});
row(`H = (2/n)XᵀX, ${T} tokens, K=${K}`, tH, 2 * T * K * K);

// --- Wanda 2:4 (scores + mask + apply).
const wWanda = w.slice();
const [, tWanda] = await time(() => {
  const s = wandaScores(wWanda, K, K, xNorm);
  const mask = nmMask(s, K, K, 2, 4);
  applyMask(wWanda, mask);
});
row(`Wanda 2:4 on ${K}×${K} (scores, mask, apply; x_k given)`, tWanda, 0, `target ≤ 1 s`);
if (!checkNM(wWanda, K, K, 2, 4).ok) throw new Error('Wanda output violates 2:4');

const wMag = w.slice();
const [, tMag] = await time(() => applyMask(wMag, nmMask(magnitudeScores(wMag), K, K, 2, 4)));
row(`magnitude 2:4 on ${K}×${K}`, tMag, 0);

// --- SparseGPT 2:4: the factorisation alone, then the whole call.
const { h } = dampedHessian(H, K, 0.01);
const [, tChol] = await time(() => inverseCholeskyUpper(h, K));
// Floor: a Cholesky (K³/3) plus a triangular inverse (K³/3); the recursive route does ~4K³/3 in GEMM.
row(`chol(H⁻¹) upper, float64, K=${K}`, tChol, (2 / 3) * K ** 3);
const wSgpt = w.slice();
const [, tSgpt] = await time(() => sparseGpt(wSgpt, K, K, H, { n: 2, m: 4 }));
row(
  `SparseGPT 2:4 on ${K}×${K} (given H)`,
  tSgpt,
  // Floor: 2K³/3 for the factorisation + N·K² for the lazy updates (2·N·B·rest summed over blocks).
  (2 / 3) * K ** 3 + K * K * K,
  `target ≤ 10 s incl. H: ${(tSgpt + tH).toFixed(2)} s`,
);
if (!checkNM(wSgpt, K, K, 2, 4).ok) throw new Error('SparseGPT output violates 2:4');

// --- Quality on this layer (layer output error from H), so a speed-up that breaks the maths shows.
const errOf = (wh: Float32Array) => relativeOutputError(w, wh, K, K, H);
console.log(
  `relative output error ‖X(W−Ŵ)‖/‖XW‖: magnitude ${(await errOf(wMag)).toFixed(4)}, wanda ${(await errOf(wWanda)).toFixed(4)}, sparsegpt ${(await errOf(wSgpt)).toFixed(4)}`,
);

console.log(`\n| kernel (${threads} ORT threads) | time | floor | rate / note |\n|---|---|---|---|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
