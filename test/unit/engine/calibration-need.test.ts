// The API refuses at submit a recipe that cannot run without calibration data (calibration-need.ts). That decision
// is taken without loading the methods, so this test keeps it equal to each method's own answer, and its message
// equal to the one runRecipe gives for the same recipe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingCalibrationMessage, recipeCalibrationNeed } from '../../../packages/engine/calibration-need.js';
import { methodFor } from '../../../packages/engine/methods/registry.js';
import { parseRecipe } from '../../../packages/engine/recipe.js';
import { runRecipe } from '../../../packages/engine/run.js';

const MODEL = new URL('../../fixtures/soup/dense.onnx', import.meta.url).pathname;

const RECIPES: object[] = [
  { method: 'sparsity' },
  { method: 'sparsity', criterion: 'magnitude', sparsity: 0.5 },
  { method: 'sparsity', criterion: 'wanda' },
  { method: 'sparsity', criterion: 'sparsegpt', pattern: '1:4' },
  { method: 'quantize', quant: { bits: 4 } },
  { method: 'quantize', quant: { bits: 4, scheme: 'slim' } },
  { method: 'quantize', quant: { bits: 4, scheme: 'gptq' } },
  {
    method: 'slim',
    criterion: 'magnitude',
    lowRank: { rankRatio: 0.1, saliency: 'none' },
    quant: { bits: 4, scheme: 'gptq' },
  },
  { method: 'slim' },
  { method: 'slim', criterion: 'magnitude' },
  { method: 'slim', criterion: 'magnitude', lowRank: { rankRatio: 0.1, saliency: 'none' } },
  { method: 'slim', criterion: 'magnitude', lowRank: { rankRatio: 0.1, saliency: 'whitened' } },
  { method: 'slim', criterion: 'sparsegpt', lowRank: { rankRatio: 0.1, saliency: 'none' } },
  { method: 'soup' },
  { method: 'search', budget: { metric: 'fidelity', maxOutputError: 0.1 } },
];

test("the recipe-only calibration need equals every method's own answer", async () => {
  for (const r of RECIPES) {
    const recipe = parseRecipe(r);
    const method = await methodFor(recipe);
    assert.equal(recipeCalibrationNeed(recipe), method.calibration(recipe), JSON.stringify(r));
  }
});

test('no message when data is given, random data is asked for, or the method can do without', () => {
  const wanda = parseRecipe({ method: 'sparsity', criterion: 'wanda' });
  assert.match(missingCalibrationMessage(wanda, false) ?? '', /^method "sparsity" with criterion "wanda" needs/);
  assert.equal(missingCalibrationMessage(wanda, true), null);
  assert.equal(
    missingCalibrationMessage(
      parseRecipe({ method: 'sparsity', criterion: 'wanda', calibration: { random: true } }),
      false,
    ),
    null,
  );
  assert.equal(missingCalibrationMessage(parseRecipe({ method: 'quantize', quant: { bits: 8 } }), false), null);
});

test("the message is runRecipe's own, code calibration-required", async () => {
  const out = await mkdtemp(join(tmpdir(), 'oc-calib-need-'));
  try {
    for (const r of [{ method: 'sparsity', criterion: 'sparsegpt' }, { method: 'slim' }]) {
      const recipe = parseRecipe(r);
      await assert.rejects(runRecipe(recipe, { modelPath: MODEL, outputDir: out }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'calibration-required');
        assert.equal(e.message, missingCalibrationMessage(recipe, false));
        return true;
      });
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
