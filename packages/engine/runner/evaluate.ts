// Stage "evaluate": dense vs compressed on the evaluation data (else the calibration data), one model at a time
// (runtime/evaluate.ts): the dense model's outputs first, its session released, then the compressed model. Dense
// outputs over 256 MiB go to a scratch file in the job's scratch folder rather than memory.
import { planBatches } from '../data/dataset.js';
import { evaluateModels } from '../runtime/evaluate.js';
import { heldOutData, type RunState } from './state.js';

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
      const plan = s.plan!;
      const ranges = planBatches(evalSet.samples, plan.batchSize, recipe.evaluation?.samples, plan.fixedBatch);
      const open = (path: string) => async () => {
        // No CPU arena: it would keep the run's high-water mark of intermediates next to the weights (one forward
        // pass per batch, so the arena saves little time here).
        const session = await s.sessions.open(path, { cpuMemArena: false });
        return { session, release: () => s.sessions.release(session) };
      };
      const q = await evaluateModels({
        dense: open(s.inputs.modelPath),
        compressed: open(s.outPath!),
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
