// Small models built in code for the sparsity tests: an MLP, a Conv net (grouped and depthwise convs, padding,
// strides), and a small pre-norm transformer whose activations look like a language model's (a few outlier
// channels carrying most of the energy, as in LLM "massive activations"), which is what makes Wanda and SparseGPT
// differ from magnitude pruning.
import { GraphBuilder } from '../../../packages/engine/onnx/builder.js';
import type { LoadedModel } from '../../../packages/engine/onnx/model.js';
import type { DataArray } from '../../../packages/engine/data/types.js';

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(rng(seed));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = g() * scale;
  return out;
}

/** x [batch, 16] → MatMul 16×64 → Relu → Gemm(transB) 64→32 → MatMul 32×10 (the head). */
export function mlp(seed = 1): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['batch', 16]);
  b.initializer('w1', 'float32', [16, 64], randn(16 * 64, seed, 0.3));
  b.initializer('w2', 'float32', [32, 64], randn(32 * 64, seed + 1, 0.2));
  b.initializer('b2', 'float32', [32], randn(32, seed + 2, 0.1));
  b.initializer('head', 'float32', [32, 10], randn(32 * 10, seed + 3, 0.3));
  const h = b.node('MatMul', ['x', 'w1'], {}, { name: 'fc1' });
  const r = b.node('Relu', [h]);
  const h2 = b.node('Gemm', [r, 'w2', 'b2'], { transB: 1 }, { name: 'fc2' });
  b.node('MatMul', [h2, 'head'], {}, { name: 'head_mm', output: 'logits' });
  b.output('logits', 'float32', ['batch', 10]);
  return b.build();
}

/**
 * x [batch, 8, 12, 12] → Conv 8→16 3×3 pad 1 (weights in a Constant node) → Relu → grouped Conv 16→16 group 2,
 * 3×3 stride 2 → Relu → depthwise Conv 16→16 group 16 3×3 pad 1 → GlobalAveragePool → Flatten → MatMul 16×4.
 */
