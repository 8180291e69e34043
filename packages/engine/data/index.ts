// Public entry of the engine's datasets: reading (.npz / .npy / TensorProto folders), header-only inspection, the one
// list of dataset problems, batching and random calibration data. One of the engine's light entries (see index.ts):
// it loads no recipe schema, method or runner.
export { DatasetError, type DataArray, type Dataset, type DataDtype } from './types.js';
export { loadDataset, validateDataset, planBatches, batches, fixedBatchSize, LABELS_KEY } from './dataset.js';
export {
  datasetFitProblems,
  fitProblems,
  TensorSummarySchema,
  type DatasetFormat,
  type DatasetProblem,
  type TensorSummary,
} from './fit.js';
export { inspectDatasetFile, inspectNpyFile, type DatasetInspection } from './inspect.js';
export { modelInputSpecs, modelOutputSpecs, type ModelInputSpec } from './inputs.js';
export { decodeNpy, encodeNpy } from './npy.js';
export { decodeNpz, encodeNpz } from './npz.js';
export { decodeTensorProto } from './tensorpb.js';
export { randomDataset } from './random.js';
