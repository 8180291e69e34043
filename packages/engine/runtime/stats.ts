// Streaming calibration statistics. The target activations are graph outputs of a session on the dense model; the
// calibration batches stream through it and each activation is folded into float64 accumulators at once (x_k² sums,
// and XᵀX when a Hessian is wanted) — activations are never kept beyond one batch. Hessians are bounded: the
// activations are split into passes whose Hessians together fit `maxHessianBytes`, each pass re-streams the data,
// and a pass runs only when a method first asks for one of its activations (so memory holds one pass at a time).
// Several weights reading one activation share one entry.
import type * as ort from 'onnxruntime-node';
import { batches, type Batch } from '../data/dataset.js';
import type { Dataset } from '../data/types.js';
import { InputError } from '../job.js';
import { gramAccumulate } from '../math/gemm.js';
import type { LayerStats } from '../methods/types.js';
import { im2colRows, outputSize, type ConvGeometry } from './conv.js';
import { feedsOf, runSession, toFloat32 } from './session.js';

/** What to accumulate for one activation. */
export interface StatsRequest {
  /** Unique key (activation name, plus Conv geometry when it reads the activation through a Conv). */
  key: string;
  activation: string;
  /** Columns per group: MatMul/Gemm K; Conv kh·kw·cg. */
  K: number;
  groups: number;
  /** Conv only: geometry (columns ordered (ky, kx, ci) like readWeightMatrix). */
  conv?: ConvGeometry;
  /** Accumulate the K×K Hessian per group. */
  hessian: boolean;
}

export function hessianBytes(r: { K: number; groups: number }): number {
  return r.groups * r.K * r.K * 8;
}

interface Accumulator {
  req: StatsRequest;
  sumSq: Float64Array;
  /** Rows that went into sumSq (Conv: input pixels, MatMul: tokens). */
  sqCount: number;
  hessian?: Float64Array[];
  /** Rows that went into the Hessian (Conv: output pixels = patches). */
  rows: number;
}

export interface StatsCollectorOptions {
  session: ort.InferenceSession;
  dataset: Dataset;
  ranges: [number, number][];
  /** Activation names that are model inputs (read from the feeds, not fetched). */
  modelInputs: Set<string>;
  /** Total bytes of Hessians held at once (one pass). */
  maxHessianBytes: number;
  signal?: AbortSignal;
  onPass?: (p: { pass: number; batch: number; batches: number; activations: number }) => void;
  /**
   * Sequential calibration: each pass opens a fresh session on the model as it stands (earlier layers already
   * compressed) exposing the given activations, and covers one activation only. The session is released after it.
   */
  reopen?: (activations: string[]) => Promise<ort.InferenceSession>;
}

/** Rows of im2col patches built per Gram product (bounds the patch buffer to ~16 MB). */
const PATCH_FLOATS = 4 * 2 ** 20;

export class StatsCollector {
  private readonly order: StatsRequest[] = [];
  private readonly byKey = new Map<string, StatsRequest>();
  private readonly done = new Map<string, LayerStats>();
  private readonly released = new Set<string>();
  private passes = 0;
  /** Sum of rows streamed in the first pass, for the report. */
  tokens = 0;

  constructor(private readonly opts: StatsCollectorOptions) {}

  /** Registers an activation in method order; duplicates (same key) are shared. */
  add(req: StatsRequest): void {
    const prev = this.byKey.get(req.key);
    if (prev) {
      prev.hessian ||= req.hessian;
      return;
    }
    if (req.hessian && hessianBytes(req) > this.opts.maxHessianBytes) {
      throw new InputError(
        'hessian-too-large',
        `the Hessian of "${req.activation}" (${req.groups}×${req.K}×${req.K} float64 = ${hessianBytes(req)} bytes) ` +
          `exceeds calibration.maxHessianBytes = ${this.opts.maxHessianBytes}; raise the cap or exclude the layer`,
      );
    }
    this.order.push(req);
    this.byKey.set(req.key, req);
  }

  get passCount(): number {
    return this.passes;
  }

  async get(key: string): Promise<LayerStats> {
    const have = this.done.get(key);
    if (have) return have;
    if (this.released.has(key)) throw new Error(`statistics for ${key} were released and are needed again`);
    const start = this.order.findIndex((r) => r.key === key);
    if (start < 0) throw new Error(`no statistics were requested for ${key}`);
    // This pass: the requested activation and the following pending ones, while their Hessians fit the budget
    // (sequential calibration: only the requested one, so that later layers see the compressed earlier ones).
    const pass: StatsRequest[] = [];
    let bytes = 0;
    for (let i = start; i < (this.opts.reopen ? start + 1 : this.order.length); i++) {
      const r = this.order[i];
      if (this.done.has(r.key) || this.released.has(r.key)) continue;
      const b = r.hessian ? hessianBytes(r) : 0;
      if (pass.length > 0 && bytes + b > this.opts.maxHessianBytes) {
        if (b > 0) continue; // a Hessian-free request further on can still join
      }
      pass.push(r);
      bytes += b;
    }
    await this.runPass(pass);
    return this.done.get(key)!;
  }

  release(key: string): void {
    if (this.done.delete(key)) this.released.add(key);
  }

