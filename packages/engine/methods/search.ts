// Method `search`: finds the smallest (objective "size") or fastest ("latency") model within a quality budget over
// quantization × N:M sparsity × low-rank adapters, mixed per layer, measuring every candidate it answers with on the
// held-out data. The search itself lives in search/ (space, sensitivity table, mixing path, trials, front, plot).
//
// Sample recipe:
//   {"method": "search", "objective": "size", "budget": {"metric": "perplexity", "maxRelativeIncrease": 0.02},
//    "space": {"bits": [4, 8], "patterns": ["2:4"], "criteria": ["wanda", "sparsegpt"], "rankRatio": [0, 0.1]},
//    "perLayer": true, "maxTrials": 24}
import { patternFieldIssues, type RecipeIssue } from '../recipe-parts.js';
import { DEFAULT_SEARCH_SPACE } from '../search/defaults.js';
import { SearchRecipeSchema, type SearchRecipe } from '../search/schema.js';
import { runSearch } from '../search/search.js';
import type { CompressionMethod } from './types.js';

// The recipe's schema lives with the search engine (search/schema.ts says why); re-exported here, its method file.
export {
  SearchBudgetSchema,
  SearchRecipeSchema,
  SearchSpaceSchema,
  type SearchBudget,
  type SearchRecipe,
  type SearchSpace,
} from '../search/schema.js';

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
