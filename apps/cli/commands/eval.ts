// `onnx-compress eval DENSE.onnx COMPRESSED.onnx --data FILE [--task auto|classification|lm] [--output NAME]
// [--samples N] [--json]`: the command's definition; the work (ONNX Runtime sessions, the engine's evaluation) is in
// ../actions/eval.ts, loaded only when the command runs.
import { InvalidArgumentError, type Command } from 'commander';
import type { EvalOptions } from '../actions/eval.js';
import type { EvalTask } from '../../../packages/engine/runtime/index.js';

function positiveInt(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(v);
}

function task(v: string): EvalTask {
  if (v !== 'auto' && v !== 'classification' && v !== 'lm') {
    throw new InvalidArgumentError('expected auto, classification or lm');
  }
  return v;
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('compare a compressed model with its dense original on the same data')
    .argument('<dense>', 'the reference .onnx model')
    .argument('<compressed>', 'the compressed .onnx model')
    .requiredOption(
      '--data <file>',
      'evaluation data: .npz keyed by input name (+ labels), .npy, or a TensorProto folder',
    )
    .option('--task <task>', 'auto | classification | lm', task, 'auto' as EvalTask)
    .option('--output <name>', 'model output to compare (default: the first)')
    .option('--samples <n>', 'use the first n samples', positiveInt)
    .option('--batch-size <n>', 'samples per ONNX Runtime run', positiveInt, 8)
    .option('--json', 'print the result as JSON')
    .action(async (dense: string, compressed: string, opts: EvalOptions) => {
      const { evaluate } = await import('../actions/eval.js');
      await evaluate(dense, compressed, opts);
    });
}