  private async runPass(reqs: StatsRequest[]): Promise<void> {
    const accs = reqs.map((req): Accumulator => ({
      req,
      sumSq: new Float64Array(req.conv ? req.groups * req.conv.cg : req.K),
      sqCount: 0,
      hessian: req.hessian ? Array.from({ length: req.groups }, () => new Float64Array(req.K * req.K)) : undefined,
      rows: 0,
    }));
    const fetchNames = [...new Set(reqs.map((r) => r.activation).filter((a) => !this.opts.modelInputs.has(a)))];
    const pass = ++this.passes;
    const session = this.opts.reopen && fetchNames.length ? await this.opts.reopen(fetchNames) : this.opts.session;
    try {
      let i = 0;
      for (const batch of batches(this.opts.dataset, this.opts.ranges)) {
        this.opts.signal?.throwIfAborted();
        this.opts.onPass?.({ pass, batch: i, batches: this.opts.ranges.length, activations: reqs.length });
        const values = await this.fetch(session, batch, fetchNames);
        for (const acc of accs) {
          const v = values.get(acc.req.activation);
          if (!v) throw new Error(`activation ${acc.req.activation} was not produced`);
          await accumulate(acc, v.data, v.dims);
        }
        if (pass === 1) this.tokens += batch.count;
        i++;
      }
    } finally {
      if (session !== this.opts.session) await session.release().catch(() => {});
    }
    for (const acc of accs) this.done.set(acc.req.key, finish(acc));
  }

  private async fetch(
    session: ort.InferenceSession,
    batch: Batch,
    names: string[],
  ): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
    const out = new Map<string, { data: Float32Array; dims: number[] }>();
    for (const [name, a] of batch.inputs) {
      if (this.opts.modelInputs.has(name)) out.set(name, { data: toFloat32(a), dims: a.dims });
    }
    if (names.length === 0) return out;
    const r = await runSession(session, feedsOf(batch.inputs), names, 'computing calibration activations');
    for (const n of names) {
      const t = r[n] as ort.Tensor;
      out.set(n, { data: toFloat32(t), dims: [...t.dims] });
    }
    return out;
  }
}

async function accumulate(acc: Accumulator, x: Float32Array, dims: number[]): Promise<void> {
  const { req } = acc;
  if (!req.conv) {
    const K = req.K;
    const last = dims[dims.length - 1];
    if (last !== K) {
      throw new InputError(
        'activation-shape',
        `activation "${req.activation}" has last dim ${last} but the weight's K is ${K}`,
      );
    }
    const rows = x.length / K;
    const s = acc.sumSq;
    for (let r = 0; r < rows; r++) {
      const base = r * K;
      for (let k = 0; k < K; k++) {
        const v = x[base + k];
        s[k] += v * v;
      }
    }
    acc.sqCount += rows;
    if (acc.hessian) await gramAccumulate(x, rows, K, acc.hessian[0]);
    acc.rows += rows;
    return;
  }
  const g = req.conv;
  const [b, c] = dims;
  const h = g.spatial === 2 ? dims[2] : 1;
  const w = g.spatial === 2 ? dims[3] : dims[2];
  if (dims.length !== g.spatial + 2 || c !== g.cg * g.group) {
    throw new InputError(
      'activation-shape',
      `Conv input "${req.activation}" has shape [${dims.join(', ')}], expected ${g.cg * g.group} channels`,
    );
  }
  const plane = h * w;
  for (let bi = 0; bi < b; bi++) {
    for (let ch = 0; ch < c; ch++) {
      const base = (bi * c + ch) * plane;
      let s = 0;
      for (let p = 0; p < plane; p++) {
        const v = x[base + p];
        s += v * v;
      }
      acc.sumSq[ch] += s;
    }
  }
  acc.sqCount += b * plane;
  const o = outputSize(g, h, w);
  const totalRows = b * o.oh * o.ow;
  if (acc.hessian) {
    const chunk = Math.max(1, Math.floor(PATCH_FLOATS / req.K));
    const buf = new Float32Array(Math.min(chunk, totalRows) * req.K);
    for (let grp = 0; grp < req.groups; grp++) {
      for (let r0 = 0; r0 < totalRows; r0 += chunk) {
        const rows = Math.min(chunk, totalRows - r0);
        const view = buf.subarray(0, rows * req.K);
        im2colRows(x, { b, c, h, w }, g, o, grp, r0, rows, view);
        await gramAccumulate(view, rows, req.K, acc.hessian[grp]);
      }
    }
  }
  acc.rows += totalRows;
}

function finish(acc: Accumulator): LayerStats {
  const { req } = acc;
  const xNorm: Float64Array[] = [];
  const n = Math.max(1, acc.sqCount);
  if (!req.conv) {
    xNorm.push(acc.sumSq.map((s) => Math.sqrt(s / n)));
  } else {
    const { cg } = req.conv;
    for (let grp = 0; grp < req.groups; grp++) {
      const x = new Float64Array(req.K);
      for (let k = 0; k < req.K; k++) x[k] = Math.sqrt(acc.sumSq[grp * cg + (k % cg)] / n);
      xNorm.push(x);
    }
  }
  const stats: LayerStats = { activation: req.activation, tokens: acc.rows, groups: req.groups, xNorm };
  if (acc.hessian) {
    const scale = acc.rows > 0 ? 2 / acc.rows : 0;
    for (const hm of acc.hessian) for (let i = 0; i < hm.length; i++) hm[i] *= scale;
    stats.hessian = acc.hessian;
  }
  return stats;
}
