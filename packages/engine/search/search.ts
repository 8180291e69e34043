// The search (method `search`): stage 1 builds the sensitivity table cheaply (sensitivity.ts: simulated rounding and
// masks on every layer, the expensive solvers on one probe layer per shape); stage 2 evaluates the uniform
// candidates that the proxy puts on its front, bisecting for the smallest one within budget; stage 3 walks the
// per-layer mixing path (plan.ts), again bisecting with full-model trials, its first probe placed where the uniform
// trials say the budget's proxy damage lies. The answer is the evaluated point with the least cost within budget;
// every point is in the report and on pareto.svg. Calibration runs once (the statistics serve every stage), and the
// dense model's outputs are computed once for all trials (the scorer keeps them).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fixedBatchSize } from '../data/dataset.js';
import { modelInputSpecs } from '../data/inputs.js';
import { InputError, type LayerReport } from '../job-parts.js';
import type { MethodContext, MethodResult } from '../methods/types.js';
import { closeModel, loadModel } from '../onnx/model.js';
import { adoptModel } from '../onnx/loaded.js';
import type { SearchRecipe } from './schema.js';
import { HeldOutScorer } from '../soup/score.js';
import { choosePoint, costOf, type SearchPoint } from './front.js';
import { mixingPath, planAt, lastPlanWithin, type LayerTable, type MixingPath } from './plan.js';
import { failSearch, finishReport, type SearchLog } from './report.js';
import { choiceLabel, expandSpace, stepsOf, type SearchChoice } from './space.js';
import { denseMetric, fileBytes, measureCandidate, removeCandidate, writeCandidate, type TrialEnv } from './trial.js';
import { applyPlan } from './apply.js';
import { sensitivity } from './sensitivity.js';
import { emptyTables, proxyFront, uniformEstimates, denseBytesOf, type UniformCandidate } from './uniform.js';

interface State {
  ctx: MethodContext<SearchRecipe>;
  env: TrialEnv;
  log: SearchLog;
  choices: SearchChoice[];
  tables: LayerTable[];
  rows: Map<number, LayerReport[]>;
  /** The best point within budget so far and its file (kept; every other trial file is removed). */
  best?: { point: SearchPoint; file: string };
  params: number;
  /** When the trial being prepared started (its plan applied before trial() is called). */
  trialStarted?: number;
  /** Measured plans (choice per layer, joined) and their points. */
  measured: Map<string, SearchPoint>;
  /** Choices whose uniform candidate was evaluated. */
  doneUniform: Set<number>;
}

export async function runSearch(ctx: MethodContext<SearchRecipe>): Promise<MethodResult> {
  const started = performance.now();
  const st = await setup(ctx);
  const { log } = st;
  try {
    let t = performance.now();
    const sens = await sensitivity(ctx, st.env.densePath, st.choices, (f, m) => progress(st, 0.4 * f, m));
    st.tables = sens.tables;
    const uniforms = uniformEstimates(st.tables, st.choices.length, log.dense.bytes);
    const uniformOf = new Map(uniforms.map((u) => [u.choice, u]));
    log.proxy = sens.proxies.map((p) => ({
      choice: choiceLabel(st.choices[p.choice]),
      source: p.source,
      bytes: uniformOf.get(p.choice)?.bytes ?? null,
      damage: uniformOf.get(p.choice)?.damage ?? null,
      layersCompressed: uniformOf.get(p.choice)?.layers ?? 0,
      ...(p.ratios ? { probeRatios: p.ratios } : {}),
      seconds: p.seconds,
    }));
    log.probes = sens.probes;
    log.seconds.sensitivity = (performance.now() - t) / 1000;
    log.seconds.sensitivitySimulated = sens.seconds.simulate;
    log.seconds.sensitivityProbes = sens.seconds.probes;
    t = performance.now();
    await uniformTrials(st, uniforms);
    log.seconds.uniformTrials = (performance.now() - t) / 1000;
    t = performance.now();
    if (ctx.recipe.perLayer !== false) await mixedTrials(st);
    log.seconds.mixedTrials = (performance.now() - t) / 1000;
    t = performance.now();
    await fillUniform(st, uniforms);
    log.seconds.uniformTrials += (performance.now() - t) / 1000;
    log.seconds.total = (performance.now() - started) / 1000;
    return await finish(st);
  } finally {
    await st.env.scorer.close();
  }
}

function scratchOf(ctx: MethodContext): string {
  return join(ctx.tmpDir, 'search');
}

