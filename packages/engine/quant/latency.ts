// Latency of the dense model against the compressed one on the job's execution provider, for the report: p50/p95
// of session.run at batch 1 and at a larger batch, runs interleaved (dense, compressed, dense, …) so that load
// changes on a shared machine hit both alike, with a time budget. Inputs are rows of the calibration/evaluation
// data when given (the batch is the first `batch` samples, repeated when there are fewer), random values of the
// declared type otherwise; symbolic dimensions other than the batch axis must then be resolvable from the data.
import * as ort from 'onnxruntime-node';
import type { DataArray } from '../data/types.js';
import { feedsOf, openSession, type ExecutionProvider } from '../runtime/session.js';

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
  rows: LatencyRow[];
  note: string;
}

export interface LatencyOptions {
  executionProviders?: readonly ExecutionProvider[];
  /** @defaultValue [1, 8] */
  batches?: number[];
  /** Timed runs per model and batch (fewer when the budget runs out). @defaultValue 50 */
  runs?: number;
  /** Stop timing a batch size after this many seconds. @defaultValue 20 */
  budgetSeconds?: number;
  intraOpNumThreads?: number;
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

/** Times dense vs compressed (model files) on the data's inputs. */
export async function compareLatency(
  densePath: string,
  compressedPath: string,
  data: Map<string, DataArray>,
  o: LatencyOptions = {},
): Promise<LatencyReport> {
  const providers = o.executionProviders ?? ['cpu'];
  const opts = {
    executionProviders: providers,
    allowSpinning: false,
    ...(o.intraOpNumThreads ? { intraOpNumThreads: o.intraOpNumThreads } : {}),
  };
  const dense = await openSession(densePath, opts);
  const comp = await openSession(compressedPath, { ...opts, executionProviders: [dense.executionProvider] });
  try {
    const rows: LatencyRow[] = [];
    for (const batch of o.batches ?? [1, 8]) {
      const feeds: Record<string, ort.Tensor> = feedsOf(batchOf(data, batch));
      for (let i = 0; i < 3; i++) {
        await dense.session.run(feeds);
        await comp.session.run(feeds);
      }
      const td: number[] = [];
      const tc: number[] = [];
      const deadline = performance.now() + (o.budgetSeconds ?? 20) * 1000;
      for (let i = 0; i < (o.runs ?? 50) && performance.now() < deadline; i++) {
        let t0 = performance.now();
        await dense.session.run(feeds);
        td.push(performance.now() - t0);
        t0 = performance.now();
        await comp.session.run(feeds);
        tc.push(performance.now() - t0);
      }
      const d = stats(td);
      const c = stats(tc);
      rows.push({ batch, dense: d, compressed: c, speedup: d.p50 / c.p50, slower: c.p50 > d.p50 });
    }
    return {
      executionProvider: dense.executionProvider,
      rows,
      note: 'milliseconds per session.run, dense and compressed interleaved; p50/p95 over the runs; intra-op threads do not spin between runs (ORT session option session.intra_op.allow_spinning = 0)',
    };
  } finally {
    await dense.session.release();
    await comp.session.release();
  }
}
