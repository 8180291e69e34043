// The recipe: one schema for a compression job, used by the API (validation + OpenAPI), the CLI (--recipe), the
// worker and the engine. Every object is strict (unknown keys are errors: a typo must never be silently ignored).
import { Type, type Static, type TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { DEFAULT_SEARCH_SPACE } from './search/defaults.js';

const strict = { additionalProperties: false } as const;

/** "N:M" — keep N of every M consecutive weights along the reduction axis K. */
export const PatternSchema = Type.String({
  pattern: '^[0-9]{1,2}:[0-9]{1,2}$',
  description: 'N:M pattern: keep N of every M consecutive weights along K (0 < N < M <= 32), e.g. "2:4".',
  examples: ['2:4'],
});

export const CriterionSchema = Type.Union(
  [Type.Literal('magnitude'), Type.Literal('wanda'), Type.Literal('sparsegpt')],
  {
    description: 'How the mask is chosen: |W| (magnitude), |W|·x_k (wanda) or OBS with weight update (sparsegpt).',
  },
);

export const LayerSelectionProps = {
  include: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), {
      description:
        'Patterns over weight or consuming-node names (`*` = any characters, `/ . :` included; `?` = one ' +
        'character; whole-name match); when given, only matching layers are compressed. One that matches no ' +
        'weight is a warning; an include that selects nothing fails (no-layer-selected).',
    }),
  ),
  exclude: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), {
      description: 'Patterns (as include) over weight or node names to skip, e.g. "*head*".',
    }),
  ),
  opTypes: Type.Optional(
    Type.Array(Type.Union([Type.Literal('MatMul'), Type.Literal('Gemm'), Type.Literal('Conv')]), {
      description: 'Op types to compress (default: all of MatMul, Gemm, Conv).',
    }),
  ),
};

export const CalibrationSchema = Type.Object(
  {
    samples: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1_000_000, default: 128, description: 'Calibration samples to use.' }),
    ),
    batchSize: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 65536, description: 'Samples per ONNX Runtime run (default: 8).' }),
    ),
    random: Type.Optional(
      Type.Boolean({
        description: 'Use random inputs when no calibration data is given (the report says so). Off by default.',
      }),
    ),
    seed: Type.Optional(Type.Integer({ description: 'Seed for random calibration data.' })),
    maxHessianBytes: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'Cap on the float64 Hessians held at once, all layers together (default 2 GiB): calibration runs one pass ' +
          'when they fit, more when not (report.calibration.passes).',
      }),
    ),
    sequential: Type.Optional(
      Type.Boolean({
        description:
          'Calibrate each layer on the outputs of the layers already compressed before it (as the reference ' +
          'Wanda/SparseGPT code does): one pass over the data per distinct input activation. Default false: ' +
          'statistics from the dense model, streamed in as few passes as the Hessian cap allows.',
      }),
    ),
  },
  strict,
);

export const EvaluationSchema = Type.Object(
  {
    samples: Type.Optional(Type.Integer({ minimum: 1, description: 'Evaluation samples to use (default: all).' })),
    outputName: Type.Optional(Type.String({ description: 'Model output compared and scored (default: the first).' })),
    task: Type.Optional(
      Type.Union([Type.Literal('auto'), Type.Literal('classification'), Type.Literal('lm')], {
        description: 'How labels are scored: argmax accuracy, or next-token perplexity (lm). Default auto.',
      }),
    ),
  },
  strict,
);

export const CommonProps = {
  ...LayerSelectionProps,
  calibration: Type.Optional(CalibrationSchema),
  evaluation: Type.Optional(EvaluationSchema),
  device: Type.Optional(
    Type.Union([Type.Literal('auto'), Type.Literal('cpu'), Type.Literal('gpu')], {
      description: 'Where the job runs: gpu queues it for a CUDA worker; auto lets the service decide.',
    }),
  ),
  externalData: Type.Optional(
    Type.Boolean({ description: 'Write the output weights to a side file (default: only when > 1 GiB).' }),
  ),
};

