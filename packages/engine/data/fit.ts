// The rules a dataset must meet to feed a model, written once over header summaries (name, dtype, shape: no data).
// The engine checks the arrays it loaded with them before a run; the API checks the summaries it stored at upload
// when a job is submitted. So a dataset refused at submission is one the worker would refuse, in the same words,
// and one accepted at submission passes the worker's check too.
import { Type, type Static } from 'typebox';
import { formatDims, type ModelInputSpec } from './inputs.js';
import type { DatasetErrorCode } from './types.js';

/** Name of the labels array in an .npz (or labels.pb in a TensorProto folder). */
export const LABELS_KEY = 'labels';

/** One tensor of a dataset as its header describes it; the API stores and serves these (Dataset.tensors). */
export const TensorSummarySchema = Type.Object({
  name: Type.String(),
  dtype: Type.String(),
  shape: Type.Array(Type.Integer()),
});
export type TensorSummary = Static<typeof TensorSummarySchema>;

/** A dataset file's format as inspection tells it; .npy and .pb hold a single array. */
export type DatasetFormat = 'npy' | 'npz' | 'pb';

export interface DatasetProblem {
  code: DatasetErrorCode;
  message: string;
}

/**
 * The model input a single-array file (.npy, one .pb) feeds: the input of its own name when there is one, else the
 * model's only input. A model with several inputs cannot be fed by one array.
 */
export function singleArrayInput(
  name: string | undefined,
  specs: readonly ModelInputSpec[],
  label: string,
): { input: string } | { problem: DatasetProblem } {
  if (name && specs.some((s) => s.name === name)) return { input: name };
  if (specs.length === 1) return { input: specs[0].name };
  return {
    problem: {
      code: 'missing-input',
      message:
        `${label}: a single array can only feed a single-input model; this model has inputs ` +
        `${specs.map((s) => s.name).join(', ')} (use an .npz keyed by input name)`,
    },
  };
}

type Shaped = Pick<TensorSummary, 'dtype' | 'shape'>;

/** What is wrong with one input's array: dtype, a scalar, rank, fixed dims (dim 0, the sample axis, may differ). */
function inputProblems(spec: ModelInputSpec, a: Shaped): DatasetProblem[] {
  const out: DatasetProblem[] = [];
  if (a.dtype !== spec.dtype) {
    const hint = a.dtype === 'float64' && spec.dtype === 'float32' ? ' (numpy: arr.astype(np.float32))' : '';
    out.push({
      code: 'dtype-mismatch',
      message: `input "${spec.name}": data is ${a.dtype}, the model expects ${spec.dtype}${hint}`,
    });
  }
  if (a.shape.length === 0) {
    out.push({
      code: 'rank-mismatch',
      message: `input "${spec.name}": a scalar has no sample axis; arrays are [samples, …]`,
    });
    return out;
  }
  if (!spec.dims) return out;
  if (a.shape.length !== spec.dims.length) {
    out.push({
      code: 'rank-mismatch',
      message:
        `input "${spec.name}": data has rank ${a.shape.length} [${a.shape.join(', ')}], the model expects rank ` +
        `${spec.dims.length} ${formatDims(spec.dims)} (the first axis is the batch/sample axis)`,
    });
    return out;
  }
  for (let i = 1; i < a.shape.length; i++) {
    const want = spec.dims[i];
    if (typeof want === 'number' && want !== a.shape[i]) {
      out.push({
        code: 'dim-mismatch',
        message:
          `input "${spec.name}": axis ${i} is ${a.shape[i]}, the model fixes it at ${want} ` +
          `(data [${a.shape.join(', ')}], model ${formatDims(spec.dims)})`,
      });
    }
  }
  return out;
}

/**
 * Every reason the tensors (keyed by the model input they feed, plus `labels`) cannot feed a model with `specs`:
 * every input present and no unknown array, dtypes, ranks and fixed dims equal, one sample count shared by the
 * inputs and the labels, at least one sample, integer labels. Empty when the dataset fits.
 */
export function fitProblems(tensors: ReadonlyMap<string, Shaped>, specs: readonly ModelInputSpec[]): DatasetProblem[] {
  const problems: DatasetProblem[] = [];
  const specNames = new Set(specs.map((s) => s.name));
  for (const key of tensors.keys()) {
    if (key !== LABELS_KEY && !specNames.has(key)) {
      problems.push({
        code: 'unknown-input',
        message: `array "${key}" is not a model input (inputs: ${[...specNames].join(', ')})`,
      });
    }
  }
  let samples: number | undefined;
  const counts: string[] = [];
  for (const spec of specs) {
    const a = tensors.get(spec.name);
    if (!a) {
      problems.push({
        code: 'missing-input',
        message: `model input "${spec.name}" ${spec.dtype} ${formatDims(spec.dims)} has no array`,
      });
      continue;
    }
    const own = inputProblems(spec, a);
    problems.push(...own);
    if (a.shape.length === 0) continue;
    counts.push(`${spec.name}: ${a.shape[0]}`);
    if (samples === undefined) samples = a.shape[0];
    else if (samples !== a.shape[0]) samples = -1;
  }
  if (samples === -1) {
    problems.push({
      code: 'sample-count-mismatch',
      message: `inputs disagree on the number of samples (${counts.join(', ')})`,
    });
  }
  if (samples === 0) problems.push({ code: 'empty', message: 'the dataset has 0 samples' });
  problems.push(...labelProblems(tensors.get(LABELS_KEY), samples));
  return problems;
}

function labelProblems(labels: Shaped | undefined, samples: number | undefined): DatasetProblem[] {
  if (!labels) return [];
  const out: DatasetProblem[] = [];
  if (samples !== undefined && samples > 0 && labels.shape[0] !== samples) {
    out.push({
      code: 'sample-count-mismatch',
      message: `labels have ${labels.shape[0] ?? 'no'} samples, inputs have ${samples}`,
    });
  }
  if (labels.dtype !== 'int64' && labels.dtype !== 'int32') {
    out.push({
      code: 'dtype-mismatch',
      message: `labels are ${labels.dtype}; class ids / token ids must be int64 or int32`,
    });
  }
  return out;
}

/**
 * The problems of a dataset described by its inspection (format and tensor summaries, see inspect.ts) against a
 * model's inputs, without reading the data: a single-array file is first given the input it feeds, as the loader
 * does. `label` names the dataset in the single-array message.
 */
export function datasetFitProblems(
  dataset: { format: DatasetFormat; tensors: readonly TensorSummary[] },
  specs: readonly ModelInputSpec[],
  label: string,
): DatasetProblem[] {
  if (dataset.format === 'npz' || dataset.tensors.length !== 1) {
    return fitProblems(new Map(dataset.tensors.map((t) => [t.name, t])), specs);
  }
  const [t] = dataset.tensors;
  // An .npy carries no name (inspection calls it "array"); a .pb its own.
  const fed = singleArrayInput(dataset.format === 'npy' ? undefined : t.name, specs, label);
  if ('problem' in fed) return [fed.problem];
  return fitProblems(new Map([[fed.input, t]]), specs);
}
