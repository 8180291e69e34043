// The pieces of the job contract that methods, kernels and readers use: the input error (and its variant that keeps
// files), the per-layer report row and the artifact record. job.ts re-exports them for callers. They live apart from
// job.ts because job.ts names `Recipe`, the union of every method's recipe: a method, or a reader the methods use,
// that imported job.ts would import the methods back (an import circle, issue 16).

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