export const QuantSchema = Type.Object(
  {
    bits: Type.Union([Type.Literal(4), Type.Literal(8)], { description: 'Weight bit width.' }),
    scheme: Type.Optional(
      Type.Union([Type.Literal('rtn'), Type.Literal('slim'), Type.Literal('gptq')], {
        description:
          'rtn: round-to-nearest per group; slim: SLiM-Quant per-tensor scale search; gptq: Hessian-aware rounding ' +
          'with error feedback (needs calibration data; scales per group as rtn, fixed when the group is reached).',
      }),
    ),
    groupSize: Type.Optional(
      Type.Union([Type.Literal(16), Type.Literal(32), Type.Literal(64), Type.Literal(128), Type.Literal('channel')], {
        description: 'Group size along K, or "channel" for one scale per output. Default 32.',
      }),
    ),
    symmetric: Type.Optional(
      Type.Boolean({
        description:
          "Symmetric codes (default true): the full signed range, scale = the group's signed extreme / -2^(bits-1) " +
          "(as ONNX Runtime's quantizer).",
      }),
    ),
    clip: Type.Optional(
      Type.Union([Type.Literal('none'), Type.Literal('mse')], {
        description:
          'Per-group clip search (rtn): mse keeps, per group, the shrunk range with the least squared weight error ' +
          'when it beats the full range. Default none.',
      }),
    ),
    actOrder: Type.Optional(
      Type.Boolean({
        description:
          'gptq: process columns by decreasing Hessian diagonal; groups stay contiguous along K with scales fixed ' +
          'up front (static groups). Default false.',
      }),
    ),
    blockSize: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 4096, description: 'gptq: columns per lazy-update block. Default 128.' }),
    ),
    dampening: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: 'gptq: λ in H += λ·mean(diag H)·I. Default 0.01.' }),
    ),
  },
  strict,
);

export const FormatSchema = Type.Union([Type.Literal('matmulnbits'), Type.Literal('qdq')], {
  description: 'matmulnbits: com.microsoft MatMulNBits; qdq: standard DequantizeLinear feeding the original op.',
});

export const AccuracyLevelSchema = Type.Union(
  [Type.Literal('auto'), Type.Literal(0), Type.Literal(1), Type.Literal(2), Type.Literal(3), Type.Literal(4)],
  { description: 'MatMulNBits accuracy_level; auto times the candidates on the worker.' },
);

export const SparsityRecipeSchema = Type.Object(
  {
    method: Type.Literal('sparsity'),
    pattern: Type.Optional(PatternSchema),
    sparsity: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Unstructured fraction zeroed.' })),
    criterion: Type.Optional(CriterionSchema),
    blockSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 4096,
        description: 'SparseGPT column block (default 128, rounded up to a multiple of M).',
      }),
    ),
    dampening: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'SparseGPT damping (0.01).' })),
    packed: Type.Optional(Type.Boolean({ description: 'Write 2:4 weights packed as an ONNX local function.' })),
    ...CommonProps,
  },
  { ...strict, title: 'SparsityRecipe' },
);

export const LowRankSchema = Type.Object(
  {
    rankRatio: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'r = floor(rankRatio·min(K,N)). Default 0.1.' }),
    ),
    saliency: Type.Optional(
      Type.Union([Type.Literal('slim'), Type.Literal('whitened'), Type.Literal('none')], {
        description: 'slim: diag(x); whitened: full H^1/2; none: plain SVD of the error.',
      }),
    ),
    quantize: Type.Optional(Type.Boolean({ description: 'Quantize the adapters (SLiM-LoRA^Q).' })),
  },
  strict,
);

export const QuantizeRecipeSchema = Type.Object(
  {
    method: Type.Literal('quantize'),
    quant: QuantSchema,
    format: Type.Optional(FormatSchema),
    packed: Type.Optional(
      Type.Boolean({
        description:
          'Store 4-bit MatMulNBits weights that are exactly 2:4 along K packed (two kept codes + 2-bit positions per ' +
          'group of 4, ~3 bits/weight + scales), expanded by ONNX Runtime at session start; other layers unpacked.',
      }),
    ),
    accuracyLevel: Type.Optional(AccuracyLevelSchema),
    ...CommonProps,
  },
  { ...strict, title: 'QuantizeRecipe' },
);

export const SlimRecipeSchema = Type.Object(
  {
    method: Type.Literal('slim'),
    pattern: Type.Optional(PatternSchema),
    criterion: Type.Optional(CriterionSchema),
    quant: Type.Optional(QuantSchema),
    lowRank: Type.Optional(LowRankSchema),
    refitIterations: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    quantizeAdapters: Type.Optional(Type.Boolean({ description: 'Same as lowRank.quantize.' })),
    format: Type.Optional(FormatSchema),
    packed: Type.Optional(
      Type.Boolean({
        description:
          'Store the 2:4 4-bit codes packed (two kept codes + 2-bit positions per group of 4), expanded by ONNX ' +
          'Runtime at session start (MatMulNBits layers; QDQ layers stay unpacked, listed in the report).',
      }),
    ),
    accuracyLevel: Type.Optional(AccuracyLevelSchema),
    ...CommonProps,
  },
  { ...strict, title: 'SlimRecipe' },
);

