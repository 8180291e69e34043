// Stage "latency": dense vs compressed p50/p95 at batch 1 and a larger batch, on the execution provider used, for
// methods that declare they change which kernels run (CompressionMethod.timesLatency: quantize, slim). Sparsity
// alone changes no kernel (ONNX Runtime has no sparse GEMM), so it is not timed. A compressed model slower than the
// dense one is flagged. A batch is timed until both medians are known to ±LATENCY_TOLERANCE (quant/latency.ts),
// within LATENCY_BUDGET_SECONDS: a small model settles in a fraction of a second, a large one whose run takes
// seconds gets the runs that fit (at least one per model) instead of a fixed time; the recipe's evaluation.latency
// asks for a tighter or longer measurement. The compressed model is timed in the session evaluation ran it in
// (runner/evaluate.ts), the dense one in a session opened alike (threads not spinning; the report's note says so):
// one session open and the warm-up of evaluation's batch size fewer. Both run with ONNX Runtime's CPU arena on, its
// default and how a deployment runs a model: without it every run allocates its buffers afresh (page faults), which
// at 100M batch 8 cost the 4-bit kernels 3.9-4.2 s of CPU per run against 1.63 s and read the speed-up as 0.53×
// instead of 0.80×. The arena holds one run's high-water mark of intermediates, small beside the weights, and the
// sequential mode still holds one model at a time. ORT's memory pattern (one planned block per input shape) is off:
// with the arena it added its block beside the arena's chunks (100M SLiM output, batch 8: 1.38 GB peak vs 1.10 GB)
// for no measurable time (1.6-1.8 s CPU per run either way).
import { compareLatency } from '../quant/latency.js';
import { heldOutData, type RunState } from './state.js';

/** Half-width of the medians' 95% intervals, relative, at which a batch is timed enough. */
export const LATENCY_TOLERANCE = 0.05;
/** Most seconds spent timing one batch size, both models and warm-ups together. */
export const LATENCY_BUDGET_SECONDS = 10;
/** Most timed runs per model and batch size. */
export const LATENCY_MAX_RUNS = 50;
/** Options of the timed sessions, evaluation's kept compressed one included (see above). */
export const TIMED_SESSION_OPTIONS = { cpuMemArena: true, memPattern: false } as const;

export async function measureLatency(s: RunState): Promise<void> {
  if (!s.method!.timesLatency?.(s.recipe)) return;
  const data = heldOutData(s);
  if (!data) {
    s.latency = { measured: false, reason: 'no evaluation or calibration data to time the models on' };
    return;
  }
  const asked = s.recipe.evaluation?.latency;
  await s.clock.stage(
    'latency',
    async () => {
      const evaluated = s.evaluated;
      s.evaluated = undefined;
      s.checkAbort();
      s.progress.emit('evaluate', 1, { message: 'timing dense vs compressed' });
      try {
        const latency = await compareLatency(s.inputs.modelPath, s.outPath!, data.inputs, {
          executionProviders: [s.sessions.executionProvider],
          openSession: s.sessions.openUntracked,
          batches: s.plan!.fixedBatch ? [s.plan!.fixedBatch] : [1, 8],
          budgetSeconds: asked?.budgetSeconds ?? LATENCY_BUDGET_SECONDS,
          tolerance: asked?.tolerance ?? LATENCY_TOLERANCE,
          runs: asked?.maxRuns ?? LATENCY_MAX_RUNS,
          denseBytes: s.inputBytes,
          sessionOptions: TIMED_SESSION_OPTIONS,
          ...(evaluated
            ? {
                compressed: {
                  session: evaluated.session,
                  executionProvider: s.sessions.executionProvider,
                  release: () => s.sessions.release(evaluated.session),
                  warm: evaluated.batches,
                },
              }
            : {}),
        });
        s.latency = latency as unknown as Record<string, unknown>;
        for (const row of latency.rows) {
          if (!row.slower) continue;
          s.warnings.push(
            `the compressed model is slower than the dense one at batch ${row.batch} on ${latency.executionProvider} ` +
              `(p50 ${row.compressed.p50.toFixed(2)} ms vs ${row.dense.p50.toFixed(2)} ms)`,
          );
        }
      } catch (e) {
        s.latency = { measured: false, reason: `latency could not be measured: ${(e as Error).message}` };
      } finally {
        if (evaluated) await s.sessions.release(evaluated.session);
      }
    },
    () => s.sessions.executionProvider,
  );
}
