// The search (method `search`): stage 1 applies every choice of the space to every layer (uniform.ts) — the cheap
// sensitivity table; stage 2 evaluates the uniform candidates that the proxy puts on its front, bisecting for the
// smallest one within budget; stage 3 walks the per-layer mixing path (plan.ts), again bisecting with full-model
// trials, its first probe placed where the uniform trials say the budget's proxy damage lies. The answer is the
// evaluated point with the least cost within budget; every point is in the report and on pareto.svg.
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
import { emptyTables, proxyFront, uniformCandidate, denseBytesOf, type UniformCandidate } from './uniform.js';

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
  /** Uniform candidates already evaluated. */
  doneUniform: Set<UniformCandidate>;
}

export async function runSearch(ctx: MethodContext<SearchRecipe>): Promise<MethodResult> {
  const started = performance.now();
  const st = await setup(ctx);
  const { log } = st;
  try {
    let t = performance.now();
    const uniforms: UniformCandidate[] = [];
    for (let c = 0; c < st.choices.length; c++) {
      ctx.checkAbort();
      progress(st, (0.4 * c) / st.choices.length, `sensitivity: ${choiceLabel(st.choices[c])} on every layer`);
      uniforms.push(await uniformCandidate(ctx, st.env.densePath, st.choices, c, st.tables, scratchOf(ctx)));
    }
    log.proxy = uniforms.map((u) => ({
      choice: choiceLabel(st.choices[u.choice]),
      bytes: u.bytes,
      damage: u.damage,
      layersCompressed: u.rows.filter((r) => !r.skipped).length,
    }));
    log.seconds.sensitivity = (performance.now() - t) / 1000;
    t = performance.now();
    await uniformTrials(st, uniforms);
    log.seconds.uniformTrials = (performance.now() - t) / 1000;
    t = performance.now();
    if (ctx.recipe.perLayer !== false) await mixedTrials(st);
    log.seconds.mixedTrials = (performance.now() - t) / 1000;
    t = performance.now();
    await fillUniform(st, uniforms);
    log.seconds.uniformTrials += (performance.now() - t) / 1000;
    for (const u of uniforms) if (u.file !== st.best?.file) await removeCandidate(u.file);
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
    mixing: null,
    seconds: { sensitivity: 0, uniformTrials: 0, mixedTrials: 0, total: 0 },
    warnings: [],
  };
  if (ctx.heldOut.kind === 'calibration')
    log.warnings.push('no evaluation data: the search measured its trials on the calibration data');
  const params = ctx.weights.reduce((s, w) => s + w.N * w.K, 0);
  return { ctx, env, log, choices, tables: emptyTables(ctx.weights), rows: new Map(), params, doneUniform: new Set() };
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

async function uniformTrial(st: State, u: UniformCandidate): Promise<SearchPoint> {
  st.doneUniform.add(u);
  return trial(st, u.file, 'uniform', uniformPlan(st, u), u.layerBytes, u.damage, u.rows);
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

/** Trials left after mixing go to the proxy-front candidates not yet evaluated (smallest first). */
async function fillUniform(st: State, uniforms: UniformCandidate[]): Promise<void> {
  for (const u of proxyFront(uniforms)) {
    if (trialsLeft(st) <= 0) break;
    if (!st.doneUniform.has(u)) await uniformTrial(st, u);
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
    const p = await mixedTrial(st, path, probe);
    st.log.mixing.probes.push({ step: probe, withinBudget: p.withinBudget });
    if (p.withinBudget) lo = probe;
    else hi = probe;
    probe = (lo + hi) >> 1;
  }
}

async function mixedTrial(st: State, path: MixingPath, step: number): Promise<SearchPoint> {
  const plan = planAt(path, step);
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
