// A tiny multilayer perceptron trained in plain TypeScript (float64, Adam, seeded), used to make real soup
// ingredients: train a dense parent, prune it 2:4, fine-tune several variants with the mask fixed, export each as
// ONNX. Deliberately independent of the engine's own pruning code so the fixtures do not test the code with itself.
//
// The task: x ∈ R^16 ~ N(0, I); z = (x·u, x·v) is a hidden plane; the class is the arm of a 3-armed spiral that z
// falls in (a real non-linear boundary the network must find among 14 distractor dimensions), 3% labels flipped.
import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  ValueInfoProtoSchema,
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  type ModelProto,
} from '../../packages/engine/onnx/gen/onnx_pb.js';
import { makeTensor } from '../../packages/engine/onnx/tensor.js';

export const INPUT_DIM = 16;
export const CLASSES = 3;

export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}

export interface Task {
  x: Float32Array; // [n, INPUT_DIM]
  y: Int32Array; // [n]
  n: number;
}

/** Fixed hidden plane (same for every split): two orthonormal directions in R^16. */
function hiddenPlane(): [Float64Array, Float64Array] {
  const g = gaussian(mulberry32(12345));
  const u = Float64Array.from({ length: INPUT_DIM }, g);
  const v = Float64Array.from({ length: INPUT_DIM }, g);
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, i) => s + x * b[i], 0);
  const nu = Math.sqrt(dot(u, u));
  u.forEach((x, i) => (u[i] = x / nu));
  const p = dot(u, v);
  v.forEach((x, i) => (v[i] = x - p * u[i]));
  const nv = Math.sqrt(dot(v, v));
  v.forEach((x, i) => (v[i] = x / nv));
  return [u, v];
}

/** Spiral arms advance this many turns per unit radius (larger = tighter arms, harder task). */
export const SPIRAL_WINDING = 0.2;

export function spiralTask(n: number, seed: number, labelNoise = 0.03, winding = SPIRAL_WINDING): Task {
  const [u, v] = hiddenPlane();
  const rand = mulberry32(seed);
  const g = gaussian(rand);
  const x = new Float32Array(n * INPUT_DIM);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let z1 = 0;
    let z2 = 0;
    for (let d = 0; d < INPUT_DIM; d++) {
      const xv = g();
      x[i * INPUT_DIM + d] = xv;
      z1 += xv * u[d];
      z2 += xv * v[d];
    }
    const r = Math.hypot(z1, z2);
    const turn = (Math.atan2(z2, z1) + Math.PI) / (2 * Math.PI) + winding * r; // arms wind outwards
    let cls = Math.floor(turn * CLASSES) % CLASSES;
    if (rand() < labelNoise) cls = (cls + 1 + Math.floor(rand() * (CLASSES - 1))) % CLASSES;
    y[i] = cls;
  }
  return { x, y, n };
}

/** Dense layer in ONNX MatMul layout: W is [K, N] row-major (K = inputs), b is [N]. */
export interface Layer {
  k: number;
  n: number;
  w: Float64Array;
  b: Float64Array;
  /** Keep-mask over w (1 = trainable weight, 0 = pruned, held at zero). */
  mask: Uint8Array;
}

export type Mlp = Layer[];

export function initMlp(sizes: number[], seed: number): Mlp {
  const g = gaussian(mulberry32(seed));
  const layers: Mlp = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const k = sizes[l];
    const n = sizes[l + 1];
    const scale = Math.sqrt(2 / k); // He init for ReLU
    layers.push({
      k,
      n,
      w: Float64Array.from({ length: k * n }, () => g() * scale),
      b: new Float64Array(n),
      mask: new Uint8Array(k * n).fill(1),
    });
  }
  return layers;
}

export function cloneMlp(m: Mlp): Mlp {
  return m.map((l) => ({ ...l, w: Float64Array.from(l.w), b: Float64Array.from(l.b), mask: Uint8Array.from(l.mask) }));
}

/** Forward pass; returns the activations of every layer (acts[0] = input, last = logits). ReLU between layers. */
export function forward(m: Mlp, x: Float64Array, batch: number): Float64Array[] {
  const acts = [x];
  let a = x;
  m.forEach((layer, li) => {
    const out = new Float64Array(batch * layer.n);
    for (let i = 0; i < batch; i++) {
      const o = out.subarray(i * layer.n, (i + 1) * layer.n);
      o.set(layer.b);
      for (let k = 0; k < layer.k; k++) {
        const av = a[i * layer.k + k];
        if (av === 0) continue;
        const row = k * layer.n;
        for (let j = 0; j < layer.n; j++) o[j] += av * layer.w[row + j];
      }
    }
    if (li < m.length - 1) for (let i = 0; i < out.length; i++) if (out[i] < 0) out[i] = 0;
    acts.push(out);
    a = out;
  });
  return acts;
}

