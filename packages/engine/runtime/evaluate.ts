// Whole-model evaluation: the dense and the compressed model run side by side on the same batches, and their outputs
// are compared batch by batch (nothing is kept): fidelity against the dense model always, and label scores when the
// data allows (accuracy for classifiers; perplexity / bits per token for next-token LMs).
import type * as ort from 'onnxruntime-node';
import { batches } from '../data/dataset.js';
import type { DataArray, Dataset } from '../data/types.js';
import { InputError } from '../job.js';
import { FidelityAccumulator, type FidelityResult } from '../metrics/fidelity.js';
import { AccuracyAccumulator, LmAccumulator, looksLikeProbabilities, shiftedTargets } from '../metrics/labels.js';
import { feedsOf, runSession, toFloat32 } from './session.js';

export type EvalTask = 'auto' | 'classification' | 'lm';

export interface EvaluateOptions {
  dense: ort.InferenceSession;
  compressed: ort.InferenceSession;
  dataset: Dataset;
  ranges: [number, number][];
  /** @defaultValue the first model output */
  outputName?: string;
  /** @defaultValue 'auto' */
  task?: EvalTask;
  signal?: AbortSignal;
  onBatch?: (done: number, total: number) => void;
}

export interface LabelScores {
  accuracy?: number;
  perplexity?: number;
  bitsPerToken?: number;
  nll?: number;
}

export interface QualityReport extends FidelityResult {
  outputName: string;
  /** How labels were scored: classification, lm (targets = labels, or the inputs shifted by one), or none. */
  task: 'classification' | 'lm' | 'none';
  targets?: 'labels' | 'shifted-inputs';
  dense?: LabelScores;
  compressed?: LabelScores;
}

/** Picks how to score labels from the data and the first batch's output shape. */
function resolveTask(
  task: EvalTask,
  ds: Dataset,
  outDims: readonly number[],
): { task: QualityReport['task']; targets?: QualityReport['targets']; idsInput?: string } {
  const intInput = [...ds.inputs].find(
    ([, a]) => (a.dtype === 'int64' || a.dtype === 'int32') && a.dims.length === 2 && a.dims[1] === outDims[1],
  );
  const lmShape = outDims.length === 3;
  if (task === 'classification') {
    if (!ds.labels) throw new InputError('labels-missing', 'evaluation.task "classification" needs labels in the data');
    if (ds.labels.dims.length !== 1 || outDims.length !== 2) {
      throw new InputError(
        'labels-shape',
        `classification needs labels [samples] and outputs [samples, classes]; got labels ` +
          `[${ds.labels.dims.join(', ')}], outputs [${outDims.join(', ')}]`,
      );
    }
    return { task: 'classification' };
  }
  if (task === 'lm') {
    if (!lmShape)
      throw new InputError('labels-shape', `lm scoring needs outputs [batch, T, vocab]; got [${outDims.join(', ')}]`);
    if (ds.labels) return { task: 'lm', targets: 'labels' };
    if (!intInput)
      throw new InputError('labels-missing', 'lm scoring needs labels or an int token-id input [batch, T]');
    return { task: 'lm', targets: 'shifted-inputs', idsInput: intInput[0] };
  }
  if (ds.labels) {
    if (ds.labels.dims.length === 1 && outDims.length === 2) return { task: 'classification' };
    if (ds.labels.dims.length === 2 && lmShape) return { task: 'lm', targets: 'labels' };
    return { task: 'none' };
  }
  if (lmShape && intInput) return { task: 'lm', targets: 'shifted-inputs', idsInput: intInput[0] };
  return { task: 'none' };
}

export async function evaluateModels(opts: EvaluateOptions): Promise<QualityReport> {
  const outputName = opts.outputName ?? opts.dense.outputNames[0];
  if (!opts.dense.outputNames.includes(outputName)) {
    throw new InputError(
      'unknown-output',
      `evaluation.outputName "${outputName}" is not a model output (${opts.dense.outputNames.join(', ')})`,
    );
  }
  const fidelity = new FidelityAccumulator();
  let resolved: ReturnType<typeof resolveTask> | undefined;
  let probabilities = false;
  const acc = { dense: new AccuracyAccumulator(), compressed: new AccuracyAccumulator() };
  const lm = { dense: new LmAccumulator(), compressed: new LmAccumulator() };
  let done = 0;
  for (const batch of batches(opts.dataset, opts.ranges)) {
    opts.signal?.throwIfAborted();
    const feeds = feedsOf(batch.inputs);
    const y = (await runSession(opts.dense, feeds, [outputName], 'running the dense model'))[outputName] as ort.Tensor;
    opts.signal?.throwIfAborted();
    const yHat = (await runSession(opts.compressed, feeds, [outputName], 'running the compressed model'))[
      outputName
    ] as ort.Tensor;
    const a = toFloat32(y);
    const b = toFloat32(yHat);
    const dims = [...y.dims];
    fidelity.add(a, b, dims);
    if (!resolved) {
      resolved = resolveTask(opts.task ?? 'auto', opts.dataset, dims);
      if (resolved.task === 'lm') probabilities = looksLikeProbabilities(a, dims[dims.length - 1]);
    }
    if (resolved.task === 'classification') {
      const labels = batch.labels!.data as ArrayLike<number | bigint>;
      acc.dense.add(a, dims, labels);
      acc.compressed.add(b, dims, labels);
    } else if (resolved.task === 'lm') {
      const targets = lmTargets(resolved, batch.labels, batch.inputs, dims);
      lm.dense.add(a, dims, targets, probabilities);
      lm.compressed.add(b, dims, targets, probabilities);
    }
    opts.onBatch?.(++done, opts.ranges.length);
  }
  const report: QualityReport = { outputName, task: resolved?.task ?? 'none', ...fidelity.result() };
  if (resolved?.targets) report.targets = resolved.targets;
  if (resolved?.task === 'classification') {
    report.dense = { accuracy: acc.dense.result().accuracy };
    report.compressed = { accuracy: acc.compressed.result().accuracy };
  } else if (resolved?.task === 'lm') {
    const d = lm.dense.result();
    const c = lm.compressed.result();
    report.dense = { perplexity: d.perplexity, bitsPerToken: d.bitsPerToken, nll: d.nll };
    report.compressed = { perplexity: c.perplexity, bitsPerToken: c.bitsPerToken, nll: c.nll };
  }
  return report;
}

function lmTargets(
  r: ReturnType<typeof resolveTask>,
  labels: DataArray | undefined,
  inputs: Map<string, DataArray>,
  dims: readonly number[],
): ArrayLike<number | bigint> {
  if (r.targets === 'labels') return labels!.data as ArrayLike<number | bigint>;
  const ids = inputs.get(r.idsInput!)!;
  return shiftedTargets(ids.data as ArrayLike<number | bigint>, dims[0], dims[1]);
}
