// A soup job end to end, for the CLI: load the base (parent or first ingredient), select the weights, cook the soup
// with a held-out scorer, write model.onnx + report.json. It follows runRecipe's steps and report shape; it exists
// because runRecipe does not (yet) hand methods a held-out scorer (MethodContext.scorer), which greedy soups need.
// When it does, the CLI can call runRecipe with the same inputs and this file can go.
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../data/dataset.js';
import { modelInputSpecs } from '../data/inputs.js';
import {
  InputError,
  type JobArtifact,
  type JobInputs,
  type JobOptions,
  type JobReport,
  type JobResult,
} from '../job.js';
import { method as soupMethod } from '../methods/soup.js';
import { selectWeights } from '../methods/select.js';
import type { MethodContext } from '../methods/types.js';
import { closeModel, loadModel, saveModel } from '../onnx/model.js';
import { discoverWeights } from '../onnx/weights.js';
import { parseRecipe, type Recipe, type SoupRecipe } from '../recipe.js';
import { modelDiskBytes, weightCounts } from '../report/sizes.js';
import { ortVersion } from '../runtime/session.js';
import { ENGINE_VERSION } from '../run.js';
import type { SoupReport } from './merge.js';
import { HeldOutScorer } from './score.js';

export interface SoupJobOptions {
  /** Reference model for metric "fidelity". @defaultValue the parent, when one is given */
  referencePath?: string;
}

/**
 * Runs a soup recipe. `inputs.ingredientPaths` (≥ 2) are the ingredients; `inputs.modelPath` is the parent when it is
 * not one of them (its zeros then bound the mask, and it is the default fidelity reference), else the first ingredient.
 */
