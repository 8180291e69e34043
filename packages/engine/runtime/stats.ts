// Streaming calibration statistics, reduced inside ONNX Runtime. Each pass opens a capture session on the model with
// the reductions of its requests appended (capture.ts: per-channel Σx², XᵀX as the tiles on and above its block
// diagonal, a row sample), streams the calibration batches through it once — one ORT run per batch for every layer of
// the pass — and folds each batch's fp32 reductions into float64 accumulators here (gram.ts for the tiles; fp32 within
// a batch, like one MLAS GEMM; float64 across batches so that many batches do not drift). Only K-vectors, K×K tiles
// and the bounded sample leave ORT; activations never do. Hessians are bounded: `maxHessianBytes` is the total of
// float64 Hessians held at once, and a second pass runs only for requests whose Hessians did not fit next to the first
// pass's (each batch's fp32 XᵀX tiles, copied out of ORT and folded in at once, add up to at most half of that while a
// batch is being folded). Requests without a Hessian always join the current pass. A pass runs when a method first
// asks for one of its activations; its session is released when the pass ends. Several weights reading one
// activation share one entry.
import type * as ort from 'onnxruntime-node';
import { batches, type Batch } from '../data/dataset.js';
import type { Dataset } from '../data/types.js';
import { InputError } from '../job-parts.js';
import type { LayerStats } from '../methods/types.js';
import type { CaptureOutputs, PassCut, StatsRequest } from './capture.js';
import { outputSize } from './conv.js';
import { foldTile, mirrorTiles, tileOffsets } from './gram.js';
import { ort as loadOrt } from './ort.js';
import { feedsOf, runSession, toFloat32, type ExecutionProvider } from './session.js';

// A request is what the capture graph computes, so it is declared in capture.ts (which stats.ts reads, not back).
export type { StatsRequest };

export function hessianBytes(r: { K: number; groups: number }): number {
  return r.groups * r.K * r.K * 8;
}

/** A session on the model with the reductions of some requests appended (calibration.ts openCaptureSession). */
export interface CaptureSession {
  session: ort.InferenceSession;
  /** Output names per request key. */
  outputs: Map<string, CaptureOutputs>;
  executionProvider: ExecutionProvider;
  fallbacks: string[];
}

export interface StatsCollectorOptions {
  dataset: Dataset;
  ranges: [number, number][];
  /** Total bytes of float64 Hessians held at once (one pass). */
  maxHessianBytes: number;
  /**
   * Opens a capture session for the requests of one pass (on the model as it stands when called); `extra.fetch`: values
   * the first pass fetches as well (later passes' frontiers), `extra.cut`: the later pass runs from that cut on.
   */
  open: (reqs: StatsRequest[], extra?: { fetch?: string[]; cut?: PassCut }) => Promise<CaptureSession>;
  /**
   * Where a later pass over `reqs` may start (calibration.ts passCut on the model as loaded); without it every pass
   * runs the model from its inputs. Not used with `sequential` (each pass must see the model as compressed so far).
   */
  cutFor?: (reqs: StatsRequest[]) => PassCut | undefined;
  /**
   * Sequential calibration: each pass covers one activation only and opens its session on the model as it stands
   * (earlier layers already compressed).
   */
  sequential?: boolean;
  signal?: AbortSignal;
  /**
   * Model outputs fetched as well in the pass that runs on the session prepare() opened — the model as it was before
   * the method edited anything — and handed over batch by batch in range order (`record`): the dense outputs an
   * evaluation on the same batches would otherwise compute again (runtime/evaluate.ts DenseOutputs). ONNX Runtime
   * (1.29) runs every node of the graph whatever is fetched, so this costs the pass only the outputs' copies. `after`
   * runs once that pass is done and its session released (the runner runs the dense model over an evaluation set
   * there, in a plain session: on the capture session each of those runs would recompute every reduction, since ONNX
   * Runtime runs the whole graph whatever is fetched). @defaultValue none
   */
  modelOutputs?: {
    names: string[];
    record?(r: ort.InferenceSession.ReturnType, batch: Batch): Promise<void>;
    after?(): Promise<void>;
  };
  onPass?: (p: { pass: number; batch: number; batches: number; activations: number }) => void;
}

