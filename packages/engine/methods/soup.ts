// Method `soup`: merge ≥ 2 fine-tuned sparse models of one parent into one (SMS / model soups), uniform or greedy,
// with the masks checked and re-applied, and optionally prune the soup further for the next SMS phase. The maths and
// the orchestration live in ../soup/ (cookSoup); this file maps the recipe and the runner's context onto it.
//
// Sample recipe:
//   {"method":"soup","mode":"greedy","maskPolicy":"reprune","pattern":"2:4","criterion":"magnitude","metric":"accuracy"}
import { resolve } from 'node:path';
import { InputError, type LayerReport } from '../job-parts.js';
import { Type, type Static } from 'typebox';
import {
  CommonProps,
  parsePattern,
  PatternSchema,
  patternFieldIssues,
  patternIssues,
  strict,
  type RecipeIssue,
} from '../recipe-parts.js';
import type { WeightRef } from '../onnx/weights.js';
import { cookSoup, type SoupSettings } from '../soup/merge.js';
import { NextPhaseSchema, planNextPhase } from '../soup/next-phase.js';
import { describeSpec, specSkipReason, verifyNM, type RepruneSpec } from '../soup/reprune.js';
import type { CompressionMethod, MethodContext, MethodResult } from './types.js';

// nextPhase's schema lives with its plan (soup/next-phase.ts reads it); re-exported under its old name.
export { NextPhaseSchema };

export const SoupRecipeSchema = Type.Object(
  {
    method: Type.Literal('soup'),
    mode: Type.Optional(Type.Union([Type.Literal('uniform'), Type.Literal('greedy')])),
    tie: Type.Optional(Type.Union([Type.Literal('>='), Type.Literal('>')])),
    maskPolicy: Type.Optional(
      Type.Union([Type.Literal('require-shared'), Type.Literal('intersect'), Type.Literal('reprune')]),
    ),
    maskFrom: Type.Optional(
      Type.Union([Type.Literal('soup'), Type.Literal('all')], {
        description:
          'reprune only: soup (default) re-prunes each candidate soup from its own average; all takes one mask from ' +
          'the uniform average of all ingredients.',
      }),
    ),
    pattern: Type.Optional(PatternSchema),
    sparsity: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    criterion: Type.Optional(Type.Literal('magnitude')),
    metric: Type.Optional(Type.Union([Type.Literal('accuracy'), Type.Literal('perplexity'), Type.Literal('fidelity')])),
    nextPhase: Type.Optional(NextPhaseSchema),
    ...CommonProps,
  },
  { ...strict, title: 'SoupRecipe' },
);
export type SoupRecipe = Static<typeof SoupRecipeSchema>;
/** The registry's name for this method's recipe schema. */
export const schema = SoupRecipeSchema;

function withDefaults(r: SoupRecipe): SoupRecipe {
  r.mode ??= 'greedy';
  r.tie ??= '>=';
  r.maskPolicy ??= 'require-shared';
  if (r.maskPolicy === 'reprune') {
    if (r.pattern === undefined && r.sparsity === undefined) r.pattern = '2:4';
    r.criterion ??= 'magnitude';
    r.maskFrom ??= 'soup';
  }
  r.metric ??= 'accuracy';
  return r;
}

function rules(r: SoupRecipe): RecipeIssue[] {
  const issues = patternFieldIssues(r.pattern);
  if (r.pattern !== undefined && r.sparsity !== undefined) {
    issues.push({ path: '/sparsity', message: 'give either pattern (N:M) or sparsity (unstructured), not both' });
  }
  const np = r.nextPhase;
  if (!np) return issues;
  if (np.sparsity !== undefined && np.goal !== undefined) {
    issues.push({ path: '/nextPhase/goal', message: 'give either sparsity or goal (+ phases), not both' });
  }
  if (np.goal !== undefined && np.phases === undefined) {
    issues.push({ path: '/nextPhase/phases', message: 'goal needs phases (T) to derive the phase sparsity' });
  }
  if (np.sparsity === undefined && np.goal === undefined && np.pattern === undefined) {
    issues.push({ path: '/nextPhase', message: 'give sparsity, goal + phases, or pattern' });
  }
  if (np.pattern !== undefined) {
    const [n, m] = np.pattern.split(':').map(Number);
    issues.push(...patternIssues(n, m, '/nextPhase/pattern'));
  }
  return issues;
}

/** The reprune mask spec of a recipe (pattern N:M, or unstructured sparsity). */
export function repruneSpecOf(r: SoupRecipe): RepruneSpec | undefined {
  if (r.maskPolicy !== 'reprune') return undefined;
  if (r.sparsity !== undefined) return { kind: 'unstructured', sparsity: r.sparsity };
  const { n, m } = parsePattern(r.pattern ?? '2:4');
  return { kind: 'nm', n, m };
}

