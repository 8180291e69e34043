// The job runner: load → pick layers → (calibrate lazily) → method → write → evaluate → report.json. The CLI and the
// worker call exactly runRecipe. Progress is monotone over stages; the abort signal is checked between layers and
// between ONNX Runtime runs; execution providers are tried in order and the one that ran is recorded.
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { fixedBatchSize, loadDataset, planBatches } from './data/dataset.js';
import { modelInputSpecs } from './data/inputs.js';
import { randomDataset } from './data/random.js';
import type { Dataset } from './data/types.js';
import {
  InputError,
  type JobArtifact,
  type JobInputs,
  type JobOptions,
  type JobProgress,
  type JobReport,
  type JobResult,
  type LayerReport,
} from './job.js';
import { methodFor } from './methods/registry.js';
import { selectWeights } from './methods/select.js';
import type { LayerStats, MethodContext, MethodProgress, MethodResult } from './methods/types.js';
import { closeModel, loadModel, saveModel, type LoadedModel } from './onnx/model.js';
import { discoverWeights, type WeightRef } from './onnx/weights.js';
import { parseRecipe, type Recipe } from './recipe.js';
import { modelDiskBytes, nonFiniteCount, weightCounts } from './report/sizes.js';
import { layerRelativeError, openStatsSession, statsRequestFor } from './runtime/calibration.js';
import { evaluateModels, type QualityReport } from './runtime/evaluate.js';
import { compareLatency, type LatencyReport } from './quant/latency.js';
import { checkLoadable } from './runtime/load-check.js';
import { HeldOutScorer } from './soup/score.js';
import { openSession, ortVersion, type ExecutionProvider } from './runtime/session.js';
import { hessianBytes, StatsCollector, type StatsRequest } from './runtime/stats.js';

/** Default cap on float64 Hessian bytes held at once (recipe.calibration.maxHessianBytes). */
export const DEFAULT_MAX_HESSIAN_BYTES = 2 * 2 ** 30;
const DEFAULT_SAMPLES = 128;
const DEFAULT_BATCH = 8;

export const ENGINE_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
})();

/** Stage spans of the overall fraction. */
const SPANS = { load: [0, 0.05], compress: [0.05, 0.8], write: [0.8, 0.85], evaluate: [0.85, 0.99] } as const;

class Progress {
  private last = 0;
  constructor(private readonly cb?: (p: JobProgress) => void) {}
  emit(stage: keyof typeof SPANS | 'calibrate' | 'done', within: number, extra: Partial<JobProgress> = {}): void {
    const span = stage === 'done' ? [1, 1] : SPANS[stage === 'calibrate' ? 'compress' : stage];
    const f = Math.max(this.last, Math.min(1, span[0] + (span[1] - span[0]) * Math.max(0, Math.min(1, within))));
    this.last = f;
    this.cb?.({ stage, fraction: f, ...extra });
  }
}

function abortCheck(signal?: AbortSignal): () => void {
  return () => signal?.throwIfAborted();
}

