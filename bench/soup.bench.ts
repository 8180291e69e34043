// Soup kernels on flat tensors, each as a ratio to copying the same float32 bytes (Float32Array.set) in the same run:
// adding ingredients into the float64 sum, the masked mean written back to float32, zero-pattern extraction +
// comparison, and the global magnitude selection of a next phase (a native sort of the magnitudes).
// Run: npx tsx bench/soup.bench.ts [--m 16] [--n 4] [--reps 3]   (--m: millions of parameters per ingredient)
// Timings on a shared machine are noisy: re-run when it is quiet before quoting them.
import { TensorSum } from '../packages/engine/soup/average.js';
import { firstMaskDifference, nonzeroMask } from '../packages/engine/soup/masks.js';
import { pruneRemaining } from '../packages/engine/soup/magnitude.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const size = Math.round(arg('m', 16) * 1e6);
const n = arg('n', 4);
const reps = arg('reps', 3);

let seed = 11;
function ingredient(): Float32Array {
  const w = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    // 2:4-like: every other weight zero, the rest uniform in ±0.5
    w[i] = i % 2 ? 0 : (seed >>> 8) / 2 ** 24 - 0.5;
  }
  return w;
}
const tensors = Array.from({ length: n }, ingredient);
const mask = nonzeroMask(tensors[0]);

function best(fn: () => void): number {
  let t = Infinity;
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    fn();
    t = Math.min(t, performance.now() - s);
  }
  return t;
}

const dst = new Float32Array(size);
const copy = best(() => {
  for (const t of tensors) dst.set(t);
});
const add = best(() => {
  const acc = new TensorSum(size);
  for (const t of tensors) acc.add(t);
});
const acc = new TensorSum(size);
for (const t of tensors) acc.add(t);
const mean = best(() => acc.meanInto(dst, mask));
const masks = best(() => {
  for (const t of tensors.slice(1)) firstMaskDifference(mask, nonzeroMask(t));
});
const prune = best(() => pruneRemaining([tensors[0]], 0.5, 'global'));

const rows: [string, number, number][] = [
  [`copy ${n}× ${size / 1e6}M float32 (baseline)`, copy, 1],
  [`add ${n} ingredients into the float64 sum`, add, add / copy],
  [`masked mean → float32 (1 tensor)`, mean, (mean * n) / copy],
  [`zero patterns: extract + compare ${n - 1}`, masks, masks / copy],
  [`next phase: global magnitude 50% of remaining (1 tensor)`, prune, (prune * n) / copy],
];
console.log(`soup kernels, ${size / 1e6}M parameters per ingredient, ${n} ingredients, best of ${reps}`);
console.log('| step | ms | ratio to copy (per same bytes) |\n|---|---|---|');
for (const [name, ms, ratio] of rows) console.log(`| ${name} | ${ms.toFixed(1)} | ${ratio.toFixed(2)} |`);
