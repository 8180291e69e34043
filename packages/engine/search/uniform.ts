// Uniform candidates (one choice for every layer it fits) as the sensitivity table predicts them: bytes and proxy
// damage Σ ε² summed over the layers. Their files are written only when a trial evaluates them (search.ts), by the
// real methods over every layer.
import type { WeightRef } from '../onnx/weights.js';
import type { LayerTable } from './plan.js';
import { dtypeBytes } from './space.js';

export interface UniformCandidate {
  choice: number;
  /** Predicted bytes on disk: the dense file with the searched layers' bytes replaced by the choice's. */
  bytes: number;
  /** Σ ε² over the layers the choice takes. */
  damage: number;
  /** Planning bytes of the searched layers (dense where the choice does not apply). */
  layerBytes: number;
  /** Layers the choice takes. */
  layers: number;
}

export function denseBytesOf(w: WeightRef): number {
  return w.N * w.K * dtypeBytes(w.dtype);
}

/** Empty tables: each layer's dense option. */
export function emptyTables(weights: WeightRef[]): LayerTable[] {
  return weights.map((w) => ({ name: w.name, options: [{ choice: -1, bytes: denseBytesOf(w), error: 0 }] }));
}

/** The uniform candidate of every choice that has at least one layer in the tables. */
export function uniformEstimates(tables: LayerTable[], choices: number, denseFileBytes: number): UniformCandidate[] {
  const denseLayers = tables.reduce((s, t) => s + t.options[0].bytes, 0);
  const out: UniformCandidate[] = [];
  for (let c = 0; c < choices; c++) {
    let damage = 0;
    let layerBytes = 0;
    let layers = 0;
    for (const t of tables) {
      const o = t.options.find((x) => x.choice === c);
      layerBytes += o ? o.bytes : t.options[0].bytes;
      if (!o) continue;
      damage += o.error * o.error;
      layers++;
    }
    if (layers) out.push({ choice: c, bytes: denseFileBytes - denseLayers + layerBytes, damage, layerBytes, layers });
  }
  return out;
}

/** Candidates not beaten by another on both proxy damage and bytes, smallest first. */
export function proxyFront(cands: UniformCandidate[]): UniformCandidate[] {
  const sorted = [...cands].sort((a, b) => a.bytes - b.bytes || a.damage - b.damage);
  const out: UniformCandidate[] = [];
  // A larger candidate is worth a trial only if its damage is below that of every smaller one.
  for (const c of sorted) if (!out.length || c.damage < out[out.length - 1].damage) out.push(c);
  return out;
}
