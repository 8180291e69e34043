// The one state a job's stages share (runner/*.ts): each stage reads what earlier stages put here and adds its own
// part, so runRecipe (run.ts) is the list of stages and nothing else. Optional fields are filled in stage order
// (the comments say by which stage); a stage reads only fields of the stages before it.
import type * as ort from 'onnxruntime-node';
import { planBatches } from '../data/dataset.js';
import type { Dataset } from '../data/types.js';
import type { ModelInputSpec } from '../data/inputs.js';
import type { JobArtifact, JobInputs, JobOptions } from '../job.js';
import type { PatternCount } from '../methods/select.js';
import type { CompressionMethod, MethodResult, SkippedWeight } from '../methods/types.js';
import type { LoadedModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import type { Recipe } from '../recipe.js';
import type { DenseOutputs } from '../runtime/evaluate.js';
import type { StatsCollector, StatsRequest } from '../runtime/stats.js';
import type { HeldOutScorer } from '../soup/score.js';
import type { Progress } from './progress.js';
import type { SessionOwner } from './sessions.js';
import type { StageClock } from './stages.js';

/** Default cap on float64 Hessian bytes held at once (recipe.calibration.maxHessianBytes). */
export const DEFAULT_MAX_HESSIAN_BYTES = 2 * 2 ** 30;
export const DEFAULT_SAMPLES = 128;
export const DEFAULT_BATCH = 8;
/** Rows per activation kept for the layer error of methods that need no Hessian (R×K fp32 instead of K×K float64). */
export const ERROR_SAMPLE_ROWS = 256;

/** Calibration as planned by runner/calibrate.ts (absent parts: no calibration data, or the method needs none). */
export interface CalibrationPlan {
  /** Batches of the calibration data used (after the fixed-batch trim) and how many samples they hold. */
  ranges?: { ranges: [number, number][]; used: number };
  batchSize: number;
  /** The model's fixed batch size, when its inputs fix one. */
  fixedBatch?: number;
  maxHessianBytes: number;
  /** Lazy statistics of the selected weights' activations (calibration passes run when a method first asks). */
  collector?: StatsCollector;
  requestOf: Map<WeightRef, StatsRequest>;
  /** Calibration passes and ONNX Runtime runs (set when the method is done and the collector let go). */
  passes?: number;
  runs?: number;
  /** Where the layer errors came from: every row's Hessian, or a row sample (methods that need no Hessian). */
  layerError?: 'hessian' | 'sample';
}

export interface RunState {
  readonly recipe: Recipe;
  readonly inputs: JobInputs;
  readonly opts: JobOptions;
  readonly started: number;
  readonly progress: Progress;
  readonly checkAbort: () => void;
  /** Scratch folder, removed when the job ends. */
  readonly scratch: string;
  /** Warnings of the runner itself (methods add theirs through ctx.warn and MethodResult.warnings). */
  readonly warnings: string[];
  /** Every ONNX Runtime session of the job and the execution provider they ran on. */
  readonly sessions: SessionOwner;
  /** Seconds and peak RSS per stage, for report.stages. */
  readonly clock: StageClock;

  // load
  method?: CompressionMethod<Recipe>;
  model?: LoadedModel;
  inputBytes?: number;
  specs?: ModelInputSpec[];
  calibration?: Dataset;
  evalData?: Dataset;
  all?: WeightRef[];
  selected?: WeightRef[];
  skipped?: SkippedWeight[];
  /** Per include/exclude pattern, how many weights it matched (report.selection.patterns). */
  selectionPatterns?: PatternCount[];
  // calibrate
  plan?: CalibrationPlan;
  /**
   * The dense model's outputs for the evaluation, recorded by the first calibration pass when evaluation runs on the
   * calibration batches (runner/calibrate.ts); complete once that pass ran, else evaluation runs the dense model.
   */
  denseOutputs?: DenseOutputs;
  /** Where the maths' GEMMs ran during "compress" (set by runner/compress.ts). */
  gemm?: { executionProvider: 'cpu' | 'cuda'; fallback?: string };
  // compress
  scorer?: HeldOutScorer;
  result?: MethodResult;
  methodWarnings?: string[];
  // write
  outPath?: string;
  artifacts?: JobArtifact[];
  countsAfter?: { parameters: number; nonZeros: number };
  outputBytes?: number;
  // evaluate, latency
  quality?: Record<string, unknown>;
  /**
   * The session evaluation ran the compressed model in (CPU arena on, no spinning) and the batch sizes it ran, left open
   * for the latency stage when the method is timed; latency releases it.
   */
  evaluated?: { session: ort.InferenceSession; batches: number[] };
  latency?: Record<string, unknown>;
}

export function describeRecipe(r: Recipe): string {
  return 'criterion' in r && r.criterion
    ? `method "${r.method}" with criterion "${r.criterion}"`
    : `method "${r.method}"`;
}

/** The batches evaluation runs over on `data` (the held-out data). */
export function evaluationRanges(s: RunState, data: Dataset): { ranges: [number, number][]; used: number } {
  const plan = s.plan!;
  return planBatches(data.samples, plan.batchSize, s.recipe.evaluation?.samples, plan.fixedBatch);
}

/** The data held-out work runs on: evaluation data, else calibration data. */
export function heldOutData(s: RunState): Dataset | undefined {
  return s.evalData ?? s.calibration;
}
