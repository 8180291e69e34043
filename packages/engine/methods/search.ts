// Method `search`: finds the smallest (objective "size") or fastest ("latency") model within a quality budget over
// quantization × N:M sparsity × low-rank adapters, mixed per layer, measuring every candidate it answers with on the
// held-out data. The search itself lives in search/ (space, sensitivity table, mixing path, trials, front, plot).
//
// Sample recipe:
//   {"method": "search", "objective": "size", "budget": {"metric": "perplexity", "maxRelativeIncrease": 0.02},
//    "space": {"bits": [4, 8], "patterns": ["2:4"], "criteria": ["wanda", "sparsegpt"], "rankRatio": [0, 0.1]},
//    "perLayer": true, "maxTrials": 24}
import { Type, type Static } from 'typebox';
import {
  CommonProps,
  CriterionSchema,
  PatternSchema,
  patternFieldIssues,
  strict,
  type RecipeIssue,
} from '../recipe-parts.js';
import { DEFAULT_SEARCH_SPACE } from '../search/defaults.js';
import { runSearch } from '../search/search.js';
import type { CompressionMethod } from './types.js';

export const SearchBudgetSchema = Type.Union(
  [
    Type.Object(
      {
        metric: Type.Literal('perplexity'),
        maxRelativeIncrease: Type.Number({
          minimum: 0,
          description: 'Largest allowed (ppl − ppl_dense)/ppl_dense on the held-out data, e.g. 0.02.',
        }),
      },
      strict,
    ),
    Type.Object(
      {
        metric: Type.Literal('accuracy'),
        maxDrop: Type.Number({
          minimum: 0,
          maximum: 1,
          description: 'Largest allowed absolute accuracy drop (a fraction: 0.01 = one point).',
        }),
      },
      strict,
    ),
    Type.Object(
      {
        metric: Type.Literal('fidelity'),
        maxOutputError: Type.Number({
          minimum: 0,
          description: 'Largest allowed relative output error ‖y − ŷ‖/‖y‖ against the dense model.',
        }),
      },
      strict,
    ),
  ],
  { description: 'The quality the searched model must keep, measured on the evaluation data (else calibration data).' },
);

export const SearchSpaceSchema = Type.Object(
  {
    methods: Type.Optional(
      Type.Array(Type.Union([Type.Literal('quantize'), Type.Literal('sparsity'), Type.Literal('slim')]), {
        minItems: 1,
        description: 'Methods tried (slim with rankRatio 0 = N:M sparsity + quantization without adapters).',
      }),
    ),
    bits: Type.Optional(Type.Array(Type.Union([Type.Literal(4), Type.Literal(8)]), { minItems: 1 })),
    groupSize: Type.Optional(
      Type.Array(
        Type.Union([Type.Literal(16), Type.Literal(32), Type.Literal(64), Type.Literal(128), Type.Literal('channel')]),
        { minItems: 1 },
      ),
    ),
    schemes: Type.Optional(
      Type.Array(Type.Union([Type.Literal('rtn'), Type.Literal('slim'), Type.Literal('gptq')]), {
        minItems: 1,
        description: 'quant.scheme values tried (under an N:M mask, gptq is paired with the sparsegpt criterion).',
      }),
    ),
    patterns: Type.Optional(Type.Array(PatternSchema, { minItems: 1 })),
    criteria: Type.Optional(Type.Array(CriterionSchema, { minItems: 1 })),
    rankRatio: Type.Optional(
      Type.Array(Type.Number({ minimum: 0, maximum: 1 }), {
        minItems: 1,
        description: 'Low-rank adapter ratios for slim; 0 means no adapters.',
      }),
    ),
  },
  { ...strict, description: 'Values tried per key; each defaults to every value the engine can write (see README).' },
);

export const SearchRecipeSchema = Type.Object(
  {
    method: Type.Literal('search'),
    objective: Type.Optional(
      Type.Union([Type.Literal('size'), Type.Literal('latency')], {
        description: 'size: smallest file; latency: fastest p50 at batch 1 on the worker. Default size.',
      }),
    ),
    budget: SearchBudgetSchema,
    space: Type.Optional(SearchSpaceSchema),
    perLayer: Type.Optional(
      Type.Boolean({ description: 'Candidates may give each layer its own choice (default true).' }),
    ),
    maxTrials: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, description: 'Full-model evaluations at most (default 24).' }),
    ),
    ...CommonProps,
  },
  { ...strict, title: 'SearchRecipe' },
);

export type SearchRecipe = Static<typeof SearchRecipeSchema>;
export type SearchBudget = Static<typeof SearchBudgetSchema>;
export type SearchSpace = Static<typeof SearchSpaceSchema>;
/** The registry's name for this method's recipe schema. */
export const schema = SearchRecipeSchema;

function withDefaults(r: SearchRecipe): SearchRecipe {
  r.objective ??= 'size';
  r.perLayer ??= true;
  r.maxTrials ??= 24;
  r.space = { ...DEFAULT_SEARCH_SPACE, ...r.space };
  return r;
}

function rules(r: SearchRecipe): RecipeIssue[] {
  return (r.space?.patterns ?? []).flatMap((p, i) => patternFieldIssues(p, `/space/patterns/${i}`));
}

export const method: CompressionMethod<SearchRecipe> = {
  name: 'search',
  schema: SearchRecipeSchema,
  withDefaults,
  rules,
  summary: 'recipe search: the smallest or fastest model within a quality budget, mixed per layer',
  example: {
    method: 'search',
    objective: 'size',
    budget: { metric: 'perplexity', maxRelativeIncrease: 0.02 },
    space: { bits: [4, 8], patterns: ['2:4'], criteria: ['wanda', 'sparsegpt'], rankRatio: [0, 0.1] },
    perLayer: true,
    maxTrials: 24,
  },
  // The sensitivity table needs every layer's Hessian (layer output errors; SparseGPT and whitened adapters).
  calibration: () => 'required',
  hessian: () => true,
  labels: (r) => r.budget.metric === 'accuracy',
  ingredients: () => false,
  changesGraph: () => true,
  // The answer is quantized (MatMulNBits) wherever quantization was chosen: its latency goes in the report.
  timesLatency: () => true,
  run: runSearch,
};
