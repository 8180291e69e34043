// Cooking a sparse model soup (SMS, Zimmer et al. 2024; model soups, Wortsman et al. 2022) into `base`, in place:
//   1. every ingredient is the same network as `base` (structure, names, shapes, dtypes; non-float tensors equal);
//   2. one mask per weight: shared (required equal), intersected, or re-pruned — from each candidate soup's own
//      average (maskFrom "soup", the default) or once from the uniform average of all (maskFrom "all");
//   3. each ingredient is scored on held-out data with the mask applied; uniform soup = mean of all;
//      greedy soup = best first, then each next one kept when the soup's metric does not get worse;
//   4. the mask is re-applied after averaging, so the soup is never less sparse than the mask;
//   5. optionally prune further (next SMS phase) and hand that back as the parent of the next round.
// Ingredients are loaded one at a time (a streaming pass each), so memory holds the base, one ingredient, the
// float64 sums and the masks — never all ingredients at once.
import { InputError } from '../job-parts.js';
import type { LoadedModel } from '../onnx/loaded.js';
import { closeModel } from '../onnx/loaded.js';
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import { walkGraphs } from '../onnx/walk.js';
import { TensorSum } from './average.js';
import { greedySelect, rankByMetric } from './greedy.js';
import { countZeros, maskZeros, respectsMask, type FloatValues } from './masks.js';
import { runNextPhase } from './next-phase.js';
import {
  baseTensor,
  bindToParent,
  chooseMasks,
  ingredientValues,
  openPot,
  scoreBase,
  writeIngredient,
  writeMean,
  type Pot,
} from './pot.js';
import { describeSpec, verifyNM } from './reprune.js';
import { scanIngredients, type MaskedSlot } from './scan.js';
import { readValues } from './tensors.js';
import { METRIC_DIRECTION, type IngredientReport, type SoupJob, type SoupReport, type SoupSettings } from './types.js';

export type {
  IngredientInput,
  IngredientReport,
  MaskPolicy,
  SoupJob,
  SoupMetric,
  SoupReport,
  SoupSettings,
} from './types.js';
export { METRIC_DIRECTION } from './types.js';

/** Cooks the soup into job.base: the stages below, in the order of the header's steps. */
export async function cookSoup(job: SoupJob): Promise<SoupReport> {
  const pot = openPot(job);
  // Pass 1: structure, non-float equality, zero patterns, and the sum of all (uniform soup).
  const ingredients = await scanIngredients(job, pot);
  const repruneSkipped = chooseMasks(pot);
  const parentBound = bindToParent(pot);
  const maskChanges = job.settings.maskPolicy !== 'require-shared' || parentBound;
  const metrics = await scoreIngredients(pot, ingredients, maskChanges);

  // Uniform soup (always reported; the output when mode is uniform).
  pot.checkAbort();
  pot.progress(0.5, 'uniform soup');
  writeMean(pot, pot.sums);
  const uniform = { metric: await scoreBase(pot), sparsity: soupSparsity(job, pot.masked, pot.baseTensors) };
  const greedy = job.settings.mode === 'greedy' ? await greedySoup(pot, metrics) : undefined;
  if (!greedy) writeMean(pot, pot.sums);

  pot.checkAbort();
  pot.progress(0.9, 'checking the soup');
  const members = greedy?.members ?? Array.from({ length: pot.n }, (_, i) => i);
  const soup = await checkSoup(pot, { members, ingredients, repruneSkipped, maskChanges, greedy });
  const report: SoupReport = {
    mode: job.settings.mode,
    tie: job.settings.tie,
    maskPolicy: job.settings.maskPolicy,
    metric: { name: job.settings.metric, direction: METRIC_DIRECTION[job.settings.metric], evaluated: !!job.score },
    ingredients,
    maskCheck: maskCheckOf(pot, repruneSkipped, parentBound),
    ...(greedy ? { greedy } : {}),
    uniform,
    soup: soup.summary,
    weights: soup.weights,
  };
  const bn = batchNormNote(job.base);
  if (bn) {
    report.batchNorm = bn;
    job.warn?.(bn);
  }
  if (job.settings.nextPhase) report.nextPhase = await nextPhase(pot, job.settings.nextPhase);
  pot.progress(1, 'soup ready');
  return report;
}

