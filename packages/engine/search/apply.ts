// Applies a per-layer plan to a fresh load of the dense model through the existing methods: the layers given one
// choice are handed, as a subset, to the method(s) of that choice, with the search's calibration statistics (from
// the dense model, computed once for the whole search) behind ctx.stats. Returns the edited model and the methods'
// per-layer rows (relative output error, bits per weight), which are also the sensitivity proxy.
import type { LayerReport } from '../job-parts.js';
import type { MethodContext } from '../methods/types.js';
import { closeModel, loadModel, type LoadedModel } from '../onnx/model.js';
import { discoverWeights, type WeightRef } from '../onnx/weights.js';
import { layerRelativeError } from '../runtime/calibration.js';
import type { SearchRecipe } from './schema.js';
import { stepsOf, type SearchChoice, type StepRecipe } from './space.js';

export interface Applied {
  model: LoadedModel;
  rows: LayerReport[];
  warnings: string[];
}

/**
 * `plan[i]` is the choice index of ctx.weights[i] (-1 = keep dense). The caller owns (and must close) the model.
 * Layers a choice cannot take (the method's skip reason, or a row it reports as skipped) stay dense and come back
 * as skipped rows.
 */
export async function applyPlan(
  ctx: MethodContext<SearchRecipe>,
  densePath: string,
  choices: SearchChoice[],
  plan: number[],
): Promise<Applied> {
  const model = await loadModel(densePath);
  try {
    const fresh = new Map(discoverWeights(model).map((w) => [w.name, w]));
    const original = new Map<WeightRef, WeightRef>();
    const groups = new Map<number, WeightRef[]>();
    ctx.weights.forEach((w, i) => {
      const f = fresh.get(w.name);
      if (!f || plan[i] < 0) return;
      original.set(f, w);
      groups.set(plan[i], [...(groups.get(plan[i]) ?? []), f]);
    });
    const rows: LayerReport[] = [];
    const warnings: string[] = [];
    for (const [c, weights] of groups) {
      for (const step of stepsOf(choices[c], ctx.recipe.objective ?? 'size')) {
        ctx.checkAbort();
        rows.push(...(await runStep(ctx, model, step, weights, original, warnings)));
      }
    }
    return { model, rows, warnings };
  } catch (e) {
    closeModel(model);
    throw e;
  }
}

async function runStep(
  ctx: MethodContext<SearchRecipe>,
  model: LoadedModel,
  recipe: StepRecipe,
  weights: WeightRef[],
  original: Map<WeightRef, WeightRef>,
  warnings: string[],
): Promise<LayerReport[]> {
  // The registry comes through the context (the runner's getMethod): search/ does not import the registry that lists it.
  if (!ctx.methods) throw new Error('search needs ctx.methods (the registry) to apply its choices');
  const method = await ctx.methods(recipe.method);
  const take: WeightRef[] = [];
  const skippedRows: LayerReport[] = [];
  for (const w of weights) {
    const reason = method.skipReason?.(w, recipe);
    if (reason) skippedRows.push({ name: w.name, node: w.node, op: w.op, shape: w.shape, skipped: reason, seconds: 0 });
    else take.push(w);
  }
  if (!take.length) return skippedRows;
  const statsOf = (w: WeightRef) => ctx.stats(original.get(w) ?? w);
  const sub: MethodContext = {
    model,
    recipe,
    weights: take,
    skipped: [],
    hasCalibration: true,
    executionProvider: ctx.executionProvider,
    ingredients: [],
    tmpDir: ctx.tmpDir,
    methods: ctx.methods,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    checkAbort: ctx.checkAbort,
    warn: (m) => warnings.push(m),
    progress: () => {},
    stats: statsOf,
    // The statistics serve every trial of the search: they are freed with the job, not per layer.
    release: () => {},
    relativeError: async (w, before, after) => layerRelativeError(w, await statsOf(w), before, after),
  };
  const result = await method.run(sub);
  warnings.push(...(result.warnings ?? []));
  return [...result.layers, ...skippedRows];
}
