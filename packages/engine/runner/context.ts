// The MethodContext a method runs with: exactly what it declared, provided by the runner. Statistics come from the
// lazy collector (their passes are timed as stage "calibrate"); a weight's statistics are freed when the last
// weight reading the same activation is released; held-out scoring is offered when data exists.
import { getMethod } from '../methods/registry.js';
import type { LayerStats, MethodContext, MethodProgress } from '../methods/types.js';
import { loadModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import type { Recipe } from '../recipe.js';
import { layerRelativeError } from '../runtime/calibration.js';
import { HeldOutScorer } from '../soup/score.js';
import { heldOutData, type RunState } from './state.js';

/** Counts the method's calls for the declaration check (runner/compress.ts). */
export interface ContextCalls {
  stats: number;
}

export function methodContext(s: RunState, warn: (m: string) => void, calls: ContextCalls): MethodContext<Recipe> {
  const { recipe } = s;
  const plan = s.plan!;
  const collector = plan.collector;
  const ctx: MethodContext<Recipe> = {
    model: s.model!,
    recipe,
    weights: s.selected!,
    skipped: s.skipped!,
    hasCalibration: !!collector,
    executionProvider: s.sessions.executionProvider,
    ingredients: (s.inputs.ingredientPaths ?? []).map((path) => ({ path, load: () => loadModel(path) })),
    tmpDir: s.scratch,
    methods: getMethod,
    signal: s.opts.signal,
    checkAbort: s.checkAbort,
    warn,
    progress: (p: MethodProgress) =>
      s.progress.emit('compress', p.fraction, {
        ...(p.layer ? { layer: p.layer } : {}),
        ...(p.message ? { message: p.message } : {}),
        ...(p.trial ? { trial: p.trial } : {}),
        ...(p.best !== undefined ? { best: p.best } : {}),
      }),
    stats: async (w) => {
      calls.stats++;
      if (s.method!.calibration(recipe) === 'none') return undefined;
      const req = plan.requestOf.get(w);
      if (!collector || !req) return undefined;
      const st = await layerStats(s, req.key);
      // A method that did not declare a Hessian does not get one (it was computed for the report only).
      return s.method!.hessian(recipe) ? st : ({ ...st, hessian: undefined } as LayerStats);
    },
    statsReady: (w) => {
      const req = plan.requestOf.get(w);
      return !collector || !req || s.method!.calibration(recipe) === 'none' || collector.has(req.key);
    },
    release: releaser(s),
    relativeError: async (w, before, after) => {
      const req = plan.requestOf.get(w);
      if (!collector || !req || (!req.hessian && !req.sampleRows)) return null;
      return layerRelativeError(w, await layerStats(s, req.key), before, after);
    },
  };
  addHeldOut(s, ctx);
  return ctx;
}

/** A layer's statistics; a call that runs a calibration pass is timed as stage "calibrate". */
function layerStats(s: RunState, key: string): Promise<LayerStats> {
  return s.clock.stage(
    'calibrate',
    () => s.plan!.collector!.get(key),
    () => s.sessions.executionProvider,
  );
}

/** A shared activation (q/k/v reading one input) is freed when the last weight reading it is done. */
function releaser(s: RunState): (w: WeightRef) => void {
  const { requestOf, collector } = s.plan!;
  const readers = new Map<string, number>();
  for (const r of requestOf.values()) readers.set(r.key, (readers.get(r.key) ?? 0) + 1);
  const released = new Set<WeightRef>();
  return (w) => {
    const req = requestOf.get(w);
    if (!req || released.has(w)) return;
    released.add(w);
    const left = (readers.get(req.key) ?? 1) - 1;
    readers.set(req.key, left);
    if (left === 0) collector?.release(req.key);
  };
}

/**
 * Held-out scoring for methods that choose between candidates (greedy soups): evaluation data, else calibration
 * data; fidelity is measured against the parent (or the input model when it is not an ingredient). Labels too.
 */
function addHeldOut(s: RunState, ctx: MethodContext<Recipe>): void {
  const { recipe, inputs } = s;
  const scoreSet = heldOutData(s);
  if (scoreSet) {
    const paths = inputs.ingredientPaths ?? [];
    const referencePath = inputs.parentPath ?? (paths.includes(inputs.modelPath) ? undefined : inputs.modelPath);
    s.scorer = new HeldOutScorer({
      dataset: scoreSet,
      tmpDir: s.scratch,
      executionProviders: s.sessions.candidates,
      ...(recipe.evaluation?.samples ? { samples: recipe.evaluation.samples } : {}),
      ...(recipe.evaluation?.outputName ? { outputName: recipe.evaluation.outputName } : {}),
      ...(referencePath ? { referencePath } : {}),
    });
    ctx.scorer = s.scorer;
    ctx.heldOut = { dataset: scoreSet, kind: s.evalData ? 'evaluation' : 'calibration' };
  }
  ctx.executionProviders = [...s.sessions.candidates];
  const l = s.evalData?.labels ?? s.calibration?.labels;
  if (l) ctx.labels = { dims: l.dims, data: l.data as BigInt64Array | Int32Array };
}
