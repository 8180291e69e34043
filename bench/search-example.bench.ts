// The README's worked search example: test/unit/sparsity/models.ts's small LLM-like transformer (2 blocks, d 64,
// 13 weights), 32 calibration and 16 held-out token sequences, budget perplexity +2 %, the default space,
// maxTrials 24. Prints the trials as the README's markdown table and copies pareto.svg where asked.
// Run: npx tsx bench/search-example.bench.ts [--budget perplexity:0.02] [--svg docs/search-example-pareto.svg]
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Recipe } from '../packages/engine/recipe.js';
import { runRecipe } from '../packages/engine/run.js';
import { SMALL_LM, tokenData, transformer } from '../test/unit/sparsity/models.js';
import { writeCase } from '../test/unit/sparsity/helpers.js';
import { cpuSince, flag, parseBudget } from './lib/search-standalone.js';

interface Point {
  trial: number;
  kind: string;
  plan: { uniform?: string; counts?: Record<string, number> };
  bytes: number;
  delta: number;
  withinBudget: boolean;
  seconds: number;
}

const dir = await mkdtemp(join(tmpdir(), 'search-example-'));
try {
  const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(32) });
  const ev = await writeCase(dir, 'lm-eval', transformer(), { ids: tokenData(16, SMALL_LM, 77) });
  const budget = parseBudget(flag('budget', 'perplexity:0.02'));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const res = await runRecipe({ method: 'search', budget, maxTrials: 24 } as Recipe, {
    modelPath: lm.modelPath,
    calibrationPath: lm.dataPath,
    evalPath: ev.dataPath,
    outputDir: join(dir, 'out'),
  });
  const s = res.report.search as {
    points: Point[];
    chosen: Point;
    dense: { metric: number; bytes: number };
    seconds: Record<string, number>;
  };
  console.log(
    '| trial | kind | plan | bytes | Δ perplexity | within | seconds |\n| --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const p of s.points) {
    const plan =
      p.plan.uniform ??
      Object.entries(p.plan.counts ?? {})
        .map(([k, n]) => `${n}× ${k}`)
        .join(', ');
    const chosen = p.trial === s.chosen.trial;
    const b = (x: string) => (chosen ? `**${x}**` : x);
    console.log(
      `| ${b(String(p.trial))} | ${b(p.kind)} | ${b(plan)} | ${b(p.bytes.toLocaleString('en'))} | ${b(`${p.delta >= 0 ? '+' : '−'}${Math.abs(100 * p.delta).toFixed(2)} %`)} | ${b(p.withinBudget ? (chosen ? 'yes — chosen' : 'yes') : 'no')} | ${p.seconds.toFixed(1)} |`,
    );
  }
  const uniformWithin = s.points.filter((p) => p.kind === 'uniform' && p.withinBudget);
  const smallest = Math.min(...uniformWithin.map((p) => p.bytes));
  console.log(
    `\ndense ${s.dense.bytes} B, perplexity ${s.dense.metric.toFixed(2)}; chosen ${s.chosen.bytes} B = ${((100 * s.chosen.bytes) / smallest).toFixed(1)}% of the smallest uniform within budget (${smallest} B)`,
  );
  console.log(
    `wall ${((performance.now() - t0) / 1000).toFixed(1)} s, CPU ${cpuSince(c0).toFixed(1)} s; stages ${JSON.stringify(Object.fromEntries(Object.entries(s.seconds).map(([k, v]) => [k, +v.toFixed(1)])))}`,
  );
  const svg = flag('svg', '');
  if (svg) await copyFile(join(dir, 'out', 'pareto.svg'), svg);
} finally {
  await rm(dir, { recursive: true, force: true });
}
