// Why a recipe applies to no layer, said so that a user knows what to change: the layers grouped by reason
// ("reason — 12 layers: …"), names quoted (a weight named `1` must not read as a list index), the case of weights fed
// as graph inputs named, and what would work instead (a criterion without calibration, other globs, `inspect`).
import type { LoadedModel } from '../onnx/model.js';
import { walkGraphs } from '../onnx/walk.js';
import type { RecipeBase } from '../recipe-parts.js';
import type { SkippedWeight } from './types.js';

const WEIGHT_OPS = new Set(['MatMul', 'Gemm', 'Conv']);
const MAX_NAMES = 3;

/** Names in quotes: a weight named `1` or `x, y` reads as a name. */
function nameList(names: string[], max = MAX_NAMES): string {
  const shown = names
    .slice(0, max)
    .map((n) => JSON.stringify(n))
    .join(', ');
  return names.length > max ? `${shown} (+${names.length - max} more)` : shown;
}

/** Reasons each said once, with the layers they apply to: `reason — 2 layers: "a", "b"`. */
export function groupedReasons(rows: [name: string, reason: string][], maxGroups = 6, maxNames = MAX_NAMES): string {
  const groups = new Map<string, string[]>();
  for (const [name, reason] of rows) {
    const g = groups.get(reason);
    if (g) g.push(name);
    else groups.set(reason, [name]);
  }
  const parts = [...groups].slice(0, maxGroups).map(([reason, names]) => {
    const shown = nameList(names, maxNames);
    return `${reason} — ${names.length === 1 ? shown : `${names.length} layers: ${shown}`}`;
  });
  const rest = groups.size > maxGroups ? `; … ${groups.size - maxGroups} more reasons` : '';
  return parts.join('; ') + rest;
}

/** MatMul/Gemm/Conv weights that are graph inputs (fed at run time) rather than initializers. */
export function weightsAsGraphInputs(model: LoadedModel): string[] {
  const found: string[] = [];
  walkGraphs(model.proto, (v) => {
    const inputs = new Set(v.graph.input.map((i) => i.name));
    const inits = new Set(v.graph.initializer.map((t) => t.name));
    for (const n of v.graph.node) {
      const w = n.input[1];
      if (WEIGHT_OPS.has(n.opType) && (n.domain === '' || n.domain === 'ai.onnx') && w && inputs.has(w))
        if (!inits.has(w) && !found.includes(w)) found.push(w);
    }
  });
  return found;
}

/** The same recipe without calibration data: a criterion or scheme that needs none, when the recipe's does. */
export function calibrationFreeAlternative(recipe: RecipeBase): string | undefined {
  const criterion = 'criterion' in recipe ? recipe.criterion : undefined;
  if (criterion === 'wanda' || criterion === 'sparsegpt') return 'criterion "magnitude" needs no calibration';
  const scheme = 'quant' in recipe ? (recipe.quant as { scheme?: string } | undefined)?.scheme : undefined;
  if (scheme === 'gptq') return 'quant.scheme "rtn" needs no calibration';
  return undefined;
}

/** What would work instead, judged from the reasons the layers were skipped for. */
function suggestions(recipe: RecipeBase, skipped: SkippedWeight[]): string[] {
  const out: string[] = [];
  const reasons = skipped.map((k) => k.reason);
  const calibrationBound = reasons.some((r) => /input activation|calibrat/.test(r));
  const alternative = calibrationFreeAlternative(recipe);
  if (calibrationBound && alternative) out.push(`${alternative} and has no such limit`);
  if (reasons.some((r) => r.includes('initializer is also a graph input')))
    out.push(
      're-export without listing initializers as graph inputs (torch.onnx.export keep_initializers_as_inputs=False)',
    );
  if (reasons.some((r) => r.startsWith('not matched by include') || r.startsWith('excluded by')))
    out.push('check "include"/"exclude" against the weight and node names');
  if (reasons.some((r) => r.includes('not in opTypes'))) out.push('widen "opTypes"');
  out.push('`onnx-compress inspect MODEL` lists every weight and why it can or cannot be compressed');
  return out;
}

/** The message of a job that would change nothing (InputError 'no-layer-selected'): why, and what would work. */
export function noLayerMessage(
  what: string,
  recipe: RecipeBase,
  skipped: SkippedWeight[],
  model?: LoadedModel,
): string {
  if (skipped.length === 0) {
    const fed = model ? weightsAsGraphInputs(model) : [];
    if (fed.length) {
      return (
        `${what} applies to no layer of this model: the weights of its MatMul/Gemm/Conv nodes are graph inputs ` +
        `(${nameList(fed)}), given at run time instead of stored in the model; re-export the model with the weights ` +
        'as initializers (e.g. torch.onnx.export with export_params=True)'
      );
    }
    return `${what} applies to no layer of this model (it has no MatMul/Gemm/Conv weight)`;
  }
  // Layers inside subgraphs are named with their path, so that one reason ("… lives in a subgraph …") groups them.
  const rows = skipped.map((k): [string, string] => {
    const path = k.weight.graphPath;
    return path
      ? [`${path}/${k.weight.name}`, k.reason.replace(`subgraph ${path}`, 'a subgraph')]
      : [k.weight.name, k.reason];
  });
  const reasons = groupedReasons(rows);
  return `${what} applies to no layer of this model (${reasons}). What would work: ${suggestions(recipe, skipped).join('; ')}`;
}
