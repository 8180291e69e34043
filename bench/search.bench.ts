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
//        [--max-trials 24] [--samples 16] [--eval-samples 8] [--seq 64] [--standalone heavy|all|none]
//        [--json FILE] [--svg FILE]
// --standalone heavy[:N] (default N = 3) runs as standalone jobs the N choices whose probe runs cost the most (the
// candidates for the most expensive job; every other choice is rounding or a mask); all runs every uniform
// candidate (the per-layer comparison); none (or --no-uniform) only the search. Seconds are wall clock and CPU
// (every thread of the process): on a shared machine the CPU ratio is the steadier one.
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
  /** CPU seconds of the process (all threads) during the job: comparable across runs on a loaded machine. */
  cpu: number;
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
  const c0 = process.cpuUsage();
  try {
    const r = await runRecipe(recipe, { ...files, outputDir: out });
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSince(c0);
    const metric = metricOf(r, budget);
    const delta = metric === null ? null : deltaOf(budget, metric, denseOf(r, budget));
    const bytes = r.report.sizes.outputBytes;
    return {
      label: choiceLabel(c),
      seconds,
      cpu,
      bytes,
      metric,
      delta,
      within: delta !== null && withinBudget(budget, delta),
      how,
    };
  } catch (e) {
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSince(c0);
    const s = (e as { report?: { search?: { points?: { bytes: number; metric: number; delta: number }[] } } }).report;
    const p = s?.search?.points?.[0];
    if (!p) throw e;
    return {
      label: choiceLabel(c),
      seconds,
      cpu,
      bytes: p.bytes,
      metric: p.metric,
      delta: p.delta,
      within: false,
      how,
    };
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

/** CPU seconds (user + system, every thread) since `c0`. */
function cpuSince(c0: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1e6;
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
    const c0 = process.cpuUsage();
    const res = await runRecipe({ method: 'search', budget, maxTrials, ...common } as Recipe, {
      ...files,
      outputDir: join(dir, 'search-out'),
    });
    const searchSeconds = (performance.now() - t0) / 1000;
    const searchCpu = cpuSince(c0);
    const s = res.report.search as {
      trials: { used: number };
      seconds: Record<string, number>;
      secondsPerTrial: number;
      chosen: { trial: number; kind: string; bytes: number; metric: number; delta: number; plan: { counts?: unknown } };
      points: {
        trial: number;
        kind: string;
        bytes: number;
        metric: number;
        withinBudget: boolean;
        seconds: number;
        plan: { uniform?: string; counts?: unknown };
      }[];
      sensitivity: { choice: string; source: string; seconds: number; bytes: number | null; damage: number | null }[];
      probes: Record<string, string>;
    };
    const stages = res.report.stages as { name: string; seconds: number }[];
    console.log(
      `\nsearch: ${searchSeconds.toFixed(1)} s wall (${searchCpu.toFixed(1)} s CPU), ${s.trials.used} trials, ${s.secondsPerTrial?.toFixed(2)} s per trial`,
    );
    console.log(`  job stages: ${stages.map((x) => `${x.name} ${x.seconds.toFixed(1)} s`).join(', ')}`);
    console.log(
      `  search stages: ${Object.entries(s.seconds)
        .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
        .join(', ')}`,
    );
    console.log(`  probe layers: ${JSON.stringify(s.probes)}`);
    for (const p of s.sensitivity)
      console.log(
        `  sensitivity ${p.choice.padEnd(38)} ${p.source.padEnd(9)} ${p.seconds.toFixed(2).padStart(6)} s  predicted ${p.bytes === null ? '—' : mb(p.bytes)} MB  damage ${p.damage === null ? '—' : p.damage.toExponential(2)}`,
      );
    for (const p of s.points)
      console.log(
        `  trial ${String(p.trial).padStart(2)} ${p.kind.padEnd(7)} ${p.seconds.toFixed(1).padStart(6)} s ${mb(p.bytes).padStart(8)} MB  metric ${f2(p.metric)} ${p.withinBudget ? 'within' : 'over  '} ${JSON.stringify(p.plan.uniform ?? p.plan.counts)}`,
      );
    console.log(
      `  chosen: trial ${s.chosen.trial} (${s.chosen.kind}) ${mb(s.chosen.bytes)} MB, metric ${f2(s.chosen.metric)}, delta ${f2(s.chosen.delta)} ${JSON.stringify(s.chosen.plan.counts ?? '')}`,
    );
    const svgOut = flag('svg', '');
    if (svgOut) await copyFile(join(dir, 'search-out', 'pareto.svg'), svgOut);
    const json = flag('json', '');
    const save = (uniform: Uniform[]) =>
      json
        ? writeFile(
            json,
            JSON.stringify({ size, budget, searchSeconds, searchCpu, search: s, stages, uniform }, null, 2),
          )
        : Promise.resolve();
    await save([]);

    // Standalone jobs: "all" = every uniform candidate of the default space (the per-layer comparison); "heavy" =
    // the three choices whose probe runs cost the most per layer (the candidates for the most expensive job).
    const [mode, count] = (process.argv.includes('--no-uniform') ? 'none' : flag('standalone', 'heavy')).split(':');
    if (mode === 'none') return;
    const space = expandSpace(undefined);
    const heavy = [...s.sensitivity]
      .filter((p) => p.source !== 'simulated')
      .sort((a, b) => b.seconds - a.seconds)
      .slice(0, Number(count ?? 3))
      .map((p) => p.choice);
    const runSet = mode === 'all' ? space : space.filter((c) => heavy.includes(choiceLabel(c)));
    const rows: Uniform[] = [];
    for (const c of runSet) {
      const u = await standalone(c, files, budget, common, join(dir, 'uniform-out'));
      rows.push(u);
      console.log(
        `  standalone ${u.label.padEnd(34)} ${u.seconds.toFixed(1).padStart(6)} s (${u.cpu.toFixed(1)} s CPU) ${mb(u.bytes).padStart(8)} MB  metric ${f2(u.metric)}  ${u.within ? 'within' : 'over  '}  (${u.how})`,
      );
    }
    await save(rows);
    const worst = rows.reduce((a, b) => (b.seconds > a.seconds ? b : a));
    console.log(
      `\nsearch ÷ most expensive standalone candidate (${worst.label}, ${worst.seconds.toFixed(1)} s wall, ${worst.cpu.toFixed(1)} s CPU): ` +
        `${(searchSeconds / worst.seconds).toFixed(2)}× wall, ${(searchCpu / worst.cpu).toFixed(2)}× CPU (target ≤ 10×)`,
    );
    if (mode !== 'all') return;
    const meeting = rows.filter((r) => r.within);
    const beaten = meeting.filter((r) => s.chosen.bytes < r.bytes);
    console.log(
      `uniform candidates within budget: ${meeting.length}; chosen (${mb(s.chosen.bytes)} MB) smaller than ${beaten.length} of them`,
    );
    for (const r of meeting)
      console.log(
        `  ${r.label.padEnd(34)} ${mb(r.bytes)} MB → chosen is ${((s.chosen.bytes / r.bytes) * 100).toFixed(1)}% of it ${s.chosen.bytes < r.bytes ? '✔' : '✘'}`,
      );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
