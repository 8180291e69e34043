// The contract between the engine and its callers (CLI, worker): what a job gets, how it reports progress, what it
// returns. Methods register themselves in methods/registry.ts; runRecipe (run.ts) dispatches on recipe.method.
import type { Recipe } from './recipe.js';
import type { StageReport } from './runner/stages.js';

export type { StageReport };

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

export interface JobArtifact {
  /** File name inside outputDir, e.g. "model.onnx", "model.onnx.data", "report.json". */
  name: string;
  path: string;
  sizeBytes: number;
}

/** Per-layer row of a report (the worker stores these as rows in Postgres). */
export interface LayerReport {
  name: string;
  node: string;
  op: string;
  shape: number[];
  /** What was done, e.g. "2:4", "int4 g32 + 2:4 + r=12"; or skipped with a reason. */
  pattern?: string;
  skipped?: string;
  sparsity?: number;
  patternVerified?: boolean;
  /** ‖X(W−Ŵ)‖/‖XW‖ on calibration data (null when no activations were available). */
  relError?: number | null;
  /** For SLiM: error before the adapter. */
  relErrorBeforeAdapter?: number | null;
  bitsPerWeight?: number;
  seconds: number;
  [extra: string]: unknown;
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

/**
 * Error for bad input (bad model, bad data, impossible recipe): deterministic, never retried by the worker, shown to
 * the user. `code` is stable and machine-readable. Recognised across process boundaries by `name`.
 */
export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A deterministic failure that still leaves files worth keeping (a search whose budget no candidate met: its
 * report.json and pareto.svg). The engine writes `files` (and `report`, as report.json) to the output folder and
 * lists them in `artifacts`; the worker stores them with the failed job. Still an InputError by `name`.
 */
export class InputErrorWithArtifacts extends InputError {
  artifacts: JobArtifact[] = [];
  constructor(
    code: string,
    message: string,
    readonly report: Record<string, unknown>,
    readonly files: { name: string; content: string }[] = [],
  ) {
    super(code, message);
  }
}

export function isInputError(e: unknown): e is { name: string; code: string; message: string } {
  return (
    typeof e === 'object' &&
    e !== null &&
    ['InputError', 'RecipeError', 'OnnxError', 'DatasetError'].includes((e as { name?: string }).name ?? '')
  );
}
