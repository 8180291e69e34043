// The search method's recipe: budget, space and the recipe itself (schemas and types). It lives in search/, below
// methods/search.ts, because the search engine in this folder reads these types while methods/search.ts runs the
// engine: were they in the method file, the two would import each other. methods/search.ts re-exports them and owns
// the rest of the method (defaults, rules, declarations).
import { Type, type Static } from 'typebox';
import { CommonProps, CriterionSchema, PatternSchema, strict } from '../recipe-parts.js';

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
    clips: Type.Optional(
      Type.Array(Type.Union([Type.Literal('none'), Type.Literal('mse')]), {
        minItems: 1,
        description:
          'quant.clip values tried with rtn and gptq codes (mse: per-group clip search, same bytes). Default ["none"].',
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
