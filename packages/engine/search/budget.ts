// The quality budget of a search: the metric measured on held-out data, its change against the dense model, and
// whether that change is allowed. Pure functions; the trial runner measures, this decides.
import type { SearchBudget } from './schema.js';

/** The budget's limit on `delta` (delta ≤ limit is within budget). */
export function budgetLimit(b: SearchBudget): number {
  if (b.metric === 'perplexity') return b.maxRelativeIncrease;
  if (b.metric === 'accuracy') return b.maxDrop;
  return b.maxOutputError;
}

/**
 * Change of the metric against the dense model, signed so that larger is worse: perplexity relative increase
 * (ppl − ppl₀)/ppl₀, accuracy drop acc₀ − acc, fidelity the output error itself (the dense model's is 0).
 */
export function deltaOf(b: SearchBudget, metric: number, dense: number): number {
  if (b.metric === 'perplexity') return dense > 0 ? (metric - dense) / dense : Infinity;
  if (b.metric === 'accuracy') return dense - metric;
  return metric;
}

/** Within budget; a tiny tolerance so that a change that is exactly the limit in decimal counts as met. */
export function withinBudget(b: SearchBudget, delta: number): boolean {
  return Number.isFinite(delta) && delta <= budgetLimit(b) + 1e-12;
}

/** The metric value at the budget's edge (for the plot's budget line). */
export function budgetMetricLine(b: SearchBudget, dense: number): number {
  if (b.metric === 'perplexity') return dense * (1 + b.maxRelativeIncrease);
  if (b.metric === 'accuracy') return dense - b.maxDrop;
  return b.maxOutputError;
}

export function describeBudget(b: SearchBudget): string {
  if (b.metric === 'perplexity') return `perplexity at most +${(b.maxRelativeIncrease * 100).toFixed(2)}% over dense`;
  if (b.metric === 'accuracy') return `accuracy at most ${(b.maxDrop * 100).toFixed(2)} points below dense`;
  return `relative output error at most ${b.maxOutputError}`;
}
