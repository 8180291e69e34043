// ONNX model IO on a synthetic model of at least 512 MB of fp32 weights: decode, encode inline, encode to external
// data, and `convert` both ways (load + save, as the CLI does), each as a ratio to copying the same bytes in the
// same run. Target (issue 2): convert within 2× of a file copy. The encode rows save the default-loaded model, whose
// weights are still in the source file: they are copied from there through a 4 MiB buffer.
// Run: npx tsx bench/onnx-io.bench.ts [--mb 528] [--reps 5]
// Baselines: "read+write copy" reads the whole file into memory and writes it out (what any decoder/encoder must
// at least do); "fs.copyFile" lets the kernel copy (copy_file_range, no user-space pass) and is shown for reference.
// Timings on a shared machine are noisy: re-run when it is quiet before quoting them.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { GraphBuilder } from '../packages/engine/onnx/builder.js';
import { closeModel, loadModel, saveModel } from '../packages/engine/onnx/model.js';
import type { LoadedModel } from '../packages/engine/onnx/model.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const targetMb = arg('mb', 528);
const reps = arg('reps', 5);
const outDir = path.join(process.cwd(), 'bench', 'out', 'onnx-io');
fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });

/** MatMul chain with 2048×2048 fp32 weights (16 MiB each) until the target size is reached. */
function buildModel(): LoadedModel {
  const D = 2048;
  const layers = Math.ceil((targetMb * 2 ** 20) / (D * D * 4));
  const b = new GraphBuilder({ opset: 17 });
  let h = b.input('x', 'float32', [1, D]);
  const w = new Float32Array(D * D);
  let seed = 7;
  for (let l = 0; l < layers; l++) {
    for (let i = 0; i < w.length; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) | 0;
      w[i] = ((seed >>> 8) / 2 ** 24 - 0.5) / 32;
    }
    h = b.node('MatMul', [h, b.initializer(`W${l}`, 'float32', [D, D], w)], {}, { name: `mm${l}` });
  }
  b.output(h, 'float32', [1, D]);
  return b.build();
}

/** Seconds `fn` takes; its output files are removed afterwards so dirty pages do not pile up between runs. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  const t = (performance.now() - t0) / 1000;
  cleanOutputs();
  return t;
}

function cleanOutputs(): void {
  for (const f of fs.readdirSync(outDir)) if (!f.startsWith('source')) fs.rmSync(path.join(outDir, f));
}

/** Peak resident memory above the level before `fn` (sampled every 5 ms while it runs). */
async function peakRssAbove(fn: () => Promise<unknown>): Promise<number> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  cleanOutputs();
  return peak - base;
}

async function readWriteCopy(from: string, to: string): Promise<void> {
  const src = await fsp.open(from, 'r');
  const dst = await fsp.open(to, 'w');
  try {
    const size = (await src.stat()).size;
    const buf = Buffer.allocUnsafe(size); // whole file in memory, like a decoder holds it
    for (let off = 0; off < size;) off += (await src.read(buf, off, size - off, off)).bytesRead;
    for (let off = 0; off < size;) off += (await dst.write(buf, off, size - off, off)).bytesWritten;
  } finally {
    await src.close();
    await dst.close();
  }
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

const built = buildModel();
const source = path.join(outDir, 'source.onnx');
const sourceExt = path.join(outDir, 'source-ext.onnx');
await saveModel(built, source, { externalData: false });
await saveModel(built, sourceExt, { externalData: true });
closeModel(built);
const size = fs.statSync(source).size;
console.log(`model: ${mib(size)} inline (${source}); external: ${mib(fs.statSync(sourceExt + '.data').size)} data`);
console.log(`reps: ${reps} (median), machine: ${process.platform} ${process.arch}, node ${process.version}\n`);

const copyPath = path.join(outDir, 'copy.onnx');
const copyRw = () => readWriteCopy(source, copyPath);
const copyKernel = () => fsp.copyFile(source, copyPath);

let loaded = await loadModel(source);
const ops: [string, () => Promise<unknown>][] = [
  ['fs.copyFile (kernel copy, reference)', copyKernel],
  [
    // loadModel's default: the skeleton is parsed, raw_data ≥ 64 KiB stays in the file (read on demand, onnx/lazy.ts)
    'decode (skeleton; weights left in file)',
    async () => {
      closeModel(loaded);
      loaded = await loadModel(source);
    },
  ],
  [
    'decode whole file (read + parse + validate)',
    async () => closeModel(await loadModel(source, { lazyMinBytes: Infinity })),
  ],
  [
    'encode inline (stream write)',
    () => saveModel(loaded, path.join(outDir, 'enc-inline.onnx'), { externalData: false }),
  ],
  ['encode to external data', () => saveModel(loaded, path.join(outDir, 'enc-ext.onnx'), { externalData: true })],
  [
    'convert inline → external (load + save)',
    async () => {
      const m = await loadModel(source);
      await saveModel(m, path.join(outDir, 'conv-ext.onnx'), { externalData: true });
      closeModel(m);
    },
  ],
  [
    'convert external → inline (load + save)',
    async () => {
      const m = await loadModel(sourceExt);
      await saveModel(m, path.join(outDir, 'conv-inline.onnx'), { externalData: false });
      closeModel(m);
    },
  ],
];

// Each operation is timed right after its own baseline copy, rep by rep, so drift in disk/page-cache state on a
// shared machine hits both alike; the ratio column is the median of per-pair ratios.
const results = ops.map(() => ({ times: [] as number[], ratios: [] as number[], base: [] as number[] }));
for (let r = 0; r < reps; r++)
  for (const [i, [, fn]] of ops.entries()) {
    const base = await timed(copyRw);
    const t = await timed(fn);
    results[i].times.push(t);
    results[i].base.push(base);
    results[i].ratios.push(t / base);
  }
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rssInline = await peakRssAbove(() =>
  saveModel(loaded, path.join(outDir, 'enc-inline.onnx'), { externalData: false }),
);
const rssExt = await peakRssAbove(() => saveModel(loaded, path.join(outDir, 'enc-ext.onnx'), { externalData: true }));
closeModel(loaded);

const allBase = results.flatMap((x) => x.base);
console.log(
  `baseline read+write copy: median ${median(allBase).toFixed(3)} s (${(size / 2 ** 20 / median(allBase)).toFixed(0)} MiB/s), ` +
    `range ${Math.min(...allBase).toFixed(3)}–${Math.max(...allBase).toFixed(3)} s over ${allBase.length} runs\n`,
);
console.log('operation                                   median time   × read+write copy (median of pairs)');
for (const [i, [label]] of ops.entries())
  console.log(
    `${label.padEnd(42)} ${median(results[i].times).toFixed(3).padStart(7)} s   ${median(results[i].ratios).toFixed(2).padStart(8)}×`,
  );
console.log(
  `\npeak extra memory while encoding a loaded ${mib(size)} model: inline ${mib(rssInline)}, ` +
    `external ${mib(rssExt)} (a second copy of the weights would be ≥ ${mib(size)})`,
);
fs.rmSync(outDir, { recursive: true, force: true });
