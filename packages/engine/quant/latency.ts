// Latency of the dense model against the compressed one on the job's execution provider, for the report: p50/p95
// of session.run at batch 1 and at a larger batch, runs interleaved (dense, compressed, dense, …) so that load
// changes on a shared machine hit both alike; a dense model over 512 MiB is timed apart from the compressed one
// instead, one session at a time, so timing never holds both models in memory. Timing a batch stops as soon as the
// measurement is sound, not after a fixed time: once every model's median is known to within `tolerance` (its 95%
// order-statistic interval, reported as ci95) after `minRuns` runs, or when the next run would end past the batch's
// budget (warm-ups included; at least one run per model). A larger batch size whose runs alone would overrun its budget
// — one run per model, and the warm-up it needs, estimated from the previous batch size's medians scaled by the batch
// — is not timed at all and is listed in `skipped` with the estimate (a 1 B LLM at 8 × 128 tokens: ~10 s a run, three
// runs and a prepacked session against a 10 s budget; raise evaluation.latency.budgetSeconds to time it).
// A session is warmed once, at its first batch; without the
// CPU arena a run at a new batch size allocates as every later run does, so it gets no warm-up of its own.
// The caller may hand over a session already open on the compressed model (the runner: the one evaluation ran it in,
// which saves a session and its warm-up); the dense one is then opened alike. Inputs are rows of the
// calibration/evaluation data when given (the batch is the first `batch` samples, repeated when there are fewer),
// random values of the declared type otherwise; symbolic dimensions other than the batch axis must then be resolvable
// from the data.
import type * as ort from 'onnxruntime-node';
import type { DataArray } from '../data/types.js';
import { feedsOf, openSession, type ExecutionProvider, type SessionOptions } from '../runtime/session.js';

export interface LatencyStats {
  p50: number;
  p95: number;
  runs: number;
  /**
   * 95% confidence interval of the median [low, high] from the runs' order statistics (distribution-free); absent
   * below 6 runs, too few for one.
   */
  ci95?: [number, number];
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
  /** Batch sizes left untimed because their runs alone would overrun the budget (file comment); absent when none. */
  skipped?: { batch: number; estimatedSeconds: number; budgetSeconds: number; reason: string }[];
  note: string;
}

export interface LatencyOptions {
  executionProviders?: readonly ExecutionProvider[];
  /** @defaultValue [1, 8] */
  batches?: number[];
  /** Timed runs per model and batch (fewer when the budget runs out). @defaultValue 50 */
  runs?: number;
  /**
   * Time a batch size for at most this many seconds, warm-up runs included: no run starts that would end past it
   * (at least one timed run per model).
   * @defaultValue 20
   */
  budgetSeconds?: number;
  /**
   * Stop timing a batch size once every model has `minRuns` runs and the 95% interval of its median lies within
   * ± tolerance × p50. @defaultValue none: runs until `runs` or the budget
   */
  tolerance?: number;
  /** Runs per model before `tolerance` may stop a batch. @defaultValue MIN_CI_RUNS (6) */
  minRuns?: number;
  intraOpNumThreads?: number;
  /**
   * The clock runs are timed with, in milliseconds (tests pass a simulated one, so that when timing stops does not
   * depend on how busy the machine is). @defaultValue performance.now
   */
  now?: () => number;
  /** Opens each session (the runner passes its session owner's, for one record of providers and fallbacks). */
  openSession?: (model: string, opts: SessionOptions) => Promise<Opened>;
  /** Bytes of the dense model (file + external data), to choose interleaved or sequential timing. */
  denseBytes?: number;
  /** @defaultValue DEFAULT_INTERLEAVE_MAX_BYTES (512 MiB) */
  interleaveMaxBytes?: number;
  /** Options of every session opened here (the note says whether the CPU arena is on). @defaultValue ORT's */
  sessionOptions?: Pick<SessionOptions, 'cpuMemArena' | 'memPattern'>;
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

/** The fewest runs whose extremes bound the median with 95% confidence (1 − 2 · 2⁻⁶ = 96.9%). */
export const MIN_CI_RUNS = 6;

/**
 * 0-based ranks [k, n − 1 − k] of the sorted runs that bound the median with at least `confidence`: the number of
 * runs below the true median is Binomial(n, ½) whatever the distribution, so [x₍ₖ₎, x₍ₙ₋₁₋ₖ₎] misses it with
 * probability 2·P(B ≤ k); k is the largest with P(B ≤ k) ≤ (1 − confidence) / 2. Undefined when even the extremes
 * do not reach the confidence (under 6 runs at 95%).
 */
export function medianCiRanks(n: number, confidence = 0.95): [number, number] | undefined {
  const tail = (1 - confidence) / 2;
  let p = 0.5 ** n; // P(B = j), from j = 0
  let cum = p;
  let k = -1;
  for (let j = 0; j < n && cum <= tail; j++) {
    k = j;
    p = (p * (n - j)) / (j + 1);
    cum += p;
  }
  return k < 0 ? undefined : [k, n - 1 - k];
}

export function latencyStats(times: readonly number[]): LatencyStats {
  const s = [...times].sort((a, b) => a - b);
  const out: LatencyStats = {
    p50: s[Math.floor(s.length * 0.5)] ?? NaN,
    p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] ?? NaN,
    runs: s.length,
  };
  const ranks = medianCiRanks(s.length);
  if (ranks) out.ci95 = [s[ranks[0]], s[ranks[1]]];
  return out;
}

