// Whole-model evaluation: fidelity against the dense model always, and label scores when the data allows (accuracy
// for classifiers; perplexity / bits per token for next-token LMs). One model at a time: the dense model runs over
// every batch first and only its compared output is kept (runtime/output-store.ts: in memory up to a cap, then a
// scratch file), then the compressed model runs over the same batches and each is compared with the kept output.
// The batch order and the accumulators are those of a side-by-side run, so the numbers are the same. The dense half
// may also have been recorded elsewhere (DenseOutputs, fed by the calibration pass when it ran the dense model over
// the same batches, runner/calibrate.ts): the dense model is then not opened or run again.
import { tmpdir } from 'node:os';
import type * as ort from 'onnxruntime-node';
import { batches, type Batch } from '../data/dataset.js';
import type { DataArray, Dataset } from '../data/types.js';
import { InputError } from '../job-parts.js';
import { FidelityAccumulator, type FidelityResult } from '../metrics/fidelity.js';
import { AccuracyAccumulator, LmAccumulator, looksLikeProbabilities, shiftedTargets } from '../metrics/labels.js';
import { OutputStore } from './output-store.js';
import { feedsOf, runSession, toFloat32 } from './session.js';

export type EvalTask = 'auto' | 'classification' | 'lm';

/**
 * A session the caller holds (and releases), or a way to open one: evaluateModels then opens it for its half of the
 * work and releases it before the other half opens, so the two models are never in memory together.
 */
export type SessionSource =
  ort.InferenceSession | (() => Promise<{ session: ort.InferenceSession; release(): Promise<void> }>);

export interface EvaluateOptions {
  /** The dense model; not opened when `denseOutputs` holds every batch already. */
  dense?: SessionSource;
  /**
   * The dense model's outputs over `dataset` and `ranges`, recorded by whoever already ran it on them (e.g. the
   * calibration pass); evaluateModels takes it over and closes it. @defaultValue none: `dense` runs
   */
  denseOutputs?: DenseOutputs;
  compressed: SessionSource;
  dataset: Dataset;
  ranges: [number, number][];
  /** @defaultValue the first model output */
  outputName?: string;
  /** @defaultValue 'auto' */
  task?: EvalTask;
  signal?: AbortSignal;
  /** Progress over both halves (dense batches, then compressed ones). */
  onBatch?: (done: number, total: number) => void;
  /** Where dense outputs over maxHeldOutputBytes are spilled. @defaultValue os.tmpdir() */
  scratchDir?: string;
  /** Dense outputs held in memory between the halves; the rest go to a scratch file. @defaultValue 256 MiB */
  maxHeldOutputBytes?: number;
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

/** How the evaluation is scored, fixed by the dense half's first batch. */
interface Scoring {
  resolved?: ReturnType<typeof resolveTask>;
  probabilities: boolean;
  acc: AccuracyAccumulator;
  lm: LmAccumulator;
}

export async function evaluateModels(opts: EvaluateOptions): Promise<QualityReport> {
  let recorded = opts.denseOutputs;
  if (recorded && recorded.batches !== opts.ranges.length) {
    await recorded.close();
    recorded = undefined;
  }
  const dense =
    recorded ??
    new DenseOutputs({
      dataset: opts.dataset,
      outputName: opts.outputName,
      task: opts.task,
      scratchDir: opts.scratchDir,
      maxHeldOutputBytes: opts.maxHeldOutputBytes,
    });
  try {
    if (!recorded) {
      if (!opts.dense) throw new Error('evaluateModels: neither a dense model nor its recorded outputs');
      await withSession(opts.dense, (session) => denseHalf(opts, session, dense));
    } else {
      opts.onBatch?.(opts.ranges.length, 2 * opts.ranges.length);
    }
    const outputName = dense.outputName!;
    const sc = dense.scoring;
    const compressed: Scoring = { ...sc, acc: new AccuracyAccumulator(), lm: new LmAccumulator() };
    const fidelity = new FidelityAccumulator();
    await withSession(opts.compressed, (session) =>
      compressedHalf(opts, session, outputName, dense.dims, compressed, fidelity, dense.store),
    );
    return qualityReport(outputName, sc, compressed, fidelity);
  } finally {
    await dense.close();
  }
}

async function withSession<T>(source: SessionSource, fn: (s: ort.InferenceSession) => Promise<T>): Promise<T> {
  if (typeof source !== 'function') return fn(source);
  const opened = await source();
  try {
    return await fn(opened.session);
  } finally {
    await opened.release();
  }
}

export interface DenseOutputsOptions {
  dataset: Dataset;
  /** @defaultValue the session's first output (DenseOutputs.add is told the session's output names) */
  outputName?: string;
  /** @defaultValue 'auto' */
  task?: EvalTask;
  /** @defaultValue os.tmpdir() */
  scratchDir?: string;
  /** @defaultValue 256 MiB (OutputStore) */
  maxHeldOutputBytes?: number;
}

/**
 * The dense half of an evaluation, batch by batch in range order: its label scores, and its compared output kept
 * (runtime/output-store.ts) for the compressed half. Fed by the dense session here, or by any run of the dense model
 * over the same batches that fetched the output too (the calibration pass).
 */
export class DenseOutputs {
  readonly store: OutputStore;
  readonly dims: number[][] = [];
  readonly scoring: Scoring = { probabilities: false, acc: new AccuracyAccumulator(), lm: new LmAccumulator() };
  outputName?: string;

