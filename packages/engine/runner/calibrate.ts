// Stage "load", second half: plan calibration and prove ONNX Runtime can load the input. The calibration batches
// are planned, one statistics request is made per selected weight's activation (a Hessian when the method declares
// one, bounded by maxHessianBytes; otherwise a bounded row sample for the layer error), and the lazy StatsCollector
// opens its first capture session (the dense model with the reductions appended, runtime/capture.ts): its passes
// run when the method first asks for a layer's statistics (stage "calibrate", nested in "compress").
// ONNX Runtime must be able to load the input: cycles, dangling inputs, type errors and unknown operators are only
// found there, and a job must not "succeed" with a model nobody can run. The statistics session proves it; without
// one a weight-free skeleton of the graph is checked (runtime/load-check.ts), which costs milliseconds instead of a
// copy of the weights. Evaluation opens its own sessions later, one at a time (runner/evaluate.ts) — except the dense
// one: the dense outputs evaluation compares against are recorded during the first pass (DenseOutputs;
// recordDenseOutputs below).
import { fixedBatchSize, planBatches, type Batch } from '../data/dataset.js';
import { InputError } from '../job-parts.js';
import { closeModel, loadModel } from '../onnx/model.js';
import type { WeightRef } from '../onnx/weights.js';
import type * as ort from 'onnxruntime-node';
import { DenseOutputs, runDense } from '../runtime/evaluate.js';
import { consumerOutput, passCut, statsRequestFor } from '../runtime/calibration.js';
import { hessianBytes, StatsCollector, type StatsCollectorOptions, type StatsRequest } from '../runtime/stats.js';
import {
  DEFAULT_BATCH,
  ERROR_SAMPLE_ROWS,
  DEFAULT_MAX_HESSIAN_BYTES,
  DEFAULT_SAMPLES,
  evaluationRanges,
  heldOutData,
  type CalibrationPlan,
  type RunState,
} from './state.js';

/**
 * Dense outputs recorded in the calibration pass are held in memory up to this, the rest go to the job's scratch
 * folder: they wait through the whole compress stage, whose peak they must not raise (LM logits: 131 MB at 8 × 128
 * tokens and a 32 000-token vocabulary).
 */
const RECORDED_OUTPUTS_HELD_BYTES = 16 * 2 ** 20;

export async function planCalibration(s: RunState): Promise<void> {
  await s.clock.stage(
    'load',
    async () => {
      const plan = batchPlan(s);
      s.plan = plan;
      const reqs = s.calibration && s.method!.calibration(s.recipe) !== 'none' && plan.ranges ? requests(s, plan) : [];
      if (reqs.length) await openCollector(s, plan, reqs);
      else await s.sessions.checkLoadable(s.model!, s.scratch);
      s.checkAbort();
    },
    () => s.sessions.executionProvider,
  );
}

function batchPlan(s: RunState): CalibrationPlan {
  const { recipe, calibration } = s;
  const fixedBatch = fixedBatchSize(s.specs!);
  const batchSize = recipe.calibration?.batchSize ?? DEFAULT_BATCH;
  const ranges = calibration
    ? planBatches(calibration.samples, batchSize, recipe.calibration?.samples ?? DEFAULT_SAMPLES, fixedBatch)
    : undefined;
  if (ranges?.dropped) {
    s.warnings.push(`${ranges.dropped} calibration samples left out: the model fixes the batch size at ${fixedBatch}`);
  }
  return {
    ranges,
    batchSize,
    fixedBatch,
    maxHessianBytes: recipe.calibration?.maxHessianBytes ?? DEFAULT_MAX_HESSIAN_BYTES,
    requestOf: new Map<WeightRef, StatsRequest>(),
  };
}

/**
 * One request per selected weight whose activation can be captured. Methods that need no Hessian keep no K×K matrix:
 * their layer error comes from a row sample. A Hessian over the cap fails the job.
 */
function requests(s: RunState, plan: CalibrationPlan): StatsRequest[] {
  const wantsHessian = s.method!.hessian(s.recipe);
  const { maxHessianBytes } = plan;
  const reqs: StatsRequest[] = [];
  for (const w of s.selected!) {
    if (!w.activation || !w.activationInMainGraph) continue;
    let req: StatsRequest;
    try {
      req = statsRequestFor(s.model!, w, wantsHessian);
    } catch (e) {
      if (wantsHessian) throw e;
      s.warnings.push(`${w.name}: no calibration statistics (${(e as Error).message})`);
      continue;
    }
    // The layer's own output reduced in the pass: ‖X_s·W‖² over the sample, or with a Hessian tr(W·H·Wᵀ).
    const output = consumerOutput(s.model!, w);
    if (output) req.outputs = [output];
    if (!wantsHessian) {
      req.sampleRows = ERROR_SAMPLE_ROWS;
    } else if (hessianBytes(req) > maxHessianBytes) {
      throw new InputError(
        'hessian-too-large',
        `layer ${w.name}: its Hessian needs ${hessianBytes(req)} bytes (${req.groups}×${req.K}² float64), over ` +
          `calibration.maxHessianBytes = ${maxHessianBytes}; raise the cap or exclude the layer`,
      );
    }
    plan.requestOf.set(w, req);
    reqs.push(req);
  }
  return reqs;
}

