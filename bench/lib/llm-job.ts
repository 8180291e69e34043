// One bench job in its own process (bench/llm.bench.ts spawns it per method), so that its peak RSS is its own:
// `inspect`, or runRecipe with a recipe, on a model file, with the execution providers asked for. Prints one line
// `@@RESULT {json}` on stdout: wall seconds, process peak RSS (the kernel's high-water mark, ONNX Runtime included),
// report.stages when the runner reports them, else stage spans from progress events, and a quality summary.
// Usage: node --import tsx bench/lib/llm-job.ts '<json JobSpec>'   (or node dist-bench/lib/llm-job.mjs '<json>' on a GPU host)
import { loadModel, closeModel } from '../../packages/engine/onnx/model.js';
import { inspectModel } from '../../packages/engine/onnx/inspect.js';
import { runRecipe } from '../../packages/engine/run.js';
import type { Recipe } from '../../packages/engine/recipe.js';
import { loadDataset, planBatches, batches } from '../../packages/engine/data/dataset.js';
import { modelInputSpecs } from '../../packages/engine/data/inputs.js';
import { feedsOf, openSession } from '../../packages/engine/runtime/session.js';
import { GraphBuilder } from '../../packages/engine/onnx/builder.js';
import * as ort from 'onnxruntime-node';

export interface JobSpec {
  method: string;
  /** `inspect`, `forward` (one dense pass over the calibration set), `gemm` (ORT's fp32 MatMul rate at 4096³), or a recipe's name. */
  recipe?: Record<string, unknown>;
  modelPath: string;
  calibrationPath?: string;
  outputDir: string;
  executionProviders: ('cuda' | 'cpu')[];
}

export interface StageRow {
  name: string;
  seconds: number;
  peakRssBytes?: number;
  executionProvider?: string;
  passes?: number;
}

export interface JobOutcome {
  method: string;
  ok: boolean;
  error?: string;
  seconds: number;
  maxRssBytes: number;
  /** report.stages when the runner writes them ('report'), else spans between progress events ('progress'). */
  stages: StageRow[];
  stagesFrom: 'report' | 'progress' | 'none';
  executionProvider?: string;
  layers?: number;
  skipped?: number;
  meanLayerError?: number | null;
  modelRelativeError?: number | null;
  outputBytes?: number;
  calibrationPasses?: number;
  warnings?: string[];
  /** `gemm`: FLOP/s of one fp32 4096³ MatMul (best of 3 runs, session and copies excluded). */
  flops?: number;
}

const maxRss = () => process.resourceUsage().maxRSS * 1024;

/** One dense forward pass over the calibration set (batches of 8), session opening excluded: a floor for Wanda. */
async function forwardPass(spec: JobSpec): Promise<JobOutcome> {
  const model = await loadModel(spec.modelPath);
  const specs = modelInputSpecs(model.proto);
  closeModel(model);
  const data = await loadDataset(spec.calibrationPath!, specs);
  const opened = await openSession(spec.modelPath, { executionProviders: spec.executionProviders });
  const t0 = performance.now();
  for (const b of batches(data, planBatches(data.samples, 8, data.samples).ranges))
    await opened.session.run(feedsOf(b.inputs));
  const seconds = (performance.now() - t0) / 1000;
  await opened.session.release();
  const row = { name: 'forward', seconds, executionProvider: opened.executionProvider };
  return {
    method: 'forward',
    ok: true,
    seconds,
    maxRssBytes: maxRss(),
    stages: [row],
    stagesFrom: 'none',
    executionProvider: opened.executionProvider,
  };
}

