// Packed 2:4 + 4-bit (`packed: true`) against the same output unpacked, on a generated LLM-shaped model
// (bench/lib/llm-model.ts): file size, code bytes, session start and inference latency in ONNX Runtime (the unpack
// is constant-folded at session start, so the running graphs are the same and the latency ratio should be ~1).
// Rows: quantize (RTN g32) of a 2:4 magnitude-pruned model, and SLiM (wanda 2:4 + RTN g32 + r = 0.1 fp16 adapters).
//
//   npx tsx bench/packed24-nbits.bench.ts [--params 5M|20M] [--runs 30]
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { runRecipe } from '../packages/engine/run.js';
import type { Recipe } from '../packages/engine/recipe.js';
import { llmPreset, llmTokenIds, writeLlmCalibration, writeLlmModel } from './lib/llm-model.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const shape = llmPreset(arg('params', '5M'));
const runs = Number(arg('runs', '30'));
const seq = 64;

async function sizeOf(dir: string): Promise<number> {
  let total = (await stat(join(dir, 'model.onnx'))).size;
  try {
    total += (await stat(join(dir, 'model.onnx.data'))).size;
  } catch {
    // inline weights
  }
  return total;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Session start and p50 latency of two models, runs interleaved so that load on the machine hits both alike. */
async function timePair(a: string, b: string, ids: BigInt64Array) {
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };
  const start = async (p: string) => {
    const t0 = performance.now();
    const s = await ort.InferenceSession.create(p, opts);
    return { s, ms: performance.now() - t0 };
  };
  const sa = await start(a);
  const sb = await start(b);
  const feeds = { input_ids: new ort.Tensor('int64', ids, [1, seq]) };
  const ta: number[] = [];
  const tb: number[] = [];
  let same = true;
  for (let i = 0; i < runs; i++) {
    for (const [x, t] of [
      [sa.s, ta],
      [sb.s, tb],
    ] as const) {
      const t0 = performance.now();
      await x.run(feeds);
      t.push(performance.now() - t0);
    }
  }
  const ya = (await sa.s.run(feeds))[sa.s.outputNames[0]].data as Float32Array;
  const yb = (await sb.s.run(feeds))[sb.s.outputNames[0]].data as Float32Array;
  for (let i = 0; i < ya.length; i++) if (ya[i] !== yb[i]) same = false;
  await sa.s.release();
  await sb.s.release();
  return { startA: sa.ms, startB: sb.ms, p50A: median(ta), p50B: median(tb), same };
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'packed-bench-'));
  try {
    const files = await writeLlmModel(dir, shape);
    const calib = join(dir, 'calib.npz');
    await writeLlmCalibration(calib, shape, { samples: 16, seq, seed: 7 });
    const ids = llmTokenIds(shape, { samples: 1, seq, seed: 99 });
    console.log(`model: ${files.params.toLocaleString()} parameters, random weights; lm_head kept dense; ${runs} runs`);
    const sparse = join(dir, 'sparse');
    await runRecipe({ method: 'sparsity', pattern: '2:4', exclude: ['lm_head*'] } as Recipe, {
      modelPath: files.modelPath,
      outputDir: sparse,
    });
    const cases: [string, string, Record<string, unknown>][] = [
      [
        'quantize RTN g32 of a 2:4 model',
        join(sparse, 'model.onnx'),
        { method: 'quantize', quant: { bits: 4, groupSize: 32 }, accuracyLevel: 0, exclude: ['lm_head*'] },
      ],
      [
        'SLiM wanda 2:4 + RTN g32 + r=0.1 (fp16 adapters)',
        files.modelPath,
        {
          method: 'slim',
          criterion: 'wanda',
          quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
          lowRank: { rankRatio: 0.1, saliency: 'slim' },
          accuracyLevel: 0,
          exclude: ['lm_head*'],
        },
      ],
    ];
    console.log(
      '\n| output | file unpacked → packed | codes unpacked → packed | session start | p50 latency (batch 1, ' +
        `${seq} tokens) | outputs |\n|---|---|---|---|---|---|`,
    );
    for (const [label, model, recipe] of cases) {
      const plain = join(dir, `${label.length}-plain`);
      const packed = join(dir, `${label.length}-packed`);
      await runRecipe(recipe as Recipe, { modelPath: model, outputDir: plain, calibrationPath: calib });
      const r = await runRecipe({ ...recipe, packed: true } as Recipe, {
        modelPath: model,
        outputDir: packed,
        calibrationPath: calib,
      });
      const p = r.report.packed as { codeBytesBefore: number; codeBytesAfter: number; layers: unknown[] };
      const a = await sizeOf(plain);
      const b = await sizeOf(packed);
      const t = await timePair(join(plain, 'model.onnx'), join(packed, 'model.onnx'), ids);
      const mb = (x: number) => (x / 2 ** 20).toFixed(2);
      console.log(
        `| ${label} (${p.layers.length} layers packed) | ${mb(a)} → ${mb(b)} MiB (**${((1 - b / a) * 100).toFixed(1)} % smaller**) | ` +
          `${mb(p.codeBytesBefore)} → ${mb(p.codeBytesAfter)} MiB (${(p.codeBytesAfter / p.codeBytesBefore).toFixed(3)}×) | ` +
          `${t.startA.toFixed(0)} → ${t.startB.toFixed(0)} ms | ${t.p50A.toFixed(2)} → ${t.p50B.toFixed(2)} ms ` +
          `(**${(t.p50B / t.p50A).toFixed(3)}×**) | ${t.same ? 'identical' : 'DIFFER'} |`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
