// Latency of the dense model against the compressed one on the job's execution provider, for the report: p50/p95
// of session.run at batch 1 and at a larger batch, runs interleaved (dense, compressed, dense, …) so that load
// changes on a shared machine hit both alike, with a time budget; a dense model over 512 MiB is timed before the
// compressed one instead, one session at a time, so timing never holds both models in memory. Inputs are rows of
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

/**
 * Times dense vs compressed (model files) on the data's inputs. Interleaved (both sessions open, runs alternating)
 * while the dense model is at most `interleaveMaxBytes`; larger models are timed one after the other (dense, release,
 * compressed), so the job never holds both models at once.
 */
export async function compareLatency(
  densePath: string,
  compressedPath: string,
  data: Map<string, DataArray>,
  o: LatencyOptions = {},
): Promise<LatencyReport> {
  const open = o.openSession ?? openSession;
  const opts = {
    executionProviders: o.executionProviders ?? ['cpu'],
    allowSpinning: false,
    ...(o.intraOpNumThreads ? { intraOpNumThreads: o.intraOpNumThreads } : {}),
  };
  const feeds = (o.batches ?? [1, 8]).map((batch) => ({ batch, feeds: feedsOf(batchOf(data, batch)) }));
  const interleave = (o.denseBytes ?? 0) <= (o.interleaveMaxBytes ?? DEFAULT_INTERLEAVE_MAX_BYTES);
  const dense = await open(densePath, opts);
  let comp: Opened | undefined;
  try {
    const pin = { ...opts, executionProviders: [dense.executionProvider] };
    let times: { dense: LatencyStats; compressed: LatencyStats }[];
    if (interleave) {
      comp = await open(compressedPath, pin);
      times = await timeAll(feeds, [dense.session, comp.session], o);
    } else {
      const d = await timeAll(feeds, [dense.session], o, 0.5);
      await dense.session.release();
      comp = await open(compressedPath, pin);
      const c = await timeAll(feeds, [comp.session], o, 0.5);
      times = d.map((t, i) => ({ dense: t.dense, compressed: c[i].dense }));
    }
    return {
      executionProvider: dense.executionProvider,
      mode: interleave ? 'interleaved' : 'sequential',
      rows: feeds.map(({ batch }, i) => {
        const { dense: d, compressed: c } = times[i];
        return { batch, dense: d, compressed: c, speedup: d.p50 / c.p50, slower: c.p50 > d.p50 };
      }),
      note:
        (interleave
          ? 'milliseconds per session.run, dense and compressed interleaved'
          : 'milliseconds per session.run, dense then compressed (one model in memory at a time: the dense model ' +
            'is over the interleaving limit, so load changes between the two halves are not cancelled out)') +
        '; p50/p95 over the runs; intra-op threads do not spin between runs (ORT session option ' +
        'session.intra_op.allow_spinning = 0)',
    };
  } finally {
    if (interleave) await dense.session.release().catch(() => {});
    await comp?.session.release().catch(() => {});
  }
}

/** Warm-up runs per session and batch before timing, at most (the first always; see timeAll). */
export const WARMUP_RUNS = 3;

/**
 * Times each batch on one session, or on two sessions alternating run by run; `budgetShare` of budgetSeconds is
 * spent per batch, warm-up included. Each session first runs the batch once untimed (its first run allocates and
 * plans memory for the shape); up to WARMUP_RUNS warm-ups while they take under a tenth of the budget, so a model
 * whose run takes seconds is not run three times for nothing. At least one timed run per session, even past the
 * budget. Returns per batch the first session's stats as `dense` and the second's as `compressed`.
 */
async function timeAll(
  feeds: { batch: number; feeds: Record<string, ort.Tensor> }[],
  sessions: ort.InferenceSession[],
  o: LatencyOptions,
  budgetShare = 1,
): Promise<{ dense: LatencyStats; compressed: LatencyStats }[]> {
  const out: { dense: LatencyStats; compressed: LatencyStats }[] = [];
  for (const { feeds: f } of feeds) {
    const budget = (o.budgetSeconds ?? 20) * 1000 * budgetShare;
    const start = performance.now();
    const deadline = start + budget;
    for (let i = 0; i < WARMUP_RUNS && (i === 0 || performance.now() - start < budget / 10); i++) {
      for (const s of sessions) await s.run(f);
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
