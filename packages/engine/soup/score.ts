// Held-out scoring of candidate soups through ONNX Runtime: accuracy (argmax vs class labels), perplexity (next-token
// labels, or the token-id input shifted by one), or fidelity (relative output error ‖ŷ − y‖/‖y‖ against a reference
// model, for data without labels). Each candidate is written to a scratch file (so external data still resolves),
// opened, run batch by batch with the metric accumulated (no outputs kept), and released.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { batches, fixedBatchSize, planBatches } from '../data/dataset.js';
import { modelInputSpecs } from '../data/inputs.js';
import type { Dataset } from '../data/types.js';
import { InputError } from '../job-parts.js';
import { FidelityAccumulator } from '../metrics/fidelity.js';
import { AccuracyAccumulator, LmAccumulator, looksLikeProbabilities, shiftedTargets } from '../metrics/labels.js';
import type { ModelScorer } from '../methods/types.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../onnx/model.js';
import { feedsOf, openSession, runSession, toFloat32, type ExecutionProvider } from '../runtime/session.js';
import type { SoupMetric } from './merge.js';

export interface HeldOutScorerOptions {
  dataset: Dataset;
  /** Scratch folder for candidate files. */
  tmpDir: string;
  /** @defaultValue ['cpu'] */
  executionProviders?: ExecutionProvider[];
  /** @defaultValue 64 */
  batchSize?: number;
  /** Use only the first `samples` samples. @defaultValue all */
  samples?: number;
  /** Output scored. @defaultValue the model's first output */
  outputName?: string;
  /** Reference model file for `fidelity`. */
  referencePath?: string;
  /**
   * Keep the reference model's outputs after the first candidate (searches score many candidates against the same
   * reference: one reference run instead of one per candidate), up to REFERENCE_CACHE_BYTES; past the cap the
   * reference runs again per candidate. @defaultValue false
   */
  keepReference?: boolean;
  /** A loaded model with the candidates' inputs, read for the batch size instead of loading each candidate file. */
  inputModel?: LoadedModel;
}

/** Bytes of reference outputs kept by `keepReference`. */
const REFERENCE_CACHE_BYTES = 1 << 30;

export class HeldOutScorer implements ModelScorer {
  private counter = 0;
  private reference?: Promise<ort.InferenceSession>;
  /** Reference outputs per batch (keepReference), for the output scored; null once over the cap. */
  private kept: { output: string; batches: Float32Array[]; bytes: number } | null | undefined;
  /** Execution provider the last session ran on. */
  executionProvider: ExecutionProvider = 'cpu';

  constructor(private readonly opts: HeldOutScorerOptions) {}

  async score(model: LoadedModel, metric: SoupMetric): Promise<number | null> {
    const ds = this.opts.dataset;
    if (metric === 'accuracy' && !ds.labels) return null;
    if (metric === 'fidelity' && !this.opts.referencePath) return null;
    const file = join(this.opts.tmpDir, `soup-candidate-${process.pid}-${this.counter++}.onnx`);
    await saveModel(model, file);
    try {
      return await this.scoreFile(file, metric, model);
    } finally {
      await rm(file, { force: true });
      await rm(`${file}.data`, { force: true });
    }
  }

  /** Scores a model already written to `file` (`model`: its loaded form, for the input shapes; else read). */
  async scoreFile(file: string, metric: SoupMetric, model?: LoadedModel): Promise<number | null> {
    const ds = this.opts.dataset;
    if (metric === 'accuracy' && !ds.labels) return null;
    if (metric === 'fidelity' && !this.opts.referencePath) return null;
    let session: ort.InferenceSession | undefined;
    try {
      const opened = await openSession(file, { executionProviders: this.opts.executionProviders });
      session = opened.session;
      this.executionProvider = opened.executionProvider;
      const reference = metric === 'fidelity' ? () => this.referenceSession() : undefined;
      return await this.run(session, await fixedBatchOf(file, model ?? this.opts.inputModel), metric, reference);
    } finally {
      await session?.release().catch(() => {});
    }
  }

  private referenceSession(): Promise<ort.InferenceSession> {
    this.reference ??= openSession(this.opts.referencePath!, {
      executionProviders: this.opts.executionProviders,
    }).then((o) => o.session);
    return this.reference;
  }