/** Whether the median's 95% interval lies within ± tolerance × p50, from at least minRuns runs. */
function settled(times: readonly number[], tolerance: number, minRuns: number): boolean {
  if (times.length < Math.max(minRuns, 1)) return false;
  const { p50, ci95 } = latencyStats(times);
  return !!ci95 && ci95[1] - p50 <= tolerance * p50 && p50 - ci95[0] <= tolerance * p50;
}

/** Dense models up to this size are timed interleaved with the compressed one (both sessions open). */
export const DEFAULT_INTERLEAVE_MAX_BYTES = 512 * 2 ** 20;

type Opened = Awaited<ReturnType<typeof openSession>>;
/** Per batch size asked for: its stats, or why it was not timed. */
type Times = ({ dense: LatencyStats; compressed: LatencyStats } | Skipped)[];
type Skipped = { skipped: true; estimatedMs: number; budgetMs: number };
type Feed = { batch: number; feeds: Record<string, ort.Tensor> };

const isSkipped = (t: Times[number]): t is Skipped => 'skipped' in t;

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
      const d = await timeAll(feeds, [dense.session], o, 0.5, [], c.map(isSkipped));
      times = pairUp(c, d, 'compressed-first');
    } else {
      order = 'dense-first';
      dense = await open(densePath, opts);
      const d = await timeAll(feeds, [dense.session], o, 0.5);
      const ep = dense.executionProvider;
      await dense.session.release();
      dense = undefined;
      comp = await openCompressed(ep);
      const c = await timeAll(feeds, [comp.session], o, 0.5, [], d.map(isSkipped));
      times = pairUp(d, c, 'dense-first');
    }
    const skipped = feeds.flatMap(({ batch }, i) => {
      const t = times[i];
      return isSkipped(t) ? [skippedRow(batch, t)] : [];
    });
    return {
      executionProvider: (dense?.executionProvider ?? given?.executionProvider)!,
      mode: interleave ? 'interleaved' : 'sequential',
      rows: feeds.flatMap(({ batch }, i) => {
        const t = times[i];
        if (isSkipped(t)) return [];
        const { dense: d, compressed: c } = t;
        return [{ batch, dense: d, compressed: c, speedup: d.p50 / c.p50, slower: c.p50 > d.p50 }];
      }),
      ...(skipped.length ? { skipped } : {}),
      note: latencyNote(order, o),
    };
  } finally {
    await dense?.session.release().catch(() => {});
    await comp?.release().catch(() => {});
  }
}

