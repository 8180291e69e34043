// Shared by the search benches (bench/search*.bench.ts): flags, the budget flag, and one uniform candidate of a
// search space run as its own standalone job (calibration, compression, evaluation and, for quantize/slim, latency
// included) — the baseline a search's time and answer are compared with.
// A uniform "N:M + int4 without adapters" (slim rankRatio 0) has no single public recipe (slim's schema wants
// rankRatio > 0): it runs as a search whose space is that one choice, perLayer false, maxTrials 1.
import { rm } from 'node:fs/promises';
import type { JobResult } from '../../packages/engine/job.js';
import { parseRecipe, type Recipe, type SearchBudget } from '../../packages/engine/recipe.js';
import { runRecipe } from '../../packages/engine/run.js';
import { deltaOf, withinBudget } from '../../packages/engine/search/budget.js';
import { choiceLabel, stepsOf, type SearchChoice } from '../../packages/engine/search/space.js';

export function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

export function parseBudget(s: string): SearchBudget {
  const [metric, v] = s.split(':');
  const x = Number(v);
  if (metric === 'perplexity') return { metric, maxRelativeIncrease: x };
  if (metric === 'accuracy') return { metric, maxDrop: x };
  if (metric === 'fidelity') return { metric, maxOutputError: x };
  throw new Error(`--budget: expected fidelity:X, perplexity:X or accuracy:X, got ${s}`);
}

export interface Uniform {
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
export function metricOf(r: JobResult, budget: SearchBudget): number | null {
  const q = r.report.quality as { relativeError?: number; compressed?: { perplexity?: number; accuracy?: number } };
  if (budget.metric === 'fidelity') return q.relativeError ?? null;
  if (budget.metric === 'perplexity') return q.compressed?.perplexity ?? null;
  return q.compressed?.accuracy ?? null;
}

export function denseOf(r: JobResult, budget: SearchBudget): number {
  const q = r.report.quality as { dense?: { perplexity?: number; accuracy?: number } };
  if (budget.metric === 'fidelity') return 0;
  return (budget.metric === 'perplexity' ? q.dense?.perplexity : q.dense?.accuracy) ?? NaN;
}

export async function standalone(
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
export function spaceOf(c: SearchChoice): Record<string, unknown> {
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
export function cpuSince(c0: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1e6;
}

export const f2 = (x: number | null) => (x === null ? '—' : x.toFixed(4));
export const mb = (b: number) => (b / 1e6).toFixed(2);