interface Accumulator {
  req: StatsRequest;
  out: CaptureOutputs;
  sumSq: Float64Array;
  /** Rows that went into sumSq (Conv: input pixels, MatMul: tokens). */
  sqCount: number;
  hessian?: Float64Array;
  /** Rows that went into the Hessian (Conv: output pixels = patches). */
  rows: number;
  /** The Hessian already holds 2/rows · Σ XᵀX (scaled while the last batch was folded in). */
  scaled?: boolean;
  /** Where ORT writes the next batch's fp32 XᵀX tiles (fetchesFor): the copies of the previous ones, paged in. */
  gramOut?: Float32Array[];
  sample?: NonNullable<LayerStats['sample']>;
  /** Per weight (out.outputTrace): Σ‖Y‖² over every row of the batches so far, in float64. */
  traces?: Map<string, number>;
}

export class StatsCollector {
  private readonly order: StatsRequest[] = [];
  private readonly byKey = new Map<string, StatsRequest>();
  private readonly done = new Map<string, LayerStats>();
  private readonly released = new Set<string>();
  /**
   * Float64 Hessian buffers of released statistics, by byte length, for the next pass's accumulators: fresh memory
   * costs a page fault per 4 KiB (≈ 3 s per GB on the 2-core bench VM; the 1 B LLM's 3 passes allocate 5.7 GB), and
   * every entry of a Hessian is written on its first batch (foldTile sets, mirrorTiles copies), so old values never
   * show. What a pass does not take is dropped before it allocates, so held + new stays within its budget.
   */
  private spare = new Map<number, ArrayBuffer[]>();
  /** The later passes' cuts (cutFor), planned when the first pass is prepared; a pass's entry goes once it ran. */
  private cuts: { keys: string; cut: PassCut }[] = [];
  /** Per calibration batch, the frontier values the first pass fetched for the later passes' cuts. */
  private frontier: Map<string, ort.Tensor>[] = [];
  private passes = 0;
  private runs = 0;
  private opened?: { start: number; reqs: StatsRequest[]; capture: CaptureSession; prepared: boolean };
  /** Sum of samples streamed in the first pass, for the report. */
  tokens = 0;

  constructor(private readonly opts: StatsCollectorOptions) {}

