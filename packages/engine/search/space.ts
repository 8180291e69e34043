// The search space: each `choice` is one way to compress one layer (quantize, N:M sparsity, or N:M + quantization
// with or without low-rank adapters), expanded from the recipe's `space` lists. A choice becomes one or more
// single-method recipes (stepsOf) that the existing methods apply to the layers given that choice.
import type { QuantizeRecipe } from '../methods/quantize.js';
import type { SlimRecipe } from '../methods/slim.js';
import type { SparsityRecipe } from '../methods/sparsity.js';
import { DEFAULT_SEARCH_SPACE } from './defaults.js';
import type { SearchSpace } from './schema.js';

/** A single-method recipe a choice is applied with (the methods search combines). */
export type StepRecipe = QuantizeRecipe | SparsityRecipe | SlimRecipe;

type Bits = 4 | 8;
type Group = 16 | 32 | 64 | 128 | 'channel';
type Scheme = 'rtn' | 'slim' | 'gptq';
type Criterion = 'magnitude' | 'wanda' | 'sparsegpt';
type Clip = 'none' | 'mse';

export type SearchChoice =
  | { kind: 'quantize'; bits: Bits; groupSize: Group; scheme: Scheme; clip?: Clip }
  | { kind: 'sparsity'; pattern: string; criterion: Criterion }
  | {
      kind: 'slim';
      pattern: string;
      criterion: Criterion;
      bits: Bits;
      groupSize: Group;
      scheme: Scheme;
      /** quant.clip ('none' when absent). */
      clip?: Clip;
      /** 0: N:M + quantization, no adapter. */
      rankRatio: number;
    };

type Quant = { bits: Bits; groupSize: Group; scheme: Scheme; clip?: Clip };

function quantText(c: Quant): string {
  if (c.scheme === 'slim') return `int${c.bits} slim-quant`;
  const clip = c.clip === 'mse' ? ' clip-mse' : '';
  return `int${c.bits} ${c.groupSize === 'channel' ? 'per-channel' : `g${c.groupSize}`}${clip}${c.scheme === 'rtn' ? '' : ` ${c.scheme}`}`;
}

/** A short stable name, e.g. "int4 g32", "int4 g32 clip-mse", "2:4 wanda (packed)", "2:4 sparsegpt + int4 g32 + r0.1". */
export function choiceLabel(c: SearchChoice): string {
  if (c.kind === 'quantize') return quantText(c);
  if (c.kind === 'sparsity') return `${c.pattern} ${c.criterion}${c.pattern === '2:4' ? ' (packed)' : ''}`;
  return `${c.pattern} ${c.criterion} + ${quantText(c)}${c.rankRatio > 0 ? ` + r${c.rankRatio}` : ''}`;
}

