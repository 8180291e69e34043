// `onnx-compress convert MODEL -o OUT [--external-data | --inline]`: re-serialise a model, moving weights into a
// side file (4 KiB-aligned, next to OUT) or back inline. Meaning is unchanged; onnxruntime gives identical outputs.
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import type { SaveOptions } from '../../../packages/engine/onnx/index.js';

function parseBytes(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('expected a whole number of bytes');
  return Number(v);
}

export function register(program: Command): void {
  program
    .command('convert')
    .description('re-serialise a model with weights in an external-data file or inline')
    .argument('<model>', 'input .onnx file')
    .requiredOption('-o, --output <file>', 'output .onnx file (external data goes next to it as <name>.data)')
    .option('--external-data', 'move tensors of at least --threshold bytes into <output>.data')
    .option('--inline', 'keep every tensor inside the .onnx file (fails past protobuf 2 GiB)')
    .option('--threshold <bytes>', 'smallest tensor moved to external data', parseBytes, 1024)
    .action(
      async (
        file: string,
        opts: { output: string; externalData?: boolean; inline?: boolean; threshold: number },
        cmd: Command,
      ) => {
        if (opts.externalData && opts.inline)
          cmd.error('error: --external-data and --inline exclude each other', { exitCode: 2 });
        const save: SaveOptions = {};
        if (opts.externalData) save.externalData = { sizeThreshold: opts.threshold };
        else if (opts.inline) save.externalData = false;
        // Loaded on use: the ONNX reader stays out of the CLI's other commands.
        const { closeModel, loadModel, saveModel } = await import('../../../packages/engine/onnx/index.js');
        const model = await loadModel(file);
        try {
          const r = await saveModel(model, opts.output, save);
          process.stdout.write(
            `wrote ${opts.output} (${r.modelBytes} bytes)` +
              (r.externalBytes ? ` + ${opts.output}.data (${r.externalBytes} bytes)` : '') +
              '\n',
          );
        } finally {
          closeModel(model);
        }
      },
    );
}