  /** Registers an activation in method order; duplicates (same key) are shared. */
  add(req: StatsRequest): void {
    const prev = this.byKey.get(req.key);
    if (prev) {
      prev.hessian ||= req.hessian;
      if (req.sampleRows) prev.sampleRows = Math.max(prev.sampleRows ?? 0, req.sampleRows);
      if (req.outputs?.length) prev.outputs = [...(prev.outputs ?? []), ...req.outputs];
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

  /** ONNX Runtime runs so far (one per calibration batch per pass). */
  get runCount(): number {
    return this.runs;
  }

  /**
   * Opens the first pass's session now (the runner learns the execution provider, and a model ONNX Runtime cannot
   * load fails before the method starts). The first get() of that pass uses it.
   */
  async prepare(): Promise<{ executionProvider: ExecutionProvider; fallbacks: string[] } | undefined> {
    const reqs = this.plan(0);
    if (reqs.length === 0) return undefined;
    await this.closeOpened();
    this.cuts = this.planCuts(reqs);
    const fetch = frontierNames(this.cuts);
    const capture = await this.opts.open(reqs, fetch.length ? { fetch } : undefined);
    this.opened = { start: 0, reqs, capture, prepared: true };
    return { executionProvider: capture.executionProvider, fallbacks: capture.fallbacks };
  }

  async get(key: string): Promise<LayerStats> {
    const have = this.done.get(key);
    if (have) return have;
    if (this.released.has(key)) throw new Error(`statistics for ${key} were released and are needed again`);
    const start = this.order.findIndex((r) => r.key === key);
    if (start < 0) throw new Error(`no statistics were requested for ${key}`);
    await this.runPass(start);
    return this.done.get(key)!;
  }

  /** Whether get(key) returns at once, without a calibration pass. */
  has(key: string): boolean {
    return this.done.has(key);
  }

  /** The statistics of `key` are no longer read by anyone: their Hessian's memory goes to the next pass. */
  release(key: string): void {
    const st = this.done.get(key);
    if (!st) return;
    this.done.delete(key);
    this.released.add(key);
    const buffer = st.hessian?.[0]?.buffer;
    if (!(buffer instanceof ArrayBuffer)) return;
    // Kept only while a pass yet to run needs a Hessian of its size, so evaluation never holds spare ones.
    const size = buffer.byteLength;
    const list = this.spare.get(size) ?? [];
    if (this.pendingHessians(size) <= list.length) return;
    list.push(buffer);
    this.spare.set(size, list);
  }

  /** Requests whose Hessian of `bytes` no pass has computed yet. */
  private pendingHessians(bytes: number): number {
    let n = 0;
    for (const r of this.order) {
      if (r.hessian && hessianBytes(r) === bytes && !this.done.has(r.key) && !this.released.has(r.key)) n++;
    }
    return n;
  }

  /** Releases a prepared session that no pass used. */
  async close(): Promise<void> {
    await this.closeOpened();
  }

  /**
   * The requests of the pass starting at `start`: it and the following pending ones while their Hessians fit the
   * budget; Hessian-free requests always join (sequential calibration: only the one at `start`).
   */
  private plan(start: number, taken?: Set<string>): StatsRequest[] {
    const pass: StatsRequest[] = [];
    let bytes = 0;
    const end = this.opts.sequential ? Math.min(start + 1, this.order.length) : this.order.length;
    for (let i = start; i < end; i++) {
      const r = this.order[i];
      if (this.done.has(r.key) || this.released.has(r.key) || taken?.has(r.key)) continue;
      const b = r.hessian ? hessianBytes(r) : 0;
      if (pass.length > 0 && b > 0 && bytes + b > this.opts.maxHessianBytes) continue;
      pass.push(r);
      bytes += b;
    }
    return pass;
  }

  /**
   * The cuts of the passes that follow `first` when the method asks for statistics in request order (a pass that
   * turns out different runs uncut). None for sequential calibration.
   */
  private planCuts(first: StatsRequest[]): { keys: string; cut: PassCut }[] {
    if (this.opts.sequential || !this.opts.cutFor) return [];
    const taken = new Set(first.map((r) => r.key));
    const cuts: { keys: string; cut: PassCut }[] = [];
    for (let i = 0; i < this.order.length; i++) {
      if (taken.has(this.order[i].key)) continue;
      const pass = this.plan(i, taken);
      for (const r of pass) taken.add(r.key);
      const cut = this.opts.cutFor(pass);
      if (cut) cuts.push({ keys: keysOf(pass), cut });
    }
    return cuts;
  }

  /**
   * Opens a later pass from its cut; should ONNX Runtime refuse the cut graph (a crossing value whose type the graph
   * does not pin down, say), the pass runs uncut instead of failing the job.
   */
  private async openCut(
    reqs: StatsRequest[],
    cut: PassCut | undefined,
  ): Promise<{ capture: CaptureSession; cut: PassCut | undefined }> {
    if (cut) {
      try {
        return { capture: await this.opts.open(reqs, { cut }), cut };
      } catch {
        // the uncut pass below gives the same statistics
      }
    }
    return { capture: await this.opts.open(reqs), cut: undefined };
  }

  /** Keeps batch `i`'s frontier values, or drops every cut once they pass MAX_FRONTIER_BYTES. */
  private keepFrontier(r: ort.InferenceSession.ReturnType, i: number, names: string[]): void {
    const kept = (this.frontier[i] = new Map());
    for (const n of names) kept.set(n, r[n] as ort.Tensor);
    let bytes = 0;
    for (const batch of this.frontier)
      for (const t of batch.values()) bytes += ArrayBuffer.isView(t.data) ? t.data.byteLength : Infinity;
    if (bytes > MAX_FRONTIER_BYTES) {
      this.cuts = [];
      this.frontier = [];
    }
  }

  /** A batch's feeds: the model inputs the session reads, plus the cut's frontier values from the first pass. */
  private feedsFor(session: ort.InferenceSession, batch: Batch, i: number, cut: PassCut | undefined) {
    const feeds = feedsOf(batch.inputs);
    if (!cut) return feeds;
    const read = new Set(session.inputNames);
    for (const name of Object.keys(feeds)) if (!read.has(name)) delete feeds[name];
    for (const f of cut.frontier) feeds[f.name] = this.frontier[i].get(f.name)!;
    return feeds;
  }

  private async closeOpened(): Promise<void> {
    const o = this.opened;
    this.opened = undefined;
    if (o) await o.capture.session.release().catch(() => {});
  }

  private async runPass(start: number): Promise<void> {
    let reqs: StatsRequest[];
    let capture: CaptureSession;
    let prepared = false;
    let cut: PassCut | undefined;
    if (this.opened && this.opened.start === start) {
      ({ reqs, capture, prepared } = this.opened);
      this.opened = undefined;
    } else {
      await this.closeOpened();
      reqs = this.plan(start);
      const at = this.cuts.findIndex((c) => c.keys === keysOf(reqs));
      cut = at >= 0 && this.frontier.length === this.opts.ranges.length ? this.cuts[at].cut : undefined;
      if (at >= 0) this.cuts.splice(at, 1);
      ({ capture, cut } = await this.openCut(reqs, cut));
    }
    // Frontier values are fetched by the first (prepared) pass only.
    const fetch = prepared ? frontierNames(this.cuts) : [];
    const pass = ++this.passes;
    const accs = this.accumulators(reqs, capture);
    const outputs = prepared ? this.opts.modelOutputs : undefined;
    const record = outputs?.record ? outputs : undefined;
    const names = [...new Set([...fetchNames(accs), ...(record?.names ?? []), ...fetch])];
    try {
      let i = 0;
      const n = this.opts.ranges.length;
      for (const batch of batches(this.opts.dataset, this.opts.ranges)) {
        this.opts.signal?.throwIfAborted();
        this.opts.onPass?.({ pass, batch: i, batches: this.opts.ranges.length, activations: reqs.length });
        const fetches = fetchesFor(accs, names, i === 0);
        const feeds = this.feedsFor(capture.session, batch, i, cut);
        const r = await runSession(capture.session, feeds, fetches, 'computing calibration statistics');
        this.runs++;
        if (fetch.length && this.cuts.length) this.keepFrontier(r, i, fetch);
        for (const acc of accs) accumulate(acc, r, i === 0, i === n - 1);
        await record?.record!(r, batch);
        if (pass === 1) this.tokens += batch.count;
        i++;
      }
    } finally {
      await capture.session.release().catch(() => {});
    }
    for (const acc of accs) this.done.set(acc.req.key, finish(acc));
    await outputs?.after?.();
    if (!this.cuts.length) this.frontier = []; // no later pass needs them
  }

  /** A pass's accumulators, Hessians in released buffers of their size where there are any (`spare`). */
  private accumulators(reqs: StatsRequest[], capture: CaptureSession): Accumulator[] {
    const reused = reqs.map((req) => (req.hessian ? this.spare.get(hessianBytes(req))?.pop() : undefined));
    this.spare = new Map();
    return reqs.map((req, i) => {
      const acc: Accumulator = {
        req,
        out: capture.outputs.get(req.key)!,
        sumSq: new Float64Array(req.conv ? req.groups * req.conv.cg : req.K),
        sqCount: 0,
        rows: 0,
      };
      if (req.hessian) acc.hessian = reused[i] ? new Float64Array(reused[i]) : new Float64Array(hessianBytes(req) / 8);
      return acc;
    });
  }
}

/**
 * Most bytes of frontier values kept for the later passes (all batches): a transformer's is its residual stream and
 * masks, 8 MB per 8 × 128-token batch at hidden 2048; a graph whose cuts cross more runs its later passes uncut.
 */
const MAX_FRONTIER_BYTES = 256 * 2 ** 20;

function keysOf(reqs: StatsRequest[]): string {
  return reqs.map((r) => r.key).join('\n');
}

function frontierNames(cuts: { cut: PassCut }[]): string[] {
  return [...new Set(cuts.flatMap((c) => c.cut.frontier.map((f) => f.name)))];
}

/** Every output of the pass, once (requests on one activation share its shape output). */
function fetchNames(accs: Accumulator[]): string[] {
  const names = new Set<string>();
  for (const a of accs) {
    names.add(a.out.shape);
    names.add(a.out.sumSq);
    for (const t of a.out.hessian ?? []) names.add(t.name);
    if (a.out.sample) names.add(a.out.sample);
    for (const q of a.out.outputSq ?? []) names.add(q.name);
    for (const q of a.out.outputTrace ?? []) names.add(q.name);
  }
  return [...names];
}

/**
 * The fetches of one run, with each Hessian's outputs pre-allocated: ORT writes the first batch's fp32 XᵀX tiles into
 * the float64 Hessian's own (not yet used) bytes and later ones into the previous batch's copies, instead of into
 * fresh buffers of its own. Memory touched for the first time is what this stage spends most on (on the 2-core bench
 * VM a fresh 4 KiB page costs ~13 µs, ~3 s per GB); the binding still returns a copy of each output (onnxruntime-node
 * 1.29 copies pre-allocated outputs too), which accumulate() folds from.
 */
function fetchesFor(accs: Accumulator[], names: string[], first: boolean): Record<string, ort.Tensor | null> {
  const fetches: Record<string, ort.Tensor | null> = {};
  for (const n of names) fetches[n] = null;
  for (const { req, out, hessian, gramOut } of accs) {
    if (!hessian) continue;
    const tiles = out.hessian!;
    const offsets = tileOffsets(tiles, req.groups);
    tiles.forEach((t, k) => {
      const n = req.groups * t.rows * t.cols;
      const into = first ? new Float32Array(hessian.buffer, hessian.byteOffset + 4 * offsets[k], n) : gramOut?.[k];
      const dims = req.conv ? [req.groups, t.rows, t.cols] : [t.rows, t.cols];
      if (into) fetches[t.name] = new (loadOrt().Tensor)('float32', into, dims);
    });
  }
  return fetches;
}

/**
 * Folds one batch's reductions into `acc`. On the `last` batch the Hessian's 2/rows scale is applied in the same loop
 * (fl(fl(h + x) · s), the operations finish() would do in a second pass over the K×K float64 matrices — on the 245 M
 * LLM 1.25 GB of memory-bound traffic).
 */
function accumulate(acc: Accumulator, r: ort.InferenceSession.ReturnType, first: boolean, last: boolean): void {
  const { req, out } = acc;
  if (acc.scaled) throw new Error(`statistics of "${req.activation}": a batch after the last one`);
  const dims = Array.from(r[out.shape].data as BigInt64Array, Number);
  addInto(acc.sumSq, toFloat32(r[out.sumSq]), `statistics of "${req.activation}"`);
  if (!req.conv) {
    const last = dims[dims.length - 1];
    if (last !== req.K) {
      throw new InputError(
        'activation-shape',
        `activation "${req.activation}" has last dim ${last} but the weight's K is ${req.K}`,
      );
    }
    const rows = dims.slice(0, -1).reduce((a, b) => a * b, 1);
    acc.sqCount += rows;
    acc.rows += rows;
  } else {
    const g = req.conv;
    if (dims.length !== g.spatial + 2 || dims[1] !== g.cg * g.group) {
      throw new InputError(
        'activation-shape',
        `Conv input "${req.activation}" has shape [${dims.join(', ')}], expected ${g.cg * g.group} channels`,
      );
    }
    const h = g.spatial === 2 ? dims[2] : 1;
    const w = g.spatial === 2 ? dims[3] : dims[2];
    const o = outputSize(g, h, w);
    acc.sqCount += dims[0] * h * w;
    acc.rows += dims[0] * o.oh * o.ow;
  }
  if (acc.hessian) {
    // The first batch's tiles were written over the Hessian's bytes (fetchesFor): foldTile sets instead of adding.
    const h = acc.hessian;
    const scale = last ? hessianScale(acc.rows) : undefined;
    const what = `Hessian of "${req.activation}"`;
    const copies = out.hessian!.map((t) => {
      const x = toFloat32(r[t.name]);
      foldTile(h, x, t, req.K, req.groups, first, scale, what);
      return x;
    });
    acc.gramOut = last ? undefined : copies;
    acc.scaled = last;
  }
  if (out.outputTrace?.length) {
    const traces = (acc.traces ??= new Map());
    for (const q of out.outputTrace) {
      const y = toFloat32(r[q.name]);
      let sum = traces.get(q.weight) ?? 0;
      for (let i = 0; i < y.length; i++) sum += y[i];
      traces.set(q.weight, sum);
    }
  }
  if (first && out.sample) {
    const t = r[out.sample];
    const x = toFloat32(t);
    const per = x.length / req.groups;
    acc.sample = {
      rows: per / req.K,
      x: Array.from({ length: req.groups }, (_, g) => x.slice(g * per, (g + 1) * per)),
    };
    if (out.outputSq?.length) {
      acc.sample.outputSquares = new Map(out.outputSq.map((q) => [q.weight, toFloat32(r[q.name])[0]]));
    }
  }
}

function addInto(acc: Float64Array, x: Float32Array, what: string): void {
  if (x.length !== acc.length) throw new Error(`${what}: ${x.length} values from ONNX Runtime, expected ${acc.length}`);
  for (let i = 0; i < x.length; i++) acc[i] += x[i];
}

function hessianScale(rows: number): number {
  return rows > 0 ? 2 / rows : 0;
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
    const scale = hessianScale(acc.rows);
    const kk = req.K * req.K;
    stats.hessian = Array.from({ length: req.groups }, (_, g) => {
      const hm = acc.hessian!.subarray(g * kk, (g + 1) * kk);
      if (!acc.scaled) for (let i = 0; i < kk; i++) hm[i] *= scale;
      return hm;
    });
    mirrorTiles(acc.hessian, acc.out.hessian!, req.K, req.groups);
  }
  if (acc.sample) stats.sample = acc.sample;
  if (acc.traces) {
    // The Hessian's own scale: (2/n)·Σ‖Y‖² = tr(W·(2/n)XᵀX·Wᵀ).
    const scale = hessianScale(acc.rows);
    stats.outputTraces = new Map([...acc.traces].map(([w, t]) => [w, t * scale]));
  }
  return stats;
}