/** Every choice of the space (defaults filled in), in a fixed order: quantize, sparsity, then N:M + quantization. */
export function expandSpace(space: SearchSpace | undefined): SearchChoice[] {
  const s = { ...DEFAULT_SEARCH_SPACE, ...space };
  const out: SearchChoice[] = [];
  // SLiM-Quant has one scale per tensor: the group size and the per-group clip do not apply, so it is expanded once.
  const quants: Quant[] = [];
  for (const scheme of unique(s.schemes))
    for (const bits of unique(s.bits))
      for (const groupSize of scheme === 'slim' ? [32 as Group] : unique(s.groupSize))
        for (const clip of scheme === 'slim' ? ['none' as Clip] : unique(s.clips))
          quants.push(clip === 'mse' ? { bits, groupSize, scheme, clip } : { bits, groupSize, scheme });
  const methods = new Set(s.methods);
  if (methods.has('quantize')) for (const q of quants) out.push({ kind: 'quantize', ...q });
  if (methods.has('sparsity'))
    for (const pattern of unique(s.patterns))
      for (const criterion of unique(s.criteria)) out.push({ kind: 'sparsity', pattern, criterion });
  if (methods.has('slim')) {
    // N:M under 8-bit codes is stored as dense 8-bit codes: never smaller than 8-bit alone, so 4-bit only when the
    // space has both.
    const composite = quants.some((q) => q.bits === 4) ? quants.filter((q) => q.bits === 4) : quants;
    for (const pattern of unique(s.patterns))
      for (const criterion of unique(s.criteria))
        for (const q of composite)
          for (const rankRatio of unique(s.rankRatio))
            if (q.scheme !== 'gptq' || criterion === 'sparsegpt')
              out.push({ kind: 'slim', pattern, criterion, ...q, rankRatio });
  }
  return out;
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

/**
 * The single-method recipes that apply a choice, in order. `accuracyLevel` 0 (ONNX Runtime's default kernel) for
 * the size objective, 'auto' (timed on the worker) when latency is the objective. Slim with rankRatio 0 is built
 * directly (the public schema requires rankRatio > 0; the layer code treats 0 as "no adapter").
 */
export function stepsOf(c: SearchChoice, objective: 'size' | 'latency'): StepRecipe[] {
  const accuracyLevel = objective === 'latency' ? ('auto' as const) : 0;
  const quant = (q: Quant) => ({
    bits: q.bits,
    groupSize: q.groupSize,
    scheme: q.scheme,
    symmetric: true,
    ...(q.clip === 'mse' ? { clip: 'mse' as const } : {}),
  });
  if (c.kind === 'quantize') {
    const r: QuantizeRecipe = { method: 'quantize', quant: quant(c), format: 'matmulnbits', accuracyLevel };
    return [r];
  }
  if (c.kind === 'sparsity') {
    const r: SparsityRecipe = { method: 'sparsity', pattern: c.pattern, criterion: c.criterion };
    if (c.pattern === '2:4') r.packed = true;
    if (c.criterion === 'sparsegpt') r.dampening = 0.01;
    return [r];
  }
  const r: SlimRecipe = {
    method: 'slim',
    pattern: c.pattern,
    criterion: c.criterion,
    quant: quant(c),
    // Whitened: the layer-output-optimal adapter (the engine always has the Hessians during a search).
    lowRank: { rankRatio: c.rankRatio, saliency: 'whitened', quantize: false },
    quantizeAdapters: false,
    refitIterations: 0,
    format: 'matmulnbits',
    accuracyLevel,
  };
  // 2:4 + 4-bit codes stored packed (~3 bits/weight + scales): without it N:M saves no bytes over 4-bit alone.
  if (packs24(c)) r.packed = true;
  return [r];
}

/** Whether a choice writes packed 2:4 + 4-bit codes (two kept codes + 2-bit positions per group of 4). */
export function packs24(c: SearchChoice): boolean {
  return c.kind === 'slim' && c.pattern === '2:4' && c.bits === 4;
}

/** Bytes per element of a dense weight dtype. */
export function dtypeBytes(dtype: string): number {
  return dtype === 'float16' || dtype === 'bfloat16' ? 2 : dtype === 'float64' ? 8 : 4;
}

/**
 * Bytes a layer [N][K] takes under a choice, as written (codes + fp32 scales; packed 2:4 = kept values + 2-bit
 * positions; adapters fp16). Used for planning only where a method reports no size of its own; the trials measure
 * the real file.
 */
export function choiceBytes(c: SearchChoice | 'dense', N: number, K: number, elementBytes: number): number {
  if (c === 'dense') return N * K * elementBytes;
  if (c.kind === 'sparsity') {
    const [n, m] = c.pattern.split(':').map(Number);
    return c.pattern === '2:4' ? (N * K * n * elementBytes) / m + (N * K) / 8 : N * K * elementBytes;
  }
  const block = c.scheme === 'slim' ? 32 : c.groupSize === 'channel' ? K : c.groupSize;
  const groups = Math.ceil(K / block);
  // MatMulNBits stores whole blocks: a row of K codes takes ceil(K / block)·block of them (a group larger than K
  // pads the row to the group).
  const padded = groups * block;
  const quant = (N * padded * c.bits) / 8 - (packs24(c) ? (N * padded) / 8 : 0) + N * groups * 4;
  if (c.kind === 'quantize' || c.rankRatio === 0) return quant;
  const r = Math.floor(c.rankRatio * Math.min(N, K));
  return quant + r * (N + K) * 2;
}
