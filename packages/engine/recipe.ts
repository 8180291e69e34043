// The recipe: one schema for a compression job, used by the API (validation + OpenAPI), the CLI (--recipe), the
// worker and the engine. Every object is strict (unknown keys are errors: a typo must never be silently ignored).
// The schema is the union of the methods' own schemas (methods/<name>.ts, listed in methods/registry.ts); parsing
// checks the method's branch, fills its defaults and applies its rules. The shared pieces live in recipe-parts.ts.
import { Type, type TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { allMethods, findMethod, METHOD_NAMES, type MethodName, type MethodRecipe } from './methods/registry.js';
import { RecipeError, type RecipeIssue } from './recipe-parts.js';

export {
  AccuracyLevelSchema,
  CalibrationSchema,
  CommonProps,
  CriterionSchema,
  EvaluationSchema,
  FormatSchema,
  LayerSelectionProps,
  parsePattern,
  PatternSchema,
  QuantSchema,
  RecipeError,
  type QuantSpec,
  type RecipeIssue,
} from './recipe-parts.js';
export { METHOD_NAMES, type MethodName };
// The methods' schemas and recipe types under the names they had when they were written here.
export { SparsityRecipeSchema, type SparsityRecipe } from './methods/sparsity.js';
export { QuantizeRecipeSchema, type QuantizeRecipe } from './methods/quantize.js';
export { LowRankSchema, SlimRecipeSchema, type SlimRecipe } from './methods/slim.js';
export { NextPhaseSchema, SoupRecipeSchema, type SoupRecipe } from './methods/soup.js';
export {
  SearchBudgetSchema,
  SearchRecipeSchema,
  SearchSpaceSchema,
  type SearchBudget,
  type SearchRecipe,
  type SearchSpace,
} from './methods/search.js';
export { phaseSparsity } from './soup/next-phase.js';

export const RecipeSchema = Type.Union(
  allMethods().map((m) => m.schema),
  { title: 'Recipe', description: 'A compression job: the method and its settings.' },
);

export type Recipe = MethodRecipe;

function schemaIssues(schema: TSchema, value: unknown): RecipeIssue[] {
  const out: RecipeIssue[] = [];
  const errors = [...Value.Errors(schema, value)];
  // A union of literals (an enum) fails once per literal plus once for the anyOf: said once, with the values.
  const enums = new Map<string, unknown[]>();
  for (const e of errors) {
    if (e.keyword !== 'const') continue;
    const values = enums.get(e.instancePath) ?? [];
    values.push((e.params as { allowedValue?: unknown }).allowedValue);
    enums.set(e.instancePath, values);
  }
  const isEnum = (path: string) => {
    const here = errors.filter((e) => e.instancePath === path);
    return (
      enums.has(path) &&
      here.some((e) => e.keyword === 'anyOf') &&
      here.every((e) => ['anyOf', 'const', 'type'].includes(e.keyword))
    );
  };
  for (const e of errors) {
    if (e.keyword === 'boolean') continue; // duplicate of the additionalProperties error below
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
      for (const key of extra) out.push({ path: `${e.instancePath}/${key}`, message: 'unknown field' });
      continue;
    }
    if (isEnum(e.instancePath)) {
      if (e.keyword !== 'anyOf') continue;
      const got = JSON.stringify(valueAt(value, e.instancePath));
      const allowed = enums.get(e.instancePath)!.map((v) => JSON.stringify(v));
      out.push({ path: e.instancePath, message: `must be one of ${allowed.join(', ')} (got ${got})` });
      continue;
    }
    out.push({ path: e.instancePath, message: e.message });
  }
  return out;
}

/** The value a JSON pointer (as in schema errors) names inside `root`. */
function valueAt(root: unknown, pointer: string): unknown {
  let v = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    v = v && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined;
  }
  return v;
}

/**
 * Validates a recipe (schema + semantic rules) and returns it with defaults filled in. Throws RecipeError listing
 * every issue. The input is not modified.
 */
export function parseRecipe(input: unknown): Recipe {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new RecipeError([{ path: '', message: 'recipe must be a JSON object' }]);
  }
  const name = (input as { method?: unknown }).method;
  const method = typeof name === 'string' ? findMethod(name) : undefined;
  if (!method) {
    throw new RecipeError([
      {
        path: '/method',
        message: `unknown method ${JSON.stringify(name)}; expected one of ${METHOD_NAMES.join(', ')}`,
      },
    ]);
  }
  const issues = schemaIssues(method.schema, input);
  if (issues.length) throw new RecipeError(issues);
  const recipe = method.withDefaults(structuredClone(input) as Recipe);
  const semantic = method.rules?.(recipe) ?? [];
  if (semantic.length) throw new RecipeError(semantic);
  return recipe;
}