async function setup(ctx: MethodContext<SearchRecipe>): Promise<State> {
  const r = ctx.recipe;
  const densePath = ctx.model.path;
  if (!densePath) throw new Error('search needs the model loaded from a file');
  if (!ctx.heldOut) throw new InputError('calibration-required', 'search needs calibration (and evaluation) data');
  await mkdir(scratchOf(ctx), { recursive: true });
  const scorer = new HeldOutScorer({
    dataset: ctx.heldOut.dataset,
    tmpDir: scratchOf(ctx),
    executionProviders: [ctx.executionProvider],
    batchSize: r.calibration?.batchSize ?? 8,
    ...(r.evaluation?.samples ? { samples: r.evaluation.samples } : {}),
    ...(r.evaluation?.outputName ? { outputName: r.evaluation.outputName } : {}),
    referencePath: densePath,
    // Every trial compares against the same dense outputs: computed once, kept (up to the scorer's cap).
    keepReference: true,
    inputModel: ctx.model,
  });
  const fixed = fixedBatchSize(modelInputSpecs(ctx.model.proto));
  const env: TrialEnv = {
    densePath,
    scorer,
    budget: r.budget,
    objective: r.objective ?? 'size',
    dataset: ctx.heldOut.dataset,
    executionProvider: ctx.executionProvider,
    latencyBatches: fixed ? [fixed] : [1, 8],
  };
  const choices = expandSpace(r.space);
  const log: SearchLog = {
    recipe: r,
    data: ctx.heldOut.kind,
    choices,
    dense: { metric: await denseMetric(env), bytes: await fileBytes(densePath), latency: null },
    points: [],
    proxy: [],
    probes: {},
    mixing: null,
    seconds: {
      sensitivity: 0,
      sensitivitySimulated: 0,
      sensitivityProbes: 0,
      uniformTrials: 0,
      mixedTrials: 0,
      total: 0,
    },
    warnings: [],
  };
  if (ctx.heldOut.kind === 'calibration')
    log.warnings.push('no evaluation data: the search measured its trials on the calibration data');
  const params = ctx.weights.reduce((s, w) => s + w.N * w.K, 0);
  return {
    ctx,
    env,
    log,
    choices,
    tables: emptyTables(ctx.weights),
    rows: new Map(),
    params,
    doneUniform: new Set(),
    measured: new Map(),
  };
}

function trialsLeft(st: State): number {
  return (st.ctx.recipe.maxTrials ?? 24) - st.log.points.length;
}

function progress(st: State, fraction: number, message: string): void {
  const b = st.best?.point;
  st.ctx.progress({
    fraction,
    message,
    trial: { index: st.log.points.length, total: st.ctx.recipe.maxTrials ?? 24 },
    best: b ? { trial: b.trial, bytes: b.bytes, metric: b.metric, delta: b.delta, latency: b.latency } : null,
  });
}

/** Evaluates the candidate written at `file` as the next trial; keeps the file only if it is the best so far. */
async function trial(
  st: State,
  file: string,
  kind: SearchPoint['kind'],
  plan: Record<string, unknown>,
  layerBytes: number,
  proxy: number,
  rows: LayerReport[],
): Promise<SearchPoint> {
  st.ctx.checkAbort();
  const index = st.log.points.length + 1;
  const started = st.trialStarted ?? performance.now();
  st.trialStarted = undefined;
  const total = st.ctx.recipe.maxTrials ?? 24;
  progress(st, 0.4 + (0.6 * (index - 1)) / total, `trial ${index}/${total} (${kind})`);
  const m = await measureCandidate(st.env, file, st.log.dense.metric);
  if (m.denseLatency !== null && st.log.dense.latency === null) st.log.dense.latency = m.denseLatency;
  const point: SearchPoint = {
    trial: index,
    kind,
    plan,
    bytes: m.bytes,
    bitsPerWeight: st.params ? (layerBytes * 8) / st.params : 0,
    latency: m.latency,
    metric: m.metric,
    delta: m.delta,
    withinBudget: m.withinBudget,
    proxy,
    seconds: (performance.now() - started) / 1000,
  };
  st.log.points.push(point);
  st.rows.set(index, rows);
  const objective = st.env.objective;
  if (point.withinBudget && (!st.best || costOf(point, objective) < costOf(st.best.point, objective))) {
    if (st.best) await removeCandidate(st.best.file);
    st.best = { point, file };
  } else await removeCandidate(file);
  progress(st, 0.4 + (0.6 * index) / total, `trial ${index}/${total} done`);
  return point;
}

function uniformPlan(st: State, u: UniformCandidate): Record<string, unknown> {
  const c = st.choices[u.choice];
  return { uniform: choiceLabel(c), recipe: stepsOf(c, st.env.objective)[0] };
}

/** Writes the uniform candidate (the real methods over every layer) and evaluates it. */
async function uniformTrial(st: State, u: UniformCandidate): Promise<SearchPoint> {
  st.doneUniform.add(u.choice);
  st.trialStarted = performance.now();
  const applied = await applyPlan(
    st.ctx,
    st.env.densePath,
    st.choices,
    st.ctx.weights.map(() => u.choice),
  );
  const file = join(scratchOf(st.ctx), `uniform-${u.choice}.onnx`);
  try {
    await writeCandidate(applied.model, file);
  } finally {
    closeModel(applied.model);
  }
  const point = await trial(st, file, 'uniform', uniformPlan(st, u), u.layerBytes, u.damage, applied.rows);
  // Its plan as the mixing path writes plans: the choice where the table has it, dense elsewhere.
  const plan = st.tables.map((t) => (t.options.some((o) => o.choice === u.choice) ? u.choice : -1));
  st.measured.set(plan.join(','), point);
  return point;
}