  private async run(
    session: ort.InferenceSession,
    fixed: number | undefined,
    metric: SoupMetric,
    reference?: () => Promise<ort.InferenceSession>,
  ): Promise<number | null> {
    const ds = this.opts.dataset;
    let outputName = this.opts.outputName ?? session.outputNames[0];
    // Classifiers exported with a label output first (e.g. ["label", "probabilities"]): score the first output
    // that has a class axis, unless the recipe named one.
    let pickOutput = metric === 'accuracy' && !this.opts.outputName && session.outputNames.length > 1;
    if (!session.outputNames.includes(outputName)) {
      throw new InputError(
        'unknown-output',
        `output "${outputName}" is not a model output (${session.outputNames.join(', ')})`,
      );
    }
    const { ranges } = planBatches(ds.samples, this.opts.batchSize ?? 64, this.opts.samples, fixed);
    const accuracy = new AccuracyAccumulator();
    const lm = new LmAccumulator();
    const fidelity = new FidelityAccumulator();
    let probabilities: boolean | undefined;
    let index = 0;
    for (const batch of batches(ds, ranges)) {
      const b = index++;
      const feeds = feedsOf(batch.inputs);
      if (pickOutput) {
        const all = await runSession(session, feeds, [...session.outputNames], 'scoring a soup candidate');
        outputName = session.outputNames.find((o) => (all[o] as ort.Tensor).dims.length === 2) ?? outputName;
        pickOutput = false;
      }
      const y = (await runSession(session, feeds, [outputName], 'scoring a soup candidate'))[outputName] as ort.Tensor;
      const out = toFloat32(y);
      const dims = [...y.dims];
      if (metric === 'accuracy') {
        // labels [samples] or [samples, 1]
        const labelDims = batch.labels!.dims;
        if (!(labelDims.length === 1 || (labelDims.length === 2 && labelDims[1] === 1)) || dims.length !== 2) {
          throw new InputError(
            'soup-metric-shape',
            `accuracy needs labels [samples] and outputs [samples, classes]; got labels [${ds.labels!.dims.join(', ')}], ` +
              `output "${outputName}" [${dims.join(', ')}]`,
          );
        }
        accuracy.add(out, dims, batch.labels!.data as ArrayLike<number | bigint>);
      } else if (metric === 'perplexity') {
        if (dims.length !== 3) {
          throw new InputError(
            'soup-metric-shape',
            `perplexity needs outputs [batch, T, vocab]; got [${dims.join(', ')}]`,
          );
        }
        const targets = lmTargets(batch.labels?.data, batch.inputs, dims);
        if (!targets) return null;
        probabilities ??= looksLikeProbabilities(out, dims[2]);
        lm.add(out, dims, targets, probabilities);
      } else {
        fidelity.add(await this.referenceOutput(reference!, feeds, outputName, b), out, dims);
      }
    }
    if (metric === 'accuracy') return accuracy.result().accuracy;
    if (metric === 'perplexity') return lm.result().perplexity;
    return fidelity.result().relativeError;
  }

  /** The reference output of batch `b`: kept from an earlier candidate, else run (and kept when asked). */
  private async referenceOutput(
    open: () => Promise<ort.InferenceSession>,
    feeds: Record<string, ort.Tensor>,
    outputName: string,
    b: number,
  ): Promise<Float32Array> {
    const kept = this.kept;
    if (kept && kept.output === outputName && kept.batches[b]) return kept.batches[b];
    const r = (await runSession(await open(), feeds, [outputName], 'running the reference model'))[
      outputName
    ] as ort.Tensor;
    const y = toFloat32(r);
    if (!this.opts.keepReference || this.kept === null) return y;
    if (!this.kept || this.kept.output !== outputName) this.kept = { output: outputName, batches: [], bytes: 0 };
    if (this.kept.bytes + y.byteLength > REFERENCE_CACHE_BYTES) this.kept = null;
    else {
      this.kept.batches[b] = y;
      this.kept.bytes += y.byteLength;
    }
    return y;
  }

  async close(): Promise<void> {
    if (this.reference) await (await this.reference).release().catch(() => {});
  }
}

/** The batch size the model fixes, if any (read from `model`, else from the file's graph). */
async function fixedBatchOf(file: string, model?: LoadedModel): Promise<number | undefined> {
  if (model) return fixedBatchSize(modelInputSpecs(model.proto));
  const loaded = await loadModel(file);
  try {
    return fixedBatchSize(modelInputSpecs(loaded.proto));
  } finally {
    closeModel(loaded);
  }
}

function lmTargets(
  labels: ArrayLike<number | bigint> | undefined,
  inputs: Map<string, { dtype: string; dims: number[]; data: unknown }>,
  dims: number[],
): ArrayLike<number | bigint> | undefined {
  if (labels) return labels;
  const ids = [...inputs.values()].find(
    (a) => (a.dtype === 'int64' || a.dtype === 'int32') && a.dims.length === 2 && a.dims[1] === dims[1],
  );
  return ids ? shiftedTargets(ids.data as ArrayLike<number | bigint>, dims[0], dims[1]) : undefined;
}