  constructor(private readonly opts: DenseOutputsOptions) {
    this.outputName = opts.outputName;
    this.store = new OutputStore(opts.scratchDir ?? tmpdir(), opts.maxHeldOutputBytes);
  }

  /** Batches recorded so far. */
  get batches(): number {
    return this.dims.length;
  }

  /**
   * Checks the compared output against the model's outputs (the first one when none was named) before any batch.
   * @returns the output to fetch
   */
  resolveOutput(outputNames: readonly string[]): string {
    const outputName = (this.outputName ??= outputNames[0]);
    if (!outputNames.includes(outputName)) {
      throw new InputError(
        'unknown-output',
        `evaluation.outputName "${outputName}" is not a model output (${outputNames.join(', ')})`,
      );
    }
    return outputName;
  }

  /** Records the next batch's output (`y` = the dense model's output `outputName` on `batch`). */
  async add(y: ort.Tensor, batch: Batch): Promise<void> {
    const sc = this.scoring;
    const i = this.dims.length;
    const a = toFloat32(y);
    const dims = [...y.dims];
    this.dims.push(dims);
    if (!sc.resolved) {
      sc.resolved = resolveTask(this.opts.task ?? 'auto', this.opts.dataset, dims);
      if (sc.resolved.task === 'lm') sc.probabilities = looksLikeProbabilities(a, dims[dims.length - 1]);
    }
    scoreLabels(sc, a, dims, batch);
    await this.store.put(i, a);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}

/** Runs the dense model over every batch into `rec`. */
async function denseHalf(opts: EvaluateOptions, session: ort.InferenceSession, rec: DenseOutputs): Promise<void> {
  await runDense(session, rec, opts.dataset, opts.ranges, {
    signal: opts.signal,
    onBatch: (i) => opts.onBatch?.(i, 2 * opts.ranges.length),
  });
}

/**
 * Runs the dense model's `session` over `ranges` of `dataset`, fetching only the compared output, into `rec`. Any
 * session whose graph computes the dense model's outputs will do (also the calibration capture session, though ONNX
 * Runtime then still runs its appended reductions: it runs the whole plan whatever is fetched).
 */
export async function runDense(
  session: ort.InferenceSession,
  rec: DenseOutputs,
  dataset: Dataset,
  ranges: [number, number][],
  o: { signal?: AbortSignal; onBatch?: (done: number) => void } = {},
): Promise<void> {
  const outputName = rec.resolveOutput(session.outputNames);
  let i = 0;
  for (const batch of batches(dataset, ranges)) {
    o.signal?.throwIfAborted();
    const y = (await runSession(session, feedsOf(batch.inputs), [outputName], 'running the dense model'))[
      outputName
    ] as ort.Tensor;
    await rec.add(y, batch);
    i++; // not inside the onBatch?.() call: optional chaining skips its arguments when there is no callback
    o.onBatch?.(i);
  }
}

/** Runs the compressed model over the same batches and compares each with the dense outputs kept. */
async function compressedHalf(
  opts: EvaluateOptions,
  session: ort.InferenceSession,
  outputName: string,
  dims: number[][],
  sc: Scoring,
  fidelity: FidelityAccumulator,
  store: OutputStore,
): Promise<void> {
  let i = 0;
  for (const batch of batches(opts.dataset, opts.ranges)) {
    opts.signal?.throwIfAborted();
    const yHat = (await runSession(session, feedsOf(batch.inputs), [outputName], 'running the compressed model'))[
      outputName
    ] as ort.Tensor;
    const b = toFloat32(yHat);
    fidelity.add(await store.take(i), b, dims[i]);
    scoreLabels(sc, b, dims[i], batch);
    i++;
    opts.onBatch?.(opts.ranges.length + i, 2 * opts.ranges.length);
  }
}

function scoreLabels(sc: Scoring, y: Float32Array, dims: number[], batch: Batch): void {
  if (sc.resolved?.task === 'classification') {
    sc.acc.add(y, dims, batch.labels!.data as ArrayLike<number | bigint>);
  } else if (sc.resolved?.task === 'lm') {
    sc.lm.add(y, dims, lmTargets(sc.resolved, batch.labels, batch.inputs, dims), sc.probabilities);
  }
}

function qualityReport(
  outputName: string,
  dense: Scoring,
  compressed: Scoring,
  fidelity: FidelityAccumulator,
): QualityReport {
  const resolved = dense.resolved;
  const report: QualityReport = { outputName, task: resolved?.task ?? 'none', ...fidelity.result() };
  if (resolved?.targets) report.targets = resolved.targets;
  if (resolved?.task === 'classification') {
    report.dense = { accuracy: dense.acc.result().accuracy };
    report.compressed = { accuracy: compressed.acc.result().accuracy };
  } else if (resolved?.task === 'lm') {
    const d = dense.lm.result();
    const c = compressed.lm.result();
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
