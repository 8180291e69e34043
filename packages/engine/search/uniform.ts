// Stage 1 of a search, cheap first: every choice of the space applied to every layer it fits (one pass of the
// existing methods per choice, on the statistics computed once), which gives each layer's error and bytes under
// each choice — the sensitivity table the per-layer mixing ranks by — and a written uniform candidate per choice,
// so that the uniform trials only need their evaluation.
import { join } from 'node:path';
import type { LayerReport } from '../job-parts.js';
import type { MethodContext } from '../methods/types.js';
import { closeModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import type { SearchRecipe } from './schema.js';
import { applyPlan } from './apply.js';
import type { LayerTable } from './plan.js';
import { choiceBytes, dtypeBytes, packs24, type SearchChoice } from './space.js';
import { writeCandidate } from './trial.js';

export interface UniformCandidate {
  choice: number;
  file: string;
  bytes: number;
  /** Σ ε² over the layers the choice compressed. */
  damage: number;
  /** Planning bytes of the searched layers (dense where the choice did not apply). */
  layerBytes: number;
  rows: LayerReport[];
  warnings: string[];
}

export function denseBytesOf(w: WeightRef): number {
  return w.N * w.K * dtypeBytes(w.dtype);
}

/** Bytes of a layer under a choice: as the method reported them (codes, scales, adapters), else as written. */
export function rowBytes(row: LayerReport, choice: SearchChoice, w: WeightRef): number {
  // Slim's rows give the unpacked bytes (it packs after all layers): a packed 2:4 + 4-bit layer stores 1/8 byte
  // less per weight.
  if (typeof row.bitsPerWeight === 'number' && Number.isFinite(row.bitsPerWeight))
    return (row.bitsPerWeight * w.N * w.K) / 8 - (packs24(choice) && row.packed !== false ? (w.N * w.K) / 8 : 0);
  return choiceBytes(choice, w.N, w.K, dtypeBytes(w.dtype));
}

/** Empty tables: each layer's dense option. */
export function emptyTables(weights: WeightRef[]): LayerTable[] {
  return weights.map((w) => ({ name: w.name, options: [{ choice: -1, bytes: denseBytesOf(w), error: 0 }] }));
}

export async function uniformCandidate(
  ctx: MethodContext<SearchRecipe>,
  densePath: string,
  choices: SearchChoice[],
  c: number,
  tables: LayerTable[],
  scratch: string,
): Promise<UniformCandidate> {
  const applied = await applyPlan(
    ctx,
    densePath,
    choices,
    ctx.weights.map(() => c),
  );
  const file = join(scratch, `uniform-${c}.onnx`);
  let bytes: number;
  try {
    bytes = await writeCandidate(applied.model, file);
  } finally {
    closeModel(applied.model);
  }
  const rowOf = new Map(applied.rows.filter((r) => !r.skipped).map((r) => [r.name, r]));
  let damage = 0;
  let layerBytes = 0;
  ctx.weights.forEach((w, i) => {
    const row = rowOf.get(w.name);
    const err = row?.relError;
    if (!row || typeof err !== 'number' || !Number.isFinite(err)) {
      layerBytes += denseBytesOf(w);
      return;
    }
    const b = rowBytes(row, choices[c], w);
    tables[i].options.push({ choice: c, bytes: b, error: err });
    damage += err * err;
    layerBytes += b;
  });
  return { choice: c, file, bytes, damage, layerBytes, rows: applied.rows, warnings: applied.warnings };
}

/** Candidates not beaten by another on both proxy damage and bytes, smallest first. */
export function proxyFront(cands: UniformCandidate[]): UniformCandidate[] {
  const sorted = [...cands].sort((a, b) => a.bytes - b.bytes || a.damage - b.damage);
  const out: UniformCandidate[] = [];
  // A larger candidate is worth a trial only if its damage is below that of every smaller one.
  for (const c of sorted) if (!out.length || c.damage < out[out.length - 1].damage) out.push(c);
  return out;
}