/** Mean softmax cross-entropy over the batch and its gradients (dW, db per layer). */
export function lossAndGrads(
  m: Mlp,
  x: Float64Array,
  y: ArrayLike<number>,
  batch: number,
): { loss: number; gw: Float64Array[]; gb: Float64Array[] } {
  const acts = forward(m, x, batch);
  const logits = acts[acts.length - 1];
  const c = m[m.length - 1].n;
  let delta = new Float64Array(batch * c);
  let loss = 0;
  for (let i = 0; i < batch; i++) {
    let mx = -Infinity;
    for (let j = 0; j < c; j++) mx = Math.max(mx, logits[i * c + j]);
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(logits[i * c + j] - mx);
    const lse = mx + Math.log(s);
    loss += lse - logits[i * c + y[i]];
    for (let j = 0; j < c; j++) delta[i * c + j] = (Math.exp(logits[i * c + j] - lse) - (j === y[i] ? 1 : 0)) / batch;
  }
  const gw: Float64Array[] = [];
  const gb: Float64Array[] = [];
  for (let li = m.length - 1; li >= 0; li--) {
    const layer = m[li];
    const a = acts[li];
    const dw = new Float64Array(layer.k * layer.n);
    const db = new Float64Array(layer.n);
    const prev = li > 0 ? new Float64Array(batch * layer.k) : null;
    for (let i = 0; i < batch; i++) {
      const d = delta.subarray(i * layer.n, (i + 1) * layer.n);
      for (let j = 0; j < layer.n; j++) db[j] += d[j];
      for (let k = 0; k < layer.k; k++) {
        const av = a[i * layer.k + k];
        const row = k * layer.n;
        let back = 0;
        for (let j = 0; j < layer.n; j++) {
          dw[row + j] += av * d[j];
          back += layer.w[row + j] * d[j];
        }
        // ReLU derivative of the previous layer's output (activation > 0)
        if (prev) prev[i * layer.k + k] = av > 0 ? back : 0;
      }
    }
    gw[li] = dw;
    gb[li] = db;
    if (prev) delta = prev;
  }
  return { loss: loss / batch, gw, gb };
}

export interface TrainOptions {
  epochs: number;
  lr: number;
  batch: number;
  /** Seed of the data order. */
  seed: number;
}

/** Adam with the masks held: pruned weights get no update and stay exactly zero. Returns the last epoch's loss. */
export function train(m: Mlp, task: Task, opts: TrainOptions): number {
  const b1 = 0.9;
  const b2 = 0.999;
  const eps = 1e-8;
  const mw = m.map((l) => new Float64Array(l.w.length));
  const vw = m.map((l) => new Float64Array(l.w.length));
  const mb = m.map((l) => new Float64Array(l.b.length));
  const vb = m.map((l) => new Float64Array(l.b.length));
  const rand = mulberry32(opts.seed);
  const order = Int32Array.from({ length: task.n }, (_, i) => i);
  let step = 0;
  let epochLoss = 0;
  for (let e = 0; e < opts.epochs; e++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    epochLoss = 0;
    let batches = 0;
    for (let start = 0; start < task.n; start += opts.batch) {
      const bs = Math.min(opts.batch, task.n - start);
      const xb = new Float64Array(bs * INPUT_DIM);
      const yb = new Int32Array(bs);
      for (let i = 0; i < bs; i++) {
        const s = order[start + i];
        for (let d = 0; d < INPUT_DIM; d++) xb[i * INPUT_DIM + d] = task.x[s * INPUT_DIM + d];
        yb[i] = task.y[s];
      }
      const { loss, gw, gb } = lossAndGrads(m, xb, yb, bs);
      epochLoss += loss;
      batches++;
      step++;
      const c1 = 1 - b1 ** step;
      const c2 = 1 - b2 ** step;
      m.forEach((layer, li) => {
        const adam = (p: Float64Array, g: Float64Array, mm: Float64Array, vv: Float64Array, mask?: Uint8Array) => {
          for (let q = 0; q < p.length; q++) {
            if (mask && !mask[q]) {
              p[q] = 0;
              continue;
            }
            mm[q] = b1 * mm[q] + (1 - b1) * g[q];
            vv[q] = b2 * vv[q] + (1 - b2) * g[q] * g[q];
            p[q] -= (opts.lr * (mm[q] / c1)) / (Math.sqrt(vv[q] / c2) + eps);
          }
        };
        adam(layer.w, gw[li], mw[li], vw[li], layer.mask);
        adam(layer.b, gb[li], mb[li], vb[li]);
      });
    }
    epochLoss /= batches;
  }
  return epochLoss;
}

export function accuracy(m: Mlp, task: Task): number {
  const acts = forward(m, Float64Array.from(task.x), task.n);
  const logits = acts[acts.length - 1];
  const c = m[m.length - 1].n;
  let right = 0;
  for (let i = 0; i < task.n; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (logits[i * c + j] > logits[i * c + best]) best = j;
    if (best === task.y[i]) right++;
  }
  return right / task.n;
}

/**
 * Prunes every weight matrix to N:M along K (ONNX B[K, N]: groups of M consecutive rows k inside each column n),
 * keeping the N largest |w| (ties → lower k), and fixes the mask. Biases stay dense.
 */