export async function runRecipe(recipeInput: Recipe, inputs: JobInputs, opts: JobOptions = {}): Promise<JobResult> {
  const started = performance.now();
  const recipe = parseRecipe(recipeInput);
  const progress = new Progress(opts.onProgress);
  const checkAbort = abortCheck(opts.signal);
  const warnings: string[] = [];
  const providers: ExecutionProvider[] = opts.executionProviders?.length ? [...opts.executionProviders] : ['cpu'];
  const scratch = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'onnx-compress-'));
  const sessions: ort.InferenceSession[] = [];
  let scorer: HeldOutScorer | undefined;
  let model: LoadedModel | undefined;
  try {
    progress.emit('load', 0, { message: `loading ${inputs.modelPath}` });
    const method = await methodFor(recipe);
    model = await loadModel(inputs.modelPath);
    const inputBytes = await modelDiskBytes(model, inputs.modelPath);
    checkAbort();

    // Data.
    const specs = modelInputSpecs(model.proto);
    const need = method.calibration(recipe);
    let calibration: Dataset | undefined;
    if (inputs.calibrationPath) calibration = await loadDataset(inputs.calibrationPath, specs);
    else if (recipe.calibration?.random) {
      calibration = randomDataset(specs, {
        samples: recipe.calibration.samples ?? DEFAULT_SAMPLES,
        seed: recipe.calibration.seed ?? 0,
        intRanges: vocabularyHints(model),
      });
      warnings.push(`calibration used random data (${calibration.source}): results describe noise, not real inputs`);
    }
    if (need === 'required' && !calibration) {
      throw new InputError(
        'calibration-required',
        `${describeRecipe(recipe)} needs calibration data: give a calibration file (.npz/.npy/TensorProto folder) ` +
          'or set calibration.random: true',
      );
    }
    const evalData = inputs.evalPath ? await loadDataset(inputs.evalPath, specs) : undefined;
    if (method.labels(recipe) && !(evalData?.labels ?? calibration?.labels)) {
      throw new InputError('labels-required', `${describeRecipe(recipe)} needs labels in the evaluation data`);
    }
    progress.emit('load', 1);

    // Layers.
    const all = discoverWeights(model);
    const { selected, skipped } = selectWeights(all, recipe, method, need === 'required');
    if (selected.length === 0 && !method.ingredients(recipe)) {
      // A job that would change nothing is a failed job, not a success with an unchanged model: say why per layer.
      const reasons = skipped.slice(0, 5).map((s) => `${s.weight.name}: ${s.reason}`);
      const more = skipped.length > 5 ? `; … ${skipped.length - 5} more` : '';
      throw new InputError(
        'no-layer-selected',
        `${describeRecipe(recipe)} applies to no layer of this model` +
          (skipped.length ? ` (${reasons.join('; ')}${more})` : ' (it has no MatMul/Gemm/Conv weight)'),
      );
    }

    // Statistics (lazy, in passes) when calibration data exists.
    const fixedBatch = fixedBatchSize(specs);
    const batchSize = recipe.calibration?.batchSize ?? DEFAULT_BATCH;
    const calRanges = calibration
      ? planBatches(calibration.samples, batchSize, recipe.calibration?.samples ?? DEFAULT_SAMPLES, fixedBatch)
      : undefined;
    if (calRanges?.dropped) {
      warnings.push(
        `${calRanges.dropped} calibration samples left out: the model fixes the batch size at ${fixedBatch}`,
      );
    }
    const maxHessianBytes = recipe.calibration?.maxHessianBytes ?? DEFAULT_MAX_HESSIAN_BYTES;
    const wantsHessian = method.hessian(recipe);
    let collector: StatsCollector | undefined;
    let executionProvider: ExecutionProvider = providers[providers.length - 1];
    const requestOf = new Map<WeightRef, StatsRequest>();
    let denseSession: ort.InferenceSession | undefined;
    if (calibration && need !== 'none' && calRanges) {
      const reqs: StatsRequest[] = [];
      for (const w of selected) {
        if (!w.activation || !w.activationInMainGraph) continue;
        let req: StatsRequest;
        try {
          req = statsRequestFor(model, w, true);
        } catch (e) {
          if (wantsHessian) throw e;
          warnings.push(`${w.name}: no calibration statistics (${(e as Error).message})`);
          continue;
        }
        if (hessianBytes(req) > maxHessianBytes) {
          if (wantsHessian) {
            throw new InputError(
              'hessian-too-large',
              `layer ${w.name}: its Hessian needs ${hessianBytes(req)} bytes (${req.groups}×${req.K}² float64), over ` +
                `calibration.maxHessianBytes = ${maxHessianBytes}; raise the cap or exclude the layer`,
            );
          }
          req.hessian = false;
          warnings.push(`${w.name}: Hessian over maxHessianBytes; its layer error is not reported`);
        }
        requestOf.set(w, req);
        reqs.push(req);
      }
      if (reqs.length) {
        const inputNames = new Set(specs.map((s) => s.name));
        const fetched = [...new Set(reqs.map((r) => r.activation).filter((a) => !inputNames.has(a)))];
        progress.emit('calibrate', 0, { message: 'opening ONNX Runtime on the dense model' });
        const opened = await openStatsSession(model, fetched, scratch, providers);
        warnings.push(...opened.fallbacks.map((f) => `execution provider fallback: ${f}`));
        executionProvider = opened.executionProvider;
        denseSession = opened.session;
        sessions.push(opened.session);
        collector = new StatsCollector({
          session: opened.session,
          dataset: calibration,
          ranges: calRanges.ranges,
          modelInputs: inputNames,
          maxHessianBytes,
          signal: opts.signal,
          ...(recipe.calibration?.sequential
            ? {
                reopen: async (activations: string[]) =>
                  (await openStatsSession(model!, activations, scratch, [executionProvider])).session,
              }
            : {}),
          onPass: (p) =>
            progress.emit('calibrate', 0, {
              message: `calibration pass ${p.pass}: batch ${p.batch + 1}/${p.batches} (${p.activations} activations)`,
            }),
        });
        for (const r of reqs) collector.add(r);
      }
    }

    // ONNX Runtime must be able to load the input: cycles, dangling inputs, type errors and unknown operators are
    // only found there, and a job must not "succeed" with a model nobody can run. Calibration already opened it;
    // with evaluation data it is opened now and kept for the evaluation; otherwise a weight-free skeleton of the
    // graph is checked (runtime/load-check.ts), which costs milliseconds instead of a full copy of the weights.
    if (!denseSession) {
      if (evalData ?? calibration) {
        const opened = await openSession(inputs.modelPath, { executionProviders: providers });
        warnings.push(...opened.fallbacks.map((f) => `execution provider fallback: ${f}`));
        executionProvider = opened.executionProvider;
        denseSession = opened.session;
        sessions.push(opened.session);
      } else {
        const checked = await checkLoadable(model, scratch, providers);
        warnings.push(...checked.fallbacks.map((f) => `execution provider fallback: ${f}`));
        executionProvider = checked.executionProvider;
      }
    }
    checkAbort();
    // NaN/±Inf weights make every criterion and quantizer meaningless for that layer: name them in the report.
    // Counted on the stored bytes (exponent all ones), unless the method counts them itself while it reads them.
    const nonFiniteWarning = (name: string, bad: number, total: number) =>
      `${name}: ${bad} of ${total} weights are NaN or infinite; its compressed values are not meaningful`;
    if (!method.reportsNonFinite) {
      for (const w of selected) {
        const bad = nonFiniteCount(model, w);
        if (bad)
          warnings.push(
            nonFiniteWarning(
              w.name,
              bad,
              w.shape.reduce((a, b) => a * b, 1),
            ),
          );
      }
    }

    // The method.
    const methodWarnings: string[] = [];
    const statsCalls = { count: 0 };
    const nodeCountBefore = model.proto.graph?.node.length ?? 0;
    const readers = new Map<string, number>();
    for (const r of requestOf.values()) readers.set(r.key, (readers.get(r.key) ?? 0) + 1);
    const released = new Set<WeightRef>();
    const ctx: MethodContext = {
      model,
      recipe,
      weights: selected,
      skipped,
      hasCalibration: !!collector,
      executionProvider,
      ingredients: (inputs.ingredientPaths ?? []).map((path) => ({ path, load: () => loadModel(path) })),
      tmpDir: scratch,
      signal: opts.signal,
      checkAbort,
      warn: (m) => methodWarnings.push(m),
      progress: (p: MethodProgress) =>
        progress.emit('compress', p.fraction, {
          ...(p.layer ? { layer: p.layer } : {}),
          ...(p.message ? { message: p.message } : {}),
        }),
      stats: async (w) => {
        statsCalls.count++;
        if (need === 'none') return undefined;
        const req = requestOf.get(w);
        if (!collector || !req) return undefined;
        const s = await collector.get(req.key);
        // A method that did not declare a Hessian does not get one (it was computed for the report only).
        return wantsHessian ? s : ({ ...s, hessian: undefined } as LayerStats);
      },
      release: (w) => {
        const req = requestOf.get(w);
        if (!req || released.has(w)) return;
        released.add(w);
        // A shared activation (q/k/v reading one input) is freed when the last weight reading it is done.
        const left = (readers.get(req.key) ?? 1) - 1;
        readers.set(req.key, left);
        if (left === 0) collector?.release(req.key);
      },
      relativeError: async (w, before, after) => {
        const req = requestOf.get(w);
        if (!collector || !req || !req.hessian) return null;
        return layerRelativeError(w, await collector.get(req.key), before, after);
      },
    };
    // Held-out scoring for methods that choose between candidates (greedy soups): evaluation data, else
    // calibration data; fidelity is measured against the parent (or the input model when it is not an ingredient).
    const scoreSet = evalData ?? calibration;
    if (scoreSet) {
      const paths = inputs.ingredientPaths ?? [];
      const referencePath = inputs.parentPath ?? (paths.includes(inputs.modelPath) ? undefined : inputs.modelPath);
      scorer = new HeldOutScorer({
        dataset: scoreSet,
        tmpDir: scratch,
        executionProviders: providers,
        ...(recipe.evaluation?.samples ? { samples: recipe.evaluation.samples } : {}),
        ...(recipe.evaluation?.outputName ? { outputName: recipe.evaluation.outputName } : {}),
        ...(referencePath ? { referencePath } : {}),
      });
      ctx.scorer = scorer;
    }
    if (evalData?.labels || calibration?.labels) {
      const l = (evalData?.labels ?? calibration?.labels)!;
      ctx.labels = { dims: l.dims, data: l.data as BigInt64Array | Int32Array };
    }
    progress.emit('compress', 0, { message: `${recipe.method}: ${selected.length} layers` });
    const result: MethodResult = await method.run(ctx);
    checkAbort();
    if (method.reportsNonFinite) {
      for (const l of result.layers) {
        const bad = typeof l.nonFinite === 'number' ? l.nonFinite : 0;
        if (bad)
          warnings.push(
            nonFiniteWarning(
              l.name,
              bad,
              l.shape.reduce((a, b) => a * b, 1),
            ),
          );
      }
    }
    verifyDeclarations(method.name, result, selected, skipped, need, statsCalls.count, {
      changesGraph: method.changesGraph(recipe),
      nodesBefore: nodeCountBefore,
      nodesAfter: model.proto.graph?.node.length ?? 0,
    });

    // Write.
    progress.emit('write', 0, { message: 'writing the compressed model' });
    await mkdir(inputs.outputDir, { recursive: true });
    const outName = inputs.outputName ?? 'model.onnx';
    if (/[\\/]/.test(outName) || outName === '' || outName === '.' || outName === '..') {
      throw new InputError('bad-output-name', `outputName "${outName}" must be a plain file name`);
    }
    const outPath = join(inputs.outputDir, outName);
    const saveOpts = recipe.externalData === undefined ? {} : { externalData: recipe.externalData };
    const saved = await saveModel(model, outPath, saveOpts);
    const artifacts: JobArtifact[] = [{ name: outName, path: outPath, sizeBytes: saved.modelBytes }];
    if (saved.externalBytes > 0) {
      const dataPath = `${outPath}.data`;
      artifacts.push({ name: `${outName}.data`, path: dataPath, sizeBytes: (await stat(dataPath)).size });
    }
    const outputBytes = artifacts.reduce((s, a) => s + a.sizeBytes, 0);
    // Non-zeros: layers the method reported with an exact sparsity are not re-scanned (graph-changing methods
    // store weights in other forms, so their layers are always counted from the file contents).
    const known = new Map<string, number>();
    if (!result.graphChanged) {
      for (const l of result.layers) {
        if (typeof l.sparsity === 'number' && !l.skipped) known.set(l.name, l.sparsity);
      }
    }
    const scanned = weightCounts(
      model,
      all.filter((w) => !known.has(w.name)),
    );
    const countsAfter = { parameters: scanned.parameters, nonZeros: scanned.nonZeros };
    for (const w of all) {
      const sp = known.get(w.name);
      if (sp === undefined) continue;
      const count = w.shape.reduce((a, b) => a * b, 1);
      countsAfter.parameters += count;
      countsAfter.nonZeros += Math.round(count * (1 - sp));
    }
    progress.emit('write', 1);

    // Evaluate dense vs compressed.
    let quality: Record<string, unknown> = { evaluated: false, reason: 'no evaluation or calibration data was given' };
    const evalSet = evalData ?? calibration;
    if (evalSet) {
      checkAbort();
      progress.emit('evaluate', 0, { message: 'evaluating dense vs compressed' });
      if (!denseSession) {
        const opened = await openSession(inputs.modelPath, { executionProviders: providers });
        warnings.push(...opened.fallbacks.map((f) => `execution provider fallback: ${f}`));
        executionProvider = opened.executionProvider;
        denseSession = opened.session;
        sessions.push(opened.session);
      }
      const compressed = await openSession(outPath, { executionProviders: [executionProvider] });
      sessions.push(compressed.session);
      const ranges = planBatches(evalSet.samples, batchSize, recipe.evaluation?.samples, fixedBatch);
      const q: QualityReport = await evaluateModels({
        dense: denseSession,
        compressed: compressed.session,
        dataset: evalSet,
        ranges: ranges.ranges,
        outputName: recipe.evaluation?.outputName,
        task: recipe.evaluation?.task,
        signal: opts.signal,
        onBatch: (d, t) => progress.emit('evaluate', d / t),
      });
      quality = {
        evaluated: true,
        data: evalData ? 'evaluation' : 'calibration',
        source: evalSet.source,
        random: !!evalSet.random,
        ...q,
        samples: ranges.used,
      };
      if (!evalData) warnings.push('no evaluation data: quality is measured on the calibration data');
    }

    // Latency, dense vs compressed, where the method changes which kernels run (quantize, slim): p50/p95 at batch 1
    // and a larger batch on the execution provider used, flagged when the compressed model is slower. Sparsity alone
    // changes no kernel (ONNX Runtime has no sparse GEMM), so it is not timed.
    let latency: LatencyReport | { measured: false; reason: string } | undefined;
    if (recipe.method === 'quantize' || recipe.method === 'slim') {
      if (!evalSet) latency = { measured: false, reason: 'no evaluation or calibration data to time the models on' };
      else {
        checkAbort();
        progress.emit('evaluate', 1, { message: 'timing dense vs compressed' });
        try {
          latency = await compareLatency(inputs.modelPath, outPath, evalSet.inputs, {
            executionProviders: [executionProvider],
            batches: fixedBatch ? [fixedBatch] : [1, 8],
            budgetSeconds: 10,
          });
          for (const row of latency.rows) {
            if (row.slower) {
              warnings.push(
                `the compressed model is slower than the dense one at batch ${row.batch} on ${latency.executionProvider} ` +
                  `(p50 ${row.compressed.p50.toFixed(2)} ms vs ${row.dense.p50.toFixed(2)} ms)`,
              );
            }
          }
        } catch (e) {
          latency = { measured: false, reason: `latency could not be measured: ${(e as Error).message}` };
        }
      }
    }

    // Report.
    const layers: LayerReport[] = [...result.layers, ...skipped.map(skippedRow)];
    const report: JobReport = {
      ...(result.report ?? {}),
      method: recipe.method,
      recipe,
      engineVersion: ENGINE_VERSION,
      onnxruntime: { version: ortVersion(), executionProvider },
      layers,
      summary: summarize(result.layers, skipped.length),
      quality,
      ...(latency ? { latency } : {}),
      calibration: calibration
        ? {
            source: calibration.source,
            random: !!calibration.random,
            samples: calRanges?.used ?? 0,
            batchSize: fixedBatch ?? batchSize,
            passes: collector?.passCount ?? 0,
            sequential: !!recipe.calibration?.sequential,
            maxHessianBytes,
          }
        : null,
      sizes: {
        inputBytes,
        outputBytes,
        ratio: inputBytes > 0 ? outputBytes / inputBytes : null,
        parameters: countsAfter.parameters,
        nonZeros: countsAfter.nonZeros,
        weightSparsity: countsAfter.parameters ? 1 - countsAfter.nonZeros / countsAfter.parameters : 0,
      },
      seconds: (performance.now() - started) / 1000,
      warnings: [...warnings, ...methodWarnings, ...(result.warnings ?? [])],
    };
    const reportPath = join(inputs.outputDir, 'report.json');
    const json = JSON.stringify(report, jsonNumbers, 2);
    await writeFile(reportPath, json);
    artifacts.push({ name: 'report.json', path: reportPath, sizeBytes: Buffer.byteLength(json) });
    progress.emit('done', 1, { message: 'done' });
    return { report, artifacts };
  } finally {
    await scorer?.close().catch(() => {});
    for (const s of sessions) await s.release().catch(() => {});
    if (model) closeModel(model);
    await rm(scratch, { recursive: true, force: true });
  }
}

