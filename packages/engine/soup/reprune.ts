// Masks that need the weight's canonical [N][K] layout (N:M groups run along K): re-pruning the averaged soup to one
// mask, and pruning it further for the next SMS phase. The canonical mask is mapped back to the stored layout by
// writing it through writeWeightMatrix (0 and 1 are exact in every float dtype) and reading the stored tensor back,
// so Transpose/Reshape chains and Conv layouts are handled by the model layer in one place.
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import { InputError } from '../job-parts.js';
import type { LoadedModel } from '../onnx/loaded.js';
import { readWeightMatrix, writeWeightMatrix, type WeightRef } from '../onnx/weights.js';
import { checkNM, nmMask, unstructuredMaskGlobal } from '../math/nm.js';
import { nonzeroMask, type FloatValues } from './masks.js';
import { readValues, writeValues } from './tensors.js';

export type RepruneSpec = { kind: 'nm'; n: number; m: number } | { kind: 'unstructured'; sparsity: number };

export function describeSpec(spec: RepruneSpec): string {
  return spec.kind === 'nm' ? `${spec.n}:${spec.m}` : `${(spec.sparsity * 100).toFixed(1)}% unstructured`;
}

/** Why a weight cannot take the spec, or undefined. */
export function specSkipReason(w: WeightRef, spec: RepruneSpec): string | undefined {
  if (spec.kind === 'nm' && w.K % spec.m !== 0) return `K=${w.K} is not a multiple of M=${spec.m}`;
  return undefined;
}

function storedMaskOf(model: LoadedModel, w: WeightRef, t: TensorProto, canonical: Uint8Array): Uint8Array {
  writeWeightMatrix(model, w, Float32Array.from(canonical));
  return nonzeroMask(readValues(model, t));
}

/**
 * Magnitude mask (stored layout) for `values` under the spec: N:M along K per output, or a per-matrix threshold.
 * Leaves the tensor holding `values ⊙ mask`.
 */
export function magnitudeMaskFor(
  model: LoadedModel,
  w: WeightRef,
  t: TensorProto,
  values: FloatValues,
  spec: RepruneSpec,
): Uint8Array {
  writeValues(t, values);
  const canon = readWeightMatrix(model, w);
  const scores = new Float32Array(canon.length);
  for (let i = 0; i < canon.length; i++) scores[i] = Math.abs(canon[i]);
  let mask: Uint8Array;
  if (spec.kind === 'nm') mask = nmMask(scores, w.N, w.K, spec.n, spec.m);
  else {
    if (!(spec.sparsity < 1))
      throw new InputError('soup-bad-recipe', 'sparsity must be below 1 (1 would erase the layer)');
    mask = unstructuredMaskGlobal(scores, w.N, w.K, spec.sparsity);
  }
  const stored = storedMaskOf(model, w, t, mask);
  const out = Float32Array.from(canon);
  for (let i = 0; i < out.length; i++) if (!mask[i]) out[i] = 0;
  writeWeightMatrix(model, w, out);
  return stored;
}

/** Independent check that the weight as stored now satisfies N:M along K. */
export function verifyNM(model: LoadedModel, w: WeightRef, n: number, m: number): boolean {
  return checkNM(readWeightMatrix(model, w), w.N, w.K, n, m).ok;
}
