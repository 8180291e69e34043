// The vocabulary recipes share: the pieces every method's schema is built from (N:M pattern, criterion, layer
// selection, calibration, evaluation, quantization), the recipe error, and the pattern rule. Methods import these
// (methods/<name>.ts); recipe.ts assembles the union. This file imports no method, so methods can import it freely.
import { Type, type Static, type TObject } from 'typebox';

/** Every recipe object is strict: an unknown key is an error, never silently ignored. */
export const strict = { additionalProperties: false } as const;

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
    latency: Type.Optional(
      Type.Object(
        {
          tolerance: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              maximum: 1,
              description:
                "A batch size is timed until the 95% interval of each model's median is within ± this fraction of " +
                'it (default 0.05), within budgetSeconds.',
            }),
          ),
          budgetSeconds: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              maximum: 3600,
              description:
                'Most seconds spent timing one batch size, both models and warm-ups (default 10). A larger batch ' +
                "size whose runs alone would exceed it is not timed (listed in the report's latency.skipped).",
            }),
          ),
          maxRuns: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 10000,
              description: 'Most timed runs per model and batch size (default 50).',
            }),
          ),
        },
        {
          ...strict,
          description:
            'Latency timing (quantize, slim): ask for a tighter or longer measurement than the default ±5% within 10 s ' +
            'per batch size.',
        },
      ),
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

/**
 * What every method's recipe has: its `method` name and the common props (layer selection, calibration,
 * evaluation, device, externalData). Methods, their helpers and the method interface (methods/types.ts) name this
 * rather than `Recipe`, the union recipe.ts assembles from the methods, so that no method imports that union back.
 */
export type RecipeBase = { method: string } & Static<TObject<typeof CommonProps>>;

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

export type QuantSpec = Static<typeof QuantSchema>;

export const FormatSchema = Type.Union([Type.Literal('matmulnbits'), Type.Literal('qdq')], {
  description: 'matmulnbits: com.microsoft MatMulNBits; qdq: standard DequantizeLinear feeding the original op.',
});

export const AccuracyLevelSchema = Type.Union(
  [Type.Literal('auto'), Type.Literal(0), Type.Literal(1), Type.Literal(2), Type.Literal(3), Type.Literal(4)],
  { description: 'MatMulNBits accuracy_level; auto times the candidates on the worker.' },
);

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

export function patternIssues(n: number, m: number, path: string): RecipeIssue[] {
  if (!(n > 0)) return [{ path, message: `N must be > 0 (got ${n}:${m}: keeping nothing would erase the layer)` }];
  if (!(n < m)) return [{ path, message: `N must be < M (got ${n}:${m}: N is the count kept of every M)` }];
  if (m > 32) return [{ path, message: `M must be <= 32 (got ${m})` }];
  return [];
}

/** The pattern rule for a recipe field (pattern strings already match the schema's N:M form). */
export function patternFieldIssues(pattern: string | undefined, path = '/pattern'): RecipeIssue[] {
  if (pattern === undefined) return [];
  const [n, m] = pattern.split(':').map(Number);
  return patternIssues(n, m, path);
}