/** ORT's fp32 MatMul rate at 4096³ on the job's EP (R of issue 12's floors). */
async function gemmRate(spec: JobSpec): Promise<JobOutcome> {
  const n = 4096;
  const b = new GraphBuilder({ opset: 17 });
  b.input('a', 'float32', [n, n]);
  const w = new Float32Array(n * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  b.node('MatMul', ['a', b.initializer('w', 'float32', [n, n], w)], {}, { output: 'y' });
  b.output('y', 'float32', [n, n]);
  const { saveModel } = await import('../../packages/engine/onnx/model.js');
  const path = `${spec.outputDir}-gemm.onnx`;
  await saveModel(b.build(), path);
  const opened = await openSession(path, { executionProviders: spec.executionProviders });
  const feeds = { a: new ort.Tensor('float32', w, [n, n]) };
  let best = Infinity;
  for (let i = 0; i < 4; i++) {
    const t0 = performance.now();
    await opened.session.run(feeds);
    if (i > 0) best = Math.min(best, (performance.now() - t0) / 1000);
  }
  await opened.session.release();
  return {
    method: 'gemm',
    ok: true,
    seconds: best,
    maxRssBytes: maxRss(),
    stages: [],
    stagesFrom: 'none',
    executionProvider: opened.executionProvider,
    flops: (2 * n ** 3) / best,
  };
}

async function runJob(spec: JobSpec): Promise<JobOutcome> {
  if (spec.method === 'forward') return forwardPass(spec);
  if (spec.method === 'gemm') return gemmRate(spec);
  const t0 = performance.now();
  if (spec.method === 'inspect') {
    const model = await loadModel(spec.modelPath);
    const r = inspectModel(model);
    closeModel(model);
    const seconds = (performance.now() - t0) / 1000;
    return {
      method: 'inspect',
      ok: true,
      seconds,
      maxRssBytes: maxRss(),
      stages: [],
      stagesFrom: 'none',
      layers: r.weights.length,
    };
  }
  const marks: [string, number][] = [];
  const res = await runRecipe(
    spec.recipe as unknown as Recipe,
    { modelPath: spec.modelPath, calibrationPath: spec.calibrationPath, outputDir: spec.outputDir },
    {
      executionProviders: spec.executionProviders,
      onProgress: (p) => {
        if (marks[marks.length - 1]?.[0] !== p.stage) marks.push([p.stage, performance.now()]);
      },
    },
  );
  const seconds = (performance.now() - t0) / 1000;
  const report = res.report as typeof res.report & {
    stages?: StageRow[];
    calibration?: { passes?: number } | null;
  };
  const end = performance.now();
  // Calibration runs lazily inside the method, so calibrate and compress alternate: sum the spans per stage name.
  const fromProgress: StageRow[] = [];
  marks.forEach(([name, t], i) => {
    if (name === 'done') return;
    const row = fromProgress.find((r) => r.name === name) ?? fromProgress[fromProgress.push({ name, seconds: 0 }) - 1];
    row.seconds += ((marks[i + 1]?.[1] ?? end) - t) / 1000;
  });
  const done = report.layers.filter((l) => !l.skipped);
  const errs = done.map((l) => l.relError).filter((e): e is number => typeof e === 'number');
  const q = report.quality as { relativeError?: number };
  return {
    method: spec.method,
    ok: true,
    seconds,
    maxRssBytes: maxRss(),
    stages: report.stages?.length ? report.stages : fromProgress,
    stagesFrom: report.stages?.length ? 'report' : 'progress',
    executionProvider: report.onnxruntime.executionProvider,
    layers: done.length,
    skipped: report.layers.length - done.length,
    meanLayerError: errs.length ? errs.reduce((a, b) => a + b, 0) / errs.length : null,
    modelRelativeError: typeof q.relativeError === 'number' ? q.relativeError : null,
    outputBytes: res.artifacts.filter((a) => a.name.startsWith('model.onnx')).reduce((s, a) => s + a.sizeBytes, 0),
    calibrationPasses: report.calibration?.passes,
    warnings: report.warnings,
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as JobSpec;
  let out: JobOutcome;
  try {
    out = await runJob(spec);
  } catch (e) {
    out = {
      method: spec.method,
      ok: false,
      error: (e as Error).message,
      seconds: 0,
      maxRssBytes: maxRss(),
      stages: [],
      stagesFrom: 'none',
    };
  }
  process.stdout.write(`@@RESULT ${JSON.stringify(out)}\n`);
  process.exit(out.ok ? 0 : 1);
}

void main();
