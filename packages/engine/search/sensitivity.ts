// Stage 1 of a search, cheap first: each layer's error and bytes under each choice — the sensitivity table the
// uniform candidates and the per-layer mixing are ranked by — without applying every choice to every layer.
//
// Cheap choices (RTN codes, magnitude/Wanda masks, no adapter) are simulated in memory on each layer's weights
// (read once, with the calibration statistics the search computed once): their error ε = ‖X(W−Ŵ)‖/‖XW‖ comes from
// the DIAGONAL of the layer's Hessian (Σ_k H_kk·‖Δ_:k‖², O(N·K) per choice instead of the O(N·K²) quadratic form;
// rounding and pruning errors are close to independent across input channels, so the off-diagonal terms mostly
// cancel), rescaled per layer by κ = exact/diagonal measured on one reference choice (one O(N·K²) form per layer:
// correlated inputs are a property of the layer, not of the choice).
//
// Expensive choices (GPTQ, SparseGPT, low-rank adapters: an O(N·K²)–O(K³) solve per layer) run through the real
// methods on PROBE layers only — one layer per distinct shape (op, N, K), from the middle of its depth — and the
// rest of the layers get their error as ρ·ε(twin), where the twin is the same choice without its expensive part
// (GPTQ → RTN codes, SparseGPT → the Wanda mask, an adapter → none), whose bytes are the same (adapters: plus their
// own bytes), and ρ = ε²(choice)/ε²(twin) on the probe of that shape. A choice that gains nothing on any probe
// (ρ ≥ 1: as many bytes or more, as much error or more) is dominated by its twin and pruned from the space.
//
// The table only ranks and prunes: every answer is a full-model trial of the plan applied by the real methods.
import type { LayerStats, MethodContext } from '../methods/types.js';
import { applyMask, nmMask } from '../math/nm.js';
import { magnitudeScores, wandaScores } from '../math/wanda.js';
import { readWeightMatrix, type WeightRef } from '../onnx/weights.js';
import { dequantize, quantizeMasked, quantizeRtn } from '../quant/rtn.js';
import { resolveBlockSize } from '../quant/types.js';
import { parsePattern } from '../recipe-parts.js';
import type { SearchRecipe } from './schema.js';
import { layerRelativeError } from '../runtime/calibration.js';
import { closeModel } from '../onnx/model.js';
import { applyPlan } from './apply.js';
import type { LayerTable } from './plan.js';
import { choiceBytes, choiceLabel, dtypeBytes, stepsOf, type SearchChoice } from './space.js';
import { denseBytesOf } from './uniform.js';

/** How a choice's errors were obtained. */
export type ProxySource = 'simulated' | 'probed' | 'pruned';

export interface ChoiceProxy {
  choice: number;
  source: ProxySource;
  /** Per probe shape: ε²(choice)/ε²(twin) measured on the probe layer (expensive choices only). */
  ratios?: Record<string, number>;
  /** Seconds spent on this choice (simulation, or the probe run). */
  seconds: number;
}

export interface SensitivityResult {
  /** Per layer: dense and every applicable, non-pruned choice (bytes, ε). */
  tables: LayerTable[];
  proxies: ChoiceProxy[];
  /** The probe layer of each shape. */
  probes: Record<string, string>;
  seconds: { simulate: number; probes: number };
}

/** Whether a choice needs a per-layer solve (GPTQ, SparseGPT, adapters) rather than rounding or a mask. */
export function isExpensive(c: SearchChoice): boolean {
  if (c.kind === 'quantize') return c.scheme !== 'rtn';
  if (c.kind === 'sparsity') return c.criterion === 'sparsegpt';
  return c.scheme !== 'rtn' || c.criterion === 'sparsegpt' || c.rankRatio > 0;
}

/** The cheap choice with the same codes/mask layout: GPTQ → RTN, SparseGPT → Wanda, no adapter. */
export function twinOf(c: SearchChoice): SearchChoice {
  if (c.kind === 'quantize') return { ...c, scheme: 'rtn' };
  if (c.kind === 'sparsity') return { ...c, criterion: c.criterion === 'sparsegpt' ? 'wanda' : c.criterion };
  return {
    ...c,
    scheme: 'rtn',
    criterion: c.criterion === 'sparsegpt' ? 'wanda' : c.criterion,
    rankRatio: 0,
  };
}

/** A shape class: layers that share op and [N, K] share one probe. */
export function shapeKey(w: WeightRef): string {
  return `${w.op} ${w.N}×${w.K}`;
}

/** One probe per shape: the middle layer (in graph order) of each shape's layers. */
export function probeLayers(weights: WeightRef[]): Map<string, number> {
  const byShape = new Map<string, number[]>();
  weights.forEach((w, i) => byShape.set(shapeKey(w), [...(byShape.get(shapeKey(w)) ?? []), i]));
  return new Map([...byShape].map(([k, idx]) => [k, idx[idx.length >> 1]]));
}