export function soupSettings(r: SoupRecipe): SoupSettings {
  if (r.maskPolicy !== 'reprune' && (r.pattern !== undefined || r.sparsity !== undefined)) {
    throw new InputError(
      'soup-bad-recipe',
      `pattern / sparsity set the re-pruned mask and apply only with maskPolicy "reprune" (got "${r.maskPolicy}")`,
    );
  }
  if (r.maskPolicy !== 'reprune' && r.maskFrom !== undefined) {
    throw new InputError(
      'soup-bad-recipe',
      `maskFrom chooses where the re-pruned mask comes from and applies only with maskPolicy "reprune" (got "${r.maskPolicy}")`,
    );
  }
  const reprune = repruneSpecOf(r);
  return {
    mode: r.mode ?? 'greedy',
    tie: r.tie ?? '>=',
    maskPolicy: r.maskPolicy ?? 'require-shared',
    ...(reprune ? { reprune, maskFrom: r.maskFrom ?? 'soup' } : {}),
    metric: r.metric ?? 'accuracy',
    ...(r.nextPhase ? { nextPhase: planNextPhase(r.nextPhase) } : {}),
  };
}

/** How the re-pruned mask was taken, for the report. */
export function maskFromText(maskFrom: SoupSettings['maskFrom']): string {
  return (maskFrom ?? 'soup') === 'soup'
    ? "mask from each candidate soup's own average"
    : 'one mask from the uniform average of all ingredients';
}

async function run(ctx: MethodContext<SoupRecipe>): Promise<MethodResult> {
  const recipe = ctx.recipe;
  const settings = soupSettings(recipe);
  const started = performance.now();
  if (ctx.ingredients.length < 2) {
    throw new InputError(
      'soup-too-few-ingredients',
      `a soup needs at least 2 ingredient models, got ${ctx.ingredients.length}`,
    );
  }
  const basePath = ctx.model.path ? resolve(ctx.model.path) : undefined;
  const baseIndex = ctx.ingredients.findIndex((i) => basePath !== undefined && resolve(i.path) === basePath);
  // Every discovered weight carries a mask (selected or not); only selected ones may be re-pruned.
  const masked: WeightRef[] = [...ctx.weights, ...ctx.skipped.map((s) => s.weight)];
  const scorer = ctx.scorer;
  const report = await cookSoup({
    base: ctx.model,
    baseIngredient: baseIndex >= 0 ? baseIndex : null,
    ingredients: ctx.ingredients,
    maskedWeights: masked,
    prunableWeights: ctx.weights,
    notPrunable: ctx.skipped,
    settings,
    ...(scorer ? { score: (m) => scorer.score(m, settings.metric) } : {}),
    progress: (fraction, message) => ctx.progress({ fraction, message }),
    checkAbort: () => ctx.checkAbort(),
    warn: (m) => ctx.warn(m),
  });
  const seconds = (performance.now() - started) / 1000;
  const byName = new Map(report.weights.map((w) => [w.name, w]));
  const phase = new Map((report.nextPhase?.weights ?? []).map((w) => [w.name, w]));
  const layers: LayerReport[] = ctx.weights.map((w) => {
    const label = w.storeGraphPath ? `${w.storeGraphPath}/${w.name}` : w.name;
    const row = byName.get(label);
    const after = phase.get(label);
    const nm = settings.maskPolicy === 'reprune' && settings.reprune?.kind === 'nm' ? settings.reprune : undefined;
    return {
      name: w.name,
      node: w.node,
      op: w.op,
      shape: w.shape,
      pattern:
        settings.maskPolicy === 'reprune'
          ? `soup, re-pruned ${describeSpec(settings.reprune!)} (${maskFromText(settings.maskFrom)})`
          : `soup, ${settings.maskPolicy === 'intersect' ? 'intersected' : 'shared'} mask`,
      sparsity: after && !after.skipped ? after.after : (row?.soupSparsity ?? 0),
      maskSparsity: row?.maskSparsity ?? 0,
      patternVerified:
        nm && !specSkipReason(w, nm) ? verifyNM(ctx.model, w, nm.n, nm.m) : (row?.maskRespected ?? false),
      seconds: seconds / Math.max(1, ctx.weights.length),
    };
  });
  return { layers, report: { soup: report } };
}

export const method: CompressionMethod<SoupRecipe> = {
  name: 'soup',
  schema: SoupRecipeSchema,
  withDefaults,
  rules,
  minModels: 2,
  summary:
    'Sparse model soup: average fine-tuned sparse models of one parent (uniform or greedy on held-out data), masks ' +
    'checked and re-applied; optionally prune further for the next phase',
  example: {
    method: 'soup',
    mode: 'greedy',
    maskPolicy: 'reprune',
    pattern: '2:4',
    criterion: 'magnitude',
    metric: 'accuracy',
  },
  calibration: () => 'none',
  hessian: () => false,
  // Greedy accuracy needs class labels; perplexity can fall back to shifted token ids, fidelity needs none.
  labels: (r) => (r.mode ?? 'greedy') === 'greedy' && (r.metric ?? 'accuracy') === 'accuracy',
  ingredients: () => true,
  changesGraph: () => false,
  skipReason(w, r) {
    const spec = repruneSpecOf(r);
    return spec ? specSkipReason(w, spec) : undefined;
  },
  run,
};