/** One model's times after the other's (each timeAll on one session reports it as `dense`), batch by batch. */
function pairUp(first: Times, second: Times, order: 'dense-first' | 'compressed-first'): Times {
  return first.map((a, i) => {
    const b = second[i];
    if (isSkipped(a)) return a;
    if (isSkipped(b)) return b;
    return order === 'dense-first' ? { dense: a.dense, compressed: b.dense } : { dense: b.dense, compressed: a.dense };
  });
}

function skippedRow(batch: number, t: Skipped): NonNullable<LatencyReport['skipped']>[number] {
  const estimatedSeconds = +(t.estimatedMs / 1000).toFixed(2);
  const budgetSeconds = +(t.budgetMs / 1000).toFixed(2);
  return {
    batch,
    estimatedSeconds,
    budgetSeconds,
    reason:
      `not timed: its runs would take about ${estimatedSeconds} s (from the previous batch size, scaled), over ` +
      `the ${budgetSeconds} s budget; raise evaluation.latency.budgetSeconds to time it`,
  };
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
  const arenaOff = o.sessionOptions?.cpuMemArena === false;
  return (
    how +
    `; p50/p95 over each row's runs (ci95: the median's 95% interval from the runs' order statistics, from ` +
    `${MIN_CI_RUNS} runs)` +
    stopNote(order, o) +
    '; one warm-up run per session (up to three while cheap) at its first batch size' +
    (arenaOff
      ? ', none at a later one (without the CPU arena every run allocates afresh, the first at a size as the next)'
      : ' and at each later one') +
    (o.compressed
      ? "; none for a batch size the compressed model's session had run in evaluation; the compressed model is timed " +
        'in the session evaluation ran it in, the dense one in its own'
      : '') +
    (arenaOff
      ? "; sessions without ONNX Runtime's CPU memory arena"
      : "; sessions with ONNX Runtime's CPU memory arena (its default, as a deployment runs the model)") +
    (o.sessionOptions?.memPattern === false ? ' and without its memory pattern (the same time, less memory)' : '') +
    '; intra-op threads do not spin between runs (ORT session option session.intra_op.allow_spinning = 0)'
  );
}

/** When the timing of a batch stopped, for the note. */
function stopNote(order: 'interleaved' | 'dense-first' | 'compressed-first', o: LatencyOptions): string {
  const budget = (o.budgetSeconds ?? 20) * (order === 'interleaved' ? 1 : 0.5);
  const settled =
    o.tolerance !== undefined
      ? `once every model's ci95 was within ±${+(o.tolerance * 100).toFixed(2)}% of its p50 after at least ` +
        `${Math.max(o.minRuns ?? MIN_CI_RUNS, 1)} runs, `
      : '';
  return (
    `; a batch size was timed until ${settled}${o.runs ?? 50} runs, or the last run that fit its budget of ` +
    `${+budget.toFixed(2)} s ${order === 'interleaved' ? 'for both models' : 'per model'} (warm-ups included; at ` +
    'least one run per model); a larger batch size whose runs alone would overrun its budget (estimated from the ' +
    'previous batch size, scaled) was not timed (skipped)'
  );
}

/** Warm-up runs per session before timing, at most (the first always; see warmUp). */
export const WARMUP_RUNS = 3;

/**
 * Times each batch on one session, or on two sessions alternating run by run; `budgetShare` of budgetSeconds is
 * spent per batch, warm-up included. Each session is warmed up (warmUp) and then timed in rounds until `runs`, until
 * every session's median is settled to `tolerance`, or until the next round would end past the budget (at least one
 * timed run per session). `warm[k]` lists batch sizes session k has run already (evaluation's). Returns per batch
 * the first session's stats as `dense` and the second's as `compressed`.
 */