/** JSON cannot hold NaN/Infinity: write them as null. */
function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

function describeRecipe(r: Recipe): string {
  return 'criterion' in r && r.criterion
    ? `method "${r.method}" with criterion "${r.criterion}"`
    : `method "${r.method}"`;
}

function skippedRow(s: { weight: WeightRef; reason: string }): LayerReport {
  return {
    name: s.weight.name,
    node: s.weight.node,
    op: s.weight.op,
    shape: s.weight.shape,
    skipped: s.reason,
    seconds: 0,
  };
}

function summarize(rows: LayerReport[], skipped: number): Record<string, unknown> {
  const errs = rows.map((r) => r.relError).filter((e): e is number => typeof e === 'number' && Number.isFinite(e));
  return {
    compressedLayers: rows.length,
    skippedLayers: skipped,
    allPatternsVerified: rows.every((r) => r.patternVerified !== false),
    meanLayerRelError: errs.length ? errs.reduce((a, b) => a + b, 0) / errs.length : null,
  };
}

/** Vocabulary sizes of integer inputs that index an embedding table (Gather data rows), for random token ids. */
function vocabularyHints(model: LoadedModel): Map<string, number> {
  const out = new Map<string, number>();
  const g = model.proto.graph;
  if (!g) return out;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  for (const n of g.node) {
    if (n.opType !== 'Gather') continue;
    const table = inits.get(n.input[0]);
    if (table && table.dims.length >= 1 && n.input[1]) out.set(n.input[1], Number(table.dims[0]));
  }
  return out;
}

/** The runner's check that a method kept what it declared. */
function verifyDeclarations(
  name: string,
  result: MethodResult,
  selected: WeightRef[],
  skipped: { weight: WeightRef }[],
  need: string,
  statsCalls: number,
  graph: { changesGraph: boolean; nodesBefore: number; nodesAfter: number },
): void {
  const problems: string[] = [];
  if (!Array.isArray(result?.layers)) problems.push('returned no layers array');
  if (need === 'none' && statsCalls > 0) problems.push('declared calibration "none" but asked for statistics');
  if (!graph.changesGraph && graph.nodesAfter !== graph.nodesBefore) {
    problems.push(
      `declared it only rewrites weights, but the node count went ${graph.nodesBefore} → ${graph.nodesAfter}`,
    );
  }
  const allowed = new Set(selected.map((w) => w.name));
  const skippedNames = new Set(skipped.map((s) => s.weight.name));
  for (const row of result.layers ?? []) {
    if (!allowed.has(row.name) && !row.skipped && skippedNames.has(row.name)) {
      problems.push(`compressed ${row.name}, which the runner had skipped`);
    }
  }
  if (problems.length) throw new Error(`method ${name} broke its declarations: ${problems.join('; ')}`);
}
