// Whether a recipe can run without calibration data, decided from the recipe alone: no model, no method module, no
// ONNX Runtime. The API refuses such a job at submit (422) instead of queueing a job that can only fail; the code
// and text are the engine's (runRecipe's `calibration-required`), and a test keeps this file in step with each
// method's own `calibration(recipe)` answer (methods/*.ts) and with runRecipe's message.
import type { Recipe } from './recipe.js';
import { calibrationFreeAlternative } from './methods/explain.js';
import { describeRecipe } from './runner/state.js';

/** The method's need, as methods/<name>.ts `calibration(recipe)` answers it. */
export function recipeCalibrationNeed(r: Recipe): 'none' | 'optional' | 'required' {
  switch (r.method) {
    case 'sparsity':
      // magnitude scores |W| alone; wanda needs ‖x_k‖, sparsegpt the Hessian.
      return (r.criterion ?? 'magnitude') === 'magnitude' ? 'optional' : 'required';
    case 'slim': {
      // ‖x_k‖ for wanda and slim saliency; the Hessian for sparsegpt, whitened saliency and gptq rounding.
      const criterion = r.criterion ?? 'wanda';
      const saliency = r.lowRank?.saliency ?? 'slim';
      const gptq = r.quant?.scheme === 'gptq';
      return criterion === 'magnitude' && saliency === 'none' && !gptq ? 'optional' : 'required';
    }
    case 'quantize':
      return r.quant.scheme === 'gptq' ? 'required' : 'optional';
    case 'soup':
      return 'none';
    case 'search':
      return 'required';
  }
}

/**
 * The engine's `calibration-required` error text for a recipe given no calibration file, or null when the job
 * can run (the method does not need data, or `calibration.random` asks for random inputs).
 */
export function missingCalibrationMessage(r: Recipe, hasCalibrationData: boolean): string | null {
  if (hasCalibrationData || r.calibration?.random || recipeCalibrationNeed(r) !== 'required') return null;
  return calibrationRequiredText(r);
}

/** The text of `calibration-required`: where the data goes (CLI, API, recipe) and what needs none. */
export function calibrationRequiredText(r: Recipe): string {
  const alternative = calibrationFreeAlternative(r);
  return (
    `${describeRecipe(r)} needs calibration data: give a calibration file (.npz/.npy/TensorProto folder; ` +
    '--calibration FILE on the CLI, calibrationDatasetId in the API) or set "calibration": {"random": true} in ' +
    'the recipe' +
    (alternative ? `; ${alternative}` : '')
  );
}
