// The state a soup is cooked in (soup/merge.ts's stages share it): the base model's tensors, the float64 sums of the
// ingredients, every masked weight with its mask, the parent's zero patterns, and the writers that put one
// ingredient or a mean into the base with the masks applied. Kept apart from the stages so that each stage reads as
// what it decides, over one object, rather than as closures inside one long function.
import { InputError } from '../job-parts.js';
import type { LoadedModel } from '../onnx/loaded.js';
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import { TensorSum } from './average.js';
import { andMaskInto, applyMask, countMaskDifferences, nonzeroMask, type FloatValues } from './masks.js';
import { magnitudeMaskFor, specSkipReason } from './reprune.js';
import type { MaskedSlot, ScanState } from './scan.js';
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
import type { SoupJob, SoupSettings } from './types.js';

export interface Pot extends ScanState {
  job: SoupJob;
  settings: SoupSettings;
  /** Number of ingredients. */
  n: number;
  progress: (fraction: number, message: string) => void;
  checkAbort: () => void;
  /** The float tensors that are averaged (masked weights among them). */
  averaged: TensorSlot[];
  /** The parent's zero patterns (base is the parent), read before anything is written into base. */
  parentMasks: Map<string, Uint8Array>;
  /** Keys of the weights that may be re-pruned (reprune, next phase). */
  prunable: Set<string>;
  /** maskFrom "soup": the weights whose masks are recomputed from whatever candidate soup is written (remask). */
  following: Set<string>;
  /** One reusable float buffer per averaged tensor. */
  scratch: Map<string, FloatValues>;
}

/** Checks the job and sets up the sums and masked weights over the base's tensors. */
export function openPot(job: SoupJob): Pot {
  const { settings } = job;
  const n = job.ingredients.length;
  if (n < 2) throw new InputError('soup-too-few-ingredients', `a soup needs at least 2 ingredients, got ${n}`);
  if (settings.mode === 'greedy' && !job.score) {
    throw new InputError(
      'soup-needs-eval',
      `a greedy soup ranks and selects ingredients by their ${settings.metric} on held-out data: give evaluation data`,
    );
  }
  const baseTensors = modelTensors(job.base);
  const slots = describeSlots(baseTensors, shapeSettingTensors(job.base));
  const averaged = slots.filter((s) => s.averaged);
  const masked = new Map<string, MaskedSlot>();
  for (const w of job.maskedWeights) {
    const key = slotKey(w.storeGraphPath, w.name);
    const slot = slots.find((s) => s.key === key);
    if (slot?.averaged) masked.set(key, { slot, weight: w, differing: 0 });
  }
  const parentMasks = new Map<string, Uint8Array>();
  if (job.baseIngredient === null) {
    for (const ms of masked.values()) {
      parentMasks.set(ms.slot.key, nonzeroMask(readValues(job.base, baseTensors.get(ms.slot.key)!)));
    }
  }
  return {
    job,
    settings,
    n,
    progress: job.progress ?? (() => {}),
    checkAbort: job.checkAbort ?? (() => {}),
    slots,
    baseTensors,
    averaged,
    sums: new Map(averaged.map((s) => [s.key, new TensorSum(s.size)])),
    masked,
    maskedTotal: [...masked.values()].reduce((s, m) => s + m.slot.size, 0),
    parentMasks,
    prunable: new Set(job.prunableWeights.map((w) => slotKey(w.storeGraphPath, w.name))),
    following: new Set(),
    scratch: new Map(),
  };
}

function bufferFor(pot: Pot, slot: TensorSlot): FloatValues {
  let b = pot.scratch.get(slot.key);
  if (!b) pot.scratch.set(slot.key, (b = valueBuffer(slot)));
  return b;
}

/**
 * Sets the mask of every masked weight by the policy (shared, intersected or re-pruned from the uniform average);
 * returns the weights re-pruning had to skip, with why (they are averaged under the union of the masks).
 */
