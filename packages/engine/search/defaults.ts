// The search space used when a `search` recipe leaves a key out: every value of each key that the engine writes and
// that can change the answer. Kept in its own file (no imports) because recipe.ts fills defaults from it.
//
// Left out of the default (a recipe can still ask for them): groupSize 16/64/"channel" (16 costs more bytes than it
// wins back at 4 bits, 64 sits between the two kept sizes, per-channel 4-bit is far from the budget on every model
// measured here) and scheme "slim" (SLiM-Quant's one scale per tensor: measured worse than RTN groups at equal
// bytes, ALGORITHMS.md). N:M + quantization (slim) is expanded with 4-bit codes only: 2:4 under 8-bit codes is
// stored as dense 8-bit codes, the same bytes as 8-bit alone with more error, so it can never be on the front; and
// under a mask GPTQ is paired with SparseGPT only (both OBS on the same Hessian: the joint sparsify-and-quantize of
// ALGORITHMS.md), RTN with every criterion. `clips` (quant.clip) defaults to "none" only: "mse" is offered (a
// per-group clip search, same bytes, less error at 4 bits) but doubles every quantized choice of the space.
export const DEFAULT_SEARCH_SPACE = {
  methods: ['quantize', 'sparsity', 'slim'] as ('quantize' | 'sparsity' | 'slim')[],
  bits: [4, 8] as (4 | 8)[],
  groupSize: [32, 128] as (16 | 32 | 64 | 128 | 'channel')[],
  schemes: ['rtn', 'gptq'] as ('rtn' | 'slim' | 'gptq')[],
  patterns: ['2:4'],
  criteria: ['magnitude', 'wanda', 'sparsegpt'] as ('magnitude' | 'wanda' | 'sparsegpt')[],
  rankRatio: [0, 0.1],
  clips: ['none'] as ('none' | 'mse')[],
};