export function pruneNM(m: Mlp, keepN: number, groupM: number): void {
  for (const layer of m) {
    if (layer.k % groupM !== 0) throw new Error(`K=${layer.k} is not a multiple of ${groupM}`);
    for (let col = 0; col < layer.n; col++) {
      for (let g = 0; g < layer.k; g += groupM) {
        const idx = Array.from({ length: groupM }, (_, t) => (g + t) * layer.n + col);
        idx.sort((p, q) => Math.abs(layer.w[q]) - Math.abs(layer.w[p]) || p - q);
        idx.forEach((p, rank) => {
          layer.mask[p] = rank < keepN ? 1 : 0;
          if (rank >= keepN) layer.w[p] = 0;
        });
      }
    }
  }
}

export interface ExportOptions {
  /** Hidden activation op. @defaultValue 'Relu' */
  activation?: 'Relu' | 'LeakyRelu';
  /** MatMul + Add (PyTorch-exporter style) or one Gemm per layer. @defaultValue 'matmul' */
  linear?: 'matmul' | 'gemm';
}

/** ONNX model (IR 8, opset 17): input "input" [batch, 16] → output "logits" [batch, classes], float32 weights. */
export function exportMlp(m: Mlp, opts: ExportOptions = {}): ModelProto {
  const activation = opts.activation ?? 'Relu';
  const linear = opts.linear ?? 'matmul';
  const dim = (v: number | string) =>
    create(TensorShapeProto_DimensionSchema, {
      value: typeof v === 'number' ? { case: 'dimValue', value: BigInt(v) } : { case: 'dimParam', value: v },
    });
  const valueInfo = (name: string, dims: (number | string)[]) =>
    create(ValueInfoProtoSchema, {
      name,
      type: create(TypeProtoSchema, {
        value: {
          case: 'tensorType',
          value: create(TypeProto_TensorSchema, {
            elemType: TensorProto_DataType.FLOAT,
            shape: create(TensorShapeProtoSchema, { dim: dims.map(dim) }),
          }),
        },
      }),
    });
  const nodes = [];
  const inits = [];
  let current = 'input';
  for (let li = 0; li < m.length; li++) {
    const l = m[li];
    const wName = `fc${li + 1}.weight`;
    const bName = `fc${li + 1}.bias`;
    const out = li === m.length - 1 ? 'logits' : `fc${li + 1}.out`;
    if (linear === 'matmul') {
      inits.push(makeTensor(wName, 'float32', [l.k, l.n], Float32Array.from(l.w)));
      inits.push(makeTensor(bName, 'float32', [l.n], Float32Array.from(l.b)));
      nodes.push(
        create(NodeProtoSchema, {
          name: `fc${li + 1}/MatMul`,
          opType: 'MatMul',
          input: [current, wName],
          output: [`fc${li + 1}.mm`],
        }),
        create(NodeProtoSchema, {
          name: `fc${li + 1}/Add`,
          opType: 'Add',
          input: [`fc${li + 1}.mm`, bName],
          output: [out],
        }),
      );
    } else {
      inits.push(makeTensor(wName, 'float32', [l.k, l.n], Float32Array.from(l.w)));
      inits.push(makeTensor(bName, 'float32', [l.n], Float32Array.from(l.b)));
      nodes.push(
        create(NodeProtoSchema, {
          name: `fc${li + 1}/Gemm`,
          opType: 'Gemm',
          input: [current, wName, bName],
          output: [out],
        }),
      );
    }
    current = out;
    if (li < m.length - 1) {
      const act = `act${li + 1}`;
      const attribute =
        activation === 'LeakyRelu'
          ? [create(AttributeProtoSchema, { name: 'alpha', type: AttributeProto_AttributeType.FLOAT, f: 0.01 })]
          : [];
      nodes.push(
        create(NodeProtoSchema, {
          name: `${act}/${activation}`,
          opType: activation,
          input: [current],
          output: [act],
          attribute,
        }),
      );
      current = act;
    }
  }
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'onnx-compress soup fixtures',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
    graph: create(GraphProtoSchema, {
      name: 'mlp',
      node: nodes,
      initializer: inits,
      input: [valueInfo('input', ['batch', INPUT_DIM])],
      output: [valueInfo('logits', ['batch', m[m.length - 1].n])],
    }),
  });
}

export function mlpBytes(m: Mlp, opts?: ExportOptions): Uint8Array {
  return toBinary(ModelProtoSchema, exportMlp(m, opts));
}

/** Reads an MLP exported by exportMlp back (float32 → float64), with masks = the non-zeros of each weight. */
export function mlpFromInitializers(read: (name: string) => Float32Array, sizes: number[]): Mlp {
  const layers: Mlp = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const w = Float64Array.from(read(`fc${l + 1}.weight`));
    layers.push({
      k: sizes[l],
      n: sizes[l + 1],
      w,
      b: Float64Array.from(read(`fc${l + 1}.bias`)),
      mask: Uint8Array.from(w, (v) => (v === 0 ? 0 : 1)),
    });
  }
  return layers;
}
