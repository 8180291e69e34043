// The work of `onnx-compress eval DENSE.onnx COMPRESSED.onnx --data FILE [--task auto|classification|lm] [--output NAME]
// [--samples N] [--json]`: compares two models on the same data with the engine's evaluation (relative output error,
// cosine similarity, top-1 agreement; accuracy or perplexity when the data allows).
import { closeModel, loadModel } from '../../../packages/engine/onnx/index.js';
import { fixedBatchSize, loadDataset, modelInputSpecs, planBatches } from '../../../packages/engine/data/index.js';
import { type EvalTask, evaluateModels, openSession } from '../../../packages/engine/runtime/index.js';

export interface EvalOptions {
  data: string;
  task: EvalTask;
  output?: string;
  samples?: number;
  batchSize: number;
  json?: boolean;
}

export async function evaluate(dense: string, compressed: string, opts: EvalOptions): Promise<void> {
  const model = await loadModel(dense);
  const specs = modelInputSpecs(model.proto);
  closeModel(model);
  const data = await loadDataset(opts.data, specs);
  // One model in memory at a time: evaluateModels opens each for its half and releases it.
  const open = (path: string) => async () => {
    const { session } = await openSession(path);
    return { session, release: () => session.release() };
  };
  const ranges = planBatches(data.samples, opts.batchSize, opts.samples, fixedBatchSize(specs));
  const q = await evaluateModels({
    dense: open(dense),
    compressed: open(compressed),
    dataset: data,
    ranges: ranges.ranges,
    task: opts.task,
    ...(opts.output ? { outputName: opts.output } : {}),
  });
  const result = { ...q, samples: ranges.used };
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify(result, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`,
    );
    return;
  }
  const lines = [
    `output ${q.outputName}, ${ranges.used} samples`,
    `relative error ${q.relativeError.toFixed(4)}, cosine ${q.cosineSimilarity.toFixed(4)}, ` +
      `top-1 agreement ${q.top1Agreement.toFixed(4)} (${q.positions} positions)`,
  ];
  if (q.task === 'classification') {
    lines.push(`accuracy ${q.dense!.accuracy!.toFixed(4)} → ${q.compressed!.accuracy!.toFixed(4)}`);
  } else if (q.task === 'lm') {
    lines.push(
      `perplexity ${q.dense!.perplexity!.toFixed(3)} → ${q.compressed!.perplexity!.toFixed(3)}; bits/token ` +
        `${q.dense!.bitsPerToken!.toFixed(4)} → ${q.compressed!.bitsPerToken!.toFixed(4)} (targets: ${q.targets})`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
