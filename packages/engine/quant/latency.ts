// Latency of the dense model against the compressed one on the job's execution provider, for the report: p50/p95
// of session.run at batch 1 and at a larger batch, runs interleaved (dense, compressed, dense, …) so that load
// changes on a shared machine hit both alike, with a time budget (warm-ups included); a dense model over 512 MiB is
// timed apart from the compressed one instead, one session at a time, so timing never holds both models in memory.
// The caller may hand over a session already open on the compressed model (the runner: the one evaluation ran it in,
// which saves a session and the warm-up of the batch size evaluation ran); the dense one is then opened alike. Inputs are rows of
// the calibration/evaluation data when given (the batch is the first `batch` samples, repeated when there are fewer), random values of the
// declared type otherwise; symbolic dimensions other than the batch axis must then be resolvable from the data.
import type * as ort from 'onnxruntime-node';
import type { DataArray } from '../data/types.js';
import { feedsOf, openSession, type ExecutionProvider, type SessionOptions } from '../runtime/session.js';

export interface LatencyStats {
  p50: number;
  p95: number;
  runs: number;
}

export interface LatencyRow {
  batch: number;
  dense: LatencyStats;
  compressed: LatencyStats;
  /** dense p50 / compressed p50. */
  speedup: number;
  /** The compressed model is slower at this batch size. */
  slower: boolean;
}

export interface LatencyReport {
  executionProvider: ExecutionProvider;
  /** Runs alternating between the two models, or one model after the other (large models). */
  mode: 'interleaved' | 'sequential';
  rows: LatencyRow[];
  note: string;
}

export interface LatencyOptions {
  executionProviders?: readonly ExecutionProvider[];
  /** @defaultValue [1, 8] */
  batches?: number[];
  /** Timed runs per model and batch (fewer when the budget runs out). @defaultValue 50 */
  runs?: number;
  /**
   * Stop timing a batch size after this many seconds, warm-up runs included (at least one timed run per model).
   * @defaultValue 20
   */
  budgetSeconds?: number;
  intraOpNumThreads?: number;
  /** Opens each session (the runner passes its session owner's, for one record of providers and fallbacks). */
  openSession?: (model: string, opts: SessionOptions) => Promise<Opened>;
  /** Bytes of the dense model (file + external data), to choose interleaved or sequential timing. */
  denseBytes?: number;
  /** @defaultValue DEFAULT_INTERLEAVE_MAX_BYTES (512 MiB) */
  interleaveMaxBytes?: number;
  /** Options of every session opened here (the note says when the CPU arena is off). @defaultValue ORT's */
  sessionOptions?: Pick<SessionOptions, 'cpuMemArena'>;
  /**
   * A session already open on the compressed model (the one evaluation ran it in), timed instead of opening
   * `compressedPath`; the dense session is pinned to its provider. compareLatency calls `release` once done with it
   * (timed one model at a time: before the dense model opens, so the compressed model is timed first). Batch sizes in
   * `warm` have run in it already and get no warm-up. @defaultValue none: `compressedPath` is opened
   */
  compressed?: {
    session: ort.InferenceSession;
    executionProvider: ExecutionProvider;
    release(): Promise<void>;
    warm?: readonly number[];
  };
}

/** `batch` rows of every array (cycling through the samples when there are fewer). */
export function batchOf(inputs: Map<string, DataArray>, batch: number): Map<string, DataArray> {
  const out = new Map<string, DataArray>();
  for (const [name, a] of inputs) {
    const samples = a.dims[0] ?? 1;
    const per = samples > 0 ? a.data.length / samples : 0;
    const Ctor = a.data.constructor as { new (n: number): typeof a.data };
    const data = new Ctor(batch * per);
    for (let b = 0; b < batch; b++) {
      const s = b % Math.max(samples, 1);
      (data as unknown as { set(x: ArrayLike<unknown>, o: number): void }).set(
        (a.data as unknown as { subarray(x: number, y: number): ArrayLike<unknown> }).subarray(s * per, (s + 1) * per),
        b * per,
      );
    }
    out.set(name, { dtype: a.dtype, dims: [batch, ...a.dims.slice(1)], data });
  }
  return out;
}

function stats(times: number[]): LatencyStats {
  const s = [...times].sort((a, b) => a - b);
  return {
    p50: s[Math.floor(s.length * 0.5)] ?? NaN,
    p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] ?? NaN,
    runs: s.length,
  };
}

/** Dense models up to this size are timed interleaved with the compressed one (both sessions open). */
export const DEFAULT_INTERLEAVE_MAX_BYTES = 512 * 2 ** 20;

type Opened = Awaited<ReturnType<typeof openSession>>;
type Times = { dense: LatencyStats; compressed: LatencyStats }[];

/**
 * Times dense vs compressed (model files) on the data's inputs. Interleaved (both sessions open, runs alternating)
 * while the dense model is at most `interleaveMaxBytes`; larger models are timed one after the other (dense, release,
 * compressed; or compressed first when its session is given), so the job never holds both models at once.
 */
