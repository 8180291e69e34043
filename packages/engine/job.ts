// The contract between the engine and its callers (CLI, worker): what a job gets, how it reports progress, what it
// returns. Methods are listed in methods/registry.ts; runRecipe (run.ts) dispatches on recipe.method.
import type { JobArtifact, LayerReport } from './job-parts.js';
import type { Recipe } from './recipe.js';
import type { StageReport } from './runner/stages.js';

export type { StageReport };
// Errors, the per-layer row and the artifact record live in job-parts.ts (methods use them; this file names Recipe).
export { InputError, InputErrorWithArtifacts, isInputError, type JobArtifact, type LayerReport } from './job-parts.js';

/** Files a job reads and writes. Every path is a local file; storage adapters download/upload around the engine. */
export interface JobInputs {
  /** The model to compress (soups: the first ingredient, or the parent when `parentPath` is used). */
  modelPath: string;
  /** Soup ingredients (>= 2), all fine-tuned from one parent. */
  ingredientPaths?: string[];
  /** Optional parent model / previous mask source for soups. */
  parentPath?: string;
  /** .npz / .npy / folder of TensorProto .pb files. */
  calibrationPath?: string;
  /** Held-out data; .npz may carry `labels`. */
  evalPath?: string;
  /** Output directory: the engine writes model.onnx (+ model.onnx.data when external) and report.json there. */
  outputDir: string;
  /**
   * File name of the output model inside outputDir; its external data, if any, is `<outputName>.data`.
   * @defaultValue 'model.onnx'
   */
  outputName?: string;
}

export interface JobProgress {
  /** Stage name: load | calibrate | compress | write | evaluate | benchmark | done (methods may add their own). */
  stage: string;
  /** Overall fraction done, 0–1, monotonically non-decreasing. */
  fraction: number;
  /** Layer-level detail while compressing. */
  layer?: { index: number; total: number; name: string };
  message?: string;
  /** Searches: the full-model trial running now (1-based) and the most there will be. */
  trial?: { index: number; total: number };
  /** Searches: the best point so far within the budget (null while none is). */
  best?: Record<string, unknown> | null;
}

export interface JobOptions {
  onProgress?: (p: JobProgress) => void;
  /** Aborting stops the job promptly (checked between layers and between ORT runs) with an AbortError. */
  signal?: AbortSignal;
  /** Execution providers to try in order; the one that worked is recorded in the report. Default ['cpu']. */
  executionProviders?: ('cuda' | 'cpu')[];
  /** Temp directory for intermediate files (default: os.tmpdir()). */
  tmpDir?: string;
}

/** Report JSON written to report.json and served by the API. Methods add fields; these are always present. */
export interface JobReport {
  method: Recipe['method'];
  recipe: Recipe;
  engineVersion: string;
  onnxruntime: { version: string; executionProvider: string };
  layers: LayerReport[];
  /** Whole-model quality against the dense model (and labels when given). */
  quality: Record<string, unknown>;
  sizes: { inputBytes: number; outputBytes: number; [extra: string]: unknown };
  seconds: number;
  /**
   * Seconds, peak RSS and execution provider per stage that ran (load, calibrate, compress, write, evaluate,
   * latency); calibrate also counts its passes. Written by runRecipe (runner/stages.ts says how RSS is measured).
   */
  stages?: StageReport[];
  warnings: string[];
  [extra: string]: unknown;
}

export interface JobResult {
  report: JobReport;
  artifacts: JobArtifact[];
}