/** Pass 2: each ingredient's held-out metric, as it enters the soup (written into base, mask applied). */
async function scoreIngredients(pot: Pot, reports: IngredientReport[], maskChanges: boolean): Promise<number[]> {
  const { job, n } = pot;
  const metrics: number[] = [];
  for (let i = 0; i < n; i++) {
    pot.checkAbort();
    pot.progress(0.3 + (0.2 * i) / n, `scoring ingredient ${i + 1}/${n}`);
    const model = await job.ingredients[i].load();
    try {
      const r = reports[i];
      if (job.score && maskChanges) r.metricAsGiven = await job.score(model);
      r.zeroedByMask = writeIngredient(pot, model);
      r.metric = await scoreBase(pot);
    } finally {
      if (model !== job.base) closeModel(model);
    }
    metrics.push(reports[i].metric ?? NaN);
  }
  if (job.score && metrics.every(Number.isNaN)) {
    throw new InputError(
      'soup-metric-unavailable',
      `the evaluation data cannot give the metric "${job.settings.metric}" ` +
        `(accuracy needs class labels, perplexity next-token labels, fidelity a reference model)`,
    );
  }
  return metrics;
}

/** Greedy soup: best ingredient first, then each next one kept when the soup does not get worse; writes the soup. */
async function greedySoup(pot: Pot, metrics: number[]): Promise<NonNullable<SoupReport['greedy']>> {
  const { job, n, averaged } = pot;
  const direction = METRIC_DIRECTION[job.settings.metric];
  const ranked = rankByMetric(metrics, direction);
  const accepted = new Map(averaged.map((s) => [s.key, new TensorSum(s.size)]));
  // The candidate last read stays in memory: accepting it right after trying it needs no second load.
  let pending: { index: number; values: Map<string, FloatValues> } | undefined;
  const valuesOf = async (index: number) => {
    if (pending?.index === index) return pending.values;
    const model = await job.ingredients[index].load();
    try {
      pending = { index, values: ingredientValues(pot, model) };
      return pending.values;
    } finally {
      if (model !== job.base) closeModel(model);
    }
  };
  let step = 0;
  const tryAdd = async (c: number) => {
    pot.checkAbort();
    pot.progress(0.55 + (0.35 * ++step) / n, `greedy: trying ingredient ${c + 1}`);
    writeMean(pot, accepted, await valuesOf(c));
    return (await scoreBase(pot)) ?? NaN;
  };
  const accept = async (c: number) => {
    const values = await valuesOf(c);
    for (const s of averaged) accepted.get(s.key)!.add(values.get(s.key)!);
  };
  const result = await greedySelect(
    ranked,
    metrics[ranked[0]],
    { tryAdd, accept },
    direction,
    job.settings.tie,
    undefined,
  );
  pending = undefined;
  writeMean(pot, accepted);
  return {
    order: ranked,
    steps: result.steps.map((s) => ({ ...s, path: job.ingredients[s.ingredient].path })),
    members: result.members,
    metric: result.metric,
  };
}

interface SoupFacts {
  members: number[];
  ingredients: IngredientReport[];
  repruneSkipped: { weight: string; reason: string }[];
  maskChanges: boolean;
  greedy?: SoupReport['greedy'];
}

/** The soup as written: metric, sparsity, mask respected (read back from the tensors, not from our buffers). */
async function checkSoup(
  pot: Pot,
  facts: SoupFacts,
): Promise<{ summary: SoupReport['soup']; weights: SoupReport['weights'] }> {
  const { job, masked, maskedTotal, settings } = pot;
  const { members, greedy } = facts;
  const soupMetric = await scoreBase(pot);
  if (greedy && soupMetric !== null && soupMetric !== greedy.metric && !Number.isNaN(greedy.metric)) {
    job.warn?.(`greedy soup re-scored ${soupMetric} after writing, ${greedy.metric} during selection`);
  }
  const weights = soupWeights(pot);
  const maskRespected = weights.every((w) => w.maskRespected);
  const soupZeros = weights.reduce((s, w) => s + w.zeros, 0);
  const sparsity = maskedTotal ? soupZeros / maskedTotal : 0;
  let nmVerified: boolean | undefined;
  if (settings.maskPolicy === 'reprune' && settings.reprune?.kind === 'nm') {
    const spec = settings.reprune;
    nmVerified = [...masked.values()]
      .filter((ms) => !facts.repruneSkipped.some((s) => s.weight === ms.slot.label))
      .every((ms) => verifyNM(job.base, ms.weight, spec.n, spec.m));
  }
  // Counted on the final masks (with maskFrom "soup" they are the written soup's own).
  const maskZerosTotal = [...masked.values()].reduce((s, m) => s + maskZeros(m.mask!), 0);
  const maskSparsity = maskedTotal ? maskZerosTotal / maskedTotal : 0;
  const memberSparsity = members.map((i) => facts.ingredients[i].sparsity);
  const sparsityPreserved =
    maskRespected && sparsity >= maskSparsity && (facts.maskChanges || memberSparsity.every((s) => sparsity >= s));
  const summary: SoupReport['soup'] = {
    members,
    paths: members.map((i) => job.ingredients[i].path),
    metric: soupMetric,
    sparsity,
    maskSparsity,
    maskRespected,
    sparsityPreserved,
    ...(nmVerified !== undefined ? { nmVerified } : {}),
  };
  return { summary, weights: weights.map(({ zeros: _zeros, ...w }) => w) };
}