/** Ŵ of a cheap choice (canonical [N][K]), or null when its simulation does not apply (e.g. SLiM-Quant). */
export function simulate(c: SearchChoice, w: Float32Array, N: number, K: number, st: LayerStats): Float32Array | null {
  const xNorm = st.xNorm[0];
  const maskOf = (pattern: string, criterion: string) => {
    const { n, m } = parsePattern(pattern);
    const scores = criterion === 'wanda' ? wandaScores(w, N, K, xNorm) : magnitudeScores(w);
    return nmMask(scores, N, K, n, m);
  };
  if (st.groups !== 1) return null; // grouped Conv: probed instead (one Hessian per group)
  if (c.kind === 'quantize') {
    if (c.scheme !== 'rtn') return null;
    return dequantize(quantizeRtn(w, N, K, { bits: c.bits, groupSize: c.groupSize, symmetric: true, clip: c.clip }));
  }
  if (c.kind === 'sparsity') {
    if (c.criterion === 'sparsegpt') return null;
    const out = Float32Array.from(w);
    applyMask(out, maskOf(c.pattern, c.criterion));
    return out;
  }
  if (c.scheme !== 'rtn' || c.criterion === 'sparsegpt' || c.rankRatio > 0) return null;
  const mask = maskOf(c.pattern, c.criterion);
  const bs = resolveBlockSize({ groupSize: c.groupSize }, K);
  return dequantize(quantizeMasked(w, mask, N, K, c.bits, bs, undefined, c.clip ?? 'none'));
}

/** Σ_k H_kk·Σ_n Δ_nk² and Σ_k H_kk·Σ_n W_nk²: the diagonal part of tr(ΔHΔᵀ) and tr(WHWᵀ). */
export function diagonalForms(
  w: Float32Array,
  wHat: Float32Array,
  N: number,
  K: number,
  h: Float64Array,
): { num: number; den: number } {
  let num = 0;
  let den = 0;
  for (let k = 0; k < K; k++) {
    const hk = h[k * K + k];
    let sd = 0;
    let sw = 0;
    for (let n = 0; n < N; n++) {
      const x = w[n * K + k];
      const d = x - wHat[n * K + k];
      sd += d * d;
      sw += x * x;
    }
    num += hk * sd;
    den += hk * sw;
  }
  return { num, den };
}

/** Whether the layer can take the choice (the method's own skip reason, as applyPlan asks it). */
async function applies(ctx: MethodContext<SearchRecipe>, w: WeightRef, c: SearchChoice): Promise<boolean> {
  if (!ctx.methods) throw new Error('search needs ctx.methods (the registry) to apply its choices');
  for (const step of stepsOf(c, ctx.recipe.objective ?? 'size')) {
    const m = await ctx.methods(step.method);
    if (m.skipReason?.(w, step)) return false;
  }
  return true;
}

interface Cheap {
  /** ε² per (layer, cheap choice key); undefined where the choice does not apply. */
  err2: Map<string, number>[];
  /** Exact ε² per (probe layer, choice key): the twins' errors the probe ratios divide by. */
  exactAtProbe: Map<string, number>[];
}

const keyOf = (c: SearchChoice) => choiceLabel(c);

/** Simulated choices (and every expensive choice's twin) on every layer: ε² from the diagonal, rescaled by κ. */
async function simulateAll(
  ctx: MethodContext<SearchRecipe>,
  sims: SearchChoice[],
  probes: Set<number>,
  onLayer: (i: number) => void,
): Promise<Cheap> {
  const err2: Map<string, number>[] = [];
  const exactAtProbe: Map<string, number>[] = [];
  for (let i = 0; i < ctx.weights.length; i++) {
    ctx.checkAbort();
    onLayer(i);
    const w = ctx.weights[i];
    const row = new Map<string, number>();
    const exact = new Map<string, number>();
    err2.push(row);
    exactAtProbe.push(exact);
    const st = await ctx.stats(w);
    const h = st?.hessian?.[0];
    if (!st || !h || st.groups !== 1) continue; // probed with everything else (see probeChoices)
    const W = readWeightMatrix(ctx.model, w);
    let kappa: number | undefined;
    for (const c of sims) {
      if (!(await applies(ctx, w, c))) continue;
      const wHat = simulate(c, W, w.N, w.K, st);
      if (!wHat) continue;
      const d = diagonalForms(W, wHat, w.N, w.K, h);
      const diag = d.den > 0 ? d.num / d.den : Infinity;
      if (kappa === undefined || probes.has(i)) {
        // κ from the first choice; at probe layers every twin is measured exactly (the ratios divide by them).
        const e = (await layerRelativeError(w, st, W, wHat)) ?? Math.sqrt(diag);
        if (kappa === undefined) kappa = diag > 0 ? (e * e) / diag : 1;
        if (probes.has(i)) exact.set(keyOf(c), e * e);
      }
      row.set(keyOf(c), diag * kappa);
    }
  }
  return { err2, exactAtProbe };
}

/**
 * The sensitivity table. `progress(f, message)` reports the stage's own fraction. Probe runs go through applyPlan
 * (the real methods, exact layer errors); everything else is simulated.
 */
