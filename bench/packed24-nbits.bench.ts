// Packed 2:4 + 4-bit (`packed: true`) against the same output unpacked, on a generated LLM-shaped model
// (bench/lib/llm-model.ts): file size, code bytes, session start and inference latency in ONNX Runtime (the unpack
// is constant-folded at session start, so the running graphs are the same and the latency ratio should be ~1).
// Rows: quantize (RTN g32) of a 2:4 magnitude-pruned model, and SLiM (wanda 2:4 + RTN g32 + r = 0.1 fp16 adapters).
//
// Session start is the median of --starts creations per model (wall and this process's CPU time; ORT folds the unpack
// on one thread, so CPU time is the figure machine load inflates least), models interleaved, and is also taken for
// the dense (fp32) input. The unpacked model is the first timed, so outputs are compared with it.
//
//   npx tsx bench/packed24-nbits.bench.ts [--params 5M|20M] [--runs 30] [--starts 5]
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
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
const starts = Number(arg('starts', '5'));
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

/**
 * Session start (median wall and CPU ms of `starts` creations, models interleaved) and p50 latency of each model
 * (runs interleaved so that load on the machine hits all alike); whether each output equals the first model's.
 */
async function timeModels(paths: string[], ids: BigInt64Array) {
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };
  const wall: number[][] = paths.map(() => []);
  const cpu: number[][] = paths.map(() => []);
  for (let r = 0; r < starts; r++) {
    for (const [i, p] of paths.entries()) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const s = await ort.InferenceSession.create(p, opts);
      wall[i].push(performance.now() - t0);
      const c = process.cpuUsage(c0); // ORT folds on one thread of this process: CPU time is what load inflates least
      cpu[i].push((c.user + c.system) / 1000);
      await s.release();
    }
  }
  const sessions: ort.InferenceSession[] = [];
  for (const p of paths) sessions.push(await ort.InferenceSession.create(p, opts));
  const feeds = { input_ids: new ort.Tensor('int64', ids, [1, seq]) };
  const times: number[][] = paths.map(() => []);
  const runCpu: number[][] = paths.map(() => []);
  for (let i = 0; i < runs; i++) {
    // each round starts at the next model, so no model always runs after the same one (a fixed order gave the same
    // graph 0.73–0.85× of itself at load 20; load noise dominates either way, hence the CPU column)
    for (let o = 0; o < sessions.length; o++) {
      const j = (i + o) % sessions.length;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await sessions[j].run(feeds);
      times[j].push(performance.now() - t0);
      const c = process.cpuUsage(c0); // one intra-op thread: the CPU time of a run is its work, waits for a core excluded
      runCpu[j].push((c.user + c.system) / 1000);
    }
  }
  const ys: Float32Array[] = [];
  for (const s of sessions) ys.push((await s.run(feeds))[s.outputNames[0]].data as Float32Array);
  for (const s of sessions) await s.release();
  return paths.map((_, i) => ({
    startWall: median(wall[i]),
    startCpu: median(cpu[i]),
    p50: median(times[i]),
    p50Cpu: median(runCpu[i]),
    sameAsFirst: ys[i].every((v, k) => v === ys[0][k]),
  }));
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'packed-bench-'));
  try {
    const files = await writeLlmModel(dir, shape);
    const calib = join(dir, 'calib.npz');
    await writeLlmCalibration(calib, shape, { samples: 16, seq, seed: 7 });
    const ids = llmTokenIds(shape, { samples: 1, seq, seed: 99 });
    console.log(
      `load average before: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(', ')} (${cpus().length} cores)`,
    );
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
      '\n| output | file unpacked → packed | codes unpacked → packed | session start wall (CPU) ms: dense / unpacked / ' +
        `packed | p50 latency wall (CPU) ms, batch 1 × ${seq} tokens: dense / unpacked / packed | outputs |\n|---|---|---|---|---|---|`,
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
      // dense = the method's input (fp32): the start-up and speed a user compares both with
      const [d, u, k] = await timeModels([join(plain, 'model.onnx'), join(packed, 'model.onnx'), model], ids).then(
        (t) => [t[2], t[0], t[1]],
      );
      const mb = (x: number) => (x / 2 ** 20).toFixed(2);
      const ms = (x: number) => x.toFixed(0);
      const lat = (x: { p50: number; p50Cpu: number }) => `${x.p50.toFixed(2)} (${x.p50Cpu.toFixed(2)})`;
      console.log(
        `| ${label} (${p.layers.length} layers packed) | ${mb(a)} → ${mb(b)} MiB (**${((1 - b / a) * 100).toFixed(1)} % smaller**) | ` +
          `${mb(p.codeBytesBefore)} → ${mb(p.codeBytesAfter)} MiB (${(p.codeBytesAfter / p.codeBytesBefore).toFixed(3)}×) | ` +
          `${ms(d.startWall)} (${ms(d.startCpu)}) / ${ms(u.startWall)} (${ms(u.startCpu)}) / ${ms(k.startWall)} ` +
          `(${ms(k.startCpu)}): packed/unpacked **${(k.startWall / u.startWall).toFixed(2)}×** (CPU ` +
          `${(k.startCpu / u.startCpu).toFixed(2)}×) | ${lat(d)} / ${lat(u)} / ${lat(k)}: packed/unpacked ` +
          `**${(k.p50 / u.p50).toFixed(3)}×** (CPU ${(k.p50Cpu / u.p50Cpu).toFixed(3)}×) | ${k.sameAsFirst ? 'identical' : 'DIFFER'} |`,
      );
    }
    console.log(
      `\nload average after: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(', ')} (${cpus().length} cores)`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
