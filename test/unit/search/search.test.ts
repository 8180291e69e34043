// The search through the job runner on a tiny LLM-like transformer: the budget met (the answer is measured within
// it on the held-out data, and is the smallest point that is), the budget unreachable (the job fails with
// budget-unreachable and still writes report.json and pareto.svg), cancel between trials, and the shapes of the
// report and the artifacts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SMALL_LM, tokenData, transformer } from '../sparsity/models.js';
import { run, tempDir, writeCase } from '../sparsity/helpers.js';
import type { JobProgress } from '../../../packages/engine/job.js';

// Four choices that run in well under a second each on 2 cores.
const SPACE = {
  methods: ['quantize', 'sparsity'],
  bits: [4, 8],
  groupSize: [32],
  schemes: ['rtn'],
  criteria: ['magnitude', 'wanda'],
};

let dir: string;
let lm: { modelPath: string; dataPath: string };
let ev: { modelPath: string; dataPath: string };

before(async () => {
  dir = tempDir();
  lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(24) });
  ev = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(12, SMALL_LM, 77) });
});
after(() => rmSync(dir, { recursive: true, force: true }));

interface Point {
  trial: number;
  kind: string;
  plan: Record<string, unknown>;
  bytes: number;
  bitsPerWeight: number;
  latency: unknown;
  metric: number;
  delta: number;
  withinBudget: boolean;
}

test('budget met: the answer is the smallest measured point within budget, written as model.onnx with its plot', async () => {
  const out = join(dir, 'met');
  const progress: JobProgress[] = [];
  const res = await run(
    // +0.5 %: int4 everywhere is over it and int8 everywhere within, so the answer is a per-layer mix.
    { method: 'search', budget: { metric: 'perplexity', maxRelativeIncrease: 0.005 }, space: SPACE, maxTrials: 8 },
    lm.modelPath,
    out,
    { calibrationPath: lm.dataPath, evalPath: ev.dataPath },
    { onProgress: (p) => progress.push(p) },
  );
  const s = res.report.search as {
    points: Point[];
    front: Point[];
    chosen: Point;
    trials: { used: number; max: number };
    data: string;
    dense: { metric: number; bytes: number };
    seconds: Record<string, number>;
    sensitivity: unknown[];
  };
  assert.equal(s.data, 'evaluation');
  assert.ok(s.trials.used >= 2 && s.trials.used <= 8, `trials ${s.trials.used}`);
  assert.equal(s.points.length, s.trials.used);
  assert.equal(s.sensitivity.length, 4);
  for (const p of [...s.points, ...s.front]) {
    assert.deepEqual(Object.keys(p).sort(), [
      'bitsPerWeight',
      'bytes',
      'delta',
      'kind',
      'latency',
      'metric',
      'plan',
      'proxy',
      'seconds',
      'trial',
      'withinBudget',
    ]);
  }
  assert.ok(s.chosen.withinBudget && s.chosen.delta <= 0.005);
  const within = s.points.filter((p) => p.withinBudget);
  assert.equal(s.chosen.bytes, Math.min(...within.map((p) => p.bytes)));
  assert.ok(s.chosen.bytes < s.dense.bytes);
  assert.ok(
    s.points.some((p) => p.kind === 'mixed'),
    'per-layer plans were tried',
  );
  // Mixing earns its keep here: the answer is smaller than every uniform candidate measured within budget.
  assert.equal(s.chosen.kind, 'mixed');
  for (const p of within.filter((x) => x.kind === 'uniform')) assert.ok(s.chosen.bytes < p.bytes);
  for (const k of ['sensitivity', 'uniformTrials', 'mixedTrials', 'total']) assert.equal(typeof s.seconds[k], 'number');
  // The runner's own evaluation of model.onnx agrees with the trial that chose it.
  const q = res.report.quality as { compressed: { perplexity: number }; dense: { perplexity: number } };
  assert.ok(Math.abs(q.compressed.perplexity - s.chosen.metric) < 1e-6 * s.chosen.metric);
  assert.deepEqual(res.artifacts.map((a) => a.name).sort(), ['model.onnx', 'pareto.svg', 'report.json']);
  const svg = readFileSync(join(out, 'pareto.svg'), 'utf8');
  assert.equal((svg.match(/class="point"/g) ?? []).length, s.points.length);
  assert.equal((svg.match(/class="chosen"/g) ?? []).length, 1);
  // Progress: the trial counter and the best point so far.
  const trials = progress.filter((p) => p.trial);
  assert.ok(trials.some((p) => p.trial!.index === s.trials.used && p.trial!.total === 8));
  assert.ok(trials.some((p) => p.best && (p.best as { bytes: number }).bytes === s.chosen.bytes));
});