async function timeAll(
  feeds: Feed[],
  sessions: ort.InferenceSession[],
  o: LatencyOptions,
  budgetShare = 1,
  warm: readonly (readonly number[] | ReadonlySet<number>)[] = [],
  /**
   * Per feed, whether to leave it out, as the other model's half decided (one model timed after the other: a row needs
   * both, so the second follows the first). @defaultValue decided here, from the estimate
   */
  leaveOut?: readonly boolean[],
): Promise<Times> {
  const ran = sessions.map((_, k) => new Set(warm[k]));
  const arena = o.sessionOptions?.cpuMemArena !== false;
  const out: Times = [];
  let prev: { batch: number; p50: number[] } | undefined;
  for (const [i, { batch, feeds: f }] of feeds.entries()) {
    const budget = (o.budgetSeconds ?? 20) * 1000 * budgetShare;
    const estimatedMs = prev && !leaveOut ? estimateMs(prev, batch, sessions, ran, arena) : 0;
    if (leaveOut ? leaveOut[i] : estimatedMs > budget) {
      out.push({ skipped: true, estimatedMs, budgetMs: budget });
      continue;
    }
    const deadline = clockOf(o)() + budget;
    for (let k = 0; k < sessions.length; k++) {
      await warmUp(sessions[k], f, ran[k], batch, arena, budget / 10 / sessions.length, clockOf(o));
    }
    const times = await timedRounds(sessions, f, deadline, o);
    const stats = times.map(latencyStats);
    prev = { batch, p50: stats.map((t) => t.p50) };
    out.push({ dense: stats[0], compressed: stats[stats.length - 1] });
  }
  return out;
}

/**
 * What timing `batch` costs at the least: one timed run per session plus the warm-up each would need, every run
 * estimated as the previous batch size's median scaled by batch / previous batch (how a run's work grows).
 */
function estimateMs(
  prev: { batch: number; p50: number[] },
  batch: number,
  sessions: ort.InferenceSession[],
  ran: Set<number>[],
  arena: boolean,
): number {
  let ms = 0;
  sessions.forEach((_, k) => {
    const run = (prev.p50[k] * batch) / prev.batch;
    const warmUp = !ran[k].has(batch) && (ran[k].size === 0 || arena);
    ms += run * (warmUp ? 2 : 1);
  });
  return ms;
}

/**
 * Runs `session` on `batch` untimed as far as timing it needs: a session's first run (it initialises the session and
 * plans memory for the shape), up to WARMUP_RUNS while they take under `cheapMs`, so a model whose run takes seconds
 * is not run three times for nothing; nothing for a batch it has run; and with the CPU arena off nothing for a new
 * batch in a session that has run, since each run then allocates its memory afresh, the first at a shape as any
 * later one (measured at 250 M parameters: a first batch-8 run took 4.07 s of CPU against 4.2–4.5 s for the next
 * ones). With the arena on, a new batch grows the arena, so it gets its warm-up.
 */
async function warmUp(
  session: ort.InferenceSession,
  f: Record<string, ort.Tensor>,
  ran: Set<number>,
  batch: number,
  arena: boolean,
  cheapMs: number,
  now: () => number,
): Promise<void> {
  const needed = !ran.has(batch) && (ran.size === 0 || arena);
  ran.add(batch);
  if (!needed) return;
  const start = now();
  for (let i = 0; i < WARMUP_RUNS && (i === 0 || now() - start < cheapMs); i++) await session.run(f);
}

/** Timed rounds (one run per session) of one batch; see timeAll for when they stop. */
async function timedRounds(
  sessions: ort.InferenceSession[],
  f: Record<string, ort.Tensor>,
  deadline: number,
  o: LatencyOptions,
): Promise<number[][]> {
  const times: number[][] = sessions.map(() => []);
  const done = () =>
    o.tolerance !== undefined && times.every((t) => settled(t, o.tolerance!, o.minRuns ?? MIN_CI_RUNS));
  const now = clockOf(o);
  let round = 0;
  for (let i = 0; i < (o.runs ?? 50) && (i === 0 || (now() + round <= deadline && !done())); i++) {
    const r0 = now();
    for (let k = 0; k < sessions.length; k++) {
      const t0 = now();
      await sessions[k].run(f);
      times[k].push(now() - t0);
    }
    round = now() - r0;
  }
  return times;
}

function clockOf(o: LatencyOptions): () => number {
  return o.now ?? (() => performance.now());
}
