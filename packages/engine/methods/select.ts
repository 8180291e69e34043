// Which weights a recipe compresses: include/exclude globs over weight and node names, op types, the model layer's
// compressibility verdict, the method's own constraints, and (for methods that need calibration) whether the
// layer's input activation can be captured at all. Every weight not selected comes back with its reason.
import picomatch from 'picomatch';
import type { WeightRef } from '../onnx/weights.js';
import type { Recipe } from '../recipe.js';
import type { CompressionMethod, SkippedWeight } from './types.js';

export interface Selection {
  selected: WeightRef[];
  skipped: SkippedWeight[];
}

function matcher(patterns: string[] | undefined): ((w: WeightRef) => string | undefined) | undefined {
  if (!patterns?.length) return undefined;
  const tests = patterns.map((p) => ({ p, test: picomatch(p, { dot: true }) }));
  return (w) => {
    for (const { p, test } of tests) {
      if (test(w.name) || w.nodes.some((n) => test(n))) return p;
    }
    return undefined;
  };
}

export function selectWeights<R extends Recipe>(
  weights: WeightRef[],
  recipe: R,
  method: CompressionMethod<R>,
  needsActivations: boolean,
): Selection {
  const include = matcher(recipe.include);
  const exclude = matcher(recipe.exclude);
  const ops = recipe.opTypes?.length ? new Set<string>(recipe.opTypes) : undefined;
  const selected: WeightRef[] = [];
  const skipped: SkippedWeight[] = [];
  for (const w of weights) {
    let reason: string | undefined;
    if (include && !include(w)) reason = `not matched by include ${JSON.stringify(recipe.include)}`;
    else if (exclude && exclude(w)) reason = `excluded by "${exclude(w)}"`;
    else if (ops && !ops.has(w.op)) reason = `op ${w.op} not in opTypes`;
    else if (!w.compressible) reason = w.reason ?? 'not compressible';
    else if (method.skipReason) reason = method.skipReason(w, recipe);
    if (!reason && needsActivations) {
      if (!w.activation) reason = 'the layer has no input activation to calibrate on';
      else if (!w.activationInMainGraph) {
        reason = `its input activation lives in subgraph ${w.graphPath} and cannot be captured for calibration`;
      }
    }
    if (reason) skipped.push({ weight: w, reason });
    else selected.push(w);
  }
  return { selected, skipped };
}
