// Recipe search (issue 14) on the LLM-shaped generator (bench/lib/llm-model.ts, RANDOM weights): the whole search
// with the default space and maxTrials 24 — trials, seconds per trial, seconds per stage — against every uniform
// candidate of that space run as its own standalone job on the same files in the same run (calibration, compression,
// evaluation and, for quantize/slim, latency included): the ratio search ÷ most expensive standalone job (target ≤
// 10×), and the chosen model's bytes against each uniform candidate that also meets the budget (per-layer mixing
// must earn its keep: the table says where it does not, with the numbers).
// A uniform "N:M + int4 without adapters" (slim rankRatio 0) has no single public recipe (slim's schema wants
// rankRatio > 0): it runs as a search whose space is that one choice, perLayer false, maxTrials 1.
//
// Run: npx tsx bench/search.bench.ts [--params 100M|20M|5M] [--budget fidelity:0.1|perplexity:0.02|…]
//        [--max-trials 24] [--samples 16] [--eval-samples 8] [--seq 64] [--no-uniform] [--json FILE] [--svg FILE]
// Quality on random weights describes reconstruction of random layers, not language modelling.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobResult } from '../packages/engine/job.js';
import { parseRecipe, type Recipe, type SearchBudget } from '../packages/engine/recipe.js';
import { runRecipe } from '../packages/engine/run.js';
import { deltaOf, withinBudget } from '../packages/engine/search/budget.js';
import { choiceLabel, expandSpace, stepsOf, type SearchChoice } from '../packages/engine/search/space.js';
import { llmParams, llmPreset, writeLlmCalibration, writeLlmModel } from './lib/llm-model.js';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function parseBudget(s: string): SearchBudget {
  const [metric, v] = s.split(':');
  const x = Number(v);
  if (metric === 'perplexity') return { metric, maxRelativeIncrease: x };
  if (metric === 'accuracy') return { metric, maxDrop: x };
  if (metric === 'fidelity') return { metric, maxOutputError: x };
  throw new Error(`--budget: expected fidelity:X, perplexity:X or accuracy:X, got ${s}`);
}

interface Uniform {
  label: string;
  seconds: number;
  bytes: number;
  metric: number | null;
  delta: number | null;
  within: boolean;
  how: string;
}

/** The budget metric of a finished job, from the runner's own evaluation of model.onnx. */
function metricOf(r: JobResult, budget: SearchBudget): number | null {
  const q = r.report.quality as { relativeError?: number; compressed?: { perplexity?: number; accuracy?: number } };
  if (budget.metric === 'fidelity') return q.relativeError ?? null;
  if (budget.metric === 'perplexity') return q.compressed?.perplexity ?? null;
  return q.compressed?.accuracy ?? null;
}

function denseOf(r: JobResult, budget: SearchBudget): number {
  const q = r.report.quality as { dense?: { perplexity?: number; accuracy?: number } };
  if (budget.metric === 'fidelity') return 0;
  return (budget.metric === 'perplexity' ? q.dense?.perplexity : q.dense?.accuracy) ?? NaN;
}

