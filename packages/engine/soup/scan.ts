// Pass 1 of a soup: every ingredient is checked against the base (structure, identical non-float tensors), its float
// tensors are added to the float64 sums, and the zero patterns of the masked weights are compared (require-shared
// fails on the first difference, naming the weight and position) and accumulated into union and intersection.
import { InputError, isInputError } from '../job-parts.js';
import { closeModel } from '../onnx/loaded.js';
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import type { WeightRef } from '../onnx/weights.js';
import type { TensorSum } from './average.js';
import {
  andMaskInto,
  countMaskDifferences,
  firstMaskDifference,
  maskZeros,
  nonzeroMask,
  orMaskInto,
  unravelIndex,
} from './masks.js';
import { AVERAGED_DTYPES, compareStructure, formatDifferences } from './structure.js';
import { modelTensors, readValues, sameBytes, type TensorSlot } from './tensors.js';
import type { IngredientReport, SoupJob } from './types.js';

/** A masked weight's slot and the zero patterns seen so far. */
export interface MaskedSlot {
  slot: TensorSlot;
  weight: WeightRef;
  first?: Uint8Array;
  union?: Uint8Array;
  inter?: Uint8Array;
  mask?: Uint8Array;
  differing: number;
}

export interface ScanState {
  slots: TensorSlot[];
  baseTensors: Map<string, TensorProto>;
  sums: Map<string, TensorSum>;
  masked: Map<string, MaskedSlot>;
  maskedTotal: number;
}

export function baseLabel(job: SoupJob): string {
  return job.baseIngredient === null
    ? `the parent (${job.base.path ?? 'in memory'})`
    : `ingredient ${job.baseIngredient + 1} (${job.ingredients[job.baseIngredient].path})`;
}

function fixedKind(slot: TensorSlot): string {
  return AVERAGED_DTYPES.has(slot.dataType) ? 'a float that sets output shapes' : 'not float';
}

export async function scanIngredients(job: SoupJob, state: ScanState): Promise<IngredientReport[]> {
  const { slots, baseTensors, sums, masked, maskedTotal } = state;
  const { settings } = job;
  const n = job.ingredients.length;
  const progress = job.progress ?? (() => {});
  const checkAbort = job.checkAbort ?? (() => {});
  const ingredientReports: IngredientReport[] = [];
  for (let i = 0; i < n; i++) {
    checkAbort();
    progress((0.3 * i) / n, `checking ingredient ${i + 1}/${n}`);
    const src = job.ingredients[i];
    let model;
    try {
      model = await src.load();
    } catch (e) {
      // Say which ingredient a bad file is (the model layer's message names no file when it cannot parse one).
      if (isInputError(e) && !e.message.includes(src.path)) {
        (e as Error).message = `ingredient ${i + 1} (${src.path}): ${e.message}`;
      }
      throw e;
    }
    try {
      const diffs = compareStructure(job.base.proto, model.proto);
      if (diffs.length) {
        throw new InputError(
          'soup-structure-mismatch',
          `ingredient ${i + 1} (${src.path}) is not the same network as ${baseLabel(job)}: ${formatDifferences(diffs)}`,
        );
      }
      const tensors = modelTensors(model);
      let zeros = 0;
      for (const slot of slots) {
        const t = tensors.get(slot.key);
        const bt = baseTensors.get(slot.key)!;
        if (!t)
          throw new InputError(
            'soup-structure-mismatch',
            `ingredient ${i + 1} (${src.path}) has no tensor "${slot.label}"`,
          );
        if (!slot.averaged) {
          if (!sameBytes(job.base, bt, model, t)) {
            throw new InputError(
              'soup-tensor-mismatch',
              `tensor "${slot.label}" (${slot.dims.join('×')}, ${fixedKind(slot)}) differs between ` +
                `ingredient ${i + 1} (${src.path}) and ${baseLabel(job)}: soups average learned float tensors only, ` +
                `every other tensor must be identical`,
            );
          }
          continue;
        }
        const values = readValues(model, t);
        sums.get(slot.key)!.add(values);
        const ms = masked.get(slot.key);
        if (!ms) continue;
        const mask = nonzeroMask(values);
        zeros += maskZeros(mask);
        if (!ms.first) {
          ms.first = mask;
          ms.union = Uint8Array.from(mask);
          ms.inter = Uint8Array.from(mask);
          continue;
        }
        const d = firstMaskDifference(ms.first, mask);
        if (d >= 0) {
          const count = countMaskDifferences(ms.first, mask);
          ms.differing = Math.max(ms.differing, count);
          if (settings.maskPolicy === 'require-shared') {
            const at = unravelIndex(d, slot.dims);
            throw new InputError(
              'soup-mask-mismatch',
              `ingredient ${i + 1} (${src.path}) does not share the zero pattern of ingredient 1 ` +
                `(${job.ingredients[0].path}): first differing weight "${slot.label}" at [${at.join(', ')}] ` +
                `(${ms.first[d] ? 'non-zero' : 'zero'} vs ${mask[d] ? 'non-zero' : 'zero'}; ${count} of ${slot.size} positions differ). ` +
                `maskPolicy "require-shared" needs ingredients fine-tuned from one pruned parent with the mask fixed; ` +
                `use "intersect" or "reprune" to merge them anyway`,
            );
          }
        }
        orMaskInto(ms.union!, mask);
        andMaskInto(ms.inter!, mask);
      }
      ingredientReports.push({
        index: i,
        path: src.path,
        metric: null,
        sparsity: maskedTotal ? zeros / maskedTotal : 0,
        zeroedByMask: 0,
      });
    } finally {
      if (model !== job.base) closeModel(model);
    }
  }

  return ingredientReports;
}
