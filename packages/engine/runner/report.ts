// Stage "report": report.json from what the stages recorded — the method's rows and extra fields, quality, latency,
// calibration, sizes, the stages' seconds and memory, and every warning (runner's, then the method's).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobReport, JobResult, LayerReport } from '../job.js';
import type { SkippedWeight } from '../methods/types.js';
import { ortVersion } from '../runtime/session.js';
import { ENGINE_VERSION } from './version.js';
import { ERROR_SAMPLE_ROWS, type RunState } from './state.js';

export async function writeReport(s: RunState): Promise<JobResult> {
  const report = buildReport(s);
  const reportPath = join(s.inputs.outputDir, 'report.json');
  const json = JSON.stringify(report, jsonNumbers, 2);
  await writeFile(reportPath, json);
  const artifacts = [...s.artifacts!, { name: 'report.json', path: reportPath, sizeBytes: Buffer.byteLength(json) }];
  s.progress.emit('done', 1, { message: 'done' });
  return { report, artifacts };
}

function buildReport(s: RunState): JobReport {
  const { recipe } = s;
  const result = s.result!;
  const inputBytes = s.inputBytes!;
  const outputBytes = s.outputBytes!;
  const counts = s.countsAfter!;
  s.clock.annotate('calibrate', { passes: s.plan?.passes ?? 0 });
  return {
    ...(result.report ?? {}),
    method: recipe.method,
    recipe,
    engineVersion: ENGINE_VERSION,
    onnxruntime: { version: ortVersion(), executionProvider: s.sessions.executionProvider },
    layers: [...result.layers, ...s.skipped!.map(skippedRow)],
    summary: summarize(result.layers, s.skipped!.length),
    selection: { patterns: s.selectionPatterns ?? [] },
    quality: s.quality ?? { evaluated: false, reason: 'no evaluation or calibration data was given' },
    ...(s.latency ? { latency: s.latency } : {}),
    calibration: calibrationReport(s),
    compute: computeReport(s),
    sizes: {
      inputBytes,
      outputBytes,
      ratio: inputBytes > 0 ? outputBytes / inputBytes : null,
      parameters: counts.parameters,
      nonZeros: counts.nonZeros,
      weightSparsity: counts.parameters ? 1 - counts.nonZeros / counts.parameters : 0,
    },
    seconds: (performance.now() - s.started) / 1000,
    stages: s.clock.report(),
    warnings: [...s.warnings, ...(s.methodWarnings ?? []), ...(result.warnings ?? [])],
  };
}

function calibrationReport(s: RunState): Record<string, unknown> | null {
  const plan = s.plan!;
  const calibration = s.calibration;
  if (!calibration) return null;
  return {
    source: calibration.source,
    random: !!calibration.random,
    samples: plan.ranges?.used ?? 0,
    batchSize: plan.fixedBatch ?? plan.batchSize,
    passes: plan.passes ?? 0,
    onnxRuntimeRuns: plan.runs ?? 0,
    statistics: plan.runs
      ? `reduced inside ONNX Runtime on ${s.sessions.executionProvider} (fp32 per batch), summed over batches in float64`
      : 'none',
    layerError:
      plan.layerError === 'hessian'
        ? 'from the Hessian of every calibration row'
        : plan.layerError === 'sample'
          ? `from up to ${ERROR_SAMPLE_ROWS} rows of each activation spread over the first calibration batch ` +
            '(the method needs no Hessian)'
          : 'not measured',
    sequential: !!s.recipe.calibration?.sequential,
    maxHessianBytes: plan.maxHessianBytes,
  };
}

/** Where each part of the work ran (issue 12: the maths on the job's execution provider). */
function computeReport(s: RunState): Record<string, unknown> {
  const ep = s.sessions.executionProvider;
  return {
    calibrationStatistics: s.plan?.runs ? `onnxruntime ${ep} (reductions inside the model graph)` : 'not run',
    gemm: `onnxruntime ${s.gemm?.executionProvider ?? 'cpu'} (Hessian-based errors, SparseGPT block updates, randomized SVD, blocked factorisations)`,
    ...(s.gemm?.fallback ? { gemmFallback: s.gemm.fallback } : {}),
    javascript:
      'host CPU: masks, Wanda scores, quantizers, SparseGPT column sweeps within a block, symmetric eigen (tred2/tql2), float64 accumulation',
    evaluation: `onnxruntime ${ep}`,
  };
}

/** JSON cannot hold NaN/Infinity: write them as null. */
function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

function skippedRow(k: SkippedWeight): LayerReport {
  const w = k.weight;
  return { name: w.name, node: w.node, op: w.op, shape: w.shape, skipped: k.reason, seconds: 0 };
}

/** Counts: a row the method returned with a `skipped` reason was not written, so it is not "compressed". */
function summarize(rows: LayerReport[], skipped: number): Record<string, unknown> {
  const written = rows.filter((r) => !r.skipped);
  const errs = written.map((r) => r.relError).filter((e): e is number => typeof e === 'number' && Number.isFinite(e));
  return {
    compressedLayers: written.length,
    skippedLayers: skipped + (rows.length - written.length),
    allPatternsVerified: written.every((r) => r.patternVerified !== false),
    meanLayerRelError: errs.length ? errs.reduce((a, b) => a + b, 0) / errs.length : null,
  };
}
