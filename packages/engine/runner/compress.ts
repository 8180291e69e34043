// Stage "compress": the method runs on the context it declared (runner/context.ts), then the runner checks it kept
// its declarations. NaN/±Inf weights make every criterion and quantizer meaningless for that layer, so they are
// named in the report: counted on the stored bytes before the run, unless the method counts them itself while it
// reads them (reportsNonFinite). When the method is done, the calibration session and the scorer are released, so
// that nothing but the model being written holds the weights from here on.
import type { LayerReport } from '../job-parts.js';
import { assertNothingWrittenFails } from '../methods/select.js';
import type { MethodResult, SkippedWeight } from '../methods/types.js';
import type { WeightRef } from '../onnx/weights.js';
import { nonFiniteCount } from '../report/sizes.js';
import { setGemmExecutionProvider } from '../math/gemm.js';
import { methodContext, type ContextCalls } from './context.js';
import { describeRecipe, type RunState } from './state.js';

export async function compress(s: RunState): Promise<void> {
  const method = s.method!;
  const model = s.model!;
  try {
    await s.clock.stage('compress', async () => {
      // The maths' GEMMs (math/gemm.ts) run on the job's execution provider: CUDA on GPU workers.
      const gemm = await setGemmExecutionProvider(s.sessions.executionProvider);
      s.gemm = gemm;
      if (gemm.fallback) s.warnings.push(`GEMMs of the maths run on the CPU: ${gemm.fallback}`);
      if (!method.reportsNonFinite) {
        for (const w of s.selected!) nonFiniteWarning(s, w.name, nonFiniteCount(model, w), w.shape);
      }
      const methodWarnings: string[] = (s.methodWarnings = []);
      const calls: ContextCalls = { stats: 0 };
      const nodesBefore = model.proto.graph?.node.length ?? 0;
      const ctx = methodContext(s, (m) => methodWarnings.push(m), calls);
      s.progress.emit('compress', 0, { message: `${s.recipe.method}: ${s.selected!.length} layers` });
      const result = (s.result = await method.run(ctx));
      s.checkAbort();
      if (method.reportsNonFinite) {
        for (const l of result.layers)
          nonFiniteWarning(s, l.name, typeof l.nonFinite === 'number' ? l.nonFinite : 0, l.shape);
      }
      if (!method.ingredients(s.recipe)) assertNothingWrittenFails(result.layers, s.skipped!, describeRecipe(s.recipe));
      verifyDeclarations(s, result, calls.stats, nodesBefore);
    });
  } finally {
    const plan = s.plan!;
    plan.passes = plan.collector?.passCount ?? 0;
    plan.runs = plan.collector?.runCount ?? 0;
    if (plan.collector) plan.layerError = s.method!.hessian(s.recipe) ? 'hessian' : 'sample';
    await plan.collector?.close();
    plan.collector = undefined;
    await s.scorer?.close().catch(() => {});
    s.scorer = undefined;
    await setGemmExecutionProvider('cpu'); // the thread's next job starts from the CPU default
  }
}

/** The one place the non-finite warning is written. */
function nonFiniteWarning(s: RunState, name: string, bad: number, shape: readonly number[]): void {
  if (!bad) return;
  const total = shape.reduce((a, b) => a * b, 1);
  s.warnings.push(`${name}: ${bad} of ${total} weights are NaN or infinite; its compressed values are not meaningful`);
}

/** The runner's check that a method kept what it declared. */
function verifyDeclarations(s: RunState, result: MethodResult, statsCalls: number, nodesBefore: number): void {
  const method = s.method!;
  const nodesAfter = s.model!.proto.graph?.node.length ?? 0;
  const problems: string[] = [];
  if (!Array.isArray(result?.layers)) problems.push('returned no layers array');
  if (method.calibration(s.recipe) === 'none' && statsCalls > 0) {
    problems.push('declared calibration "none" but asked for statistics');
  }
  if (!method.changesGraph(s.recipe) && nodesAfter !== nodesBefore) {
    problems.push(`declared it only rewrites weights, but the node count went ${nodesBefore} → ${nodesAfter}`);
  }
  problems.push(...foreignRows(result.layers ?? [], s.selected!, s.skipped!));
  if (problems.length) throw new Error(`method ${method.name} broke its declarations: ${problems.join('; ')}`);
}

function foreignRows(rows: LayerReport[], selected: WeightRef[], skipped: SkippedWeight[]): string[] {
  const allowed = new Set(selected.map((w) => w.name));
  const skippedNames = new Set(skipped.map((k) => k.weight.name));
  return rows
    .filter((row) => !allowed.has(row.name) && !row.skipped && skippedNames.has(row.name))
    .map((row) => `compressed ${row.name}, which the runner had skipped`);
}
