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
import {
  andMaskInto,
  applyMask,
  countMaskDifferences,
  countZeros,
  maskZeros,
  nonzeroMask,
  respectsMask,
  type FloatValues,
} from './masks.js';
import { runNextPhase } from './next-phase.js';
import { describeSpec, magnitudeMaskFor, specSkipReason, verifyNM } from './reprune.js';
import { scanIngredients, type MaskedSlot } from './scan.js';
import {
  describeSlots,
  modelTensors,
  readValues,
  slotKey,
  shapeSettingTensors,
  valueBuffer,
  writeValues,
  type TensorSlot,
} from './tensors.js';
import { METRIC_DIRECTION, type SoupJob, type SoupReport, type SoupSettings } from './types.js';

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

/** Cooks the soup into job.base. */
export async function cookSoup(job: SoupJob): Promise<SoupReport> {
  const { settings } = job;
  const n = job.ingredients.length;
  if (n < 2) throw new InputError('soup-too-few-ingredients', `a soup needs at least 2 ingredients, got ${n}`);
  if (settings.mode === 'greedy' && !job.score) {
    throw new InputError(
      'soup-needs-eval',
      `a greedy soup ranks and selects ingredients by their ${settings.metric} on held-out data: give evaluation data`,
    );
  }
  const progress = job.progress ?? (() => {});
  const checkAbort = job.checkAbort ?? (() => {});
  const baseTensors = modelTensors(job.base);
  const slots = describeSlots(baseTensors, shapeSettingTensors(job.base));
  const averaged = slots.filter((s) => s.averaged);
  const sums = new Map(averaged.map((s) => [s.key, new TensorSum(s.size)]));
  const masked = new Map<string, MaskedSlot>();
  for (const w of job.maskedWeights) {
    const key = slotKey(w.storeGraphPath, w.name);
    const slot = slots.find((s) => s.key === key);
    if (slot?.averaged) masked.set(key, { slot, weight: w, differing: 0 });
  }
  const maskedTotal = [...masked.values()].reduce((s, m) => s + m.slot.size, 0);
  // The parent's zero patterns, read before anything is written into base.
  const parentMasks = new Map<string, Uint8Array>();
  if (job.baseIngredient === null) {
    for (const ms of masked.values()) {
      parentMasks.set(ms.slot.key, nonzeroMask(readValues(job.base, baseTensors.get(ms.slot.key)!)));
    }
  }

  // Pass 1: structure, non-float equality, zero patterns, and the sum of all (uniform soup).
  const ingredientReports = await scanIngredients(job, { slots, baseTensors, sums, masked, maskedTotal });

  // The mask of every masked weight.
  const repruneSkipped: { weight: string; reason: string }[] = [];
  const prunable = new Set(job.prunableWeights.map((w) => slotKey(w.storeGraphPath, w.name)));
  const notPrunable = new Map(
    (job.notPrunable ?? []).map((s) => [slotKey(s.weight.storeGraphPath, s.weight.name), s.reason]),
  );
  // maskFrom "soup": these weights' masks are recomputed from whatever candidate soup is written (see remask).
  const followSoup = settings.maskPolicy === 'reprune' && (settings.maskFrom ?? 'soup') === 'soup';
  const following = new Set<string>();
  const scratch = new Map<string, FloatValues>();
  const bufferFor = (slot: TensorSlot) => {
    let b = scratch.get(slot.key);
    if (!b) scratch.set(slot.key, (b = valueBuffer(slot)));
    return b;
  };
  for (const ms of masked.values()) {
    if (settings.maskPolicy === 'require-shared') ms.mask = ms.first;
    else if (settings.maskPolicy === 'intersect') ms.mask = ms.inter;
    else {
      const spec = settings.reprune!;
      const reason = prunable.has(ms.slot.key)
        ? specSkipReason(ms.weight, spec)
        : (notPrunable.get(ms.slot.key) ?? 'not selected for pruning');
      if (reason) {
        repruneSkipped.push({
          weight: ms.slot.label,
          reason: `${reason}; averaged under the union of the ingredients' masks`,
        });
        ms.mask = ms.union;
      } else {
        const avg = sums.get(ms.slot.key)!.meanInto(bufferFor(ms.slot), null);
        ms.mask = magnitudeMaskFor(job.base, ms.weight, baseTensors.get(ms.slot.key)!, avg, spec);
        if (followSoup) following.add(ms.slot.key);
      }
    }
  }
  let parentBound = false;
  if (job.baseIngredient === null) {
    // The parent's zeros stay zero: a soup never revives a weight the parent had pruned.
    for (const ms of masked.values()) {
      const parentMask = parentMasks.get(ms.slot.key)!;
      const bound = Uint8Array.from(ms.mask!);
      andMaskInto(bound, parentMask);
      if (countMaskDifferences(bound, ms.mask!) > 0) parentBound = true;
      ms.mask = bound;
    }
  }
  const maskOf = (key: string) => masked.get(key)?.mask ?? null;
  // A following weight's mask becomes the magnitude mask of the values about to be written (still bound by the
  // parent's zeros), so every candidate soup is pruned from its own average.
  const remask = (key: string, values: FloatValues) => {
    if (!following.has(key)) return;
    const ms = masked.get(key)!;
    const mask = magnitudeMaskFor(job.base, ms.weight, baseTensors.get(key)!, values, settings.reprune!);
    const parentMask = parentMasks.get(key);
    if (parentMask) andMaskInto(mask, parentMask);
    ms.mask = mask;
  };

  // Writes one ingredient (mask applied) into base; returns how many non-zeros the mask removed.
  const writeIngredient = (model: LoadedModel): number => {
    const tensors = modelTensors(model);
    let removed = 0;
    for (const slot of averaged) {
      const values = readValues(model, tensors.get(slot.key)!);
      remask(slot.key, values);
      const mask = maskOf(slot.key);
      if (mask) removed += applyMask(values, mask);
      writeValues(baseTensors.get(slot.key)!, values);
    }
    return removed;
  };
  const writeMean = (acc: Map<string, TensorSum>, candidate?: Map<string, FloatValues>) => {
    for (const slot of averaged) {
      const follows = following.has(slot.key);
      const out = acc
        .get(slot.key)!
        .meanInto(bufferFor(slot), follows ? null : maskOf(slot.key), candidate?.get(slot.key));
      if (follows) {
        remask(slot.key, out);
        applyMask(out, maskOf(slot.key)!);
      }
      writeValues(baseTensors.get(slot.key)!, out);
    }
  };
  const score = async (): Promise<number | null> => (job.score ? job.score(job.base) : null);
  const maskChanges = settings.maskPolicy !== 'require-shared' || parentBound;

  // Pass 2: each ingredient's held-out metric, as it enters the soup.
  const metrics: number[] = [];
  for (let i = 0; i < n; i++) {
    checkAbort();
    progress(0.3 + (0.2 * i) / n, `scoring ingredient ${i + 1}/${n}`);
    const model = await job.ingredients[i].load();
    try {
      const r = ingredientReports[i];
      if (job.score && maskChanges) r.metricAsGiven = await job.score(model);
      r.zeroedByMask = writeIngredient(model);
      r.metric = await score();
    } finally {
      if (model !== job.base) closeModel(model);
    }
    metrics.push(ingredientReports[i].metric ?? NaN);
  }
  if (job.score && metrics.every(Number.isNaN)) {
    throw new InputError(
      'soup-metric-unavailable',
      `the evaluation data cannot give the metric "${settings.metric}" ` +
        `(accuracy needs class labels, perplexity next-token labels, fidelity a reference model)`,
    );
  }

  // Uniform soup (always reported; the output when mode is uniform).
  checkAbort();
  progress(0.5, 'uniform soup');
  writeMean(sums);
  const uniformMetric = await score();
  const uniformSparsity = soupSparsity(job, masked, baseTensors);

  const direction = METRIC_DIRECTION[settings.metric];
  let members = Array.from({ length: n }, (_, i) => i);
  let greedyReport: SoupReport['greedy'];
  if (settings.mode === 'greedy') {
    const ranked = rankByMetric(metrics, direction);
    const accepted = new Map(averaged.map((s) => [s.key, new TensorSum(s.size)]));
    let pending: { index: number; values: Map<string, FloatValues> } | undefined;
    const valuesOf = async (index: number) => {
      if (pending?.index === index) return pending.values;
      const model = await job.ingredients[index].load();
      try {
        const tensors = modelTensors(model);
        const values = new Map(averaged.map((s) => [s.key, readValues(model, tensors.get(s.key)!)] as const));
        pending = { index, values };
        return values;
      } finally {
        if (model !== job.base) closeModel(model);
      }
    };
    let step = 0;
    const result = await greedySelect(
      ranked,
      metrics[ranked[0]],
      {
        tryAdd: async (c) => {
          checkAbort();
          progress(0.55 + (0.35 * ++step) / n, `greedy: trying ingredient ${c + 1}`);
          writeMean(accepted, await valuesOf(c));
          return (await score()) ?? NaN;
        },
        accept: async (c) => {
          const values = await valuesOf(c);
          for (const s of averaged) accepted.get(s.key)!.add(values.get(s.key)!);
        },
      },
      direction,
      settings.tie,
      undefined,
    );
    pending = undefined;
    members = result.members;
    writeMean(accepted);
    greedyReport = {
      order: ranked,
      steps: result.steps.map((s) => ({ ...s, path: job.ingredients[s.ingredient].path })),
      members: result.members,
      metric: result.metric,
    };
  } else {
    writeMean(sums);
  }

  // The soup as written: metric, sparsity, mask respected (read back from the tensors, not from our buffers).
  checkAbort();
  progress(0.9, 'checking the soup');
  const soupMetric = await score();
  if (greedyReport && soupMetric !== null && soupMetric !== greedyReport.metric && !Number.isNaN(greedyReport.metric)) {
    job.warn?.(`greedy soup re-scored ${soupMetric} after writing, ${greedyReport.metric} during selection`);
  }
  const weights: SoupReport['weights'] = [];
  let maskRespected = true;
  let soupZeros = 0;
  for (const ms of masked.values()) {
    const values = readValues(job.base, baseTensors.get(ms.slot.key)!);
    const respected = respectsMask(values, ms.mask!);
    if (!respected) maskRespected = false;
    const z = countZeros(values);
    soupZeros += z;
    weights.push({
      name: ms.slot.label,
      shape: ms.slot.dims,
      size: ms.slot.size,
      soupSparsity: z / ms.slot.size,
      maskSparsity: maskZeros(ms.mask!) / ms.slot.size,
      maskRespected: respected,
    });
  }
  const sparsity = maskedTotal ? soupZeros / maskedTotal : 0;
  let nmVerified: boolean | undefined;
  if (settings.maskPolicy === 'reprune' && settings.reprune?.kind === 'nm') {
    const spec = settings.reprune;
    nmVerified = [...masked.values()]
      .filter((ms) => !repruneSkipped.some((s) => s.weight === ms.slot.label))
      .every((ms) => verifyNM(job.base, ms.weight, spec.n, spec.m));
  }
  // Counted on the final masks (with maskFrom "soup" they are the written soup's own).
  const maskZerosTotal = [...masked.values()].reduce((s, m) => s + maskZeros(m.mask!), 0);
  const maskSparsity = maskedTotal ? maskZerosTotal / maskedTotal : 0;
  const memberSparsity = members.map((i) => ingredientReports[i].sparsity);
  const sparsityPreserved =
    maskRespected && sparsity >= maskSparsity && (maskChanges || memberSparsity.every((s) => sparsity >= s));

  const differing = [...masked.values()]
    .filter((m) => m.differing > 0)
    .map((m) => ({ weight: m.slot.label, positions: m.differing }));
  const report: SoupReport = {
    mode: settings.mode,
    tie: settings.tie,
    maskPolicy: settings.maskPolicy,
    metric: { name: settings.metric, direction, evaluated: Boolean(job.score) },
    ingredients: ingredientReports,
    maskCheck: {
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
    },
    ...(greedyReport ? { greedy: greedyReport } : {}),
    uniform: { metric: uniformMetric, sparsity: uniformSparsity },
    soup: {
      members,
      paths: members.map((i) => job.ingredients[i].path),
      metric: soupMetric,
      sparsity,
      maskSparsity,
      maskRespected,
      sparsityPreserved,
      ...(nmVerified !== undefined ? { nmVerified } : {}),
    },
    weights,
  };
  const bn = batchNormNote(job.base);
  if (bn) {
    report.batchNorm = bn;
    job.warn?.(bn);
  }

  if (settings.nextPhase) {
    checkAbort();
    progress(0.95, 'next phase: pruning the soup further');
    const targets = [...masked.values()]
      .filter((ms) => prunable.has(ms.slot.key))
      .map((ms) => ({ weight: ms.weight, tensor: baseTensors.get(ms.slot.key)! as TensorProto, label: ms.slot.label }));
    report.nextPhase = await runNextPhase(job.base, targets, settings.nextPhase, score);
  }
  progress(1, 'soup ready');
  return report;
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