export async function compareLatency(
  densePath: string,
  compressedPath: string,
  data: Map<string, DataArray>,
  o: LatencyOptions = {},
): Promise<LatencyReport> {
  const open = o.openSession ?? openSession;
  const given = o.compressed;
  const opts = {
    executionProviders: given ? [given.executionProvider] : (o.executionProviders ?? ['cpu']),
    allowSpinning: false,
    ...(o.sessionOptions ?? {}),
    ...(o.intraOpNumThreads ? { intraOpNumThreads: o.intraOpNumThreads } : {}),
  };
  const feeds = (o.batches ?? [1, 8]).map((batch) => ({ batch, feeds: feedsOf(batchOf(data, batch)) }));
  const interleave = (o.denseBytes ?? 0) <= (o.interleaveMaxBytes ?? DEFAULT_INTERLEAVE_MAX_BYTES);
  const givenWarm = new Set(given?.warm ?? []);
  let dense: Opened | undefined;
  let comp: { session: ort.InferenceSession; release(): Promise<void> } | undefined = given;
  const openCompressed = async (ep: ExecutionProvider) => {
    const c = await open(compressedPath, { ...opts, executionProviders: [ep] });
    return { session: c.session, release: () => c.session.release() };
  };
  try {
    let times: Times;
    let order: 'interleaved' | 'dense-first' | 'compressed-first';
    if (interleave) {
      order = 'interleaved';
      dense = await open(densePath, opts);
      comp ??= await openCompressed(dense.executionProvider);
      times = await timeAll(feeds, [dense.session, comp.session], o, 1, [new Set(), givenWarm]);
    } else if (given) {
      order = 'compressed-first';
      const c = await timeAll(feeds, [given.session], o, 0.5, [givenWarm]);
      comp = undefined;
      await given.release();
      dense = await open(densePath, opts);
      const d = await timeAll(feeds, [dense.session], o, 0.5);
      times = d.map((t, i) => ({ dense: t.dense, compressed: c[i].dense }));
    } else {
      order = 'dense-first';
      dense = await open(densePath, opts);
      const d = await timeAll(feeds, [dense.session], o, 0.5);
      const ep = dense.executionProvider;
      await dense.session.release();
      dense = undefined;
      comp = await openCompressed(ep);
      const c = await timeAll(feeds, [comp.session], o, 0.5);
      times = d.map((t, i) => ({ dense: t.dense, compressed: c[i].dense }));
    }
    return {
      executionProvider: (dense?.executionProvider ?? given?.executionProvider)!,
      mode: interleave ? 'interleaved' : 'sequential',
      rows: feeds.map(({ batch }, i) => {
        const { dense: d, compressed: c } = times[i];
        return { batch, dense: d, compressed: c, speedup: d.p50 / c.p50, slower: c.p50 > d.p50 };
      }),
      note: latencyNote(order, o),
    };
  } finally {
    await dense?.session.release().catch(() => {});
    await comp?.release().catch(() => {});
  }
}

function latencyNote(order: 'interleaved' | 'dense-first' | 'compressed-first', o: LatencyOptions): string {
  const sequential =
    ' (one model in memory at a time: the dense model is over the interleaving limit, so load changes between the ' +
    'two halves are not cancelled out)';
  const how = {
    interleaved: 'milliseconds per session.run, dense and compressed interleaved',
    'dense-first': `milliseconds per session.run, dense then compressed${sequential}`,
    'compressed-first': `milliseconds per session.run, compressed then dense${sequential}`,
  }[order];
  return (
    how +
    '; p50/p95 over the runs, after one to three warm-up runs per model and batch (none for a batch the compressed ' +
    "model's session had already run)" +
    (o.compressed
      ? '; the compressed model is timed in the session evaluation ran it in, the dense one in its own'
      : '') +
    (o.sessionOptions?.cpuMemArena === false ? "; sessions without ONNX Runtime's CPU memory arena" : '') +
    '; intra-op threads do not spin between runs (ORT session option session.intra_op.allow_spinning = 0)'
  );
}

/** Warm-up runs per session and batch before timing, at most (the first always; see timeAll). */
export const WARMUP_RUNS = 3;

/**
 * Times each batch on one session, or on two sessions alternating run by run; `budgetShare` of budgetSeconds is
 * spent per batch, warm-up included. Each session first runs the batch once untimed (its first run allocates and
 * plans memory for the shape); up to WARMUP_RUNS warm-ups while they take under a tenth of the budget, so a model
 * whose run takes seconds is not run three times for nothing. At least one timed run per session, even past the
 * budget. Batch sizes in a session's `warm` set get no warm-up there. Returns per batch the first session's stats as
 * `dense` and the second's as `compressed`.
 */
async function timeAll(
  feeds: { batch: number; feeds: Record<string, ort.Tensor> }[],
  sessions: ort.InferenceSession[],
  o: LatencyOptions,
  budgetShare = 1,
  warm: ReadonlySet<number>[] = [],
): Promise<Times> {
  const out: Times = [];
  for (const { batch, feeds: f } of feeds) {
    const budget = (o.budgetSeconds ?? 20) * 1000 * budgetShare;
    const deadline = performance.now() + budget;
    for (let k = 0; k < sessions.length; k++) {
      if (warm[k]?.has(batch)) continue;
      const start = performance.now();
      for (let i = 0; i < WARMUP_RUNS && (i === 0 || performance.now() - start < budget / 10 / sessions.length); i++) {
        await sessions[k].run(f);
      }
    }
    const times: number[][] = sessions.map(() => []);
    for (let i = 0; i < (o.runs ?? 50) && (i === 0 || performance.now() < deadline); i++) {
      for (let k = 0; k < sessions.length; k++) {
        const t0 = performance.now();
        await sessions[k].run(f);
        times[k].push(performance.now() - t0);
      }
    }
    out.push({ dense: stats(times[0]), compressed: stats(times[times.length - 1]) });
  }
  return out;
}
