// SLiM on a synthetic layer whose activations look like a transformer's (a few loud channels, correlated inputs).
// Prints the layer-error table that goes into the issue note; asserts the orderings ALGORITHMS.md reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  roundToFloat16,
  slimLayer,
  sparsePartStats,
  type SlimLayerOptions,
} from '../../../packages/engine/quant/slim-layer.js';
import { float16ToFloat32, float32ToFloat16 } from '../../../packages/engine/onnx/floats.js';
import { gaussian } from '../../../packages/engine/math/svd.js';
import { relativeOutputError, relativeOutputErrorOnRows } from '../../../packages/engine/math/relerr.js';
import { checkNM } from '../../../packages/engine/math/nm.js';
import { dequantize } from '../../../packages/engine/quant/rtn.js';

function randn(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float64Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r()));
}

const N = 96;
const K = 128;
const tokens = 1024;

function setup() {
  const z = randn(tokens * K, 1);
  const x = new Float64Array(tokens * K);
  for (let t = 0; t < tokens; t++)
    for (let k = 0; k < K; k++) {
      let v = z[t * K + k] + 0.6 * z[t * K + ((k + 1) % K)] + 0.3 * z[t * K + ((k + 5) % K)];
      if (k % 16 === 3) v *= 6; // outlier channels
      x[t * K + k] = v;
    }
  const h = new Float64Array(K * K);
  const xNorm = new Float64Array(K);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < K; i++) {
      const xi = x[t * K + i];
      xNorm[i] += (xi * xi) / tokens;
      for (let j = 0; j < K; j++) h[i * K + j] += (2 / tokens) * xi * x[t * K + j];
    }
  for (let i = 0; i < K; i++) xNorm[i] = Math.sqrt(xNorm[i]);
  // Weights: Gaussian plus a low-rank component (trained layers have decaying spectra).
  const g = randn(N * K, 2);
  const u = randn(N * 4, 3);
  const v = randn(4 * K, 4);
  const w = new Float32Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      let s = 0.05 * g[n * K + k];
      for (let j = 0; j < 4; j++) s += 0.03 * u[n * 4 + j] * v[j * K + k];
      w[n * K + k] = s;
    }
  return { w, h, xNorm };
}

const base: SlimLayerOptions = {
  n: 2,
  m: 4,
  criterion: 'wanda',
  quant: { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true },
  rankRatio: 0.1,
  saliency: 'slim',
  refitIterations: 0,
  quantizeAdapters: false,
};

