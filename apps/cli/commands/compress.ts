// `onnx-compress compress MODEL --recipe RECIPE.json [--calibration FILE] [--eval FILE] -o OUT.onnx
// [--report REPORT.json]`: the command's definition. The work (the engine, ONNX Runtime) is in ../actions/compress.ts,
// loaded only when the command runs so that `--help` and the other commands do not pay for it.
import type { Command } from 'commander';
import type { CompressOptions } from '../actions/compress.js';

export function register(program: Command): void {
  program
    .command('compress')
    .description('compress a model with a recipe (sparsity, quantize, slim, soup, search) and report what it cost')
    .argument('<model>', 'input .onnx file')
    .requiredOption('--recipe <file>', 'recipe JSON, the same document the API accepts as a job recipe')
    .option(
      '--calibration <file>',
      'calibration data: .npz keyed by input name, .npy, or a TensorProto folder ' +
        '(or "calibration": {"random": true} in the recipe for random inputs)',
    )
    .option('--eval <file>', 'held-out evaluation data (.npz may carry `labels`)')
    .requiredOption('-o, --output <file>', 'output .onnx file (external data goes next to it as <name>.data)')
    .option('--report <file>', 'write the JSON report here')
    .option('--device <device>', 'cpu, or cuda (falls back to cpu when CUDA is unavailable)', 'cpu')
    .option('--no-progress', 'no progress bar even on a terminal')
    .addHelpText(
      'after',
      '\nExample recipe: {"method":"sparsity","pattern":"2:4","criterion":"wanda","exclude":["*head*"],' +
        '"calibration":{"samples":128}}',
    )
    .action(async (model: string, opts: CompressOptions, cmd: Command) => {
      if (opts.device !== 'cpu' && opts.device !== 'cuda') {
        cmd.error(`error: --device must be cpu or cuda, got ${opts.device}`, { exitCode: 2 });
      }
      const { compress } = await import('../actions/compress.js');
      await compress(model, opts);
    });
}