export const NextPhaseSchema = Type.Object(
  {
    sparsity: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Target sparsity of this phase.' })),
    goal: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Final sparsity goal p_goal.' })),
    phases: Type.Optional(
      Type.Integer({ minimum: 1, description: 'T: phase sparsity = 1 − (1 − goal)^(1/T) when goal is given.' }),
    ),
    pattern: Type.Optional(PatternSchema),
    scope: Type.Optional(Type.Union([Type.Literal('global'), Type.Literal('layer')])),
  },
  strict,
);

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

const branches = {
  sparsity: SparsityRecipeSchema,
  quantize: QuantizeRecipeSchema,
  slim: SlimRecipeSchema,
  soup: SoupRecipeSchema,
  search: SearchRecipeSchema,
} as const satisfies Record<string, TSchema>;

export type MethodName = keyof typeof branches;
export const METHOD_NAMES = Object.keys(branches) as MethodName[];

export const RecipeSchema = Type.Union(
  [SparsityRecipeSchema, QuantizeRecipeSchema, SlimRecipeSchema, SoupRecipeSchema, SearchRecipeSchema],
  { title: 'Recipe', description: 'A compression job: the method and its settings.' },
);

export type SparsityRecipe = Static<typeof SparsityRecipeSchema>;
export type QuantizeRecipe = Static<typeof QuantizeRecipeSchema>;
export type SlimRecipe = Static<typeof SlimRecipeSchema>;
export type SoupRecipe = Static<typeof SoupRecipeSchema>;
export type SearchRecipe = Static<typeof SearchRecipeSchema>;
export type SearchBudget = Static<typeof SearchBudgetSchema>;
export type SearchSpace = Static<typeof SearchSpaceSchema>;
export type Recipe = Static<typeof RecipeSchema>;
export type QuantSpec = Static<typeof QuantSchema>;

export interface RecipeIssue {
  /** JSON pointer into the recipe, e.g. "/quant/bits". */
  path: string;
  message: string;
}

/** Thrown for a recipe that is malformed or asks for the impossible; `issues` lists every problem found. */
export class RecipeError extends Error {
  override readonly name = 'RecipeError';
  constructor(readonly issues: RecipeIssue[]) {
    super(`invalid recipe: ${issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; ')}`);
  }
}

/** Parses "N:M" and checks 0 < N < M <= 32. */
export function parsePattern(pattern: string): { n: number; m: number } {
  const match = /^(\d{1,2}):(\d{1,2})$/.exec(pattern);
  if (!match) throw new RecipeError([{ path: '/pattern', message: `"${pattern}" is not of the form N:M` }]);
  const n = Number(match[1]);
  const m = Number(match[2]);
  const issues = patternIssues(n, m, '/pattern');
  if (issues.length) throw new RecipeError(issues);
  return { n, m };
}

function patternIssues(n: number, m: number, path: string): RecipeIssue[] {
  if (!(n > 0)) return [{ path, message: `N must be > 0 (got ${n}:${m}: keeping nothing would erase the layer)` }];
  if (!(n < m)) return [{ path, message: `N must be < M (got ${n}:${m}: N is the count kept of every M)` }];
  if (m > 32) return [{ path, message: `M must be <= 32 (got ${m})` }];
  return [];
}

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
  const method = (input as { method?: unknown }).method;
  if (typeof method !== 'string' || !(method in branches)) {
    throw new RecipeError([
      {
        path: '/method',
        message: `unknown method ${JSON.stringify(method)}; expected one of ${METHOD_NAMES.join(', ')}`,
      },
    ]);
  }
  const schema = branches[method as MethodName];
  const issues = schemaIssues(schema, input);
  if (issues.length) throw new RecipeError(issues);
  const recipe = withDefaults(structuredClone(input) as Recipe);
  const semantic = semanticIssues(recipe);
  if (semantic.length) throw new RecipeError(semantic);
  return recipe;
}