test('SLiM layer errors: adapters vs none, whitened vs slim saliency, refits, SparseGPT interaction', async () => {
  const { w, h, xNorm } = setup();
  const err = (x: Float32Array) => relativeOutputError(w, x, N, K, h);
  const run = (o: Partial<SlimLayerOptions>) =>
    slimLayer(w, N, K, { xNorm, hessian: h }, { ...base, ...o, error: err });
  const rows: [string, number][] = [];
  const row = async (label: string, o: Partial<SlimLayerOptions>) => {
    const r = await run(o);
    rows.push([label, r.errors.final!]);
    return r;
  };
  const noAdapterRtn = await row('wanda 2:4 + RTN4 g32, no adapter', { rankRatio: 0 });
  const noAdapterSlimQ = await row('wanda 2:4 + SLiM-Quant, no adapter', {
    rankRatio: 0,
    quant: { ...base.quant, scheme: 'slim' },
  });
  const slimPaper = await row('SLiM (SLiM-Quant + wanda 2:4 + slim saliency r=0.1)', {
    quant: { ...base.quant, scheme: 'slim' },
  });
  const slimRtn = await row('wanda 2:4 + RTN4 g32 + slim saliency', {});
  const naive = await row('wanda 2:4 + RTN4 g32 + naive (none) saliency', { saliency: 'none' });
  const whitened = await row('wanda 2:4 + RTN4 g32 + whitened', { saliency: 'whitened' });
  const refit4 = await row('  same, 4 refits', { saliency: 'whitened', refitIterations: 4 });
  const slimQ = await row('wanda 2:4 + RTN4 g32 + slim saliency, adapters 4-bit (LoRA^Q)', { quantizeAdapters: true });
  const sgptNo = await row('sparsegpt 2:4 + RTN4 g32, no adapter', { criterion: 'sparsegpt', rankRatio: 0 });
  const sgptRef = await row('sparsegpt + whitened, re-quantized from original W (reference)', {
    criterion: 'sparsegpt',
    saliency: 'whitened',
    sparseGptRequant: 'reference',
  });
  const sgptRerun = await row('sparsegpt + whitened, SparseGPT re-run on W − LR (ours)', {
    criterion: 'sparsegpt',
    saliency: 'whitened',
  });
  console.log(
    `layer ${N}×${K}, relative output error ‖X(W−Ŵ)‖/‖XW‖:\n` +
      rows.map(([l, e]) => `  ${l.padEnd(70)} ${e.toFixed(4)}`).join('\n') +
      `\n  whitened stages: before adapter ${whitened.errors.beforeAdapter!.toFixed(4)}, adapter ${whitened.errors.afterAdapter!.toFixed(4)}, re-quantized ${whitened.errors.afterFinalRequant!.toFixed(4)}, refits ${refit4.errors.refits.map((e) => e!.toFixed(4)).join(' ')}`,
  );
  // Adapters recover a clear share of the 2:4 + 4-bit damage.
  assert.ok(slimPaper.errors.final! < 0.9 * noAdapterSlimQ.errors.final!, 'SLiM vs same without adapter');
  assert.ok(slimRtn.errors.final! < 0.9 * noAdapterRtn.errors.final!, 'RTN + adapter vs without');
  assert.ok(whitened.errors.final! <= slimRtn.errors.final!, 'whitened ≥ slim saliency');
  assert.ok(slimRtn.errors.final! < naive.errors.final!, 'slim saliency beats naive LoRA');
  // Refits never make it worse (alternating minimisation), final re-quantization helps.
  const seq = [refit4.errors.afterFinalRequant!, ...refit4.errors.refits.map((e) => e!)];
  for (let i = 1; i < seq.length; i++) assert.ok(seq[i] <= seq[i - 1] * 1.01, `refit ${i}: ${seq}`);
  assert.ok(whitened.errors.afterFinalRequant! < whitened.errors.afterAdapter!);
  // Quantized adapters cost a little, still far better than none.
  assert.ok(slimQ.errors.final! < noAdapterRtn.errors.final! && slimQ.errors.final! >= slimRtn.errors.final! * 0.98);
  // SparseGPT: re-running it on W − LR keeps its benefit; the reference-style final step loses it.
  assert.ok(sgptRerun.errors.final! < sgptRef.errors.final!, 'rerun beats discarding the OBS updates');
  assert.ok(sgptRerun.errors.final! < sgptNo.errors.final!);
  // The sparse part is 2:4 along K in the codes themselves, with exact zeros.
  for (const r of [slimPaper, whitened, refit4, sgptRerun]) {
    const d = dequantize(r.quantized);
    assert.ok(checkNM(d, N, K, 2, 4).ok, '2:4 in the dequantized sparse part');
    for (let i = 0; i < d.length; i++) if (!r.mask[i]) assert.equal(d[i], 0);
  }
});

test('slimLayer rejects what it cannot do, clearly', async () => {
  const w = new Float32Array(4 * 6);
  await assert.rejects(slimLayer(w, 4, 6, {}, { ...base }), /not a multiple of M/);
  await assert.rejects(slimLayer(new Float32Array(16), 4, 4, {}, { ...base }), /Wanda needs input norms/);
  await assert.rejects(
    slimLayer(new Float32Array(16), 4, 4, {}, { ...base, criterion: 'magnitude', saliency: 'whitened' }),
    /Hessian/,
  );
  await assert.rejects(
    slimLayer(
      new Float32Array(16),
      4,
      4,
      {},
      { ...base, criterion: 'magnitude', rankRatio: 0, quant: { ...base.quant, symmetric: false } },
    ),
    /asymmetric/,
  );
});

