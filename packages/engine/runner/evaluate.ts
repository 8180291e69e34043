// Stage "evaluate": dense vs compressed on the evaluation data (else the calibration data), one model at a time
// (runtime/evaluate.ts): the dense model's outputs first, its session released, then the compressed model. Dense
// outputs over 256 MiB go to a scratch file in the job's scratch folder rather than memory. When the job calibrated,
// the dense outputs were recorded during the first calibration pass (runner/calibrate.ts: fetched along the
// calibration batches by its session, or, with evaluation data, by a plain dense session opened once that pass is
// done, timed as this stage); else (or if that pass never ran) the dense model is opened here. The compressed model's
// session is left open for the latency stage when the method is timed (it then times the compressed model there).
import { evaluateModels } from '../runtime/evaluate.js';
import { TIMED_SESSION_OPTIONS } from './latency.js';
import { evaluationRanges, heldOutData, type RunState } from './state.js';

export async function evaluate(s: RunState): Promise<void> {
  const evalSet = heldOutData(s);
  if (!evalSet) {
    s.quality = { evaluated: false, reason: 'no evaluation or calibration data was given' };
    return;
  }
  await s.clock.stage(
    'evaluate',
    async () => {
      s.checkAbort();
      s.progress.emit('evaluate', 0, { message: 'evaluating dense vs compressed' });
      const { recipe } = s;
      const ranges = evaluationRanges(s, evalSet);
      // The compressed model's session is kept for the latency stage when the method is timed (runner/latency.ts), so
      // it is opened as timing wants it (TIMED_SESSION_OPTIONS: ONNX Runtime's CPU arena on, as a deployment runs it)
      // and with intra-op threads that do not spin. The arena changes no output, only where a run's buffers come from.
      const timed = !!s.method!.timesLatency?.(s.recipe);
      const warm = [...new Set(ranges.ranges.map(([a, b]) => b - a))];
      const open =
        (path: string, keep = false) =>
        async () => {
          // Else no CPU arena: it would keep the run's high-water mark of intermediates next to the weights (one
          // forward pass per batch, so the arena saves little time here; Wanda's memory target counts on it), and
          // the batch count decides whether ONNX Runtime prepacks the weights (runtime/open-model.ts); a timed
          // session is prepacked, as a deployment runs it.
          const session = await s.sessions.open(
            path,
            keep
              ? { ...TIMED_SESSION_OPTIONS, allowSpinning: false }
              : { cpuMemArena: false, runs: ranges.ranges.length },
          );
          const release = async () => {
            if (keep) s.evaluated = { session, batches: warm };
            else await s.sessions.release(session);
          };
          return { session, release };
        };
      const denseOutputs = s.denseOutputs;
      s.denseOutputs = undefined; // evaluateModels takes it over (and runs the dense model if it is incomplete)
      const q = await evaluateModels({
        dense: open(s.inputs.modelPath),
        ...(denseOutputs ? { denseOutputs } : {}),
        compressed: open(s.outPath!, timed),
        dataset: evalSet,
        ranges: ranges.ranges,
        outputName: recipe.evaluation?.outputName,
        task: recipe.evaluation?.task,
        signal: s.opts.signal,
        scratchDir: s.scratch,
        onBatch: (d, t) => s.progress.emit('evaluate', d / t),
      });
      s.quality = {
        evaluated: true,
        data: s.evalData ? 'evaluation' : 'calibration',
        source: evalSet.source,
        random: !!evalSet.random,
        ...q,
        samples: ranges.used,
      };
      if (!s.evalData) s.warnings.push('no evaluation data: quality is measured on the calibration data');
    },
    () => s.sessions.executionProvider,
  );
}
