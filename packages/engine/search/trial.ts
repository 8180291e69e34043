// One full-model trial of a search: the candidate written to a scratch file is scored on the held-out data
// (perplexity / accuracy / fidelity against the dense model), measured on disk, and timed against the dense model
// when latency is the objective.
import { rm, stat } from 'node:fs/promises';
import type { Dataset } from '../data/types.js';
import { InputError } from '../job-parts.js';
import { saveModel, type LoadedModel } from '../onnx/model.js';
import { compareLatency } from '../quant/latency.js';
import type { SearchBudget } from './schema.js';
import type { ExecutionProvider } from '../runtime/session.js';
import type { HeldOutScorer } from '../soup/score.js';
import { deltaOf, withinBudget } from './budget.js';
import { latencyOf } from './front.js';

export interface TrialEnv {
  densePath: string;
  scorer: HeldOutScorer;
  budget: SearchBudget;
  objective: 'size' | 'latency';
  dataset: Dataset;
  executionProvider: ExecutionProvider;
  /** Batch sizes timed (latency objective): [1, 8], or the model's fixed batch. */
  latencyBatches: number[];
}

export interface TrialMeasure {
  bytes: number;
  metric: number;
  delta: number;
  withinBudget: boolean;
  latency: { batch1: number | null; batch8: number | null } | null;
  /** Dense p50 at batch 1 from the same timing run (latency objective). */
  denseLatency: number | null;
}

/** The dense model's metric (fidelity: 0 by definition); an InputError when the data cannot give the metric. */
export async function denseMetric(env: TrialEnv): Promise<number> {
  if (env.budget.metric === 'fidelity') return 0;
  const m = await env.scorer.scoreFile(env.densePath, env.budget.metric);
  if (m === null || !Number.isFinite(m)) {
    throw new InputError(
      'search-metric-unavailable',
      env.budget.metric === 'accuracy'
        ? 'budget metric "accuracy" needs labels in the evaluation (or calibration) data'
        : 'budget metric "perplexity" needs a next-token model (outputs [batch, T, vocab]) and token ids or labels',
    );
  }
  return m;
}

/** Writes a candidate to `file` (inline or external as saveModel decides) and returns its bytes on disk. */
export async function writeCandidate(model: LoadedModel, file: string): Promise<number> {
  const saved = await saveModel(model, file);
  return saved.modelBytes + saved.externalBytes;
}

export async function removeCandidate(file: string): Promise<void> {
  await rm(file, { force: true });
  await rm(`${file}.data`, { force: true });
}

export async function fileBytes(file: string): Promise<number> {
  const main = (await stat(file)).size;
  const data = await stat(`${file}.data`).then(
    (s) => s.size,
    () => 0,
  );
  return main + data;
}

/** Scores (and, for the latency objective, times) the candidate written at `file`. */
export async function measureCandidate(env: TrialEnv, file: string, dense: number): Promise<TrialMeasure> {
  const metric = await env.scorer.scoreFile(file, env.budget.metric);
  if (metric === null) throw new Error(`the ${env.budget.metric} of a candidate could not be measured`);
  const delta = deltaOf(env.budget, metric, dense);
  let latency: TrialMeasure['latency'] = null;
  let denseLatency: number | null = null;
  if (env.objective === 'latency') {
    const l = await compareLatency(env.densePath, file, env.dataset.inputs, {
      executionProviders: [env.executionProvider],
      batches: env.latencyBatches,
      runs: 20,
      budgetSeconds: 4,
    });
    latency = latencyOf(l);
    denseLatency = l.rows.find((r) => r.batch === env.latencyBatches[0])?.dense.p50 ?? null;
  }
  return {
    bytes: await fileBytes(file),
    metric,
    delta,
    withinBudget: withinBudget(env.budget, delta),
    latency,
    denseLatency,
  };
}
