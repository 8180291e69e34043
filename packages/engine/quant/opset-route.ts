// The opset the DequantizeLinear route needs, settled once per job before any layer is written. int4 codes and
// block-wise scales arrived in opset 21 (int8 per-axis in 13); the Conv models people bring (PaddleOCR, TensorFlow,
// older PyTorch exports) are opset 9–13. A plain import bump would change the meaning of ops whose signature moved
// in between (Clip, Slice, Softmax, Squeeze, Reduce* …), so:
//   1. nothing in between changed → the import is simply raised when the first DequantizeLinear is written;
//   2. else the engine's exact upgrade (onnx/opset-upgrade.ts) rewrites those ops to their new form and raises the
//      opset now ('upgraded', the ops listed in the report);
//   3. else ('fallback': some op has no exact rewrite) each layer takes a route that works at the model's opset:
//      MatMul/Gemm → com.microsoft MatMulNBits, Conv → per-channel scales through ONNX Runtime's com.microsoft
//      DequantizeLinear (no block_size there, so the groups become one per output channel).
// The report says which happened, and each layer row's `route` says what was written.
import { OnnxError } from '../onnx/errors.js';
import { upgradeOpset } from '../onnx/graph.js';
import type { LoadedModel } from '../onnx/model.js';
import { opsChangedBetween } from '../onnx/opset-upgrade.js';
import type { WeightRef } from '../onnx/weights.js';
import type { Format } from './replace.js';
import type { QuantSpec } from './types.js';

export interface OpsetRoute {
  /** The model's default-domain opset before the job. */
  from: number;
  /** What the DequantizeLinear route needs. */
  needed: number;
  /** import-bump: nothing changed meaning in between; upgraded: ops rewritten exactly; fallback: see `fallback`. */
  action: 'import-bump' | 'upgraded' | 'fallback';
  /** Ops the exact upgrade rewrote (upgraded), or that blocked it (fallback). */
  ops: string[];
  /** Why the upgrade was impossible (fallback). */
  reason?: string;
  /** The routes taken instead (fallback). */
  fallback?: string;
}

function defaultOpset(model: LoadedModel): number {
  const imp = model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  return imp ? Number(imp.version) : 1;
}

/**
 * Raises the model's opset for the DequantizeLinear route when some weight will take it (Conv always; MatMul/Gemm
 * with format 'qdq') with groups that need it (`needed`; per-channel groups work at any opset through the
 * com.microsoft op, so they ask for nothing). Returns undefined when the model already has the opset or no layer
 * takes the route.
 */
export function settleQdqOpset(
  model: LoadedModel,
  weights: WeightRef[],
  format: Format,
  needed: number,
  perChannel: boolean,
): OpsetRoute | undefined {
  const from = defaultOpset(model);
  if (perChannel || from >= needed) return undefined;
  if (!weights.some((w) => w.op === 'Conv' || format === 'qdq')) return undefined;
  const ops = opsChangedBetween(model, from, needed);
  if (!ops.length) return { from, needed, action: 'import-bump', ops };
  try {
    upgradeOpset(model, needed);
    return { from, needed, action: 'upgraded', ops };
  } catch (e) {
    if (!(e instanceof OnnxError)) throw e;
    return {
      from,
      needed,
      action: 'fallback',
      ops,
      reason: e.message,
      fallback:
        'MatMul/Gemm written as com.microsoft MatMulNBits; Conv weights quantized per output channel and written ' +
        'through com.microsoft DequantizeLinear (no block-wise scales below opset 21)',
    };
  }
}

/** The spec and format one layer takes under the opset route (unchanged unless the route is a fallback). */
export function layerRoute<S extends QuantSpec & { scheme?: string }>(
  route: OpsetRoute | undefined,
  w: WeightRef,
  spec: S,
  format: Format,
): { spec: S; format: Format } {
  // SLiM-Quant has one scale per tensor: on a Conv it is stored per output channel (QDQ), not in blocks of 32 that
  // the input channels may not tile.
  if (w.op === 'Conv' && spec.scheme === 'slim') return { spec: { ...spec, groupSize: 'channel' }, format: 'qdq' };
  if (route?.action !== 'fallback') return { spec, format };
  // Conv always goes through DequantizeLinear; 'qdq' also makes SLiM-Quant store one scale per row, not per 32.
  if (w.op === 'Conv') return { spec: { ...spec, groupSize: 'channel' }, format: 'qdq' };
  return { spec, format: 'matmulnbits' };
}