export function chooseMasks(pot: Pot): { weight: string; reason: string }[] {
  const { job, settings } = pot;
  const repruneSkipped: { weight: string; reason: string }[] = [];
  const notPrunable = new Map(
    (job.notPrunable ?? []).map((s) => [slotKey(s.weight.storeGraphPath, s.weight.name), s.reason]),
  );
  const followSoup = settings.maskPolicy === 'reprune' && (settings.maskFrom ?? 'soup') === 'soup';
  for (const ms of pot.masked.values()) {
    if (settings.maskPolicy === 'require-shared') ms.mask = ms.first;
    else if (settings.maskPolicy === 'intersect') ms.mask = ms.inter;
    else {
      const spec = settings.reprune!;
      const reason = pot.prunable.has(ms.slot.key)
        ? specSkipReason(ms.weight, spec)
        : (notPrunable.get(ms.slot.key) ?? 'not selected for pruning');
      if (reason) {
        repruneSkipped.push({
          weight: ms.slot.label,
          reason: `${reason}; averaged under the union of the ingredients' masks`,
        });
        ms.mask = ms.union;
      } else {
        const avg = pot.sums.get(ms.slot.key)!.meanInto(bufferFor(pot, ms.slot), null);
        ms.mask = magnitudeMaskFor(job.base, ms.weight, pot.baseTensors.get(ms.slot.key)!, avg, spec);
        if (followSoup) pot.following.add(ms.slot.key);
      }
    }
  }
  return repruneSkipped;
}

/**
 * When base is the parent, its zeros stay zero: a soup never revives a weight the parent had pruned. Returns whether
 * that removed weights the policy's mask would have kept.
 */
export function bindToParent(pot: Pot): boolean {
  if (pot.job.baseIngredient !== null) return false;
  let parentBound = false;
  for (const ms of pot.masked.values()) {
    const bound = Uint8Array.from(ms.mask!);
    andMaskInto(bound, pot.parentMasks.get(ms.slot.key)!);
    if (countMaskDifferences(bound, ms.mask!) > 0) parentBound = true;
    ms.mask = bound;
  }
  return parentBound;
}

const maskOf = (pot: Pot, key: string) => pot.masked.get(key)?.mask ?? null;

/**
 * A following weight's mask becomes the magnitude mask of the values about to be written (still bound by the
 * parent's zeros), so every candidate soup is pruned from its own average.
 */
function remask(pot: Pot, key: string, values: FloatValues): void {
  if (!pot.following.has(key)) return;
  const ms = pot.masked.get(key)!;
  const mask = magnitudeMaskFor(pot.job.base, ms.weight, pot.baseTensors.get(key)!, values, pot.settings.reprune!);
  const parentMask = pot.parentMasks.get(key);
  if (parentMask) andMaskInto(mask, parentMask);
  ms.mask = mask;
}

/** Writes one ingredient (mask applied) into base; returns how many non-zeros the mask removed. */
export function writeIngredient(pot: Pot, model: LoadedModel): number {
  const tensors = modelTensors(model);
  let removed = 0;
  for (const slot of pot.averaged) {
    const values = readValues(model, tensors.get(slot.key)!);
    remask(pot, slot.key, values);
    const mask = maskOf(pot, slot.key);
    if (mask) removed += applyMask(values, mask);
    writeValues(pot.baseTensors.get(slot.key)!, values);
  }
  return removed;
}

/** Writes the mean of `acc` (plus `candidate`, when trying one more ingredient) into base, masks applied. */
export function writeMean(pot: Pot, acc: Map<string, TensorSum>, candidate?: Map<string, FloatValues>): void {
  for (const slot of pot.averaged) {
    const follows = pot.following.has(slot.key);
    const out = acc
      .get(slot.key)!
      .meanInto(bufferFor(pot, slot), follows ? null : maskOf(pot, slot.key), candidate?.get(slot.key));
    if (follows) {
      remask(pot, slot.key, out);
      applyMask(out, maskOf(pot, slot.key)!);
    }
    writeValues(pot.baseTensors.get(slot.key)!, out);
  }
}

/** The held-out metric of base as it stands (null without evaluation data). */
export async function scoreBase(pot: Pot): Promise<number | null> {
  return pot.job.score ? pot.job.score(pot.job.base) : null;
}

/** Every averaged tensor of one ingredient, read as float values. */
export function ingredientValues(pot: Pot, model: LoadedModel): Map<string, FloatValues> {
  const tensors = modelTensors(model);
  return new Map(pot.averaged.map((s) => [s.key, readValues(model, tensors.get(s.key)!)] as const));
}

/** A masked weight's tensor in base. */
export function baseTensor(pot: Pot, key: string): TensorProto {
  return pot.baseTensors.get(key)!;
}