/** Bisection over the proxy front (smallest first) for the smallest uniform candidate within budget. */
async function uniformTrials(st: State, uniforms: UniformCandidate[]): Promise<void> {
  const front = proxyFront(uniforms);
  const cap = st.ctx.recipe.perLayer === false ? trialsLeft(st) : Math.max(1, Math.floor(trialsLeft(st) / 2));
  const done = st.doneUniform;
  let lo = 0;
  let hi = front.length - 1;
  while (lo <= hi && done.size < cap && trialsLeft(st) > 0) {
    const mid = (lo + hi) >> 1;
    const p = await uniformTrial(st, front[mid]);
    if (p.withinBudget) hi = mid - 1;
    else lo = mid + 1;
  }
}

/**
 * Trials left after mixing go to the proxy-front candidates not yet evaluated (smallest first) that could still
 * change the answer: for the size objective only those predicted smaller than the best point within budget (a
 * larger one cannot be chosen); for latency every one (its speed is only known once timed).
 */
async function fillUniform(st: State, uniforms: UniformCandidate[]): Promise<void> {
  for (const u of proxyFront(uniforms)) {
    if (trialsLeft(st) <= 0) break;
    const best = st.best?.point;
    if (st.env.objective === 'size' && best && u.bytes >= best.bytes) continue;
    if (!st.doneUniform.has(u.choice)) await uniformTrial(st, u);
  }
}

/** Bisection along the mixing path: the largest step (smallest plan) that is still within budget. */
async function mixedTrials(st: State): Promise<void> {
  const path = mixingPath(st.tables);
  const steps = path.moves.length;
  const pts = st.log.points;
  const okDamage = Math.max(0, ...pts.filter((p) => p.withinBudget).map((p) => p.proxy));
  st.log.mixing = { pathSteps: steps, probes: [] };
  if (steps === 0) return;
  let lo = 0; // plan 0 (dense) is within budget by definition
  let hi = steps + 1; // a virtual plan past the end is not
  let probe = okDamage > 0 ? Math.max(1, lastPlanWithin(path, okDamage)) : Math.ceil(steps / 2);
  while (hi - lo > 1 && trialsLeft(st) > 0) {
    probe = Math.min(Math.max(probe, lo + 1), hi - 1);
    // A plan already measured (a uniform candidate is also a point of the path) is not measured again.
    const seen = st.measured.get(planAt(path, probe).join(','));
    const p = seen ?? (await mixedTrial(st, path, probe));
    st.log.mixing.probes.push({
      step: probe,
      withinBudget: p.withinBudget,
      ...(seen ? { sameAsTrial: seen.trial } : {}),
    });
    if (p.withinBudget) lo = probe;
    else hi = probe;
    probe = (lo + hi) >> 1;
  }
}

async function mixedTrial(st: State, path: MixingPath, step: number): Promise<SearchPoint> {
  const plan = planAt(path, step);
  st.trialStarted = performance.now();
  const applied = await applyPlan(st.ctx, st.env.densePath, st.choices, plan);
  const file = join(scratchOf(st.ctx), `mixed-${step}.onnx`);
  try {
    await writeCandidate(applied.model, file);
  } finally {
    closeModel(applied.model);
  }
  const layers: Record<string, string> = {};
  const counts: Record<string, number> = {};
  st.ctx.weights.forEach((w, i) => {
    const label = plan[i] < 0 ? 'dense' : choiceLabel(st.choices[plan[i]]);
    layers[w.name] = label;
    counts[label] = (counts[label] ?? 0) + 1;
  });
  const denseRows = st.ctx.weights.filter((_, i) => plan[i] < 0).map((w) => denseRow(w.name, w));
  return trial(st, file, 'mixed', { step, counts, layers }, path.bytes[step], path.damage[step], [
    ...applied.rows,
    ...denseRows,
  ]);
}

function denseRow(name: string, w: MethodContext['weights'][number]): LayerReport {
  return {
    name,
    node: w.node,
    op: w.op,
    shape: w.shape,
    pattern: 'dense (kept by the search)',
    relError: 0,
    bitsPerWeight: (denseBytesOf(w) * 8) / (w.N * w.K),
    seconds: 0,
  };
}

/** The chosen point becomes ctx.model (the runner writes and evaluates it); none within budget fails the job. */
async function finish(st: State): Promise<MethodResult> {
  const chosen = choosePoint(st.log.points, st.env.objective);
  const { report, svg } = finishReport(st.log, chosen ?? null);
  if (!chosen || !st.best) throw failSearch(st.log, report, svg);
  const loaded = await loadModel(st.best.file);
  adoptModel(st.ctx.model, loaded);
  return {
    layers: st.rows.get(chosen.trial) ?? [],
    graphChanged: true,
    report: { search: report },
    warnings: st.log.warnings,
    files: [{ name: 'pareto.svg', content: svg }],
  };
}
