// Sizes for the report: bytes on disk (model file + its external-data side files) and parameter / non-zero counts of
// the weights discovered in a model (MatMul/Gemm/Conv weights, the tensors compression acts on).
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LoadedModel } from '../onnx/model.js';
import { externalRef, isExternal } from '../onnx/external.js';
import { scanTensorBytes, tensorDtype } from '../onnx/tensor.js';
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import { graphTensors, walkGraphs } from '../onnx/walk.js';
import type { WeightRef } from '../onnx/weights.js';
import { buildScopeIndex } from '../onnx/scopes.js';

/** Bytes of a model file plus every distinct external-data file it references. */
export async function modelDiskBytes(model: LoadedModel, file: string): Promise<number> {
  let total = (await stat(file)).size;
  const seen = new Set<string>();
  walkGraphs(model.proto, (v) => {
    for (const t of graphTensors(v.graph)) if (isExternal(t)) seen.add(externalRef(t).location);
  });
  for (const loc of seen) {
    try {
      total += (await stat(join(dirname(file), loc))).size;
    } catch {
      // a missing side file fails elsewhere with its own error; sizes just leave it out
    }
  }
  return total;
}

export interface WeightCounts {
  /** Elements of all discovered weights. */
  parameters: number;
  /** Of those, non-zero elements. */
  nonZeros: number;
}

/**
 * Counts elements and non-zeros of the stored tensors behind `weights` (each tensor once). Reads bytes directly
 * (no float conversion): a value is zero when all its bits but the sign are zero, for every float format.
 */
export function weightCounts(model: LoadedModel, weights: WeightRef[]): WeightCounts {
  const index = buildScopeIndex(model);
  const seen = new Set<string>();
  let parameters = 0;
  let nonZeros = 0;
  for (const w of weights) {
    const key = `${w.storeGraphPath}\u0000${w.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const visit = index.visits.find((v) => v.path === w.storeGraphPath);
    const def = visit ? index.scopes.get(visit)?.get(w.name) : undefined;
    const count = w.shape.reduce((a, b) => a * b, 1);
    parameters += count;
    if (def?.kind === 'sparse') {
      nonZeros += Number(def.sparse?.values?.dims[0] ?? 0);
      continue;
    }
    const t = def?.tensor;
    if (!t) {
      nonZeros += count;
      continue;
    }
    nonZeros += countNonZero(model, t);
  }
  return { parameters, nonZeros };
}

/** Stored tensor of a weight (initializer / Constant / sparse values), each lookup by graph path and name. */
function storedTensorOf(model: LoadedModel, w: WeightRef) {
  const index = buildScopeIndex(model);
  const visit = index.visits.find((v) => v.path === w.storeGraphPath);
  const def = visit ? index.scopes.get(visit)?.get(w.name) : undefined;
  return def?.kind === 'sparse' ? def.sparse?.values : def?.tensor;
}

/**
 * NaN and ±Inf values of a weight's stored float tensor (exponent bits all ones), read from its bytes chunk by chunk
 * (scanTensorBytes): no copy of the tensor, which for large unaligned or lazily read weights cost more than the scan.
 */
export function nonFiniteCount(model: LoadedModel, w: WeightRef): number {
  const t = storedTensorOf(model, w);
  if (!t) return 0;
  const dtype = tensorDtype(t);
  let bad = 0;
  if (dtype === 'float32') {
    scanTensorBytes(model, t, (bytes) => {
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
      for (let i = 0; i < words.length; i++) if ((words[i] & 0x7f800000) === 0x7f800000) bad++;
    });
  } else if (dtype === 'float16' || dtype === 'bfloat16') {
    const mask = dtype === 'float16' ? 0x7c00 : 0x7f80;
    scanTensorBytes(model, t, (bytes) => {
      for (let i = 0; i + 1 < bytes.length; i += 2) if (((bytes[i] | (bytes[i + 1] << 8)) & mask) === mask) bad++;
    });
  } else if (dtype === 'float64') {
    scanTensorBytes(model, t, (bytes) => {
      for (let i = 0; i + 7 < bytes.length; i += 8) {
        if (((bytes[i + 6] | (bytes[i + 7] << 8)) & 0x7ff0) === 0x7ff0) bad++;
      }
    });
  }
  return bad;
}

/** Non-zero elements of a stored tensor, scanned chunk by chunk (no copy of the tensor). */
function countNonZero(model: LoadedModel, t: TensorProto): number {
  const dtype = tensorDtype(t);
  const size = dtype === 'float64' ? 8 : dtype === 'float32' ? 4 : dtype === 'float16' || dtype === 'bfloat16' ? 2 : 1;
  let nz = 0;
  scanTensorBytes(model, t, (bytes) => {
    if (size === 4) {
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
      for (let i = 0; i < words.length; i++) if ((words[i] & 0x7fffffff) !== 0) nz++;
      return;
    }
    for (let i = 0; i < bytes.length; i += size) {
      let any = (bytes[i + size - 1] & 0x7f) !== 0; // little-endian: the sign bit is in the last byte
      for (let j = 0; j < size - 1 && !any; j++) any = bytes[i + j] !== 0;
      if (any) nz++;
    }
  });
  return nz;
}
