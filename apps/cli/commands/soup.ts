// `onnx-compress soup A.onnx B.onnx … --recipe RECIPE.json --eval HELD.npz -o SOUP.onnx [--report REPORT.json]`: the
// command's definition; the work is in ../actions/soup.ts, loaded only when the command runs.
import type { Command } from 'commander';
import type { SoupCliOptions } from '../actions/soup.js';

export function register(program: Command): void {
  program
    .command('soup')
    .description('merge fine-tuned sparse models of one parent into a sparse model soup (uniform or greedy)')
    .argument('<ingredients...>', 'two or more .onnx files fine-tuned from one parent')
    .requiredOption('--recipe <file>', 'soup recipe JSON, e.g. {"method":"soup","mode":"greedy","metric":"accuracy"}')
    .option('--eval <file>', 'held-out data (.npz keyed by input name, with "labels" for accuracy)')
    .requiredOption('-o, --output <file>', 'output .onnx file')
    .option('--report <file>', 'write the JSON report here')
    .option('--parent <file>', 'the pruned parent: its zeros bound the soup mask; default fidelity reference')
    .option('--reference <file>', 'reference model for metric "fidelity"')
    .action(async (ingredients: string[], opts: SoupCliOptions) => {
      const { soup } = await import('../actions/soup.js');
      await soup(ingredients, opts);
    });
}
