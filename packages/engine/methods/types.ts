// The interface every compression method implements. A method is data + one `run`: it declares what it needs
// (calibration statistics, a Hessian, labels, several models), the runner (run.ts) provides exactly that through a
// MethodContext, the method edits `ctx.model` in place and returns per-layer rows for the report. The runner checks
// afterwards that the method kept its declarations (runner/compress.ts).
// The recipe type parameter defaults to RecipeBase (what every recipe has), not to the union `Recipe`: the union is
// built from the methods, so naming it here would tie every method to every other (index.ts exports these types with
// the `Recipe` default, as before).
import type { LayerReport } from '../job-parts.js';
import type { LoadedModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import type { TObject } from 'typebox';
import type { Dataset } from '../data/types.js';
import type { RecipeBase, RecipeIssue } from '../recipe-parts.js';

/** Whether a method uses calibration activations: never, when given (better results), or always. */
export type CalibrationNeed = 'none' | 'optional' | 'required';

/**
 * Calibration statistics of the input activation X of one weight (shared by every weight reading the same
 * activation). All arrays are float64 and follow the weight's canonical column order (readWeightMatrix: row = output,
 * column = K index; Conv columns ordered (kh, kw, cin-within-group)).
 *
 * Grouped Conv (attribute `group` = G > 1): output rows [g·N/G, (g+1)·N/G) read only the input channels of group g, so
 * there is one entry per group in `xNorm` and `hessian`; MatMul/Gemm and ungrouped Conv have exactly one.
 */
export interface LayerStats {
  /** Activation tensor the statistics come from. */
  activation: string;
  /** Rows of X accumulated: all positions of all samples (batch × sequence, or batch × output pixels for Conv). */
  tokens: number;
  /** Number of groups (1 unless grouped Conv). */
  groups: number;
  /**
   * Per group, length K: x_k = sqrt(mean over tokens of X[:,k]²). For Conv these are input-channel RMS values over
   * all spatial positions, spread to the (kh, kw) columns of each channel.
   */
  xNorm: Float64Array[];
  /**
   * Per group, K×K row-major: H = (2/n)·Σ x xᵀ over the same rows (Conv: im2col patches incl. zero padding).
   * Present when the method declared `hessian(recipe) = true`, or when the runner computed it for error reporting.
   */
  hessian?: Float64Array[];
  /**
   * Per group, `rows`×K row-major fp32: rows of X spread evenly over the first calibration batch (Conv: im2col
   * patch rows). Present when the runner asked for it to report the layer error of a method that needs no Hessian
   * (‖X_s(W−Ŵ)ᵀ‖/‖X_s·Wᵀ‖ on these rows, math/relerr.ts relativeOutputErrorOnRows).
   */
  sample?: {
    rows: number;
    x: Float32Array[];
    /**
     * Per weight reading this activation through a plain MatMul (X·W): ‖X_s·W‖² over these rows, reduced in the
     * calibration pass from the layer's own output (runtime/capture.ts outSq), so the method needs no product for
     * the layer error's reference. Weights missing here compute it from `x`.
     */
    outputSquares?: Map<string, number>;
  };
  /**
   * With `hessian`, per weight reading this activation through a plain MatMul (X·W) that the calibration pass runs
   * anyway: tr(W·H·Wᵀ) = (2/n)·‖X·W‖² over the same rows as H (W canonical [N][K]), reduced from the layer's own
   * output (runtime/capture.ts outTr) — the denominator of the layer error ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖. Weights missing here
   * (Conv, Gemm, grouped, a layer past the pass's last activation, fp16 activations) compute it from H.
   */
  outputTraces?: Map<string, number>;
}

/** A weight that the runner did not hand to the method, and why (goes to the report as a skipped row). */
export interface SkippedWeight {
  weight: WeightRef;
  reason: string;
}

/** Progress inside a method: the runner maps it onto the job's overall fraction. */
export interface MethodProgress {
  /** Fraction of the method's own work done, 0–1. */
  fraction: number;
  layer?: { index: number; total: number; name: string };
  message?: string;
  /** Searches: the full-model trial running now (1-based) and the most there will be. */
  trial?: { index: number; total: number };
  /** Searches: the best point so far (within budget), or null while none is. */
  best?: Record<string, unknown> | null;
}

/** One ingredient model of a multi-model method (soups). Loaded lazily so only one needs to be in memory at a time. */
export interface IngredientSource {
  path: string;
  load(): Promise<LoadedModel>;
}

/** Held-out scoring hook for methods that choose between candidates (greedy soups). */
export interface ModelScorer {
  /**
   * Scores a model on the evaluation data (eval file, else calibration data). `metric`: accuracy (higher is better,
   * needs labels), perplexity (lower is better, LM labels), fidelity (relative output error against the dense model,
   * lower is better). Returns null when the data cannot give that metric.
   */
  score(model: LoadedModel, metric: 'accuracy' | 'perplexity' | 'fidelity'): Promise<number | null>;
}

export interface MethodContext<R extends RecipeBase = RecipeBase> {
  /** The model being compressed. The method edits it in place (writeWeightMatrix / graph edits). */
  model: LoadedModel;
  /** The parsed recipe (defaults filled in by parseRecipe). */
  recipe: R;
  /**
   * Weights to compress, in graph order, after include/exclude/opTypes and compressibility for this recipe
   * (pattern divisibility, dtype, sharing). Weights inside subgraphs are absent when the method needs calibration
   * (their activations cannot be captured); they are in `skipped` with the reason.
   */
  weights: WeightRef[];
  skipped: SkippedWeight[];
  /**
   * Calibration statistics of a weight's input activation, computed lazily in streaming passes over the calibration
   * data (the first call may run ORT for a while; later weights of the same pass return at once). Returns undefined
   * when the method's calibration need is 'optional' and no calibration data was given. Throws (InputError
   * 'hessian-too-large') when the method needs a Hessian larger than recipe.calibration.maxHessianBytes.
   */
  stats(weight: WeightRef): Promise<LayerStats | undefined>;
  /**
   * Whether stats(weight) would return at once (false: the call runs a calibration pass), so that a method can let
   * go of its own large buffers before a pass. Optional: contexts without lazy statistics leave it out.
   */
  statsReady?(weight: WeightRef): boolean;
  /** Frees the statistics of a weight once done with it (bounded memory across many layers). */
  release(weight: WeightRef): void;
  /**
   * ‖X(W−Ŵ)‖/‖XW‖ on the calibration data for canonical matrices [N][K] (before, after), using the Hessian of the
   * weight's activation (grouped Conv: summed over groups). null when no calibration Hessian is available.
   */
  relativeError(weight: WeightRef, before: Float32Array, after: Float32Array): Promise<number | null>;
  /** True when calibration statistics exist for this run (file given, or random data asked for). */
  hasCalibration: boolean;
  /** Reports progress inside the method. */
  progress(p: MethodProgress): void;
  /** Aborted → throw; call between layers. Throws the signal's reason (an AbortError). */
  checkAbort(): void;
  signal?: AbortSignal;
  /** Execution provider that ORT sessions of this job run on ('cuda' or 'cpu'). */
  executionProvider: 'cuda' | 'cpu';
  /** Labels of the evaluation/calibration data, when the method declared `labels` and they were given. */
  labels?: { dims: number[]; data: BigInt64Array | Int32Array | Float32Array };
  /** Ingredients (models other than `model`) for methods that declared `ingredients`. */
  ingredients: IngredientSource[];
  /** Scores candidate models on held-out data (null when no data was given). */
  scorer?: ModelScorer;
  /** The held-out data behind `scorer` and which file it came from (evaluation file, else calibration data). */
  heldOut?: { dataset: Dataset; kind: 'evaluation' | 'calibration' };
  /** All execution providers of the job, in order (the method's own sessions try them as the runner does). */
  executionProviders?: ('cuda' | 'cpu')[];
  /** Temp directory for scratch files. */
  tmpDir: string;
  /**
   * The registered methods, by name, for a method that runs others (search applies sparsity, quantize and slim to
   * its candidates). The runner passes the registry's getMethod: a method never imports the registry that lists it.
   * Rejects with InputError('unknown-method') for a name not registered.
   */
  methods?: (name: string) => Promise<CompressionMethod>;
  /** Warnings to surface in the report (also accepted in MethodResult). */
  warn(message: string): void;
}

export interface MethodResult {
  /** One row per weight the method compressed (the runner adds the skipped rows itself). */
  layers: LayerReport[];
  /** Extra top-level report fields (method-specific: quantization format chosen, soup order, …). */
  report?: Record<string, unknown>;
  warnings?: string[];
  /**
   * Whether the graph structure changed (nodes/initializers added or removed) rather than only weight values.
   * @defaultValue false
   */
  graphChanged?: boolean;
  /** Extra artifacts (e.g. a search's pareto.svg): the runner writes them next to the model and lists them. */
  files?: { name: string; content: string }[];
}

/**
 * A compression method: one file, methods/<name>.ts, exports it as `method` together with its recipe schema. It
 * carries everything about the method — its recipe (schema, defaults, rules), what it needs from the runner, and
 * the work — so that the recipe union (recipe.ts), the runner (run.ts) and the API ask the method, never its name.
 */
export interface CompressionMethod<R extends RecipeBase = RecipeBase> {
  /** The recipe's `method` value. */
  name: R['method'];
  /** The method's recipe: a strict TypeBox object whose `method` is `name` (one branch of RecipeSchema). */
  schema: TObject;
  /** Fills in the recipe's defaults; gets the caller's private copy, edits it and returns it. */
  withDefaults(recipe: R): R;
  /** Rules the schema cannot express, checked after defaults: every problem found. @defaultValue none */
  rules?(recipe: R): RecipeIssue[];
  /** Models a job reads at least, the input model included (soups average >= 2). @defaultValue 1 */
  minModels?: number;
  /** One-line summary for `--help` and the API docs. */
  summary: string;
  /** A sample recipe (also in the doc comment of each method) shown by the CLI and the OpenAPI examples. */
  example: R;
  /** Calibration need; may depend on the recipe (e.g. magnitude: optional, wanda/sparsegpt: required). */
  calibration(recipe: R): CalibrationNeed;
  /** Whether the method needs the K×K Hessian of each layer's input (SparseGPT, whitened low-rank). */
  hessian(recipe: R): boolean;
  /** Whether the method needs labels (e.g. greedy soups scored by accuracy). */
  labels(recipe: R): boolean;
  /** Whether the method reads several models (soups): the runner then fills ctx.ingredients. */
  ingredients(recipe: R): boolean;
  /**
   * Whether the method changes the graph structure (inserts nodes such as MatMulNBits). Methods that only rewrite
   * weight values return false, and the runner verifies the node count did not change.
   */
  changesGraph(recipe: R): boolean;
  /**
   * Method-specific reason a weight cannot take this recipe (e.g. K not a multiple of M, K not a multiple of the
   * quantization group), or undefined when it can. The runner has already applied include/exclude/opTypes and the
   * model layer's own `compressible` flag; a weight with a reason here goes to ctx.skipped.
   */
  skipReason?(weight: WeightRef, recipe: R): string | undefined;
  /**
   * True when the method counts NaN/±Inf among each layer's ORIGINAL weights itself and reports it as
   * `nonFinite` on its LayerReport rows; the runner then skips its own pre-scan (one pass over every weight).
   * @defaultValue false
   */
  reportsNonFinite?: boolean;
  /**
   * Whether the compressed model runs different kernels than the dense one (e.g. MatMulNBits), so that the runner
   * times both for the report's latency section. Methods that only change weight values (pruning: ONNX Runtime has
   * no sparse GEMM) leave it out.
   * @defaultValue false
   */
  timesLatency?(recipe: R): boolean;
  /** Does the work: edits ctx.model in place. */
  run(ctx: MethodContext<R>): Promise<MethodResult>;
}
