// `onnx-compress inspect MODEL [--json]`: the command's definition; the work is in ../actions/inspect.ts, loaded only
// when the command runs.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show IR/opsets, inputs/outputs, op histogram, parameters and the weights the methods can compress')
    .argument('<model>', 'path to an .onnx file (external data is read from its folder)')
    .option('--json', 'print one JSON document instead of text')
    .action(async (file: string, opts: { json?: boolean }) => {
      const { inspect } = await import('../actions/inspect.js');
      await inspect(file, opts);
    });
}