function withDefaults(r: Recipe): Recipe {
  const quantDefaults = (q: QuantSpec, scheme: 'rtn' | 'slim'): QuantSpec => {
    const out: QuantSpec = { scheme, groupSize: 32, symmetric: true, clip: 'none', ...q };
    return out.scheme === 'gptq' ? { actOrder: false, blockSize: 128, dampening: 0.01, ...out } : out;
  };
  switch (r.method) {
    case 'sparsity':
      if (r.pattern === undefined && r.sparsity === undefined) r.pattern = '2:4';
      r.criterion ??= 'magnitude';
      if (r.criterion === 'sparsegpt') {
        r.dampening ??= 0.01;
      }
      return r;
    case 'quantize':
      r.quant = quantDefaults(r.quant, 'rtn');
      r.format ??= 'matmulnbits';
      r.accuracyLevel ??= 'auto';
      return r;
    case 'slim': {
      r.pattern ??= '2:4';
      r.criterion ??= 'wanda';
      r.quant = quantDefaults(r.quant ?? { bits: 4 }, 'slim');
      const quantizeAdapters = r.lowRank?.quantize ?? r.quantizeAdapters ?? false;
      r.lowRank = { rankRatio: 0.1, saliency: 'slim', ...r.lowRank, quantize: quantizeAdapters };
      r.quantizeAdapters = quantizeAdapters;
      r.refitIterations ??= 0;
      r.format ??= 'matmulnbits';
      r.accuracyLevel ??= 'auto';
      return r;
    }
    case 'soup':
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
    case 'search':
      r.objective ??= 'size';
      r.perLayer ??= true;
      r.maxTrials ??= 24;
      r.space = { ...DEFAULT_SEARCH_SPACE, ...r.space };
      return r;
  }
}

function semanticIssues(r: Recipe): RecipeIssue[] {
  const issues: RecipeIssue[] = [];
  const checkPattern = (p: string | undefined) => {
    if (p === undefined) return;
    const [n, m] = p.split(':').map(Number);
    issues.push(...patternIssues(n, m, '/pattern'));
  };
  if ('pattern' in r) checkPattern(r.pattern);
  if ((r.method === 'sparsity' || r.method === 'soup') && r.pattern !== undefined && r.sparsity !== undefined) {
    issues.push({ path: '/sparsity', message: 'give either pattern (N:M) or sparsity (unstructured), not both' });
  }
  if (r.method === 'sparsity' && r.blockSize !== undefined && r.pattern !== undefined) {
    const m = Number(r.pattern.split(':')[1]);
    if (m > 0 && r.blockSize % m !== 0) {
      issues.push({ path: '/blockSize', message: `blockSize ${r.blockSize} must be a multiple of M=${m}` });
    }
  }
  if (r.method === 'slim') {
    if (
      r.lowRank?.quantize !== undefined &&
      r.quantizeAdapters !== undefined &&
      r.lowRank.quantize !== r.quantizeAdapters
    ) {
      issues.push({ path: '/quantizeAdapters', message: 'conflicts with lowRank.quantize' });
    }
  }
  if ((r.method === 'quantize' || r.method === 'slim') && r.quant) {
    const q = r.quant;
    for (const key of ['actOrder', 'blockSize', 'dampening'] as const) {
      if (q[key] !== undefined && q.scheme !== 'gptq')
        issues.push({ path: `/quant/${key}`, message: `${key} applies to scheme "gptq" only` });
    }
    if (q.scheme === 'slim' && q.clip === 'mse') {
      issues.push({
        path: '/quant/clip',
        message: 'SLiM-Quant searches its own per-tensor clip; clip "mse" is for rtn',
      });
    }
    if (q.scheme === 'slim' && q.symmetric === false) {
      issues.push({
        path: '/quant/symmetric',
        message: 'SLiM-Quant is symmetric per tensor; use scheme "rtn" for asymmetric',
      });
    }
    if (r.method === 'slim' && q.symmetric === false) {
      issues.push({
        path: '/quant/symmetric',
        message: 'asymmetric codes do not keep the 2:4 zeros exact; slim needs symmetric quantization',
      });
    }
  }
  if (r.method === 'search') {
    (r.space?.patterns ?? []).forEach((p, i) => {
      const [n, m] = p.split(':').map(Number);
      issues.push(...patternIssues(n, m, `/space/patterns/${i}`));
    });
  }
  if (r.method === 'soup' && r.nextPhase) {
    const np = r.nextPhase;
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
  }
  return issues;
}

/** Sparsity of one SMS phase: p_phase = 1 − (1 − p_goal)^(1/T). */
export function phaseSparsity(goal: number, phases: number): number {
  return 1 - Math.pow(1 - goal, 1 / phases);
}