export function convNet(seed = 3): LoadedModel {
  const b = new GraphBuilder({ opset: 17 });
  b.input('x', 'float32', ['batch', 8, 12, 12]);
  b.constant('c1_w', 'float32', [16, 8, 3, 3], randn(16 * 8 * 9, seed, 0.2));
  b.initializer('c2_w', 'float32', [16, 8, 3, 3], randn(16 * 8 * 9, seed + 1, 0.2));
  b.initializer('c3_w', 'float32', [16, 1, 3, 3], randn(16 * 9, seed + 2, 0.3));
  b.initializer('fc_w', 'float32', [16, 4], randn(64, seed + 3, 0.3));
  let t = b.node('Conv', ['x', 'c1_w'], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  t = b.node('Relu', [t]);
  t = b.node('Conv', [t, 'c2_w'], { group: 2, strides: [2, 2] }, { name: 'conv2' });
  t = b.node('Relu', [t]);
  t = b.node('Conv', [t, 'c3_w'], { group: 16, pads: [1, 1, 1, 1] }, { name: 'conv3' });
  t = b.node('GlobalAveragePool', [t]);
  t = b.node('Flatten', [t]);
  b.node('MatMul', [t, 'fc_w'], {}, { output: 'y' });
  b.output('y', 'float32', ['batch', 4]);
  return b.build();
}

export interface TransformerSpec {
  vocab: number;
  d: number;
  ff: number;
  layers: number;
  seq: number;
}

export const SMALL_LM: TransformerSpec = { vocab: 96, d: 64, ff: 256, layers: 2, seq: 16 };

/**
 * Pre-norm decoder-only transformer, single head, causal mask: ids [batch, seq] → Gather embedding → per layer
 * x += Wo·softmax(QKᵀ/√d + mask)·V (from LN(x)), x += W2·gelu(W1·LN(x)) → LN → lm_head → logits [batch, seq, vocab].
 * LLM-like activations: the LayerNorm gains give 4 channels ~12× the others (outlier features); weights are a
 * low-rank structure plus noise so that pruning actually costs output quality.
 */
export function transformer(spec: TransformerSpec = SMALL_LM, seed = 11): LoadedModel {
  const { vocab, d, ff, layers, seq } = spec;
  const b = new GraphBuilder({ opset: 17 });
  b.input('ids', 'int64', ['batch', seq]);
  let s = seed;
  const structured = (rows: number, cols: number, scale: number) => {
    // W = A·B (rank 8) + noise: weights with heavy-tailed row/column norms like trained layers.
    const r = 8;
    const A = randn(rows * r, s++, 1);
    const B = randn(r * cols, s++, 1);
    const n = randn(rows * cols, s++, 0.5);
    const out = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        let v = n[i * cols + j];
        for (let k = 0; k < r; k++) v += (A[i * r + k] * B[k * cols + j]) / Math.sqrt(r);
        out[i * cols + j] = (v * scale) / Math.sqrt(rows);
      }
    return out;
  };
  const gain = () => {
    const g = new Float32Array(d).fill(1);
    for (const c of [3, 17, 29, 50]) g[c % d] = 12;
    return g;
  };
  b.initializer('emb', 'float32', [vocab, d], randn(vocab * d, s++, 1));
  const mask = new Float32Array(seq * seq);
  for (let i = 0; i < seq; i++) for (let j = i + 1; j < seq; j++) mask[i * seq + j] = -1e4;
  b.initializer('causal', 'float32', [seq, seq], mask);
  b.initializer('scale', 'float32', [], [1 / Math.sqrt(d)]);
  b.initializer('gelu_k', 'float32', [], [1.702]);
  let x = b.node('Gather', ['emb', 'ids']);
  for (let l = 0; l < layers; l++) {
    b.initializer(`l${l}.ln1.g`, 'float32', [d], gain());
    b.initializer(`l${l}.ln1.b`, 'float32', [d], new Float32Array(d));
    const h = b.node('LayerNormalization', [x, `l${l}.ln1.g`, `l${l}.ln1.b`], { axis: -1 });
    for (const p of ['q', 'k', 'v', 'o']) b.initializer(`l${l}.attn.${p}`, 'float32', [d, d], structured(d, d, 1));
    const q = b.node('MatMul', [h, `l${l}.attn.q`], {}, { name: `l${l}.attn.q_proj` });
    const k = b.node('MatMul', [h, `l${l}.attn.k`], {}, { name: `l${l}.attn.k_proj` });
    const v = b.node('MatMul', [h, `l${l}.attn.v`], {}, { name: `l${l}.attn.v_proj` });
    const kt = b.node('Transpose', [k], { perm: [0, 2, 1] });
    const sc = b.node('Mul', [b.node('MatMul', [q, kt]), 'scale']);
    const pr = b.node('Softmax', [b.node('Add', [sc, 'causal'])], { axis: -1 });
    const att = b.node('MatMul', [pr, v]);
    const o = b.node('MatMul', [att, `l${l}.attn.o`], {}, { name: `l${l}.attn.o_proj` });
    x = b.node('Add', [x, o]);
    b.initializer(`l${l}.ln2.g`, 'float32', [d], gain());
    b.initializer(`l${l}.ln2.b`, 'float32', [d], new Float32Array(d));
    const h2 = b.node('LayerNormalization', [x, `l${l}.ln2.g`, `l${l}.ln2.b`], { axis: -1 });
    b.initializer(`l${l}.mlp.up`, 'float32', [d, ff], structured(d, ff, 1));
    b.initializer(`l${l}.mlp.down`, 'float32', [ff, d], structured(ff, d, 1));
    const u = b.node('MatMul', [h2, `l${l}.mlp.up`], {}, { name: `l${l}.mlp.up_proj` });
    const g = b.node('Mul', [u, b.node('Sigmoid', [b.node('Mul', [u, 'gelu_k'])])]); // x·σ(1.702x) ≈ GELU
    const dn = b.node('MatMul', [g, `l${l}.mlp.down`], {}, { name: `l${l}.mlp.down_proj` });
    x = b.node('Add', [x, dn]);
  }
  b.initializer('lnf.g', 'float32', [d], new Float32Array(d).fill(1));
  b.initializer('lnf.b', 'float32', [d], new Float32Array(d));
  const hf = b.node('LayerNormalization', [x, 'lnf.g', 'lnf.b'], { axis: -1 });
  b.initializer('lm_head', 'float32', [d, vocab], randn(d * vocab, s++, 1 / Math.sqrt(d)));
  b.node('MatMul', [hf, 'lm_head'], {}, { name: 'lm_head_mm', output: 'logits' });
  b.output('logits', 'float32', ['batch', seq, vocab]);
  return b.build();
}

/** Token ids with local structure (a noisy random walk over the vocabulary), like text rather than noise. */
export function tokenData(samples: number, spec: TransformerSpec = SMALL_LM, seed = 5): DataArray {
  const rand = rng(seed);
  const data = new BigInt64Array(samples * spec.seq);
  for (let s = 0; s < samples; s++) {
    let t = Math.floor(rand() * spec.vocab);
    for (let i = 0; i < spec.seq; i++) {
      t = (t + Math.floor(rand() * 5) - 2 + spec.vocab) % spec.vocab;
      data[s * spec.seq + i] = BigInt(t);
    }
  }
  return { dtype: 'int64', dims: [samples, spec.seq], data };
}
