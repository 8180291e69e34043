// The recipes bench/llm.bench.ts (and bench/gpu.sh through it) runs per method, and the SparseGPT floor's FLOP count
// (issue 12 item 3) for the LLM shape of bench/lib/llm-model.ts.
import type { LlmShape } from './llm-model.js';

export const METHODS = ['inspect', 'rtn', 'magnitude', 'wanda', 'sparsegpt', 'slim'];

const Q4 = { bits: 4, scheme: 'rtn', groupSize: 32, symmetric: true };

/**
 * The recipe of a bench method, and whether it gets the calibration file. RTN and magnitude run file to file without
 * data (as a user quantizing or pruning without calibration would; no evaluation, no latency); the calibrated methods
 * also evaluate dense vs compressed on the calibration data. accuracyLevel is fixed so no candidate timing runs.
 */
export function methodRecipe(method: string): { recipe?: Record<string, unknown>; calibrated: boolean } {
  switch (method) {
    case 'inspect':
      return { calibrated: false };
    case 'rtn':
      return { recipe: { method: 'quantize', quant: Q4, format: 'matmulnbits', accuracyLevel: 4 }, calibrated: false };
    case 'magnitude':
      return { recipe: { method: 'sparsity', pattern: '2:4', criterion: 'magnitude' }, calibrated: false };
    case 'wanda':
    case 'sparsegpt':
      return { recipe: { method: 'sparsity', pattern: '2:4', criterion: method }, calibrated: true };
    case 'slim':
      return {
        recipe: {
          method: 'slim',
          pattern: '2:4',
          criterion: 'wanda',
          quant: { bits: 4, scheme: 'rtn', groupSize: 32 },
          lowRank: { rankRatio: 0.1, saliency: 'slim' },
          format: 'matmulnbits',
          accuracyLevel: 4,
        },
        calibrated: true,
      };
    default:
      throw new Error(`unknown bench method '${method}'`);
  }
}

/**
 * F of issue 12 item 3 for SparseGPT: Σ over distinct activations 2·T·K² (Hessians XᵀX) + Σ over layers (K³ + 2·N·K²)
 * (inverse factor and weight updates). Per block the activations are attn_norm (K = hidden, read by q/k/v), the
 * merged heads (o), mlp_norm (gate/up) and the gated product (down, K = mlp); then final_norm (lm_head).
 */
export function sparsegptFlops(s: LlmShape, tokens: number): number {
  const H = s.hidden;
  const M = s.mlp;
  const hess = (K: number) => 2 * tokens * K * K;
  const layer = (K: number, N: number) => K ** 3 + 2 * N * K * K;
  const block = 3 * hess(H) + hess(M) + 4 * layer(H, H) + 2 * layer(H, M) + layer(M, H);
  return s.layers * block + hess(H) + layer(H, s.vocab);
}

/**
 * SLiM's own F for the bench recipe (Wanda mask, RTN 4-bit g32, rank ratio 0.1, saliency 'slim': no Hessian, so
 * F has no 2·T·K² terms), per layer with r = ⌊0.1·min(N, K)⌋:
 *  - randomized SVD of the saliency-weighted error (math/lowrank.ts metricAdapter, min(N, K) > 512), l = r + 10,
 *    p = 2 power steps: (4 + 4p)·N·K·l for the GEMMs on E (range finder, p × (Eᵀ·Q, E·Z), Qᵀ·E) +
 *    4·l²·((2 + p)·N + p·K) for CholeskyQR (one pass per power step, two on the final basis) + 2·l²·K (Gram) +
 *    2·r·l·(N + K) (the factors A and B);
 *  - exact route (min(N, K) ≤ 512): 2·N·K·min(N, K) (Gram) + min(N, K)³ (eigensolver);
 *  - 2·N·K·r for the adapter product W − A·B of the final re-quantization (the job builds no effective weight
 *    unless something reads it, so that second product is not counted).
 * Masks, quantization and the layer-error samples are O(N·K) or bounded and left out, like the Wanda floor's.
 */
export function slimFlops(s: LlmShape, rankRatio = 0.1, power = 2, oversample = 10): number {
  const H = s.hidden;
  const M = s.mlp;
  const layer = (K: number, N: number) => {
    const small = Math.min(N, K);
    const r = Math.floor(rankRatio * small);
    const adapter = 2 * N * K * r;
    if (small <= 512) return 2 * N * K * small + small ** 3 + adapter;
    const l = Math.min(r + oversample, N, K);
    return (
      (4 + 4 * power) * N * K * l +
      4 * l * l * ((2 + power) * N + power * K) +
      2 * l * l * K +
      2 * r * l * (N + K) +
      adapter
    );
  };
  const block = 4 * layer(H, H) + 2 * layer(H, M) + layer(M, H);
  return s.layers * block + layer(H, s.vocab);
}
