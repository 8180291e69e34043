// The engine's public surface: what the CLI, the worker and other programs import. Everything here runs with no
// services (no HTTP, queue or database).
import type { CompressionMethod as MethodOf, MethodContext as ContextOf } from './methods/types.js';
import type { Recipe } from './recipe.js';
export { runRecipe, ENGINE_VERSION, DEFAULT_MAX_HESSIAN_BYTES } from './run.js';
export * from './job.js';
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
export { loadDataset, validateDataset, planBatches, batches, LABELS_KEY } from './data/dataset.js';
export {
  datasetFitProblems,
  fitProblems,
  TensorSummarySchema,
  type DatasetFormat,
  type DatasetProblem,
  type TensorSummary,
} from './data/fit.js';
export { inspectDatasetFile, inspectNpyFile, type DatasetInspection } from './data/inspect.js';
export { modelInputSpecs, modelOutputSpecs, type ModelInputSpec } from './data/inputs.js';
export { decodeNpy, encodeNpy } from './data/npy.js';
export { decodeNpz, encodeNpz } from './data/npz.js';
export { decodeTensorProto } from './data/tensorpb.js';
export { randomDataset } from './data/random.js';
export { DatasetError, type DataArray, type Dataset, type DataDtype } from './data/types.js';
export { openSession, ortVersion, SessionError, type ExecutionProvider } from './runtime/session.js';
export { evaluateModels, type QualityReport } from './runtime/evaluate.js';
export { StatsCollector, type StatsRequest } from './runtime/stats.js';
export { FidelityAccumulator } from './metrics/fidelity.js';
export { AccuracyAccumulator, LmAccumulator } from './metrics/labels.js';
export { modelDiskBytes, weightCounts } from './report/sizes.js';
