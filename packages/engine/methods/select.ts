// Which weights a recipe compresses: include/exclude globs over weight and node names (name-glob.ts: `*` matches
// any run of characters, `/ . :` included; a pattern is tested against the weight's name and every consuming
// node's name), op types, the model layer's compressibility verdict, the method's own constraints, and (for methods
// that need calibration) whether the layer's input activation can be captured at all. Every weight not selected
// comes back with its reason; every pattern comes back with how many weights it matched, and one that matched none
// is a warning (a typo must not pass silently).
import { InputError } from '../job-parts.js';
import type { LoadedModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import type { RecipeBase } from '../recipe-parts.js';
import { groupedReasons, noLayerMessage } from './explain.js';
import { nameGlobMatch } from './name-glob.js';
import type { CompressionMethod, SkippedWeight } from './types.js';

/** How many of the model's weights one include/exclude pattern matched (by weight or consuming node name). */
export interface PatternCount {
  list: 'include' | 'exclude';
  pattern: string;
  weights: number;
}

export interface Selection {
  selected: WeightRef[];
  skipped: SkippedWeight[];
  /** One row per include/exclude pattern, in recipe order (report.selection.patterns). */
  patterns: PatternCount[];
  /** One line per pattern that matched no weight. */
  warnings: string[];
}

function matches(pattern: string, w: WeightRef): boolean {
  return nameGlobMatch(pattern, w.name) || w.nodes.some((n) => nameGlobMatch(pattern, n));
}

/** The first pattern of the list that matches w (undefined when none does, or when there is no list). */
function firstMatch(patterns: string[] | undefined, w: WeightRef): string | undefined {
  return patterns?.find((p) => matches(p, w));
}

function countPatterns(weights: WeightRef[], recipe: RecipeBase): PatternCount[] {
  const rows: PatternCount[] = [];
  for (const list of ['include', 'exclude'] as const) {
    for (const pattern of recipe[list] ?? []) {
      rows.push({ list, pattern, weights: weights.filter((w) => matches(pattern, w)).length });
    }
  }
  return rows;
}

export function selectWeights<R extends RecipeBase>(
  weights: WeightRef[],
  recipe: R,
  method: CompressionMethod<R>,
  needsActivations: boolean,
): Selection {
  const include = recipe.include?.length ? recipe.include : undefined;
  const ops = recipe.opTypes?.length ? new Set<string>(recipe.opTypes) : undefined;
  const selected: WeightRef[] = [];
  const skipped: SkippedWeight[] = [];
  for (const w of weights) {
    let reason: string | undefined;
    const excludedBy = firstMatch(recipe.exclude, w);
    if (include && !firstMatch(include, w)) reason = `not matched by include ${JSON.stringify(recipe.include)}`;
    else if (excludedBy) reason = `excluded by "${excludedBy}"`;
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
  const patterns = countPatterns(weights, recipe);
  const warnings = patterns
    .filter((p) => p.weights === 0)
    .map(
      (p) =>
        `${p.list} pattern "${p.pattern}" matched no weight (patterns are tested against weight and node names; ` +
        '`*` matches any characters, `/` and `.` included)',
    );
  return { selected, skipped, patterns, warnings };
}

/**
 * A selection that leaves nothing to compress fails the job ('no-layer-selected') instead of returning an unchanged
 * model: an include whose patterns matched nothing is named as the cause; otherwise the reasons are listed grouped.
 */
export function assertSomethingSelected(sel: Selection, recipe: RecipeBase, what: string, model?: LoadedModel): void {
  if (sel.selected.length > 0) return;
  const unmatched = sel.patterns.filter((p) => p.list === 'include' && p.weights === 0).map((p) => `"${p.pattern}"`);
  const matchedAny = sel.patterns.some((p) => p.list === 'include' && p.weights > 0);
  if (recipe.include?.length && !matchedAny) {
    throw new InputError(
      'no-layer-selected',
      `${what}: include ${unmatched.join(', ')} matched no weight or node name of this model, so nothing is selected`,
    );
  }
  throw new InputError('no-layer-selected', noLayerMessage(what, recipe, sel.skipped, model));
}

/** "reason — a, b, c (+N more); other reason — d": each distinct reason once, with the layers it applies to. */

/**
 * After the method: a job whose method wrote no layer (every selected layer came back with a `skipped` reason, e.g.
 * a rewrite the model's opset cannot take) fails 'no-layer-selected' with the reasons grouped — the output would be
 * the input, and the job must not report success.
 */
export function assertNothingWrittenFails(
  rows: { name: string; skipped?: string }[],
  skipped: SkippedWeight[],
  what: string,
): void {
  if (rows.length === 0 || rows.some((r) => !r.skipped)) return;
  const reasons: [string, string][] = [
    ...rows.map((r): [string, string] => [r.name, r.skipped!]),
    ...skipped.map((s): [string, string] => [s.weight.name, s.reason]),
  ];
  throw new InputError('no-layer-selected', `${what} wrote no layer of this model (${groupedReasons(reasons)})`);
}

export { groupedReasons };
