// The job runner: load → plan calibration → compress (calibrating lazily) → write → evaluate → latency → report.json.
// The CLI and the worker call exactly runRecipe. Each stage is a function over one run state (runner/*.ts), timed
// with its peak memory for report.stages; progress is monotone over stages; the abort signal is checked between
// layers and between ONNX Runtime runs; every ONNX Runtime session goes through one owner (runner/sessions.ts),
// which tries the execution providers in order and records the one that ran.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputErrorWithArtifacts, type JobInputs, type JobOptions, type JobResult } from './job.js';
import { writeFailureArtifacts } from './runner/artifacts.js';
import { closeModel } from './onnx/model.js';
import { parseRecipe, type Recipe } from './recipe.js';
import { planCalibration } from './runner/calibrate.js';
import { compress } from './runner/compress.js';
import { evaluate } from './runner/evaluate.js';
import { measureLatency } from './runner/latency.js';
import { loadInputs } from './runner/load.js';
import { Progress } from './runner/progress.js';
import { writeReport } from './runner/report.js';
import { SessionOwner } from './runner/sessions.js';
import { StageClock } from './runner/stages.js';
import type { RunState } from './runner/state.js';
import { writeOutput } from './runner/write.js';

export { DEFAULT_MAX_HESSIAN_BYTES } from './runner/state.js';
export { ENGINE_VERSION } from './runner/version.js';

export async function runRecipe(recipeInput: Recipe, inputs: JobInputs, opts: JobOptions = {}): Promise<JobResult> {
  const s = await openRun(recipeInput, inputs, opts);
  try {
    await loadInputs(s);
    await planCalibration(s);
    await compress(s);
    await writeOutput(s);
    await evaluate(s);
    await measureLatency(s);
    return await writeReport(s);
  } catch (e) {
    if (e instanceof InputErrorWithArtifacts) await writeFailureArtifacts(e, s);
    throw e;
  } finally {
    await closeRun(s);
  }
}

async function openRun(recipeInput: Recipe, inputs: JobInputs, opts: JobOptions): Promise<RunState> {
  const started = performance.now();
  const recipe = parseRecipe(recipeInput);
  const warnings: string[] = [];
  const scratch = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'onnx-compress-'));
  return {
    recipe,
    inputs,
    opts,
    started,
    progress: new Progress(opts.onProgress),
    checkAbort: () => opts.signal?.throwIfAborted(),
    scratch,
    warnings,
    sessions: new SessionOwner(opts.executionProviders, warnings, scratch),
    clock: new StageClock(),
  };
}

async function closeRun(s: RunState): Promise<void> {
  s.clock.stop();
  await s.scorer?.close().catch(() => {});
  await s.plan?.collector?.close().catch(() => {}); // a capture session left open by a failed stage
  await s.denseOutputs?.close().catch(() => {}); // recorded for an evaluation that did not run
  await s.sessions.releaseAll();
  if (s.model) closeModel(s.model);
  await rm(s.scratch, { recursive: true, force: true });
}
