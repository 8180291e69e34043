// accuracy_level 'auto' for MatMulNBits: the fastest level depends on the CPU (int8 dot-product instructions make
// level 4 several times faster on AVX2/AVX-512 VNNI and ARM i8mm) and the execution provider, so it is measured:
// one single-node model per distinct layer shape, batch 1, each candidate timed (median of repeated runs) on the
// job's execution provider, the level with the least total time (weighted by how many layers have the shape) wins.
// Level 4 quantizes activations to int8 per block inside the kernel: the quality evaluation that follows measures
// that cost; the choice and every timing go to the report.
import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from '../onnx/gen/onnx_pb.js';
import type * as ort from 'onnxruntime-node';
import { ort as loadOrt } from '../runtime/ort.js';
import { openSession, type ExecutionProvider } from '../runtime/session.js';
import { matMulNBitsNode } from './onnx-nodes.js';
import type { MatMulNBitsWeights } from './matmulnbits.js';

export interface LayerShape {
  K: number;
  N: number;
  bits: number;
  blockSize: number;
  /** Layers with this shape. */
  count: number;
}

export interface AccuracyLevelChoice {
  level: number;
  executionProvider: ExecutionProvider;
  candidates: number[];
  /** Per shape: median milliseconds per candidate level at batch 1. */
  timings: { K: number; N: number; bits: number; blockSize: number; count: number; ms: Record<string, number> }[];
  /** Σ count·ms per candidate. */
  totalMs: Record<string, number>;
  /** Candidates ONNX Runtime refused (they are not chosen). */
  failures: string[];
  note: string;
}

function vi(name: string, dims: (number | string)[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: TensorProto_DataType.FLOAT,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

/** A one-node model Y = MatMulNBits(X, B) with deterministic pseudo-random codes and scales. */
export function matMulNBitsModel(
  s: Omit<LayerShape, 'count'>,
  level: number,
  batch: number | string = 'M',
): Uint8Array {
  const blocks = Math.ceil(s.K / s.blockSize);
  const B = new Uint8Array((s.N * blocks * s.blockSize * s.bits) / 8);
  let seed = 12345;
  for (let i = 0; i < B.length; i++) B[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  const scales = new Float32Array(s.N * blocks).fill(0.01);
  const weights: MatMulNBitsWeights = {
    K: s.K,
    N: s.N,
    bits: s.bits as 4 | 8,
    blockSize: s.blockSize,
    blocks,
    B,
    scales,
    zeroPoints: null,
  };
  const r = matMulNBitsNode({ name: 'q', input: 'X', output: 'Y', weights, accuracyLevel: level });
  const graph = create(GraphProtoSchema, {
    name: 'matmulnbits',
    node: r.nodes,
    initializer: r.initializers,
    input: [vi('X', [batch, s.K])],
    output: [vi('Y', [batch, s.N])],
  });
  return toBinary(
    ModelProtoSchema,
    create(ModelProtoSchema, {
      irVersion: 10n,
      opsetImport: [
        create(OperatorSetIdProtoSchema, { domain: '', version: 21n }),
        create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n }),
      ],
      graph,
    }),
  );
}

/** Median ms of `runs` calls after `warmup` calls. */
export async function timeSession(
  session: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  runs: number,
  warmup = 3,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** Times each candidate level on every distinct shape; returns the fastest overall. */
export async function chooseAccuracyLevel(
  shapes: LayerShape[],
  opts: { executionProvider?: ExecutionProvider; candidates?: number[]; runs?: number; maxShapes?: number } = {},
): Promise<AccuracyLevelChoice> {
  const candidates = opts.candidates ?? [0, 1, 4];
  const ep = opts.executionProvider ?? 'cpu';
  // The most common shapes dominate the model's time; time at most maxShapes of them.
  const picked = [...shapes].sort((a, b) => b.count * b.K * b.N - a.count * a.K * a.N).slice(0, opts.maxShapes ?? 8);
  const totalMs: Record<string, number> = Object.fromEntries(candidates.map((c) => [String(c), 0]));
  const timings: AccuracyLevelChoice['timings'] = [];
  let usedEp: ExecutionProvider = ep;
  const failures: string[] = [];
  for (const s of picked) {
    const ms: Record<string, number> = {};
    const x = new Float32Array(s.K);
    for (let i = 0; i < s.K; i++) x[i] = Math.sin(i);
    const feeds = { X: new (loadOrt().Tensor)('float32', x, [1, s.K]) };
    // Enough runs for a stable median without spending long on big layers.
    const runs = opts.runs ?? Math.max(10, Math.min(100, Math.round(2e8 / (s.K * s.N))));
    // Open every candidate first, then interleave their runs so that load changes on a shared machine hit all
    // levels alike (sequential blocks of runs were seen to swap the order of levels 0 and 1 under load).
    const open: { level: number; session: ort.InferenceSession; times: number[] }[] = [];
    try {
      for (const level of candidates) {
        try {
          const opened = await openSession(matMulNBitsModel(s, level), {
            executionProviders: [ep, 'cpu'],
            allowSpinning: false,
          });
          usedEp = opened.executionProvider;
          open.push({ level, session: opened.session, times: [] });
        } catch (e) {
          // A level this build/EP rejects for this shape is simply not a candidate.
          failures.push(`level ${level} on ${s.K}×${s.N}: ${String((e as Error).message ?? e).split('\n')[0]}`);
          totalMs[String(level)] = Infinity;
        }
      }
      for (const c of open) for (let i = 0; i < 3; i++) await c.session.run(feeds);
      for (let i = 0; i < runs; i++)
        for (const c of open) {
          const t0 = performance.now();
          await c.session.run(feeds);
          c.times.push(performance.now() - t0);
        }
    } finally {
      for (const c of open) await c.session.release();
    }
    for (const c of open) {
      ms[String(c.level)] = percentile(
        c.times.sort((a, b) => a - b),
        0.5,
      );
      totalMs[String(c.level)] += ms[String(c.level)] * s.count;
    }
    timings.push({ K: s.K, N: s.N, bits: s.bits, blockSize: s.blockSize, count: s.count, ms });
  }
  let level = candidates[0];
  for (const c of candidates) if (totalMs[String(c)] < totalMs[String(level)]) level = c;
  if (!Number.isFinite(totalMs[String(level)])) level = 0; // nothing could be timed: leave it unset (ORT's default)
  return {
    level,
    failures,
    executionProvider: usedEp,
    candidates,
    timings,
    totalMs,
    note:
      'median ms of one MatMulNBits node at batch 1 per distinct layer shape; level 4 computes with int8 ' +
      'activations (quality effect measured by the evaluation), 0/1 with fp32 activations',
  };
}
