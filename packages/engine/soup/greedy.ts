// Greedy soup selection (Wortsman et al. 2022, model soups; Zimmer et al. 2024, SMS): rank the ingredients by their
// held-out metric, start from the best, and keep each next one only when the soup's metric does not get worse.
// SMS accepts ties (`>=`), the original model-soups code requires a strict improvement (`>`).

/** Whether a larger metric is better (accuracy, fidelity) or a smaller one (perplexity). */
export type MetricDirection = 'higher' | 'lower';
export type TieRule = '>=' | '>';

/** True when `candidate` is acceptable against `current` under the tie rule. NaN is never acceptable. */
export function isAcceptable(candidate: number, current: number, direction: MetricDirection, tie: TieRule): boolean {
  if (Number.isNaN(candidate)) return false;
  if (Number.isNaN(current)) return true;
  const better = direction === 'higher' ? candidate > current : candidate < current;
  return tie === '>' ? better : better || candidate === current;
}

/** Ingredient indices ordered best first; ties keep the input order; NaN metrics go last. */
export function rankByMetric(metrics: readonly number[], direction: MetricDirection): number[] {
  const sign = direction === 'higher' ? -1 : 1;
  return metrics
    .map((m, i) => ({ m, i }))
    .sort((a, b) => {
      const an = Number.isNaN(a.m);
      const bn = Number.isNaN(b.m);
      if (an || bn) return an === bn ? a.i - b.i : an ? 1 : -1;
      return a.m === b.m ? a.i - b.i : sign * (a.m - b.m);
    })
    .map((x) => x.i);
}

export interface GreedyStep {
  /** Ingredient index (input order). */
  ingredient: number;
  /** Held-out metric of the soup with this ingredient added (for the first step: the ingredient alone). */
  metric: number;
  accepted: boolean;
  /** Soup members after this step, in the order they entered. */
  members: number[];
}

export interface GreedyResult {
  members: number[];
  /** Metric of the final soup (the last accepted step). */
  metric: number;
  steps: GreedyStep[];
}

export interface GreedyHooks {
  /** Metric of the current soup plus `candidate` (the soup itself is not changed). */
  tryAdd(candidate: number): Promise<number>;
  /** Makes `candidate` a member of the soup. */
  accept(candidate: number): void | Promise<void>;
}

/**
 * Runs the greedy loop over `ranked` (best first). `firstMetric` is the metric of `ranked[0]` alone, which starts the
 * soup. Each later candidate is evaluated once, in rank order.
 */
export async function greedySelect(
  ranked: readonly number[],
  firstMetric: number,
  hooks: GreedyHooks,
  direction: MetricDirection,
  tie: TieRule,
  signal?: AbortSignal,
): Promise<GreedyResult> {
  if (ranked.length === 0) throw new RangeError('greedy soup needs at least one ingredient');
  const members = [ranked[0]];
  await hooks.accept(ranked[0]);
  let metric = firstMetric;
  const steps: GreedyStep[] = [{ ingredient: ranked[0], metric, accepted: true, members: [...members] }];
  for (const candidate of ranked.slice(1)) {
    signal?.throwIfAborted();
    const m = await hooks.tryAdd(candidate);
    const accepted = isAcceptable(m, metric, direction, tie);
    if (accepted) {
      await hooks.accept(candidate);
      members.push(candidate);
      metric = m;
    }
    steps.push({ ingredient: candidate, metric: m, accepted, members: [...members] });
  }
  return { members, metric, steps };
}
