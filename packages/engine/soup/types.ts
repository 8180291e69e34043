// The soup's inputs, settings and report: what cookSoup takes and returns (the report goes to report.json as `soup`).
import type { LoadedModel } from '../onnx/loaded.js';
import type { WeightRef } from '../onnx/weights.js';
import type { GreedyStep, MetricDirection, TieRule } from './greedy.js';
import type { NextPhasePlan, NextPhaseReport } from './next-phase.js';
import type { RepruneSpec } from './reprune.js';

export type SoupMetric = 'accuracy' | 'perplexity' | 'fidelity';
export type MaskPolicy = 'require-shared' | 'intersect' | 'reprune';

/** accuracy: higher is better; perplexity and fidelity (relative output error vs the reference): lower is better. */
export const METRIC_DIRECTION: Record<SoupMetric, MetricDirection> = {
  accuracy: 'higher',
  perplexity: 'lower',
  fidelity: 'lower',
};

export interface IngredientInput {
  path: string;
  load(): Promise<LoadedModel>;
}

export interface SoupSettings {
  mode: 'uniform' | 'greedy';
  tie: TieRule;
  maskPolicy: MaskPolicy;
  /** Mask spec for maskPolicy 'reprune'. */
  reprune?: RepruneSpec;
  /**
   * reprune: where the mask comes from. soup: each candidate soup (an ingredient alone, the uniform soup, each
   * greedy candidate, the final soup) is pruned from its own average; all: one mask from the uniform average of
   * every ingredient, shared by all candidates.
   * @defaultValue 'soup'
   */
  maskFrom?: 'soup' | 'all';
  metric: SoupMetric;
  nextPhase?: NextPhasePlan;
}

export interface SoupJob {
  /** Written in place with the soup. Either one of the ingredients (`baseIngredient`) or the parent. */
  base: LoadedModel;
  /** Index of `base` among the ingredients, or null when `base` is the parent (its zeros then bound the mask). */
  baseIngredient: number | null;
  ingredients: IngredientInput[];
  /** Weights that carry masks (discovered in `base`): their zero patterns are checked and enforced. */
  maskedWeights: WeightRef[];
  /** Masked weights that may be re-pruned (reprune, next phase): compressible ones, after include/exclude. */
  prunableWeights: WeightRef[];
  /** Why masked weights outside prunableWeights were not selected (include/exclude, too small, …), by weight. */
  notPrunable?: { weight: WeightRef; reason: string }[];
  settings: SoupSettings;
  /** Held-out metric of a model; null when the data cannot give it. Absent: no evaluation data. */
  score?: (model: LoadedModel) => Promise<number | null>;
  progress?: (fraction: number, message: string) => void;
  checkAbort?: () => void;
  warn?: (message: string) => void;
}

export interface IngredientReport {
  index: number;
  path: string;
  /** Held-out metric of the ingredient as it enters the soup (mask applied). */
  metric: number | null;
  /** Held-out metric of the file as given, when the mask changed it (intersect / reprune / parent zeros). */
  metricAsGiven?: number | null;
  /** Fraction of zeros over the masked weights, as given. */
  sparsity: number;
  /** Non-zeros the common mask removed from this ingredient. */
  zeroedByMask: number;
}

export interface SoupReport {
  mode: SoupSettings['mode'];
  tie: TieRule;
  maskPolicy: MaskPolicy;
  metric: { name: SoupMetric; direction: MetricDirection; evaluated: boolean };
  ingredients: IngredientReport[];
  maskCheck: {
    policy: MaskPolicy;
    /** e.g. "all 6 ingredients share one zero pattern over 3 weights". */
    result: string;
    sharedExactly: boolean;
    maskedWeights: number;
    /** Weights where ingredients' patterns differ (intersect / reprune), with the number of differing positions. */
    differing: { weight: string; positions: number }[];
    reprune?: string;
    /** reprune: which mask was used (see SoupSettings.maskFrom). */
    maskFrom?: 'soup' | 'all';
    repruneSkipped?: { weight: string; reason: string }[];
    /** The parent's zeros removed weights the policy's mask would have kept. */
    parentBound: boolean;
  };
  greedy?: {
    /** Ingredient indices best first. */
    order: number[];
    steps: (GreedyStep & { path: string })[];
    members: number[];
    metric: number;
  };
  uniform: { metric: number | null; sparsity: number };
  soup: {
    members: number[];
    paths: string[];
    metric: number | null;
    sparsity: number;
    /** Zeros of the mask (the soup can only have more: averaging may cancel a weight to exactly 0). */
    maskSparsity: number;
    /** Every masked zero is a zero of the soup (checked by reading the written tensors back). */
    maskRespected: boolean;
    /** Soup sparsity ≥ every ingredient's and ≥ the mask's. */
    sparsityPreserved: boolean;
    nmVerified?: boolean;
  };
  nextPhase?: NextPhaseReport;
  batchNorm?: string;
  weights: {
    name: string;
    shape: number[];
    size: number;
    soupSparsity: number;
    maskSparsity: number;
    maskRespected: boolean;
  }[];
}
