// An LLM-shaped ONNX model with RANDOM weights, for benches at the sizes users bring (0.02–7 B parameters): token
// embedding (Gather), N decoder blocks — RMSNorm, q/k/v MatMuls, multi-head softmax(QKᵀ/√d)·V, o MatMul, residual;
// RMSNorm, SiLU(gate)·up, down MatMul, residual — final RMSNorm and an lm_head MatMul to the vocabulary's logits.
// fp32, fp16 or bf16 weights and activations, weights in external data.
//
// Why it is streamed: a 1 B model is 3.8 GB in fp32, and fresh memory costs seconds per GB on the target VMs. Each
// weight is generated in 1 Mi-element chunks into one reused buffer and written straight to `<model>.data`
// (4 KiB-aligned offsets, as saveModel writes them); the graph is built with the engine's GraphBuilder over
// external-data initializers and encoded on its own (it holds no tensor bytes, so it is a few hundred KB).
//
// The weights are random (seeded, uniform with std 1/√K; o and down scaled by 1/√(2·layers) so the residual stream
// stays bounded), and the norms' gains put ~1% of hidden channels at 8× — the outlier channels real LLM activations
// have, which is what makes Wanda differ from magnitude. Nothing here is a trained model: quality numbers measured on
// it describe reconstruction of random layers, not language modelling.
import { closeSync, openSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { GraphBuilder } from '../../packages/engine/onnx/builder.js';
import { ModelProtoSchema } from '../../packages/engine/onnx/gen/onnx_pb.js';
import { closeModel } from '../../packages/engine/onnx/model.js';
import { floatToBfloatBits, floatToHalfBits } from '../../packages/engine/onnx/floats.js';
import { encodeNpz } from '../../packages/engine/data/npz.js';

export interface LlmShape {
  layers: number;
  hidden: number;
  /** Width of the gated MLP (gate/up outputs, down input). */
  mlp: number;
  vocab: number;
  /** @defaultValue 64 */
  headDim?: number;
}

export type LlmDtype = 'float32' | 'float16' | 'bfloat16';

/** Named sizes (`--params 250M`). 1B is the model (953 M parameters); 7B has LLaMA-7B's shapes. */
export const LLM_PRESETS: Record<string, LlmShape> = {
  '5M': { layers: 2, hidden: 256, mlp: 704, vocab: 4096 },
  '20M': { layers: 4, hidden: 512, mlp: 1408, vocab: 8000 },
  '100M': { layers: 8, hidden: 768, mlp: 2048, vocab: 32000 },
  '250M': { layers: 14, hidden: 1024, mlp: 2816, vocab: 32000 },
  '500M': { layers: 16, hidden: 1536, mlp: 4096, vocab: 32000 },
  '1B': { layers: 16, hidden: 2048, mlp: 5632, vocab: 32000 },
  '3B': { layers: 26, hidden: 3200, mlp: 8640, vocab: 32000 },
  '7B': { layers: 32, hidden: 4096, mlp: 11008, vocab: 32000 },
};

/** A preset by name (case-insensitive: '250M', '1b'); a clear error listing the names otherwise. */
export function llmPreset(name: string): LlmShape {
  const key = Object.keys(LLM_PRESETS).find((k) => k.toLowerCase() === name.trim().toLowerCase());
  if (!key) throw new Error(`unknown model size '${name}': use one of ${Object.keys(LLM_PRESETS).join(', ')}`);
  return { ...LLM_PRESETS[key] };
}

/** Parameters of the compressible MatMuls (q, k, v, o, gate, up, down per block, and lm_head). */
export function llmMatMulParams(s: LlmShape): number {
  return s.layers * (4 * s.hidden * s.hidden + 3 * s.hidden * s.mlp) + s.hidden * s.vocab;
}

/** All parameters: MatMuls, the embedding table and the norms' gains. */
export function llmParams(s: LlmShape): number {
  return llmMatMulParams(s) + s.vocab * s.hidden + (2 * s.layers + 1) * s.hidden;
}

export function checkLlmShape(s: LlmShape): void {
  const hd = s.headDim ?? 64;
  for (const [k, v] of Object.entries({ ...s, headDim: hd }))
    if (!Number.isInteger(v) || v < 1) throw new Error(`model shape: ${k} must be a positive integer, got ${v}`);
  if (s.hidden % hd) throw new Error(`model shape: hidden ${s.hidden} is not a multiple of headDim ${hd}`);
}

export interface LlmModelFiles {
  modelPath: string;
  dataPath: string;
  shape: LlmShape;
  dtype: LlmDtype;
  params: number;
  matmulParams: number;
  /** Bytes of the .onnx file and of its external data. */
  modelBytes: number;
  dataBytes: number;
  seconds: number;
  /** The MatMul weight names, in graph order (q, k, v, o, gate, up, down per block; lm_head last). */
  matmulWeights: string[];
}

export interface WriteLlmOptions {
  /** @defaultValue 'float32' */
  dtype?: LlmDtype;
  /** @defaultValue 1 */
  seed?: number;
  /** @defaultValue 'llm.onnx' */
  fileName?: string;
}

const ALIGN = 4096;
const CHUNK = 1 << 20;

/** Streams seeded random weights to the side file, one chunk at a time; returns each tensor's offset. */
class WeightWriter {
  private readonly fd: number;
  offset = 0;
  private readonly f32 = new Float32Array(CHUNK);
  private readonly u16 = new Uint16Array(CHUNK);
  private state: number;
  constructor(
    path: string,
    private readonly dtype: LlmDtype,
    seed: number,
  ) {
    this.fd = openSync(path, 'w');
    this.state = (seed * 2654435761) >>> 0 || 1;
  }

  /** `count` values uniform in [-a, a] with std `std` (a = std·√3). */
  write(count: number, std: number): number {
    const pad = (ALIGN - (this.offset % ALIGN)) % ALIGN;
    if (pad) this.put(new Uint8Array(pad));
    const start = this.offset;
    const a = 2 * std * Math.sqrt(3);
    let s = this.state;
    for (let done = 0; done < count;) {
      const n = Math.min(CHUNK, count - done);
      const f = this.f32;
      for (let i = 0; i < n; i++) {
        // xorshift32: fast, and only needs to look random to a compression method.
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        f[i] = ((s >>> 0) / 4294967296 - 0.5) * a;
      }
      this.putFloats(n);
      done += n;
    }
    this.state = s;
    return start;
  }

  private putFloats(n: number): void {
    if (this.dtype === 'float32') return this.put(new Uint8Array(this.f32.buffer, 0, n * 4));
    const conv = this.dtype === 'float16' ? floatToHalfBits : floatToBfloatBits;
    for (let i = 0; i < n; i++) this.u16[i] = conv(this.f32[i]);
    this.put(new Uint8Array(this.u16.buffer, 0, n * 2));
  }

  private put(bytes: Uint8Array): void {
    for (let off = 0; off < bytes.length;) off += writeSync(this.fd, bytes, off, bytes.length - off);
    this.offset += bytes.length;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Gains of an RMSNorm: 1, and 8 on ~1% of channels (fixed by index, the same in every norm, like real outliers). */
function normGain(hidden: number): number[] {
  return Array.from({ length: hidden }, (_, i) => (((i * 2654435761) >>> 0) % 97 === 0 ? 8 : 1));
}

/**
 * Writes `<dir>/<fileName>` and `<dir>/<fileName>.data`. Inputs: `input_ids` int64 [batch, seq]; output: `logits`
 * [batch, seq, vocab] in the model's dtype.
 */
export async function writeLlmModel(dir: string, shape: LlmShape, opts: WriteLlmOptions = {}): Promise<LlmModelFiles> {
  checkLlmShape(shape);
  const t0 = performance.now();
  const dtype = opts.dtype ?? 'float32';
  const fileName = opts.fileName ?? 'llm.onnx';
  const location = `${fileName}.data`;
  const { layers, hidden: H, mlp: M, vocab: V } = shape;
  const hd = shape.headDim ?? 64;
  const heads = H / hd;
  const w = new WeightWriter(join(dir, location), dtype, opts.seed ?? 1);
  const b = new GraphBuilder({ opset: 17, dir });
  const matmulWeights: string[] = [];
  const weight = (name: string, dims: number[], std: number) =>
    b.externalInitializer(name, dtype, dims, { location, offset: w.write(dims[0] * dims[1], std) });
  const scalar = (name: string, v: number) => b.initializer(name, dtype, [], encodeScalar(dtype, v));
  const matmul = (x: string, name: string, K: number, N: number, std: number) => {
    matmulWeights.push(weight(`${name}.weight`, [K, N], std));
    return b.node('MatMul', [x, `${name}.weight`], {}, { name });
  };
  try {
    const eps = scalar('rms_eps', 1e-5);
    const attnScale = scalar('attn_scale', 1 / Math.sqrt(hd));
    const gain = normGain(H);
    b.initializer('heads_shape', 'int64', [4], new BigInt64Array([0n, 0n, BigInt(heads), BigInt(hd)]));
    b.initializer('hidden_shape', 'int64', [3], new BigInt64Array([0n, 0n, BigInt(H)]));
    const rmsNorm = (x: string, name: string) => {
      b.initializer(`${name}.gain`, dtype, [H], encodeVector(dtype, gain));
      const sq = b.node('Mul', [x, x], {}, { name: `${name}.sq` });
      const ms = b.node('ReduceMean', [sq], { axes: [-1], keepdims: 1 }, { name: `${name}.mean` });
      const rms = b.node('Sqrt', [b.node('Add', [ms, eps], {}, { name: `${name}.eps` })], {}, { name: `${name}.sqrt` });
      const n = b.node('Div', [x, rms], {}, { name: `${name}.div` });
      return b.node('Mul', [n, `${name}.gain`], {}, { name: `${name}.scale` });
    };
    const splitHeads = (x: string, perm: number[], name: string) =>
      b.node('Transpose', [b.node('Reshape', [x, 'heads_shape'], {}, { name: `${name}.reshape` })], { perm }, { name });

    b.input('input_ids', 'int64', ['batch', 'seq']);
    b.externalInitializer('embed.weight', dtype, [V, H], { location, offset: w.write(V * H, 1) });
    let h = b.node('Gather', ['embed.weight', 'input_ids'], { axis: 0 }, { name: 'embed' });
    const outStd = (K: number) => 1 / Math.sqrt(K) / Math.sqrt(2 * layers);
    for (let l = 0; l < layers; l++) {
      const p = `layers.${l}`;
      const n1 = rmsNorm(h, `${p}.attn_norm`);
      const q = splitHeads(matmul(n1, `${p}.attn.q`, H, H, 1 / Math.sqrt(H)), [0, 2, 1, 3], `${p}.attn.q_heads`);
      const k = splitHeads(matmul(n1, `${p}.attn.k`, H, H, 1 / Math.sqrt(H)), [0, 2, 3, 1], `${p}.attn.kT_heads`);
      const v = splitHeads(matmul(n1, `${p}.attn.v`, H, H, 1 / Math.sqrt(H)), [0, 2, 1, 3], `${p}.attn.v_heads`);
      const scores = b.node(
        'Mul',
        [b.node('MatMul', [q, k], {}, { name: `${p}.attn.qk` }), attnScale],
        {},
        {
          name: `${p}.attn.scale`,
        },
      );
      const probs = b.node('Softmax', [scores], { axis: -1 }, { name: `${p}.attn.softmax` });
      const ctx = b.node('MatMul', [probs, v], {}, { name: `${p}.attn.pv` });
      const merged = b.node(
        'Reshape',
        [b.node('Transpose', [ctx], { perm: [0, 2, 1, 3] }, { name: `${p}.attn.merge_t` }), 'hidden_shape'],
        {},
        { name: `${p}.attn.merge` },
      );
      h = b.node('Add', [h, matmul(merged, `${p}.attn.o`, H, H, outStd(H))], {}, { name: `${p}.attn.residual` });
      const n2 = rmsNorm(h, `${p}.mlp_norm`);
      const gate = matmul(n2, `${p}.mlp.gate`, H, M, 1 / Math.sqrt(H));
      const silu = b.node(
        'Mul',
        [gate, b.node('Sigmoid', [gate], {}, { name: `${p}.mlp.sigmoid` })],
        {},
        {
          name: `${p}.mlp.silu`,
        },
      );
      const up = matmul(n2, `${p}.mlp.up`, H, M, 1 / Math.sqrt(H));
      const act = b.node('Mul', [silu, up], {}, { name: `${p}.mlp.act` });
      h = b.node('Add', [h, matmul(act, `${p}.mlp.down`, M, H, outStd(M))], {}, { name: `${p}.mlp.residual` });
    }
    const nf = rmsNorm(h, 'final_norm');
    matmulWeights.push(weight('lm_head.weight', [H, V], 1 / Math.sqrt(H)));
    b.node('MatMul', [nf, 'lm_head.weight'], {}, { name: 'lm_head', output: 'logits' });
    b.output('logits', dtype, ['batch', 'seq', V]);
  } finally {
    w.close();
  }
  const model = b.build(); // validates every external reference against the side file just written
  closeModel(model);
  const bytes = toBinary(ModelProtoSchema, model.proto); // no tensor bytes inside: the skeleton only
  const modelPath = join(dir, fileName);
  await writeFile(modelPath, bytes);
  return {
    modelPath,
    dataPath: join(dir, location),
    shape,
    dtype,
    params: llmParams(shape),
    matmulParams: llmMatMulParams(shape),
    modelBytes: bytes.length,
    dataBytes: w.offset,
    seconds: (performance.now() - t0) / 1000,
    matmulWeights,
  };
}

function encodeVector(dtype: LlmDtype, values: number[]): ArrayBufferView {
  if (dtype === 'float32') return new Float32Array(values);
  const conv = dtype === 'float16' ? floatToHalfBits : floatToBfloatBits;
  return new Uint16Array(values.map(conv));
}

function encodeScalar(dtype: LlmDtype, v: number): ArrayBufferView {
  return encodeVector(dtype, [v]);
}

/** Calibration/eval data for the model: `input_ids` int64 [samples, seq], seeded uniform token ids; `.npz` bytes. */
export function llmTokenIds(shape: LlmShape, opts: { samples: number; seq: number; seed?: number }): BigInt64Array {
  const out = new BigInt64Array(opts.samples * opts.seq);
  let s = ((opts.seed ?? 7) * 2246822519) >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = BigInt((s >>> 0) % shape.vocab);
  }
  return out;
}

/** Writes an .npz of token ids (`input_ids`, int64 [samples, seq]) for calibration or evaluation. */
export async function writeLlmCalibration(
  path: string,
  shape: LlmShape,
  opts: { samples: number; seq: number; seed?: number },
): Promise<void> {
  const data = llmTokenIds(shape, opts);
  await writeFile(path, encodeNpz({ input_ids: { dtype: 'int64', dims: [opts.samples, opts.seq], data } }));
}