test('budget unreachable: the job fails with budget-unreachable and still writes report.json and pareto.svg', async () => {
  const out = join(dir, 'unreachable');
  await assert.rejects(
    run(
      {
        method: 'search',
        budget: { metric: 'fidelity', maxOutputError: 0 },
        space: { ...SPACE, methods: ['sparsity'] },
        perLayer: false,
        maxTrials: 3,
      },
      lm.modelPath,
      out,
      { calibrationPath: lm.dataPath }, // no evaluation data: measured on calibration data, and the report says so
    ),
    (e: Error & { code?: string; artifacts?: { name: string; path: string }[] }) => {
      assert.equal(e.name, 'InputError');
      assert.equal(e.code, 'budget-unreachable');
      assert.match(e.message, /no candidate .* met the budget/);
      assert.deepEqual(e.artifacts?.map((a) => a.name).sort(), ['pareto.svg', 'report.json']);
      return true;
    },
  );
  assert.ok(!existsSync(join(out, 'model.onnx')));
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  assert.equal(report.failed.code, 'budget-unreachable');
  assert.equal(report.search.chosen, null);
  assert.equal(report.search.data, 'calibration');
  assert.ok(report.warnings.some((w: string) => /calibration data/.test(w)));
  assert.ok(report.search.points.length >= 1 && report.search.points.every((p: Point) => !p.withinBudget));
  assert.match(readFileSync(join(out, 'pareto.svg'), 'utf8'), /class="budget"/);
});

test('cancel between trials: the search stops with an AbortError once a trial has run', async () => {
  const controller = new AbortController();
  let trialsSeen = 0;
  await assert.rejects(
    run(
      { method: 'search', budget: { metric: 'perplexity', maxRelativeIncrease: 0.02 }, space: SPACE, maxTrials: 8 },
      lm.modelPath,
      join(dir, 'cancel'),
      { calibrationPath: lm.dataPath, evalPath: ev.dataPath },
      {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.trial && p.trial.index >= 1) {
            trialsSeen = p.trial.index;
            controller.abort();
          }
        },
      },
    ),
    (e: Error) => e.name === 'AbortError',
  );
  assert.equal(trialsSeen, 1, 'no trial ran after the cancel');
});

test('objective latency: every trial is timed against dense, and the answer is the fastest point within budget', async () => {
  const out = join(dir, 'latency');
  const res = await run(
    {
      method: 'search',
      objective: 'latency',
      budget: { metric: 'perplexity', maxRelativeIncrease: 0.5 },
      space: { methods: ['quantize'], bits: [4, 8], groupSize: [32], schemes: ['rtn'] },
      perLayer: false,
      maxTrials: 2,
    },
    lm.modelPath,
    out,
    { calibrationPath: lm.dataPath, evalPath: ev.dataPath },
  );
  const s = res.report.search as {
    objective: string;
    points: (Point & { latency: { batch1: number | null; batch8: number | null } | null })[];
    front: Point[];
    chosen: Point & { latency: { batch1: number } };
    dense: { latency: number | null };
  };
  assert.equal(s.objective, 'latency');
  assert.equal(s.points.length, 2, 'latency cannot be predicted: every proxy-front candidate gets its trial');
  for (const p of s.points) {
    assert.ok(p.latency && typeof p.latency.batch1 === 'number' && p.latency.batch1 > 0, JSON.stringify(p.latency));
    // The quantized layers ask for accuracy_level "auto" (timed on the worker) under the latency objective.
    assert.equal((p.plan.recipe as { accuracyLevel?: unknown }).accuracyLevel, 'auto');
  }
  assert.ok(typeof s.dense.latency === 'number' && s.dense.latency > 0);
  const within = s.points.filter((p) => p.withinBudget);
  assert.ok(within.length >= 1);
  const fastest = Math.min(...within.map((p) => p.latency!.batch1!));
  assert.equal(s.chosen.latency.batch1, fastest);
  // The front is over latency: no front point is both slower and worse than another.
  for (const a of s.front as typeof s.points)
    for (const b of s.front as typeof s.points)
      if (a !== b) assert.ok(!(b.latency!.batch1! < a.latency!.batch1! && b.delta < a.delta));
});
