// Shared setup for the soup tests: load the committed fixtures (test/fixtures/soup, made by soup-fixtures.ts), run
// cookSoup with a held-out scorer, save the result, and read tensors back for independent checks.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { loadDataset } from '../../packages/engine/data/dataset.js';
import { modelInputSpecs } from '../../packages/engine/data/inputs.js';
import type { Dataset } from '../../packages/engine/data/types.js';
import { ModelProtoSchema, type ModelProto } from '../../packages/engine/onnx/gen/onnx_pb.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from '../../packages/engine/onnx/model.js';
import { tensorToFloat32 } from '../../packages/engine/onnx/tensor.js';
import { discoverWeights } from '../../packages/engine/onnx/weights.js';
import { cookSoup, type SoupReport, type SoupSettings } from '../../packages/engine/soup/merge.js';
import { HeldOutScorer } from '../../packages/engine/soup/score.js';
import type { FixtureManifest } from './soup-fixtures.js';
import { readFileSync } from 'node:fs';

export const FIXTURES = new URL('../fixtures/soup/', import.meta.url).pathname;
export const fixture = (name: string) => join(FIXTURES, name);
export const manifest = JSON.parse(readFileSync(fixture('manifest.json'), 'utf8')) as FixtureManifest;
export const INGREDIENTS = manifest.variants.map((v) => fixture(v.file));
export const WEIGHT_NAMES = ['fc1.weight', 'fc2.weight', 'fc3.weight'];

export async function scratchDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'soup-test-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function heldOut(path: string, model: LoadedModel): Promise<Dataset> {
  return loadDataset(path, modelInputSpecs(model.proto));
}

export interface CookResult {
  report: SoupReport;
  soup: LoadedModel;
  outPath: string;
}

/**
 * Cooks a soup of `paths` into a fresh copy of `basePath` (an ingredient, or the parent when `baseIsParent`), scoring
 * on `evalPath` (none: no scorer), and saves it to `dir/name`.
 */
export async function cook(opts: {
  paths: string[];
  settings: SoupSettings;
  dir: string;
  name?: string;
  evalPath?: string;
  basePath?: string;
  referencePath?: string;
}): Promise<CookResult> {
  const basePath = opts.basePath ?? opts.paths[0];
  const base = await loadModel(basePath);
  const baseIndex = opts.paths.indexOf(basePath);
  const weights = discoverWeights(base);
  const scorer = opts.evalPath
    ? new HeldOutScorer({
        dataset: await heldOut(opts.evalPath, base),
        tmpDir: opts.dir,
        ...(opts.referencePath ? { referencePath: opts.referencePath } : {}),
      })
    : undefined;
  try {
    const report = await cookSoup({
      base,
      baseIngredient: baseIndex >= 0 ? baseIndex : null,
      ingredients: opts.paths.map((path) => ({ path, load: () => loadModel(path) })),
      maskedWeights: weights,
      prunableWeights: weights.filter((w) => w.compressible),
      notPrunable: weights.filter((w) => !w.compressible).map((weight) => ({ weight, reason: weight.reason ?? '' })),
      settings: opts.settings,
      ...(scorer ? { score: (m: LoadedModel) => scorer.score(m, opts.settings.metric) } : {}),
    });
    const outPath = join(opts.dir, opts.name ?? 'soup.onnx');
    await saveModel(base, outPath);
    return { report, soup: base, outPath };
  } finally {
    await scorer?.close();
  }
}

/** Accuracy of a model file on a split, scored independently of the soup's scorer object. */
export async function accuracyOf(path: string, split: string, dir: string): Promise<number> {
  const model = await loadModel(path);
  const scorer = new HeldOutScorer({ dataset: await heldOut(split, model), tmpDir: dir });
  try {
    return (await scorer.score(model, 'accuracy'))!;
  } finally {
    await scorer.close();
    closeModel(model);
  }
}

/** Flat float32 values of an initializer. */
export function weightValues(model: LoadedModel, name: string): Float32Array {
  const t = model.proto.graph!.initializer.find((x) => x.name === name);
  if (!t) throw new Error(`no initializer ${name}`);
  return tensorToFloat32(model, t);
}

export async function loadProto(path: string): Promise<ModelProto> {
  const m = await loadModel(path);
  const proto = fromBinary(ModelProtoSchema, toBinary(ModelProtoSchema, m.proto));
  closeModel(m);
  return proto;
}

export async function writeProto(proto: ModelProto, path: string): Promise<string> {
  await writeFile(path, toBinary(ModelProtoSchema, proto));
  return path;
}