/** Each masked weight of the written soup: its sparsity, its mask's, and whether every masked zero is a zero. */
function soupWeights(pot: Pot): (SoupReport['weights'][number] & { zeros: number })[] {
  return [...pot.masked.values()].map((ms) => {
    const values = readValues(pot.job.base, baseTensor(pot, ms.slot.key));
    const zeros = countZeros(values);
    return {
      name: ms.slot.label,
      shape: ms.slot.dims,
      size: ms.slot.size,
      soupSparsity: zeros / ms.slot.size,
      maskSparsity: maskZeros(ms.mask!) / ms.slot.size,
      maskRespected: respectsMask(values, ms.mask!),
      zeros,
    };
  });
}

function maskCheckOf(
  pot: Pot,
  repruneSkipped: { weight: string; reason: string }[],
  parentBound: boolean,
): SoupReport['maskCheck'] {
  const { settings, masked, n } = pot;
  const differing = [...masked.values()]
    .filter((m) => m.differing > 0)
    .map((m) => ({ weight: m.slot.label, positions: m.differing }));
  return {
    policy: settings.maskPolicy,
    result: maskCheckText(settings, n, masked.size, differing.length),
    sharedExactly: differing.length === 0,
    maskedWeights: masked.size,
    differing,
    ...(settings.reprune && settings.maskPolicy === 'reprune'
      ? { reprune: describeSpec(settings.reprune), maskFrom: settings.maskFrom ?? 'soup' }
      : {}),
    ...(repruneSkipped.length ? { repruneSkipped } : {}),
    parentBound,
  };
}

/** The next SMS phase: prunes the soup's prunable masked weights further and scores the result. */
async function nextPhase(pot: Pot, plan: NonNullable<SoupSettings['nextPhase']>): Promise<SoupReport['nextPhase']> {
  pot.checkAbort();
  pot.progress(0.95, 'next phase: pruning the soup further');
  const targets = [...pot.masked.values()]
    .filter((ms) => pot.prunable.has(ms.slot.key))
    .map((ms) => ({ weight: ms.weight, tensor: baseTensor(pot, ms.slot.key), label: ms.slot.label }));
  return runNextPhase(pot.job.base, targets, plan, () => scoreBase(pot));
}

function soupSparsity(job: SoupJob, masked: Map<string, MaskedSlot>, tensors: Map<string, TensorProto>): number {
  let zeros = 0;
  let total = 0;
  for (const ms of masked.values()) {
    zeros += countZeros(readValues(job.base, tensors.get(ms.slot.key)!));
    total += ms.slot.size;
  }
  return total ? zeros / total : 0;
}

function maskCheckText(s: SoupSettings, n: number, weights: number, differing: number): string {
  if (differing === 0) return `all ${n} ingredients share one zero pattern over ${weights} weights`;
  const what = `${differing} of ${weights} weights have different zero patterns across the ${n} ingredients`;
  if (s.maskPolicy === 'intersect') return `${what}; merged under the intersection of their masks`;
  if ((s.maskFrom ?? 'soup') === 'soup') {
    return `${what}; each candidate soup re-pruned (${describeSpec(s.reprune!)}) from its own average`;
  }
  return `${what}; all re-pruned to one mask (${describeSpec(s.reprune!)}) computed from the uniform average`;
}

/** The BatchNorm caveat, when the graph has BatchNormalization nodes. */
export function batchNormNote(model: LoadedModel): string | undefined {
  let count = 0;
  walkGraphs(model.proto, (v) => {
    for (const node of v.graph.node) if (node.opType === 'BatchNormalization') count++;
  });
  if (!count) return undefined;
  return (
    `${count} BatchNormalization node(s): their running mean/variance were averaged like every other float tensor; ` +
    `the averaged statistics need not match the soup's activations — recalibrate them on training data ` +
    `(a forward pass in train mode) unless they are folded into the preceding convolutions`
  );
}