test('slimLayer errorRows: the stage errors from shared products equal one X(W − Ŵ)ᵀ per candidate', async () => {
  const { w, xNorm } = setup();
  // A row sample of X as the runner keeps it for a method without a Hessian.
  const rows = 64;
  const z = randn(rows * K, 9);
  const x = Float32Array.from(z, (v, i) => v * ((i % K) % 16 === 3 ? 6 : 1));
  const error = (wHat: Float32Array) => relativeOutputErrorOnRows(w, wHat, N, K, x, rows);
  const variants: Partial<SlimLayerOptions>[] = [
    {},
    { adapterStorage: 'float16' },
    { refitIterations: 2 },
    { quantizeAdapters: true },
    { stageErrors: false },
    { finalRequantize: false },
    { rankRatio: 0 },
    { saliency: 'none', quant: { ...base.quant, scheme: 'slim' } },
    { svd: { method: 'randomized' }, refitIterations: 1 },
  ];
  for (const v of variants) {
    const o = { ...base, ...v, error };
    const brute = await slimLayer(w, N, K, { xNorm }, o);
    let calls = 0;
    const shared = await slimLayer(
      w,
      N,
      K,
      { xNorm },
      {
        ...o,
        error: (wHat) => (calls++, error(wHat)),
        errorRows: { x, rows },
      },
    );
    const label = JSON.stringify(v);
    assert.equal(calls, 0, `${label}: error is not called with errorRows`);
    // Same sparse part and adapter (the errors do not steer anything), same effective weight.
    assert.deepEqual(shared.quantized.codes, brute.quantized.codes, label);
    assert.deepEqual(shared.adapter?.a, brute.adapter?.a, label);
    assert.deepEqual(shared.effective, brute.effective, label);
    assertStageErrorsClose(shared.errors, brute.errors, label);
  }
  // effective: false skips the effective weight, nothing else.
  const full = await slimLayer(w, N, K, { xNorm }, { ...base, errorRows: { x, rows } });
  const lean = await slimLayer(w, N, K, { xNorm }, { ...base, errorRows: { x, rows }, effective: false });
  assert.equal(lean.effective.length, 0);
  assert.deepEqual(lean.errors, full.errors);
  assert.deepEqual(lean.quantized, full.quantized);
});

test('roundToFloat16 is bit for bit float16ToFloat32(float32ToFloat16(x))', () => {
  const edges = [
    0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e6, 6.1e-5, 6.103515625e-5, 6.0e-5, 3e-8, 2.98e-8, 1e-10,
  ];
  const ties = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2048 + 1, 2048 + 3, 0.5 + 2 ** -12, -(1 + 2 ** -11)];
  const special = [NaN, Infinity, -Infinity];
  const r = randn(20000, 5);
  const x = Float32Array.from([...edges, ...ties, ...special, ...Array.from(r, (v, i) => v * 10 ** ((i % 14) - 9))]);
  const want = new Uint32Array(float16ToFloat32(float32ToFloat16(x)).buffer);
  const got = new Uint32Array(roundToFloat16(x).buffer);
  for (let i = 0; i < x.length; i++) assert.equal(got[i], want[i], `x = ${x[i]}`);
});

test('sparsePartStats reads the zeros and the N:M check from the codes as dequantize + checkNM do', () => {
  const quant = (rows: number, cols: number, bs: number, seed: number) => {
    const r = randn(rows * cols + rows * 8, seed);
    const blocksPerRow = Math.ceil(cols / bs);
    const zeroPoints = new Uint8Array(rows * blocksPerRow).fill(8);
    const scales = Float32Array.from({ length: rows * blocksPerRow }, (_, i) => (i % 7 === 3 ? 0 : r[i] * 0.1));
    // 2:4-ish codes: two of every four at the zero point, sometimes a third kept (a violation), sometimes all four.
    const codes = Uint8Array.from({ length: rows * cols }, (_, i) =>
      i % 4 < 2 || (i % 97 === 0 && seed % 2 === 0) ? (r[i] > 0 ? 9 : 3) : i % 5 === 0 ? 8 : 8,
    );
    return { rows, cols, bits: 4 as const, blockSize: bs, blocksPerRow, symmetric: true, codes, scales, zeroPoints };
  };
  for (const [rows, cols, bs, seed] of [
    [5, 64, 32, 1],
    [5, 64, 32, 2],
    [7, 30, 6, 3], // groups straddle blocks, a short last group
    [3, 40, 40, 4],
    [4, 26, 6, 5], // m = 3 inside blocks of 6, a short last block and group
  ]) {
    const q = quant(rows, cols, bs, seed);
    for (const [n, m] of [
      [2, 4],
      [1, 4],
      [3, 4],
      [1, 3],
      [2, 3],
    ]) {
      const d = dequantize(q);
      let zeros = 0;
      for (const v of d) if (v === 0) zeros++;
      const got = sparsePartStats(q, n, m);
      assert.deepEqual(got, { zeros, nmOk: checkNM(d, rows, cols, n, m).ok }, `${rows}×${cols} g${bs} ${n}:${m}`);
    }
  }
  // Non-finite scales: NaN values count as non-zeros, as checkNM counts them.
  const q = quant(2, 8, 4, 1);
  q.scales[0] = NaN;
  const d = dequantize(q);
  assert.deepEqual(sparsePartStats(q, 2, 4), {
    zeros: d.filter((v) => v === 0).length,
    nmOk: checkNM(d, 2, 8, 2, 4).ok,
  });
});

