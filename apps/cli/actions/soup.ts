// The work of `onnx-compress soup A.onnx B.onnx … --recipe RECIPE.json --eval HELD.npz -o SOUP.onnx [--report REPORT.json]`:
// merge fine-tuned sparse models of one parent into a sparse model soup (uniform or greedy on the held-out data),
// masks checked and re-applied; prints per-ingredient metrics, the greedy steps and the soup's metric and sparsity.
import { copyFile, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  closeModel,
  InputError,
  loadModel,
  parseRecipe,
  RecipeError,
  runRecipe,
  saveModel,
  type SoupReport,
} from '../../../packages/engine/index.js';

export interface SoupCliOptions {
  recipe: string;
  eval?: string;
  output: string;
  report?: string;
  parent?: string;
  reference?: string;
}

async function readRecipe(file: string) {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError('bad-recipe-file', `cannot read the recipe ${file}: ${(e as Error).message}`);
  }
  const recipe = parseRecipe(json);
  if (recipe.method !== 'soup') {
    throw new RecipeError([{ path: '/method', message: `"soup" needs a soup recipe, got method "${recipe.method}"` }]);
  }
  return recipe;
}

const fmt = (m: number | null | undefined) => (typeof m === 'number' ? m.toFixed(4) : 'n/a');
const pct = (s: number) => `${(s * 100).toFixed(2)}%`;

function summary(r: SoupReport): string {
  const lines: string[] = [];
  const name = r.metric.name;
  lines.push(`mask check (${r.maskCheck.policy}): ${r.maskCheck.result}`);
  lines.push(`ingredients (${name}, ${r.metric.direction} is better):`);
  for (const i of r.ingredients) {
    const given = i.metricAsGiven !== undefined ? ` (as given ${fmt(i.metricAsGiven)})` : '';
    lines.push(`  ${i.index + 1}. ${i.path}: ${name} ${fmt(i.metric)}${given}, sparsity ${pct(i.sparsity)}`);
  }
  if (r.greedy) {
    lines.push(`greedy (tie ${r.tie}), best first:`);
    for (const s of r.greedy.steps) {
      lines.push(
        `  ${s.accepted ? '+' : '-'} ${s.ingredient + 1} (${s.path}): ${name} ${fmt(s.metric)} ${s.accepted ? 'kept' : 'rejected'}`,
      );
    }
  }
  lines.push(
    `uniform soup (all ${r.ingredients.length}): ${name} ${fmt(r.uniform.metric)}, sparsity ${pct(r.uniform.sparsity)}`,
  );
  lines.push(
    `${r.mode} soup (${r.soup.members.map((m) => m + 1).join(', ')}): ${name} ${fmt(r.soup.metric)}, ` +
      `sparsity ${pct(r.soup.sparsity)} (mask ${pct(r.soup.maskSparsity)}, ${r.soup.maskRespected ? 'respected' : 'VIOLATED'})`,
  );
  if (r.nextPhase) {
    lines.push(
      `next phase: ${r.nextPhase.plan}: sparsity ${pct(r.nextPhase.sparsityBefore)} → ${pct(r.nextPhase.sparsityAfter)}, ` +
        `${name} ${fmt(r.nextPhase.metric)} (this pruned soup is the output: the parent of the next round)`,
    );
  }
  if (r.batchNorm) lines.push(`note: ${r.batchNorm}`);
  return lines.join('\n') + '\n';
}

/** Runs `soup`: merges the ingredients with the engine and prints what each step did. */
export async function soup(ingredients: string[], opts: SoupCliOptions): Promise<void> {
  const recipe = await readRecipe(opts.recipe);
  const out = resolve(opts.output);
  await mkdir(dirname(out), { recursive: true });
  const work = await mkdtemp(join(dirname(out), '.soup-'));
  const tty = process.stderr.isTTY;
  let lastMessage = '';
  try {
    // --parent: the base whose zeros bound the mask (and the fidelity reference); --reference overrides the latter.
    const reference = opts.reference ?? opts.parent;
    const { report, artifacts } = await runRecipe(
      recipe,
      {
        modelPath: opts.parent ?? ingredients[0],
        ingredientPaths: ingredients,
        ...(reference ? { parentPath: reference } : {}),
        ...(opts.eval ? { evalPath: opts.eval } : {}),
        outputDir: work,
      },
      {
        onProgress: (p) => {
          const msg = p.message ?? p.stage;
          if (msg === lastMessage) return;
          lastMessage = msg;
          process.stderr.write(tty ? `\r\x1b[K[${(p.fraction * 100).toFixed(0)}%] ${msg}` : `${msg}\n`);
        },
      },
    );
    if (tty) process.stderr.write('\n');
    if (artifacts.some((a) => a.name === 'model.onnx.data')) {
      // external data is named after the file: re-save under the output's own name
      const model = await loadModel(join(work, 'model.onnx'));
      try {
        await saveModel(model, out, { externalData: true });
      } finally {
        closeModel(model);
      }
    } else {
      await rename(join(work, 'model.onnx'), out).catch(() => copyFile(join(work, 'model.onnx'), out));
    }
    if (opts.report) await copyFile(join(work, 'report.json'), resolve(opts.report));
    process.stdout.write(summary(report.soup as SoupReport));
    for (const w of report.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(`wrote ${opts.output}${opts.report ? ` and ${opts.report}` : ''}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
