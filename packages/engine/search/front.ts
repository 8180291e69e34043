// Points of a search (one per full-model trial), the Pareto front over them, and the choice of the answer.
import type { LatencyReport } from '../quant/latency.js';

export interface SearchPoint {
  /** Trial number, 1-based in the order the trials ran. */
  trial: number;
  /** uniform: one choice for every layer; mixed: a per-layer plan from the greedy path. */
  kind: 'uniform' | 'mixed';
  /** The recipe of a uniform point, or the per-layer plan (layer → choice) with a count per choice. */
  plan: Record<string, unknown>;
  /** Bytes on disk of the trial's model file(s). */
  bytes: number;
  /** Bits per weight over the searched layers (codes, scales, adapters; dense layers count their dtype). */
  bitsPerWeight: number;
  /** p50 ms at batch 1 and 8 where measured (objective latency), else null. */
  latency: { batch1: number | null; batch8: number | null } | null;
  /** The budget's metric on the held-out data. */
  metric: number;
  /** Its change against dense (larger is worse; see budget.ts). */
  delta: number;
  withinBudget: boolean;
  /** Proxy damage Σ ε² the plan was ranked by. */
  proxy: number;
  /** Seconds the trial took: the plan applied by the methods, written, scored (and timed for latency). */
  seconds: number;
}

export type Objective = 'size' | 'latency';

/** The cost the objective minimises: bytes, or p50 at batch 1 (batch 8, then bytes, where missing). */
export function costOf(p: SearchPoint, objective: Objective): number {
  if (objective === 'latency' && p.latency) return p.latency.batch1 ?? p.latency.batch8 ?? p.bytes;
  return p.bytes;
}

/** Points no other point beats on both cost and delta (ties kept once, the earlier trial). */
export function paretoFront(points: SearchPoint[], objective: Objective): SearchPoint[] {
  const sorted = [...points].sort((a, b) => costOf(a, objective) - costOf(b, objective) || a.delta - b.delta);
  const front: SearchPoint[] = [];
  let best = Infinity;
  for (const p of sorted) {
    if (p.delta < best) {
      front.push(p);
      best = p.delta;
    }
  }
  return front;
}

/** The answer: the least cost within budget (ties: the smaller delta), or undefined when nothing is within. */
export function choosePoint(points: SearchPoint[], objective: Objective): SearchPoint | undefined {
  let best: SearchPoint | undefined;
  for (const p of points) {
    if (!p.withinBudget) continue;
    if (
      !best ||
      costOf(p, objective) < costOf(best, objective) ||
      (costOf(p, objective) === costOf(best, objective) && p.delta < best.delta)
    )
      best = p;
  }
  return best;
}

/** p50 at batch 1 and 8 from a latency report (null where that batch was not timed). */
export function latencyOf(l: LatencyReport): { batch1: number | null; batch8: number | null } {
  const at = (b: number) => l.rows.find((r) => r.batch === b)?.compressed.p50 ?? null;
  return { batch1: at(1), batch8: at(8) };
}