async function standalone(
  c: SearchChoice,
  files: { modelPath: string; calibrationPath: string; evalPath: string },
  budget: SearchBudget,
  common: Partial<Recipe>,
  out: string,
): Promise<Uniform> {
  const step = stepsOf(c, 'size')[0];
  let recipe: Recipe;
  let how = 'its own recipe';
  try {
    recipe = parseRecipe({ ...step, ...common, accuracyLevel: 'auto' } as Recipe);
  } catch {
    how = 'one-choice search';
    recipe = { method: 'search', budget, space: spaceOf(c), perLayer: false, maxTrials: 1, ...common } as Recipe;
  }
  const t0 = performance.now();
  try {
    const r = await runRecipe(recipe, { ...files, outputDir: out });
    const seconds = (performance.now() - t0) / 1000;
    const metric = metricOf(r, budget);
    const delta = metric === null ? null : deltaOf(budget, metric, denseOf(r, budget));
    const bytes = r.report.sizes.outputBytes;
    return {
      label: choiceLabel(c),
      seconds,
      bytes,
      metric,
      delta,
      within: delta !== null && withinBudget(budget, delta),
      how,
    };
  } catch (e) {
    const seconds = (performance.now() - t0) / 1000;
    const s = (e as { report?: { search?: { points?: { bytes: number; metric: number; delta: number }[] } } }).report;
    const p = s?.search?.points?.[0];
    if (!p) throw e;
    return { label: choiceLabel(c), seconds, bytes: p.bytes, metric: p.metric, delta: p.delta, within: false, how };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** The one-choice space of a choice. */
function spaceOf(c: SearchChoice): Record<string, unknown> {
  if (c.kind === 'quantize')
    return { methods: ['quantize'], bits: [c.bits], groupSize: [c.groupSize], schemes: [c.scheme] };
  if (c.kind === 'sparsity') return { methods: ['sparsity'], patterns: [c.pattern], criteria: [c.criterion] };
  return {
    methods: ['slim'],
    patterns: [c.pattern],
    criteria: [c.criterion],
    bits: [c.bits],
    groupSize: [c.groupSize],
    schemes: [c.scheme],
    rankRatio: [c.rankRatio],
  };
}

const f2 = (x: number | null) => (x === null ? '—' : x.toFixed(4));
const mb = (b: number) => (b / 1e6).toFixed(2);

async function main(): Promise<void> {
  const size = flag('params', '100M');
  const shape = llmPreset(size);
  const budget = parseBudget(flag('budget', 'fidelity:0.1'));
  const maxTrials = Number(flag('max-trials', '24'));
  const samples = Number(flag('samples', '16'));
  const evalSamples = Number(flag('eval-samples', '8'));
  const seq = Number(flag('seq', '64'));
  const dir = await mkdtemp(join(tmpdir(), 'search-bench-'));
  console.log(
    `# search bench: ${size} (${(llmParams(shape) / 1e6).toFixed(1)} M params), budget ${JSON.stringify(budget)}`,
  );
  console.log(
    `# ${cpus().length} cores, load ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}; calib ${samples}×${seq}, eval ${evalSamples}×${seq}`,
  );
  try {
    const model = await writeLlmModel(dir, shape);
    const calibrationPath = join(dir, 'calib.npz');
    const evalPath = join(dir, 'eval.npz');
    await writeLlmCalibration(calibrationPath, shape, { samples, seq, seed: 7 });
    await writeLlmCalibration(evalPath, shape, { samples: evalSamples, seq, seed: 99 });
    const files = { modelPath: model.modelPath, calibrationPath, evalPath };
    const common = { calibration: { samples }, exclude: ['*lm_head*'] } as Partial<Recipe>;

    const t0 = performance.now();
    const res = await runRecipe({ method: 'search', budget, maxTrials, ...common } as Recipe, {
      ...files,
      outputDir: join(dir, 'search-out'),
    });
    const searchSeconds = (performance.now() - t0) / 1000;
    const s = res.report.search as {
      trials: { used: number };
      seconds: Record<string, number>;
      secondsPerTrial: number;
      chosen: { trial: number; kind: string; bytes: number; metric: number; delta: number; plan: { counts?: unknown } };
      points: { trial: number; kind: string; bytes: number; metric: number; withinBudget: boolean }[];
    };
    console.log(
      `\nsearch: ${searchSeconds.toFixed(1)} s wall, ${s.trials.used} trials, ${s.secondsPerTrial?.toFixed(2)} s per trial`,
    );
    console.log(
      `  stages: ${Object.entries(s.seconds)
        .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
        .join(', ')}`,
    );
    console.log(
      `  chosen: trial ${s.chosen.trial} (${s.chosen.kind}) ${mb(s.chosen.bytes)} MB, metric ${f2(s.chosen.metric)}, delta ${f2(s.chosen.delta)} ${JSON.stringify(s.chosen.plan.counts ?? '')}`,
    );
    const svgOut = flag('svg', '');
    if (svgOut) await copyFile(join(dir, 'search-out', 'pareto.svg'), svgOut);

    if (process.argv.includes('--no-uniform')) return;
    const rows: Uniform[] = [];
    for (const c of expandSpace(undefined)) {
      const u = await standalone(c, files, budget, common, join(dir, 'uniform-out'));
      rows.push(u);
      console.log(
        `  uniform ${u.label.padEnd(34)} ${u.seconds.toFixed(1).padStart(6)} s ${mb(u.bytes).padStart(8)} MB  metric ${f2(u.metric)}  ${u.within ? 'within' : 'over  '}  (${u.how})`,
      );
    }
    const worst = rows.reduce((a, b) => (b.seconds > a.seconds ? b : a));
    console.log(
      `\nsearch ÷ most expensive standalone candidate (${worst.label}, ${worst.seconds.toFixed(1)} s): ${(searchSeconds / worst.seconds).toFixed(2)}× (target ≤ 10×)`,
    );
    const meeting = rows.filter((r) => r.within);
    const beaten = meeting.filter((r) => s.chosen.bytes < r.bytes);
    console.log(
      `uniform candidates within budget: ${meeting.length}; chosen (${mb(s.chosen.bytes)} MB) smaller than ${beaten.length} of them`,
    );
    for (const r of meeting)
      console.log(
        `  ${r.label.padEnd(34)} ${mb(r.bytes)} MB → chosen is ${((s.chosen.bytes / r.bytes) * 100).toFixed(1)}% of it ${s.chosen.bytes < r.bytes ? '✔' : '✘'}`,
      );
    const json = flag('json', '');
    if (json) await writeFile(json, JSON.stringify({ size, budget, searchSeconds, search: s, uniform: rows }, null, 2));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