export async function runSoupJob(
  recipeInput: Recipe,
  inputs: JobInputs,
  opts: JobOptions = {},
  soupOpts: SoupJobOptions = {},
): Promise<JobResult> {
  const started = performance.now();
  const recipe = parseRecipe(recipeInput);
  if (recipe.method !== 'soup')
    throw new InputError('not-a-soup', `runSoupJob runs soup recipes, got "${recipe.method}"`);
  const paths = inputs.ingredientPaths ?? [];
  if (paths.length < 2) {
    throw new InputError('soup-too-few-ingredients', `a soup needs at least 2 ingredient models, got ${paths.length}`);
  }
  const emit = (stage: string, fraction: number, message?: string) =>
    opts.onProgress?.({ stage, fraction, ...(message ? { message } : {}) });
  const scratch = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'onnx-compress-soup-'));
  const warnings: string[] = [];
  const model = await loadModel(inputs.modelPath);
  let scorer: HeldOutScorer | undefined;
  try {
    emit('load', 0, `loading ${inputs.modelPath}`);
    const inputBytes = await modelDiskBytes(model, inputs.modelPath);
    const evalData = inputs.evalPath ? await loadDataset(inputs.evalPath, modelInputSpecs(model.proto)) : undefined;
    if (soupMethod.labels(recipe) && evalData && !evalData.labels) {
      throw new InputError('labels-required', `a greedy soup scored by accuracy needs "labels" in ${inputs.evalPath}`);
    }
    const parentPath = inputs.parentPath ?? (paths.includes(inputs.modelPath) ? undefined : inputs.modelPath);
    const referencePath = soupOpts.referencePath ?? parentPath;
    if (recipe.metric === 'fidelity' && !referencePath) {
      throw new InputError(
        'soup-needs-reference',
        'metric "fidelity" scores against a reference model: give a parent or a reference',
      );
    }
    if (evalData) {
      scorer = new HeldOutScorer({
        dataset: evalData,
        tmpDir: scratch,
        ...(opts.executionProviders ? { executionProviders: opts.executionProviders } : {}),
        ...(recipe.evaluation?.samples ? { samples: recipe.evaluation.samples } : {}),
        ...(recipe.evaluation?.outputName ? { outputName: recipe.evaluation.outputName } : {}),
        ...(referencePath ? { referencePath } : {}),
      });
    }
    const all = discoverWeights(model);
    const { selected, skipped } = selectWeights(all, recipe, soupMethod, false);
    const methodWarnings: string[] = [];
    const ctx: MethodContext<SoupRecipe> = {
      model,
      recipe,
      weights: selected,
      skipped,
      hasCalibration: false,
      executionProvider: 'cpu',
      ingredients: paths.map((path) => ({ path, load: () => loadModel(path) })),
      tmpDir: scratch,
      ...(opts.signal ? { signal: opts.signal } : {}),
      checkAbort: () => opts.signal?.throwIfAborted(),
      warn: (m) => methodWarnings.push(m),
      progress: (p) => emit('compress', 0.05 + 0.8 * p.fraction, p.message),
      stats: async () => undefined,
      release: () => {},
      relativeError: async () => null,
      ...(scorer ? { scorer } : {}),
    };
    const result = await soupMethod.run(ctx);
    emit('write', 0.9, 'writing the soup');
    await mkdir(inputs.outputDir, { recursive: true });
    const outPath = join(inputs.outputDir, 'model.onnx');
    const saved = await saveModel(
      model,
      outPath,
      recipe.externalData === undefined ? {} : { externalData: recipe.externalData },
    );
    const artifacts: JobArtifact[] = [{ name: 'model.onnx', path: outPath, sizeBytes: saved.modelBytes }];
    if (saved.externalBytes > 0) {
      artifacts.push({
        name: 'model.onnx.data',
        path: `${outPath}.data`,
        sizeBytes: (await stat(`${outPath}.data`)).size,
      });
    }
    const outputBytes = artifacts.reduce((s, a) => s + a.sizeBytes, 0);
    const counts = weightCounts(model, all);
    const soup = result.report?.soup as SoupReport;
    const bestIngredient = soup.ingredients
      .map((i) => i.metric)
      .filter((m): m is number => typeof m === 'number' && !Number.isNaN(m))
      .reduce<number | null>(
        (b, m) => (b === null ? m : soup.metric.direction === 'higher' ? Math.max(b, m) : Math.min(b, m)),
        null,
      );
    const report: JobReport = {
      ...(result.report ?? {}),
      method: 'soup',
      recipe,
      engineVersion: ENGINE_VERSION,
      onnxruntime: { version: ortVersion(), executionProvider: scorer?.executionProvider ?? 'cpu' },
      layers: [
        ...result.layers,
        ...skipped.map((s) => ({
          name: s.weight.name,
          node: s.weight.node,
          op: s.weight.op,
          shape: s.weight.shape,
          skipped: s.reason,
          seconds: 0,
        })),
      ],
      quality: evalData
        ? {
            evaluated: true,
            data: 'evaluation',
            source: evalData.source,
            samples: recipe.evaluation?.samples
              ? Math.min(recipe.evaluation.samples, evalData.samples)
              : evalData.samples,
            metric: soup.metric.name,
            soup: soup.nextPhase ? soup.nextPhase.metric : soup.soup.metric,
            soupBeforeNextPhase: soup.nextPhase ? soup.soup.metric : undefined,
            bestIngredient,
            uniform: soup.uniform.metric,
          }
        : { evaluated: false, reason: 'no evaluation data was given' },
      sizes: {
        inputBytes,
        outputBytes,
        ratio: inputBytes > 0 ? outputBytes / inputBytes : null,
        parameters: counts.parameters,
        nonZeros: counts.nonZeros,
        weightSparsity: counts.parameters ? 1 - counts.nonZeros / counts.parameters : 0,
      },
      seconds: (performance.now() - started) / 1000,
      warnings: [...warnings, ...methodWarnings, ...(result.warnings ?? [])],
    };
    const reportPath = join(inputs.outputDir, 'report.json');
    const json = JSON.stringify(
      report,
      (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v),
      2,
    );
    await writeFile(reportPath, json);
    artifacts.push({ name: 'report.json', path: reportPath, sizeBytes: Buffer.byteLength(json) });
    emit('done', 1, 'done');
    return { report, artifacts };
  } finally {
    await scorer?.close();
    closeModel(model);
    await rm(scratch, { recursive: true, force: true });
  }
}