test('sparsePartStats: the word-at-a-time N:4 count equals the per-code one for every code and zero point', () => {
  // Random codes over all 16 values and random zero points (every byte pattern of x = codes ^ zp), some zero and
  // non-finite scales; the same matrix with its codes at an odd byte offset takes the per-code loop.
  const rows = 9;
  const cols = 96;
  const bs = 32;
  const blocksPerRow = cols / bs;
  const r = randn(rows * cols + 2 * rows * blocksPerRow, 17);
  const codes = Uint8Array.from({ length: rows * cols }, (_, i) => Math.floor(((r[i] * 1e4) % 16) + 16) % 16);
  const zeroPoints = Uint8Array.from({ length: rows * blocksPerRow }, (_, i) => (i % 3 ? 8 : i % 16));
  const scales = Float32Array.from({ length: rows * blocksPerRow }, (_, i) =>
    i === 4 ? 0 : i === 7 ? Infinity : 0.1 + Math.abs(r[rows * cols + i]),
  );
  // Runs of zero-point codes so that some groups hold 0, 1 or 2 kept codes.
  for (let i = 0; i < codes.length; i++) if (i % 13 < 5) codes[i] = zeroPoints[Math.floor(i / bs)];
  const q = { rows, cols, bits: 4 as const, blockSize: bs, blocksPerRow, symmetric: true, codes, scales, zeroPoints };
  const odd = new Uint8Array(codes.length + 1).subarray(1);
  odd.set(codes);
  const d = dequantize(q);
  for (const n of [1, 2, 3, 4]) {
    const want = { zeros: d.filter((v) => v === 0).length, nmOk: checkNM(d, rows, cols, n, 4).ok };
    assert.deepEqual(sparsePartStats(q, n, 4), want, `${n}:4`);
    assert.deepEqual(sparsePartStats({ ...q, codes: odd }, n, 4), want, `${n}:4 unaligned`);
  }
});

test('gaussian: the same Ω for the same size and seed, a fresh copy each time', () => {
  const a = gaussian(1000, 3);
  a[0] = 123;
  const b = gaussian(1000, 3);
  assert.notEqual(b[0], 123);
  assert.deepEqual(gaussian(1000, 3), b);
  assert.notDeepEqual(gaussian(1000, 4), b);
  assert.deepEqual(gaussian(1000, 3), b);
});

test('slimLayer scratch: a reused, dirty buffer gives the same layer as a fresh one', async () => {
  const { w, h, xNorm } = setup();
  const scratch = new Float32Array(N * K + 100).fill(NaN);
  for (const v of [
    {},
    { criterion: 'sparsegpt' as const, saliency: 'whitened' as const },
    { rankRatio: 0 },
    { refitIterations: 1, quantizeAdapters: true },
  ]) {
    const o = { ...base, ...v, error: (x: Float32Array) => relativeOutputError(w, x, N, K, h) };
    const fresh = await slimLayer(w, N, K, { xNorm, hessian: h }, o);
    const reused = await slimLayer(w, N, K, { xNorm, hessian: h }, { ...o, scratch });
    assert.deepEqual(reused.quantized, fresh.quantized);
    assert.deepEqual(reused.adapter, fresh.adapter);
    assert.deepEqual(reused.errors, fresh.errors);
    assert.deepEqual(reused.effective, fresh.effective);
    scratch.fill(NaN);
  }
  await assert.rejects(slimLayer(w, N, K, { xNorm }, { ...base, scratch: new Float32Array(N * K - 1) }), /scratch/);
});

