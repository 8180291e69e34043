// The engine's public surface: what the CLI, the worker and other programs import. Everything here runs with no
// services (no HTTP, queue or database). apps/ and workers/ import the engine through this file or one of its light
// entries only (eslint.config.js): job.ts (the job contract and its errors), onnx/index.ts (model files),
// data/index.ts (datasets) and runtime/index.ts (sessions, evaluation). Why several: this file loads every method
// through the recipe schema (about 0.9 s on the dev machine, `node` on dist/), the job contract alone 0.01 s and the
// model files 0.3 s; the CLI's inspect, convert and eval and the start of `compress` must not pay for the methods.
// test/unit/engine/entries.test.ts keeps the light entries light.
import type { CompressionMethod as MethodOf, MethodContext as ContextOf } from './methods/types.js';
import type { Recipe } from './recipe.js';
export { runRecipe, ENGINE_VERSION, DEFAULT_MAX_HESSIAN_BYTES } from './run.js';
export * from './job.js';
export * from './onnx/index.js';
export * from './data/index.js';
export * from './runtime/index.js';
export * from './recipe.js';
export { allMethods, findMethod, getMethod, listMethods, methodFor, minModels } from './methods/registry.js';
export type {
  CalibrationNeed,
  IngredientSource,
  LayerStats,
  MethodProgress,
  MethodResult,
  ModelScorer,
  SkippedWeight,
} from './methods/types.js';
// Callers see the method interfaces over the full recipe union, as before; inside the engine they default to
// RecipeBase so that methods need not import the union built from them (methods/types.ts).
export type CompressionMethod<R extends Recipe = Recipe> = MethodOf<R>;
export type MethodContext<R extends Recipe = Recipe> = ContextOf<R>;
export { selectWeights } from './methods/select.js';
export { StatsCollector, type StatsRequest } from './runtime/stats.js';
export { FidelityAccumulator } from './metrics/fidelity.js';
export { AccuracyAccumulator, LmAccumulator } from './metrics/labels.js';
export { modelDiskBytes, weightCounts } from './report/sizes.js';
export { missingCalibrationMessage } from './calibration-need.js';
export type { SoupReport } from './soup/merge.js';
