// The search's part of report.json (`search`), its pareto.svg, and the failure that still carries both.
import { InputErrorWithArtifacts } from '../job-parts.js';
import type { SearchRecipe } from './schema.js';
import { budgetLimit, budgetMetricLine, describeBudget } from './budget.js';
import { paretoFront, type SearchPoint } from './front.js';
import { choiceLabel, type SearchChoice } from './space.js';
import { paretoSvg } from './svg.js';

export interface SearchLog {
  recipe: SearchRecipe;
  /** Which data the trials were measured on. */
  data: 'evaluation' | 'calibration';
  choices: SearchChoice[];
  dense: { metric: number; bytes: number; latency: number | null };
  points: SearchPoint[];
  /** Stage 1: each choice's predicted uniform candidate and how its layer errors were obtained (sensitivity.ts). */
  proxy: {
    choice: string;
    source: 'simulated' | 'probed' | 'pruned';
    bytes: number | null;
    damage: number | null;
    layersCompressed: number;
    probeRatios?: Record<string, number>;
    seconds: number;
  }[];
  /** The probe layer of each shape (op N×K). */
  probes: Record<string, string>;
  mixing: { pathSteps: number; probes: { step: number; withinBudget: boolean; sameAsTrial?: number }[] } | null;
  seconds: {
    sensitivity: number;
    sensitivitySimulated: number;
    sensitivityProbes: number;
    uniformTrials: number;
    mixedTrials: number;
    total: number;
  };
  warnings: string[];
}

const MIXING =
  "per-layer plans come from a greedy path: each layer's options (dense and every choice of the space) are cut to " +
  "the lower convex hull of (bytes, ε²), ε = the layer's relative output error ‖X(W−Ŵ)‖/‖XW‖ on the calibration " +
  'data; moves are taken across all layers in order of proxy damage added per byte saved (a fractional knapsack ' +
  'by greedy), so sensitive layers keep richer choices longest. The path is bisected with full-model trials on ' +
  'the held-out data, starting where the uniform trials put the budget; the proxy only orders plans, every ' +
  'answer is a measured trial.';

const SENSITIVITY =
  'layer errors ε = ‖X(W−Ŵ)‖/‖XW‖ from the calibration statistics, computed once: rounding and mask choices ' +
  "simulated on every layer (the Hessian's diagonal, rescaled per layer by the exact error of one choice); " +
  'GPTQ, SparseGPT and adapter choices run by their methods on one probe layer per shape, the other layers ' +
  'estimated as ρ·ε²(twin) with ρ measured on the probe (twin: RTN codes / Wanda mask / no adapter); a choice ' +
  'that gains nothing over its twin on any probe is pruned (source "pruned").';

export function finishReport(
  log: SearchLog,
  chosen: SearchPoint | null,
): { report: Record<string, unknown>; svg: string } {
  const r = log.recipe;
  const objective = r.objective ?? 'size';
  const report = {
    objective,
    budget: { ...r.budget, limit: budgetLimit(r.budget), text: describeBudget(r.budget) },
    metric: r.budget.metric,
    data: log.data,
    dense: log.dense,
    space: log.choices.map(choiceLabel),
    perLayer: r.perLayer !== false,
    sensitivity: log.proxy,
    sensitivityMethod: SENSITIVITY,
    probes: log.probes,
    mixing: r.perLayer === false ? null : { method: MIXING, ...log.mixing },
    trials: { used: log.points.length, max: r.maxTrials ?? 24 },
    points: log.points,
    front: paretoFront(log.points, objective),
    chosen,
    seconds: log.seconds,
    secondsPerTrial: log.points.length
      ? (log.seconds.uniformTrials + log.seconds.mixedTrials) / log.points.length
      : null,
  };
  const svg = paretoSvg({
    points: log.points,
    metricName: r.budget.metric === 'fidelity' ? 'relative output error' : r.budget.metric,
    dense: log.dense,
    budgetLine: budgetMetricLine(r.budget, log.dense.metric),
    chosenTrial: chosen?.trial ?? null,
    title: `search (${objective}, ${describeBudget(r.budget)}): ${log.points.length} trials on ${log.data} data`,
  });
  return { report, svg };
}

/** budget-unreachable: the job fails, and still stores report.json and pareto.svg. */
export function failSearch(log: SearchLog, report: Record<string, unknown>, svg: string): InputErrorWithArtifacts {
  const best = [...log.points].sort((a, b) => a.delta - b.delta)[0];
  const closest = best
    ? `; the closest of ${log.points.length} trials was trial ${best.trial} (${best.kind}, ${(best.bytes / 1e6).toFixed(2)} MB) ` +
      `with ${log.recipe.budget.metric} ${best.metric.toPrecision(4)} (change ${best.delta.toPrecision(3)}, limit ${budgetLimit(log.recipe.budget)})`
    : '';
  return new InputErrorWithArtifacts(
    'budget-unreachable',
    `no candidate of the search space met the budget (${describeBudget(log.recipe.budget)})${closest}; ` +
      'report.json and pareto.svg show every trial',
    { search: report, warnings: log.warnings },
    [{ name: 'pareto.svg', content: svg }],
  );
}
