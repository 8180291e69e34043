// GPTQ for one layer as the methods see it: the canonical matrix [N][K] and the layer's calibration statistics, one
// Hessian per Conv group (grouped Conv: output rows [g·N/G, (g+1)·N/G) read only group g's inputs, so each block of
// rows is quantized against its own Hessian and the results stacked). The maths is math/gptq.ts.
import { gptq } from '../math/gptq.js';
import { QuantError, type QuantizedMatrix, type QuantSpec } from './types.js';

/** The recipe's GPTQ knobs (defaults as math/gptq.ts). */
export interface GptqSettings {
  actOrder?: boolean;
  blockSize?: number;
  dampening?: number;
}

/** Quantizes W (not modified) with GPTQ under each group's Hessian; `mask` forces entries to 0 (SLiM). */
export async function gptqLayer(
  w: Float32Array,
  N: number,
  K: number,
  hessians: Float64Array[],
  quant: QuantSpec,
  settings: GptqSettings,
  opts: { mask?: Uint8Array; signal?: AbortSignal } = {},
): Promise<{ q: QuantizedMatrix; error: number }> {
  const groups = hessians.length;
  if (groups < 1) throw new QuantError('gptq needs the Hessian of the layer input (calibration data)');
  if (N % groups !== 0) throw new QuantError(`gptq: ${N} outputs do not split into ${groups} Conv groups`);
  const rows = N / groups;
  let out: QuantizedMatrix | undefined;
  let error = 0;
  for (let g = 0; g < groups; g++) {
    const part = await gptq(w.subarray(g * rows * K, (g + 1) * rows * K), rows, K, hessians[g], {
      quant,
      ...settings,
      ...(opts.mask ? { mask: opts.mask.subarray(g * rows * K, (g + 1) * rows * K) } : {}),
      signal: opts.signal,
    });
    error += part.error;
    if (groups === 1) return { q: part.q, error };
    out ??= {
      ...part.q,
      rows: N,
      codes: new Uint8Array(N * K),
      scales: new Float32Array(N * part.q.blocksPerRow),
      zeroPoints: new Uint8Array(N * part.q.blocksPerRow),
    };
    out.codes.set(part.q.codes, g * rows * K);
    out.scales.set(part.q.scales, g * rows * part.q.blocksPerRow);
    out.zeroPoints.set(part.q.zeroPoints, g * rows * part.q.blocksPerRow);
  }
  return { q: out!, error };
}
