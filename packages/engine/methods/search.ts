// Method `search`: finds the smallest (objective "size") or fastest ("latency") model within a quality budget over
// quantization × N:M sparsity × low-rank adapters, mixed per layer, measuring every candidate it answers with on the
// held-out data. The search itself lives in search/ (space, sensitivity table, mixing path, trials, front, plot).
//
// Sample recipe:
//   {"method": "search", "objective": "size", "budget": {"metric": "perplexity", "maxRelativeIncrease": 0.02},
//    "space": {"bits": [4, 8], "patterns": ["2:4"], "criteria": ["wanda", "sparsegpt"], "rankRatio": [0, 0.1]},
//    "perLayer": true, "maxTrials": 24}
import type { SearchRecipe } from '../recipe.js';
import { runSearch } from '../search/search.js';
import type { CompressionMethod } from './types.js';

export const method: CompressionMethod<SearchRecipe> = {
  name: 'search',
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
