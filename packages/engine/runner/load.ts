// Stage "load": the method, the model, the calibration and evaluation data, and the layers the recipe selects.
// Everything a job can be refused for before any heavy work is checked here (no layer to compress, then missing
// calibration data or labels), so that a bad job fails in seconds with a reason.
import { resolve } from 'node:path';
import { loadDataset } from '../data/dataset.js';
import { modelInputSpecs } from '../data/inputs.js';
import { randomDataset } from '../data/random.js';
import { InputError } from '../job-parts.js';
import { methodFor } from '../methods/registry.js';
import { calibrationRequiredText } from '../calibration-need.js';
import { assertSomethingSelected, selectWeights } from '../methods/select.js';
import { loadModel, type LoadedModel } from '../onnx/model.js';
import { discoverWeights } from '../onnx/weights.js';
import { modelDiskBytes } from '../report/sizes.js';
import { DEFAULT_SAMPLES, describeRecipe, type RunState } from './state.js';

export async function loadInputs(s: RunState): Promise<void> {
  await s.clock.stage('load', async () => {
    s.progress.emit('load', 0, { message: `loading ${s.inputs.modelPath}` });
    s.method = await methodFor(s.recipe);
    s.model = await loadModel(s.inputs.modelPath);
    // Rewritten weights spill into the output folder, so that the write stage can make that file the output's
    // external data instead of copying it (onnx/model.ts SaveOptions.adoptSpill).
    s.model.spillDir = resolve(s.inputs.outputDir);
    s.inputBytes = await modelDiskBytes(s.model, s.inputs.modelPath);
    s.checkAbort();
    // Layers first: a model with nothing to compress is refused for that, not sent off to find calibration data.
    selectLayers(s);
    await loadData(s);
    s.progress.emit('load', 1);
  });
}

async function loadData(s: RunState): Promise<void> {
  const { recipe, inputs, method } = s;
  const model = s.model!;
  const specs = (s.specs = modelInputSpecs(model.proto));
  if (inputs.calibrationPath) s.calibration = await loadDataset(inputs.calibrationPath, specs);
  else if (recipe.calibration?.random) {
    s.calibration = randomDataset(specs, {
      samples: recipe.calibration.samples ?? DEFAULT_SAMPLES,
      seed: recipe.calibration.seed ?? 0,
      intRanges: vocabularyHints(model),
    });
    s.warnings.push(`calibration used random data (${s.calibration.source}): results describe noise, not real inputs`);
  }
  if (method!.calibration(recipe) === 'required' && !s.calibration) {
    throw new InputError('calibration-required', calibrationRequiredText(recipe));
  }
  s.evalData = inputs.evalPath ? await loadDataset(inputs.evalPath, specs) : undefined;
  if (method!.labels(recipe) && !(s.evalData?.labels ?? s.calibration?.labels)) {
    throw new InputError('labels-required', `${describeRecipe(recipe)} needs labels in the evaluation data`);
  }
}

function selectLayers(s: RunState): void {
  const method = s.method!;
  s.all = discoverWeights(s.model!);
  const selection = selectWeights(s.all, s.recipe, method, method.calibration(s.recipe) === 'required');
  s.selected = selection.selected;
  s.skipped = selection.skipped;
  s.selectionPatterns = selection.patterns;
  s.warnings.push(...selection.warnings);
  // A job that would change nothing is a failed job, not a success with an unchanged model: say why, and what would.
  if (!method.ingredients(s.recipe)) assertSomethingSelected(selection, s.recipe, describeRecipe(s.recipe), s.model!);
}

/** Vocabulary sizes of integer inputs that index an embedding table (Gather data rows), for random token ids. */
function vocabularyHints(model: LoadedModel): Map<string, number> {
  const out = new Map<string, number>();
  const g = model.proto.graph;
  if (!g) return out;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  for (const n of g.node) {
    if (n.opType !== 'Gather') continue;
    const table = inits.get(n.input[0]);
    if (table && table.dims.length >= 1 && n.input[1]) out.set(n.input[1], Number(table.dims[0]));
  }
  return out;
}