test('slimLayer errorHessian: the errors from shared products equal relativeOutputError per candidate', async () => {
  const { w, h, xNorm } = setup();
  const error = (wHat: Float32Array) => relativeOutputError(w, wHat, N, K, h);
  for (const v of [
    {},
    { saliency: 'whitened' as const, refitIterations: 2 },
    { criterion: 'sparsegpt' as const, saliency: 'whitened' as const, adapterStorage: 'float16' as const },
    { quantizeAdapters: true, stageErrors: false },
    { rankRatio: 0 },
  ]) {
    const o = { ...base, ...v, error };
    const brute = await slimLayer(w, N, K, { xNorm, hessian: h }, o);
    let calls = 0;
    const shared = await slimLayer(
      w,
      N,
      K,
      { xNorm, hessian: h },
      {
        ...o,
        error: (x) => (calls++, error(x)),
        errorHessian: h,
      },
    );
    const label = JSON.stringify(v);
    assert.equal(calls, 0, label);
    assert.deepEqual(shared.quantized.codes, brute.quantized.codes, label);
    assert.deepEqual(shared.effective, brute.effective, label);
    assertStageErrorsClose(shared.errors, brute.errors, label);
  }
});

test('slimLayer errorHessianReference: a given tr(W·H·Wᵀ) from the calibration pass is the denominator of the errors', async () => {
  const { w, h, xNorm } = setup();
  // tr(W·H·Wᵀ) in float64: what LayerStats.outputTraces carries for a plain MatMul.
  let trace = 0;
  for (let n = 0; n < N; n++)
    for (let i = 0; i < K; i++) {
      let hw = 0;
      for (let j = 0; j < K; j++) hw += h[i * K + j] * w[n * K + j];
      trace += w[n * K + i] * hw;
    }
  const o = { ...base, saliency: 'whitened' as const, errorHessian: h };
  const measured = await slimLayer(w, N, K, { xNorm, hessian: h }, o);
  const given = await slimLayer(w, N, K, { xNorm, hessian: h }, { ...o, errorHessianReference: trace });
  assertStageErrorsClose(given.errors, measured.errors, 'exact trace');
  assert.deepEqual(given.quantized.codes, measured.quantized.codes);
  // Four times the trace halves every error: the given value is used, not re-measured.
  const scaled = await slimLayer(w, N, K, { xNorm, hessian: h }, { ...o, errorHessianReference: 4 * trace });
  const halve = (e: StageErrors): StageErrors => ({
    beforeAdapter: e.beforeAdapter! / 2,
    afterAdapter: e.afterAdapter === null ? null : e.afterAdapter / 2,
    afterFinalRequant: e.afterFinalRequant === null ? null : e.afterFinalRequant / 2,
    refits: e.refits.map((x) => (x === null ? null : x / 2)),
    final: e.final! / 2,
  });
  assertStageErrorsClose(scaled.errors, halve(measured.errors), '4 × trace');
  // A non-finite trace is ignored (measured as before).
  const nan = await slimLayer(w, N, K, { xNorm, hessian: h }, { ...o, errorHessianReference: NaN });
  assert.deepEqual(nan.errors, measured.errors);
});

type StageErrors = Awaited<ReturnType<typeof slimLayer>>['errors'];

/** Every stage error of `got` equals `want` to 1e-5 relative (null where want is null). */
function assertStageErrorsClose(gotErrors: StageErrors, wantErrors: StageErrors, label: string): void {
  const flat = (e: StageErrors) => [e.beforeAdapter, e.afterAdapter, e.afterFinalRequant, ...e.refits, e.final];
  const [got, want] = [flat(gotErrors), flat(wantErrors)];
  assert.equal(got.length, want.length, label);
  for (let i = 0; i < got.length; i++) {
    if (want[i] === null) assert.equal(got[i], null, `${label} #${i}`);
    else assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5 * want[i]!, `${label} #${i}: ${got[i]} vs ${want[i]}`);
  }
}

test('gaussian: sizes drawn in turn (the widths of a block) keep their own Ω', () => {
  const a = gaussian(1000, 3);
  const b = gaussian(2000, 3);
  const c = gaussian(300, 5);
  for (let round = 0; round < 3; round++) {
    assert.deepEqual(gaussian(1000, 3), a);
    assert.deepEqual(gaussian(2000, 3), b);
    assert.deepEqual(gaussian(300, 5), c);
  }
  assert.equal(b.length, 2000);
  assert.deepEqual(b.subarray(0, 1000), gaussian(2000, 3).subarray(0, 1000));
});