export async function sensitivity(
  ctx: MethodContext<SearchRecipe>,
  densePath: string,
  choices: SearchChoice[],
  progress: (fraction: number, message: string) => void,
): Promise<SensitivityResult> {
  const probeOf = probeLayers(ctx.weights);
  const probeSet = new Set(probeOf.values());
  // Cheap choices of the space, plus the twins of the expensive ones (simulated even when not in the space).
  const sims = new Map<string, SearchChoice>();
  for (const c of choices) {
    const t = isExpensive(c) ? twinOf(c) : c;
    sims.set(keyOf(t), t);
  }
  let t0 = performance.now();
  const cheap = await simulateAll(ctx, [...sims.values()], probeSet, (i) =>
    progress((0.5 * i) / ctx.weights.length, `sensitivity: layer ${i + 1}/${ctx.weights.length} (simulated)`),
  );
  const simulateSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  // Layers the simulation could not take (grouped Conv) get every choice measured by the probe runs.
  const unsimulated = ctx.weights.map((_, i) => i).filter((i) => cheap.err2[i].size === 0);
  const tables: LayerTable[] = ctx.weights.map((w) => ({
    name: w.name,
    options: [{ choice: -1, bytes: denseBytesOf(w), error: 0 }],
  }));
  const proxies: ChoiceProxy[] = [];
  const bytesOf = (c: SearchChoice, w: WeightRef) => choiceBytes(c, w.N, w.K, dtypeBytes(w.dtype));
  const add = (li: number, ci: number, error: number) =>
    tables[li].options.push({ choice: ci, bytes: bytesOf(choices[ci], ctx.weights[li]), error });
  const runs = choices.filter((c) => isExpensive(c) || unsimulated.length).length;
  let done = 0;
  for (let ci = 0; ci < choices.length; ci++) {
    const c = choices[ci];
    const tc = performance.now();
    const layers = isExpensive(c) ? [...new Set([...probeSet, ...unsimulated])] : unsimulated;
    let measured = new Map<number, number>();
    if (layers.length) {
      progress(0.5 + (0.5 * done++) / runs, `sensitivity: ${choiceLabel(c)} on ${layers.length} probe layers`);
      measured = await probeChoice(ctx, densePath, choices, ci, layers);
    }
    for (const li of unsimulated) if (measured.has(li)) add(li, ci, measured.get(li)!);
    if (!isExpensive(c)) {
      ctx.weights.forEach((_, li) => {
        const e2 = cheap.err2[li].get(keyOf(c));
        if (e2 !== undefined) add(li, ci, Math.sqrt(e2));
      });
      proxies.push({ choice: ci, source: 'simulated', seconds: simulateSeconds / sims.size });
      continue;
    }
    const ratios: Record<string, number> = {};
    for (const [shape, li] of probeOf) {
      const e = measured.get(li);
      const twin = cheap.exactAtProbe[li].get(keyOf(twinOf(c)));
      if (e !== undefined && twin !== undefined) ratios[shape] = twin > 0 ? (e * e) / twin : e > 0 ? Infinity : 1;
    }
    // Dominated by its twin (no fewer bytes) wherever it was measured: nothing to gain on any layer.
    if (!Object.values(ratios).some((r) => r < 1) && !unsimulated.some((li) => measured.has(li))) {
      proxies.push({ choice: ci, source: 'pruned', ratios, seconds: (performance.now() - tc) / 1000 });
      continue;
    }
    ctx.weights.forEach((w, li) => {
      if (probeSet.has(li) && measured.has(li)) return add(li, ci, measured.get(li)!);
      const twin = cheap.err2[li].get(keyOf(twinOf(c)));
      const rho = ratios[shapeKey(w)];
      if (twin !== undefined && rho !== undefined && rho < 1) add(li, ci, Math.sqrt(rho * twin));
    });
    proxies.push({ choice: ci, source: 'probed', ratios, seconds: (performance.now() - tc) / 1000 });
  }
  proxies.sort((a, b) => a.choice - b.choice);
  const probes = Object.fromEntries([...probeOf].map(([k, li]) => [k, ctx.weights[li].name]));
  return { tables, proxies, probes, seconds: { simulate: simulateSeconds, probes: (performance.now() - t0) / 1000 } };
}

/** Runs one choice on the given layers through the real method; ε per layer it compressed. */
async function probeChoice(
  ctx: MethodContext<SearchRecipe>,
  densePath: string,
  choices: SearchChoice[],
  ci: number,
  layers: number[],
): Promise<Map<number, number>> {
  const set = new Set(layers);
  const plan = ctx.weights.map((_, i) => (set.has(i) ? ci : -1));
  const applied = await applyPlan(ctx, densePath, choices, plan);
  closeModel(applied.model);
  const byName = new Map(ctx.weights.map((w, i) => [w.name, i]));
  const out = new Map<number, number>();
  for (const r of applied.rows) {
    const li = byName.get(r.name);
    if (li === undefined || r.skipped || typeof r.relError !== 'number' || !Number.isFinite(r.relError)) continue;
    out.set(li, r.relError);
  }
  return out;
}