async function openCollector(s: RunState, plan: CalibrationPlan, reqs: StatsRequest[]): Promise<void> {
  const recorded = recordDenseOutputs(s, plan);
  s.denseOutputs = recorded?.dense;
  s.progress.emit('calibrate', 0, { message: 'opening ONNX Runtime on the dense model' });
  const collector = new StatsCollector({
    dataset: s.calibration!,
    ranges: plan.ranges!.ranges,
    maxHessianBytes: plan.maxHessianBytes,
    signal: s.opts.signal,
    open: passOpener(s, plan, recorded),
    // Cuts are planned on the model as loaded, before the method edits it (prepare below).
    cutFor: (passReqs) => passCut(s.model!, [...new Set(passReqs.map((r) => r.activation))]),
    sequential: !!s.recipe.calibration?.sequential,
    ...(recorded ? { modelOutputs: recorded.modelOutputs } : {}),
    onPass: (p) =>
      s.progress.emit('calibrate', 0, {
        message: `calibration pass ${p.pass}: batch ${p.batch + 1}/${p.batches} (${p.activations} activations)`,
      }),
  });
  for (const r of reqs) collector.add(r);
  plan.collector = collector;
  // The first pass's session opens now: a model ONNX Runtime cannot load fails here, before the method starts.
  await collector.prepare();
}

/**
 * Opens each pass's capture session. The first (opened now, before the method edits anything) is on the model as
 * loaded and also fetches the model's outputs when they are recorded on the calibration batches (recordDenseOutputs)
 * and the later passes' frontiers (stats.ts cuts); the batch count decides prepacking (open-model.ts). Later passes
 * fetch only their statistics (the graph cut to what they need, from their cut on where there is one) and open on the
 * dense model read again from the input file — the statistics of every pass describe the dense model, as
 * `sequential: false` promises, however many passes the Hessian cap makes — or, with `sequential: true`, on the model
 * as compressed so far.
 */
function passOpener(
  s: RunState,
  plan: CalibrationPlan,
  recorded: ReturnType<typeof recordDenseOutputs>,
): StatsCollectorOptions['open'] {
  const calibrationRuns = plan.ranges!.ranges.length;
  let opened = 0;
  return async (reqs, extra) => {
    if (opened++ === 0) {
      return s.sessions.openCapture(s.model!, reqs, s.scratch, {
        runs: calibrationRuns,
        modelOutputs: !!recorded?.modelOutputs.record,
        ...(extra?.fetch ? { fetch: extra.fetch } : {}),
      });
    }
    if (s.recipe.calibration?.sequential) {
      return s.sessions.openCapture(s.model!, reqs, s.scratch, { runs: calibrationRuns });
    }
    const dense = await loadModel(s.inputs.modelPath);
    try {
      return await s.sessions.openCapture(dense, reqs, s.scratch, {
        runs: calibrationRuns,
        ...(extra?.cut ? { cut: extra.cut } : {}),
      });
    } finally {
      closeModel(dense);
    }
  };
}

/**
 * The dense outputs evaluation needs, recorded during the first calibration pass, so that evaluation opens only the
 * compressed model: without evaluation data, over exactly the calibration batches, the pass's session fetches the
 * compared output as well (it runs the dense model on them anyway); with evaluation data, once that pass is done and
 * its session released, a plain session on the input runs the evaluation batches, timed as stage "evaluate" (on the
 * capture session each would recompute every reduction — ONNX Runtime 1.29 runs every node whatever is fetched, a
 * Hessian's 2·T·K² per batch — and unprepacked it opens in a fraction of a second, open-model.ts). Undefined when
 * evaluation runs on other calibration batches, or its outputName is unknown (the evaluate stage reports it).
 */
function recordDenseOutputs(
  s: RunState,
  plan: CalibrationPlan,
): { dense: DenseOutputs; modelOutputs: NonNullable<StatsCollectorOptions['modelOutputs']> } | undefined {
  const data = heldOutData(s);
  if (!data) return undefined;
  const evalRanges = evaluationRanges(s, data).ranges;
  const calRanges = plan.ranges!.ranges;
  const sameBatches =
    data === s.calibration &&
    evalRanges.length === calRanges.length &&
    evalRanges.every(([a, b], i) => a === calRanges[i][0] && b === calRanges[i][1]);
  if (!s.evalData && !sameBatches) return undefined;
  const dense = new DenseOutputs({
    dataset: data,
    outputName: s.recipe.evaluation?.outputName,
    task: s.recipe.evaluation?.task,
    scratchDir: s.scratch,
    maxHeldOutputBytes: RECORDED_OUTPUTS_HELD_BYTES,
  });
  let name: string;
  try {
    name = dense.resolveOutput(s.model!.proto.graph!.output.map((o) => o.name));
  } catch {
    return undefined;
  }
  if (sameBatches) {
    return {
      dense,
      modelOutputs: {
        names: [name],
        record: (r: ort.InferenceSession.ReturnType, batch: Batch) => dense.add(r[name] as ort.Tensor, batch),
      },
    };
  }
  return {
    dense,
    modelOutputs: {
      names: [name],
      // A plain session on the input (the dense model whatever the method edited since), opened once the capture
      // session is released: one copy of the weights at a time, and no reductions run on the evaluation batches.
      after: () =>
        s.clock.stage(
          'evaluate',
          async () => {
            s.progress.emit('calibrate', 0, { message: 'running the dense model on the evaluation data' });
            const session = await s.sessions.open(s.inputs.modelPath, { cpuMemArena: false, runs: evalRanges.length });
            try {
              await runDense(session, dense, data, evalRanges, { signal: s.opts.signal });
            } finally {
              await s.sessions.release(session);
            }
          },
          () => s.sessions.executionProvider,
        ),
    },
  };
}
