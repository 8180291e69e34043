// SLiM's compress stage per layer shape, as bench/llm.bench.ts's slim recipe runs it (Wanda 2:4 mask, RTN 4-bit g32,
// adapters rank 0.1·min(N, K) under the 'slim' saliency, stored float16, layer errors on a 256-row sample of X as the
// runner measures them for a method without a Hessian): slimLayer's seconds per step and CPU seconds per shape, with
// the errors from shared products (errorRows, what methods/slim.ts passes) and, with --callback, from one
// X·(W − Ŵ)ᵀ per candidate (the `error` callback alone) for comparison.
// Run: npx tsx bench/slim-layers.bench.ts [--shapes 2048x768,768x2048,32000x768 (N×K)] [--rows 256] [--repeat 2]
//      [--callback]
// Timings on a shared machine are noisy: compare CPU seconds, or runs made in the same process.
import { cpus, loadavg } from 'node:os';
import { relativeOutputErrorOnRows } from '../packages/engine/math/relerr.js';
import { slimLayer, type SlimLayerOptions } from '../packages/engine/quant/slim-layer.js';

const get = (name: string, d: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : d;
};
const shapes = get('shapes', '2048x768,768x2048,32000x768')
  .split(',')
  .map((s) => s.split('x').map(Number));
const rows = Number(get('rows', '256'));
const repeat = Number(get('repeat', '2'));

let seed = 11;
function randn(): number {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  const u = (seed + 0.5) / 4294967296;
  seed = (seed * 1664525 + 1013904223) >>> 0;
  const v = (seed + 0.5) / 4294967296;
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

console.log(
  `load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')} on ${cpus().length} cores; ${rows} error rows`,
);
const o: SlimLayerOptions = {
  n: 2,
  m: 4,
  criterion: 'wanda',
  quant: { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true },
  rankRatio: 0.1,
  saliency: 'slim',
  refitIterations: 0,
  quantizeAdapters: false,
  adapterStorage: 'float16',
};
for (const [N, K] of shapes) {
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = randn() * 0.02;
  const x = new Float32Array(rows * K);
  for (let i = 0; i < x.length; i++) x[i] = randn() * ((i % K) % 97 === 0 ? 10 : 1);
  const xNorm = new Float64Array(K);
  for (let t = 0; t < rows; t++) for (let k = 0; k < K; k++) xNorm[k] += x[t * K + k] ** 2 / rows;
  for (let k = 0; k < K; k++) xNorm[k] = Math.sqrt(xNorm[k]);
  const routes = process.argv.includes('--callback') ? ['rows', 'callback'] : ['rows'];
  for (let rep = 0; rep < repeat; rep++)
    for (const route of routes) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const res = await slimLayer(
        w,
        N,
        K,
        { xNorm },
        {
          ...o,
          error: (wHat) => relativeOutputErrorOnRows(w, wHat, N, K, x, rows),
          stageErrors: N * K * K <= 2 ** 33,
          ...(route === 'rows' ? { errorRows: { x, rows } } : {}),
        },
      );
      const sec = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const e = res.errors;
      console.log(
        `${N}×${K} r=${res.adapter?.rank} ${route}: ${sec.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU; ` +
          Object.entries(res.timings)
            .map(([k, v]) => `${k} ${v.toFixed(3)}`)
            .join(', ') +
          `; errors ${[e.beforeAdapter, e.afterAdapter, e.afterFinalRequant, e.final].map((v) => v?.toFixed(6)).join(' ')}`,
      );
    }
}
